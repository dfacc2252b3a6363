//! History of observations, alert state and the notification outbox, behind [`Store`]
//! so that another backend can follow the embedded SQLite one.

#[cfg(test)]
mod behaviour;
mod postgres;
mod read_cache;
mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub(crate) use postgres::rustls_connector;
pub use postgres::{PostgresStore, postgres_target};
pub use sqlite::SqliteStore;

use crate::config::StoreSettings;

use crate::model::{
    AlertRecord, DetectorState, Notification, Observation, ObservationKind, Point, SeriesKey, Unit,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(String),
    #[error("cannot open store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error(
        "series {series} is stored as {stored} but the new observation says {incoming}; nothing was written"
    )]
    Conflict {
        series: String,
        stored: String,
        incoming: String,
    },
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    #[error("store lock poisoned")]
    Poisoned,
}

/// Opens the configured store, creating or migrating its schema.
pub fn open(settings: &StoreSettings) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match settings {
        StoreSettings::Sqlite { path } => Arc::new(SqliteStore::open(path)?),
        StoreSettings::Postgres { url } => Arc::new(PostgresStore::open(url.expose())?),
    })
}

/// What a batch of observations changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PutStats {
    /// New points.
    pub inserted: usize,
    /// Re-polls of an unchanged value that only moved `last_seen` forward.
    pub extended: usize,
    /// Observations already stored exactly as given.
    pub unchanged: usize,
}

/// Which series to read.
#[derive(Debug, Default, Clone)]
pub struct SeriesFilter {
    pub source: Option<String>,
    pub metric: Option<String>,
    pub accounts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeriesMeta {
    pub key: SeriesKey,
    pub kind: ObservationKind,
    pub unit: Unit,
}

/// How an outbox row is grouped for delivery, fixed when it is enqueued (so a config change
/// does not regroup what is already queued).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSettings {
    /// `receiver/route/{label="value",...}`.
    pub key: String,
    pub route: String,
    /// The route's `group_by` labels and their values.
    pub labels: BTreeMap<String, String>,
    pub group_wait_ms: u64,
    pub group_interval_ms: u64,
    pub repeat_interval_ms: u64,
}

impl GroupSettings {
    /// For rows enqueued before grouping existed: a group of one, sent at once.
    pub fn legacy(receiver: &str, fingerprint: &str) -> Self {
        GroupSettings {
            key: format!("{receiver}/legacy/{fingerprint}"),
            route: "legacy".into(),
            labels: BTreeMap::new(),
            group_wait_ms: 0,
            group_interval_ms: 0,
            repeat_interval_ms: 4 * 3600 * 1000,
        }
    }
}

/// A notification to enqueue, with its group.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub notification: Notification,
    pub group: GroupSettings,
}

/// Where an outbox row is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowState {
    /// Waiting for its group to be sent (or for a retry).
    Pending,
    /// Held back by a silence or an inhibition; released if that ends while it still matters.
    Suppressed,
    /// The receiver acknowledged it.
    Delivered,
    /// The receiver refused it permanently; never retried.
    Dead,
    /// Never sent: the alert resolved while its firing notification was suppressed.
    Skipped,
}

impl RowState {
    pub fn as_str(self) -> &'static str {
        match self {
            RowState::Pending => "pending",
            RowState::Suppressed => "suppressed",
            RowState::Delivered => "delivered",
            RowState::Dead => "dead",
            RowState::Skipped => "skipped",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        [
            RowState::Pending,
            RowState::Suppressed,
            RowState::Delivered,
            RowState::Dead,
            RowState::Skipped,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub id: i64,
    pub notification: Notification,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub state: RowState,
    pub group: GroupSettings,
    /// When it last became pending (enqueued, or released from suppression).
    pub pending_since: Timestamp,
    /// `silence:<id>` or `inhibited_by:<fingerprint>` while suppressed (kept afterwards).
    pub suppressed_by: Option<String>,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
}

/// A state change of one row that is not a send (suppress, release, skip).
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub id: i64,
    pub state: RowState,
    /// New `suppressed_by` (kept when `None`).
    pub note: Option<String>,
}

/// What the dispatcher remembers about one group of one receiver between sends.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupState {
    pub receiver: String,
    pub settings: GroupSettings,
    /// Last acknowledged send.
    pub last_sent: Option<Timestamp>,
    /// The firing alerts as last sent (their latest notifications).
    pub members: Vec<Notification>,
    /// The receiver's reference from its last acknowledged send (e.g. a Slack thread).
    pub thread: Option<String>,
    /// Failed attempts since the last acknowledged send.
    pub attempts: u32,
    pub next_attempt: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// Everything one send of one group changes, written in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct SendRecord {
    pub receiver: String,
    pub key: String,
    /// The group's state afterwards; `None` deletes it (fully resolved and sent).
    pub group: Option<GroupState>,
    pub delivered: Vec<i64>,
    /// Rows whose attempt failed and will be retried.
    pub failed: Vec<i64>,
    /// Rows refused for good.
    pub dead: Vec<i64>,
    pub error: Option<String>,
    pub at: Timestamp,
}

