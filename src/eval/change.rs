//! `change`: period-over-period growth of a series (a day against the day before, a week
//! against the week before, or the same window a week ago) with both a percentage and an
//! absolute minimum, so "+300 %" on a $0.10 account pages nobody.

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;

use super::explain::{self, Facts};
use super::select::{Group, coverage_hint, load_groups};
use super::window::aligned_windows;
use super::{EvalError, base_transition, breach_or_clear, contributors, signed, waiting};
use crate::config::rules::{ChangeRule, CompareTo};
use crate::metrics::Metrics;
use crate::model::{Transition, Unit};
use crate::store::Store;

fn signed_text(v: Decimal, unit: &Unit) -> String {
    let text = explain::amount(v, unit);
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
    // Per billing period, read far enough back for the previous period too.
    let from = if rule.per_billing_period {
        at - SignedDuration::from_hours(24 * 70)
    } else {
        before.0 - window
    };
    let groups = load_groups(store, &rule.series, &rule.meta.accounts, from, at)?;
    let mut out = Vec::new();
    for group in &groups {
        let mut t = base_transition(&rule.meta, "change", &group.account);
        if let Some(c) = group.unit.currency() {
            t.labels.insert("currency".into(), c.to_string());
        }
        let (current, before) = if rule.per_billing_period {
            match period_windows(group, at) {
                Some(w) => w,
                None => {
                    out.push(waiting(
                        t,
                        at,
                        "no previous billing period to compare with yet",
                    ));
                    continue;
                }
            }
        } else {
            (current, before)
        };
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
        // Contributors explain a breach; a clear instance (most of them, every cycle) skips
        // reading its line items.
        let top = match group.unit.currency().filter(|_| breach) {
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
        let window_text = if rule.per_billing_period {
            "billing period".to_string()
        } else {
            explain::window_name(rule.window)
        };
        let against = match (rule.per_billing_period, rule.compare_to) {
            (true, _) => "the same part of the previous billing period".to_string(),
            (false, CompareTo::Previous) => format!("the previous {window_text} window"),
            (false, CompareTo::WeekAgo) => "the same window a week earlier".to_string(),
        };
        let facts = Facts {
            rule: rule.meta.name.clone(),
            account: group.account.clone(),
            window_start: current.0.to_string(),
            window_end: current.1.to_string(),
            value: explain::amount(now, &group.unit),
            expected: explain::amount(then, &group.unit),
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
            window_text,
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

/// For `window = "period"`: the latest billing period against the one before. A closed
/// latest period compares whole; one in progress compares its elapsed part with the same
/// share of the previous period.
fn period_windows(
    group: &Group,
    at: Timestamp,
) -> Option<((Timestamp, Timestamp), (Timestamp, Timestamp))> {
    let (latest, previous) = group.last_two_periods(at)?;
    if latest.end <= at {
        return Some(((latest.start, latest.end), (previous.start, previous.end)));
    }
    let newest = group
        .series
        .iter()
        .flat_map(|s| s.spans.iter().map(|i| i.to))
        .filter(|t| *t <= at)
        .max()?;
    let fraction = newest.duration_since(latest.start).as_secs_f64() / latest.length_seconds();
    if fraction <= 0.0 {
        return None;
    }
    let same_share =
        previous.start + SignedDuration::from_secs_f64(fraction * previous.length_seconds());
    Some(((latest.start, newest), (previous.start, same_share)))
}
