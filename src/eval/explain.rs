//! Alert explanations: the facts of a finding as a template context, the built-in one-line
//! summaries, and rendering of user annotation templates (minijinja).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::model::{Currency, Money, format_decimal};

/// A line item whose spend moved, for "top contributors".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contributor {
    pub item: String,
    /// Spend in the evaluated window, formatted.
    pub amount: String,
    /// Change against the comparison window, formatted with a sign.
    pub delta: String,
    #[serde(skip)]
    pub delta_value: Decimal,
}

/// Everything an annotation template may use. Text fields are already formatted
/// ("¥0.31 per GB", "+¥4,330", "−3 %").
#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    pub rule: String,
    pub account: String,
    pub window_start: String,
    pub window_end: String,
    pub value: String,
    pub expected: String,
    pub expected_low: String,
    pub expected_high: String,
    /// How the expectation was made ("median ± 4 MAD of 14 daily windows").
    pub learned_from: String,
    pub ratio: String,
    pub score: String,
    pub impact: String,
    pub spend: String,
    pub spend_change: String,
    pub traffic: String,
    pub traffic_change: String,
    pub top_contributors: Vec<Contributor>,
    /// "top contributor: RCDN/BWOUT (+$310.00)" or empty.
    pub contributors_text: String,
}

pub fn money(amount: Decimal, currency: &Currency) -> String {
    Money::new(amount, currency.clone()).to_string()
}

/// A money or quantity amount: `$12.40`, `1,234.00 requests`.
pub fn amount(v: Decimal, unit: &crate::model::Unit) -> String {
    match unit {
        crate::model::Unit::Money(c) => money(v.round_dp(2), c),
        crate::model::Unit::Quantity(q) => format!("{} {q}", crate::model::format_decimal(v, 2)),
    }
}

/// `+$1,234.50` / `-¥300`.
pub fn signed_money(amount: Decimal, currency: &Currency) -> String {
    if amount >= Decimal::ZERO {
        format!("+{}", money(amount, currency))
    } else {
        money(amount, currency)
    }
}

/// `+40 %` / `-3 %`; `n/a` without a base.
pub fn percent_change(now: Decimal, before: Decimal) -> String {
    if before.is_zero() {
        return "n/a".into();
    }
    let pct = ((now - before) / before.abs() * Decimal::ONE_HUNDRED).round_dp(0);
    if pct >= Decimal::ZERO {
        format!("+{pct} %")
    } else {
        format!("{pct} %")
    }
}

/// A unit cost with enough digits to be read: `$0.0023 per 1k requests`, `¥0.31 per GB`.
pub fn unit_cost(value: Decimal, currency: &Currency, per: Decimal, unit: &str) -> String {
    // Two significant digits below 1 (¥0.31, $0.0023), cents above, whole yen above 100.
    let abs = value.abs();
    let digits = if abs >= Decimal::from(100) {
        currency.minor_digits()
    } else if abs >= Decimal::ONE || abs.is_zero() {
        2
    } else {
        let mut d = 1;
        let mut scaled = abs * Decimal::TEN;
        while scaled < Decimal::ONE && d < 12 {
            scaled *= Decimal::TEN;
            d += 1;
        }
        d + 1
    };
    let number = format_decimal(value, digits);
    let amount = match currency.symbol() {
        Some(sym) => match number.strip_prefix('-') {
            Some(abs) => format!("-{sym}{abs}"),
            None => format!("{sym}{number}"),
        },
        None => format!("{number} {currency}"),
    };
    format!("{amount} per {}", per_text(per, unit))
}

/// `$0.46–$0.54 per 1k requests`.
pub fn unit_cost_range(
    low: Decimal,
    high: Decimal,
    currency: &Currency,
    per: Decimal,
    unit: &str,
) -> String {
    let suffix = format!(" per {}", per_text(per, unit));
    let lo = unit_cost(low, currency, per, unit);
    let hi = unit_cost(high, currency, per, unit);
    format!("{}–{hi}", lo.strip_suffix(&suffix).unwrap_or(&lo))
}

