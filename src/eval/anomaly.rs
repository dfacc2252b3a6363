//! `anomaly`: a streaming detector over per-window values — a series' amounts (spend per
//! hour, requests per day) or a ratio rule's unit cost — per account and unit.
//!
//! The detector's learned state lives in the store. Each evaluation feeds it only the settled
//! windows it has not seen (normally none or one), judges the current window against a copy,
//! and saves the state back: O(1) work per evaluation, and a restart resumes instead of
//! relearning. Without a usable state (first run, changed settings, unreadable row) the
//! detector learns the rule's `history` from the stored points once.

use std::collections::HashMap;

use jiff::Timestamp;
use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};

use super::detectors::{self, AnyDetector, Detector, Sample};
use super::explain::{self, Facts};
use super::ratio;
use super::select::{Group, coverage_hint, load_groups};
use super::window::aligned_windows;
use super::{EvalError, base_transition, breach_or_clear, signed, waiting};
use crate::config::rules::{AnomalyInput, AnomalyRule, RatioRule};
use crate::metrics::Metrics;
use crate::model::{Currency, DetectorState, Transition, Unit};
use crate::store::Store;

/// One instance the rule watches.
enum Watched<'a> {
    Series(&'a Group),
    UnitCost {
        ratio: &'a RatioRule,
        spend: &'a Group,
        traffic: &'a Group,
        currency: Currency,
    },
}

/// The value of one window.
enum Value {
    Known(Decimal),
    /// The window is complete but has no value to learn from (no traffic).
    Absent(String),
    /// Data for the window is not all in yet.
    Incomplete(String),
}

impl Watched<'_> {
    fn account(&self) -> &str {
        match self {
            Watched::Series(g) => &g.account,
            Watched::UnitCost { spend, .. } => &spend.account,
        }
    }

    fn unit(&self) -> Unit {
        match self {
            Watched::Series(g) => g.unit.clone(),
            Watched::UnitCost { currency, .. } => Unit::Money(currency.clone()),
        }
    }

    /// Identity within the rule, for the stored detector state.
    fn instance(&self) -> String {
        match self {
            Watched::Series(g) => format!("{} in {}", g.account, g.unit),
            Watched::UnitCost {
                currency, traffic, ..
            } => format!("{} in {currency} per {}", self.account(), traffic.unit),
        }
    }

    fn value(&self, w: (Timestamp, Timestamp)) -> Value {
        match self {
            Watched::Series(g) => match g.window_sum(w.0, w.1) {
                Some(v) => Value::Known(v),
                None => Value::Incomplete(format!(
                    "window not complete: {}",
                    coverage_hint(g, w.0, w.1)
                )),
            },
            Watched::UnitCost {
                ratio,
                spend,
                traffic,
                ..
            } => match ratio::sample(ratio, spend, traffic, w.0, w.1) {
                ratio::Sample::Cost { cost, .. } => Value::Known(cost),
                ratio::Sample::NoTraffic { .. } => Value::Absent("no traffic in the window".into()),
                ratio::Sample::Incomplete(why) => Value::Incomplete(why),
            },
        }
    }

    fn format(&self, v: Decimal) -> String {
        match self {
            Watched::Series(g) => explain::amount(v, &g.unit),
            Watched::UnitCost {
                ratio,
                traffic,
                currency,
                ..
            } => explain::unit_cost(v, currency, ratio.per, &traffic.unit.to_string()),
        }
    }
}

/// Identifies the settings a learned state depends on.
fn settings_id(rule: &AnomalyRule) -> String {
    let input = match &rule.input {
        AnomalyInput::Series(s) => format!("series {s:?}"),
        AnomalyInput::UnitCost { ratio, rule } => format!(
            "unit cost of {ratio} {:?}",
            rule.as_ref().map(|r| (
                &r.numerator,
                &r.denominator,
                r.per,
                r.window,
                r.window_offset
            ))
        ),
    };
    format!(
        "v1 {} {:?} window {:?}+{:?} {input}",
        rule.detector, rule.params, rule.window, rule.window_offset
    )
}

/// What an anomaly rule reads: the watched groups, the traffic groups of a unit cost, and
/// the ratio rule that defines it.
type Inputs<'r> = (Vec<Group>, Vec<Group>, Option<&'r RatioRule>);

