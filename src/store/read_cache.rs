//! Keeps what each rule read last cycle, so the next cycle reads only what changed.
//!
//! A rule reads the same window of history every cycle, shifted by the time since the last
//! one: at 10,000 accounts that was millions of points re-read from disk per cycle, three
//! quarters of the evaluation time. The SQLite store sees every write (it is the only writer
//! of its file), so it tells this cache what each write changed; a read then fetches only
//! points newer than what the cache holds, re-reads whole accounts only where history was
//! rewritten or a series appeared, and serves the rest from memory. The answer is the same
//! as an uncached read; a randomized test in `sqlite.rs` checks that.

use std::collections::{BTreeSet, HashMap};

use jiff::Timestamp;

use super::{SeriesFilter, SeriesMeta, StoreError};
use crate::model::{Period, Point, SeriesKey};

/// One series as the backend reads it: row id, canonical key, metadata and points.
pub(super) type Loaded = (i64, String, SeriesMeta, Vec<Point>);

/// Entries kept: one per filter and anchoring, least recently used out.
const MAX_ENTRIES: usize = 16;
/// The entry keeps history back to the earliest `from` of this many recent reads: rules
/// sharing a filter read different spans, and each moves with time.
const RECENT_READS: usize = 8;
/// Beyond this many accounts to re-read, one full read is cheaper.
const MAX_REREAD_ACCOUNTS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EntryKey {
    source: Option<String>,
    metric: Option<String>,
    accounts: Vec<String>,
    anchored: bool,
}

/// What writes did to one cached series since it was last read.
#[derive(Debug, Default, Clone)]
struct Change {
    /// The oldest instant inserted or restated.
    min_write_ms: Option<i64>,
    /// Runs of an unchanged value extended: (their `at`, their new `last_seen`), newest last.
    extended: Vec<(i64, i64)>,
}

/// A point as kept in memory: 40 bytes instead of a `Point`'s 88, since an entry may hold
/// millions (10,000 accounts × 9 days hourly is 2.2 M per metric).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Compact {
    at_ms: i64,
    last_seen_ms: i64,
    value: rust_decimal::Decimal,
    /// Index into the entry's `periods`; `NO_PERIOD` for none.
    period: u32,
}

const NO_PERIOD: u32 = u32::MAX;

#[derive(Debug)]
struct Cached {
    id: i64,
    canonical: String,
    meta: SeriesMeta,
    points: Vec<Compact>,
}

#[derive(Debug)]
struct Entry {
    filter: SeriesFilter,
    anchored: bool,
    /// What the entry holds: every point at or after `from_ms` (and the anchors), the
    /// newest included: a later read learns what is new from the writes alone and asks the
    /// backend nothing when nothing was written.
    from_ms: i64,
    recent_from_ms: std::collections::VecDeque<i64>,
    /// Sorted by canonical key, as the uncached read answers.
    series: Vec<Cached>,
    by_id: HashMap<i64, usize>,
    changes: HashMap<usize, Change>,
    /// Accounts with a series the filter selects that this entry does not hold yet.
    new_accounts: BTreeSet<String>,
    last_used: u64,
    /// The billing periods the points name, each once.
    periods: Vec<Period>,
    period_index: HashMap<Period, u32>,
}

#[derive(Debug, Default)]
pub(super) struct ReadCache {
    entries: HashMap<EntryKey, Entry>,
    uses: u64,
    /// Reads answered by refreshing an entry, and by reading everything.
    pub(super) refreshed: u64,
    pub(super) full_reads: u64,
    /// Queries sent to the backend on behalf of cached entries.
    pub(super) backend_queries: u64,
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn instant(t: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millisecond(t).map_err(|e| StoreError::Corrupt {
        table: "points",
        reason: format!("timestamp {t}: {e}"),
    })
}

fn selects(filter: &SeriesFilter, key: &SeriesKey) -> bool {
    filter.source.as_ref().is_none_or(|s| *s == key.source)
        && filter.metric.as_ref().is_none_or(|m| *m == key.metric)
        && (filter.accounts.is_empty() || filter.accounts.contains(&key.account))
}

impl Entry {
    fn new(filter: &SeriesFilter, anchored: bool, from_ms: i64) -> Self {
        Entry {
            filter: filter.clone(),
            anchored,
            from_ms,
            recent_from_ms: std::collections::VecDeque::from([from_ms]),
            series: Vec::new(),
            by_id: HashMap::new(),
            changes: HashMap::new(),
            new_accounts: BTreeSet::new(),
            last_used: 0,
            periods: Vec::new(),
            period_index: HashMap::new(),
        }
    }

