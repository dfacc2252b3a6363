//! Replicas of the real binary sharing one PostgreSQL store (issue 10): three replicas
//! sharding 300 simulated accounts through leases, one of them killed and restarted; and an
//! HA pair covering the same accounts in front of a real Alertmanager.
//!
//! Needs `SPENDWATCH_TEST_PG_URL` (`.ci/run` starts a throwaway PostgreSQL); skipped with a
//! note without it, unless `CI` is set, where a missing database fails the test.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use spendwatch::model::Clock;
use spendwatch::sim::{self, PollRecord, Sim};

use crate::alertmanager::RealAlertmanager;
use crate::support::*;

const PG_URL_VAR: &str = "SPENDWATCH_TEST_PG_URL";
const POLL_INTERVAL: Duration = Duration::from_secs(3);
const LEASE: Duration = Duration::from_secs(3);
const HEARTBEAT: Duration = Duration::from_secs(1);
/// What a loaded 2-core machine adds to any deadline below (a debug build, three daemons,
/// PostgreSQL and the simulator on the same cores).
const SLACK: Duration = Duration::from_secs(2);

/// A fresh schema of the test database, dropped afterwards; `None` (with a note) without one.
struct Schema {
    base: String,
    name: String,
    url: String,
}

impl Schema {
    async fn create(test: &str) -> Option<Schema> {
        let Ok(base) = std::env::var(PG_URL_VAR) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "{PG_URL_VAR} must be set in CI: the cluster tests need PostgreSQL"
            );
            let note = format!("cluster::{test} skipped: {PG_URL_VAR} not set\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), note.as_bytes());
            return None;
        };
        let name = format!("it_{test}_{}", std::process::id());
        let client = connect(&base).await;
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .await
            .expect("create schema");
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
        Some(Schema { base, name, url })
    }

    async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // Dropped outside the test's runtime: a short one of its own.
        let (base, name) = (self.base.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&base, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{PG_URL_VAR} is set but unreachable: {e}"));
    tokio::spawn(conn);
    client
}

async fn start_fleet_sim(accounts: usize) -> (Sim, SocketAddr) {
    init();
    let sim = Sim::new(Clock::System, sim::world::rackspace_fleet(accounts));
    let (addr, _task) = sim
        .start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("start simulator");
    (sim, addr)
}

/// A replica's config: the shared store, its id, short leases, every fleet account.
fn replica_config(
    sim: SocketAddr,
    schema: &Schema,
    replica: &str,
    mode: &str,
    accounts: usize,
    extra: &str,
) -> TestConfig {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("api-key"), sim::DEFAULT_API_KEY).expect("write key");
    std::fs::write(dir.path().join("hook-secret"), WEBHOOK_SECRET).expect("write secret");
    std::fs::write(dir.path().join("pg-url"), &schema.url).expect("write url");
    let listen = free_addr();
    let ids = (0..accounts)
        .map(|i| format!("{:?}", sim::world::fleet_account_id(i)))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        r#"
[server]
listen = "{listen}"

[store.postgres]
url = {{ file = "pg-url" }}

[cluster]
replica = "{replica}"
mode = "{mode}"
lease = "{lease}s"
heartbeat = "{heartbeat}s"

[evaluation]
interval = "2s"

[[sources]]
[sources.rackspace]
name = "rs"
username = "{user}"
api_key = {{ file = "api-key" }}
accounts = [{ids}]
interval = "{interval}s"
identity_url = "http://{sim}/v2.0/"
billing_url = "http://{sim}/v2/"
timeout = "5s"
max_retries = 1

[[rules]]
[rules.budget]
name = "budget"
source = "rs"
amount = "1000000"
currency = "USD"
levels = [{{ percent = 100, severity = "critical" }}]

[[receivers]]
[receivers.webhook]
name = "hook"
url = "http://{sim}/_sim/webhook"
secret = {{ file = "hook-secret" }}
{extra}
"#,
        lease = LEASE.as_secs(),
        heartbeat = HEARTBEAT.as_secs(),
        interval = POLL_INTERVAL.as_secs(),
        user = sim::DEFAULT_USERNAME,
    );
    let path = dir.path().join("spendwatch.toml");
    std::fs::write(&path, text).expect("write config");
    TestConfig { dir, path, listen }
}

