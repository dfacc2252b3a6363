//! `spendwatch demo`: the whole pipeline with zero setup. The simulator and the pipeline
//! share a simulated clock (a billing month in about a minute by default); the config is
//! written to a temp dir and loaded through the normal loader; alert changes print as lines.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::alerting::{AlertEvent, Change};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::clock::Participant;
use crate::model::{AlertState, Clock};
use crate::notify::RetryPolicy;
use crate::notify::webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};
use crate::runtime::{RunOptions, Runtime, RuntimeError, Totals};
use crate::sim::{self, Sim};
use crate::store::Store;

pub const DEFAULT_DEMO_LISTEN: &str = "127.0.0.1:9750";
/// One 30-day month in 60 s.
pub const DEFAULT_SPEED: f64 = 43_200.0;
pub(crate) const WEBHOOK_SECRET: &str = "demo-webhook-signing-key";
/// The file in the demo's directory holding its API token (fresh for every run).
pub const API_TOKEN_FILE: &str = "api-token";

/// Midnight UTC on the first of `at`'s month: where the simulated month begins.
pub fn month_start(at: Timestamp) -> anyhow::Result<Timestamp> {
    let date = at.to_zoned(jiff::tz::TimeZone::UTC).date().first_of_month();
    Ok(date.to_zoned(jiff::tz::TimeZone::UTC)?.timestamp())
}

