//! Rule tables beyond `budget`: `ratio`, `divergence`, `change`, `stale`. Each has the
//! Prometheus-style `for`, `keep_firing_for`, `severity`, `labels` and `annotations`.

use std::collections::BTreeMap;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;

use super::{AmountText, Checker};
use crate::model::Severity;
use crate::model::series;

/// Which series a rule reads: `{ source = "rs", series = "line_item_spend_period_to_date", match = { item = "RCDN/BWOUT" } }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelector {
    pub source: Option<String>,
    pub series: Option<String>,
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    pub source: Option<String>,
    pub series: String,
    pub matchers: BTreeMap<String, String>,
}

impl RawSelector {
    fn validate(&self, path: &str, default_series: &str, c: &mut Checker) -> Selector {
        let series = self
            .series
            .clone()
            .unwrap_or_else(|| default_series.to_string());
        const KNOWN: &[&str] = &[
            series::SPEND_PTD,
            series::SPEND_TOTAL,
            series::ITEM_SPEND_PTD,
            series::ITEM_SPEND_TOTAL,
            series::USAGE_PTD,
            series::USAGE_TOTAL,
            series::TRAFFIC,
        ];
        if !KNOWN.contains(&series.as_str()) {
            c.error(
                format!("{path}.series"),
                format!("unknown series {series:?}; one of {}", KNOWN.join(", ")),
            );
        }
        Selector {
            source: self.source.clone(),
            series,
            matchers: self.matchers.clone(),
        }
    }
}

/// The fields every rule has.
#[derive(Debug, Clone)]
pub struct RuleMeta {
    pub name: String,
    pub accounts: Vec<String>,
    pub hold: Duration,
    pub keep_firing_for: Duration,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    Up,
    Down,
    Both,
}

