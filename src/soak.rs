//! `spendwatch soak`: the demo's pipeline (same simulator, config and runtime) for many
//! simulated weeks with faults on every source and outages of both receivers, then checks
//! what must hold however long it runs: memory stays bounded, no notification is lost, nothing
//! panics.
//!
//! - Every data request of every billing API gets a fault with probability `fault_rate`, of a
//!   kind drawn from all of them (malformed, truncated, HTML, 401, 429, 500, 503, timeout,
//!   empty period); the schedule is seeded.
//! - In real time (notifications are timed in real seconds), the webhook receiver answers
//!   500, 503 or 429 for 0.5–4 s out of every few seconds, and the fake Slack fails the next
//!   1–3 requests (rate limit, `internal_error`, rarely the permanent `invalid_blocks`).
//! - RSS (`VmRSS`) is sampled every simulated day; WARN and ERROR log events are counted by
//!   message, panics by a hook.
//! - At the end the pipeline stops, faults stop, and the outbox is drained against healthy
//!   receivers. Every outbox row must then be delivered (and its idempotency key received by
//!   its receiver), dead with a reason, or skipped/held back by a mute with a reason.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::watch;
use tracing::Level;
use tracing_subscriber::layer::Context as LayerContext;

use crate::config::Config;
use crate::config::Secret;
use crate::demo::{self, Stage, StageOptions};
use crate::model::Clock;
use crate::notify::Dispatcher;
use crate::notify::webhook::{IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};
use crate::sim::receiver::ReceivedWebhook;
use crate::sim::slack::SlackRequest;
use crate::sim::{FaultKind, RandomFaults, Sim};
use crate::store::{GroupState, OutboxEntry, RowState, Store};

/// Per-request timeout of every source in a soak: a `Timeout` fault holds its answer back
/// [`TIMEOUT_FAULT_DELAY`], so each one costs about a second of real time, not the demo's 5.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(1);
const TIMEOUT_FAULT_DELAY: Duration = Duration::from_millis(1_500);
/// How long the final drain may take: longer than the demo's largest retry backoff (5 s)
/// plus `group_wait` and `group_interval`.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);
const MIB: f64 = 1024.0 * 1024.0;

/// Midnight of simulated day `day`.
fn day_at(origin: Timestamp, day: u32) -> Timestamp {
    origin
        .checked_add(SignedDuration::from_hours(24 * i64::from(day)))
        .unwrap_or(Timestamp::MAX)
}

#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub listen: SocketAddr,
    /// Simulated span.
    pub days: u32,
    /// Day of the month the simulated clock starts on (0: the first).
    pub start_day: u32,
    /// Upper bound of simulated seconds per real second (the lockstep clock waits for work).
    pub speed: f64,
    /// Probability of a fault on each data request of each billing API.
    pub fault_rate: f64,
    /// Webhook and Slack failures on and off while it runs.
    pub receiver_faults: bool,
    pub seed: u64,
    /// RSS samples before this simulated day are warm-up (history windows filling up).
    pub warmup_days: u32,
    /// Largest allowed RSS growth after warm-up.
    pub rss_growth_limit_mib: f64,
    pub keep: Option<PathBuf>,
}

static PANICS: AtomicU64 = AtomicU64::new(0);

/// Counts every panic of the process (and logs it at ERROR), then runs the previous hook.
fn count_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::Relaxed);
            tracing::error!(panic = %info, "Panicked.");
            previous(info);
        }));
    });
}

/// A tracing layer counting events by level, target and message (WARN and ERROR when
/// installed with [`crate::cli::init_logging_with`]).
#[derive(Debug, Clone, Default)]
pub struct LogCounts(Arc<Mutex<BTreeMap<(Level, String), u64>>>);

impl LogCounts {
    /// (level, "target: message", count), most frequent first.
    pub fn snapshot(&self) -> Vec<(Level, String, u64)> {
        let counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(Level, String, u64)> = counts
            .iter()
            .map(|((level, what), n)| (*level, what.clone(), *n))
            .collect();
        all.sort_by(|a, b| b.2.cmp(&a.2).then(a.1.cmp(&b.1)));
        all
    }

    pub fn total(&self, level: Level) -> u64 {
        let counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .iter()
            .filter(|((l, _), _)| *l == level)
            .map(|(_, n)| n)
            .sum()
    }
}

/// Takes the `message` field of an event.
struct MessageOf(String);

impl tracing::field::Visit for MessageOf {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogCounts {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        let mut message = MessageOf(String::new());
        event.record(&mut message);
        let meta = event.metadata();
        let key = (*meta.level(), format!("{}: {}", meta.target(), message.0));
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(key).or_default() += 1;
    }
}