/// A silence as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilenceRow {
    pub id: String,
    /// Matchers in their text form (`account="020-1"`).
    pub matchers: Vec<String>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub created_by: String,
    pub comment: String,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OutboxStats {
    pub pending: u64,
    pub oldest_pending: Option<Timestamp>,
    pub delivered: u64,
    pub suppressed: u64,
    pub dead: u64,
}

pub trait Store: Send + Sync {
    /// Idempotent: re-putting the same observations adds nothing. All or nothing per batch.
    fn put_observations(&self, observations: &[Observation]) -> Result<PutStats, StoreError>;
    fn list_series(&self, filter: &SeriesFilter) -> Result<Vec<SeriesMeta>, StoreError>;
    /// Points with `from <= at <= to`, oldest first.
    fn points(
        &self,
        key: &SeriesKey,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Point>, StoreError>;
    fn latest_point(&self, key: &SeriesKey) -> Result<Option<Point>, StoreError>;
    /// Whether the series exists (has ever been written).
    fn has_series(&self, key: &SeriesKey) -> Result<bool, StoreError>;
    /// How many series a source has created.
    fn series_count(&self, source: &str) -> Result<usize, StoreError>;
    /// The newest point strictly before `at`: the anchor a range of cumulative values needs.
    fn point_before(&self, key: &SeriesKey, at: Timestamp) -> Result<Option<Point>, StoreError>;

    /// Every series `filter` selects (in `list_series` order) with its points in
    /// `[from, to]`, oldest first, preceded by the newest point before `from` when
    /// `anchored`. One read for a whole rule; backends should override the per-series
    /// default, which costs two queries per series.
    fn series_points(
        &self,
        filter: &SeriesFilter,
        from: Timestamp,
        to: Timestamp,
        anchored: bool,
    ) -> Result<Vec<(SeriesMeta, Vec<Point>)>, StoreError> {
        let mut out = Vec::new();
        for meta in self.list_series(filter)? {
            let mut points = Vec::new();
            if anchored {
                points.extend(self.point_before(&meta.key, from)?);
            }
            points.extend(self.points(&meta.key, from, to)?);
            out.push((meta, points));
        }
        Ok(out)
    }

    /// `series_points`, handed to `visit` one series at a time in the same order, so a
    /// caller can fold the series without holding every point of a rule at once.
    fn visit_series_points(
        &self,
        filter: &SeriesFilter,
        from: Timestamp,
        to: Timestamp,
        anchored: bool,
        visit: &mut dyn FnMut(SeriesMeta, Vec<Point>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for (meta, points) in self.series_points(filter, from, to, anchored)? {
            visit(meta, points)?;
        }
        Ok(())
    }

    fn load_alerts(&self) -> Result<Vec<AlertRecord>, StoreError>;
    /// Saves an alert and enqueues its notifications in one transaction, so a crash
    /// can neither lose a notification nor send one for a state that was not saved.
    /// Re-enqueueing an idempotency key already present is a no-op.
    fn save_alert(
        &self,
        alert: &AlertRecord,
        outgoing: &[Outgoing],
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Rows still to be sent or held back (pending, suppressed), oldest first.
    fn open_outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Suppresses, releases or skips rows, in one transaction.
    fn change_rows(&self, changes: &[RowChange], at: Timestamp) -> Result<(), StoreError>;
    fn load_groups(&self) -> Result<Vec<GroupState>, StoreError>;
    /// Records one group send: rows and group state together, or neither.
    fn record_send(&self, record: &SendRecord) -> Result<(), StoreError>;
    /// Rows newest first, optionally in one state (for the API).
    fn list_outbox(
        &self,
        state: Option<RowState>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;
    fn outbox_stats(&self) -> Result<OutboxStats, StoreError>;
    /// Deletes finished rows (delivered, dead, skipped) created before `before`; returns how
    /// many. Their idempotency keys can never be enqueued again by then: an alert's next
    /// episode has a new key.
    fn prune_outbox(&self, before: Timestamp) -> Result<usize, StoreError>;

    /// Every detector state saved for `rule`.
    fn detector_states(&self, rule: &str) -> Result<Vec<DetectorState>, StoreError>;
    /// Upserts states (one transaction).
    fn save_detector_states(&self, states: &[DetectorState]) -> Result<(), StoreError>;
    fn insert_silence(&self, silence: &SilenceRow) -> Result<(), StoreError>;
    fn silences(&self) -> Result<Vec<SilenceRow>, StoreError>;
    /// Ends a silence at `at` (a pending one never starts). `None` when the id is unknown.
    fn expire_silence(&self, id: &str, at: Timestamp) -> Result<Option<SilenceRow>, StoreError>;
}
