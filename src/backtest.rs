//! `spendwatch backtest`: replays stored history through the configured rules on a simulated
//! clock, with the daemon's own evaluator and alert state machine, and reports what would
//! have fired and resolved, when and why. Nothing is sent; the real store is not touched.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::alerting::{Alerting, Change};
use crate::config::Config;
use crate::eval::Evaluator;
use crate::metrics::Metrics;
use crate::model::{Currency, Observation, ObservationKind, Period, SeriesKey, Unit, parse_amount};
use crate::store::{SeriesFilter, SqliteStore, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: line {line}: {message}")]
    Input {
        path: String,
        line: u64,
        message: String,
    },
    #[error("{0}")]
    Io(String),
    #[error("no data to replay")]
    Empty,
}

/// One alert change the replay produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacktestEvent {
    pub at: Timestamp,
    pub change: &'static str,
    pub rule: String,
    pub fingerprint: String,
    pub account: String,
    pub severity: &'static str,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RuleSummary {
    pub fired: usize,
    pub resolved: usize,
    pub still_firing: usize,
    /// Total time alerts of this rule spent firing during the replay.
    pub firing_seconds: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BacktestReport {
    pub from: Timestamp,
    pub to: Timestamp,
    pub step_seconds: f64,
    pub evaluations: usize,
    pub events: Vec<BacktestEvent>,
    pub rules: BTreeMap<String, RuleSummary>,
}

/// Copies a store into a temporary file, so the replay can write alert state freely.
pub fn copy_store(path: &Path, dir: &Path) -> Result<SqliteStore, BacktestError> {
    let target = dir.join("backtest.db");
    // `VACUUM INTO` writes a consistent snapshot, even while a daemon writes to the source.
    let source =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| BacktestError::Io(format!("{}: {e}", path.display())))?;
    source
        .execute("VACUUM INTO ?1", [target.to_string_lossy().as_ref()])
        .map_err(|e| BacktestError::Io(format!("copying {}: {e}", path.display())))?;
    let copy = rusqlite::Connection::open(&target).map_err(|e| BacktestError::Io(e.to_string()))?;
    copy.execute_batch("DELETE FROM alerts; DELETE FROM outbox;")
        .map_err(|e| BacktestError::Io(format!("clearing alert state of the copy: {e}")))?;
    drop(copy);
    Ok(SqliteStore::open(&target)?)
}

fn parse_time(text: &str) -> Option<Timestamp> {
    let t = text.trim();
    t.parse::<Timestamp>().ok().or_else(|| {
        t.parse::<i64>()
            .ok()
            .and_then(|s| Timestamp::from_second(s).ok())
    })
}

/// The kind a store series name implies.
fn kind_of(metric: &str) -> Option<ObservationKind> {
    use crate::model::series::*;
    Some(match metric {
        SPEND_PTD | ITEM_SPEND_PTD => ObservationKind::PeriodToDate,
        SPEND_TOTAL | ITEM_SPEND_TOTAL | USAGE_TOTAL => ObservationKind::PeriodTotal,
        USAGE_PTD => ObservationKind::Usage,
        TRAFFIC => ObservationKind::Traffic,
        _ => return None,
    })
}