/// Each alert is its own group, sent at once: one webhook per alert transition.
const ONE_ALERT_PER_MESSAGE: &str = r#"
[route]
receiver = "hook"
group_by = ["..."]
group_wait = "0s"
group_interval = "1s"
"#;

async fn status(daemon: &Daemon) -> Option<serde_json::Value> {
    let body: serde_json::Value = reqwest::get(format!("{}/api/v1/status", daemon.base))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(body["data"]["cluster"].clone())
}

fn user_agent(replica: &str) -> String {
    format!(
        "spendwatch/{} (replica {replica})",
        env!("CARGO_PKG_VERSION")
    )
}

/// Poll records since `from`, per account: who polled it.
fn pollers_since(polls: &[PollRecord], from: Timestamp) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in polls.iter().filter(|p| p.at >= from) {
        out.entry(p.account.clone())
            .or_default()
            .insert(p.requester.clone());
    }
    out
}

/// Waits until every one of `accounts` was polled at least `n` times since `from`.
async fn polled_again(sim: &Sim, accounts: usize, from: Timestamp, n: usize, what: &str) {
    eventually(what, Duration::from_secs(30), || async {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for p in sim.polls().iter().filter(|p| p.at >= from) {
            *counts.entry(p.account.clone()).or_default() += 1;
        }
        (counts.len() == accounts && counts.values().all(|c| *c >= n)).then_some(())
    })
    .await;
}

/// Webhook deliveries by idempotency key, with each delivery's status and account.
fn deliveries(sim: &Sim) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for r in sim.webhook_requests() {
        let key = r
            .headers
            .get("idempotency-key")
            .cloned()
            .unwrap_or_default();
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
        out.entry(key).or_default().push((
            body["status"].as_str().unwrap_or("").to_string(),
            body["labels"]["account"].as_str().unwrap_or("").to_string(),
        ));
    }
    out
}

/// Outbox rows not yet delivered, and delivered, straight from the shared store.
async fn outbox(schema: &Schema) -> (i64, i64) {
    let row = schema
        .client()
        .await
        .query_one(
            "SELECT COUNT(*) FILTER (WHERE state <> 'delivered'),
                    COUNT(*) FILTER (WHERE state = 'delivered') FROM outbox",
            &[],
        )
        .await
        .expect("outbox counts");
    (row.get(0), row.get(1))
}

/// Waits until `n` notifications were delivered and none is left in the outbox.
async fn all_delivered(schema: &Schema, n: i64, what: &str) {
    eventually(what, Duration::from_secs(30), || async {
        (outbox(schema).await == (0, n)).then_some(())
    })
    .await;
}

/// Overspends (or with a negative amount, credits back) an account.
async fn overspend(sim: SocketAddr, account: &str, amount: &str) {
    adjust(sim, account, amount).await;
}

/// The poll keys' owners over `replicas` as the library computes them.
fn expected_shares(replicas: &[String], accounts: usize) -> BTreeMap<String, usize> {
    let mut out: BTreeMap<String, usize> = replicas.iter().map(|r| (r.clone(), 0)).collect();
    for i in 0..accounts {
        let key = spendwatch::cluster::poll_key("rs", &sim::world::fleet_account_id(i));
        if let Some(owner) = spendwatch::cluster::owner(&key, replicas) {
            *out.entry(owner.to_string()).or_default() += 1;
        }
    }
    out
}

/// Waits until the running replicas hold exactly the shares rendezvous hashing gives them,
/// every one of them sees all of them live, and exactly one delivers notifications.
async fn balanced(
    daemons: &[(&str, &Daemon)],
    accounts: usize,
    what: &str,
) -> Vec<serde_json::Value> {
    let ids: Vec<String> = daemons.iter().map(|(id, _)| id.to_string()).collect();
    let expected = expected_shares(&ids, accounts);
    eventually(what, Duration::from_secs(30), || async {
        let mut statuses = Vec::new();
        for (_, d) in daemons {
            statuses.push(status(d).await?);
        }
        let ok = daemons.iter().zip(&statuses).all(|((id, _), s)| {
            s["targets_held"].as_u64() == expected.get(*id).map(|n| *n as u64)
                && s["live_replicas"].as_array().map(Vec::len) == Some(daemons.len())
        }) && statuses
            .iter()
            .filter(|s| s["delivers_notifications"] == true)
            .count()
            == 1
            && statuses
                .iter()
                .filter_map(|s| s["accounts_held"].as_u64())
                .sum::<u64>()
                == accounts as u64;
        ok.then_some(statuses)
    })
    .await
}

