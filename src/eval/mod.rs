//! Rule evaluation: reads samples from the store at a given time (never the clock) and
//! produces a `Transition` for every alert instance of every rule.

pub mod anomaly;
pub mod baseline;
pub mod budget;
pub mod change;
pub mod detectors;
pub mod divergence;
pub mod explain;
pub mod ptd;
pub mod ratio;
#[cfg(test)]
mod scenarios;
pub mod select;
pub mod stale;
pub mod window;

use std::time::Instant;

use jiff::Timestamp;

use jiff::SignedDuration;
use rust_decimal::Decimal;

use crate::config::RuleConfig;
use crate::config::rules::{RuleMeta, Selector};
use crate::metrics::Metrics;
use crate::model::{Currency, Finding, Outcome, Transition, Unit};
use crate::store::{Store, StoreError};
use explain::{Contributor, Facts};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "rule {rule}: account {account} is billed in {data} but the budget is in {budget}; amounts in different currencies are never compared"
    )]
    Currency {
        rule: String,
        account: String,
        budget: String,
        data: String,
    },
    #[error("series {series} is in {unit}, not money")]
    Unit { series: String, unit: String },
    #[error("rule {rule}: {reason}")]
    Rule { rule: String, reason: String },
}

/// The result of evaluating every rule once.
#[derive(Debug, Default)]
pub struct Evaluation {
    pub transitions: Vec<Transition>,
    /// Rules that failed, with why; the others were evaluated.
    pub errors: Vec<(String, EvalError)>,
    /// Every rule's state after this evaluation, in config order.
    pub status: Vec<crate::model::RuleStatus>,
}

pub struct Evaluator {
    rules: Vec<RuleConfig>,
    /// Rules evaluated at once (each rule is one unit of work).
    threads: usize,
    /// Each rule's duration in the last cycle (`None` before its first): the longest start
    /// first, so the cycle is not left waiting on one long rule started last.
    last_seconds: std::sync::Mutex<Vec<Option<f64>>>,
}

/// Rules evaluated at once unless configured: the machine's cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// One rule's result and how long it took.
type RuleRun = (Result<Vec<Transition>, EvalError>, f64);

impl Evaluator {
    /// Evaluates on as many threads as the machine has cores (at most one per rule).
    pub fn new(rules: Vec<RuleConfig>) -> Self {
        Self::with_threads(rules, default_threads())
    }

    /// Evaluates at most `threads` rules at a time (1: one after the other, on the caller's thread).
    pub fn with_threads(rules: Vec<RuleConfig>, threads: usize) -> Self {
        let last_seconds = std::sync::Mutex::new(vec![None; rules.len()]);
        Evaluator {
            rules,
            threads: threads.max(1),
            last_seconds,
        }
    }

    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(RuleConfig::name)
    }

    fn evaluate_rule(
        rule: &RuleConfig,
        store: &dyn Store,
        at: Timestamp,
        metrics: &Metrics,
    ) -> RuleRun {
        let started = Instant::now();
        let result = match rule {
            RuleConfig::Budget(b) => budget::evaluate(b, store, at, metrics),
            RuleConfig::Ratio(r) => ratio::evaluate(r, store, at, metrics),
            RuleConfig::Divergence(r) => divergence::evaluate(r, store, at, metrics),
            RuleConfig::Change(r) => change::evaluate(r, store, at, metrics),
            RuleConfig::Stale(r) => stale::evaluate(r, store, at, metrics),
            RuleConfig::Anomaly(r) => anomaly::evaluate(r, store, at, metrics),
        };
        (result, started.elapsed().as_secs_f64())
    }

    /// Every rule's result, in config order. Rules read the store and write metrics only, so
    /// they run side by side; results are put back in order, so the outcome is the same as
    /// evaluating one after the other.
    fn run_rules(&self, store: &dyn Store, at: Timestamp, metrics: &Metrics) -> Vec<RuleRun> {
        let mut order: Vec<usize> = (0..self.rules.len()).collect();
        let mut threads = self.threads.min(self.rules.len());
        match self.last_seconds.lock() {
            // A rule's first cycle reads its whole history (the cache is cold, detectors
            // learn): those peaks are the process's largest, so first cycles go one at a
            // time rather than add up.
            Ok(last) if last.iter().any(Option::is_none) => threads = 1,
            Ok(last) => order.sort_by(|a, b| {
                let seconds = |i: &usize| last[*i].unwrap_or(0.0);
                seconds(b).total_cmp(&seconds(a))
            }),
            Err(_) => threads = 1,
        }
        if threads <= 1 {
            return self
                .rules
                .iter()
                .map(|rule| Self::evaluate_rule(rule, store, at, metrics))
                .collect();
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slots: Vec<std::sync::Mutex<Option<RuleRun>>> = self
            .rules
            .iter()
            .map(|_| std::sync::Mutex::new(None))
            .collect();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&i) = order.get(n) else { break };
                        let run = Self::evaluate_rule(&self.rules[i], store, at, metrics);
                        if let Ok(mut slot) = slots[i].lock() {
                            *slot = Some(run);
                        }
                    }
                });
            }
        });
        slots
            .into_iter()
            .zip(&self.rules)
            .map(|(slot, rule)| {
                slot.into_inner().ok().flatten().unwrap_or_else(|| {
                    let reason = "its evaluation thread stopped without a result".to_string();
                    let rule = rule.name().to_string();
                    (Err(EvalError::Rule { rule, reason }), 0.0)
                })
            })
            .collect()
    }

    /// Evaluates all rules at `at`. One failing rule does not stop the others.
    pub fn evaluate(&self, store: &dyn Store, at: Timestamp, metrics: &Metrics) -> Evaluation {
        let mut evaluation = Evaluation::default();
        let runs = self.run_rules(store, at, metrics);
        if let Ok(mut last) = self.last_seconds.lock() {
            *last = runs.iter().map(|r| Some(r.1)).collect();
        }
        for (rule, (result, seconds)) in self.rules.iter().zip(runs) {
            metrics.rule_evaluated(rule.name(), result.is_ok(), seconds);
            let mut status = crate::model::RuleStatus {
                name: rule.name().to_string(),
                health: "ok",
                last_error: None,
                last_evaluation: Some(at),
                evaluation_seconds: seconds,
                instances: Vec::new(),
            };
            match result {
                Ok(ts) => {
                    status.instances = ts
                        .iter()
                        .map(|t| crate::model::InstanceStatus {
                            labels: t.labels.clone(),
                            outcome: t.outcome.as_str(),
                            detail: t.outcome.detail().to_string(),
                        })
                        .collect();
                    metrics.rule_outcomes(rule.name(), &status.instances);
                    evaluation.transitions.extend(ts);
                }
                Err(e) => {
                    tracing::warn!(rule = rule.name(), error = %e, "Rule evaluation failed.");
                    status.health = "error";
                    status.last_error = Some(e.to_string());
                    evaluation.errors.push((rule.name().to_string(), e));
                }
            }
            evaluation.status.push(status);
        }
        evaluation
    }
}

