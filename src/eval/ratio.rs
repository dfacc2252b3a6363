//! `ratio`: spend over traffic (unit cost) per account and currency, per aligned window,
//! against a fixed band or a learned robust baseline. Waits until both sides of a window are
//! complete; spend without traffic is a defined outcome, never a division by zero.

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};

use super::baseline::Baseline;
use super::explain::{self, Facts};
use super::select::{Group, coverage_hint, load_groups};
use super::window::aligned_windows;
use super::{EvalError, base_transition, breach_or_clear, contributors, signed, waiting};
use crate::config::rules::{Expectation, NoTraffic, RatioRule, Seasonality};
use crate::metrics::Metrics;
use crate::model::{Transition, Unit};
use crate::store::Store;

/// Unit cost of one window, or why there is none.
pub(crate) enum Sample {
    Cost {
        cost: Decimal,
        spend: Decimal,
        traffic: Decimal,
    },
    NoTraffic {
        spend: Decimal,
    },
    Incomplete(String),
}

pub(crate) fn sample(
    rule: &RatioRule,
    num: &Group,
    den: &Group,
    start: Timestamp,
    end: Timestamp,
) -> Sample {
    let Some(spend) = num.window_sum(start, end) else {
        return Sample::Incomplete(format!(
            "spend not complete for the window: {}",
            coverage_hint(num, start, end)
        ));
    };
    let Some(traffic) = den.window_sum(start, end) else {
        return Sample::Incomplete(format!(
            "traffic not complete for the window: {}",
            coverage_hint(den, start, end)
        ));
    };
    if traffic <= Decimal::ZERO {
        return Sample::NoTraffic { spend };
    }
    match (spend * rule.per).checked_div(traffic) {
        Some(cost) => Sample::Cost {
            cost,
            spend,
            traffic,
        },
        None => Sample::Incomplete("unit cost out of range".into()),
    }
}

/// Windows to learn from: the history before the current window, filtered by seasonality.
pub(crate) fn history_windows(
    windows: &[(Timestamp, Timestamp)],
    current: (Timestamp, Timestamp),
    seasonality: Seasonality,
    offset: SignedDuration,
) -> Vec<(Timestamp, Timestamp)> {
    let local = |t: Timestamp| (t + offset).as_second();
    let weekday = |t: Timestamp| (local(t).div_euclid(86_400) + 4).rem_euclid(7);
    let hour = |t: Timestamp| local(t).rem_euclid(86_400) / 3600;
    windows
        .iter()
        .copied()
        .filter(|w| w.1 <= current.0)
        .filter(|w| match seasonality {
            Seasonality::None => true,
            Seasonality::Weekday => {
                weekday(w.0) == weekday(current.0) && hour(w.0) == hour(current.0)
            }
            Seasonality::Hour => hour(w.0) == hour(current.0),
        })
        .collect()
}

/// Traffic groups by account, so pairing every spend group with its traffic is one lookup
/// (a scan per account was quadratic: 10⁸ comparisons at 10,000 accounts).
pub(crate) struct Denominators<'a> {
    by_account: std::collections::HashMap<&'a str, Vec<&'a Group>>,
}

impl<'a> Denominators<'a> {
    pub(crate) fn new(groups: &'a [Group]) -> Self {
        let mut by_account: std::collections::HashMap<&str, Vec<&Group>> =
            std::collections::HashMap::with_capacity(groups.len());
        for g in groups {
            by_account.entry(g.account.as_str()).or_default().push(g);
        }
        Denominators { by_account }
    }

    /// The traffic group a spend group is divided by: the same account's, or the one account
    /// the denominator names. `Ok(Err(why))` when there is none yet.
    pub(crate) fn for_numerator(
        &self,
        rule: &RatioRule,
        num: &Group,
    ) -> Result<Result<&'a Group, String>, EvalError> {
        let den_account = rule
            .denominator
            .matchers
            .get("account")
            .unwrap_or(&num.account);
        match self
            .by_account
            .get(den_account.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            [one] => Ok(Ok(*one)),
            [] => Ok(Err(format!("no traffic series for account {den_account}"))),
            _ => Err(EvalError::Unit {
                series: format!("{den_account} denominator of {}", rule.meta.name),
                unit: "several units; narrow the denominator with `match`".into(),
            }),
        }
    }
}

