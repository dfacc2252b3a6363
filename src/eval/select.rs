//! Selecting series for a rule and summing them per account over aligned windows.

use std::collections::BTreeMap;

use jiff::Timestamp;
use rust_decimal::Decimal;

use super::EvalError;
use super::ptd::Increment;
use super::window::{MIN_COVERAGE, spans, window_amount};
use crate::config::rules::Selector;
use crate::model::{ObservationKind, Point, SeriesKey, Unit};
use crate::store::{SeriesFilter, SeriesMeta, Store};

/// One selected series with its spans over the lookback.
#[derive(Debug, Clone)]
pub struct SeriesSpans {
    pub key: SeriesKey,
    pub unit: Unit,
    pub spans: Vec<Increment>,
    /// The billing periods its points belong to, oldest first.
    pub periods: Vec<crate::model::Period>,
    /// Spans ordered by start and by end (as almost always): a window's spans are then
    /// found by binary search instead of a scan of the whole lookback.
    pub sorted: bool,
}

impl SeriesSpans {
    /// The series' spans over the lookback, ordered.
    pub fn new(
        key: SeriesKey,
        unit: Unit,
        spans: Vec<Increment>,
        periods: Vec<crate::model::Period>,
    ) -> Self {
        let sorted = spans
            .windows(2)
            .all(|w| w[0].from <= w[1].from && w[0].to <= w[1].to);
        SeriesSpans {
            key,
            unit,
            spans,
            periods,
            sorted,
        }
    }

    /// What the series spent or used in `[start, end)`; `None` when not covered.
    pub fn window(&self, start: Timestamp, end: Timestamp) -> Option<super::window::WindowAmount> {
        let spans = if self.sorted {
            let lo = self.spans.partition_point(|s| s.to <= start);
            let hi = self.spans.partition_point(|s| s.from < end).max(lo);
            &self.spans[lo..hi]
        } else {
            &self.spans[..]
        };
        window_amount(spans, start, end)
    }

    /// Its data starts at or after `end`: it did not exist yet.
    fn born_after(&self, end: Timestamp) -> bool {
        self.spans
            .iter()
            .map(|i| i.from)
            .min()
            .is_none_or(|first| first >= end)
    }

    /// The amount in `[start, end)`: zero before the series existed, `None` when unknown.
    pub fn amount(&self, start: Timestamp, end: Timestamp) -> Option<Decimal> {
        match self.window(start, end) {
            Some(w) => Some(w.amount),
            None if self.born_after(end) => Some(Decimal::ZERO),
            None => None,
        }
    }
}

/// The series of one account (and one unit: one currency for money) a selector matched.
#[derive(Debug, Clone)]
pub struct Group {
    pub account: String,
    pub unit: Unit,
    pub series: Vec<SeriesSpans>,
}

impl Group {
    /// The newest billing period of the group that has started by `at`, and the one before it.
    pub fn last_two_periods(
        &self,
        at: Timestamp,
    ) -> Option<(crate::model::Period, crate::model::Period)> {
        let mut all: Vec<crate::model::Period> = self
            .series
            .iter()
            .flat_map(|s| s.periods.iter().copied())
            .collect();
        all.sort_by_key(|p| p.start);
        all.dedup();
        let latest = *all.iter().rev().find(|p| p.start <= at)?;
        let previous = *all.iter().rev().find(|p| p.end <= latest.start)?;
        Some((latest, previous))
    }

    /// Sum over the group for `[start, end)`. A series whose data starts after the window
    /// did not exist yet and adds nothing; one with a gap in the window makes the sum unknown.
    pub fn window_sum(&self, start: Timestamp, end: Timestamp) -> Option<Decimal> {
        let mut total = Decimal::ZERO;
        let mut any = false;
        for s in &self.series {
            match s.window(start, end) {
                Some(w) => {
                    total += w.amount;
                    any = true;
                }
                None => {
                    let born_after = s
                        .spans
                        .iter()
                        .map(|i| i.from)
                        .min()
                        .is_some_and(|first| first >= end);
                    if !born_after {
                        return None;
                    }
                }
            }
        }
        any.then_some(total)
    }

