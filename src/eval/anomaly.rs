//! `anomaly`: a streaming detector over a series' per-window amounts (spend per hour,
//! requests per day), per account and unit. The detector replays the bounded history held in
//! the store at each evaluation, so a restart relearns nothing that was stored.

use jiff::Timestamp;
use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};

use super::detectors::{self, Sample};
use super::explain::{self, Facts};
use super::select::{coverage_hint, load_groups};
use super::window::aligned_windows;
use super::{EvalError, base_transition, breach_or_clear, signed, waiting};
use crate::config::rules::AnomalyRule;
use crate::metrics::Metrics;
use crate::model::Transition;
use crate::store::Store;

pub fn evaluate(
    rule: &AnomalyRule,
    store: &dyn Store,
    at: Timestamp,
    metrics: &Metrics,
) -> Result<Vec<Transition>, EvalError> {
    let window = signed(rule.window);
    let count = (rule.history.as_secs() / rule.window.as_secs().max(1)) as usize + 1;
    let windows = aligned_windows(at, window, signed(rule.window_offset), count);
    let (Some(&current), Some(&first)) = (windows.last(), windows.first()) else {
        return Ok(Vec::new());
    };
    let groups = load_groups(
        store,
        &rule.series,
        &rule.meta.accounts,
        first.0 - window,
        at,
    )?;
    let mut out = Vec::new();
    for group in &groups {
        let mut t = base_transition(&rule.meta, "anomaly", &group.account);
        if let Some(c) = group.unit.currency() {
            t.labels.insert("currency".into(), c.to_string());
        }
        t.data_time = current.1;
        let Some(now) = group.window_sum(current.0, current.1) else {
            out.push(waiting(
                t,
                at,
                &format!(
                    "window not complete: {}",
                    coverage_hint(group, current.0, current.1)
                ),
            ));
            continue;
        };
        // Replay the history (gaps are skipped, as the detector expects irregular series).
        let mut detector =
            detectors::build(&rule.detector, &rule.params).map_err(|e| EvalError::Unit {
                series: rule.meta.name.clone(),
                unit: e,
            })?;
        let mut last = None;
        for w in &windows {
            let Some(v) = group.window_sum(w.0, w.1).and_then(|d| d.to_f64()) else {
                continue;
            };
            last = detector.observe(Sample { at: w.1, value: v });
        }
        let Some(a) = last else {
            out.push(waiting(
                t,
                at,
                &format!("{} is still learning this series", rule.detector),
            ));
            continue;
        };
        let expected = Decimal::from_f64(a.expected).unwrap_or(now);
        let impact = now - expected;
        let up = a.deviation > 0.0;
        let breach = a.score >= rule.threshold
            && rule.direction.allows(up)
            && impact.abs() >= rule.min_impact;
        metrics.anomaly(
            &rule.meta.name,
            &group.account,
            a.expected,
            a.lower,
            a.upper,
            a.score,
        );
        let facts = Facts {
            rule: rule.meta.name.clone(),
            account: group.account.clone(),
            window_start: current.0.to_string(),
            window_end: current.1.to_string(),
            value: explain::amount(now, &group.unit),
            expected: explain::amount(expected, &group.unit),
            expected_low: explain::amount(
                Decimal::from_f64(a.lower).unwrap_or(expected),
                &group.unit,
            ),
            expected_high: explain::amount(
                Decimal::from_f64(a.upper).unwrap_or(expected),
                &group.unit,
            ),
            learned_from: a.explanation.clone(),
            score: format!("{:.4}", a.score),
            impact: explain::amount(impact, &group.unit),
            ..Facts::default()
        };
        let summary = format!(
            "Account {}: {} in the {} window ending {} (expected {}, {}–{}; score {}): {}; impact {}",
            group.account,
            facts.value,
            explain::window_name(rule.window),
            current.1,
            facts.expected,
            facts.expected_low,
            facts.expected_high,
            facts.score,
            a.explanation,
            facts.impact,
        );
        out.push(breach_or_clear(
            t,
            breach,
            now,
            expected,
            group.unit.clone(),
            summary,
            &rule.meta,
            &facts,
        ));
    }
    Ok(out)
}
