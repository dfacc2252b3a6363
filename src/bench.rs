//! `spendwatch bench`: a large generated world written into a real store through the same
//! `Store` API the pollers use, then the figures the scale goals are about — ingest rate, one
//! evaluation cycle of every rule (the first, which learns, and a steady one), `/metrics`
//! render time and size, store size on disk and peak RSS.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;

use crate::config::Config;
use crate::eval::Evaluator;
use crate::metrics::Metrics;
use crate::model::series::{
    ITEM_SPEND_PTD, LABEL_CURRENCY, LABEL_ITEM, LABEL_UNIT, SPEND_PTD, TRAFFIC,
};
use crate::model::{Currency, Observation, ObservationKind, Period, SeriesKey, Unit};
use crate::store::{SqliteStore, Store};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub accounts: usize,
    pub items: usize,
    pub days: u32,
    /// Where the store and config go; a temp dir (removed) when `None`.
    pub dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bench: {0}")]
    Io(#[from] std::io::Error),
    #[error("bench store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("bench config: {0}")]
    Config(String),
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub series: usize,
    pub observations: usize,
    pub ingest_seconds: f64,
    pub first_evaluation_seconds: f64,
    pub steady_evaluation_seconds: f64,
    pub transitions: usize,
    pub render_seconds: f64,
    pub render_bytes: usize,
    pub store_bytes: u64,
    pub peak_rss_bytes: Option<u64>,
}

impl BenchReport {
    pub fn table(&self, o: &BenchOptions) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "world: {} accounts × {} line items (+ account total and traffic) = {} series, {} days hourly",
            o.accounts, o.items, self.series, o.days
        );
        let _ = writeln!(t, "| measure | value |\n|---|---|");
        let _ = writeln!(
            t,
            "| ingest | {} observations in {:.1} s = {:.0} observations/s |",
            self.observations,
            self.ingest_seconds,
            self.observations as f64 / self.ingest_seconds.max(1e-9)
        );
        let _ = writeln!(
            t,
            "| evaluation, first (anomaly detectors learn 7 days) | {:.2} s |",
            self.first_evaluation_seconds
        );
        let _ = writeln!(
            t,
            "| evaluation, steady (one hour later) | {:.2} s ({} alert instances judged) |",
            self.steady_evaluation_seconds, self.transitions
        );
        let _ = writeln!(
            t,
            "| /metrics render | {:.0} ms, {:.1} MB |",
            self.render_seconds * 1000.0,
            self.render_bytes as f64 / 1e6
        );
        let _ = writeln!(
            t,
            "| store on disk | {:.1} MB |",
            self.store_bytes as f64 / 1e6
        );
        match self.peak_rss_bytes {
            Some(b) => {
                let _ = writeln!(t, "| peak RSS | {:.0} MB |", b as f64 / 1e6);
            }
            None => {
                let _ = writeln!(t, "| peak RSS | unknown (no /proc) |");
            }
        }
        t
    }
}

/// The rules every bench evaluates: a budget, a unit-cost ratio with a learned baseline and an
/// hourly anomaly rule, over every account.
fn config_text(store: &Path) -> String {
    format!(
        r#"[store.sqlite]
path = "{store}"

[[sources]]
[sources.file]
name = "sim"
path = "traffic.csv"
unit = "requests"
series = "requests"
account = "unused"
interval = "1h"

[[rules]]
[rules.budget]
name = "budget"
source = "sim"
amount = "100000"
currency = "USD"
levels = [{{ percent = 80 }}, {{ percent = 100, basis = "forecast" }}]

[[rules]]
[rules.ratio]
name = "unit-cost"
numerator = {{ source = "sim" }}
denominator = {{ source = "sim", match = {{ series = "requests" }} }}
window = "1d"
per = 1000
baseline = {{ history = "7d", min_windows = 3, sensitivity = 4 }}

[[rules]]
[rules.anomaly]
name = "spend-anomaly"
series = {{ source = "sim" }}
window = "1h"
history = "7d"
"#,
        store = store.display()
    )
}