/// `timeout` is every source's per-request timeout.
fn config_text(
    sim_addr: SocketAddr,
    listen: SocketAddr,
    dir: &std::path::Path,
    timeout: &str,
) -> String {
    format!(
        r#"# Written by `spendwatch demo`; the same format `spendwatch run --config` reads.
[server]
listen = "{listen}"

[store.sqlite]
path = "{store}"

[evaluation]
interval = "1h"

[[sources]]
[sources.rackspace]
name = "rackspace"
username = "{user}"
api_key = {{ file = "{key_file}" }}
accounts = ["020-1001", "020-2002"]
interval = "1h"
identity_url = "http://{sim_addr}/v2.0/"
billing_url = "http://{sim_addr}/v2/"
page_size = 2
timeout = "{timeout}"

[[sources]]
[sources.prometheus]
name = "prometheus"
url = "http://{sim_addr}/"
step = "1h"
lookback = "6h"
interval = "1h"
timeout = "{timeout}"
queries = [
  {{ name = "requests", query = 'sum by (account) (increase(requests_total[1h]))', unit = "requests" }},
]

[[sources]]
[sources.sakura]
name = "sakura"
access_token = {{ file = "{sakura_token}" }}
access_token_secret = {{ file = "{sakura_secret}" }}
base_url = "http://{sim_addr}/cloud/zone/is1a/api/"
interval = "6h"
months = 1
timeout = "{timeout}"
# The simulator is local and the clock runs fast: pacing at 5/s would span hours of it.
request_interval = "1ms"

[[sources]]
[sources.racknap]
name = "racknap"
api_key = {{ file = "{key_file}" }}
base_url = "http://{sim_addr}/v1/"
interval = "1d"
timeout = "{timeout}"

[[sources]]
[sources.threescale]
name = "threescale"
base_url = "http://{sim_addr}/"
access_token = {{ file = "{threescale_token}" }}
months = 1
interval = "6h"
timeout = "{timeout}"

# The SAKURA billing doc's alert: spend relative to traffic, not a flat threshold.
# Spend per 1k requests per JST day against what the account's own history says.
[[rules]]
[rules.ratio]
name = "sakura-unit-cost"
numerator = {{ source = "sakura" }}
denominator = {{ source = "prometheus", match = {{ series = "requests" }} }}
accounts = ["000000526782"]
window = "1d"
window_offset = "9h"
per = 1000
baseline = {{ history = "14d", min_windows = 5, sensitivity = 4 }}
min_impact = 500
severity = "warning"

# 3scale bills per API hit: when traffic spikes, spend follows and unit cost holds.
[[rules]]
[rules.ratio]
name = "threescale-cost-per-hit"
numerator = {{ source = "threescale" }}
denominator = {{ source = "threescale", series = "usage_period_to_date", match = {{ unit = "hits" }} }}
window = "1d"
per = 1000
baseline = {{ history = "14d", min_windows = 5, sensitivity = 4 }}
min_impact = 5

# Statistical anomalies: hourly spend per account, and 3scale's cost per hit per 6 hours;
# the detectors' learned state is kept in the store between evaluations.
[[rules]]
[rules.anomaly]
name = "hourly-spend-anomaly"
series = {{ source = "rackspace" }}
window = "1h"
history = "7d"
direction = "up"
min_impact = "5.00"
for = "2h"
severity = "warning"

[[rules]]
[rules.anomaly]
name = "cost-per-hit-anomaly"
unit_cost_of = "threescale-cost-per-hit"
window = "6h"
history = "14d"
direction = "up"      # a traffic spike lowers the cost per hit; only a rise costs money
severity = "warning"

[[rules]]
[rules.budget]
name = "monthly-budget-usd"
source = "rackspace"
accounts = ["020-1001"]
amount = "3200.00"
currency = "USD"
forecast_window = "3d"
labels = {{ team = "platform" }}
annotations = {{ runbook = "https://wiki.example.com/runbooks/cloud-spend" }}
levels = [
  {{ percent = 50, severity = "info" }},
  {{ percent = 80, severity = "warning" }},
  {{ percent = 100, severity = "critical", basis = "forecast" }},
]

[[rules]]
[rules.budget]
name = "monthly-budget-gbp"
source = "rackspace"
accounts = ["020-2002"]
amount = 1000
currency = "GBP"
levels = [{{ percent = 100, severity = "critical", basis = "forecast" }}]

[[receivers]]
[receivers.webhook]
name = "ops-webhook"
url = "http://{sim_addr}/_sim/webhook"
secret = {{ file = "{secret_file}" }}

# On-call's Slack: the simulator's Slack Web API (a bot posts, then edits and replies in
# the thread when the alert group changes).
[[receivers]]
[receivers.slack]
name = "oncall-slack"
token = {{ file = "{slack_token}" }}
channel = "{slack_channel}"
api_url = "http://{sim_addr}/slack/api"

# Silencing from the alert pages (and POST /api/v1/silences) needs this bearer token.
[api]
token = {{ file = "{api_token_file}" }}

# Links in every message: the alert on this spendwatch, a Grafana panel.
[links]
external_url = "http://{listen}"
dashboard = "http://localhost:3000/d/spendwatch-overview?var-account={{{{ account }}}}"

# Timings in real seconds: the demo's clock runs days per minute.
[route]
receiver = "ops-webhook"
group_by = ["alertname", "account"]
group_wait = "1s"
group_interval = "2s"
[[route.routes]]
receiver = "ops-webhook"
continue = true
[[route.routes]]
receiver = "oncall-slack"
matchers = ['severity=~"warning|critical"']

# A budget forecast at 100 % makes the 80 % level of the same account redundant.
[[inhibit_rules]]
source_matchers = ['rule_type="budget"', 'level="100"']
target_matchers = ['rule_type="budget"', 'level="80"']
equal = ["alertname", "account"]
"#,
        store = dir.join("spendwatch.db").display(),
        user = sim::DEFAULT_USERNAME,
        key_file = dir.join("rackspace-api-key").display(),
        sakura_token = dir.join("sakura-token").display(),
        sakura_secret = dir.join("sakura-secret").display(),
        threescale_token = dir.join("threescale-token").display(),
        secret_file = dir.join("webhook-secret").display(),
        slack_token = dir.join("slack-token").display(),
        api_token_file = dir.join(API_TOKEN_FILE).display(),
        slack_channel = sim::slack::DEFAULT_CHANNEL,
    )
}

