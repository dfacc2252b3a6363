//! Evaluation throughput of a ratio rule over 10,000 series (5,000 accounts, each with a
//! period-to-date spend series and a traffic series, 16 days at 6-hour resolution), read
//! from a real SQLite store. Prints samples/s alongside criterion's timing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use spendwatch::config::RuleConfig;
use spendwatch::config::rules::{
    Direction, Expectation, NoTraffic, RatioRule, RuleMeta, Seasonality, Selector,
};
use spendwatch::eval::Evaluator;
use spendwatch::metrics::Metrics;
use spendwatch::model::series::{ITEM_SPEND_PTD, SPEND_PTD, TRAFFIC};
use spendwatch::model::{
    Currency, Observation, ObservationKind, Period, SeriesKey, Severity, Unit,
};
use spendwatch::store::{SqliteStore, Store};

const ACCOUNTS: usize = 5_000;
const STEPS: i64 = 16 * 4;

fn fill(store: &SqliteStore) -> usize {
    let start: Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
    let period = Period {
        start,
        end: "2026-12-01T00:00:00Z".parse().unwrap(),
    };
    let usd = Currency::new("USD").unwrap();
    let mut written = 0;
    for a in 0..ACCOUNTS {
        let account = format!("acct-{a:05}");
        let mut batch = Vec::with_capacity(2 * STEPS as usize);
        let mut spend = 0.0;
        for step in 1..=STEPS {
            let at = start + SignedDuration::from_hours(6 * step);
            let traffic = 60_000.0 + (a % 7) as f64 * 1_000.0 + (step % 4) as f64 * 5_000.0;
            spend += traffic * 0.0005;
            batch.push(Observation {
                key: SeriesKey::new("sim", &account, TRAFFIC).with_label("series", "requests"),
                at,
                period: None,
                value: Decimal::from(traffic as i64),
                kind: ObservationKind::Traffic,
                unit: Unit::Quantity("requests".into()),
            });
            batch.push(Observation {
                key: SeriesKey::new("sim", &account, SPEND_PTD).with_label("currency", "USD"),
                at,
                period: Some(period),
                value: Decimal::from_f64_retain(spend).unwrap().round_dp(2),
                kind: ObservationKind::PeriodToDate,
                unit: Unit::Money(usd.clone()),
            });
        }
        written += batch.len();
        store.put_observations(&batch).unwrap();
    }
    written
}

fn rule() -> RuleConfig {
    let selector = |series: &str, matchers: BTreeMap<String, String>| Selector {
        source: Some("sim".into()),
        series: series.into(),
        matchers,
    };
    RuleConfig::Ratio(RatioRule {
        meta: RuleMeta {
            name: "unit-cost".into(),
            accounts: Vec::new(),
            hold: Duration::ZERO,
            keep_firing_for: Duration::ZERO,
            severity: Severity::Warning,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        },
        numerator: selector(SPEND_PTD, BTreeMap::new()),
        denominator: selector(
            TRAFFIC,
            BTreeMap::from([("series".to_string(), "requests".to_string())]),
        ),
        contributors: selector(ITEM_SPEND_PTD, BTreeMap::new()),
        window: Duration::from_secs(86_400),
        window_offset: Duration::ZERO,
        per: Decimal::from(1000),
        expectation: Expectation::Baseline {
            history: Duration::from_secs(14 * 86_400),
            min_windows: 7,
            sensitivity: 4.0,
            seasonality: Seasonality::None,
        },
        direction: Direction::Up,
        min_impact: Decimal::from(10),
        on_no_traffic: NoTraffic::Wait,
    })
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("bench.db")).unwrap();
    let started = Instant::now();
    let written = fill(&store);
    println!(
        "setup: {written} observations in {} series written in {:.1}s ({:.0} observations/s)",
        2 * ACCOUNTS,
        started.elapsed().as_secs_f64(),
        written as f64 / started.elapsed().as_secs_f64()
    );
    let evaluator = Evaluator::new(vec![rule()]);
    let metrics = Metrics::new();
    let at: Timestamp = "2026-11-17T00:30:00Z".parse().unwrap();
    let once = Instant::now();
    let evaluation = evaluator.evaluate(&store, at, &metrics);
    let seconds = once.elapsed().as_secs_f64();
    assert!(evaluation.errors.is_empty(), "{:?}", evaluation.errors);
    assert_eq!(evaluation.transitions.len(), ACCOUNTS);
    // Every point of both series in the 16-day lookback is read once per evaluation.
    let samples = written as f64;
    println!(
        "one evaluation of a ratio rule over {} series: {seconds:.3}s, {:.0} samples/s",
        2 * ACCOUNTS,
        samples / seconds
    );
    let mut group = c.benchmark_group("ratio_rule");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("evaluate_10k_series", |b| {
        b.iter(|| evaluator.evaluate(&store, at, &metrics));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