impl Direction {
    fn parse(path: &str, text: Option<&str>, c: &mut Checker) -> Direction {
        match text {
            None | Some("up") => Direction::Up,
            Some("down") => Direction::Down,
            Some("both") => Direction::Both,
            Some(other) => {
                c.error(
                    path,
                    format!("unknown direction {other:?}: use \"up\", \"down\" or \"both\""),
                );
                Direction::Up
            }
        }
    }
    pub fn allows(self, above: bool) -> bool {
        match self {
            Direction::Up => above,
            Direction::Down => !above,
            Direction::Both => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seasonality {
    None,
    /// Compare with the same weekday (for daily windows) or weekday and hour.
    Weekday,
    /// Compare with the same hour of day (hourly windows).
    Hour,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// A fixed unit-cost band; either side may be open.
    Band {
        min: Option<Decimal>,
        max: Option<Decimal>,
    },
    /// Rolling median ± `sensitivity` × MAD over `history`.
    Baseline {
        history: Duration,
        min_windows: usize,
        sensitivity: f64,
        seasonality: Seasonality,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoTraffic {
    /// Wait: a window without traffic is not judged.
    Wait,
    /// Spend without traffic is itself a breach.
    Alert,
}

#[derive(Debug, Clone)]
pub struct RatioRule {
    pub meta: RuleMeta,
    pub numerator: Selector,
    pub denominator: Selector,
    /// Contributors to explain a breach: line items of the same account.
    pub contributors: Selector,
    pub window: Duration,
    pub window_offset: Duration,
    /// Unit cost is quoted per this many denominator units ("per 1k requests").
    pub per: Decimal,
    pub expectation: Expectation,
    pub direction: Direction,
    pub min_impact: Decimal,
    pub on_no_traffic: NoTraffic,
}

#[derive(Debug, Clone)]
pub struct DivergenceRule {
    pub meta: RuleMeta,
    pub spend: Selector,
    pub traffic: Selector,
    pub contributors: Selector,
    pub window: Duration,
    pub window_offset: Duration,
    /// Alert when spend growth exceeds traffic growth by this many percentage points.
    pub threshold_points: Decimal,
    pub min_impact: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareTo {
    Previous,
    WeekAgo,
}

#[derive(Debug, Clone)]
pub struct ChangeRule {
    pub meta: RuleMeta,
    pub series: Selector,
    pub contributors: Selector,
    /// `window = "period"`: billing period against the one before (period totals as they
    /// are; a period in progress against the same share of the previous one).
    pub per_billing_period: bool,
    pub window: Duration,
    pub window_offset: Duration,
    pub compare_to: CompareTo,
    pub percent: Decimal,
    pub min_impact: Decimal,
    pub direction: Direction,
}

#[derive(Debug, Clone)]
pub struct AnomalyRule {
    pub meta: RuleMeta,
    pub input: AnomalyInput,
    /// Values are amounts per window (spend per hour, requests per day).
    pub window: Duration,
    pub window_offset: Duration,
    /// How much history the detector learns from at each evaluation.
    pub history: Duration,
    pub detector: String,
    pub params: Vec<(String, String)>,
    /// Score in [0, 1] at or above which a window is anomalous.
    pub threshold: f64,
    pub direction: Direction,
    pub min_impact: Decimal,
}

/// What an anomaly rule watches.
#[derive(Debug, Clone)]
pub enum AnomalyInput {
    /// Per-window amounts of the selected series, per account and unit.
    Series(Selector),
    /// Per-window unit cost of the named ratio rule (spend over traffic), per account and
    /// currency. `rule` is filled in once every rule of the config is known.
    UnitCost {
        ratio: String,
        rule: Option<Box<RatioRule>>,
    },
}

#[derive(Debug, Clone)]
pub struct StaleRule {
    pub meta: RuleMeta,
    pub source: Option<String>,
    pub max_age: Duration,
}

// ---------------------------------------------------------------- raw tables

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBand {
    pub min: Option<AmountText>,
    pub max: Option<AmountText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBaseline {
    pub history: Option<String>,
    pub min_windows: Option<usize>,
    pub sensitivity: Option<f64>,
    pub seasonality: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRatio {
    pub name: String,
    pub numerator: RawSelector,
    pub denominator: RawSelector,
    pub contributors: Option<RawSelector>,
    pub window: Option<String>,
    pub window_offset: Option<String>,
    pub per: Option<AmountText>,
    pub band: Option<RawBand>,
    pub baseline: Option<RawBaseline>,
    pub direction: Option<String>,
    pub min_impact: Option<AmountText>,
    pub on_no_traffic: Option<String>,
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(rename = "for")]
    pub hold: Option<String>,
    pub keep_firing_for: Option<String>,
    pub severity: Option<Severity>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDivergence {
    pub name: String,
    #[serde(default)]
    pub spend: RawSelector,
    #[serde(default)]
    pub traffic: RawSelector,
    pub contributors: Option<RawSelector>,
    pub window: Option<String>,
    pub window_offset: Option<String>,
    pub threshold_points: Option<AmountText>,
    pub min_impact: Option<AmountText>,
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(rename = "for")]
    pub hold: Option<String>,
    pub keep_firing_for: Option<String>,
    pub severity: Option<Severity>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChange {
    pub name: String,
    #[serde(default)]
    pub series: RawSelector,
    pub contributors: Option<RawSelector>,
    pub window: Option<String>,
    pub window_offset: Option<String>,
    pub compare_to: Option<String>,
    pub percent: AmountText,
    pub min_impact: Option<AmountText>,
    pub direction: Option<String>,
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(rename = "for")]
    pub hold: Option<String>,
    pub keep_firing_for: Option<String>,
    pub severity: Option<Severity>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnomaly {
    pub name: String,
    pub series: Option<RawSelector>,
    /// Name of a ratio rule whose unit cost this rule watches (instead of `series`).
    pub unit_cost_of: Option<String>,
    pub window: Option<String>,
    pub window_offset: Option<String>,
    pub history: Option<String>,
    pub detector: Option<String>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    pub threshold: Option<f64>,
    pub direction: Option<String>,
    pub min_impact: Option<AmountText>,
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(rename = "for")]
    pub hold: Option<String>,
    pub keep_firing_for: Option<String>,
    pub severity: Option<Severity>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStale {
    pub name: String,
    pub source: Option<String>,
    pub max_age: String,
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(rename = "for")]
    pub hold: Option<String>,
    pub keep_firing_for: Option<String>,
    pub severity: Option<Severity>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

// ---------------------------------------------------------------- validation

#[allow(clippy::too_many_arguments)]
fn meta(
    path: &str,
    name: &str,
    accounts: &[String],
    hold: Option<&str>,
    keep: Option<&str>,
    severity: Option<Severity>,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    c: &mut Checker,
) -> RuleMeta {
    c.name(&format!("{path}.name"), name);
    for label in labels.keys() {
        if !super::is_label_name(label) {
            c.error(
                format!("{path}.labels.{label}"),
                "invalid label name: use [a-zA-Z_][a-zA-Z0-9_]*",
            );
        }
    }
    for (key, template) in annotations {
        if let Err(e) = crate::eval::explain::check_template(template) {
            c.error(
                format!("{path}.annotations.{key}"),
                format!("invalid template: {e}"),
            );
        }
    }
    RuleMeta {
        name: name.to_string(),
        accounts: accounts.to_vec(),
        hold: c.duration(&format!("{path}.for"), hold, Duration::ZERO),
        keep_firing_for: c.duration(&format!("{path}.keep_firing_for"), keep, Duration::ZERO),
        severity: severity.unwrap_or(Severity::Warning),
        labels: labels.clone(),
        annotations: annotations.clone(),
    }
}

fn decimal(path: &str, text: Option<&AmountText>, default: Decimal, c: &mut Checker) -> Decimal {
    match text.map(AmountText::parse) {
        None => default,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            c.error(path, e);
            default
        }
    }
}

fn non_negative(path: &str, text: Option<&AmountText>, c: &mut Checker) -> Decimal {
    let d = decimal(path, text, Decimal::ZERO, c);
    if d < Decimal::ZERO {
        c.error(path, "must not be negative");
    }
    d
}

fn window(path: &str, text: Option<&str>, c: &mut Checker) -> Duration {
    let w = c.positive_duration(path, text, Duration::from_secs(86_400));
    if w.as_secs() % 60 != 0 || w.subsec_nanos() != 0 {
        c.error(path, "must be whole minutes");
    }
    w
}

/// Line items of the same source explain a spend change unless the rule says otherwise.
fn contributors(
    path: &str,
    raw: Option<&RawSelector>,
    spend: &Selector,
    c: &mut Checker,
) -> Selector {
    match raw {
        Some(r) => r.validate(path, series::ITEM_SPEND_PTD, c),
        None => Selector {
            source: spend.source.clone(),
            series: if spend.series == series::SPEND_TOTAL
                || spend.series == series::ITEM_SPEND_TOTAL
            {
                series::ITEM_SPEND_TOTAL.to_string()
            } else {
                series::ITEM_SPEND_PTD.to_string()
            },
            matchers: BTreeMap::new(),
        },
    }
}

impl RawRatio {
    pub fn validate(&self, path: &str, c: &mut Checker) -> RatioRule {
        let meta = meta(
            path,
            &self.name,
            &self.accounts,
            self.hold.as_deref(),
            self.keep_firing_for.as_deref(),
            self.severity,
            &self.labels,
            &self.annotations,
            c,
        );
        let numerator = self
            .numerator
            .validate(&format!("{path}.numerator"), series::SPEND_PTD, c);
        let denominator =
            self.denominator
                .validate(&format!("{path}.denominator"), series::TRAFFIC, c);
        let per = decimal(&format!("{path}.per"), self.per.as_ref(), Decimal::ONE, c);
        if per <= Decimal::ZERO {
            c.error(format!("{path}.per"), "must be greater than zero");
        }
        let expectation = match (&self.band, &self.baseline) {
            (Some(band), None) => {
                let min = band
                    .min
                    .as_ref()
                    .map(|m| decimal(&format!("{path}.band.min"), Some(m), Decimal::ZERO, c));
                let max = band
                    .max
                    .as_ref()
                    .map(|m| decimal(&format!("{path}.band.max"), Some(m), Decimal::ZERO, c));
                if min.is_none() && max.is_none() {
                    c.error(format!("{path}.band"), "give min, max or both");
                }
                if let (Some(lo), Some(hi)) = (min, max)
                    && lo > hi
                {
                    c.error(format!("{path}.band"), "min is above max");
                }
                Expectation::Band { min, max }
            }
            (None, Some(b)) => baseline(&format!("{path}.baseline"), b, c),
            (Some(_), Some(_)) => {
                c.error(
                    path.to_string(),
                    "give either `band` or `baseline`, not both",
                );
                Expectation::Band {
                    min: None,
                    max: None,
                }
            }
            (None, None) => {
                c.error(path.to_string(), "give a fixed `band = { min, max }` or a learned `baseline = { history = \"14d\" }`");
                Expectation::Band {
                    min: None,
                    max: None,
                }
            }
        };
        let on_no_traffic = match self.on_no_traffic.as_deref() {
            None | Some("wait") => NoTraffic::Wait,
            Some("alert") => NoTraffic::Alert,
            Some(other) => {
                c.error(
                    format!("{path}.on_no_traffic"),
                    format!("unknown value {other:?}: use \"wait\" or \"alert\""),
                );
                NoTraffic::Wait
            }
        };
        RatioRule {
            contributors: contributors(
                &format!("{path}.contributors"),
                self.contributors.as_ref(),
                &numerator,
                c,
            ),
            meta,
            numerator,
            denominator,
            window: window(&format!("{path}.window"), self.window.as_deref(), c),
            window_offset: c.duration(
                &format!("{path}.window_offset"),
                self.window_offset.as_deref(),
                Duration::ZERO,
            ),
            per,
            expectation,
            direction: Direction::parse(&format!("{path}.direction"), self.direction.as_deref(), c),
            min_impact: non_negative(&format!("{path}.min_impact"), self.min_impact.as_ref(), c),
            on_no_traffic,
        }
    }
}

fn baseline(path: &str, b: &RawBaseline, c: &mut Checker) -> Expectation {
    let history = c.positive_duration(
        &format!("{path}.history"),
        b.history.as_deref(),
        Duration::from_secs(14 * 86_400),
    );
    let sensitivity = b.sensitivity.unwrap_or(4.0);
    if !(sensitivity.is_finite() && sensitivity > 0.0) {
        c.error(
            format!("{path}.sensitivity"),
            "must be a positive number of MADs, e.g. 4",
        );
    }
    let seasonality = match b.seasonality.as_deref() {
        None | Some("none") => Seasonality::None,
        Some("weekday") => Seasonality::Weekday,
        Some("hour") => Seasonality::Hour,
        Some(other) => {
            c.error(
                format!("{path}.seasonality"),
                format!("unknown seasonality {other:?}: use \"none\", \"weekday\" or \"hour\""),
            );
            Seasonality::None
        }
    };
    let min_windows = b.min_windows.unwrap_or(7);
    if min_windows < 3 {
        c.error(
            format!("{path}.min_windows"),
            "at least 3 windows are needed for a median and MAD",
        );
    }
    Expectation::Baseline {
        history,
        min_windows,
        sensitivity,
        seasonality,
    }
}

impl RawDivergence {
    pub fn validate(&self, path: &str, c: &mut Checker) -> DivergenceRule {
        let meta = meta(
            path,
            &self.name,
            &self.accounts,
            self.hold.as_deref(),
            self.keep_firing_for.as_deref(),
            self.severity,
            &self.labels,
            &self.annotations,
            c,
        );
        let spend = self
            .spend
            .validate(&format!("{path}.spend"), series::SPEND_PTD, c);
        let threshold_points = decimal(
            &format!("{path}.threshold_points"),
            self.threshold_points.as_ref(),
            Decimal::from(30),
            c,
        );
        if threshold_points <= Decimal::ZERO {
            c.error(
                format!("{path}.threshold_points"),
                "must be greater than zero",
            );
        }
        DivergenceRule {
            contributors: contributors(
                &format!("{path}.contributors"),
                self.contributors.as_ref(),
                &spend,
                c,
            ),
            traffic: self
                .traffic
                .validate(&format!("{path}.traffic"), series::TRAFFIC, c),
            spend,
            meta,
            window: window(&format!("{path}.window"), self.window.as_deref(), c),
            window_offset: c.duration(
                &format!("{path}.window_offset"),
                self.window_offset.as_deref(),
                Duration::ZERO,
            ),
            threshold_points,
            min_impact: non_negative(&format!("{path}.min_impact"), self.min_impact.as_ref(), c),
        }
    }
}

impl RawChange {
    pub fn validate(&self, path: &str, c: &mut Checker) -> ChangeRule {
        let meta = meta(
            path,
            &self.name,
            &self.accounts,
            self.hold.as_deref(),
            self.keep_firing_for.as_deref(),
            self.severity,
            &self.labels,
            &self.annotations,
            c,
        );
        let series = self
            .series
            .validate(&format!("{path}.series"), series::SPEND_PTD, c);
        let percent = decimal(
            &format!("{path}.percent"),
            Some(&self.percent),
            Decimal::from(50),
            c,
        );
        if percent <= Decimal::ZERO {
            c.error(format!("{path}.percent"), "must be greater than zero");
        }
        let compare_to = match self.compare_to.as_deref() {
            None | Some("previous") => CompareTo::Previous,
            Some("week_ago") => CompareTo::WeekAgo,
            Some(other) => {
                c.error(
                    format!("{path}.compare_to"),
                    format!("unknown value {other:?}: use \"previous\" or \"week_ago\""),
                );
                CompareTo::Previous
            }
        };
        ChangeRule {
            contributors: contributors(
                &format!("{path}.contributors"),
                self.contributors.as_ref(),
                &series,
                c,
            ),
            series,
            meta,
            per_billing_period: self.window.as_deref() == Some("period"),
            window: match self.window.as_deref() {
                Some("period") => Duration::from_secs(86_400),
                other => window(&format!("{path}.window"), other, c),
            },
            window_offset: c.duration(
                &format!("{path}.window_offset"),
                self.window_offset.as_deref(),
                Duration::ZERO,
            ),
            compare_to,
            percent,
            min_impact: non_negative(&format!("{path}.min_impact"), self.min_impact.as_ref(), c),
            direction: Direction::parse(&format!("{path}.direction"), self.direction.as_deref(), c),
        }
    }
}

impl RawAnomaly {
    pub fn validate(&self, path: &str, c: &mut Checker) -> AnomalyRule {
        let meta = meta(
            path,
            &self.name,
            &self.accounts,
            self.hold.as_deref(),
            self.keep_firing_for.as_deref(),
            self.severity,
            &self.labels,
            &self.annotations,
            c,
        );
        let detector = self.detector.clone().unwrap_or_else(|| "auto".into());
        let params: Vec<(String, String)> = self
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Err(e) = crate::eval::detectors::build(&detector, &params) {
            c.error(format!("{path}.detector"), e);
        }
        let threshold = self
            .threshold
            .unwrap_or(crate::eval::detectors::suite::DEFAULT_THRESHOLD);
        if !(threshold.is_finite() && threshold > 0.0 && threshold < 1.0) {
            c.error(
                format!("{path}.threshold"),
                "a score between 0 and 1, e.g. 0.999",
            );
        }
        let window = window(&format!("{path}.window"), self.window.as_deref(), c);
        let history = c.positive_duration(
            &format!("{path}.history"),
            self.history.as_deref(),
            Duration::from_secs(28 * 86_400),
        );
        if history < window * 10 {
            c.error(
                format!("{path}.history"),
                "give the detector at least 10 windows of history",
            );
        }
        let input = match (&self.series, &self.unit_cost_of) {
            (Some(_), Some(_)) => {
                c.error(
                    format!("{path}.unit_cost_of"),
                    "give either `series` or `unit_cost_of`, not both",
                );
                AnomalyInput::Series(Selector::default())
            }
            (None, Some(ratio)) => AnomalyInput::UnitCost {
                ratio: ratio.clone(),
                rule: None,
            },
            (series_raw, None) => AnomalyInput::Series(
                series_raw
                    .as_ref()
                    .unwrap_or(&RawSelector::default())
                    .validate(&format!("{path}.series"), series::SPEND_PTD, c),
            ),
        };
        AnomalyRule {
            input,
            meta,
            window,
            window_offset: c.duration(
                &format!("{path}.window_offset"),
                self.window_offset.as_deref(),
                Duration::ZERO,
            ),
            history,
            detector,
            params,
            threshold,
            direction: Direction::parse(&format!("{path}.direction"), self.direction.as_deref(), c),
            min_impact: non_negative(&format!("{path}.min_impact"), self.min_impact.as_ref(), c),
        }
    }
}

impl RawStale {
    pub fn validate(&self, path: &str, c: &mut Checker) -> StaleRule {
        let meta = meta(
            path,
            &self.name,
            &self.accounts,
            self.hold.as_deref(),
            self.keep_firing_for.as_deref(),
            self.severity,
            &self.labels,
            &self.annotations,
            c,
        );
        StaleRule {
            meta,
            source: self.source.clone(),
            max_age: c.positive_duration(
                &format!("{path}.max_age"),
                Some(&self.max_age),
                Duration::from_secs(86_400),
            ),
        }
    }
}