fn print_event(e: &AlertEvent) {
    let l = |k: &str| e.alert.labels.get(k).map(String::as_str).unwrap_or("-");
    let when = e.at.strftime("%Y-%m-%d %H:%M UTC");
    let what = match l("rule_type") {
        "budget" => {
            let basis = if l("basis") == "forecast" {
                "forecast"
            } else {
                "spend"
            };
            format!(
                "{} {} {basis} >= {}%",
                l("alertname"),
                l("account"),
                l("level")
            )
        }
        other => format!("{} {} ({other})", l("alertname"), l("account")),
    };
    println!(
        "{when}  {:<8} {:<8} {what}",
        e.change.as_str(),
        e.alert.severity.as_str()
    );
    if matches!(e.change, Change::Fired | Change::Resolved) {
        println!("                      {}", e.alert.summary);
    }
}

/// The demo's pipeline timings, in real time: the clock runs days per minute.
pub fn run_options() -> RunOptions {
    RunOptions {
        dispatch_interval: Duration::from_millis(200),
        retry: RetryPolicy {
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        },
    }
}

/// How to set the stage.
#[derive(Debug, Clone)]
pub struct StageOptions {
    pub listen: SocketAddr,
    pub speed: f64,
    pub keep: Option<PathBuf>,
    /// Every source's per-request timeout.
    pub source_timeout: Duration,
    /// Simulated days after the start of this month at which the clock starts.
    pub start_day: u32,
}

/// Aborts the simulator's server when dropped.
struct SimServer(tokio::task::JoinHandle<()>);

impl Drop for SimServer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What `demo` and `soak` share: the simulator on a lockstep clock, the generated config in
/// `dir`, the bound listener and the opened runtime, not yet started.
pub struct Stage {
    pub origin: Timestamp,
    pub clock: Clock,
    pub sim: Sim,
    pub sim_addr: SocketAddr,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub listener: tokio::net::TcpListener,
    pub metrics_addr: SocketAddr,
    pub runtime: Runtime,
    /// Holds the clock at `origin` until the pipeline runs; see [`Stage::start`].
    hold: Participant,
    /// Tasks of the pipeline that join the clock: one poller per source and the evaluator.
    pipeline_participants: usize,
    _server: SimServer,
    /// Removed on drop unless `keep` named a directory.
    _temp: tempfile::TempDir,
}

/// Starts the simulator, writes the config and its secret files, binds the listener and
/// opens the store.
pub async fn stage(options: &StageOptions) -> anyhow::Result<Stage> {
    let origin = month_start(Timestamp::now())?
        .checked_add(SignedDuration::from_hours(
            24 * i64::from(options.start_day),
        ))
        .context("--start-day is too far out")?;
    let clock = Clock::lockstep(origin, options.speed);
    // Without a participant the clock runs free: setting up would cost simulated hours (a
    // day at soak speeds) before the first poll.
    let hold = clock.participate();
    let sim = Sim::new(clock.clone(), sim::world::demo_world());
    let (sim_addr, sim_task) = sim
        .start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("starting the simulator")?;
    let server = SimServer(sim_task);

    // One garbled RackNap answer on the first poll shows the failure path: the poll is
    // counted under `spendwatch_poll_errors_total{reason="malformed"}`, nothing is stored,
    // and the next interval polls again (dashboards and rules have an error to show).
    sim.inject_fault(sim::FaultRequest {
        api: "racknap".into(),
        fault: sim::FaultKind::Malformed,
        count: 1,
        delay_ms: None,
    });

    let temp = tempfile::tempdir().context("creating a temp dir")?;
    let dir = match &options.keep {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => temp.path().to_path_buf(),
    };
    std::fs::write(dir.join("rackspace-api-key"), sim::DEFAULT_API_KEY)?;
    std::fs::write(dir.join("webhook-secret"), WEBHOOK_SECRET)?;
    std::fs::write(dir.join("sakura-token"), sim::sakura::DEMO_ACCESS_TOKEN)?;
    std::fs::write(
        dir.join("sakura-secret"),
        sim::sakura::DEMO_ACCESS_TOKEN_SECRET,
    )?;
    std::fs::write(dir.join("threescale-token"), sim::threescale::ACCESS_TOKEN)?;
    std::fs::write(dir.join("slack-token"), sim::slack::DEFAULT_BOT_TOKEN)?;
    // Random per run: `--listen 0.0.0.0:…` must not expose a token anyone can read here.
    let api_token = hex::encode(rand::random::<[u8; 16]>());
    std::fs::write(dir.join(API_TOKEN_FILE), &api_token)?;
    let config_path = dir.join("spendwatch.toml");
    let timeout = humantime::format_duration(options.source_timeout).to_string();
    std::fs::write(
        &config_path,
        config_text(sim_addr, options.listen, &dir, &timeout),
    )?;
    let config = Config::load(&config_path).map_err(|e| anyhow::anyhow!("demo config: {e}"))?;

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| {
            format!(
                "binding {} (use --listen 127.0.0.1:0 for any free port)",
                options.listen
            )
        })?;
    let metrics_addr = listener.local_addr()?;
    let pipeline_participants = config.sources.len() + 1;
    let runtime = Runtime::open(config, clock.clone()).context("opening the store")?;
    Ok(Stage {
        origin,
        clock,
        sim,
        sim_addr,
        dir,
        config_path,
        listener,
        metrics_addr,
        runtime,
        hold,
        pipeline_participants,
        _server: server,
        _temp: temp,
    })
}

