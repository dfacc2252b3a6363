//! `spendwatch bench`: a large generated world written into a real store through the same
//! `Store` API the pollers use, then the figures the scale goals are about — ingest rate, one
//! evaluation cycle of every rule (the first, which learns, and a steady one), `/metrics`
//! render time and size, store size on disk and peak RSS.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub mod openmetrics;
mod world;
pub use world::{config_text, hour_batch};

use jiff::{SignedDuration, Timestamp};

use crate::config::Config;
use crate::eval::Evaluator;
use crate::metrics::Metrics;
use crate::store::{SqliteStore, Store};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub accounts: usize,
    pub items: usize,
    pub days: u32,
    /// Where the store and config go; a temp dir (removed) when `None`.
    pub dir: Option<PathBuf>,
    /// Measure the world already in `dir` (written by an earlier run with the same size)
    /// instead of writing it again: for profiling evaluation alone.
    pub reuse: bool,
    /// Rules evaluated at once; the config's default (the machine's cores) when `None`.
    pub threads: Option<usize>,
    /// The world's last hour (floored to the hour); the current hour when `None`.
    pub end: Option<Timestamp>,
}

impl BenchOptions {
    /// The world's last hour, a whole hour: every window the rules judge is complete.
    pub fn world_end(&self) -> Result<Timestamp, BenchError> {
        self.end
            .unwrap_or_else(Timestamp::now)
            .round(
                jiff::TimestampRound::new()
                    .smallest(jiff::Unit::Hour)
                    .mode(jiff::RoundMode::Floor),
            )
            .map_err(|e| BenchError::Config(e.to_string()))
    }
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
    /// Per rule, in config order: (name, seconds in the first, in the steady evaluation).
    pub rule_seconds: Vec<(String, f64, f64)>,
    pub transitions: usize,
    pub render_seconds: f64,
    pub render_bytes: usize,
    pub store_bytes: u64,
    pub peak_rss_bytes: Option<u64>,
    /// Rules evaluated at once.
    pub threads: usize,
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
        if o.reuse {
            let _ = writeln!(t, "| ingest | reused the stored world (not measured) |");
        } else {
            let _ = writeln!(
                t,
                "| ingest | {} observations in {:.1} s = {:.0} observations/s |",
                self.observations,
                self.ingest_seconds,
                self.observations as f64 / self.ingest_seconds.max(1e-9)
            );
        }
        let _ = writeln!(t, "| evaluation threads | {} |", self.threads);
        let _ = writeln!(
            t,
            "| evaluation, first (anomaly detectors learn 7 days) | {:.2} s |",
            self.first_evaluation_seconds
        );
        let _ = writeln!(
            t,
            "| evaluation, steady (an hour later, median of {STEADY_CYCLES} cycles a minute apart) | {:.2} s ({} alert instances judged) |",
            self.steady_evaluation_seconds, self.transitions
        );
        for (rule, first, steady) in &self.rule_seconds {
            let _ = writeln!(
                t,
                "| rule `{rule}`, first / steady | {first:.3} s / {steady:.3} s |"
            );
        }
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
    let marker = dir.join("world.txt");
    let world = format!("{} {} {}", o.accounts, o.items, o.days);
    let reused_end = match std::fs::read_to_string(&marker) {
        Ok(text) if o.reuse => {
            let (size, end) = text.trim().rsplit_once(' ').unwrap_or_default();
            if size != world {
                return Err(BenchError::Config(format!(
                    "{} holds a world of {size:?} (accounts items days), not {world:?}",
                    dir.display()
                )));
            }
            Some(
                end.parse::<Timestamp>()
                    .map_err(|e| BenchError::Config(format!("{}: {e}", marker.display())))?,
            )
        }
        _ if o.reuse => {
            return Err(BenchError::Config(format!(
                "nothing to reuse in {}: run once with --keep first",
                dir.display()
            )));
        }
        _ => None,
    };
    if reused_end.is_none() {
        let _ = std::fs::remove_file(&marker);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", store_path.display()));
        }
    }
    std::fs::write(dir.join("traffic.csv"), "timestamp,value\n")?;
    let config_path = dir.join("bench.toml");
    std::fs::write(&config_path, config_text(&store_path))?;
    let config = Config::load(&config_path).map_err(|e| BenchError::Config(e.to_string()))?;
    let store = SqliteStore::open(&store_path)?;
    let metrics = Metrics::new();

    let end = match reused_end {
        Some(end) => end,
        None => o.world_end()?,
    };
    let hours = o.days as usize * 24;
    let start = end - SignedDuration::from_hours(hours as i64);
    let mut cumulative = vec![vec![0.0; o.items]; o.accounts];
    let mut observations = 0;
    let mut ingest_seconds = 0.0;
    let mut last = Vec::new();
    // A reused world only needs its last hour again (for the gauges); its cumulative
    // values differ from the stored ones, which the gauges do not care about.
    let first_hour = if reused_end.is_some() { hours } else { 1 };
    for h in first_hour..=hours {
        let at = start + SignedDuration::from_hours(h as i64);
        let batch = hour_batch(o, h, at, &mut cumulative);
        if reused_end.is_none() {
            let started = Instant::now();
            store.put_observations(&batch)?;
            ingest_seconds += started.elapsed().as_secs_f64();
        }
        observations += batch.len() * if reused_end.is_some() { hours } else { 1 };
        if h % 24 == 0 {
            progress((h / 24) as u32);
        }
        last = batch;
    }
    if reused_end.is_none() {
        std::fs::write(&marker, format!("{world} {end}\n"))?;
    }
    // The exported gauges hold the latest value of each series, as after a poll.
    metrics.observed(&last);
    // A daemon holds one poll's batch at a time, not the whole world's last hour.
    drop(last);

    let threads = o.threads.unwrap_or(config.evaluation_threads);
    let evaluator = Evaluator::with_threads(config.rules.clone(), threads);
    let started = Instant::now();
    let first = evaluator.evaluate(&store, end - SignedDuration::from_mins(30), &metrics);
    let first_evaluation_seconds = started.elapsed().as_secs_f64();
    if let Some((rule, e)) = first.errors.first() {
        return Err(BenchError::Config(format!("rule {rule}: {e}")));
    }
    // Steady cycles as the daemon runs them (one a minute, nothing new stored): the median
    // of several, so one disturbed cycle on a shared machine does not make the figure.
    // Only the figures are kept: an evaluation's transitions are the size of a rule's output.
    let mut cycles: Vec<(f64, Vec<f64>, usize)> = Vec::new();
    for minute in 0..STEADY_CYCLES {
        let at = end + SignedDuration::from_mins(30 + minute);
        let started = Instant::now();
        let steady = evaluator.evaluate(&store, at, &metrics);
        let seconds = started.elapsed().as_secs_f64();
        let per_rule = steady.status.iter().map(|s| s.evaluation_seconds).collect();
        cycles.push((seconds, per_rule, steady.transitions.len()));
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let steady_evaluation_seconds = median(cycles.iter().map(|c| c.0).collect());
    let transitions = cycles.last().map_or(0, |c| c.2);
    let rule_seconds = first
        .status
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let per_cycle = cycles.iter().filter_map(|c| c.1.get(i).copied()).collect();
            (f.name.clone(), f.evaluation_seconds, median(per_cycle))
        })
        .collect();
    drop(first);

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
        rule_seconds,
        transitions,
        render_seconds,
        render_bytes: text.len(),
        store_bytes,
        peak_rss_bytes: peak_rss(),
        threads,
    })
}

/// Steady evaluation cycles measured; the median is reported.
const STEADY_CYCLES: i64 = 5;

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
            reuse: false,
            threads: None,
            end: None,
        };
        let report = run(&o, &|_| {}).unwrap();
        assert_eq!(report.series, 12);
        assert_eq!(report.observations, 12 * 9 * 24);
        assert!(report.store_bytes > 0);
        assert!(report.render_bytes > 0);
        // budget: 2 levels, ratio and anomaly: 1 each, per account.
        assert_eq!(report.transitions, 3 * 4, "{report:?}");
        let rules: Vec<&str> = report.rule_seconds.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(rules, ["budget", "unit-cost", "spend-anomaly"]);
        let table = report.table(&o);
        assert!(table.contains("12 series"), "{table}");
        assert!(
            table.contains("| rule `unit-cost`, first / steady | "),
            "{table}"
        );
    }
}