fn load_inputs<'r>(
    rule: &'r AnomalyRule,
    store: &dyn Store,
    from: Timestamp,
    at: Timestamp,
) -> Result<Inputs<'r>, EvalError> {
    // What to watch: one instance per account and unit.
    match &rule.input {
        AnomalyInput::Series(selector) => Ok((
            load_groups(store, selector, &rule.meta.accounts, from, at)?,
            Vec::new(),
            None,
        )),
        AnomalyInput::UnitCost {
            rule: Some(ratio_rule),
            ..
        } => Ok((
            load_groups(store, &ratio_rule.numerator, &rule.meta.accounts, from, at)?,
            load_groups(store, &ratio_rule.denominator, &[], from, at)?,
            Some(ratio_rule.as_ref()),
        )),
        AnomalyInput::UnitCost { ratio, rule: None } => Err(EvalError::Rule {
            rule: rule.meta.name.clone(),
            reason: format!("the ratio rule {ratio:?} it watches is not configured"),
        }),
    }
}

/// The instance a group is watched as; `Ok(Err(why))` when its traffic is missing.
fn watch<'a>(
    group: &'a Group,
    ratio_rule: Option<&'a RatioRule>,
    traffic_index: &ratio::Denominators<'a>,
) -> Result<Result<Watched<'a>, String>, EvalError> {
    let Some(ratio_rule) = ratio_rule else {
        return Ok(Ok(Watched::Series(group)));
    };
    let Unit::Money(currency) = &group.unit else {
        return Err(EvalError::Unit {
            series: format!("{} numerator of {}", group.account, ratio_rule.meta.name),
            unit: group.unit.to_string(),
        });
    };
    Ok(traffic_index
        .for_numerator(ratio_rule, group)?
        .map(|traffic| Watched::UnitCost {
            ratio: ratio_rule,
            spend: group,
            traffic,
            currency: currency.clone(),
        }))
}

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
    let from = first.0 - window;
    let settings = settings_id(rule);
    // Stored detectors of these settings that can resume; an unreadable one relearns.
    let mut saved: HashMap<String, (AnyDetector, DetectorState)> = HashMap::new();
    for state in store.detector_states(&rule.meta.name)? {
        if state.config != settings {
            continue;
        }
        match AnyDetector::restore(&state.state) {
            Ok(detector) => {
                saved.insert(state.instance.clone(), (detector, state));
            }
            Err(e) => {
                tracing::warn!(rule = %rule.meta.name, instance = %state.instance, error = %e,
                    "Stored detector state is unreadable; relearning from history.");
            }
        }
    }
    // A steady cycle learns only the windows since the last one: read from the oldest
    // instance's last learned window (one window earlier, for the anchor), not the whole
    // history. An instance that cannot resume (a new account, an unreadable state) learns
    // the whole history, so then everything is read.
    let resume_from = saved
        .values()
        .map(|(_, s)| s.learned_until)
        .min()
        .map(|t| (t - window).max(from))
        .filter(|t| *t > from);
    let mut loaded = load_inputs(rule, store, resume_from.unwrap_or(from), at)?;
    if resume_from.is_some() {
        let index = ratio::Denominators::new(&loaded.1);
        let mut all_resumed = true;
        for group in &loaded.0 {
            if let Ok(watched) = watch(group, loaded.2, &index)?
                && !saved.contains_key(&watched.instance())
            {
                all_resumed = false;
                break;
            }
        }
        if !all_resumed {
            loaded = load_inputs(rule, store, from, at)?;
        }
    }
    let (groups, traffic_groups, ratio_rule) = loaded;

    let traffic_index = ratio::Denominators::new(&traffic_groups);
    let mut to_save = Vec::new();
    let mut out = Vec::new();

    for group in &groups {
        let mut t = base_transition(&rule.meta, "anomaly", &group.account);
        let watched = match watch(group, ratio_rule, &traffic_index)? {
            Ok(watched) => watched,
            Err(why) => {
                out.push(waiting(t, at, &why));
                continue;
            }
        };
        if let Some(c) = watched.unit().currency() {
            t.labels.insert("currency".into(), c.to_string());
        }
        t.data_time = current.1;
        let instance = watched.instance();

        // Resume the stored detector, or start one that learns the whole history once.
        let resumed = saved.remove(&instance);
        let (mut detector, mut state) = match resumed {
            Some(found) => found,
            None => (
                detectors::build(&rule.detector, &rule.params).map_err(|e| EvalError::Rule {
                    rule: rule.meta.name.clone(),
                    reason: e,
                })?,
                DetectorState {
                    rule: rule.meta.name.clone(),
                    instance: instance.clone(),
                    config: settings.clone(),
                    learned_until: Timestamp::UNIX_EPOCH,
                    learning_since: Timestamp::UNIX_EPOCH,
                    samples: 0,
                    state: String::new(),
                    updated_at: at,
                },
            ),
        };

        // Learn the settled windows not yet seen. A window is settled once it, or any later
        // window, is complete: an incomplete window before a complete one is a gap in the
        // data, not data still on its way.
        let current_value = watched.value(current);
        let pending: Vec<((Timestamp, Timestamp), Value)> = windows[..windows.len() - 1]
            .iter()
            .filter(|w| w.1 > state.learned_until)
            .map(|w| (*w, watched.value(*w)))
            .collect();
        let settled_upto = if matches!(current_value, Value::Incomplete(_)) {
            pending
                .iter()
                .rposition(|(_, v)| !matches!(v, Value::Incomplete(_)))
                .map_or(0, |i| i + 1)
        } else {
            pending.len()
        };
        let mut learned = 0usize;
        for (w, v) in &pending[..settled_upto] {
            if let Value::Known(v) = v
                && let Some(value) = v.to_f64()
            {
                detector.observe(Sample { at: w.1, value });
                if state.samples == 0 {
                    state.learning_since = w.1;
                }
                state.samples += 1;
            }
            state.learned_until = w.1;
            learned += 1;
        }
        if learned > 0 || state.state.is_empty() {
            match detector.save() {
                Ok(json) => {
                    state.state = json;
                    state.updated_at = at;
                    to_save.push(state.clone());
                }
                Err(e) => tracing::warn!(rule = %rule.meta.name, instance = %instance, error = %e,
                    "Detector state cannot be saved; it will be relearned."),
            }
        }
        if state.samples > 0 {
            metrics.anomaly_state(
                &rule.meta.name,
                &group.account,
                at.duration_since(state.learning_since)
                    .as_secs_f64()
                    .max(0.0),
                state.samples,
            );
        }

        let now = match current_value {
            Value::Known(v) => v,
            Value::Absent(why) | Value::Incomplete(why) => {
                out.push(waiting(t, at, &why));
                continue;
            }
        };
        // Judge the current window without learning it: it is learned once settled.
        let assessment = now.to_f64().and_then(|value| {
            detector.clone().observe(Sample {
                at: current.1,
                value,
            })
        });
        let Some(a) = assessment else {
            out.push(waiting(
                t,
                at,
                &format!(
                    "{} is still learning this series ({} windows learned)",
                    rule.detector, state.samples
                ),
            ));
            continue;
        };
        out.push(judge(rule, &watched, t, current, now, &a, metrics));
    }
    if !to_save.is_empty() {
        store.save_detector_states(&to_save)?;
    }
    Ok(out)
}