impl Stage {
    /// Starts the pipeline and lets the clock go once its pollers and evaluator have joined
    /// it (or after a few seconds, whatever they do).
    pub async fn start(
        self,
        events: Option<mpsc::UnboundedSender<AlertEvent>>,
    ) -> (Started, JoinHandle<Result<(), RuntimeError>>) {
        let (stop, stop_rx) = watch::channel(false);
        let totals = self.runtime.totals();
        let store = self.runtime.store();
        let metrics = self.runtime.metrics();
        let pipeline =
            tokio::spawn(
                self.runtime
                    .run(self.listener, stop_rx, events, run_options()),
            );
        // The hold, and every pipeline task.
        let joined = 1 + self.pipeline_participants;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.clock.participants() < joined && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(self.hold);
        let started = Started {
            origin: self.origin,
            clock: self.clock,
            sim: self.sim,
            sim_addr: self.sim_addr,
            dir: self.dir,
            config_path: self.config_path,
            metrics_addr: self.metrics_addr,
            totals,
            store,
            metrics,
            stop,
            _server: self._server,
            _temp: self._temp,
        };
        (started, pipeline)
    }
}

/// A stage whose pipeline runs; `stop` ends it.
pub struct Started {
    pub origin: Timestamp,
    pub clock: Clock,
    pub sim: Sim,
    pub sim_addr: SocketAddr,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub metrics_addr: SocketAddr,
    pub totals: Arc<Totals>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub stop: watch::Sender<bool>,
    _server: SimServer,
    _temp: tempfile::TempDir,
}

/// The polls, evaluations and alerts of a run (the first lines of the summary).
pub fn print_pipeline_summary(
    totals: &Totals,
    store: &dyn Store,
    elapsed_days: f64,
) -> anyhow::Result<()> {
    let firing = store
        .load_alerts()?
        .iter()
        .filter(|a| a.state == AlertState::Firing)
        .count();
    println!("\nsummary after {elapsed_days:.1} simulated days:");
    println!(
        "  polls: {} ok, {} failed; evaluations: {}",
        totals.polls_ok.load(Ordering::Relaxed),
        totals.polls_failed.load(Ordering::Relaxed),
        totals.evaluations.load(Ordering::Relaxed)
    );
    println!(
        "  alerts: {} fired, {} resolved, {} firing now",
        totals.fired.load(Ordering::Relaxed),
        totals.resolved.load(Ordering::Relaxed),
        firing
    );
    Ok(())
}