/// Resident memory of this process in KiB (`VmRSS`, or `VmHWM` for the peak), Linux only.
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RssSample {
    /// Simulated days since the start.
    pub day: f64,
    pub rss_kib: u64,
    /// The anonymous part (heap and stacks; `RssAnon`): what a leak grows. The rest is
    /// mostly the binary's own pages.
    pub anon_kib: u64,
    pub wall_seconds: f64,
}

/// The RSS check: growth from the first sample after warm-up to the largest one after it.
#[derive(Debug, Clone, PartialEq)]
pub struct RssCheck {
    pub first: Option<RssSample>,
    pub max: Option<RssSample>,
    pub last: Option<RssSample>,
    pub growth_mib: f64,
    /// Least-squares slope after warm-up, MiB per 30 simulated days.
    pub trend_mib_per_30_days: f64,
    pub limit_mib: f64,
    pub passed: bool,
}

pub fn check_rss(samples: &[RssSample], warmup_days: f64, limit_mib: f64) -> RssCheck {
    let after: Vec<&RssSample> = samples.iter().filter(|s| s.day >= warmup_days).collect();
    let first = after.first().map(|s| **s);
    let last = after.last().map(|s| **s);
    let max = after.iter().max_by_key(|s| s.rss_kib).map(|s| **s);
    let growth_mib = match (first, max) {
        (Some(f), Some(m)) => (m.rss_kib as f64 - f.rss_kib as f64) * 1024.0 / MIB,
        _ => 0.0,
    };
    let n = after.len() as f64;
    let trend_mib_per_30_days = if after.len() >= 2 {
        let mean_x = after.iter().map(|s| s.day).sum::<f64>() / n;
        let mean_y = after.iter().map(|s| s.rss_kib as f64 / 1024.0).sum::<f64>() / n;
        let sxy: f64 = after
            .iter()
            .map(|s| (s.day - mean_x) * (s.rss_kib as f64 / 1024.0 - mean_y))
            .sum();
        let sxx: f64 = after.iter().map(|s| (s.day - mean_x).powi(2)).sum();
        if sxx > 0.0 { sxy / sxx * 30.0 } else { 0.0 }
    } else {
        0.0
    };
    RssCheck {
        first,
        max,
        last,
        growth_mib,
        trend_mib_per_30_days,
        limit_mib,
        // Two samples after warm-up at least, or there is nothing to compare.
        passed: after.len() >= 2 && growth_mib <= limit_mib,
    }
}

/// Idempotency keys a receiver acknowledged, and how often each group message was accepted.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Received {
    /// Keys of every alert carried by an accepted message.
    pub keys: BTreeSet<String>,
    /// Group message key → accepted deliveries of it.
    pub messages: BTreeMap<String, u64>,
    /// Requests refused by an injected failure.
    pub refused: u64,
    /// Accepted webhooks whose signature verifies.
    pub valid_signatures: u64,
}

impl Received {
    /// Accepted messages beyond the first of the same group message.
    pub fn duplicates(&self) -> u64 {
        self.messages.values().map(|n| n.saturating_sub(1)).sum()
    }
}

impl Received {
    /// Folds in what the simulator's webhook receiver got: a group of one carries its
    /// alert's key at the top level, a larger group each alert's key under `alerts`.
    pub fn add_webhooks(&mut self, requests: &[ReceivedWebhook]) {
        let secret = Secret::new(demo::WEBHOOK_SECRET);
        let header = |name: &str| {
            let name = name.to_ascii_lowercase();
            move |r: &ReceivedWebhook| r.headers.get(&name).cloned()
        };
        let (key_of, timestamp_of, signature_of) = (
            header(IDEMPOTENCY_HEADER),
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
        );
        for request in requests {
            if !(200..300).contains(&request.answered) {
                self.refused += 1;
                continue;
            }
            if let Some(key) = key_of(request) {
                *self.messages.entry(key).or_default() += 1;
            }
            let timestamp = timestamp_of(request).and_then(|t| t.parse().ok());
            if let (Some(ts), Some(sig)) = (timestamp, signature_of(request))
                && verify(&secret, ts, request.body.as_bytes(), &sig)
            {
                self.valid_signatures += 1;
            }
            let Ok(body) = serde_json::from_str::<serde_json::Value>(&request.body) else {
                continue;
            };
            match body.get("alerts").and_then(|a| a.as_array()) {
                Some(alerts) => self.keys.extend(
                    alerts
                        .iter()
                        .filter_map(|a| a.get("idempotencyKey")?.as_str().map(str::to_string)),
                ),
                None => self.keys.extend(
                    body.get("idempotencyKey")
                        .and_then(|k| k.as_str())
                        .map(str::to_string),
                ),
            }
        }
    }