/// Reads `--input` CSV: header `series,timestamp,value,unit[,labels[,period_start,period_end]]`.
/// `series` is `source/account/metric` (metric one of the store series names), `unit` a
/// currency code (money) or a quantity unit, labels `name=value;name=value`; period-to-date
/// and period-total rows need the period.
pub fn read_input(path: &Path) -> Result<Vec<Observation>, BacktestError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| BacktestError::Io(format!("{file}: {e}")))?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes.as_slice());
    let err = |line: u64, message: String| BacktestError::Input {
        path: file.clone(),
        line,
        message,
    };
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| err(1, e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    let expected = [
        "series",
        "timestamp",
        "value",
        "unit",
        "labels",
        "period_start",
        "period_end",
    ];
    if headers.len() < 4 || headers.iter().zip(expected).any(|(h, e)| h != e) {
        return Err(err(
            1,
            format!(
                "header must start `series,timestamp,value,unit[,labels,period_start,period_end]`, got {headers:?}"
            ),
        ));
    }
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| err(0, e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).unwrap_or("").to_string();
        let series = field(0);
        let parts: Vec<&str> = series.splitn(3, '/').collect();
        let [source, account, metric] = parts.as_slice() else {
            return Err(err(
                line,
                format!("series {series:?} is not source/account/metric"),
            ));
        };
        let kind =
            kind_of(metric).ok_or_else(|| err(line, format!("unknown metric {metric:?}")))?;
        let at = parse_time(&field(1))
            .ok_or_else(|| err(line, format!("bad timestamp {:?}", field(1))))?;
        let value = parse_amount(&field(2)).map_err(|e| err(line, e.to_string()))?;
        let unit_text = field(3);
        let unit = match Currency::new(&unit_text) {
            Ok(c) => Unit::Money(c),
            Err(_) if !unit_text.is_empty() => Unit::Quantity(unit_text.clone()),
            Err(_) => return Err(err(line, "empty unit".into())),
        };
        let mut key = SeriesKey::new(source, account, metric);
        for part in field(4).split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| err(line, format!("label {part:?} is not name=value")))?;
            key = key.with_label(k.trim(), v.trim());
        }
        match &unit {
            Unit::Money(c) => {
                key = key.with_label(crate::model::series::LABEL_CURRENCY, c.as_str())
            }
            Unit::Quantity(q) => key = key.with_label(crate::model::series::LABEL_UNIT, q),
        }
        let period = match (parse_time(&field(5)), parse_time(&field(6))) {
            (Some(start), Some(end)) if start < end => Some(Period { start, end }),
            (None, None) => None,
            _ => {
                return Err(err(
                    line,
                    "period_start and period_end must both be given, start before end".into(),
                ));
            }
        };
        if period.is_none()
            && matches!(
                kind,
                ObservationKind::PeriodToDate | ObservationKind::PeriodTotal
            )
        {
            return Err(err(
                line,
                format!("{metric} rows need period_start and period_end"),
            ));
        }
        out.push(Observation {
            key,
            at,
            period,
            value,
            kind,
            unit,
        });
    }
    Ok(out)
}

/// Loads `--input` files into a fresh store in `dir`.
pub fn store_from_inputs(paths: &[PathBuf], dir: &Path) -> Result<SqliteStore, BacktestError> {
    let store = SqliteStore::open(&dir.join("backtest.db"))?;
    for path in paths {
        let mut observations = read_input(path)?;
        observations.sort_by_key(|o| o.at);
        store.put_observations(&observations)?;
    }
    Ok(store)
}

/// The span of data times in the store.
fn data_range(store: &dyn Store) -> Result<Option<(Timestamp, Timestamp)>, BacktestError> {
    let mut range: Option<(Timestamp, Timestamp)> = None;
    for meta in store.list_series(&SeriesFilter::default())? {
        let Some(last) = store.latest_point(&meta.key)? else {
            continue;
        };
        let first = store
            .points(&meta.key, Timestamp::MIN, last.at)?
            .first()
            .map_or(last.at, |p| p.at);
        let end = last.last_seen.max(last.at);
        range = Some(match range {
            None => (first, end),
            Some((a, b)) => (a.min(first), b.max(end)),
        });
    }
    Ok(range)
}

/// Replays `[from, to]` in steps of `step` (the daemon's evaluation interval by default).
pub fn run(
    config: &Config,
    store: &dyn Store,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    step: Option<Duration>,
) -> Result<BacktestReport, BacktestError> {
    let (first, last) = data_range(store)?.ok_or(BacktestError::Empty)?;
    let from = from.unwrap_or(first);
    let to = to.unwrap_or(last + SignedDuration::from_hours(1));
    let step = step
        .unwrap_or(config.evaluation_interval)
        // Sub-second steps let a replay of a fast test run see a breach that lasted under a second.
        .max(Duration::from_millis(100));
    let step_signed = SignedDuration::try_from(step).unwrap_or(SignedDuration::from_hours(1));
    let evaluator = Evaluator::with_threads(config.rules.clone(), config.evaluation_threads);
    // No receivers: the replay notifies nobody.
    let mut alerting = Alerting::restore(store, crate::alerting::Routes::none())?;
    let metrics = Metrics::new();
    let total_steps =
        (to.duration_since(from).as_millis() / step_signed.as_millis().max(1)).max(0) as u64 + 1;
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total_steps);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} evaluations, {eta} left")
        {
            bar.set_style(style);
        }
        bar
    });
    let mut events = Vec::new();
    let mut rules: BTreeMap<String, RuleSummary> = evaluator
        .rule_names()
        .map(|n| (n.to_string(), RuleSummary::default()))
        .collect();
    let mut fired_at: BTreeMap<String, Timestamp> = BTreeMap::new();
    let mut evaluations = 0;
    let mut at = from;
    while at <= to {
        let evaluation = evaluator.evaluate(store, at, &metrics);
        for change in alerting.apply(&evaluation.transitions, at, at, store)? {
            let a = &change.alert;
            let summary = rules.entry(a.rule.clone()).or_default();
            match change.change {
                Change::Fired => {
                    summary.fired += 1;
                    fired_at.insert(a.fingerprint.clone(), at);
                }
                Change::Resolved => {
                    summary.resolved += 1;
                    if let Some(start) = fired_at.remove(&a.fingerprint) {
                        summary.firing_seconds += at.duration_since(start).as_secs();
                    }
                }
                Change::Pending | Change::Dropped => {}
            }
            events.push(BacktestEvent {
                at,
                change: change.change.as_str(),
                rule: a.rule.clone(),
                fingerprint: a.fingerprint.clone(),
                account: a.labels.get("account").cloned().unwrap_or_default(),
                severity: a.severity.as_str(),
                labels: a.labels.clone(),
                summary: a.summary.clone(),
            });
        }
        evaluations += 1;
        if let Some(bar) = &progress {
            bar.inc(1);
        }
        at = at.saturating_add(step_signed).unwrap_or(Timestamp::MAX);
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    for (fingerprint, start) in fired_at {
        if let Some(rule) = alerting
            .alerts()
            .find(|a| a.fingerprint == fingerprint)
            .map(|a| a.rule.clone())
        {
            let summary = rules.entry(rule).or_default();
            summary.still_firing += 1;
            summary.firing_seconds += to.duration_since(start).as_secs();
        }
    }
    Ok(BacktestReport {
        from,
        to,
        step_seconds: step.as_secs_f64(),
        evaluations,
        events,
        rules,
    })
}