/// "daily", "hourly", or "6h".
pub fn window_name(window: std::time::Duration) -> String {
    match window.as_secs() {
        86_400 => "daily".into(),
        3_600 => "hourly".into(),
        604_800 => "weekly".into(),
        _ => humantime::format_duration(window).to_string(),
    }
}

/// `GB`, `1k requests`, `1M requests`, `250 hits`.
pub fn per_text(per: Decimal, unit: &str) -> String {
    let per = per.normalize();
    if per == Decimal::ONE {
        unit.to_string()
    } else if per == Decimal::from(1000) {
        format!("1k {unit}")
    } else if per == Decimal::from(1_000_000) {
        format!("1M {unit}")
    } else {
        format!("{per} {unit}")
    }
}

pub fn contributors_text(top: &[Contributor]) -> String {
    match top {
        [] => String::new(),
        [one] => format!("top contributor: {} ({})", one.item, one.delta),
        many => format!(
            "top contributors: {}",
            many.iter()
                .map(|c| format!("{} ({})", c.item, c.delta))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}

/// Checks that an annotation template compiles (for `spendwatch check`).
pub fn check_template(template: &str) -> Result<(), String> {
    environment()
        .template_from_str(template)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Renders the rule's annotations over `facts`; a template that fails at render time
/// (an unknown field) keeps its text with the error appended, so the alert still goes out.
pub fn render_annotations(
    templates: &BTreeMap<String, String>,
    facts: &Facts,
) -> BTreeMap<String, String> {
    let env = environment();
    templates
        .iter()
        .map(|(key, template)| {
            let rendered = env
                .template_from_str(template)
                .and_then(|t| t.render(minijinja::value::Serde(facts)))
                .unwrap_or_else(|e| format!("{template} [template error: {e}]"));
            (key.clone(), rendered)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpy() -> Currency {
        Currency::new("JPY").unwrap()
    }

    #[test]
    fn formats_unit_costs_and_changes() {
        assert_eq!(
            unit_cost(Decimal::new(31, 2), &jpy(), Decimal::ONE, "GB"),
            "¥0.31 per GB"
        );
        let usd = Currency::new("USD").unwrap();
        assert_eq!(
            unit_cost(Decimal::new(23, 4), &usd, Decimal::from(1000), "requests"),
            "$0.0023 per 1k requests"
        );
        assert_eq!(
            unit_cost(Decimal::new(1234, 1), &usd, Decimal::ONE, "HRS"),
            "$123.40 per HRS"
        );
        assert_eq!(signed_money(Decimal::from(4330), &jpy()), "+¥4,330");
        assert_eq!(
            unit_cost_range(
                Decimal::new(10, 2),
                Decimal::new(14, 2),
                &jpy(),
                Decimal::ONE,
                "GB"
            ),
            "¥0.10–¥0.14 per GB"
        );
        assert_eq!(
            percent_change(Decimal::from(140), Decimal::from(100)),
            "+40 %"
        );
        assert_eq!(
            percent_change(Decimal::from(97), Decimal::from(100)),
            "-3 %"
        );
        assert_eq!(percent_change(Decimal::from(5), Decimal::ZERO), "n/a");
    }

    #[test]
    fn templates_render_facts_and_report_errors() {
        let facts = Facts {
            account: "112700675125".into(),
            value: "¥0.31 per GB".into(),
            ..Facts::default()
        };
        let templates = BTreeMap::from([
            (
                "summary".to_string(),
                "{{ account }}: unit cost {{ value }}".to_string(),
            ),
            ("bad".to_string(), "{{ nope }}".to_string()),
        ]);
        let out = render_annotations(&templates, &facts);
        assert_eq!(out["summary"], "112700675125: unit cost ¥0.31 per GB");
        assert!(out["bad"].contains("template error"), "{}", out["bad"]);
        assert!(check_template("{{ value ").is_err());
        assert!(check_template("{% for c in top_contributors %}{{ c.item }}{% endfor %}").is_ok());
    }
}
