//! Routing, grouping and silences through the real binary: a storm of 200 accounts is one
//! group message; `spendwatch silence add|ls|expire` mutes an alert and releases it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use spendwatch::model::Clock;
use spendwatch::sim::{self, Sim, receiver::ReceivedWebhook, world};

use crate::support::*;

const API_TOKEN: &str = "it-api-token-93c2";

/// The accounts a delivered webhook body tells about: one alert per body today, an
/// `alerts` array once the webhook renders whole groups.
fn accounts_in(hook: &ReceivedWebhook) -> Vec<String> {
    let body: serde_json::Value = serde_json::from_str(&hook.body).unwrap_or_default();
    match body["alerts"].as_array() {
        Some(alerts) => alerts
            .iter()
            .filter_map(|a| a["labels"]["account"].as_str().map(str::to_string))
            .collect(),
        None => body["labels"]["account"]
            .as_str()
            .map(|a| vec![a.to_string()])
            .unwrap_or_default(),
    }
}

fn storm_config(sim: SocketAddr, accounts: &[String]) -> TestConfig {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("api-key"), sim::DEFAULT_API_KEY).expect("write key");
    std::fs::write(dir.path().join("hook-secret"), WEBHOOK_SECRET).expect("write secret");
    let listen = free_addr();
    let list = accounts
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        r#"
[server]
listen = "{listen}"

[store.sqlite]
path = "state/spendwatch.db"

[evaluation]
interval = "1s"

[[sources]]
[sources.rackspace]
name = "rs"
username = "{user}"
api_key = {{ file = "api-key" }}
accounts = [{list}]
interval = "5s"
identity_url = "http://{sim}/v2.0/"
billing_url = "http://{sim}/v2/"
timeout = "5s"

# Every account is over this budget from its first poll: all of them fire together.
[[rules]]
[rules.budget]
name = "budget"
source = "rs"
amount = "1.00"
currency = "USD"
levels = [{{ percent = 100, severity = "critical" }}]

[[receivers]]
[receivers.webhook]
name = "hook"
url = "http://{sim}/_sim/webhook"
secret = {{ file = "hook-secret" }}