/// Writes the events as CSV (by extension) or JSON (the whole report).
pub fn write_output(report: &BacktestReport, path: &Path) -> Result<(), BacktestError> {
    let io = |e: std::io::Error| BacktestError::Io(format!("{}: {e}", path.display()));
    if path.extension().and_then(|e| e.to_str()) == Some("json") {
        let text =
            serde_json::to_string_pretty(report).map_err(|e| BacktestError::Io(e.to_string()))?;
        return std::fs::write(path, text).map_err(io);
    }
    let mut w = csv::Writer::from_path(path)
        .map_err(|e| BacktestError::Io(format!("{}: {e}", path.display())))?;
    let fail = |e: csv::Error| BacktestError::Io(e.to_string());
    w.write_record([
        "time",
        "change",
        "rule",
        "account",
        "severity",
        "fingerprint",
        "summary",
    ])
    .map_err(fail)?;
    for e in &report.events {
        w.write_record([
            e.at.to_string().as_str(),
            e.change,
            &e.rule,
            &e.account,
            e.severity,
            &e.fingerprint,
            &e.summary,
        ])
        .map_err(fail)?;
    }
    w.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_rows_become_observations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        std::fs::write(
            &path,
            "series,timestamp,value,unit,labels,period_start,period_end\n\
             rs/020-1/spend_period_to_date,2026-11-02T00:00:00Z,80.00,USD,,2026-11-01T00:00:00Z,2026-12-01T00:00:00Z\n\
             prom/020-1/traffic,1793577600,240000,requests,series=requests\n",
        )
        .unwrap();
        let obs = read_input(&path).unwrap();
        assert_eq!(obs.len(), 2);
        assert_eq!(obs[0].kind, ObservationKind::PeriodToDate);
        assert_eq!(obs[0].key.labels["currency"], "USD");
        assert_eq!(obs[1].kind, ObservationKind::Traffic);
        assert_eq!(obs[1].key.labels["series"], "requests");
        assert_eq!(obs[1].unit, Unit::Quantity("requests".into()));
    }

    #[test]
    fn bad_input_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        for (body, needle) in [
            (
                "series,timestamp,value,unit\nrs/a/spend_period_to_date,2026-11-02T00:00:00Z,1,USD\n",
                "need period",
            ),
            (
                "series,timestamp,value,unit\nrs/a/bogus,2026-11-02T00:00:00Z,1,USD\n",
                "unknown metric",
            ),
            (
                "series,timestamp,value,unit\nrs/a/traffic,soon,1,x\n",
                "bad timestamp",
            ),
            (
                "series,timestamp,value,unit\nrsa/traffic,2026-11-02T00:00:00Z,1,x\n",
                "source/account/metric",
            ),
            ("time,value\n", "header"),
        ] {
            std::fs::write(&path, body).unwrap();
            let e = read_input(&path).unwrap_err().to_string();
            assert!(e.contains(needle), "{body}: {e}");
        }
    }
}
