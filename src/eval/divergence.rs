//! `divergence`: spend growth against traffic growth over the same window ("spend +40 %
//! while traffic −3 %"), per account and currency, with a minimum money impact.

use jiff::Timestamp;
use rust_decimal::Decimal;

use super::explain::{self, Facts};
use super::select::{coverage_hint, load_groups};
use super::window::aligned_windows;
use super::{EvalError, base_transition, breach_or_clear, contributors, signed, waiting};
use crate::config::rules::DivergenceRule;
use crate::metrics::Metrics;
use crate::model::{Transition, Unit};
use crate::store::Store;

pub fn evaluate(
    rule: &DivergenceRule,
    store: &dyn Store,
    at: Timestamp,
    _metrics: &Metrics,
) -> Result<Vec<Transition>, EvalError> {
    let window = signed(rule.window);
    let windows = aligned_windows(at, window, signed(rule.window_offset), 2);
    let [previous, current] = windows.as_slice() else {
        return Ok(Vec::new());
    };
    let (previous, current) = (*previous, *current);
    let from = previous.0 - window;
    let spends = load_groups(store, &rule.spend, &rule.meta.accounts, from, at)?;
    let traffics = load_groups(store, &rule.traffic, &[], from, at)?;
    let fixed_traffic = rule.traffic.matchers.get("account");
    let mut out = Vec::new();
    for spend in &spends {
        let Unit::Money(currency) = &spend.unit else {
            return Err(EvalError::Unit {
                series: format!("{} spend of {}", spend.account, rule.meta.name),
                unit: spend.unit.to_string(),
            });
        };
        let mut t = base_transition(&rule.meta, "divergence", &spend.account);
        t.labels.insert("currency".into(), currency.to_string());
        t.data_time = current.1;
        let traffic_account = fixed_traffic.unwrap_or(&spend.account);
        let Some(traffic) = traffics.iter().find(|g| &g.account == traffic_account) else {
            out.push(waiting(
                t,
                at,
                &format!("no traffic series for account {traffic_account}"),
            ));
            continue;
        };
        let unit = traffic.unit.to_string();
        let sums = (
            spend.window_sum(current.0, current.1),
            spend.window_sum(previous.0, previous.1),
            traffic.window_sum(current.0, current.1),
            traffic.window_sum(previous.0, previous.1),
        );
        let (Some(s_now), Some(s_then), Some(t_now), Some(t_then)) = sums else {
            let why = match sums {
                (None, ..) => format!(
                    "spend not complete: {}",
                    coverage_hint(spend, current.0, current.1)
                ),
                (_, None, ..) => format!(
                    "spend not complete for the previous window: {}",
                    coverage_hint(spend, previous.0, previous.1)
                ),
                (_, _, None, _) => format!(
                    "traffic not complete: {}",
                    coverage_hint(traffic, current.0, current.1)
                ),
                _ => format!(
                    "traffic not complete for the previous window: {}",
                    coverage_hint(traffic, previous.0, previous.1)
                ),
            };
            out.push(waiting(t, at, &why));
            continue;
        };
        if s_then <= Decimal::ZERO || t_then <= Decimal::ZERO {
            out.push(waiting(
                t,
                at,
                "no spend or no traffic in the previous window to compare with",
            ));
            continue;
        }
        let spend_growth = (s_now - s_then) / s_then;
        let traffic_growth = (t_now - t_then) / t_then;
        let points = ((spend_growth - traffic_growth) * Decimal::ONE_HUNDRED).round_dp(1);
        // What the previous window's spend would be at this window's traffic.
        let expected = s_then * t_now / t_then;
        let excess = (s_now - expected).round_dp(2);
        let breach = points >= rule.threshold_points && excess >= rule.min_impact;
        // Contributors explain a breach; a clear instance skips reading its line items.
        let top = if breach {
            contributors(
                store,
                &rule.contributors,
                &spend.account,
                currency,
                current,
                &[previous],
                at,
            )?
        } else {
            Vec::new()
        };
        let facts = Facts {
            rule: rule.meta.name.clone(),
            account: spend.account.clone(),
            window_start: current.0.to_string(),
            window_end: current.1.to_string(),
            value: format!("{points} points"),
            expected: explain::money(expected.round_dp(2), currency),
            impact: explain::signed_money(excess, currency),
            spend: explain::money(s_now, currency),
            spend_change: explain::percent_change(s_now, s_then),
            traffic: format!("{} {unit}", crate::model::format_decimal(t_now, 0)),
            traffic_change: explain::percent_change(t_now, t_then),
            contributors_text: explain::contributors_text(&top),
            top_contributors: top,
            learned_from: format!("the previous {} window", explain::window_name(rule.window)),
            ..Facts::default()
        };
        let mut summary = format!(
            "Account {}: spend {} ({}) while {unit} {} against the previous {} window; {} over what traffic explains ({} expected)",
            spend.account,
            facts.spend_change,
            facts.spend,
            facts.traffic_change,
            explain::window_name(rule.window),
            facts.impact,
            facts.expected,
        );
        if !facts.contributors_text.is_empty() {
            summary.push_str("; ");
            summary.push_str(&facts.contributors_text);
        }
        out.push(breach_or_clear(
            t,
            breach,
            points,
            rule.threshold_points,
            Unit::Quantity("percentage points".into()),
            summary,
            &rule.meta,
            &facts,
        ));
    }
    Ok(out)
}
