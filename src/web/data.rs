//! What the alert page draws: the rule's inputs for the alert's account, read from the store
//! with the same window arithmetic eval uses (`eval::select`, `eval::ratio::sample`), so the
//! chart shows the numbers the rule judged.

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::chart::{BandPoint, Line, Panel, ValueFormat};
use crate::config::RuleConfig;
use crate::config::rules::{AnomalyInput, Expectation, RatioRule, Selector};
use crate::eval::baseline::Baseline;
use crate::eval::ratio::{Denominators, Sample, history_windows, sample};
use crate::eval::select::{Group, load_groups};
use crate::eval::window::aligned_windows;
use crate::eval::{EvalError, signed};
use crate::model::{AlertRecord, Unit, series};
use crate::store::{SeriesFilter, Store};

/// Windows shown before the alert started, and after it ended.
const CONTEXT_BEFORE: i64 = 14;
const CONTEXT_AFTER: i64 = 3;
/// Most windows one chart draws (hourly rules over long alerts).
const MAX_WINDOWS: i64 = 96;

/// The charts of one alert, or a sentence saying why there are none.
pub enum Charts {
    Panels(Vec<Panel>),
    None(String),
}

fn to_f64(d: Decimal) -> Option<f64> {
    d.to_f64()
}

fn value_format(unit: &Unit) -> ValueFormat {
    match unit {
        Unit::Money(c) => ValueFormat::Money(c.to_string()),
        Unit::Quantity(q) => ValueFormat::Quantity(q.clone()),
    }
}

/// The interval the alert was active: pending (or firing) until resolved, or still open.
pub fn alert_interval(alert: &AlertRecord, now: Timestamp) -> (Timestamp, Timestamp) {
    let start = alert.active_at.or(alert.fired_at).unwrap_or(now);
    let end = alert.resolved_at.unwrap_or(now).max(start);
    (start, end)
}

/// The `count` aligned windows of `window` that cover the alert with context around it.
fn windows_around(
    interval: (Timestamp, Timestamp),
    now: Timestamp,
    window: SignedDuration,
    offset: SignedDuration,
    extra_before: usize,
) -> (Vec<(Timestamp, Timestamp)>, usize) {
    let w = window.as_secs().max(1);
    let end = (interval.1 + window * CONTEXT_AFTER as i32).min(now);
    let span = end.duration_since(interval.0).as_secs().max(0) / w + CONTEXT_BEFORE + 1;
    let shown = span.clamp(1, MAX_WINDOWS) as usize;
    (
        aligned_windows(end, window, offset, shown + extra_before),
        shown,
    )
}

pub fn alert_charts(
    rules: &[RuleConfig],
    store: &dyn Store,
    alert: &AlertRecord,
    now: Timestamp,
) -> Result<Charts, EvalError> {
    let Some(rule) = rules.iter().find(|r| r.name() == alert.rule) else {
        return Ok(Charts::None(format!(
            "rule {:?} is no longer in the config",
            alert.rule
        )));
    };
    let account = alert.labels.get("account").cloned().unwrap_or_default();
    let interval = alert_interval(alert, now);
    match rule {
        RuleConfig::Ratio(r) => ratio_panels(r, store, &account, interval, now),
        RuleConfig::Anomaly(a) => match &a.input {
            AnomalyInput::UnitCost { rule: Some(r), .. } => {
                ratio_panels(r, store, &account, interval, now)
            }
            AnomalyInput::UnitCost { rule: None, ratio } => Ok(Charts::None(format!(
                "the unit-cost rule {ratio:?} is not in the config"
            ))),
            AnomalyInput::Series(s) => window_panels(
                &[("Spend per window", s)],
                store,
                &account,
                (signed(a.window), signed(a.window_offset)),
                interval,
                now,
            ),
        },
        RuleConfig::Change(c) => window_panels(
            &[("Amount per window", &c.series)],
            store,
            &account,
            (signed(c.window), signed(c.window_offset)),
            interval,
            now,
        ),
        RuleConfig::Divergence(d) => window_panels(
            &[
                ("Spend per window", &d.spend),
                ("Traffic per window", &d.traffic),
            ],
            store,
            &account,
            (signed(d.window), signed(d.window_offset)),
            interval,
            now,
        ),
        RuleConfig::Budget(b) => {
            let level = alert
                .labels
                .get("level")
                .and_then(|l| l.parse::<Decimal>().ok())
                .unwrap_or(Decimal::ONE_HUNDRED);
            let threshold = b.budget.amount * level / Decimal::ONE_HUNDRED;
            budget_panel(b.source.clone(), store, &account, threshold, interval, now)
        }
        RuleConfig::Stale(_) => Ok(Charts::None(
            "a stale-data rule has no series to draw: see the source's last data time on /sources"
                .into(),
        )),
    }
}