    fn compact(&mut self, p: Point) -> Compact {
        let period = match p.period {
            None => NO_PERIOD,
            Some(period) => match self.period_index.get(&period) {
                Some(&i) => i,
                None => {
                    let i = u32::try_from(self.periods.len()).unwrap_or(NO_PERIOD);
                    if i != NO_PERIOD {
                        self.periods.push(period);
                        self.period_index.insert(period, i);
                    }
                    i
                }
            },
        };
        Compact {
            at_ms: ms(p.at),
            last_seen_ms: ms(p.last_seen),
            value: p.value,
            period,
        }
    }

    fn compact_all(&mut self, points: Vec<Point>) -> Vec<Compact> {
        // Not `collect()`: that would reuse the `Point` buffer, twice the size needed.
        let mut out = Vec::with_capacity(points.len());
        out.extend(points.into_iter().map(|p| self.compact(p)));
        out
    }

    fn expand(&self, c: &Compact) -> Result<Point, StoreError> {
        Ok(Point {
            at: instant(c.at_ms)?,
            last_seen: instant(c.last_seen_ms)?,
            period: self.periods.get(c.period as usize).copied(),
            value: c.value,
        })
    }

    fn change(&mut self, id: i64, key: &SeriesKey) -> Option<&mut Change> {
        match self.by_id.get(&id) {
            Some(&slot) => Some(self.changes.entry(slot).or_default()),
            None => {
                if selects(&self.filter, key) {
                    self.new_accounts.insert(key.account.clone());
                }
                None
            }
        }
    }

    /// Replaces or adds whole series (a full read of some accounts), keeping the order.
    fn replace(&mut self, loaded: Vec<Loaded>) {
        let mut by_canonical: HashMap<String, Cached> = self
            .series
            .drain(..)
            .map(|s| (s.canonical.clone(), s))
            .collect();
        for (id, canonical, meta, points) in loaded {
            let points = self.compact_all(points);
            by_canonical.insert(
                canonical.clone(),
                Cached {
                    id,
                    canonical,
                    meta,
                    points,
                },
            );
        }
        self.series = by_canonical.into_values().collect();
        self.series.sort_by(|a, b| a.canonical.cmp(&b.canonical));
        self.by_id = self
            .series
            .iter()
            .enumerate()
            .map(|(slot, s)| (s.id, slot))
            .collect();
    }

    /// Hands each series with its points in `[from, to]` (and the anchor before `from`) to
    /// `visit`, as an uncached read would list them, one series expanded at a time.
    fn visit(&self, from_ms: i64, to_ms: i64, visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        for s in &self.series {
            let inside = s.points.partition_point(|p| p.at_ms < from_ms);
            let start = if self.anchored {
                inside.saturating_sub(1)
            } else {
                inside
            };
            let end = s.points.partition_point(|p| p.at_ms <= to_ms).max(start);
            let points = s.points[start..end]
                .iter()
                .map(|c| self.expand(c))
                .collect::<Result<Vec<Point>, StoreError>>()?;
            visit(s.meta.clone(), points)?;
        }
        Ok(())
    }
}

/// Receives one series and its points.
pub(super) type Visitor<'a> = dyn FnMut(SeriesMeta, Vec<Point>) -> Result<(), StoreError> + 'a;

impl ReadCache {
    /// An instant of a series was inserted or restated.
    pub(super) fn note_write(&mut self, id: i64, key: &SeriesKey, at_ms: i64) {
        for entry in self.entries.values_mut() {
            if let Some(change) = entry.change(id, key) {
                change.min_write_ms = Some(change.min_write_ms.map_or(at_ms, |m| m.min(at_ms)));
            }
        }
    }