fn judge(
    rule: &AnomalyRule,
    watched: &Watched<'_>,
    t: Transition,
    current: (Timestamp, Timestamp),
    now: Decimal,
    a: &detectors::Assessment,
    metrics: &Metrics,
) -> Transition {
    let expected = Decimal::from_f64(a.expected).unwrap_or(now);
    let impact = now - expected;
    let up = a.deviation > 0.0;
    let breach =
        a.score >= rule.threshold && rule.direction.allows(up) && impact.abs() >= rule.min_impact;
    let account = watched.account();
    metrics.anomaly(
        &rule.meta.name,
        account,
        a.expected,
        a.lower,
        a.upper,
        a.score,
    );
    if let Some(v) = now.to_f64() {
        metrics.anomaly_value(&rule.meta.name, account, v);
    }
    let facts = Facts {
        rule: rule.meta.name.clone(),
        account: account.to_string(),
        window_start: current.0.to_string(),
        window_end: current.1.to_string(),
        value: watched.format(now),
        expected: watched.format(expected),
        expected_low: watched.format(Decimal::from_f64(a.lower).unwrap_or(expected)),
        expected_high: watched.format(Decimal::from_f64(a.upper).unwrap_or(expected)),
        learned_from: a.explanation.clone(),
        score: format!("{:.4}", a.score),
        impact: watched.format(impact),
        ..Facts::default()
    };
    let what = match watched {
        Watched::Series(_) => "",
        Watched::UnitCost { .. } => "unit cost ",
    };
    let summary = format!(
        "Account {account}: {what}{} in the {} window ending {} (expected {}, {}–{}; score {}): {}; impact {}",
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
    breach_or_clear(
        t,
        breach,
        now,
        expected,
        watched.unit(),
        summary,
        &rule.meta,
        &facts,
    )
}