pub(crate) fn signed(d: std::time::Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// A transition skeleton carrying the rule's identity labels for one account.
pub(crate) fn base_transition(meta: &RuleMeta, rule_type: &str, account: &str) -> Transition {
    let mut labels = meta.labels.clone();
    labels.insert("alertname".into(), meta.name.clone());
    labels.insert("rule_type".into(), rule_type.into());
    labels.insert("account".into(), account.into());
    labels.insert("severity".into(), meta.severity.as_str().into());
    Transition {
        rule: meta.name.clone(),
        labels,
        annotations: std::collections::BTreeMap::new(),
        severity: meta.severity,
        hold: signed(meta.hold),
        keep_firing_for: signed(meta.keep_firing_for),
        data_time: jiff::Timestamp::UNIX_EPOCH,
        outcome: Outcome::Waiting(String::new()),
    }
}

pub(crate) fn waiting(mut t: Transition, at: jiff::Timestamp, why: &str) -> Transition {
    if t.data_time == jiff::Timestamp::UNIX_EPOCH {
        t.data_time = at;
    }
    t.outcome = Outcome::Waiting(why.to_string());
    t
}

/// Finishes a transition: the rule's annotation templates rendered over `facts`, the
/// built-in `summary` unless the rule overrides it, and the outcome.
#[allow(clippy::too_many_arguments)]
pub(crate) fn breach_or_clear(
    mut t: Transition,
    breach: bool,
    value: Decimal,
    threshold: Decimal,
    unit: Unit,
    summary: String,
    meta: &RuleMeta,
    facts: &Facts,
) -> Transition {
    t.annotations = explain::render_annotations(&meta.annotations, facts);
    t.annotations
        .entry("summary".into())
        .or_insert_with(|| summary.clone());
    let finding = Finding {
        value,
        threshold,
        unit,
        summary: t.annotations.get("summary").cloned().unwrap_or(summary),
        contributors: facts
            .top_contributors
            .iter()
            .map(|c| crate::model::ContributorLine {
                item: c.item.clone(),
                amount: c.amount.clone(),
                delta: c.delta.clone(),
            })
            .collect(),
    };
    t.outcome = if breach {
        Outcome::Breach(finding)
    } else {
        Outcome::Clear(finding)
    };
    t
}

/// Line items of `account` whose spend in `current` rose most above their typical amount
/// (the median over the `reference` windows with data), largest first (at most three).
pub(crate) fn contributors(
    store: &dyn Store,
    selector: &Selector,
    account: &str,
    currency: &Currency,
    current: (jiff::Timestamp, jiff::Timestamp),
    reference: &[(jiff::Timestamp, jiff::Timestamp)],
    at: jiff::Timestamp,
) -> Result<Vec<Contributor>, EvalError> {
    let Some(earliest) = reference.iter().map(|w| w.0).min() else {
        return Ok(Vec::new());
    };
    let span = current.1.duration_since(current.0);
    let groups = select::load_groups(store, selector, &[account.to_string()], earliest - span, at)?;
    let mut rows = Vec::new();
    for group in groups
        .iter()
        .filter(|g| g.unit == Unit::Money(currency.clone()))
    {
        for series in &group.series {
            let Some(now) = series.amount(current.0, current.1) else {
                continue;
            };
            // Unknown windows make no claim; the median of the known ones is "typical".
            let typical: Vec<f64> = reference
                .iter()
                .filter_map(|w| series.amount(w.0, w.1))
                .filter_map(|d| rust_decimal::prelude::ToPrimitive::to_f64(&d))
                .collect();
            let Some(typical) = baseline::Baseline::learn(&typical).and_then(|b| {
                <Decimal as rust_decimal::prelude::FromPrimitive>::from_f64(b.median)
            }) else {
                continue;
            };
            let delta: Decimal = now - typical;
            if delta <= Decimal::ZERO {
                continue;
            }
            let item = series
                .key
                .labels
                .get(crate::model::series::LABEL_ITEM)
                .cloned()
                .unwrap_or_else(|| series.key.to_string());
            rows.push(Contributor {
                item,
                amount: explain::money(now.round_dp(2), currency),
                delta: explain::signed_money(delta.round_dp(2), currency),
                delta_value: delta,
            });
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.delta_value));
    rows.truncate(3);
    Ok(rows)
}