    /// Per-series amounts in a window (`None` where unknown), for contributor tables.
    pub fn per_series(
        &self,
        start: Timestamp,
        end: Timestamp,
    ) -> Vec<(&SeriesKey, Option<Decimal>)> {
        self.series
            .iter()
            .map(|s| (&s.key, s.window(start, end).map(|w| w.amount)))
            .collect()
    }
}

fn matches(key: &SeriesKey, selector: &Selector) -> bool {
    selector
        .matchers
        .iter()
        .all(|(name, value)| match name.as_str() {
            "account" => &key.account == value,
            _ => key.labels.get(name) == Some(value),
        })
}

/// Loads every series the selector matches, grouped by (account, unit), with spans over
/// `[from, to]`. `accounts` (when not empty) restricts the accounts.
pub fn load_groups(
    store: &dyn Store,
    selector: &Selector,
    accounts: &[String],
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<Group>, EvalError> {
    let filter = SeriesFilter {
        source: selector.source.clone(),
        metric: Some(selector.series.clone()),
        accounts: accounts.to_vec(),
    };
    // Series arrive sorted by canonical key, source first, then account. With one source an
    // account's series are contiguous, so its groups are built (points turned into spans)
    // as soon as the next account starts, and no more than one account's points are held.
    // Without a source, accounts of the same name in several sources are merged at the end.
    let contiguous = selector.source.is_some();
    let mut groups = Vec::new();
    let mut pending: BTreeMap<(String, String), Vec<Loaded>> = BTreeMap::new();
    // The point before the range anchors cumulative values (and a run of an unchanged
    // value that started before it).
    store.visit_series_points(&filter, from, to, true, &mut |meta, mut points| {
        if !matches(&meta.key, selector) {
            return Ok(());
        }
        // Nothing is known after `to` (a backtest's store holds the future too).
        for p in &mut points {
            p.last_seen = p.last_seen.min(to).max(p.at);
        }
        if contiguous
            && pending
                .keys()
                .next()
                .is_some_and(|(account, _)| *account != meta.key.account)
        {
            groups.extend(
                std::mem::take(&mut pending)
                    .into_values()
                    .filter_map(build_group),
            );
        }
        pending
            .entry((meta.key.account.clone(), meta.unit.encode()))
            .or_default()
            .push((meta, points));
        Ok(())
    })?;
    groups.extend(pending.into_values().filter_map(build_group));
    Ok(groups)
}

/// One account's series of one unit, points turned into spans. A series that appears
/// mid-period needs the group's other series' times.
fn build_group(members: Vec<Loaded>) -> Option<Group> {
    let first = members.first()?;
    let (account, unit) = (first.0.key.account.clone(), first.0.unit.clone());
    let anchors: Vec<Option<Point>> = members
        .iter()
        .map(|(meta, points)| newcomer_anchor(meta.kind, points, &members))
        .collect();
    let series = members
        .into_iter()
        .zip(anchors)
        .map(|((meta, mut points), anchor)| {
            if let Some(anchor) = anchor {
                points.insert(0, anchor);
            }
            // Deduplicated as collected: a `collect` then `dedup` keeps a slot per point.
            let mut periods: Vec<crate::model::Period> = Vec::new();
            for period in points.iter().filter_map(|p| p.period) {
                if periods.last() != Some(&period) {
                    periods.push(period);
                }
            }
            SeriesSpans::new(meta.key, meta.unit, spans(meta.kind, &points), periods)
        })
        .collect();
    Some(Group {
        account,
        unit,
        series,
    })
}

/// One series as read: its metadata and points.
type Loaded = (SeriesMeta, Vec<Point>);

/// A line item that first shows up in a later poll of its account was zero at that
/// account's previous data point (the source reports all items at once): the zero point
/// to put before it there, so its first value is not spread back to the period start.
fn newcomer_anchor(kind: ObservationKind, points: &[Point], group: &[Loaded]) -> Option<Point> {
    if !matches!(kind, ObservationKind::PeriodToDate | ObservationKind::Usage) {
        return None;
    }
    let first = points.first()?;
    let period = first.period?;
    // The group's newest time before this series' first point (points are sorted).
    let before = group
        .iter()
        .filter_map(|(_, other)| {
            let below = other.partition_point(|p| p.at < first.at);
            below.checked_sub(1).map(|i| other[i].at)
        })
        .max()?;
    (period.start <= before).then_some(Point {
        at: before,
        last_seen: before,
        period: Some(period),
        value: Decimal::ZERO,
    })
}

/// How much of `[start, end)` the group's data covers, for "waiting" messages.
pub fn coverage_hint(group: &Group, start: Timestamp, end: Timestamp) -> String {
    let newest = group
        .series
        .iter()
        .flat_map(|s| s.spans.iter().map(|i| i.to))
        .max();
    match newest {
        Some(t) if t < end => format!("data reaches {t}, window ends {end}"),
        Some(_) => format!(
            "a gap in the data between {start} and {end} (coverage under {:.0} %)",
            MIN_COVERAGE * 100.0
        ),
        None => "no data yet".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The binary-searched window of ordered spans sums exactly what a scan of all spans
    /// sums, for windows inside, across and outside the data, and with holes.
    #[test]
    fn a_window_of_ordered_spans_sums_what_a_full_scan_sums() {
        let t = |h: i64| Timestamp::from_second(1_790_000_000 + h * 3600).unwrap();
        let mut spans = Vec::new();
        let mut h = 0;
        for i in 0..200 {
            // An hour of spend, sometimes a run of an unchanged value, sometimes a hole.
            let length = 1 + (i % 3);
            if i % 17 != 0 {
                spans.push(Increment {
                    from: t(h),
                    to: t(h + length),
                    amount: Decimal::from(i % 7),
                });
            }
            h += length;
        }
        let series = SeriesSpans::new(
            SeriesKey::new("s", "a", "m"),
            Unit::Quantity("GB".into()),
            spans.clone(),
            Vec::new(),
        );
        assert!(series.sorted);
        let mut compared = 0;
        for start in (-30..h + 30).step_by(5) {
            for length in [1, 4, 24, 100] {
                let (from, to) = (t(start), t(start + length));
                assert_eq!(series.window(from, to), window_amount(&spans, from, to));
                compared += 1;
            }
        }
        assert!(compared > 300);
        let mut unordered = spans.clone();
        unordered.swap(3, 40);
        assert!(
            !SeriesSpans::new(
                SeriesKey::new("s", "a", "m"),
                Unit::Quantity("GB".into()),
                unordered,
                Vec::new()
            )
            .sorted
        );
    }

    /// A line item first reported at the account's third poll was zero at the second: its
    /// spend lands in the hour before it appeared, not spread back to the period start.
    #[test]
    fn a_line_item_that_appears_later_is_anchored_at_the_previous_poll() {
        use crate::model::{Currency, Observation, Period};
        let store = crate::store::SqliteStore::open_in_memory().unwrap();
        let t = |h: i64| Timestamp::from_second(1_793_491_200 + h * 3600).unwrap();
        let period = Period {
            start: t(-48),
            end: t(24 * 28),
        };
        let obs = |item: Option<&str>, h: i64, value: i64| Observation {
            key: match item {
                Some(i) => SeriesKey::new("rs", "020-1", "spend").with_label("item", i),
                None => SeriesKey::new("rs", "020-1", "spend"),
            },
            at: t(h),
            period: Some(period),
            value: Decimal::from(value),
            kind: ObservationKind::PeriodToDate,
            unit: Unit::Money(Currency::new("USD").unwrap()),
        };
        store
            .put_observations(&[
                obs(None, 0, 10),
                obs(None, 1, 12),
                obs(None, 2, 19),
                obs(Some("new"), 2, 5),
            ])
            .unwrap();
        let selector = Selector {
            source: Some("rs".into()),
            series: "spend".into(),
            matchers: BTreeMap::new(),
        };
        let groups = load_groups(&store, &selector, &[], t(0), t(2)).unwrap();
        assert_eq!(groups.len(), 1);
        let item = groups[0]
            .series
            .iter()
            .find(|s| s.key.labels.contains_key("item"))
            .unwrap();
        assert_eq!(item.amount(t(1), t(2)), Some(Decimal::from(5)));
        assert_eq!(item.amount(t(0), t(1)), Some(Decimal::ZERO));
        assert_eq!(groups[0].window_sum(t(1), t(2)), Some(Decimal::from(12)));
    }
}
