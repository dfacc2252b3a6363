//! History of observations, alert state and the notification outbox, behind [`Store`]
//! so that another backend can follow the embedded SQLite one.

mod sqlite;

use jiff::Timestamp;

pub use sqlite::SqliteStore;

use crate::model::{
    AlertRecord, DetectorState, Notification, Observation, ObservationKind, Point, SeriesKey, Unit,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
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

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub id: i64,
    pub notification: Notification,
    pub attempts: u32,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OutboxStats {
    pub pending: u64,
    pub oldest_pending: Option<Timestamp>,
    pub delivered: u64,
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
    /// The newest point strictly before `at`: the anchor a range of cumulative values needs.
    fn point_before(&self, key: &SeriesKey, at: Timestamp) -> Result<Option<Point>, StoreError>;

    fn load_alerts(&self) -> Result<Vec<AlertRecord>, StoreError>;
    /// Saves an alert and enqueues its notifications in one transaction, so a crash
    /// can neither lose a notification nor send one for a state that was not saved.
    fn save_alert(
        &self,
        alert: &AlertRecord,
        notifications: &[Notification],
        now: Timestamp,
    ) -> Result<(), StoreError>;

    fn due_notifications(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;
    fn mark_delivered(&self, id: i64, at: Timestamp) -> Result<(), StoreError>;
    fn mark_attempt_failed(
        &self,
        id: i64,
        next_attempt_at: Timestamp,
        error: &str,
    ) -> Result<(), StoreError>;
    fn outbox_stats(&self) -> Result<OutboxStats, StoreError>;

    /// Every detector state saved for `rule`.
    fn detector_states(&self, rule: &str) -> Result<Vec<DetectorState>, StoreError>;
    /// Upserts states (one transaction).
    fn save_detector_states(&self, states: &[DetectorState]) -> Result<(), StoreError>;
}