    /// The run starting at `at_ms` was seen again, until `last_seen_ms`.
    pub(super) fn note_extend(&mut self, id: i64, key: &SeriesKey, at_ms: i64, last_seen_ms: i64) {
        for entry in self.entries.values_mut() {
            if let Some(change) = entry.change(id, key) {
                match change.extended.last_mut() {
                    Some(last) if last.0 == at_ms => last.1 = last_seen_ms,
                    _ => change.extended.push((at_ms, last_seen_ms)),
                }
            }
        }
    }

    /// Forgets everything (a write rolled back, or a test simulating a restart).
    pub(super) fn clear(&mut self) {
        self.entries.clear();
    }

    /// The same answer as `load(filter, from, to, anchored)`, from memory where nothing
    /// changed. `load` reads the backend: all series the filter selects, sorted by
    /// canonical key, with their points in `[from, to]` (and the anchor when `anchored`).
    pub(super) fn read(
        &mut self,
        filter: &SeriesFilter,
        from: Timestamp,
        to: Timestamp,
        anchored: bool,
        load: impl FnMut(&SeriesFilter, Timestamp, Timestamp, bool) -> Result<Vec<Loaded>, StoreError>,
    ) -> Result<Vec<(SeriesMeta, Vec<Point>)>, StoreError> {
        let mut out = Vec::new();
        self.read_each(filter, from, to, anchored, load, &mut |meta, points| {
            out.push((meta, points));
            Ok(())
        })?;
        Ok(out)
    }

    /// `read`, handing the series to `visit` one at a time.
    pub(super) fn read_each(
        &mut self,
        filter: &SeriesFilter,
        from: Timestamp,
        to: Timestamp,
        anchored: bool,
        mut load: impl FnMut(
            &SeriesFilter,
            Timestamp,
            Timestamp,
            bool,
        ) -> Result<Vec<Loaded>, StoreError>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        // One account's read (contributor tables, explanations) is small and one-off: caching
        // it would only push the rules' entries out.
        if filter.accounts.len() == 1 {
            for (_, _, meta, points) in load(filter, from, to, anchored)? {
                visit(meta, points)?;
            }
            return Ok(());
        }
        self.uses += 1;
        let queries = &mut self.backend_queries;
        let mut load = |filter: &SeriesFilter, from, to, anchored| {
            *queries += 1;
            load(filter, from, to, anchored)
        };
        let key = EntryKey {
            source: filter.source.clone(),
            metric: filter.metric.clone(),
            accounts: filter.accounts.clone(),
            anchored,
        };
        let (from_ms, to_ms) = (ms(from), ms(to));
        let refreshed = match self.entries.get_mut(&key) {
            Some(entry) if from_ms >= entry.from_ms => {
                if entry.recent_from_ms.len() >= RECENT_READS {
                    entry.recent_from_ms.pop_front();
                }
                entry.recent_from_ms.push_back(from_ms);
                let keep_from_ms = entry
                    .recent_from_ms
                    .iter()
                    .copied()
                    .min()
                    .unwrap_or(from_ms);
                refresh(entry, keep_from_ms, &mut load)?
            }
            _ => false,
        };
        if refreshed {
            self.refreshed += 1;
        } else {
            self.full_reads += 1;
            let mut entry = Entry::new(filter, anchored, from_ms);
            // Everything from `from` on, not just to `to`: a backtest's store holds the
            // future, and what lies after `to` is then already in memory for the next read.
            entry.replace(load(filter, from, Timestamp::MAX, anchored)?);
            if !self.entries.contains_key(&key) && self.entries.len() >= MAX_ENTRIES {
                let oldest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    self.entries.remove(&oldest);
                }
            }
            self.entries.insert(key.clone(), entry);
        }
        let uses = self.uses;
        match self.entries.get_mut(&key) {
            Some(entry) => {
                entry.last_used = uses;
                entry.visit(from_ms, to_ms, visit)
            }
            None => Ok(()),
        }
    }
}

