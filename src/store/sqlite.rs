//! The embedded SQLite store: WAL, versioned migrations, one connection behind a mutex.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use rust_decimal::Decimal;

use super::read_cache::{Loaded, ReadCache};
use super::{
    GroupSettings, GroupState, OutboxEntry, OutboxStats, Outgoing, PutStats, RowChange, RowState,
    SendRecord, SeriesFilter, SeriesMeta, SilenceRow, Store, StoreError,
};
use crate::model::{
    AlertRecord, DetectorState, Notification, Observation, ObservationKind, Period, Point,
    SeriesKey, Unit,
};

/// Applied in order; `PRAGMA user_version` records how many ran. Never edit a shipped entry.
const MIGRATIONS: &[&str] = &[
    // 1: series, points, alerts, outbox
    "CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        canonical TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL,
        account TEXT NOT NULL,
        metric TEXT NOT NULL,
        labels TEXT NOT NULL,
        kind TEXT NOT NULL,
        unit TEXT NOT NULL
     );
     CREATE INDEX series_by_source_metric ON series (source, metric);
     CREATE TABLE points (
        series_id INTEGER NOT NULL REFERENCES series (id),
        at_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        period_start_ms INTEGER,
        period_end_ms INTEGER,
        value TEXT NOT NULL,
        PRIMARY KEY (series_id, at_ms)
     ) WITHOUT ROWID;
     CREATE TABLE alerts (
        fingerprint TEXT PRIMARY KEY,
        rule TEXT NOT NULL,
        record TEXT NOT NULL
     );
     CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        receiver TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        next_attempt_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        delivered_ms INTEGER,
        last_error TEXT
     );
     CREATE INDEX outbox_due ON outbox (delivered_ms, next_attempt_ms);",
    // 2: rules read one account's series at a time
    "CREATE INDEX series_by_account_metric ON series (account, metric);",
    // 3: anomaly detectors' learned state, so evaluations stream and restarts resume
    "CREATE TABLE detector_state (
        rule TEXT NOT NULL,
        instance TEXT NOT NULL,
        config TEXT NOT NULL,
        learned_until_ms INTEGER NOT NULL,
        learning_since_ms INTEGER NOT NULL,
        samples INTEGER NOT NULL,
        state TEXT NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (rule, instance)
     );",
    // 4: grouped delivery (row states, groups), silences
    "ALTER TABLE outbox ADD COLUMN state TEXT NOT NULL DEFAULT 'pending';
     ALTER TABLE outbox ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
     ALTER TABLE outbox ADD COLUMN group_key TEXT NOT NULL DEFAULT '';
     ALTER TABLE outbox ADD COLUMN group_settings TEXT;
     ALTER TABLE outbox ADD COLUMN pending_since_ms INTEGER;
     ALTER TABLE outbox ADD COLUMN suppressed_by TEXT;
     UPDATE outbox SET state = 'delivered' WHERE delivered_ms IS NOT NULL;
     UPDATE outbox SET fingerprint = COALESCE(json_extract(payload, '$.fingerprint'), ''),
                       pending_since_ms = created_ms;
     CREATE INDEX outbox_open ON outbox (state, id) WHERE state IN ('pending', 'suppressed');
     CREATE TABLE notification_groups (
        receiver TEXT NOT NULL,
        group_key TEXT NOT NULL,
        settings TEXT NOT NULL,
        last_sent_ms INTEGER,
        members TEXT NOT NULL,
        thread TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER,
        last_error TEXT,
        PRIMARY KEY (receiver, group_key)
     );
     CREATE TABLE silences (
        id TEXT PRIMARY KEY,
        matchers TEXT NOT NULL,
        starts_ms INTEGER NOT NULL,
        ends_ms INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        comment TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
     );",
];

struct Inner {
    conn: Connection,
    /// canonical series key → (row id, "kind in unit"), so hot polls skip a lookup.
    series_ids: HashMap<String, (i64, String)>,
    /// series id → its newest point, so a poll does not read back what it wrote last time.
    latest: HashMap<i64, RawPoint>,
    /// What rules read last cycle; every write below tells it what changed.
    reads: ReadCache,
}

pub struct SqliteStore {
    inner: Mutex<Inner>,
}

fn ms(ts: Timestamp) -> i64 {
    ts.as_millisecond()
}

fn from_ms(table: &'static str, v: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millisecond(v).map_err(|e| StoreError::Corrupt {
        table,
        reason: format!("timestamp {v}: {e}"),
    })
}

