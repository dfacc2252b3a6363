//! `budget` rule: period-to-date spend and its linear forecast against an amount, at
//! several levels. One alert instance per (account, level, basis).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::EvalError;
use super::ptd::{Forecast, forecast_by_profile, forecast_period_end};
use crate::config::{Basis, BudgetLevel, BudgetRule, ForecastMethod};
use crate::metrics::{BudgetSample, Metrics};
use crate::model::series::SPEND_PTD as METRIC_TOTAL;
use crate::model::{Finding, Money, Outcome, Point, Transition, Unit};
use crate::store::{SeriesFilter, Store};

/// Enough history to cover any billing period plus a forecast window.
const LOOKBACK: SignedDuration = SignedDuration::from_hours(24 * 70);

fn signed(d: std::time::Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

pub fn evaluate(
    rule: &BudgetRule,
    store: &dyn Store,
    at: Timestamp,
    metrics: &Metrics,
) -> Result<Vec<Transition>, EvalError> {
    let filter = SeriesFilter {
        source: rule.source.clone(),
        metric: Some(METRIC_TOTAL.to_string()),
        accounts: rule.accounts.clone(),
    };
    // A linear forecast looks at its window only: read that (plus the point before it, so
    // the newest value is known however old), not 70 days of every account every cycle.
    let (from, anchored) = match rule.forecast {
        ForecastMethod::Linear => {
            let window = signed(rule.forecast_window) + SignedDuration::from_hours(24);
            (at - window.min(LOOKBACK), true)
        }
        ForecastMethod::Profile => (at - LOOKBACK, false),
    };
    // One account at a time as the store hands them over: a rule does not hold every
    // account's points at once (at 10,000 accounts that was 85 MB per cycle).
    let mut out = Vec::new();
    let mut failed = None;
    store.visit_series_points(&filter, from, at, anchored, &mut |meta, points| {
        if failed.is_none()
            && let Err(e) = judge_series(rule, &meta, &points, at, metrics, &mut out)
        {
            failed = Some(e);
        }
        Ok(())
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The instances of one account's period-to-date series, appended to `out`.
fn judge_series(
    rule: &BudgetRule,
    meta: &crate::store::SeriesMeta,
    points: &[Point],
    at: Timestamp,
    metrics: &Metrics,
    out: &mut Vec<Transition>,
) -> Result<(), EvalError> {
    let currency = match &meta.unit {
        Unit::Money(c) => c,
        Unit::Quantity(q) => {
            return Err(EvalError::Unit {
                series: meta.key.to_string(),
                unit: q.clone(),
            });
        }
    };
    if *currency != rule.budget.currency {
        // A budget applies to accounts billed in its currency; naming an account in
        // another currency is a configuration mistake worth an error, not a silent skip.
        if rule.accounts.contains(&meta.key.account) {
            return Err(EvalError::Currency {
                rule: rule.name.clone(),
                account: meta.key.account.clone(),
                budget: rule.budget.currency.to_string(),
                data: currency.to_string(),
            });
        }
        return Ok(());
    }
    let base = |level: &BudgetLevel| instance(rule, &meta.key.source, &meta.key.account, level);
    let Some(latest) = points.last() else {
        out.extend(
            rule.levels
                .iter()
                .map(|l| waiting(base(l), at, "no spend data yet")),
        );
        return Ok(());
    };
    let Some(period) = latest.period else {
        out.extend(
            rule.levels
                .iter()
                .map(|l| waiting(base(l), at, "spend data has no billing period")),
        );
        return Ok(());
    };
    if at >= period.end {
        out.extend(rule.levels.iter().map(|l| {
            waiting(
                base(l),
                at,
                "billing period ended; waiting for the new period's data",
            )
        }));
        return Ok(());
    }
    let linear = || forecast_period_end(points, period, signed(rule.forecast_window));
    let forecast = match rule.forecast {
        ForecastMethod::Linear => linear(),
        // The profile needs a past period; until then say the forecast is linear.
        ForecastMethod::Profile => forecast_by_profile(points, period, latest).or_else(|| {
            linear().map(|mut f| {
                f.method
                    .push_str(" (no complete past period for a profile yet)");
                f
            })
        }),
    };
    let budget = rule.budget.amount.to_f64().unwrap_or(f64::NAN);
    metrics.budget_evaluated(&BudgetSample {
        rule: &rule.name,
        source: &meta.key.source,
        account: &meta.key.account,
        currency: currency.as_str(),
        budget,
        actual: latest.value.to_f64().unwrap_or(f64::NAN),
        forecast: forecast.as_ref().and_then(|f| f.value.to_f64()),
    });
    for level in &rule.levels {
        let t = base(level);
        out.push(judge(
            rule,
            level,
            latest,
            period.end,
            forecast.as_ref(),
            t,
            at,
        ));
    }
    Ok(())
}

/// A transition skeleton with the instance's identity labels.
fn instance(rule: &BudgetRule, source: &str, account: &str, level: &BudgetLevel) -> Transition {
    let mut labels: BTreeMap<String, String> = rule.labels.clone();
    labels.insert("alertname".into(), rule.name.clone());
    labels.insert("rule_type".into(), "budget".into());
    labels.insert("source".into(), source.into());
    labels.insert("account".into(), account.into());
    labels.insert("currency".into(), rule.budget.currency.to_string());
    labels.insert("level".into(), level.percent.to_string());
    labels.insert("basis".into(), level.basis.as_str().into());
    labels.insert("severity".into(), level.severity.as_str().into());
    Transition {
        rule: rule.name.clone(),
        labels,
        annotations: rule.annotations.clone(),
        severity: level.severity,
        hold: signed(rule.hold),
        keep_firing_for: signed(rule.keep_firing_for),
        data_time: Timestamp::UNIX_EPOCH,
        outcome: Outcome::Waiting(String::new()),
    }
}

fn waiting(mut t: Transition, at: Timestamp, why: &str) -> Transition {
    t.data_time = at;
    t.outcome = Outcome::Waiting(why.to_string());
    t
}

fn percent_of(value: Decimal, budget: Decimal) -> String {
    if budget.is_zero() {
        return "n/a".into();
    }
    format!("{}%", (value * Decimal::ONE_HUNDRED / budget).round_dp(0))
}

fn judge(
    rule: &BudgetRule,
    level: &BudgetLevel,
    latest: &Point,
    period_end: Timestamp,
    forecast: Option<&Forecast>,
    mut t: Transition,
    at: Timestamp,
) -> Transition {
    let currency = rule.budget.currency.clone();
    let money = |d: Decimal| Money::new(d, currency.clone()).to_string();
    let threshold = (rule.budget.amount * level.percent / Decimal::ONE_HUNDRED).round_dp(2);
    let account = t.labels.get("account").cloned().unwrap_or_default();
    let budget_text = money(rule.budget.amount);
    let period_end_text = period_end.strftime("%Y-%m-%d").to_string();
    t.data_time = latest.last_seen;
    let (value, summary) = match level.basis {
        Basis::Actual => {
            let mut s = format!(
                "Account {account}: spend so far this period is {} — {} of the {budget_text} budget ({}% level, {})",
                money(latest.value),
                percent_of(latest.value, rule.budget.amount),
                level.percent,
                money(threshold),
            );
            if let Some(f) = forecast {
                s.push_str(&format!(
                    "; forecast {} by {period_end_text} at {}/day",
                    money(f.value),
                    money(f.rate_per_day)
                ));
            }
            (latest.value, s)
        }
        Basis::Forecast => {
            let Some(f) = forecast else {
                return waiting(t, at, "too little data in this billing period to forecast");
            };
            let s = format!(
                "Account {account}: forecast spend by {period_end_text} is {} — {} of the {budget_text} budget ({}% level, {}); \
                 {} spent so far, {}/day ({})",
                money(f.value),
                percent_of(f.value, rule.budget.amount),
                level.percent,
                money(threshold),
                money(latest.value),
                money(f.rate_per_day),
                f.method,
            );
            (f.value, s)
        }
    };
    let finding = Finding {
        value,
        threshold,
        unit: Unit::Money(currency),
        summary: summary.clone(),
        contributors: Vec::new(),
    };
    t.annotations.insert("summary".into(), summary);
    t.outcome = if value >= threshold {
        Outcome::Breach(finding)
    } else {
        Outcome::Clear(finding)
    };
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Currency, Observation, ObservationKind, Period, SeriesKey, Severity};
    use crate::store::SqliteStore;
    use std::str::FromStr;
    use std::time::Duration;

    fn rule() -> BudgetRule {
        BudgetRule {
            name: "monthly".into(),
            source: None,
            accounts: vec![],
            budget: Money::parse("1000", "USD").unwrap(),
            levels: vec![
                BudgetLevel {
                    percent: Decimal::from(80),
                    severity: Severity::Warning,
                    basis: Basis::Actual,
                },
                BudgetLevel {
                    percent: Decimal::from(100),
                    severity: Severity::Critical,
                    basis: Basis::Forecast,
                },
            ],
            hold: Duration::ZERO,
            keep_firing_for: Duration::ZERO,
            forecast_window: Duration::from_secs(3 * 86_400),
            forecast: ForecastMethod::Linear,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    fn put(store: &SqliteStore, account: &str, currency: &str, day: u32, value: &str) {
        let c = Currency::new(currency).unwrap();
        store
            .put_observations(&[Observation {
                key: SeriesKey::new("rs", account, METRIC_TOTAL).with_label("currency", currency),
                at: format!("2026-11-{day:02}T00:00:00Z").parse().unwrap(),
                period: Some(Period {
                    start: "2026-11-01T00:00:00Z".parse().unwrap(),
                    end: "2026-12-01T00:00:00Z".parse().unwrap(),
                }),
                value: Decimal::from_str(value).unwrap(),
                kind: ObservationKind::PeriodToDate,
                unit: crate::model::Unit::Money(c),
            }])
            .unwrap();
    }

    #[test]
    fn levels_on_actual_and_forecast() {
        let store = SqliteStore::open_in_memory().unwrap();
        for day in 2..=11 {
            put(&store, "020-1", "USD", day, &(20 * (day - 1)).to_string());
        }
        put(&store, "020-1", "USD", 12, "300"); // +100 in the last day
        let at = "2026-11-12T00:10:00Z".parse().unwrap();
        let ts = evaluate(&rule(), &store, at, &Metrics::new()).unwrap();
        assert_eq!(ts.len(), 2);
        let actual = ts.iter().find(|t| t.labels["basis"] == "actual").unwrap();
        assert!(
            matches!(actual.outcome, Outcome::Clear(_)),
            "{:?}",
            actual.outcome
        );
        let forecast = ts.iter().find(|t| t.labels["basis"] == "forecast").unwrap();
        // (20 + 20 + 100) / 3 days ≈ 46.67/day × 19 days + 300 ≈ 1186 ≥ 1000
        match &forecast.outcome {
            Outcome::Breach(f) => {
                assert!(
                    f.value > Decimal::from(1100) && f.value < Decimal::from(1250),
                    "{}",
                    f.value
                );
                assert!(f.summary.contains("$1,000.00 budget"), "{}", f.summary);
            }
            other => panic!("expected breach, got {other:?}"),
        }
        assert_eq!(forecast.labels["severity"], "critical");
    }

    #[test]
    fn other_currencies_are_never_compared() {
        let store = SqliteStore::open_in_memory().unwrap();
        put(&store, "020-jpy", "JPY", 5, "500000");
        let ts = evaluate(
            &rule(),
            &store,
            "2026-11-05T01:00:00Z".parse().unwrap(),
            &Metrics::new(),
        )
        .unwrap();
        assert!(
            ts.is_empty(),
            "a USD budget ignores JPY accounts it does not name"
        );
        let mut named = rule();
        named.accounts = vec!["020-jpy".into()];
        assert!(matches!(
            evaluate(
                &named,
                &store,
                "2026-11-05T01:00:00Z".parse().unwrap(),
                &Metrics::new()
            ),
            Err(EvalError::Currency { .. })
        ));
    }

    #[test]
    fn waits_after_the_period_ends_without_new_data() {
        let store = SqliteStore::open_in_memory().unwrap();
        put(&store, "020-1", "USD", 20, "900");
        let ts = evaluate(
            &rule(),
            &store,
            "2026-12-01T02:00:00Z".parse().unwrap(),
            &Metrics::new(),
        )
        .unwrap();
        assert!(ts.iter().all(|t| matches!(t.outcome, Outcome::Waiting(_))));
    }
}