/// A cheap deterministic wobble in [-0.5, 0.5).
fn wobble(a: usize, h: usize, i: usize) -> f64 {
    let mut x = (a as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (h as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ (i as u64).wrapping_mul(0x1656_67B1_9E37_79F9);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
}

fn money(v: f64) -> Decimal {
    Decimal::from_f64(v).unwrap_or_default().round_dp(4)
}

fn month(at: Timestamp) -> Period {
    let utc = jiff::tz::TimeZone::UTC;
    let first = at.to_zoned(utc.clone()).date().first_of_month();
    let start = first.to_zoned(utc.clone()).map_or(at, |z| z.timestamp());
    let end = first
        .checked_add(jiff::Span::new().months(1))
        .ok()
        .and_then(|d| d.to_zoned(utc).ok())
        .map_or(at, |z| z.timestamp());
    Period { start, end }
}

/// One hour of the world: traffic, per-item and account period-to-date spend per account.
fn hour_batch(
    o: &BenchOptions,
    h: usize,
    at: Timestamp,
    cumulative: &mut [Vec<f64>],
) -> Vec<Observation> {
    let usd = Currency::new("USD").unwrap_or_else(|_| unreachable!("USD is a currency"));
    let period = month(at);
    let fresh_period = at - SignedDuration::from_hours(1) < period.start;
    let daily = 1.0 + 0.5 * (std::f64::consts::TAU * ((h % 24) as f64 - 8.0) / 24.0).sin();
    let mut batch = Vec::with_capacity(o.accounts * (o.items + 2));
    for (a, items) in cumulative.iter_mut().enumerate() {
        let account = format!("acct-{a:05}");
        if fresh_period {
            items.iter_mut().for_each(|c| *c = 0.0);
        }
        let traffic = (1_000.0 + (a % 50) as f64 * 100.0) * daily * (1.0 + 0.1 * wobble(a, h, 0));
        batch.push(Observation {
            key: SeriesKey::new("sim", &account, TRAFFIC)
                .with_label("series", "requests")
                .with_label(LABEL_UNIT, "requests"),
            at,
            period: None,
            value: money(traffic),
            kind: ObservationKind::Traffic,
            unit: Unit::Quantity("requests".into()),
        });
        for (i, total) in items.iter_mut().enumerate() {
            *total +=
                0.01 * (i + 1) as f64 + 0.000_02 * traffic * (1.0 + 0.05 * wobble(a, h, i + 1));
            batch.push(Observation {
                key: SeriesKey::new("sim", &account, ITEM_SPEND_PTD)
                    .with_label(LABEL_CURRENCY, "USD")
                    .with_label(LABEL_ITEM, &format!("ITEM-{i:02}")),
                at,
                period: Some(period),
                value: money(*total),
                kind: ObservationKind::PeriodToDate,
                unit: Unit::Money(usd.clone()),
            });
        }
        batch.push(Observation {
            key: SeriesKey::new("sim", &account, SPEND_PTD).with_label(LABEL_CURRENCY, "USD"),
            at,
            period: Some(period),
            value: money(items.iter().sum()),
            kind: ObservationKind::PeriodToDate,
            unit: Unit::Money(usd.clone()),
        });
    }
    batch
}

fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Generates the world, then measures. `progress` is told each finished day.
pub fn run(o: &BenchOptions, progress: &dyn Fn(u32)) -> Result<BenchReport, BenchError> {
    let temp = tempfile::tempdir()?;
    let dir = o.dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let store_path = dir.join("bench.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", store_path.display()));
    }
    std::fs::write(dir.join("traffic.csv"), "timestamp,value\n")?;
    let config_path = dir.join("bench.toml");
    std::fs::write(&config_path, config_text(&store_path))?;
    let config = Config::load(&config_path).map_err(|e| BenchError::Config(e.to_string()))?;
    let store = SqliteStore::open(&store_path)?;
    let metrics = Metrics::new();

    // Ends on a whole hour in the past, so every window the rules judge is complete.
    let end = Timestamp::now()
        .round(
            jiff::TimestampRound::new()
                .smallest(jiff::Unit::Hour)
                .mode(jiff::RoundMode::Floor),
        )
        .map_err(|e| BenchError::Config(e.to_string()))?;
    let hours = o.days as usize * 24;
    let start = end - SignedDuration::from_hours(hours as i64);
    let mut cumulative = vec![vec![0.0; o.items]; o.accounts];
    let mut observations = 0;
    let mut ingest_seconds = 0.0;
    let mut last = Vec::new();
    for h in 1..=hours {
        let at = start + SignedDuration::from_hours(h as i64);
        let batch = hour_batch(o, h, at, &mut cumulative);
        let started = Instant::now();
        store.put_observations(&batch)?;
        ingest_seconds += started.elapsed().as_secs_f64();
        observations += batch.len();
        if h % 24 == 0 {
            progress((h / 24) as u32);
        }
        last = batch;
    }
    // The exported gauges hold the latest value of each series, as after a poll.
    metrics.observed(&last);

    let evaluator = Evaluator::new(config.rules.clone());
    let started = Instant::now();
    let first = evaluator.evaluate(&store, end - SignedDuration::from_mins(30), &metrics);
    let first_evaluation_seconds = started.elapsed().as_secs_f64();
    if let Some((rule, e)) = first.errors.first() {
        return Err(BenchError::Config(format!("rule {rule}: {e}")));
    }
    let started = Instant::now();
    let steady = evaluator.evaluate(&store, end + SignedDuration::from_mins(30), &metrics);
    let steady_evaluation_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let text = metrics.render();
    let render_seconds = started.elapsed().as_secs_f64();
    drop(store);
    let store_bytes = ["", "-wal"]
        .iter()
        .map(|s| file_size(Path::new(&format!("{}{s}", store_path.display()))))
        .sum();
    Ok(BenchReport {
        series: o.accounts * (o.items + 2),
        observations,
        ingest_seconds,
        first_evaluation_seconds,
        steady_evaluation_seconds,
        transitions: steady.transitions.len(),
        render_seconds,
        render_bytes: text.len(),
        store_bytes,
        peak_rss_bytes: peak_rss(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny world end to end: every series stored, every rule evaluated without error, and
    /// each account judged by each rule.
    #[test]
    fn a_small_world_is_generated_stored_and_evaluated() {
        let o = BenchOptions {
            accounts: 3,
            items: 2,
            days: 9,
            dir: None,
        };
        let report = run(&o, &|_| {}).unwrap();
        assert_eq!(report.series, 12);
        assert_eq!(report.observations, 12 * 9 * 24);
        assert!(report.store_bytes > 0);
        assert!(report.render_bytes > 0);
        // budget: 2 levels, ratio and anomaly: 1 each, per account.
        assert_eq!(report.transitions, 3 * 4, "{report:?}");
        let table = report.table(&o);
        assert!(table.contains("12 series"), "{table}");
    }
}