fn corrupt(table: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table,
        reason: reason.into(),
    }
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        let conn = Connection::open(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::init(conn)
    }

    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // 64 MiB of page cache (the default is 2 MiB): a poll of thousands of series touches
        // that many leaf pages, and rules re-read the same recent pages every cycle.
        conn.pragma_update(None, "cache_size", -65_536)?;
        // Checkpoint every 64 MiB of WAL (the default is 4 MiB): successive polls append to
        // the same leaf pages (points are keyed series first), so a longer interval writes
        // each page back once for many polls instead of once per poll.
        conn.pragma_update(None, "wal_autocheckpoint", 16_384)?;
        // Every statement the store runs stays prepared (the default keeps 16).
        conn.set_prepared_statement_cache_capacity(64);
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(0);
        if version > MIGRATIONS.len() {
            return Err(StoreError::Open {
                path: conn.path().unwrap_or("").to_string(),
                reason: format!(
                    "store schema version {version} is newer than this build supports ({})",
                    MIGRATIONS.len()
                ),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(SqliteStore {
            inner: Mutex::new(Inner {
                conn,
                series_ids: HashMap::new(),
                latest: HashMap::new(),
                reads: ReadCache::default(),
            }),
        })
    }

    /// Drops the in-memory caches, as a restart would.
    #[cfg(test)]
    fn forget_caches(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.series_ids.clear();
            inner.latest.clear();
            inner.reads.clear();
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        self.inner.lock().map_err(|_| StoreError::Poisoned)
    }
}

/// The series row for an observation, created on first sight. A series keeps its kind
/// and unit for life: an observation that disagrees is refused.
fn series_id(
    tx: &Transaction<'_>,
    cache: &mut HashMap<String, (i64, String)>,
    obs: &Observation,
) -> Result<i64, StoreError> {
    let canonical = obs.key.canonical();
    let kind = obs.kind.as_str();
    let unit = obs.unit.encode();
    let shape = format!("{kind} in {unit}");
    let cached = cache.get(&canonical).cloned();
    let existing = match cached {
        Some(hit) => Some(hit),
        None => tx
            .query_row(
                "SELECT id, kind, unit FROM series WHERE canonical = ?1",
                [&canonical],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        format!("{} in {}", r.get::<_, String>(1)?, r.get::<_, String>(2)?),
                    ))
                },
            )
            .optional()?,
    };
    if let Some((id, stored)) = existing {
        if stored != shape {
            return Err(StoreError::Conflict {
                series: obs.key.to_string(),
                stored,
                incoming: shape,
            });
        }
        cache.insert(canonical, (id, stored));
        return Ok(id);
    }
    let labels =
        serde_json::to_string(&obs.key.labels).map_err(|e| corrupt("series", e.to_string()))?;
    tx.execute(
        "INSERT INTO series (canonical, source, account, metric, labels, kind, unit) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![canonical, obs.key.source, obs.key.account, obs.key.metric, labels, kind, unit],
    )?;
    let id = tx.last_insert_rowid();
    cache.insert(canonical, (id, shape));
    Ok(id)
}

/// A `points` row as read: at, last_seen, period start, period end (ms) and value text.
type RawPoint = (i64, i64, Option<i64>, Option<i64>, String);