    /// Folds in what the fake Slack got. Every acknowledged send ends with exactly one
    /// accepted top-level post or thread reply, so those count the messages; an update that
    /// was accepted before its reply failed still showed the keys.
    pub fn add_slack(&mut self, requests: &[SlackRequest]) {
        for request in requests {
            if request.status != 200 || request.error.is_some() {
                self.refused += 1;
                continue;
            }
            let Some(payload) = request
                .metadata
                .as_ref()
                .and_then(|m| m.get("event_payload"))
            else {
                continue;
            };
            let text = |name: &str| payload.get(name).and_then(|v| v.as_str()).unwrap_or("");
            self.keys.extend(
                text("alert_keys")
                    .split(',')
                    .filter(|k| !k.is_empty())
                    .map(str::to_string),
            );
            let completes_a_send = request.method == "chat.postMessage";
            if completes_a_send && !text("idempotency_key").is_empty() {
                *self
                    .messages
                    .entry(text("idempotency_key").to_string())
                    .or_default() += 1;
            }
        }
    }
}

/// What both receivers acknowledged, folded in as the run goes: the simulator's request logs
/// are taken (emptied) every simulated day, so the harness's records do not grow with the
/// run and count against the RSS being checked.
#[derive(Debug, Default, Clone)]
pub struct Deliveries {
    pub webhook: Received,
    pub slack: Received,
}

impl Deliveries {
    pub fn collect(&mut self, sim: &Sim) {
        self.webhook.add_webhooks(&sim.take_webhook_requests());
        self.slack.add_slack(&sim.slack.take_requests());
    }
}

/// Every outbox row accounted for.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NotificationCheck {
    pub enqueued: usize,
    pub delivered: usize,
    /// Dead rows by their recorded error.
    pub dead: BTreeMap<String, usize>,
    /// Skipped or still held back (suppressed) rows, by what muted them.
    pub muted: BTreeMap<String, usize>,
    /// Rows still pending after the drain.
    pub stuck: Vec<String>,
    /// Delivered rows whose key the receiver never got.
    pub lost: Vec<String>,
    /// Dead or muted rows without a reason.
    pub unexplained: Vec<String>,
    /// Keys received that no outbox row has.
    pub unexpected: Vec<String>,
    pub duplicates: u64,
}

impl NotificationCheck {
    pub fn passed(&self) -> bool {
        self.enqueued > 0
            && self.stuck.is_empty()
            && self.lost.is_empty()
            && self.unexplained.is_empty()
            && self.unexpected.is_empty()
    }
}

/// Accounts for every row: `received` maps a receiver's name to what it acknowledged.
pub fn check_notifications(
    rows: &[OutboxEntry],
    received: &BTreeMap<String, Received>,
) -> NotificationCheck {
    let mut check = NotificationCheck {
        enqueued: rows.len(),
        ..Default::default()
    };
    let empty = Received::default();
    for row in rows {
        let n = &row.notification;
        let key = n.idempotency_key.clone();
        match row.state {
            RowState::Delivered => {
                check.delivered += 1;
                if !received
                    .get(&n.receiver)
                    .unwrap_or(&empty)
                    .keys
                    .contains(&key)
                {
                    check.lost.push(key);
                }
            }
            RowState::Dead => match &row.last_error {
                Some(e) => *check.dead.entry(e.clone()).or_default() += 1,
                None => check.unexplained.push(key),
            },
            RowState::Skipped | RowState::Suppressed => match &row.suppressed_by {
                Some(by) => {
                    let note = format!("{} ({by})", row.state.as_str());
                    *check.muted.entry(note).or_default() += 1;
                }
                None => check.unexplained.push(key),
            },
            RowState::Pending => check.stuck.push(key),
        }
    }
    let known: BTreeSet<&str> = rows
        .iter()
        .map(|r| r.notification.idempotency_key.as_str())
        .collect();
    for r in received.values() {
        check.duplicates += r.duplicates();
        check.unexpected.extend(
            r.keys
                .iter()
                .filter(|k| !known.contains(k.as_str()))
                .cloned(),
        );
    }
    check
}

/// Why each row still pending when the pipeline stopped had not gone out yet.
fn pending_at_stop(
    rows: &[OutboxEntry],
    groups: &[GroupState],
    now: Timestamp,
) -> BTreeMap<&'static str, usize> {
    let after = |t: Timestamp, ms: u64| {
        t.checked_add(SignedDuration::from_millis(
            i64::try_from(ms).unwrap_or(i64::MAX),
        ))
        .unwrap_or(Timestamp::MAX)
    };
    let mut why = BTreeMap::new();
    for row in rows.iter().filter(|r| r.state == RowState::Pending) {
        let group = groups
            .iter()
            .find(|g| g.receiver == row.notification.receiver && g.settings.key == row.group.key);
        let reason = match group {
            Some(g) if g.next_attempt.is_some_and(|t| t > now) => "waiting to retry",
            Some(g)
                if g.last_sent
                    .is_some_and(|t| after(t, row.group.group_interval_ms) > now) =>
            {
                "inside group_interval"
            }
            _ if after(row.pending_since, row.group.group_wait_ms) > now => "inside group_wait",
            _ => "due (the stop came first)",
        };
        *why.entry(reason).or_default() += 1;
    }
    why
}

