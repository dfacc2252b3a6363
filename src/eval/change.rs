//! `change`: period-over-period growth of a series (a day against the day before, a week
//! against the week before, or the same window a week ago) with both a percentage and an
//! absolute minimum, so "+300 %" on a $0.10 account pages nobody.

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;

use super::explain::{self, Facts};
use super::select::{coverage_hint, load_groups};
use super::window::aligned_windows;
use super::{EvalError, base_transition, breach_or_clear, contributors, signed, waiting};
use crate::config::rules::{ChangeRule, CompareTo};
use crate::metrics::Metrics;
use crate::model::{Transition, Unit, format_decimal};
use crate::store::Store;

fn amount_text(v: Decimal, unit: &Unit) -> String {
    match unit {
        Unit::Money(c) => explain::money(v.round_dp(2), c),
        Unit::Quantity(q) => format!("{} {q}", format_decimal(v, 2)),
    }
}

fn signed_text(v: Decimal, unit: &Unit) -> String {
    let text = amount_text(v, unit);
    if v >= Decimal::ZERO {
        format!("+{text}")
    } else {
        text
    }
}

pub fn evaluate(
    rule: &ChangeRule,
    store: &dyn Store,
    at: Timestamp,
    _metrics: &Metrics,
) -> Result<Vec<Transition>, EvalError> {
    let window = signed(rule.window);
    let windows = aligned_windows(at, window, signed(rule.window_offset), 1);
    let Some(&current) = windows.last() else {
        return Ok(Vec::new());
    };
    let back = match rule.compare_to {
        CompareTo::Previous => window,
        CompareTo::WeekAgo => SignedDuration::from_hours(24 * 7),
    };
    let before = (current.0 - back, current.1 - back);
    let groups = load_groups(
        store,
        &rule.series,
        &rule.meta.accounts,
        before.0 - window,
        at,
    )?;
    let mut out = Vec::new();
    for group in &groups {
        let mut t = base_transition(&rule.meta, "change", &group.account);
        if let Some(c) = group.unit.currency() {
            t.labels.insert("currency".into(), c.to_string());
        }
        t.data_time = current.1;
        let (Some(now), Some(then)) = (
            group.window_sum(current.0, current.1),
            group.window_sum(before.0, before.1),
        ) else {
            let hint = coverage_hint(group, before.0, current.1);
            out.push(waiting(
                t,
                at,
                &format!("data not complete for both windows: {hint}"),
            ));
            continue;
        };
        let delta = now - then;
        let pct = if then.is_zero() {
            None
        } else {
            Some((delta / then.abs() * Decimal::ONE_HUNDRED).round_dp(1))
        };
        let up = delta > Decimal::ZERO;
        // From nothing to something is an unbounded rise; the absolute minimum decides.
        let big_enough = pct.is_none_or(|p| p.abs() >= rule.percent);
        let breach = rule.direction.allows(up)
            && big_enough
            && delta.abs() >= rule.min_impact
            && !delta.is_zero();
        let top = match group.unit.currency() {
            Some(c) => contributors(
                store,
                &rule.contributors,
                &group.account,
                c,
                current,
                &[before],
                at,
            )?,
            None => Vec::new(),
        };
        let against = match rule.compare_to {
            CompareTo::Previous => {
                format!("the previous {} window", explain::window_name(rule.window))
            }
            CompareTo::WeekAgo => "the same window a week earlier".to_string(),
        };
        let facts = Facts {
            rule: rule.meta.name.clone(),
            account: group.account.clone(),
            window_start: current.0.to_string(),
            window_end: current.1.to_string(),
            value: amount_text(now, &group.unit),
            expected: amount_text(then, &group.unit),
            impact: signed_text(delta, &group.unit),
            spend_change: explain::percent_change(now, then),
            learned_from: against.clone(),
            contributors_text: explain::contributors_text(&top),
            top_contributors: top,
            ..Facts::default()
        };
        let mut summary = format!(
            "Account {}: {} in the {} window ending {} against {} in {against} ({}, {})",
            group.account,
            facts.value,
            explain::window_name(rule.window),
            current.1,
            facts.expected,
            facts.spend_change,
            facts.impact,
        );
        if !facts.contributors_text.is_empty() {
            summary.push_str("; ");
            summary.push_str(&facts.contributors_text);
        }
        out.push(breach_or_clear(
            t,
            breach,
            now,
            then,
            group.unit.clone(),
            summary,
            &rule.meta,
            &facts,
        ));
    }
    Ok(out)
}