/// Brings an entry up to the writes noted since its last read, holding from `from_ms` on
/// (not before what it holds). `Ok(false)`: too much changed, read it all again.
fn refresh(
    entry: &mut Entry,
    from_ms: i64,
    load: &mut impl FnMut(&SeriesFilter, Timestamp, Timestamp, bool) -> Result<Vec<Loaded>, StoreError>,
) -> Result<bool, StoreError> {
    // Periods are interned as they come and never dropped: rebuild once they outnumber
    // what the kept history can name (each series spans a few periods at most).
    if entry.periods.len() > 4 * entry.series.len() + 1024 {
        return Ok(false);
    }
    let (from, to) = (instant(from_ms)?, Timestamp::MAX);
    // The entry holds every stored point from `from_ms` on: only writes make anything new.
    let mut cutoff_ms = i64::MAX;
    let mut reread = std::mem::take(&mut entry.new_accounts);
    for (slot, change) in std::mem::take(&mut entry.changes) {
        let Some(series) = entry.series.get_mut(slot) else {
            return Ok(false);
        };
        // A run not cached was written since the last read: the writes below cover it.
        for &(at_ms, last_seen_ms) in &change.extended {
            if let Some(point) = series.points.iter_mut().rev().find(|p| p.at_ms == at_ms) {
                point.last_seen_ms = last_seen_ms;
            }
        }
        let Some(write_ms) = change.min_write_ms else {
            continue;
        };
        let newest_ms = series.points.last().map(|p| p.at_ms);
        let appends = match newest_ms {
            // A restatement of the newest point, or a newer one: read from there.
            Some(newest) => write_ms >= newest,
            // Nothing cached: a write in range is an append, one before it may be an anchor.
            None => write_ms >= entry.from_ms,
        };
        if appends {
            cutoff_ms = cutoff_ms.min(write_ms);
        } else {
            reread.insert(series.meta.key.account.clone());
        }
    }
    if reread.len() > MAX_REREAD_ACCOUNTS {
        return Ok(false);
    }
    let mut fresh: BTreeSet<i64> = BTreeSet::new();
    if !reread.is_empty() {
        let narrowed = SeriesFilter {
            accounts: reread.into_iter().collect(),
            ..entry.filter.clone()
        };
        let loaded = load(&narrowed, from, to, entry.anchored)?;
        fresh.extend(loaded.iter().map(|l| l.0));
        entry.replace(loaded);
    }
    if cutoff_ms < i64::MAX {
        let cutoff = instant(cutoff_ms)?;
        for (id, _, _, points) in load(&entry.filter, cutoff, to, false)? {
            if fresh.contains(&id) {
                continue;
            }
            // A series the writes did not announce: do not guess, read everything.
            let Some(&slot) = entry.by_id.get(&id) else {
                return Ok(false);
            };
            let points = entry.compact_all(points);
            let cached = &mut entry.series[slot].points;
            cached.retain(|p| p.at_ms < cutoff_ms);
            // Room for a day of hourly points, not the doubling `extend` would do: the
            // front is trimmed as the back grows, so the length stays about the same.
            if cached.capacity() < cached.len() + points.len() {
                cached.reserve_exact(points.len() + 24);
            }
            cached.extend(points);
        }
    }
    for series in &mut entry.series {
        let inside = series.points.partition_point(|p| p.at_ms < from_ms);
        let drop = if entry.anchored {
            inside.saturating_sub(1)
        } else {
            inside
        };
        series.points.drain(..drop);
    }
    entry.from_ms = from_ms;
    Ok(true)
}