pub fn evaluate(
    rule: &RatioRule,
    store: &dyn Store,
    at: Timestamp,
    metrics: &Metrics,
) -> Result<Vec<Transition>, EvalError> {
    let window = signed(rule.window);
    let offset = signed(rule.window_offset);
    let history = match rule.expectation {
        Expectation::Baseline { history, .. } => signed(history),
        Expectation::Band { .. } => SignedDuration::ZERO,
    };
    let count = (history.as_secs() / window.as_secs().max(1)) as usize + 2;
    let windows = aligned_windows(at, window, offset, count);
    let (Some(&current), Some(&first)) = (windows.last(), windows.first()) else {
        return Ok(Vec::new());
    };
    let from = first.0 - window;
    let numerators = load_groups(store, &rule.numerator, &rule.meta.accounts, from, at)?;
    let denominators = load_groups(store, &rule.denominator, &[], from, at)?;
    let denominators = Denominators::new(&denominators);

    let mut out = Vec::new();
    for num in &numerators {
        let Unit::Money(currency) = &num.unit else {
            return Err(EvalError::Unit {
                series: format!("{} numerator of {}", num.account, rule.meta.name),
                unit: num.unit.to_string(),
            });
        };
        let mut t = base_transition(&rule.meta, "ratio", &num.account);
        t.labels.insert("currency".into(), currency.to_string());
        let den = match denominators.for_numerator(rule, num)? {
            Ok(den) => den,
            Err(why) => {
                out.push(waiting(t, at, &why));
                continue;
            }
        };
        let unit = den.unit.to_string();
        t.data_time = current.1;
        let (cost, spend, traffic) = match sample(rule, num, den, current.0, current.1) {
            Sample::Incomplete(why) => {
                out.push(waiting(t, at, &why));
                continue;
            }
            Sample::NoTraffic { spend } => {
                match rule.on_no_traffic {
                    NoTraffic::Wait => out.push(waiting(t, at, "no traffic in the window")),
                    NoTraffic::Alert => {
                        let summary = format!(
                            "Account {}: {} spent with no {unit} in the window ending {}",
                            num.account,
                            explain::money(spend, currency),
                            current.1
                        );
                        let breach = spend > Decimal::ZERO && spend >= rule.min_impact;
                        out.push(breach_or_clear(
                            t,
                            breach,
                            spend,
                            rule.min_impact,
                            Unit::Money(currency.clone()),
                            summary,
                            &rule.meta,
                            &Facts::default(),
                        ));
                    }
                }
                continue;
            }
            Sample::Cost {
                cost,
                spend,
                traffic,
            } => (cost, spend, traffic),
        };

        // Expected band, and how it was made.
        let (low, high, expected, learned_from, score) = match &rule.expectation {
            Expectation::Band { min, max } => {
                let expected = match (min, max) {
                    (Some(lo), Some(hi)) => (lo + hi) / Decimal::TWO,
                    (Some(v), None) | (None, Some(v)) => *v,
                    (None, None) => cost,
                };
                (*min, *max, expected, "a fixed band".to_string(), None)
            }
            Expectation::Baseline {
                min_windows,
                sensitivity,
                seasonality,
                ..
            } => {
                let past: Vec<f64> = history_windows(&windows, current, *seasonality, offset)
                    .into_iter()
                    .filter_map(|w| match sample(rule, num, den, w.0, w.1) {
                        Sample::Cost { cost, .. } => cost.to_f64(),
                        _ => None,
                    })
                    .collect();
                if past.len() < *min_windows {
                    out.push(waiting(
                        t,
                        at,
                        &format!(
                            "learning the baseline: {} of {} windows with data",
                            past.len(),
                            min_windows
                        ),
                    ));
                    continue;
                }
                let Some(b) = Baseline::learn(&past) else {
                    out.push(waiting(t, at, "baseline history holds no usable values"));
                    continue;
                };
                let (lo, hi) = b.band(*sensitivity);
                let how = format!(
                    "median ± {sensitivity} MAD of {} {} windows{}",
                    b.samples,
                    explain::window_name(rule.window),
                    match seasonality {
                        Seasonality::None => "",
                        Seasonality::Weekday => " on the same weekday and hour",
                        Seasonality::Hour => " at the same hour",
                    }
                );
                (
                    Decimal::from_f64(lo.max(0.0)),
                    Decimal::from_f64(hi),
                    Decimal::from_f64(b.median).unwrap_or(cost),
                    how,
                    cost.to_f64().map(|c| b.score(c)),
                )
            }
        };
        let above = high.is_some_and(|hi| cost > hi);
        let below = low.is_some_and(|lo| cost < lo);
        // Money the deviation is worth in this window: (cost − expected) × traffic / per.
        let impact = ((cost - expected) * traffic / rule.per).round_dp(2);
        let breach = ((above && rule.direction.allows(true))
            || (below && rule.direction.allows(false)))
            && impact.abs() >= rule.min_impact;

        let previous = windows.iter().rev().nth(1).copied();
        let (spend_before, traffic_before) = match previous {
            Some(p) => (num.window_sum(p.0, p.1), den.window_sum(p.0, p.1)),
            None => (None, None),
        };
        // Line items are compared with what they typically cost in the windows the
        // expectation came from, not just the window before (which may share the incident).
        let reference = match &rule.expectation {
            Expectation::Baseline { seasonality, .. } => {
                history_windows(&windows, current, *seasonality, offset)
            }
            Expectation::Band { .. } => previous.into_iter().collect(),
        };
        // Contributors explain a breach; a clear instance (most of them, every cycle) skips
        // reading its line items.
        let top = if breach {
            contributors(
                store,
                &rule.contributors,
                &num.account,
                currency,
                current,
                &reference,
                at,
            )?
        } else {
            Vec::new()
        };
        let fmt_cost = |v: Decimal| explain::unit_cost(v, currency, rule.per, &unit);
        let facts = Facts {
            rule: rule.meta.name.clone(),
            account: num.account.clone(),
            window_start: current.0.to_string(),
            window_end: current.1.to_string(),
            value: fmt_cost(cost),
            expected: fmt_cost(expected),
            expected_low: low.map(fmt_cost).unwrap_or_else(|| "-".into()),
            expected_high: high.map(fmt_cost).unwrap_or_else(|| "-".into()),
            learned_from,
            ratio: if expected.is_zero() {
                "n/a".into()
            } else {
                format!("{:.2}×", (cost / expected).round_dp(2))
            },
            score: score
                .map(|s| format!("{s:.1}"))
                .unwrap_or_else(|| "n/a".into()),
            impact: explain::signed_money(impact, currency),
            spend: explain::money(spend, currency),
            spend_change: spend_before
                .map(|b| explain::percent_change(spend, b))
                .unwrap_or_else(|| "n/a".into()),
            traffic: format!("{} {unit}", crate::model::format_decimal(traffic, 0)),
            traffic_change: traffic_before
                .map(|b| explain::percent_change(traffic, b))
                .unwrap_or_else(|| "n/a".into()),
            contributors_text: explain::contributors_text(&top),
            top_contributors: top,
        };
        let band_text = match (low, high) {
            (Some(lo), Some(hi)) => format!(
                "expected {}",
                explain::unit_cost_range(lo, hi, currency, rule.per, &unit)
            ),
            (Some(_), None) => format!("expected at least {}", facts.expected_low),
            (None, _) => format!("expected at most {}", facts.expected_high),
        };
        let verb = if above {
            "rose to"
        } else if below {
            "fell to"
        } else {
            "is"
        };
        let mut summary = format!(
            "Account {}: unit cost {verb} {} ({band_text}, {}{}); spend {} {} in the window while {unit} {}; impact {}",
            num.account,
            facts.value,
            facts.learned_from,
            score.map(|s| format!(", score {s:.1}")).unwrap_or_default(),
            facts.spend,
            facts.spend_change,
            facts.traffic_change,
            facts.impact,
        );
        if !facts.contributors_text.is_empty() {
            summary.push_str("; ");
            summary.push_str(&facts.contributors_text);
        }
        metrics.unit_cost(
            &rule.meta.name,
            &num.account,
            currency,
            cost.to_f64(),
            low.and_then(|v| v.to_f64()),
            high.and_then(|v| v.to_f64()),
        );
        let threshold = if below { low } else { high }.unwrap_or(expected);
        out.push(breach_or_clear(
            t,
            breach,
            cost,
            threshold,
            Unit::Money(currency.clone()),
            summary,
            &rule.meta,
            &facts,
        ));
    }
    Ok(out)
}