[route]
receiver = "hook"
group_by = ["alertname"]
group_wait = "15s"
group_interval = "1h"
"#,
        user = sim::DEFAULT_USERNAME,
    );
    let path = dir.path().join("spendwatch.toml");
    std::fs::write(&path, text).expect("write config");
    TestConfig { dir, path, listen }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_200_accounts_is_one_group_message() {
    init();
    let template = world::demo_world()
        .into_iter()
        .find(|a| a.id == "020-1001")
        .expect("demo account");
    let accounts: Vec<String> = (0..200).map(|i| format!("030-{i:04}")).collect();
    let world = accounts
        .iter()
        .map(|id| world::SimAccount {
            id: id.clone(),
            ..template.clone()
        })
        .collect();
    let sim = Sim::new(Clock::System, world);
    let (sim_addr, _task) = sim
        .start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("start simulator");
    let config = storm_config(sim_addr, &accounts);
    let daemon = Daemon::start(&config).await;

    daemon
        .wait_metric(
            "every account notified",
            &[
                "spendwatch_notifications_total",
                "receiver=\"hook\"",
                "outcome=\"delivered\"",
            ],
            |v| v >= 200.0,
        )
        .await;
    let text = daemon.metrics().await;
    assert_eq!(
        metric(
            &text,
            &[
                "spendwatch_notification_duration_seconds_count",
                "receiver=\"hook\""
            ]
        ),
        Some(1.0),
        "one group message for the whole storm"
    );
    assert_eq!(
        metric(
            &text,
            &["spendwatch_alerts", "rule=\"budget\"", "state=\"firing\""]
        ),
        Some(200.0)
    );

    // The receiver heard about every account exactly once.
    let mut told: BTreeMap<String, usize> = BTreeMap::new();
    for hook in sim.accepted_webhooks() {
        for account in accounts_in(&hook) {
            *told.entry(account).or_default() += 1;
        }
    }
    assert_eq!(told.len(), 200, "{told:?}");
    assert!(told.values().all(|n| *n == 1), "{told:?}");

    // The API shows one group holding all 200 firing alerts.
    let body: serde_json::Value = reqwest::get(format!("{}/api/v1/notifications", daemon.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let groups = body["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["members"].as_array().unwrap().len(), 200);
    assert_eq!(groups[0]["labels"]["alertname"], "budget");
    assert!(groups[0]["lastSent"].is_string());
}

fn cli(config: &TestConfig, args: &[&str], token: Option<&str>) -> (bool, String, String) {
    let mut all = vec!["silence", "--config", config.path.to_str().unwrap()];
    all.extend_from_slice(args);
    let env: Vec<(&str, &str)> = token
        .map(|t| vec![("SPENDWATCH_API_TOKEN", t)])
        .unwrap_or_default();
    let out = run_cli(&all, &env, None);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn firing_webhooks(sim: &Sim) -> usize {
    sim.accepted_webhooks()
        .iter()
        .filter(|h| {
            serde_json::from_str::<serde_json::Value>(&h.body)
                .map(|b| b["status"] == "firing")
                .unwrap_or(false)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_cli_mutes_an_alert_until_it_is_expired() {
    let (sim, sim_addr) = start_sim().await;
    let config = write_config(
        sim_addr,
        ConfigOptions {
            extra: "[api]\ntoken = { env = \"SPENDWATCH_IT_API_TOKEN\" }\n".into(),
            ..ConfigOptions::default()
        },
    );
    let daemon = Daemon::start_with_env(&config, &[("SPENDWATCH_IT_API_TOKEN", API_TOKEN)]).await;
    daemon.wait_first_poll().await;

    // Without the token the daemon refuses, and the CLI says what to set.
    let (ok, _, stderr) = cli(
        &config,
        &["add", "--matcher", "account=\"020-1001\"", "--comment", "x"],
        None,
    );
    assert!(!ok);
    assert!(
        stderr.contains("401") && stderr.contains("SPENDWATCH_API_TOKEN"),
        "{stderr}"
    );

    let (ok, stdout, stderr) = cli(
        &config,
        &[
            "add",
            "--matcher",
            "account=\"020-1001\"",
            "--matcher",
            "severity=~\"crit.*\"",
            "--duration",
            "2h",
            "--comment",
            "planned migration",
            "--author",
            "ana",
        ],
        Some(API_TOKEN),
    );
    assert!(ok, "{stderr}");
    let id = stdout.trim().to_string();
    assert_eq!(id.len(), 36, "prints the new silence's id: {stdout}");

    let (ok, table, stderr) = cli(&config, &["ls"], None);
    assert!(ok, "{stderr}");
    let row = table
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_default();
    assert!(
        row.contains("active")
            && row.contains("account=\"020-1001\" severity=~\"crit.*\"")
            && row.contains("ana")
            && row.contains("planned migration"),
        "{table}"
    );

    // The account overspends: the alert fires, its notification is held back.
    adjust(sim_addr, "020-1001", "6000.00").await;
    daemon
        .wait_metric(
            "notification suppressed",
            &[
                "spendwatch_notifications_total",
                "outcome=\"suppressed_silenced\"",
            ],
            |v| v == 1.0,
        )
        .await;
    let alerts: serde_json::Value = reqwest::get(format!("{}/api/v1/alerts", daemon.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alert = &alerts["data"]["alerts"][0];
    assert_eq!(alert["state"], "firing");
    assert_eq!(alert["silencedBy"], serde_json::json!([id]), "{alerts}");
    let held: serde_json::Value = reqwest::get(format!(
        "{}/api/v1/notifications?state=suppressed",
        daemon.base
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        held["data"]["notifications"][0]["suppressedBy"],
        format!("silence:{id}")
    );
    daemon
        .wait_for_more(
            "more evaluations while silenced",
            &["spendwatch_rule_evaluations_total"],
            3.0,
        )
        .await;
    assert_eq!(firing_webhooks(&sim), 0, "nothing sent while silenced");
    assert_eq!(
        metric(&daemon.metrics().await, &["spendwatch_silences_active"]),
        Some(1.0)
    );

    // Expired while the alert still fires: it is notified, once.
    let (ok, stdout, stderr) = cli(&config, &["expire", &id], Some(API_TOKEN));
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), format!("expired {id}"));
    eventually(
        "firing webhook after expiry",
        Duration::from_secs(30),
        || async { (firing_webhooks(&sim) == 1).then_some(()) },
    )
    .await;
    daemon
        .wait_metric(
            "silence no longer active",
            &["spendwatch_silences_active"],
            |v| v == 0.0,
        )
        .await;
    let (_, table, _) = cli(&config, &["ls"], None);
    assert!(!table.contains(&id), "ls hides expired silences: {table}");
    let (ok, json, _) = cli(&config, &["ls", "--all", "--json"], None);
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["status"]["state"], "expired");
    daemon
        .wait_for_more(
            "more evaluations after delivery",
            &["spendwatch_rule_evaluations_total"],
            3.0,
        )
        .await;
    assert_eq!(firing_webhooks(&sim), 1);
}