fn find_group<'a>(groups: &'a [Group], account: &str) -> Option<&'a Group> {
    groups.iter().find(|g| g.account == account)
}

/// Spend, traffic and unit cost per window, with the expected unit-cost band as eval
/// computes it at each window (a fixed band, or the baseline learned from the windows
/// before it).
fn ratio_panels(
    rule: &RatioRule,
    store: &dyn Store,
    account: &str,
    interval: (Timestamp, Timestamp),
    now: Timestamp,
) -> Result<Charts, EvalError> {
    let window = signed(rule.window);
    let offset = signed(rule.window_offset);
    let history = match rule.expectation {
        Expectation::Baseline { history, .. } => {
            (signed(history).as_secs() / window.as_secs().max(1)) as usize + 1
        }
        Expectation::Band { .. } => 0,
    };
    let (windows, shown) = windows_around(interval, now, window, offset, history);
    let Some(&first) = windows.first() else {
        return Ok(Charts::None("no whole window yet".into()));
    };
    let to = windows.last().map_or(now, |w| w.1);
    let from = first.0 - window;
    let numerators = load_groups(store, &rule.numerator, &[account.to_string()], from, to)?;
    let denominators = load_groups(store, &rule.denominator, &[], from, to)?;
    let denominators = Denominators::new(&denominators);
    let Some(num) = find_group(&numerators, account) else {
        return Ok(Charts::None(format!(
            "no spend series for account {account}"
        )));
    };
    let den = match denominators.for_numerator(rule, num)? {
        Ok(den) => den,
        Err(why) => return Ok(Charts::None(why)),
    };
    let Unit::Money(currency) = &num.unit else {
        return Ok(Charts::None(format!("spend is in {}, not money", num.unit)));
    };

    let offset_index = windows.len().saturating_sub(shown);
    let mut spend = Vec::with_capacity(shown);
    let mut traffic = Vec::with_capacity(shown);
    let mut cost = Vec::with_capacity(shown);
    let mut band = Vec::with_capacity(shown);
    for (i, w) in windows.iter().enumerate().skip(offset_index) {
        spend.push((w.1, num.window_sum(w.0, w.1).and_then(to_f64)));
        traffic.push((w.1, den.window_sum(w.0, w.1).and_then(to_f64)));
        cost.push((
            w.1,
            match sample(rule, num, den, w.0, w.1) {
                Sample::Cost { cost, .. } => to_f64(cost),
                Sample::NoTraffic { .. } | Sample::Incomplete(_) => None,
            },
        ));
        band.push(match &rule.expectation {
            Expectation::Band { min, max } => Some(BandPoint {
                at: w.1,
                low: min.and_then(to_f64),
                high: max.and_then(to_f64),
            }),
            Expectation::Baseline {
                min_windows,
                sensitivity,
                seasonality,
                ..
            } => {
                let earlier = &windows[i.saturating_sub(history)..i];
                let past: Vec<f64> = history_windows(earlier, *w, *seasonality, offset)
                    .into_iter()
                    .filter_map(|h| match sample(rule, num, den, h.0, h.1) {
                        Sample::Cost { cost, .. } => to_f64(cost),
                        _ => None,
                    })
                    .collect();
                (past.len() >= *min_windows)
                    .then(|| Baseline::learn(&past))
                    .flatten()
                    .map(|b| {
                        let (low, high) = b.band(*sensitivity);
                        BandPoint {
                            at: w.1,
                            low: Some(low),
                            high: Some(high),
                        }
                    })
            }
        });
    }
    let shown_from = windows.get(offset_index).map_or(first.1, |w| w.1);
    let panel = |title: String, format: ValueFormat, line: Line, band| Panel {
        title,
        format,
        from: shown_from,
        to,
        lines: vec![line],
        band,
        marked: Some(interval),
    };
    let per = crate::eval::explain::per_text(rule.per, &den.unit.to_string());
    Ok(Charts::Panels(vec![
        panel(
            format!("Unit cost per {per} ({})", currency),
            ValueFormat::Money(currency.to_string()),
            Line {
                name: "unit cost".into(),
                class: "cost",
                points: cost,
            },
            band,
        ),
        panel(
            "Spend per window (numerator)".into(),
            ValueFormat::Money(currency.to_string()),
            Line {
                name: "spend".into(),
                class: "numerator",
                points: spend,
            },
            Vec::new(),
        ),
        panel(
            format!("Traffic per window (denominator, {})", den.unit),
            value_format(&den.unit),
            Line {
                name: "traffic".into(),
                class: "denominator",
                points: traffic,
            },
            Vec::new(),
        ),
    ]))
}