/// Counters of one family from the text exposition: label set → value.
fn counters(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('{') else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        // Label values here are source, receiver and reason names: no quotes or commas.
        let labels = labels
            .split(',')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                Some((k.to_string(), v.trim_matches('"').to_string()))
            })
            .collect();
        out.push((labels, value));
    }
    out
}

/// `outer label → inner label → value`, for a two-label counter.
fn by_two(
    text: &str,
    name: &str,
    outer: &str,
    inner: &str,
) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut table: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (labels, value) in counters(text, name) {
        let (Some(o), Some(i)) = (labels.get(outer), labels.get(inner)) else {
            continue;
        };
        *table
            .entry(o.clone())
            .or_default()
            .entry(i.clone())
            .or_default() += value as u64;
    }
    table
}

/// ` (a 1, b 2)`, or nothing when empty.
fn describe<K: std::fmt::Display, V: std::fmt::Display>(counts: &BTreeMap<K, V>) -> String {
    if counts.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!(" ({})", parts.join(", "))
}

fn mib(kib: u64) -> f64 {
    kib as f64 * 1024.0 / MIB
}

/// Sleeps `ms` of real time; true when `stop` came first.
async fn pause(stop: &mut watch::Receiver<bool>, ms: u64) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}

/// Webhook outages and Slack failures in real time, until `stop`. Returns the outages.
async fn receiver_faults(sim: Sim, seed: u64, mut stop: watch::Receiver<bool>) -> u64 {
    // Its own stream: the request faults draw from `seed` itself.
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_4ec1);
    let mut outages = 0;
    loop {
        if pause(&mut stop, rng.random_range(2_000..8_000)).await {
            return outages;
        }
        let status = [500, 503, 429][rng.random_range(0..3)];
        sim.set_webhook_answer(Some(status));
        outages += 1;
        let stopped = pause(&mut stop, rng.random_range(500..4_000)).await;
        sim.set_webhook_answer(None);
        if stopped {
            return outages;
        }
        // Slack's faults are per request: queue the next ones only when the last are used up.
        if sim.slack.pending_faults() == 0 {
            let count = rng.random_range(1..=3);
            match rng.random_range(0..20) {
                // Rarely a permanent refusal, so dead-lettering is exercised too.
                0 => sim.slack.fail_next(None, "invalid_blocks", 1),
                1..=9 => sim.slack.rate_limit_next(count, 1),
                _ => sim.slack.fail_next(None, "internal_error", count),
            }
        }
    }
}