/// Three replicas, 300 accounts: each account polled by exactly one replica; a SIGKILLed
/// replica's accounts are taken over within the lease (+ a heartbeat); its restart
/// rebalances to the rendezvous shares; every notification is delivered exactly once; no
/// account goes unpolled for longer than a takeover allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_300_accounts_and_survive_a_kill() {
    const ACCOUNTS: usize = 300;
    let Some(schema) = Schema::create("three_replicas").await else {
        return;
    };
    let (sim, sim_addr) = start_fleet_sim(ACCOUNTS).await;
    let configs: Vec<(&str, TestConfig)> = ["r1", "r2", "r3"]
        .into_iter()
        .map(|id| {
            (
                id,
                replica_config(
                    sim_addr,
                    &schema,
                    id,
                    "shard",
                    ACCOUNTS,
                    ONE_ALERT_PER_MESSAGE,
                ),
            )
        })
        .collect();
    let started = Instant::now();
    let mut daemons: Vec<Daemon> = Vec::new();
    for (_, config) in &configs {
        daemons.push(Daemon::start(config).await);
    }
    let ids = ["r1", "r2", "r3"];
    let statuses = balanced(
        &[
            ("r1", &daemons[0]),
            ("r2", &daemons[1]),
            ("r3", &daemons[2]),
        ],
        ACCOUNTS,
        "three replicas holding their shares",
    )
    .await;
    let all_up = Timestamp::now();

    // Steady state: in two full rounds, every account is polled, each by exactly one replica.
    polled_again(&sim, ACCOUNTS, all_up, 2, "two rounds of polls").await;
    let window = pollers_since(&sim.polls(), all_up);
    for (account, pollers) in &window {
        assert_eq!(pollers.len(), 1, "{account} polled by {pollers:?}");
    }
    let per_replica = |window: &BTreeMap<String, BTreeSet<String>>, id: &str| {
        window
            .values()
            .filter(|p| p.contains(&user_agent(id)))
            .count()
    };
    let expected = expected_shares(&ids.map(String::from), ACCOUNTS);
    for id in ids {
        assert_eq!(
            per_replica(&window, id),
            expected[id],
            "{id}'s share: {expected:?}"
        );
    }

    // Three accounts overspend: three pages, whoever holds them.
    let mut fired: Vec<String> = (0..3).map(sim::world::fleet_account_id).collect();
    for account in &fired {
        overspend(sim_addr, account, "2000000").await;
    }
    all_delivered(&schema, 3, "the first three pages").await;

    // SIGKILL the replica that delivers (so the outbox lease moves too), with nothing in
    // flight; then overspend three of its accounts.
    let victim = statuses
        .iter()
        .position(|s| s["delivers_notifications"] == true)
        .expect("one replica delivers");
    let victim_id = ids[victim];
    let victim_accounts: Vec<String> = window
        .iter()
        .filter(|(_, p)| p.contains(&user_agent(victim_id)))
        .map(|(a, _)| a.clone())
        .collect();
    daemons[victim].kill();
    let killed = Instant::now();
    let killed_at = Timestamp::now();
    let victims_fired: Vec<String> = victim_accounts
        .iter()
        .filter(|a| !fired.contains(a))
        .take(3)
        .cloned()
        .collect();
    for account in &victims_fired {
        overspend(sim_addr, account, "2000000").await;
    }
    fired.extend(victims_fired);

    let survivors: Vec<(&str, &Daemon)> = (0..3)
        .filter(|i| *i != victim)
        .map(|i| (ids[i], &daemons[i]))
        .collect();
    balanced(&survivors, ACCOUNTS, "the survivors holding everything").await;
    let taken_over = killed.elapsed();
    // The victim's leases run out at most a lease after its last heartbeat (before the
    // kill); a survivor takes them at its first heartbeat after that.
    assert!(
        taken_over <= LEASE + HEARTBEAT + SLACK,
        "takeover took {taken_over:?} (lease {LEASE:?}, heartbeat {HEARTBEAT:?})"
    );
    eprintln!("cluster: {victim_id}'s accounts held by the survivors {taken_over:?} after SIGKILL");
    // ... and polled by them: a newly held target is polled at once, not at the next round.
    eventually(
        "the victim's accounts polled by survivors",
        LEASE + HEARTBEAT + SLACK * 2,
        || async {
            let since = pollers_since(&sim.polls(), killed_at);
            victim_accounts
                .iter()
                .all(|a| {
                    since
                        .get(a)
                        .is_some_and(|p| !p.contains(&user_agent(victim_id)) && !p.is_empty())
                })
                .then_some(())
        },
    )
    .await;
    all_delivered(&schema, 6, "the pages of the victim's accounts").await;

    // Restart it under the same id: the shares go back to the three-way rendezvous split.
    daemons[victim] = Daemon::start(&configs[victim].1).await;
    let restarted = Instant::now();
    balanced(
        &[
            ("r1", &daemons[0]),
            ("r2", &daemons[1]),
            ("r3", &daemons[2]),
        ],
        ACCOUNTS,
        "rebalanced after the restart",
    )
    .await;
    eprintln!(
        "cluster: rebalanced {:?} after the restart was ready",
        restarted.elapsed()
    );
    let rebalanced_at = Timestamp::now();
    polled_again(
        &sim,
        ACCOUNTS,
        rebalanced_at,
        1,
        "a round after rebalancing",
    )
    .await;
    let window = pollers_since(&sim.polls(), rebalanced_at);
    for (account, pollers) in &window {
        assert_eq!(
            pollers.len(),
            1,
            "{account} polled by {pollers:?} after rebalancing"
        );
    }
    for id in ids {
        assert_eq!(
            per_replica(&window, id),
            expected[id],
            "{id}'s share after the restart"
        );
    }

    // Three accounts of the restarted replica overspend, then every overspent account is
    // credited back: 9 firing and 9 resolved notifications in all.
    let restarted_accounts: Vec<String> = window
        .iter()
        .filter(|(a, p)| p.contains(&user_agent(victim_id)) && !fired.contains(a))
        .map(|(a, _)| a.clone())
        .take(3)
        .collect();
    for account in &restarted_accounts {
        overspend(sim_addr, account, "2000000").await;
    }
    fired.extend(restarted_accounts);
    all_delivered(&schema, 9, "nine pages").await;
    for account in &fired {
        overspend(sim_addr, account, "-2000000").await;
    }
    all_delivered(&schema, 18, "nine pages and nine resolutions").await;

    // Exactly once, by idempotency key, at the receiver.
    let delivered = deliveries(&sim);
    assert_eq!(delivered.len(), 18, "{delivered:#?}");
    for (key, sends) in &delivered {
        assert_eq!(
            sends.len(),
            1,
            "{key} delivered {} times: {sends:?}",
            sends.len()
        );
    }
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for sends in delivered.values() {
        for (status, account) in sends {
            seen.entry(account.clone())
                .or_default()
                .push(status.clone());
        }
    }
    for account in &fired {
        let mut statuses = seen.get(account).cloned().unwrap_or_default();
        statuses.sort();
        assert_eq!(statuses, ["firing", "resolved"], "{account}");
    }

    // No gaps: per account, consecutive stored points (one per poll: the spend changes
    // every poll) are at most an interval (+10 % jitter) apart, or a takeover's worth where
    // a lease moved. And every poll the simulator answered before the kill is stored.
    let takeover_gap = POLL_INTERVAL.mul_f64(1.1) + LEASE + HEARTBEAT + SLACK;
    let end = Timestamp::now();
    let rows = schema
        .client()
        .await
        .query(
            "SELECT s.account, p.at_ms FROM points p JOIN series s ON s.id = p.series_id
             WHERE s.metric = 'spend_period_to_date' AND p.at_ms >= $1 ORDER BY s.account, p.at_ms",
            &[&all_up.as_millisecond()],
        )
        .await
        .expect("points");
    let mut points: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for row in &rows {
        points.entry(row.get(0)).or_default().push(row.get(1));
    }
    assert_eq!(points.len(), ACCOUNTS);
    let mut widest = Duration::ZERO;
    for (account, times) in &points {
        let mut bounds = times.clone();
        bounds.push(end.as_millisecond());
        for pair in bounds.windows(2) {
            let gap = Duration::from_millis(u64::try_from(pair[1] - pair[0]).unwrap_or(0));
            widest = widest.max(gap);
            assert!(
                gap <= takeover_gap,
                "{account}: no data for {gap:?} (allowed {takeover_gap:?})"
            );
        }
    }
    let answered_before_kill = sim
        .polls()
        .iter()
        .filter(|p| p.at >= all_up && p.at < killed_at)
        .count();
    let stored_before_kill = points
        .values()
        .flatten()
        .filter(|t| **t < killed_at.as_millisecond())
        .count();
    // The victim's polls in flight at the kill (at most its concurrency, 4) were answered
    // but never stored.
    assert!(
        stored_before_kill + 4 >= answered_before_kill,
        "{stored_before_kill} points stored for {answered_before_kill} polls before the kill"
    );
    eprintln!(
        "cluster: run took {:?}; widest gap between an account's points {widest:?}",
        started.elapsed()
    );
}