/// Per-window amounts of each selector for the account; no band (the rule's expectation
/// lives in its detector's state, not in the store).
fn window_panels(
    selectors: &[(&str, &Selector)],
    store: &dyn Store,
    account: &str,
    (window, offset): (SignedDuration, SignedDuration),
    interval: (Timestamp, Timestamp),
    now: Timestamp,
) -> Result<Charts, EvalError> {
    let (windows, _) = windows_around(interval, now, window, offset, 0);
    let (Some(&first), Some(&last)) = (windows.first(), windows.last()) else {
        return Ok(Charts::None("no whole window yet".into()));
    };
    let mut panels = Vec::new();
    for (i, (title, selector)) in selectors.iter().enumerate() {
        let groups = load_groups(
            store,
            selector,
            &[account.to_string()],
            first.0 - window,
            last.1,
        )?;
        for group in groups.iter().filter(|g| g.account == account) {
            panels.push(Panel {
                title: format!("{title} ({})", group.unit),
                format: value_format(&group.unit),
                from: first.1,
                to: last.1,
                lines: vec![Line {
                    name: title.to_lowercase(),
                    class: if i == 0 { "numerator" } else { "denominator" },
                    points: windows
                        .iter()
                        .map(|w| (w.1, group.window_sum(w.0, w.1).and_then(to_f64)))
                        .collect(),
                }],
                band: Vec::new(),
                marked: Some(interval),
            });
        }
    }
    if panels.is_empty() {
        return Ok(Charts::None(format!("no series for account {account}")));
    }
    Ok(Charts::Panels(panels))
}

/// Period-to-date spend against the level's amount (the band is "within the level").
/// Polls that did not happen show as gaps: a point's value holds until it was last seen.
fn budget_panel(
    source: Option<String>,
    store: &dyn Store,
    account: &str,
    threshold: Decimal,
    interval: (Timestamp, Timestamp),
    now: Timestamp,
) -> Result<Charts, EvalError> {
    let day = SignedDuration::from_hours(24);
    let from = interval.0 - day * CONTEXT_BEFORE as i32;
    let to = (interval.1 + day * CONTEXT_AFTER as i32).min(now);
    let filter = SeriesFilter {
        source,
        metric: Some(series::SPEND_PTD.to_string()),
        accounts: vec![account.to_string()],
    };
    let mut panels = Vec::new();
    for (meta, points) in store.series_points(&filter, from, to, false)? {
        let Unit::Money(currency) = &meta.unit else {
            continue;
        };
        // A gap is a pause longer than three times the usual spacing between new values.
        let mut spacings: Vec<i64> = points
            .windows(2)
            .map(|w| w[1].at.duration_since(w[0].last_seen).as_secs())
            .collect();
        spacings.sort_unstable();
        let usual = spacings
            .get(spacings.len() / 2)
            .copied()
            .unwrap_or(0)
            .max(3600);
        let mut line = Vec::with_capacity(points.len() * 2);
        for (i, p) in points.iter().enumerate() {
            if i > 0 && p.at.duration_since(points[i - 1].last_seen).as_secs() > 3 * usual {
                line.push((p.at, None));
            }
            let v = to_f64(p.value);
            line.push((p.at, v));
            if p.last_seen > p.at {
                line.push((p.last_seen, v));
            }
        }
        let band: Vec<Option<BandPoint>> = [from, to]
            .into_iter()
            .map(|at| {
                Some(BandPoint {
                    at,
                    low: None,
                    high: to_f64(threshold),
                })
            })
            .collect();
        panels.push(Panel {
            title: format!(
                "Spend this billing period, {} ({})",
                meta.key.source, currency
            ),
            format: ValueFormat::Money(currency.to_string()),
            from,
            to,
            lines: vec![Line {
                name: "spend period to date".into(),
                class: "numerator",
                points: line,
            }],
            band,
            marked: Some(interval),
        });
    }
    if panels.is_empty() {
        return Ok(Charts::None(format!(
            "no spend series for account {account}"
        )));
    }
    Ok(Charts::Panels(panels))
}