/// Delivers what is left in the outbox with healthy receivers, until nothing is pending or
/// the deadline passes. Returns the passes made.
async fn drain(config_path: &Path, stage_store: Arc<dyn Store>) -> anyhow::Result<usize> {
    let config = Config::load(config_path).map_err(|e| anyhow::anyhow!("soak config: {e}"))?;
    let dispatcher = Dispatcher::new(
        &config.receivers,
        config.inhibit_rules.clone(),
        stage_store.clone(),
        Arc::new(crate::metrics::Metrics::new()),
        demo::run_options().retry,
    )?;
    let deadline = Instant::now() + DRAIN_DEADLINE;
    let mut passes = 0;
    loop {
        dispatcher.deliver_due().await?;
        passes += 1;
        if stage_store.outbox_stats()?.pending == 0 || Instant::now() >= deadline {
            return Ok(passes);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn run(
    options: SoakOptions,
    logs: LogCounts,
    interrupted: impl Future<Output = ()>,
) -> anyhow::Result<bool> {
    count_panics();
    let started = Instant::now();
    let stage: Stage = demo::stage(&StageOptions {
        listen: options.listen,
        speed: options.speed,
        keep: options.keep.clone(),
        source_timeout: SOURCE_TIMEOUT,
        start_day: options.start_day,
    })
    .await?;
    println!(
        "spendwatch soak — {} simulated days, faults on {:.0} % of billing API requests, seed {}",
        options.days,
        options.fault_rate * 100.0,
        options.seed
    );
    println!(
        "  simulated clock starts {}",
        stage.origin.strftime("%Y-%m-%d %H:%M UTC")
    );
    println!("  metrics:   http://{}/metrics", stage.metrics_addr);
    println!(
        "  simulator: http://{}   config: {}",
        stage.sim_addr,
        stage.config_path.display()
    );
    println!(
        "  receivers: {}\n",
        if options.receiver_faults {
            "webhook outages (500/503/429) and Slack failures (429, internal_error, invalid_blocks)"
        } else {
            "healthy"
        }
    );

    stage.sim.set_random_faults(Some(RandomFaults {
        rate: options.fault_rate,
        kinds: FaultKind::ALL.to_vec(),
        delay_ms: Some(TIMEOUT_FAULT_DELAY.as_millis() as u64),
        seed: options.seed,
    }));
    let (run, pipeline) = stage.start(None).await;
    let (origin, clock, sim) = (run.origin, run.clock.clone(), run.sim.clone());
    let (totals, store, metrics) = (run.totals.clone(), run.store.clone(), run.metrics.clone());
    let (faults_stop_tx, faults_stop_rx) = watch::channel(false);
    let outages = options
        .receiver_faults
        .then(|| tokio::spawn(receiver_faults(sim.clone(), options.seed, faults_stop_rx)));

    // One RSS sample per simulated day (day 0 included); the clock is not held back for it.
    let samples = Arc::new(Mutex::new(Vec::new()));
    let deliveries = Arc::new(Mutex::new(Deliveries::default()));
    let sampler = tokio::spawn(
        Sampler {
            clock: clock.clone(),
            origin,
            days: options.days,
            started,
            sim: sim.clone(),
            deliveries: deliveries.clone(),
            samples: samples.clone(),
            totals: totals.clone(),
        }
        .run(),
    );
    let collect = || {
        deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .collect(&sim)
    };

    let end = day_at(origin, options.days);
    tokio::select! {
        _ = clock.wait_until(end) => {}
        _ = interrupted => println!("interrupted: checking what ran so far"),
    }
    let ended = clock.now();
    let elapsed_days = ended.duration_since(origin).as_secs_f64() / 86_400.0;
    sampler.abort();
    collect();
    let mut samples = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(rss_kib) = proc_status_kib("VmRSS") {
        samples.push(RssSample {
            day: elapsed_days,
            rss_kib,
            anon_kib: proc_status_kib("RssAnon").unwrap_or(0),
            wall_seconds: started.elapsed().as_secs_f64(),
        });
    }
    let peak_kib = proc_status_kib("VmHWM");

    // Stop the pipeline first (its own last pass runs against whatever the receivers do),
    // then the faults, then account for what is still open and drain it.
    let _ = run.stop.send(true);
    pipeline.await.context("pipeline task")??;
    let run_wall = started.elapsed();
    let _ = faults_stop_tx.send(true);
    let outages = match outages {
        Some(task) => task.await.unwrap_or(0),
        None => 0,
    };
    sim.set_random_faults(None);
    sim.clear_faults();
    sim.slack.clear_faults();
    sim.set_webhook_answer(None);
    let at_stop = store.open_outbox(usize::MAX >> 1)?;
    let groups = store.load_groups()?;
    let why_pending = pending_at_stop(&at_stop, &groups, Timestamp::now());
    let suppressed_at_stop = at_stop
        .iter()
        .filter(|r| r.state == RowState::Suppressed)
        .count();
    let passes = drain(&run.config_path, store.clone()).await?;
    let metrics_text = metrics.render();

    let rows = store.list_outbox(None, usize::MAX >> 1)?;
    collect();
    let Deliveries { webhook, slack } =
        deliveries.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let received = BTreeMap::from([
        ("ops-webhook".to_string(), webhook),
        ("oncall-slack".to_string(), slack),
    ]);
    let notifications = check_notifications(&rows, &received);
    let rss = check_rss(
        &samples,
        f64::from(options.warmup_days),
        options.rss_growth_limit_mib,
    );
    let panics = PANICS.load(Ordering::Relaxed);

    demo::print_pipeline_summary(&totals, store.as_ref(), elapsed_days)?;
    let mut out = String::new();
    writeln!(
        out,
        "\nsoak report: {elapsed_days:.1} simulated days in {:.0} s of wall time (then {passes} drain passes)",
        run_wall.as_secs_f64()
    )?;
    let stats = sim.stats();
    writeln!(out, "  faults served: {}", stats.faults_served)?;
    for (api, kinds) in &stats.faults_by_api {
        writeln!(
            out,
            "    {api}: {}{}",
            kinds.values().sum::<u64>(),
            describe(kinds)
        )?;
    }
    writeln!(out, "  polls by source and outcome:")?;
    for (source, outcomes) in by_two(&metrics_text, "spendwatch_polls_total", "source", "outcome") {
        let ok = outcomes.get("success").copied().unwrap_or(0);
        let failed: BTreeMap<String, u64> = outcomes
            .into_iter()
            .filter(|(k, _)| k != "success")
            .collect();
        writeln!(
            out,
            "    {source}: {ok} ok, {} failed{}",
            failed.values().sum::<u64>(),
            describe(&failed)
        )?;
    }
    writeln!(
        out,
        "  receivers: {outages} webhook outages; refused requests: webhook {}, slack {}",
        received["ops-webhook"].refused, received["oncall-slack"].refused
    )?;
    for (receiver, reasons) in by_two(
        &metrics_text,
        "spendwatch_notification_failures_total",
        "receiver",
        "reason",
    ) {
        writeln!(out, "    failed sends, {receiver}{}", describe(&reasons))?;
    }
    writeln!(
        out,
        "  notifications: {} enqueued, {} delivered, {} dead, {} muted; when the pipeline stopped {} were pending{} and {} suppressed",
        notifications.enqueued,
        notifications.delivered,
        notifications.dead.values().sum::<usize>(),
        notifications.muted.values().sum::<usize>(),
        why_pending.values().sum::<usize>(),
        describe(&why_pending),
        suppressed_at_stop
    )?;
    if notifications.enqueued == 0 {
        writeln!(
            out,
            "    nothing was enqueued, so nothing could be checked: run longer (incidents start on day 10)"
        )?;
    }
    for (reason, n) in &notifications.dead {
        writeln!(out, "    dead ({n}): {reason}")?;
    }
    for (reason, n) in &notifications.muted {
        writeln!(out, "    {reason}: {n}")?;
    }
    for (name, r) in &received {
        writeln!(
            out,
            "    {name}: {} keys received in {} messages, {} duplicate messages",
            r.keys.len(),
            r.messages.values().sum::<u64>(),
            r.duplicates()
        )?;
    }
    let webhook = &received["ops-webhook"];
    let accepted_webhooks: u64 = webhook.messages.values().sum();
    writeln!(
        out,
        "    ops-webhook signatures: {} of {accepted_webhooks} accepted requests verify",
        webhook.valid_signatures
    )?;
    writeln!(
        out,
        "  lost: {} (delivered, never received), stuck: {} (pending after the drain), unexplained: {}, unexpected keys: {}, duplicates: {}",
        notifications.lost.len(),
        notifications.stuck.len(),
        notifications.unexplained.len(),
        notifications.unexpected.len(),
        notifications.duplicates
    )?;
    for key in notifications
        .lost
        .iter()
        .chain(&notifications.stuck)
        .chain(&notifications.unexplained)
        .chain(&notifications.unexpected)
        .take(20)
    {
        writeln!(out, "    {key}")?;
    }
    let sample = |s: Option<RssSample>| {
        s.map_or("-".to_string(), |s| {
            format!("{:.1} MiB (day {:.0})", mib(s.rss_kib), s.day)
        })
    };
    writeln!(
        out,
        "  RSS: first after {} days of warm-up {}, max {}, last {}; growth {:.1} MiB (limit {:.0} MiB), trend {:+.2} MiB per 30 days; peak {}; {} samples",
        options.warmup_days,
        sample(rss.first),
        sample(rss.max),
        sample(rss.last),
        rss.growth_mib,
        rss.limit_mib,
        rss.trend_mib_per_30_days,
        peak_kib.map_or("-".to_string(), |k| format!("{:.1} MiB", mib(k))),
        samples.len()
    )?;
    let after_warmup: Vec<&RssSample> = samples
        .iter()
        .filter(|s| s.day >= f64::from(options.warmup_days))
        .collect();
    if let (Some(first), Some(last)) = (after_warmup.first(), after_warmup.last()) {
        let max = after_warmup.iter().map(|s| s.anon_kib).max().unwrap_or(0);
        writeln!(
            out,
            "  RssAnon (heap): first after warm-up {:.1} MiB, max {:.1} MiB, last {:.1} MiB",
            mib(first.anon_kib),
            mib(max),
            mib(last.anon_kib)
        )?;
    }
    let (slack_messages, slack_bytes) = sim.slack.stored_messages();
    writeln!(
        out,
        "  in the same process, the fake Slack keeps {slack_messages} messages ({:.1} MiB as JSON, several times that in memory)",
        slack_bytes as f64 / MIB
    )?;
    let store_bytes: u64 = ["spendwatch.db", "spendwatch.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(run.dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    writeln!(out, "  store on disk: {:.1} MiB", store_bytes as f64 / MIB)?;
    writeln!(out, "  panics: {panics}")?;
    writeln!(
        out,
        "  log events: {} ERROR, {} WARN",
        logs.total(Level::ERROR),
        logs.total(Level::WARN)
    )?;
    for (level, what, n) in logs.snapshot() {
        writeln!(out, "    {n:>6} {level:<5} {what}")?;
    }
    let verdict = |ok: bool| if ok { "pass" } else { "FAIL" };
    let passed = rss.passed && notifications.passed() && panics == 0;
    writeln!(
        out,
        "  checks: rss {}, notifications {}, panics {} => {}",
        verdict(rss.passed),
        verdict(notifications.passed()),
        verdict(panics == 0),
        if passed { "passed" } else { "FAILED" }
    )?;
    if options.keep.is_some() {
        writeln!(out, "  store and config kept in {}", run.dir.display())?;
    }
    crate::cli::emit(&out)?;
    Ok(passed)
}

/// Every simulated day: folds in the receivers' logs, then samples RSS.
struct Sampler {
    clock: Clock,
    origin: Timestamp,
    days: u32,
    started: Instant,
    sim: Sim,
    deliveries: Arc<Mutex<Deliveries>>,
    samples: Arc<Mutex<Vec<RssSample>>>,
    totals: Arc<crate::runtime::Totals>,
}

impl Sampler {
    async fn run(self) {
        for day in 0..self.days {
            self.clock.wait_until(day_at(self.origin, day)).await;
            self.deliveries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .collect(&self.sim);
            let Some(rss_kib) = proc_status_kib("VmRSS") else {
                return;
            };
            let sample = RssSample {
                day: self.clock.now().duration_since(self.origin).as_secs_f64() / 86_400.0,
                rss_kib,
                anon_kib: proc_status_kib("RssAnon").unwrap_or(0),
                wall_seconds: self.started.elapsed().as_secs_f64(),
            };
            if day % 7 == 0 {
                let totals = &self.totals;
                println!(
                    "day {:>4.0}: RSS {:>6.1} MiB ({:.1} MiB anonymous), polls {} ok / {} failed, {} fired, {:.0} s",
                    sample.day,
                    mib(rss_kib),
                    mib(sample.anon_kib),
                    totals.polls_ok.load(Ordering::Relaxed),
                    totals.polls_failed.load(Ordering::Relaxed),
                    totals.fired.load(Ordering::Relaxed),
                    sample.wall_seconds
                );
            }
            self.samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(sample);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Notification, NotificationStatus};
    use crate::store::GroupSettings;

    fn sample(day: f64, mib: u64) -> RssSample {
        RssSample {
            day,
            rss_kib: mib * 1024,
            anon_kib: 0,
            wall_seconds: 0.0,
        }
    }

    #[test]
    fn rss_growth_after_warm_up_is_checked_against_the_limit() {
        // Warm-up growth does not count; a flat run passes.
        let flat: Vec<RssSample> = (0..30)
            .map(|d| sample(f64::from(d), if d < 7 { 10 + d as u64 * 3 } else { 40 }))
            .collect();
        let check = check_rss(&flat, 7.0, 20.0);
        assert!(check.passed, "{check:?}");
        assert_eq!(check.growth_mib, 0.0);
        assert_eq!(check.first.unwrap().day, 7.0);

        // A leak of 1 MiB a day fails, and shows as a trend.
        let leak: Vec<RssSample> = (0..60)
            .map(|d| sample(f64::from(d), 40 + d as u64))
            .collect();
        let check = check_rss(&leak, 7.0, 20.0);
        assert!(!check.passed);
        assert_eq!(check.growth_mib, 52.0);
        assert!((check.trend_mib_per_30_days - 30.0).abs() < 1e-6);

        // Nothing after warm-up: nothing shown, not a pass.
        assert!(!check_rss(&leak[..5], 7.0, 20.0).passed);
    }

    fn row(id: i64, key: &str, receiver: &str, state: RowState) -> OutboxEntry {
        let at: Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
        OutboxEntry {
            id,
            notification: Notification {
                idempotency_key: key.into(),
                receiver: receiver.into(),
                status: NotificationStatus::Firing,
                fingerprint: "fp".into(),
                rule: "r".into(),
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
                value: "1".into(),
                threshold: "1".into(),
                starts_at: at,
                ends_at: None,
                contributors: Vec::new(),
                links: Vec::new(),
            },
            attempts: 0,
            created_at: at,
            state,
            group: GroupSettings::legacy(receiver, "fp"),
            pending_since: at,
            suppressed_by: None,
            last_error: None,
            delivered_at: None,
        }
    }

    #[test]
    fn every_row_is_accounted_for_or_the_check_fails() {
        let mut dead = row(2, "b-1-firing-hook", "hook", RowState::Dead);
        dead.last_error = Some("permanent: HTTP 400".into());
        let mut muted = row(3, "c-1-firing-hook", "hook", RowState::Skipped);
        muted.suppressed_by = Some("inhibited_by:x".into());
        let rows = vec![
            row(1, "a-1-firing-hook", "hook", RowState::Delivered),
            dead,
            muted,
        ];
        let mut hook = Received::default();
        hook.keys.insert("a-1-firing-hook".into());
        hook.messages.insert("a-1-firing-hook".into(), 2);
        let received = BTreeMap::from([("hook".to_string(), hook)]);
        let check = check_notifications(&rows, &received);
        assert!(check.passed(), "{check:?}");
        assert_eq!((check.delivered, check.duplicates), (1, 1));
        assert_eq!(check.dead["permanent: HTTP 400"], 1);
        assert_eq!(check.muted["skipped (inhibited_by:x)"], 1);

        // Delivered but never received: lost.
        let check = check_notifications(&rows, &BTreeMap::new());
        assert_eq!(check.lost, vec!["a-1-firing-hook".to_string()]);
        assert!(!check.passed());

        // Still pending after the drain, or dead without a reason: not accounted for.
        let rows2 = vec![
            row(4, "d-1-firing-hook", "hook", RowState::Pending),
            row(5, "e-1-firing-hook", "hook", RowState::Dead),
        ];
        let check = check_notifications(&rows2, &received);
        assert_eq!(check.stuck, vec!["d-1-firing-hook".to_string()]);
        assert_eq!(check.unexplained, vec!["e-1-firing-hook".to_string()]);
        // And a received key no row has is reported.
        assert_eq!(check.unexpected, vec!["a-1-firing-hook".to_string()]);
        assert!(!check.passed());
    }

    #[test]
    fn receivers_logs_give_every_alert_key_a_message_carried() {
        let hook = |answered: u16, key: &str, body: serde_json::Value| ReceivedWebhook {
            headers: BTreeMap::from([("idempotency-key".to_string(), key.to_string())]),
            body: body.to_string(),
            answered,
        };
        let mut webhook = Received::default();
        webhook.add_webhooks(&[
            hook(
                500,
                "a-1-firing-hook",
                serde_json::json!({"idempotencyKey": "a-1-firing-hook"}),
            ),
            hook(
                200,
                "a-1-firing-hook",
                serde_json::json!({"idempotencyKey": "a-1-firing-hook"}),
            ),
            hook(
                200,
                "group-1",
                serde_json::json!({"idempotencyKey": "group-1", "alerts": [
                    {"idempotencyKey": "a-1-firing-hook"}, {"idempotencyKey": "b-1-firing-hook"}]}),
            ),
            hook(
                200,
                "group-1",
                serde_json::json!({"idempotencyKey": "group-1", "alerts": []}),
            ),
        ]);
        assert_eq!(webhook.refused, 1);
        assert_eq!(
            webhook.keys,
            BTreeSet::from(["a-1-firing-hook".to_string(), "b-1-firing-hook".to_string()])
        );
        assert_eq!(webhook.duplicates(), 1, "group-1 accepted twice");
        assert_eq!(webhook.valid_signatures, 0, "unsigned");

        let slack = |method: &str, status: u16, thread: Option<&str>| SlackRequest {
            method: method.into(),
            body: serde_json::Value::Null,
            channel: None,
            ts: None,
            thread_ts: thread.map(str::to_string),
            metadata: Some(serde_json::json!({"event_payload": {
                "idempotency_key": "group-2", "alert_keys": "c-1-firing-slack,d-1-resolved-slack"}})),
            status,
            error: None,
        };
        let mut received = Received::default();
        received.add_slack(&[
            slack("chat.postMessage", 429, None),
            slack("chat.update", 200, None),
            slack("chat.postMessage", 200, Some("1.2")),
        ]);
        assert_eq!(received.refused, 1);
        assert_eq!(received.keys.len(), 2);
        assert_eq!(
            received.messages["group-2"], 1,
            "the update and its reply are one send"
        );
    }

    #[test]
    fn counters_are_read_from_the_exposition_text() {
        let text = "# HELP spendwatch_polls_total x\n# TYPE spendwatch_polls_total counter\n\
            spendwatch_polls_total{outcome=\"success\",source=\"sakura\"} 12\n\
            spendwatch_polls_total{outcome=\"timeout\",source=\"sakura\"} 2\n\
            spendwatch_polls_total_other{outcome=\"x\",source=\"y\"} 5\n";
        let table = by_two(text, "spendwatch_polls_total", "source", "outcome");
        assert_eq!(table.len(), 1);
        assert_eq!(table["sakura"]["success"], 12);
        assert_eq!(table["sakura"]["timeout"], 2);
    }

    #[test]
    fn vm_rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(proc_status_kib("VmRSS").is_some_and(|k| k > 0));
        }
    }
}
