//! `stale`: no new data from a source for an account for longer than expected. Billing lag
//! is normal (set `max_age` above it: SAKURA's day, RackNap's month); a missing day is not.

use std::collections::BTreeMap;

use jiff::Timestamp;
use rust_decimal::Decimal;

use super::explain::Facts;
use super::{EvalError, base_transition, breach_or_clear};
use crate::config::rules::StaleRule;
use crate::metrics::Metrics;
use crate::model::Unit;
use crate::model::{ObservationKind, Transition};
use crate::store::{SeriesFilter, Store};

pub fn evaluate(
    rule: &StaleRule,
    store: &dyn Store,
    at: Timestamp,
    _metrics: &Metrics,
) -> Result<Vec<Transition>, EvalError> {
    let filter = SeriesFilter {
        source: rule.source.clone(),
        metric: None,
        accounts: rule.meta.accounts.clone(),
    };
    // Newest data time per (source, account): a run of an unchanged value counts until it
    // was last seen; a closed period's total describes its period end.
    let mut newest: BTreeMap<(String, String), Timestamp> = BTreeMap::new();
    for meta in store.list_series(&filter)? {
        let Some(point) = store.latest_point(&meta.key)? else {
            continue;
        };
        let time = match meta.kind {
            ObservationKind::PeriodTotal => point.at,
            _ => point.last_seen,
        };
        let slot = newest
            .entry((meta.key.source.clone(), meta.key.account.clone()))
            .or_insert(time);
        *slot = (*slot).max(time);
    }
    let max_age = super::signed(rule.max_age);
    let mut out = Vec::new();
    for ((source, account), time) in newest {
        let mut t = base_transition(&rule.meta, "stale", &account);
        t.labels.insert("source".into(), source.clone());
        t.data_time = time;
        let age = at.duration_since(time);
        let age_secs = Decimal::from(age.as_secs().max(0));
        let breach = age > max_age;
        let age_text = humantime::format_duration(std::time::Duration::from_secs(
            age.as_secs().max(0) as u64 / 60 * 60,
        ));
        let summary = format!(
            "No new data from {source} for account {account} since {time} ({age_text}; expected within {})",
            humantime::format_duration(rule.max_age)
        );
        let facts = Facts {
            rule: rule.meta.name.clone(),
            account: account.clone(),
            value: age_text.to_string(),
            expected: humantime::format_duration(rule.max_age).to_string(),
            window_end: time.to_string(),
            ..Facts::default()
        };
        out.push(breach_or_clear(
            t,
            breach,
            age_secs,
            Decimal::from(rule.max_age.as_secs()),
            Unit::Quantity("seconds".into()),
            summary,
            &rule.meta,
            &facts,
        ));
    }
    Ok(out)
}
