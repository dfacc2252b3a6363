//! Scenario tests for the traffic-relative rules, on data generated from the simulator's
//! traffic model (daily cycle, incidents) and written to a real store hour by hour, the way
//! the pollers would: period-to-date spend per line item and per account, hourly traffic.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;

use super::ratio;
use crate::config::rules::{
    Direction, Expectation, NoTraffic, RatioRule, RuleMeta, Seasonality, Selector,
};
use crate::metrics::Metrics;
use crate::model::series::{
    ITEM_SPEND_PTD, LABEL_CURRENCY, LABEL_ITEM, LABEL_UNIT, SPEND_PTD, TRAFFIC,
};
use crate::model::{
    Currency, Observation, ObservationKind, Outcome, SeriesKey, Severity, Transition, Unit,
};
use crate::sim::world::{Api, SimAccount, Traffic, TrafficIncident};
use crate::store::{SqliteStore, Store};

const START: &str = "2026-11-01T00:00:00Z";

/// One line item: a fixed hourly cost plus a price per unit of traffic.
struct Item {
    name: &'static str,
    fixed_per_hour: f64,
    price_per_unit: f64,
    /// From this day of the scenario: (extra fixed per hour, price multiplier).
    change: Option<(f64, f64, f64)>,
}

struct Scenario {
    account: &'static str,
    traffic: Traffic,
    items: Vec<Item>,
    days: i64,
    /// Spend data stops this many hours before the end (billing lag); traffic does not.
    spend_lag_hours: i64,
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn day(d: f64) -> Timestamp {
    ts(START) + SignedDuration::from_secs_f64(d * 86_400.0)
}

fn traffic(base: f64, incidents: Vec<TrafficIncident>) -> Traffic {
    Traffic {
        unit: "requests".into(),
        base_per_hour: base,
        diurnal: 0.5,
        incidents,
    }
}

impl Scenario {
    /// Writes the scenario into the store, hour by hour.
    fn fill(&self, store: &SqliteStore) {
        let world = SimAccount {
            api: Api::Rackspace,
            id: self.account.into(),
            name: self.account.into(),
            currency: "USD".into(),
            cycle_day: 1,
            items: Vec::new(),
            incidents: Vec::new(),
            adjustments: Vec::new(),
            traffic: self.traffic.clone(),
            extra: BTreeMap::new(),
        };
        let usd = Currency::new("USD").unwrap();
        let mut cumulative = vec![0.0; self.items.len()];
        let mut period_start = None;
        for h in 0..self.days * 24 {
            let from = ts(START) + SignedDuration::from_hours(h);
            let to = from + SignedDuration::from_hours(1);
            let period = world.period(from).unwrap();
            if period_start != Some(period.start) {
                period_start = Some(period.start);
                cumulative.iter_mut().for_each(|c| *c = 0.0);
            }
            let requests = world.traffic_between(period, from, to);
            let day_of_scenario = (h / 24) as f64;
            let mut batch = vec![Observation {
                key: SeriesKey::new("sim", self.account, TRAFFIC)
                    .with_label("series", "requests")
                    .with_label(LABEL_UNIT, "requests"),
                at: to,
                period: None,
                value: Decimal::from_f64(requests).unwrap().round_dp(3),
                kind: ObservationKind::Traffic,
                unit: Unit::Quantity("requests".into()),
            }];
            let spend_known = h < self.days * 24 - self.spend_lag_hours;
            for (item, total) in self.items.iter().zip(cumulative.iter_mut()) {
                let (extra, multiplier) = match item.change {
                    Some((from_day, extra, mult)) if day_of_scenario >= from_day => (extra, mult),
                    _ => (0.0, 1.0),
                };
                *total += item.fixed_per_hour + extra + item.price_per_unit * multiplier * requests;
                // Like the billing APIs, an item without charges yet is not listed at all.
                if spend_known && *total > 0.0 {
                    batch.push(Observation {
                        key: SeriesKey::new("sim", self.account, ITEM_SPEND_PTD)
                            .with_label(LABEL_CURRENCY, "USD")
                            .with_label(LABEL_ITEM, item.name),
                        at: to,
                        period: Some(period),
                        value: Decimal::from_f64(*total).unwrap().round_dp(4),
                        kind: ObservationKind::PeriodToDate,
                        unit: Unit::Money(usd.clone()),
                    });
                }
            }
            if spend_known {
                batch.push(Observation {
                    key: SeriesKey::new("sim", self.account, SPEND_PTD)
                        .with_label(LABEL_CURRENCY, "USD"),
                    at: to,
                    period: Some(period),
                    value: Decimal::from_f64(cumulative.iter().sum())
                        .unwrap()
                        .round_dp(4),
                    kind: ObservationKind::PeriodToDate,
                    unit: Unit::Money(usd.clone()),
                });
            }
            store.put_observations(&batch).unwrap();
        }
    }
}

fn rule(min_impact: i64, on_no_traffic: NoTraffic) -> RatioRule {
    RatioRule {
        meta: RuleMeta {
            name: "unit-cost".into(),
            accounts: Vec::new(),
            hold: Duration::ZERO,
            keep_firing_for: Duration::ZERO,
            severity: Severity::Warning,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        },
        numerator: Selector {
            source: Some("sim".into()),
            series: SPEND_PTD.into(),
            matchers: BTreeMap::new(),
        },
        denominator: Selector {
            source: Some("sim".into()),
            series: TRAFFIC.into(),
            matchers: BTreeMap::from([("series".to_string(), "requests".to_string())]),
        },
        contributors: Selector {
            source: Some("sim".into()),
            series: ITEM_SPEND_PTD.into(),
            matchers: BTreeMap::new(),
        },
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
        min_impact: Decimal::from(min_impact),
        on_no_traffic,
    }
}

/// Two usage-priced items and one fixed one: about $120/day at 10k requests/h.
fn normal_items() -> Vec<Item> {
    vec![
        Item {
            name: "CDN/BWOUT",
            fixed_per_hour: 0.0,
            price_per_unit: 0.0003,
            change: None,
        },
        Item {
            name: "API/REQUESTS",
            fixed_per_hour: 0.0,
            price_per_unit: 0.0002,
            change: None,
        },
    ]
}

fn run(scenario: &Scenario, rule: &RatioRule, at: Timestamp) -> Transition {
    let store = SqliteStore::open_in_memory().unwrap();
    scenario.fill(&store);
    let mut ts = ratio::evaluate(rule, &store, at, &Metrics::new()).unwrap();
    assert_eq!(ts.len(), 1, "one account, one currency: {ts:?}");
    ts.remove(0)
}

fn summary(t: &Transition) -> String {
    match &t.outcome {
        Outcome::Breach(f) | Outcome::Clear(f) => f.summary.clone(),
        Outcome::Waiting(w) => format!("waiting: {w}"),
    }
}

#[test]
fn traffic_doubling_with_spend_does_not_alert() {
    let s = traffic_doubles_on_day_20(22);
    let t = run(
        &s,
        &rule(10, NoTraffic::Wait),
        day(21.0) + SignedDuration::from_mins(30),
    );
    assert!(matches!(t.outcome, Outcome::Clear(_)), "{}", summary(&t));
    assert!(
        summary(&t).contains("+100 %"),
        "traffic doubled, and the message says so: {}",
        summary(&t)
    );
}

#[test]
fn spend_doubling_on_flat_traffic_alerts_at_the_first_complete_window() {
    let mut items = normal_items();
    items.push(Item {
        name: "COMPUTE/UPTIME",
        fixed_per_hour: 0.0,
        price_per_unit: 0.0,
        change: Some((20.0, 5.0, 1.0)), // +$120/day from day 20: spend doubles
    });
    let s = Scenario {
        account: "a",
        traffic: traffic(10_000.0, Vec::new()),
        items,
        days: 21,
        spend_lag_hours: 0,
    };
    let r = rule(10, NoTraffic::Wait);
    // Day 20 is not complete before midnight: the rule judges day 19 and stays quiet.
    let before = run(&s, &r, day(20.9));
    assert!(
        matches!(before.outcome, Outcome::Clear(_)),
        "{}",
        summary(&before)
    );
    let t = run(&s, &r, day(21.0) + SignedDuration::from_mins(5));
    let Outcome::Breach(f) = &t.outcome else {
        panic!("expected a breach: {}", summary(&t));
    };
    assert!(
        f.summary
            .contains("top contributor: COMPUTE/UPTIME (+$120.00)"),
        "{}",
        f.summary
    );
    assert!(
        f.summary
            .contains("rose to $1.00 per 1k requests (expected $0.4"),
        "{}",
        f.summary
    );
    assert!(f.summary.contains("per 1k requests"), "{}", f.summary);
    assert!(
        f.summary.contains("impact +$1"),
        "about $120 over the expected spend: {}",
        f.summary
    );
    assert_eq!(t.labels["account"], "a");
    assert_eq!(t.labels["currency"], "USD");
}

#[test]
fn a_price_change_per_unit_alerts() {
    let mut items = normal_items();
    items[0].change = Some((20.0, 0.0, 3.0));
    let s = Scenario {
        account: "a",
        traffic: traffic(10_000.0, Vec::new()),
        items,
        days: 21,
        spend_lag_hours: 0,
    };
    let t = run(
        &s,
        &rule(10, NoTraffic::Wait),
        day(21.0) + SignedDuration::from_mins(5),
    );
    let Outcome::Breach(f) = &t.outcome else {
        panic!("expected a breach: {}", summary(&t));
    };
    assert!(
        f.summary.contains("top contributor: CDN/BWOUT"),
        "{}",
        f.summary
    );
}

#[test]
fn late_spend_data_waits_then_gives_the_right_answer() {
    let mut items = normal_items();
    items.push(Item {
        name: "COMPUTE/UPTIME",
        fixed_per_hour: 0.0,
        price_per_unit: 0.0,
        change: Some((20.0, 5.0, 1.0)),
    });
    let mut s = Scenario {
        account: "a",
        traffic: traffic(10_000.0, Vec::new()),
        items,
        days: 21,
        spend_lag_hours: 24,
    };
    let at = day(21.0) + SignedDuration::from_mins(5);
    let r = rule(10, NoTraffic::Wait);
    let waiting = run(&s, &r, at);
    assert!(
        matches!(&waiting.outcome, Outcome::Waiting(w) if w.contains("spend not complete")),
        "{}",
        summary(&waiting)
    );
    s.spend_lag_hours = 0;
    assert!(matches!(run(&s, &r, at).outcome, Outcome::Breach(_)));
}

#[test]
fn month_rollover_does_not_alert() {
    let s = Scenario {
        account: "a",
        traffic: traffic(10_000.0, Vec::new()),
        items: normal_items(),
        days: 34,
        spend_lag_hours: 0,
    };
    let r = rule(10, NoTraffic::Wait);
    let store = SqliteStore::open_in_memory().unwrap();
    s.fill(&store);
    for hour in [6.0, 12.0, 24.0, 30.0, 48.0, 72.0] {
        let at = ts("2026-12-01T00:00:00Z") + SignedDuration::from_secs_f64(hour * 3600.0);
        let t = ratio::evaluate(&r, &store, at, &Metrics::new())
            .unwrap()
            .remove(0);
        assert!(
            matches!(t.outcome, Outcome::Clear(_)),
            "{at}: {}",
            summary(&t)
        );
    }
}

#[test]
fn a_tiny_account_tripling_does_not_page() {
    let s = Scenario {
        account: "tiny",
        traffic: traffic(100.0, Vec::new()),
        items: vec![Item {
            name: "API/REQUESTS",
            fixed_per_hour: 0.0,
            price_per_unit: 0.0000417,
            change: Some((20.0, 0.0, 4.0)), // $0.10/day → $0.40/day
        }],
        days: 21,
        spend_lag_hours: 0,
    };
    let t = run(
        &s,
        &rule(10, NoTraffic::Wait),
        day(21.0) + SignedDuration::from_mins(5),
    );
    assert!(
        matches!(t.outcome, Outcome::Clear(_)),
        "+300 % but +$0.30: {}",
        summary(&t)
    );
    let loud = run(
        &s,
        &rule(0, NoTraffic::Wait),
        day(21.0) + SignedDuration::from_mins(5),
    );
    assert!(
        matches!(loud.outcome, Outcome::Breach(_)),
        "without a minimum impact it would: {}",
        summary(&loud)
    );
}

#[test]
fn a_day_without_traffic_has_a_defined_outcome() {
    let mut items = normal_items();
    items.push(Item {
        name: "COMPUTE/UPTIME",
        fixed_per_hour: 2.0,
        price_per_unit: 0.0,
        change: None,
    });
    let s = Scenario {
        account: "a",
        traffic: traffic(
            10_000.0,
            vec![TrafficIncident {
                from_day: 20.0,
                to_day: 21.0,
                factor: 0.0,
            }],
        ),
        items,
        days: 21,
        spend_lag_hours: 0,
    };
    let at = day(21.0) + SignedDuration::from_mins(5);
    let quiet = run(&s, &rule(10, NoTraffic::Wait), at);
    assert!(
        matches!(&quiet.outcome, Outcome::Waiting(w) if w.contains("no traffic")),
        "{}",
        summary(&quiet)
    );
    let loud = run(&s, &rule(10, NoTraffic::Alert), at);
    let Outcome::Breach(f) = &loud.outcome else {
        panic!("expected a breach: {}", summary(&loud));
    };
    assert!(
        f.summary.contains("$48.00 spent with no requests"),
        "{}",
        f.summary
    );
}

#[test]
fn a_fixed_band_and_currencies_evaluate_per_currency() {
    let s = Scenario {
        account: "a",
        traffic: traffic(10_000.0, Vec::new()),
        items: normal_items(),
        days: 3,
        spend_lag_hours: 0,
    };
    let mut r = rule(0, NoTraffic::Wait);
    // $0.5 per 1k requests is the steady unit cost: a band below it fires at once.
    r.expectation = Expectation::Band {
        min: None,
        max: Some(Decimal::new(4, 1)),
    };
    let t = run(&s, &r, day(2.0) + SignedDuration::from_mins(5));
    let Outcome::Breach(f) = &t.outcome else {
        panic!("expected a breach: {}", summary(&t));
    };
    assert!(
        f.summary.contains("expected at most $0.40 per 1k requests"),
        "{}",
        f.summary
    );
}

fn meta(name: &str) -> RuleMeta {
    RuleMeta {
        name: name.into(),
        accounts: Vec::new(),
        hold: Duration::ZERO,
        keep_firing_for: Duration::ZERO,
        severity: Severity::Warning,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
    }
}

fn divergence_rule() -> crate::config::rules::DivergenceRule {
    let r = rule(10, NoTraffic::Wait);
    crate::config::rules::DivergenceRule {
        meta: meta("divergence"),
        spend: r.numerator,
        traffic: r.denominator,
        contributors: r.contributors,
        window: Duration::from_secs(86_400),
        window_offset: Duration::ZERO,
        threshold_points: Decimal::from(30),
        min_impact: Decimal::from(10),
    }
}

fn change_rule(min_impact: i64) -> crate::config::rules::ChangeRule {
    let r = rule(10, NoTraffic::Wait);
    crate::config::rules::ChangeRule {
        meta: meta("change"),
        series: r.numerator,
        contributors: r.contributors,
        per_billing_period: false,
        window: Duration::from_secs(86_400),
        window_offset: Duration::ZERO,
        compare_to: crate::config::rules::CompareTo::Previous,
        percent: Decimal::from(50),
        min_impact: Decimal::from(min_impact),
        direction: Direction::Up,
    }
}

/// Traffic doubles from day 20 on and the normal line items follow it.
fn traffic_doubles_on_day_20(days: i64) -> Scenario {
    Scenario {
        account: "a",
        traffic: traffic(
            10_000.0,
            vec![TrafficIncident {
                from_day: 20.0,
                to_day: 99.0,
                factor: 2.0,
            }],
        ),
        items: normal_items(),
        days,
        spend_lag_hours: 0,
    }
}

fn doubled_spend() -> Scenario {
    let mut items = normal_items();
    items.push(Item {
        name: "COMPUTE/UPTIME",
        fixed_per_hour: 0.0,
        price_per_unit: 0.0,
        change: Some((20.0, 5.0, 1.0)),
    });
    Scenario {
        account: "a",
        traffic: traffic(10_000.0, Vec::new()),
        items,
        days: 21,
        spend_lag_hours: 0,
    }
}

fn evaluate_one(
    store: &SqliteStore,
    rule: &crate::config::RuleConfig,
    at: Timestamp,
) -> Transition {
    let evaluation = super::Evaluator::new(vec![rule.clone()]).evaluate(store, at, &Metrics::new());
    assert!(evaluation.errors.is_empty(), "{:?}", evaluation.errors);
    let mut ts = evaluation.transitions;
    assert_eq!(ts.len(), 1, "{ts:?}");
    ts.remove(0)
}

#[test]
fn divergence_spend_up_on_flat_traffic_but_not_with_it() {
    let store = SqliteStore::open_in_memory().unwrap();
    doubled_spend().fill(&store);
    let at = day(21.0) + SignedDuration::from_mins(5);
    let t = evaluate_one(
        &store,
        &crate::config::RuleConfig::Divergence(divergence_rule()),
        at,
    );
    let Outcome::Breach(f) = &t.outcome else {
        panic!("expected a breach: {}", summary(&t));
    };
    assert!(
        f.summary.contains("spend +100 %") && f.summary.contains("while requests +0 %"),
        "{}",
        f.summary
    );
    assert!(
        f.summary.contains("+$120.00 over what traffic explains"),
        "{}",
        f.summary
    );
    assert!(
        f.summary.contains("top contributor: COMPUTE/UPTIME"),
        "{}",
        f.summary
    );

    let store = SqliteStore::open_in_memory().unwrap();
    traffic_doubles_on_day_20(21).fill(&store);
    let t = evaluate_one(
        &store,
        &crate::config::RuleConfig::Divergence(divergence_rule()),
        at,
    );
    assert!(matches!(t.outcome, Outcome::Clear(_)), "{}", summary(&t));
}

#[test]
fn change_needs_both_a_percentage_and_an_amount() {
    let store = SqliteStore::open_in_memory().unwrap();
    doubled_spend().fill(&store);
    let at = day(21.0) + SignedDuration::from_mins(5);
    let t = evaluate_one(
        &store,
        &crate::config::RuleConfig::Change(change_rule(50)),
        at,
    );
    let Outcome::Breach(f) = &t.outcome else {
        panic!("expected a breach: {}", summary(&t));
    };
    assert!(
        f.summary.contains("$240.00 in the daily window") && f.summary.contains("+100 %"),
        "{}",
        f.summary
    );
    // +$120 is under a $500 minimum: no page, however large the percentage.
    let t = evaluate_one(
        &store,
        &crate::config::RuleConfig::Change(change_rule(500)),
        at,
    );
    assert!(matches!(t.outcome, Outcome::Clear(_)), "{}", summary(&t));
}

#[test]
fn stale_data_alerts_after_the_expected_lag() {
    let store = SqliteStore::open_in_memory().unwrap();
    Scenario {
        account: "a",
        traffic: traffic(10_000.0, Vec::new()),
        items: normal_items(),
        days: 10,
        spend_lag_hours: 0,
    }
    .fill(&store);
    let stale = crate::config::RuleConfig::Stale(crate::config::rules::StaleRule {
        meta: meta("stale"),
        source: Some("sim".into()),
        max_age: Duration::from_secs(86_400),
    });
    let fresh = evaluate_one(&store, &stale, day(10.5));
    assert!(
        matches!(fresh.outcome, Outcome::Clear(_)),
        "{}",
        summary(&fresh)
    );
    let old = evaluate_one(&store, &stale, day(12.0));
    let Outcome::Breach(f) = &old.outcome else {
        panic!("expected a breach: {}", summary(&old));
    };
    assert!(
        f.summary
            .contains("No new data from sim for account a since 2026-11-11T00:00:00Z (2days"),
        "{}",
        f.summary
    );
}

#[test]
fn change_per_billing_period_compares_invoices() {
    use crate::model::Period;
    let store = SqliteStore::open_in_memory().unwrap();
    let usd = Currency::new("USD").unwrap();
    let month = |m: i8| Period {
        start: jiff::civil::date(2026, m, 1)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .unwrap()
            .timestamp(),
        end: jiff::civil::date(2026, m + 1, 1)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .unwrap()
            .timestamp(),
    };
    let invoice = |account: &str, m: i8, amount: &str| Observation {
        key: SeriesKey::new("racknap", account, crate::model::series::SPEND_TOTAL)
            .with_label(LABEL_CURRENCY, "USD"),
        at: month(m).end,
        period: Some(month(m)),
        value: amount.parse().unwrap(),
        kind: ObservationKind::PeriodTotal,
        unit: Unit::Money(usd.clone()),
    };
    store
        .put_observations(&[
            invoice("big", 9, "1000"),
            invoice("big", 10, "1000"),
            invoice("big", 11, "2500"),
            invoice("tiny", 10, "0.20"),
            invoice("tiny", 11, "0.80"),
        ])
        .unwrap();
    let mut r = change_rule(100);
    r.per_billing_period = true;
    r.series = Selector {
        source: Some("racknap".into()),
        series: crate::model::series::SPEND_TOTAL.into(),
        matchers: BTreeMap::new(),
    };
    let evaluation = super::Evaluator::new(vec![crate::config::RuleConfig::Change(r)]).evaluate(
        &store,
        ts("2026-12-05T00:00:00Z"),
        &Metrics::new(),
    );
    assert!(evaluation.errors.is_empty(), "{:?}", evaluation.errors);
    let by_account: BTreeMap<String, &Transition> = evaluation
        .transitions
        .iter()
        .map(|t| (t.labels["account"].clone(), t))
        .collect();
    let Outcome::Breach(f) = &by_account["big"].outcome else {
        panic!("expected a breach: {}", summary(by_account["big"]));
    };
    assert!(
        f.summary.contains("$2,500.00 in the billing period") && f.summary.contains("+150 %"),
        "{}",
        f.summary
    );
    assert!(
        matches!(by_account["tiny"].outcome, Outcome::Clear(_)),
        "+300 % but +$0.60: {}",
        summary(by_account["tiny"])
    );
}

fn anomaly_rule(
    name: &str,
    input: crate::config::rules::AnomalyInput,
) -> crate::config::RuleConfig {
    crate::config::RuleConfig::Anomaly(crate::config::rules::AnomalyRule {
        meta: meta(name),
        input,
        window: Duration::from_secs(3600),
        window_offset: Duration::ZERO,
        history: Duration::from_secs(14 * 86_400),
        detector: "auto".into(),
        params: Vec::new(),
        threshold: 0.999,
        direction: Direction::Up,
        min_impact: Decimal::ONE,
    })
}

fn spend_anomaly() -> crate::config::RuleConfig {
    anomaly_rule(
        "spend-anomaly",
        crate::config::rules::AnomalyInput::Series(rule(10, NoTraffic::Wait).numerator),
    )
}

fn unit_cost_anomaly() -> crate::config::RuleConfig {
    let mut ratio = rule(0, NoTraffic::Wait);
    ratio.meta.name = "unit-cost".into();
    let mut r = anomaly_rule(
        "unit-cost-anomaly",
        crate::config::rules::AnomalyInput::UnitCost {
            ratio: "unit-cost".into(),
            rule: Some(Box::new(ratio)),
        },
    );
    if let crate::config::RuleConfig::Anomaly(a) = &mut r {
        a.min_impact = Decimal::ZERO;
    }
    r
}

fn states(store: &SqliteStore, rule: &str) -> Vec<crate::model::DetectorState> {
    store.detector_states(rule).unwrap()
}

#[test]
fn anomaly_rule_flags_the_doubled_hourly_spend() {
    let store = SqliteStore::open_in_memory().unwrap();
    doubled_spend().fill(&store);
    let anomaly = spend_anomaly();
    let quiet = evaluate_one(&store, &anomaly, day(19.6));
    assert!(
        matches!(quiet.outcome, Outcome::Clear(_)),
        "{}",
        summary(&quiet)
    );
    let t = evaluate_one(&store, &anomaly, day(20.0) + SignedDuration::from_mins(150));
    let Outcome::Breach(f) = &t.outcome else {
        panic!("expected a breach: {}", summary(&t));
    };
    assert!(
        f.summary.contains("in the hourly window") && f.summary.contains("impact $"),
        "{}",
        f.summary
    );
}

#[test]
fn anomaly_detector_state_streams_and_survives_a_restart() {
    let store = SqliteStore::open_in_memory().unwrap();
    doubled_spend().fill(&store);
    let anomaly = spend_anomaly();
    let start = day(18.0) + SignedDuration::from_mins(10);
    evaluate_one(&store, &anomaly, start);
    let first = states(&store, "spend-anomaly");
    assert_eq!(first.len(), 1, "{first:?}");
    // The first evaluation learns the configured history once (14 days of hourly windows).
    assert!(
        (14 * 24 - 2..=14 * 24).contains(&(first[0].samples as i64)),
        "{}",
        first[0].samples
    );
    // A re-evaluation within the same hour learns nothing new.
    evaluate_one(&store, &anomaly, start + SignedDuration::from_mins(20));
    assert_eq!(states(&store, "spend-anomaly")[0].samples, first[0].samples);
    // Each later hour, by a new evaluator (as after a restart), learns exactly one window
    // and keeps where learning began: nothing is relearned.
    for hour in 1..=5 {
        let restarted = super::Evaluator::new(vec![anomaly.clone()]);
        let evaluation = restarted.evaluate(
            &store,
            start + SignedDuration::from_hours(hour),
            &Metrics::new(),
        );
        assert!(evaluation.errors.is_empty(), "{:?}", evaluation.errors);
        let now = states(&store, "spend-anomaly");
        assert_eq!(now[0].samples, first[0].samples + hour as u64);
        assert_eq!(now[0].learning_since, first[0].learning_since);
        assert_eq!(
            now[0].learned_until,
            first[0].learned_until + SignedDuration::from_hours(hour)
        );
    }
}

#[test]
fn anomaly_state_from_other_settings_or_unreadable_is_relearned() {
    let store = SqliteStore::open_in_memory().unwrap();
    doubled_spend().fill(&store);
    let at = day(18.0) + SignedDuration::from_mins(10);
    evaluate_one(&store, &spend_anomaly(), at);
    let learned = states(&store, "spend-anomaly")[0].clone();

    // An unreadable row: the rule relearns the history rather than failing or judging blind.
    let mut broken = learned.clone();
    broken.state = "{not json".into();
    broken.samples = 3;
    store.save_detector_states(&[broken]).unwrap();
    let t = evaluate_one(&store, &spend_anomaly(), at);
    assert!(matches!(t.outcome, Outcome::Clear(_)), "{}", summary(&t));
    assert_eq!(states(&store, "spend-anomaly")[0].samples, learned.samples);
    // From the whole history, not from what a resuming cycle reads: the same detector.
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    assert_eq!(
        json(&states(&store, "spend-anomaly")[0].state),
        json(&learned.state)
    );

    // Other detector settings: the old state is not reused.
    let mut other = spend_anomaly();
    if let crate::config::RuleConfig::Anomaly(a) = &mut other {
        a.detector = "ewma".into();
    }
    let mut marked = learned.clone();
    marked.samples = 1_000_000;
    store.save_detector_states(&[marked]).unwrap();
    evaluate_one(&store, &other, at);
    let now = states(&store, "spend-anomaly");
    assert_eq!(now[0].samples, learned.samples, "relearned from history");
    assert!(now[0].state.contains("\"ewma\""), "{}", &now[0].state[..60]);
}

#[test]
fn unit_cost_anomaly_ignores_traffic_growth_and_flags_a_price_change() {
    // Traffic doubles on day 20 and spend follows it: spend is anomalous, unit cost is not.
    let grows = traffic_doubles_on_day_20(21);
    let store = SqliteStore::open_in_memory().unwrap();
    grows.fill(&store);
    // Midday, when doubled spend stands out of the whole daily range too (auto wants both
    // its time-of-day and its whole-series baseline to agree).
    let at = day(20.0) + SignedDuration::from_mins(13 * 60 + 10);
    let spend = evaluate_one(&store, &spend_anomaly(), at);
    assert!(
        matches!(spend.outcome, Outcome::Breach(_)),
        "{}",
        summary(&spend)
    );
    let cost = evaluate_one(&store, &unit_cost_anomaly(), at);
    assert!(
        matches!(cost.outcome, Outcome::Clear(_)),
        "{}",
        summary(&cost)
    );
    assert!(summary(&cost).contains("unit cost"), "{}", summary(&cost));

    // The price of the main item triples on day 20 on unchanged traffic.
    let mut items = normal_items();
    items[0].change = Some((20.0, 0.0, 3.0));
    let repriced = Scenario {
        account: "a",
        traffic: traffic(10_000.0, Vec::new()),
        items,
        days: 21,
        spend_lag_hours: 0,
    };
    let store = SqliteStore::open_in_memory().unwrap();
    repriced.fill(&store);
    let quiet = evaluate_one(&store, &unit_cost_anomaly(), day(19.5));
    assert!(
        matches!(quiet.outcome, Outcome::Clear(_)),
        "{}",
        summary(&quiet)
    );
    let t = evaluate_one(&store, &unit_cost_anomaly(), at);
    let Outcome::Breach(f) = &t.outcome else {
        panic!("expected a breach: {}", summary(&t));
    };
    assert!(f.summary.contains(" per 1k requests"), "{}", f.summary);
    assert_eq!(t.labels["rule_type"], "anomaly");
    assert_eq!(t.labels["currency"], "USD");
}

/// Rules evaluated side by side give exactly what they give one after the other: the same
/// transitions in config order, and each rule's status in place, in both the first cycle
/// (run one at a time) and the next (run on several threads, longest first).
#[test]
fn rules_on_several_threads_evaluate_as_one_after_the_other() {
    let store = SqliteStore::open_in_memory().unwrap();
    doubled_spend().fill(&store);
    let rules = vec![
        crate::config::RuleConfig::Ratio(rule(50, NoTraffic::Alert)),
        crate::config::RuleConfig::Divergence(divergence_rule()),
        crate::config::RuleConfig::Change(change_rule(50)),
        crate::config::RuleConfig::Ratio(rule(500, NoTraffic::Wait)),
    ];
    let at = day(21.0) + SignedDuration::from_mins(5);
    let text = |e: &super::Evaluation| {
        let transitions: Vec<String> = e
            .transitions
            .iter()
            .map(|t| format!("{} {:?} {}", t.rule, t.labels, summary(t)))
            .collect();
        let status: Vec<String> = e.status.iter().map(|s| s.name.clone()).collect();
        (transitions, status, e.errors.len())
    };
    let serial = super::Evaluator::with_threads(rules.clone(), 1);
    let expected = text(&serial.evaluate(&store, at, &Metrics::new()));
    assert_eq!(expected.0.len(), 4, "{expected:?}");
    assert!(expected.0.iter().any(|t| !t.contains("waiting")));
    let parallel = super::Evaluator::with_threads(rules, 3);
    for cycle in 0..3 {
        let got = text(&parallel.evaluate(&store, at, &Metrics::new()));
        assert_eq!(got, expected, "cycle {cycle}");
    }
}