/// Two replicas in `ha` mode cover the same accounts: both poll every account, each
/// notification is delivered once, and both push the alert to a real Alertmanager, which
/// shows it once (the labels carry no replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_pair_pages_once_and_alertmanager_shows_one_alert() {
    const ACCOUNTS: usize = 3;
    let Some(schema) = Schema::create("ha_pair").await else {
        return;
    };
    let am = RealAlertmanager::start().await;
    let (sim, sim_addr) = start_fleet_sim(ACCOUNTS).await;
    let extra = format!(
        r#"
[[receivers]]
[receivers.alertmanager]
name = "am"
urls = ["{}"]
timeout = "2s"
resend_interval = "1s"
{}
[[route.routes]]
receiver = "hook"
continue = true

[[route.routes]]
receiver = "am"
continue = true
"#,
        am.base, ONE_ALERT_PER_MESSAGE
    );
    let configs: Vec<TestConfig> = ["a", "b"]
        .into_iter()
        .map(|id| replica_config(sim_addr, &schema, id, "ha", ACCOUNTS, &extra))
        .collect();
    let a = Daemon::start(&configs[0]).await;
    let b = Daemon::start(&configs[1]).await;
    let from = Timestamp::now();
    polled_again(&sim, ACCOUNTS, from, 2, "polls by both").await;
    eventually(
        "both replicas polling every account",
        Duration::from_secs(20),
        || async {
            let pollers = pollers_since(&sim.polls(), from);
            pollers
                .values()
                .all(|p| p.contains(&user_agent("a")) && p.contains(&user_agent("b")))
                .then_some(())
        },
    )
    .await;
    let (sa, sb) = (status(&a).await.expect("a"), status(&b).await.expect("b"));
    assert_eq!(sa["mode"], "ha");
    assert_ne!(
        sa["delivers_notifications"], sb["delivers_notifications"],
        "exactly one of {sa} and {sb} delivers"
    );

    let account = sim::world::fleet_account_id(1);
    overspend(sim_addr, &account, "2000000").await;
    // One firing notification per receiver (webhook, Alertmanager), each delivered once.
    all_delivered(&schema, 2, "the page to both receivers").await;
    // Both replicas push the firing alert to Alertmanager (each resends it every second).
    for d in [&a, &b] {
        d.wait_metric(
            "resends accepted by Alertmanager",
            &[
                "spendwatch_alertmanager_resends_total",
                "outcome=\"delivered\"",
            ],
            |v| v >= 1.0,
        )
        .await;
    }
    let alerts = am.alerts().await;
    let ours: Vec<&serde_json::Value> = alerts
        .iter()
        .filter(|x| x["labels"]["account"] == account.as_str())
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "Alertmanager deduplicates the pair: {alerts:#?}"
    );
    assert!(
        ours[0]["labels"]
            .as_object()
            .is_some_and(|l| !l.keys().any(|k| k.contains("replica"))),
        "{}",
        ours[0]
    );

    overspend(sim_addr, &account, "-2000000").await;
    all_delivered(&schema, 4, "the resolution to both receivers").await;
    let delivered = deliveries(&sim);
    assert_eq!(
        delivered.len(),
        2,
        "one firing, one resolved: {delivered:#?}"
    );
    for (key, sends) in &delivered {
        assert_eq!(sends.len(), 1, "{key} delivered {} times", sends.len());
    }
    eventually(
        "the alert leaving Alertmanager",
        Duration::from_secs(20),
        || async {
            let alerts = am.alerts().await;
            (!alerts
                .iter()
                .any(|x| x["labels"]["account"] == account.as_str()))
            .then_some(())
        },
    )
    .await;
}