/// The end-of-run summary of `demo`.
pub fn print_summary(
    sim: &Sim,
    totals: &Totals,
    store: &dyn Store,
    elapsed_days: f64,
) -> anyhow::Result<()> {
    let delivered = sim.accepted_webhooks();
    let secret = crate::config::Secret::new(WEBHOOK_SECRET);
    let valid = delivered
        .iter()
        .filter(|w| {
            let ts = w.headers.get(&TIMESTAMP_HEADER.to_ascii_lowercase()).and_then(|t| t.parse().ok());
            let sig = w.headers.get(&SIGNATURE_HEADER.to_ascii_lowercase());
            matches!((ts, sig), (Some(ts), Some(sig)) if verify(&secret, ts, w.body.as_bytes(), sig))
        })
        .count();
    print_pipeline_summary(totals, store, elapsed_days)?;
    let outbox = store.outbox_stats()?;
    println!(
        "  webhook: {} delivered ({valid} with a valid signature), {} pending in the outbox",
        delivered.len(),
        outbox.pending
    );
    let slack = sim.slack.requests();
    let count = |method: &str| {
        slack
            .iter()
            .filter(|r| r.method == method && r.status == 200 && r.thread_ts.is_none())
            .count()
    };
    println!(
        "  slack:   {} messages posted, {} updated, {} thread replies",
        count("chat.postMessage"),
        count("chat.update"),
        slack
            .iter()
            .filter(|r| r.status == 200 && r.thread_ts.is_some())
            .count()
    );
    Ok(())
}

pub async fn run(
    listen: SocketAddr,
    duration: Option<Duration>,
    speed: f64,
    keep: Option<PathBuf>,
    interrupted: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let stage = stage(&StageOptions {
        listen,
        speed,
        keep: keep.clone(),
        source_timeout: Duration::from_secs(5),
        start_day: 0,
    })
    .await?;
    let days_per_minute = speed * 60.0 / 86_400.0;
    println!(
        "spendwatch demo — simulated billing APIs, {days_per_minute:.1} simulated days per real minute"
    );
    println!(
        "  simulated clock starts {}",
        stage.origin.strftime("%Y-%m-%d %H:%M UTC")
    );
    println!("  pages:     http://{}/", stage.metrics_addr);
    println!("  metrics:   http://{}/metrics", stage.metrics_addr);
    let api_token = std::fs::read_to_string(stage.dir.join(API_TOKEN_FILE))?;
    println!("  api token: {api_token}  (silence alerts from their pages)");
    println!(
        "  simulator: http://{}   config: {}",
        stage.sim_addr,
        stage.config_path.display()
    );
    println!("  sources: Rackspace, SAKURA Cloud, RackNap, 3scale, Prometheus (all simulated)");
    println!(
        "  watching: Rackspace 020-1001 against $3,200/month (runaway servers on days 10–12),"
    );
    println!(
        "            SAKURA 000000526782 spend per 1k requests (an extra server on JST days 18–20),"
    );
    println!(
        "            3scale buyers' cost per 1k hits (traffic spikes ×6 on days 12–14: no alert)"
    );
    println!("  fault: RackNap garbles its first answer (one failed poll, retried next interval)");
    match duration {
        Some(d) => println!("  running for {}\n", humantime::format_duration(d)),
        None => println!("  running until Ctrl-C\n"),
    }

    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let (run, pipeline) = stage.start(Some(events_tx)).await;
    let printer = tokio::spawn(async move {
        while let Some(e) = events_rx.recv().await {
            print_event(&e);
        }
    });

    // The run covers `duration × speed` of simulated time; on a busy machine the lockstep
    // clock slows down, so that takes longer but shows the same thing.
    let timer = async {
        match duration {
            Some(d) => {
                let span =
                    SignedDuration::try_from(d.mul_f64(speed)).unwrap_or(SignedDuration::MAX);
                run.clock
                    .wait_until(run.origin.saturating_add(span).unwrap_or(Timestamp::MAX))
                    .await
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = timer => {}
        _ = interrupted => {}
    }
    let ended = run.clock.now();
    let _ = run.stop.send(true);
    pipeline.await.context("pipeline task")??;
    let _ = printer.await;

    let elapsed_days = ended.duration_since(run.origin).as_secs_f64() / 86_400.0;
    print_summary(&run.sim, &run.totals, run.store.as_ref(), elapsed_days)?;
    if keep.is_some() {
        println!("  store and config kept in {}", run.dir.display());
    }
    Ok(())
}