fn row_point(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawPoint> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn to_point(raw: RawPoint) -> Result<Point, StoreError> {
    let (at, last_seen, ps, pe, value) = raw;
    let period = match (ps, pe) {
        (Some(s), Some(e)) => Some(Period {
            start: from_ms("points", s)?,
            end: from_ms("points", e)?,
        }),
        _ => None,
    };
    Ok(Point {
        at: from_ms("points", at)?,
        last_seen: from_ms("points", last_seen)?,
        period,
        value: Decimal::from_str(&value)
            .map_err(|e| corrupt("points", format!("value {value:?}: {e}")))?,
    })
}

fn put_batch(
    conn: &mut Connection,
    series_ids: &mut HashMap<String, (i64, String)>,
    latest_points: &mut HashMap<i64, RawPoint>,
    reads: &mut ReadCache,
    observations: &[Observation],
) -> Result<PutStats, StoreError> {
    let tx = conn.transaction()?;
    let mut stats = PutStats::default();
    for obs in observations {
        let id = series_id(&tx, series_ids, obs)?;
        let at = ms(obs.at);
        let value = obs.value.normalize().to_string();
        let (ps, pe) = match obs.period {
            Some(p) => (Some(ms(p.start)), Some(ms(p.end))),
            None => (None, None),
        };
        let latest = match latest_points.get(&id) {
            Some(hit) => Some(hit.clone()),
            None => tx
                .prepare_cached(&format!(
                    "SELECT {POINT_COLUMNS} FROM points WHERE series_id = ?1 ORDER BY at_ms DESC LIMIT 1"
                ))?
                .query_row([id], row_point)
                .optional()?,
        };
        if let Some((l_at, l_seen, l_ps, l_pe, l_value)) = latest {
            let same = l_value == value && l_ps == ps && l_pe == pe;
            if same && at >= l_at && at <= l_seen {
                stats.unchanged += 1;
                latest_points.insert(id, (l_at, l_seen, l_ps, l_pe, l_value));
                continue;
            }
            // Traffic samples each describe their own step: never merged into a run.
            if same && at > l_seen && obs.kind != ObservationKind::Traffic {
                tx.prepare_cached(
                    "UPDATE points SET last_seen_ms = ?1 WHERE series_id = ?2 AND at_ms = ?3",
                )?
                .execute(params![at, id, l_at])?;
                reads.note_extend(id, &obs.key, l_at, at);
                stats.extended += 1;
                latest_points.insert(id, (l_at, at, l_ps, l_pe, l_value));
                continue;
            }
            match at.cmp(&l_at) {
                // A backfill or restatement of an older instant: the newest point stays.
                std::cmp::Ordering::Less => {
                    latest_points.insert(id, (l_at, l_seen, l_ps, l_pe, l_value));
                }
                // A restatement of the newest instant keeps its run (`last_seen`).
                std::cmp::Ordering::Equal => {
                    latest_points.insert(id, (l_at, l_seen, ps, pe, value.clone()));
                }
                std::cmp::Ordering::Greater => {
                    latest_points.remove(&id);
                }
            }
        }
        // A value for an instant already stored is a restatement by the API: it replaces.
        tx.prepare_cached(
            "INSERT INTO points (series_id, at_ms, last_seen_ms, period_start_ms, period_end_ms, value)
             VALUES (?1, ?2, ?2, ?3, ?4, ?5)
             ON CONFLICT (series_id, at_ms) DO UPDATE SET
               value = excluded.value, period_start_ms = excluded.period_start_ms,
               period_end_ms = excluded.period_end_ms",
        )?
        .execute(params![id, at, ps, pe, value.clone()])?;
        reads.note_write(id, &obs.key, at);
        stats.inserted += 1;
        latest_points.entry(id).or_insert((at, at, ps, pe, value));
    }
    tx.commit()?;
    Ok(stats)
}

/// `AND ...` conditions on the series table (aliased `s`) for a filter, and their arguments.
/// Only the conditions given, so SQLite can use the (account, metric) and (source, metric)
/// indexes instead of scanning every series.
fn series_conditions(filter: &SeriesFilter) -> (String, Vec<&dyn rusqlite::ToSql>) {
    let mut sql = String::new();
    let mut args: Vec<&dyn rusqlite::ToSql> = Vec::new();
    if let Some(source) = &filter.source {
        sql.push_str(" AND s.source = ?");
        args.push(source);
    }
    if let Some(metric) = &filter.metric {
        sql.push_str(" AND s.metric = ?");
        args.push(metric);
    }
    if !filter.accounts.is_empty() {
        sql.push_str(" AND s.account IN (");
        sql.push_str(&vec!["?"; filter.accounts.len()].join(","));
        sql.push(')');
        args.extend(filter.accounts.iter().map(|a| a as &dyn rusqlite::ToSql));
    }
    (sql, args)
}

/// A `series` row as read: source, account, metric, labels, kind, unit.
type RawSeries = (String, String, String, String, String, String);

fn raw_series(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawSeries> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn to_series_meta(raw: RawSeries) -> Result<SeriesMeta, StoreError> {
    let (source, account, metric, labels, kind, unit) = raw;
    let labels: BTreeMap<String, String> =
        serde_json::from_str(&labels).map_err(|e| corrupt("series", format!("labels: {e}")))?;
    Ok(SeriesMeta {
        key: SeriesKey {
            source,
            account,
            metric,
            labels,
        },
        kind: ObservationKind::parse(&kind)
            .ok_or_else(|| corrupt("series", format!("kind {kind:?}")))?,
        unit: Unit::decode(&unit).ok_or_else(|| corrupt("series", format!("unit {unit:?}")))?,
    })
}

const POINT_COLUMNS: &str = "at_ms, last_seen_ms, period_start_ms, period_end_ms, value";

/// Every series `filter` selects with its points in `[from, to]` (and the newest point before
/// `from` when `anchored`), sorted by canonical key: one query for a whole rule.
fn load_series_points(
    conn: &Connection,
    filter: &SeriesFilter,
    from: Timestamp,
    to: Timestamp,
    anchored: bool,
) -> Result<Vec<Loaded>, StoreError> {
    let (conditions, mut args) = series_conditions(filter);
    let (from, to) = (ms(from), ms(to));
    // The anchor is the newest point before `from` (one PK probe per series); a series
    // with no points in range still comes back, with none, as `list_series` lists it.
    let lower = if anchored {
        "COALESCE((SELECT MAX(at_ms) FROM points WHERE series_id = s.id AND at_ms < ?), ?)"
    } else {
        "?"
    };
    let sql = format!(
        "SELECT s.id, s.canonical, s.source, s.account, s.metric, s.labels, s.kind, s.unit,
                p.at_ms, p.last_seen_ms, p.period_start_ms, p.period_end_ms, p.value
         FROM series s LEFT JOIN points p
           ON p.series_id = s.id AND p.at_ms >= {lower} AND p.at_ms <= ?
         WHERE 1{conditions}"
    );
    let mut bounds: Vec<&dyn rusqlite::ToSql> = Vec::new();
    if anchored {
        bounds.push(&from);
    }
    bounds.push(&from);
    bounds.push(&to);
    args.splice(0..0, bounds);
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(args.as_slice())?;
    // Rows arrive series by series (the join walks each series' points in key order).
    let mut out: Vec<Loaded> = Vec::new();
    let mut index: HashMap<i64, usize> = HashMap::new();
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let slot = match index.get(&id) {
            Some(&slot) => slot,
            None => {
                let canonical: String = r.get(1)?;
                let meta = to_series_meta((
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))?;
                out.push((id, canonical, meta, Vec::new()));
                index.insert(id, out.len() - 1);
                out.len() - 1
            }
        };
        let at: Option<i64> = r.get(8)?;
        if let Some(at) = at {
            let value: String = r.get(12)?;
            out[slot]
                .3
                .push(to_point((at, r.get(9)?, r.get(10)?, r.get(11)?, value))?);
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    for series in &mut out {
        series.3.sort_by_key(|p| p.at);
    }
    Ok(out)
}

impl Store for SqliteStore {
    fn put_observations(&self, observations: &[Observation]) -> Result<PutStats, StoreError> {
        let mut inner = self.lock()?;
        let Inner {
            conn,
            series_ids,
            latest,
            reads,
        } = &mut *inner;
        let result = put_batch(conn, series_ids, latest, reads, observations);
        if result.is_err() {
            // The transaction rolled back: ids and points cached during it may not exist.
            series_ids.clear();
            latest.clear();
            reads.clear();
        }
        result
    }

    fn list_series(&self, filter: &SeriesFilter) -> Result<Vec<SeriesMeta>, StoreError> {
        let inner = self.lock()?;
        let (conditions, args) = series_conditions(filter);
        let mut stmt = inner.conn.prepare_cached(&format!(
            "SELECT source, account, metric, labels, kind, unit FROM series s WHERE 1{conditions}
             ORDER BY canonical"
        ))?;
        let rows = stmt.query_map(args.as_slice(), raw_series)?;
        rows.map(|row| to_series_meta(row?)).collect()
    }

    fn series_points(
        &self,
        filter: &SeriesFilter,
        from: Timestamp,
        to: Timestamp,
        anchored: bool,
    ) -> Result<Vec<(SeriesMeta, Vec<Point>)>, StoreError> {
        let mut inner = self.lock()?;
        let Inner { conn, reads, .. } = &mut *inner;
        reads.read(filter, from, to, anchored, |filter, from, to, anchored| {
            load_series_points(conn, filter, from, to, anchored)
        })
    }

    fn visit_series_points(
        &self,
        filter: &SeriesFilter,
        from: Timestamp,
        to: Timestamp,
        anchored: bool,
        visit: &mut dyn FnMut(SeriesMeta, Vec<Point>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        let Inner { conn, reads, .. } = &mut *inner;
        reads.read_each(
            filter,
            from,
            to,
            anchored,
            |filter, from, to, anchored| load_series_points(conn, filter, from, to, anchored),
            visit,
        )
    }

    fn points(
        &self,
        key: &SeriesKey,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Point>, StoreError> {
        let inner = self.lock()?;
        let mut stmt = inner.conn.prepare_cached(&format!(
            "SELECT {POINT_COLUMNS} FROM points JOIN series ON series.id = points.series_id
             WHERE series.canonical = ?1 AND at_ms >= ?2 AND at_ms <= ?3 ORDER BY at_ms"
        ))?;
        let rows = stmt.query_map(params![key.canonical(), ms(from), ms(to)], row_point)?;
        rows.map(|r| to_point(r?)).collect()
    }

    fn has_series(&self, key: &SeriesKey) -> Result<bool, StoreError> {
        let canonical = key.canonical();
        let inner = self.lock()?;
        if inner.series_ids.contains_key(&canonical) {
            return Ok(true);
        }
        let found: Option<i64> = inner
            .conn
            .prepare_cached("SELECT id FROM series WHERE canonical = ?1")?
            .query_row([&canonical], |r| r.get(0))
            .optional()?;
        Ok(found.is_some())
    }

    fn series_count(&self, source: &str) -> Result<usize, StoreError> {
        let inner = self.lock()?;
        let n: i64 = inner.conn.query_row(
            "SELECT COUNT(*) FROM series WHERE source = ?1",
            [source],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as usize)
    }

    fn latest_point(&self, key: &SeriesKey) -> Result<Option<Point>, StoreError> {
        let inner = self.lock()?;
        let mut stmt = inner.conn.prepare_cached(&format!(
            "SELECT {POINT_COLUMNS} FROM points JOIN series ON series.id = points.series_id
             WHERE series.canonical = ?1 ORDER BY at_ms DESC LIMIT 1"
        ))?;
        stmt.query_row([key.canonical()], row_point)
            .optional()?
            .map(to_point)
            .transpose()
    }

    fn point_before(&self, key: &SeriesKey, at: Timestamp) -> Result<Option<Point>, StoreError> {
        let inner = self.lock()?;
        let mut stmt = inner.conn.prepare_cached(&format!(
            "SELECT {POINT_COLUMNS} FROM points JOIN series ON series.id = points.series_id
             WHERE series.canonical = ?1 AND at_ms < ?2 ORDER BY at_ms DESC LIMIT 1"
        ))?;
        stmt.query_row(params![key.canonical(), ms(at)], row_point)
            .optional()?
            .map(to_point)
            .transpose()
    }

    fn load_alerts(&self) -> Result<Vec<AlertRecord>, StoreError> {
        let inner = self.lock()?;
        let mut stmt = inner
            .conn
            .prepare_cached("SELECT record FROM alerts ORDER BY fingerprint")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| serde_json::from_str(&r?).map_err(|e| corrupt("alerts", e.to_string())))
            .collect()
    }

    fn save_alert(
        &self,
        alert: &AlertRecord,
        outgoing: &[Outgoing],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let record = serde_json::to_string(alert).map_err(|e| corrupt("alerts", e.to_string()))?;
        let mut inner = self.lock()?;
        let tx = inner.conn.transaction()?;
        tx.execute(
            "INSERT INTO alerts (fingerprint, rule, record) VALUES (?1, ?2, ?3)
             ON CONFLICT (fingerprint) DO UPDATE SET rule = excluded.rule, record = excluded.record",
            params![alert.fingerprint, alert.rule, record],
        )?;
        for o in outgoing {
            let n = &o.notification;
            let payload = serde_json::to_string(n).map_err(|e| corrupt("outbox", e.to_string()))?;
            let settings =
                serde_json::to_string(&o.group).map_err(|e| corrupt("outbox", e.to_string()))?;
            // The idempotency key is deterministic: re-enqueueing the same notification is a no-op.
            tx.execute(
                "INSERT INTO outbox (idempotency_key, receiver, payload, created_ms, next_attempt_ms,
                                     state, fingerprint, group_key, group_settings, pending_since_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4, 'pending', ?5, ?6, ?7, ?4)
                 ON CONFLICT (idempotency_key) DO NOTHING",
                params![
                    n.idempotency_key,
                    n.receiver,
                    payload,
                    ms(now),
                    n.fingerprint,
                    o.group.key,
                    settings
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn open_outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let inner = self.lock()?;
        let mut stmt = inner.conn.prepare_cached(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox
             WHERE state IN ('pending', 'suppressed') ORDER BY id LIMIT ?1"
        ))?;
        let rows = stmt.query_map(params![limit as i64], raw_outbox)?;
        rows.map(|r| to_outbox(r?)).collect()
    }

    fn change_rows(&self, changes: &[RowChange], at: Timestamp) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        let tx = inner.conn.transaction()?;
        for c in changes {
            tx.execute(
                "UPDATE outbox SET state = ?1, suppressed_by = COALESCE(?2, suppressed_by),
                        pending_since_ms = CASE WHEN ?1 = 'pending' AND state <> 'pending'
                                                THEN ?3 ELSE pending_since_ms END
                 WHERE id = ?4",
                params![c.state.as_str(), c.note, ms(at), c.id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn load_groups(&self) -> Result<Vec<GroupState>, StoreError> {
        let inner = self.lock()?;
        let mut stmt = inner.conn.prepare_cached(
            "SELECT receiver, settings, last_sent_ms, members, thread, attempts, next_attempt_ms, last_error
             FROM notification_groups ORDER BY receiver, group_key",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, Option<String>>(7)?,
            ))
        })?;
        let table = "notification_groups";
        let mut out = Vec::new();
        for row in rows {
            let (receiver, settings, last_sent, members, thread, attempts, next, last_error) = row?;
            out.push(GroupState {
                receiver,
                settings: serde_json::from_str(&settings)
                    .map_err(|e| corrupt(table, format!("settings: {e}")))?,
                last_sent: last_sent.map(|v| from_ms(table, v)).transpose()?,
                members: serde_json::from_str(&members)
                    .map_err(|e| corrupt(table, format!("members: {e}")))?,
                thread,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                next_attempt: next.map(|v| from_ms(table, v)).transpose()?,
                last_error,
            });
        }
        Ok(out)
    }

    fn record_send(&self, record: &SendRecord) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        let tx = inner.conn.transaction()?;
        let at = ms(record.at);
        for id in &record.delivered {
            tx.execute(
                "UPDATE outbox SET state = 'delivered', delivered_ms = ?1, attempts = attempts + 1,
                        last_error = NULL WHERE id = ?2",
                params![at, id],
            )?;
        }
        for (ids, state) in [(&record.failed, "pending"), (&record.dead, "dead")] {
            for id in ids {
                tx.execute(
                    "UPDATE outbox SET state = ?1, attempts = attempts + 1, last_error = ?2,
                            next_attempt_ms = ?3 WHERE id = ?4",
                    params![state, record.error, at, id],
                )?;
            }
        }
        match &record.group {
            None => {
                tx.execute(
                    "DELETE FROM notification_groups WHERE receiver = ?1 AND group_key = ?2",
                    params![record.receiver, record.key],
                )?;
            }
            Some(g) => {
                let settings = serde_json::to_string(&g.settings)
                    .map_err(|e| corrupt("notification_groups", e.to_string()))?;
                let members = serde_json::to_string(&g.members)
                    .map_err(|e| corrupt("notification_groups", e.to_string()))?;
                tx.execute(
                    "INSERT INTO notification_groups
                        (receiver, group_key, settings, last_sent_ms, members, thread, attempts, next_attempt_ms, last_error)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (receiver, group_key) DO UPDATE SET
                        settings = excluded.settings, last_sent_ms = excluded.last_sent_ms,
                        members = excluded.members, thread = excluded.thread,
                        attempts = excluded.attempts, next_attempt_ms = excluded.next_attempt_ms,
                        last_error = excluded.last_error",
                    params![
                        record.receiver,
                        record.key,
                        settings,
                        g.last_sent.map(ms),
                        members,
                        g.thread,
                        g.attempts,
                        g.next_attempt.map(ms),
                        g.last_error
                    ],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn list_outbox(
        &self,
        state: Option<RowState>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let inner = self.lock()?;
        let mut stmt = inner.conn.prepare_cached(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox
             WHERE ?1 IS NULL OR state = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(
            params![state.map(RowState::as_str), limit as i64],
            raw_outbox,
        )?;
        rows.map(|r| to_outbox(r?)).collect()
    }

    fn prune_outbox(&self, before: Timestamp) -> Result<usize, StoreError> {
        let inner = self.lock()?;
        Ok(inner.conn.execute(
            "DELETE FROM outbox WHERE state IN ('delivered', 'dead', 'skipped') AND created_ms < ?1",
            [ms(before)],
        )?)
    }

    fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let inner = self.lock()?;
        let (pending, oldest, delivered, suppressed, dead): (i64, Option<i64>, i64, i64, i64) =
            inner.conn.query_row(
                "SELECT COUNT(*) FILTER (WHERE state = 'pending'),
                        MIN(pending_since_ms) FILTER (WHERE state = 'pending'),
                        COUNT(*) FILTER (WHERE state = 'delivered'),
                        COUNT(*) FILTER (WHERE state = 'suppressed'),
                        COUNT(*) FILTER (WHERE state = 'dead')
                 FROM outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?;
        Ok(OutboxStats {
            pending: pending.max(0) as u64,
            oldest_pending: oldest.map(|v| from_ms("outbox", v)).transpose()?,
            delivered: delivered.max(0) as u64,
            suppressed: suppressed.max(0) as u64,
            dead: dead.max(0) as u64,
        })
    }

    fn detector_states(&self, rule: &str) -> Result<Vec<DetectorState>, StoreError> {
        let inner = self.lock()?;
        let mut stmt = inner.conn.prepare_cached(
            "SELECT instance, config, learned_until_ms, learning_since_ms, samples, state, updated_ms
             FROM detector_state WHERE rule = ?1",
        )?;
        let rows = stmt.query_map(params![rule], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (instance, config, until, since, samples, state, updated) = row?;
            out.push(DetectorState {
                rule: rule.to_string(),
                instance,
                config,
                learned_until: from_ms("detector_state", until)?,
                learning_since: from_ms("detector_state", since)?,
                samples: samples.max(0) as u64,
                state,
                updated_at: from_ms("detector_state", updated)?,
            });
        }
        Ok(out)
    }

    fn save_detector_states(&self, states: &[DetectorState]) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        let tx = inner.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO detector_state
                    (rule, instance, config, learned_until_ms, learning_since_ms, samples, state, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (rule, instance) DO UPDATE SET
                    config = excluded.config, learned_until_ms = excluded.learned_until_ms,
                    learning_since_ms = excluded.learning_since_ms, samples = excluded.samples,
                    state = excluded.state, updated_ms = excluded.updated_ms",
            )?;
            for s in states {
                stmt.execute(params![
                    s.rule,
                    s.instance,
                    s.config,
                    ms(s.learned_until),
                    ms(s.learning_since),
                    i64::try_from(s.samples).unwrap_or(i64::MAX),
                    s.state,
                    ms(s.updated_at),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
    fn insert_silence(&self, silence: &SilenceRow) -> Result<(), StoreError> {
        let matchers = serde_json::to_string(&silence.matchers)
            .map_err(|e| corrupt("silences", e.to_string()))?;
        let inner = self.lock()?;
        inner.conn.execute(
            "INSERT INTO silences (id, matchers, starts_ms, ends_ms, created_by, comment, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                silence.id,
                matchers,
                ms(silence.starts_at),
                ms(silence.ends_at),
                silence.created_by,
                silence.comment,
                ms(silence.updated_at)
            ],
        )?;
        Ok(())
    }

    fn silences(&self) -> Result<Vec<SilenceRow>, StoreError> {
        let inner = self.lock()?;
        let mut stmt = inner.conn.prepare_cached(&format!(
            "SELECT {SILENCE_COLUMNS} FROM silences ORDER BY starts_ms, id"
        ))?;
        let rows = stmt.query_map([], raw_silence)?;
        rows.map(|r| to_silence(r?)).collect()
    }

    fn expire_silence(&self, id: &str, at: Timestamp) -> Result<Option<SilenceRow>, StoreError> {
        let mut inner = self.lock()?;
        let tx = inner.conn.transaction()?;
        let at = ms(at);
        tx.execute(
            "UPDATE silences SET starts_ms = MIN(starts_ms, ?1), ends_ms = MIN(ends_ms, ?1),
                    updated_ms = ?1 WHERE id = ?2 AND ends_ms > ?1",
            params![at, id],
        )?;
        let row = tx
            .query_row(
                &format!("SELECT {SILENCE_COLUMNS} FROM silences WHERE id = ?1"),
                [id],
                raw_silence,
            )
            .optional()?;
        tx.commit()?;
        row.map(to_silence).transpose()
    }
}

const OUTBOX_COLUMNS: &str = "id, payload, attempts, created_ms, state, receiver, group_settings,
    pending_since_ms, suppressed_by, last_error, delivered_ms";

/// An `outbox` row as read, before decoding.
struct RawOutbox {
    id: i64,
    payload: String,
    attempts: i64,
    created: i64,
    state: String,
    receiver: String,
    settings: Option<String>,
    pending_since: Option<i64>,
    suppressed_by: Option<String>,
    last_error: Option<String>,
    delivered: Option<i64>,
}

fn raw_outbox(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawOutbox> {
    Ok(RawOutbox {
        id: r.get(0)?,
        payload: r.get(1)?,
        attempts: r.get(2)?,
        created: r.get(3)?,
        state: r.get(4)?,
        receiver: r.get(5)?,
        settings: r.get(6)?,
        pending_since: r.get(7)?,
        suppressed_by: r.get(8)?,
        last_error: r.get(9)?,
        delivered: r.get(10)?,
    })
}

fn to_outbox(raw: RawOutbox) -> Result<OutboxEntry, StoreError> {
    let notification: Notification =
        serde_json::from_str(&raw.payload).map_err(|e| corrupt("outbox", e.to_string()))?;
    let group = match &raw.settings {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| corrupt("outbox", format!("group settings: {e}")))?,
        None => GroupSettings::legacy(&raw.receiver, &notification.fingerprint),
    };
    let created_at = from_ms("outbox", raw.created)?;
    Ok(OutboxEntry {
        id: raw.id,
        notification,
        attempts: u32::try_from(raw.attempts).unwrap_or(u32::MAX),
        created_at,
        state: RowState::parse(&raw.state)
            .ok_or_else(|| corrupt("outbox", format!("state {:?}", raw.state)))?,
        group,
        pending_since: raw
            .pending_since
            .map(|v| from_ms("outbox", v))
            .transpose()?
            .unwrap_or(created_at),
        suppressed_by: raw.suppressed_by,
        last_error: raw.last_error,
        delivered_at: raw.delivered.map(|v| from_ms("outbox", v)).transpose()?,
    })
}

const SILENCE_COLUMNS: &str = "id, matchers, starts_ms, ends_ms, created_by, comment, updated_ms";

type RawSilence = (String, String, i64, i64, String, String, i64);

fn raw_silence(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawSilence> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn to_silence(raw: RawSilence) -> Result<SilenceRow, StoreError> {
    let (id, matchers, starts, ends, created_by, comment, updated) = raw;
    Ok(SilenceRow {
        matchers: serde_json::from_str(&matchers)
            .map_err(|e| corrupt("silences", format!("{id}: matchers: {e}")))?,
        id,
        starts_at: from_ms("silences", starts)?,
        ends_at: from_ms("silences", ends)?,
        created_by,
        comment,
        updated_at: from_ms("silences", updated)?,
    })
}

/// SQLite-only: the caches and the migrations from older files. What every backend does is
/// in `behaviour.rs`.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Currency;

    fn obs(at: &str, value: &str) -> Observation {
        Observation {
            key: SeriesKey::new("rs", "020-1", "estimated_charges").with_label("currency", "USD"),
            at: at.parse().unwrap(),
            period: Some(Period {
                start: "2026-11-01T00:00:00Z".parse().unwrap(),
                end: "2026-12-01T00:00:00Z".parse().unwrap(),
            }),
            value: Decimal::from_str(value).unwrap(),
            kind: ObservationKind::PeriodToDate,
            unit: Unit::Money(Currency::new("USD").unwrap()),
        }
    }

    /// The newest-point cache never changes what is stored: random re-polls, runs,
    /// restatements and out-of-order backfills give the same points and the same counts as
    /// a store that reads every newest point back from SQLite.
    #[test]
    fn the_newest_point_cache_stores_what_reading_back_stores() {
        let cached = SqliteStore::open_in_memory().unwrap();
        let uncached = SqliteStore::open_in_memory().unwrap();
        let mut seed: u64 = 0x5EED;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..2_000 {
            let mut batch = Vec::new();
            for _ in 0..1 + next(4) {
                // Few instants and values, so runs, restatements and backfills collide often.
                let hour = next(5);
                let mut o = obs(
                    &format!("2026-11-02T{hour:02}:00:00Z"),
                    &format!("{}", 10 + next(2)),
                );
                o.key.account = format!("020-{}", next(2));
                batch.push(o);
            }
            let a = cached.put_observations(&batch).unwrap();
            uncached.forget_caches();
            let b = uncached.put_observations(&batch).unwrap();
            assert_eq!(a, b, "{batch:?}");
        }
        let all = SeriesFilter::default();
        let (from, to) = (
            Timestamp::UNIX_EPOCH,
            "2027-01-01T00:00:00Z".parse().unwrap(),
        );
        assert_eq!(
            cached.series_points(&all, from, to, false).unwrap(),
            uncached.series_points(&all, from, to, false).unwrap()
        );
    }

    /// The read cache answers exactly as reading SQLite: random polls (new points, runs
    /// extended, restatements of the newest and of older instants, backfills, series that
    /// appear late with old history) between reads through several filters whose windows
    /// move forward, sometimes jump back, and shrink or grow.
    #[test]
    fn the_read_cache_answers_what_sqlite_answers() {
        for seed in [0xCAC4E, 7, 0xBEEF] {
            read_cache_agrees(seed);
        }
    }

    fn read_cache_agrees(mut seed: u64) {
        let store = SqliteStore::open_in_memory().unwrap();
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let hour = |h: u64| -> Timestamp {
            Timestamp::from_second(1_793_491_200 + 3600 * h as i64).unwrap()
        };
        let filters = [
            SeriesFilter::default(),
            SeriesFilter {
                metric: Some("estimated_charges".into()),
                ..SeriesFilter::default()
            },
            SeriesFilter {
                source: Some("rs".into()),
                metric: Some("bw".into()),
                accounts: vec!["020-1".into(), "020-3".into()],
            },
        ];
        let mut now: u64 = 10;
        let mut reads = 0;
        for round in 0..1_500 {
            let mut batch = Vec::new();
            for _ in 0..1 + next(5) {
                let mut o = obs("2026-11-02T00:00:00Z", &format!("{}", 10 + next(3)));
                o.key.account = format!("020-{}", next(4));
                if next(3) == 0 {
                    o.key.metric = "bw".into();
                    o.kind = ObservationKind::Traffic;
                    o.unit = Unit::Quantity("GB".into());
                    o.period = None;
                }
                if next(4) == 0 {
                    // A line item that shows up later than the others.
                    o.key = o.key.with_label("item", &format!("i{}", next(6)));
                }
                o.at = match next(10) {
                    0 => hour(now.saturating_sub(1 + next(30))),
                    _ => hour(now),
                };
                batch.push(o);
            }
            store.put_observations(&batch).unwrap();
            if next(3) == 0 {
                now += 1;
            }
            for _ in 0..next(3) {
                let filter = &filters[next(filters.len() as u64) as usize];
                let span = [5, 8, 24][next(3) as usize];
                let back = if next(12) == 0 { next(20) } else { 0 };
                let to = hour(now.saturating_sub(back));
                let from = hour(now.saturating_sub(back + span));
                let anchored = next(2) == 0;
                let cached = store.series_points(filter, from, to, anchored).unwrap();
                let inner = store.lock().unwrap();
                let direct: Vec<(SeriesMeta, Vec<Point>)> =
                    load_series_points(&inner.conn, filter, from, to, anchored)
                        .unwrap()
                        .into_iter()
                        .map(|(_, _, meta, points)| (meta, points))
                        .collect();
                assert_eq!(cached.len(), direct.len(), "round {round}: series listed");
                for (c, d) in cached.iter().zip(&direct) {
                    assert_eq!(
                        c, d,
                        "round {round}: {filter:?} [{from}, {to}] anchored {anchored}"
                    );
                }
                reads += 1;
            }
        }
        assert!(reads > 1_000, "{reads} reads compared");
        let inner = store.lock().unwrap();
        let (refreshed, full) = (inner.reads.refreshed, inner.reads.full_reads);
        assert!(
            refreshed > 3 * full,
            "most reads must come from the cache: {refreshed} refreshed, {full} full"
        );
    }

    /// A rule's next cycle with nothing written in between asks SQLite nothing, even when
    /// its window moved on; a poll costs one query, and points stored ahead of a read
    /// window (a backtest's future) are served once the window reaches them.
    #[test]
    fn the_read_cache_queries_sqlite_only_after_a_write() {
        let store = SqliteStore::open_in_memory().unwrap();
        let mut other = obs("2026-11-02T00:00:00Z", "1");
        other.key.account = "020-2".into();
        store
            .put_observations(&[
                obs("2026-11-02T00:00:00Z", "10"),
                obs("2026-11-02T01:00:00Z", "12"),
                obs("2026-11-02T03:00:00Z", "15"),
                other,
            ])
            .unwrap();
        let filter = SeriesFilter::default();
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let queries = || store.lock().unwrap().reads.backend_queries;
        let values = |to: &str| -> Vec<String> {
            let read = store
                .series_points(&filter, t("2026-11-02T00:00:00Z"), t(to), true)
                .unwrap();
            read[0].1.iter().map(|p| p.value.to_string()).collect()
        };
        assert_eq!(values("2026-11-02T01:30:00Z"), ["10", "12"]);
        let after_first = queries();
        assert_eq!(after_first, 1);
        // The window moves on and reaches the point stored ahead of it: no query.
        assert_eq!(values("2026-11-02T03:30:00Z"), ["10", "12", "15"]);
        assert_eq!(queries(), after_first);
        store
            .put_observations(&[obs("2026-11-02T04:00:00Z", "16")])
            .unwrap();
        assert_eq!(values("2026-11-02T04:30:00Z"), ["10", "12", "15", "16"]);
        assert_eq!(queries(), after_first + 1);
        assert_eq!(values("2026-11-02T04:31:00Z"), ["10", "12", "15", "16"]);
        assert_eq!(queries(), after_first + 1);
    }

    /// A store file as schema version 2 left it, with outbox rows
    /// `(key, created_ms, delivered_ms)`.
    fn version_2_store(path: &std::path::Path, rows: &[(&str, i64, Option<i64>)]) {
        let conn = Connection::open(path).unwrap();
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        for (key, created, delivered) in rows {
            let payload = format!(
                r#"{{"idempotency_key":"{key}","receiver":"hook","status":"firing","fingerprint":"fp1",
                "rule":"r","labels":{{}},"annotations":{{}},"value":"2","threshold":"1",
                "starts_at":"2026-11-02T00:00:00Z","ends_at":null}}"#
            );
            conn.execute(
                "INSERT INTO outbox (idempotency_key, receiver, payload, created_ms, next_attempt_ms, delivered_ms)
                 VALUES (?1, 'hook', ?2, ?3, ?3, ?4)",
                params![key, payload, created, delivered],
            )
            .unwrap();
        }
    }

    #[test]
    fn outbox_rows_from_before_grouping_are_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        // One delivered row, one still pending.
        version_2_store(&path, &[("k1", 1000, Some(2000)), ("k2", 3000, None)]);
        let store = SqliteStore::open(&path).unwrap();
        let open = store.open_outbox(10).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].notification.idempotency_key, "k2");
        assert_eq!(open[0].state, RowState::Pending);
        assert_eq!(open[0].group, GroupSettings::legacy("hook", "fp1"));
        assert_eq!(
            open[0].pending_since,
            Timestamp::from_millisecond(3000).unwrap()
        );
        let stats = store.outbox_stats().unwrap();
        assert_eq!((stats.pending, stats.delivered), (1, 1));
        assert!(store.load_groups().unwrap().is_empty());
        assert!(store.silences().unwrap().is_empty());
    }

    /// Finished rows older than the cut are dropped; pending ones never are, however old.
    #[test]
    fn pruning_drops_only_old_finished_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prune.db");
        version_2_store(
            &path,
            &[
                ("old-done", 1000, Some(2000)),
                ("old-pending", 1500, None),
                ("new-done", 5000, Some(6000)),
            ],
        );
        let store = SqliteStore::open(&path).unwrap();
        let cut = Timestamp::from_millisecond(4000).unwrap();
        assert_eq!(store.prune_outbox(cut).unwrap(), 1);
        assert_eq!(store.prune_outbox(cut).unwrap(), 0, "idempotent");
        let stats = store.outbox_stats().unwrap();
        assert_eq!((stats.pending, stats.delivered), (1, 1));
        assert_eq!(
            store.open_outbox(10).unwrap()[0]
                .notification
                .idempotency_key,
            "old-pending"
        );
    }
}