/// Windows in a rule's sparkline.
const SPARK_WINDOWS: usize = 21;

/// What a rule's sparkline shows (one account: the first with data) and its values, oldest
/// first; `Err` says why there is none.
pub fn rule_sparkline(
    rule: &RuleConfig,
    store: &dyn Store,
    now: Timestamp,
) -> Result<(String, Vec<Option<f64>>), String> {
    let windowed = |selector: &Selector, accounts: &[String], window, offset, what: &str| {
        let windows = aligned_windows(now, signed(window), signed(offset), SPARK_WINDOWS);
        let (Some(first), Some(last)) = (windows.first(), windows.last()) else {
            return Err("no whole window yet".to_string());
        };
        let groups = load_groups(store, selector, accounts, first.0 - signed(window), last.1)
            .map_err(|e| e.to_string())?;
        let group = groups.first().ok_or("no data yet")?;
        Ok((
            format!("{what} per window, {} ({})", group.account, group.unit),
            windows
                .iter()
                .map(|w| group.window_sum(w.0, w.1).and_then(to_f64))
                .collect(),
        ))
    };
    let ratio = |r: &RatioRule| {
        let windows = aligned_windows(
            now,
            signed(r.window),
            signed(r.window_offset),
            SPARK_WINDOWS,
        );
        let (Some(first), Some(last)) = (windows.first(), windows.last()) else {
            return Err("no whole window yet".to_string());
        };
        let from = first.0 - signed(r.window);
        let nums = load_groups(store, &r.numerator, &r.meta.accounts, from, last.1)
            .map_err(|e| e.to_string())?;
        let dens =
            load_groups(store, &r.denominator, &[], from, last.1).map_err(|e| e.to_string())?;
        let dens = Denominators::new(&dens);
        for num in &nums {
            if let Ok(Ok(den)) = dens.for_numerator(r, num) {
                return Ok((
                    format!("unit cost per window, {} ({})", num.account, num.unit),
                    windows
                        .iter()
                        .map(|w| match sample(r, num, den, w.0, w.1) {
                            Sample::Cost { cost, .. } => to_f64(cost),
                            _ => None,
                        })
                        .collect(),
                ));
            }
        }
        Err("no spend and traffic pair yet".to_string())
    };
    match rule {
        RuleConfig::Ratio(r) => ratio(r),
        RuleConfig::Anomaly(a) => match &a.input {
            AnomalyInput::UnitCost { rule: Some(r), .. } => ratio(r),
            AnomalyInput::UnitCost { rule: None, .. } => Err("unit-cost rule missing".into()),
            AnomalyInput::Series(s) => {
                windowed(s, &a.meta.accounts, a.window, a.window_offset, "amount")
            }
        },
        RuleConfig::Change(c) => windowed(
            &c.series,
            &c.meta.accounts,
            c.window,
            c.window_offset,
            "amount",
        ),
        RuleConfig::Divergence(d) => windowed(
            &d.spend,
            &d.meta.accounts,
            d.window,
            d.window_offset,
            "spend",
        ),
        RuleConfig::Budget(b) => {
            let day = SignedDuration::from_hours(24);
            let filter = SeriesFilter {
                source: b.source.clone(),
                metric: Some(series::SPEND_PTD.to_string()),
                accounts: b.accounts.clone(),
            };
            let from = now - day * SPARK_WINDOWS as i32;
            let all = store
                .series_points(&filter, from, now, true)
                .map_err(|e| e.to_string())?;
            let (meta, points) = all.first().ok_or("no data yet")?;
            // The value held at the end of each day.
            let values = (1..=SPARK_WINDOWS as i32)
                .map(|i| {
                    let at = from + day * i;
                    points
                        .iter()
                        .rev()
                        .find(|p| p.at <= at && (p.last_seen + day) >= at)
                        .and_then(|p| to_f64(p.value))
                })
                .collect();
            Ok((
                format!(
                    "spend this period, daily, {} ({})",
                    meta.key.account, meta.unit
                ),
                values,
            ))
        }
        RuleConfig::Stale(_) => Err("a stale-data rule has no series".into()),
    }
}
