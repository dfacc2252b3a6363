//! The store as the evaluator of one shard sees it: only the series of the accounts this
//! replica holds. Eval lists series through `list_series` and `series_points` only, so
//! narrowing those two is the whole account filter; the account list is pushed into the
//! query, so a replica reads its own share and not everyone's.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::Timestamp;

use crate::model::{AlertRecord, DetectorState, Observation, Point, SeriesKey};
use crate::store::{
    GroupState, OutboxEntry, OutboxStats, Outgoing, PutStats, RowChange, RowState, SendRecord,
    SeriesFilter, SeriesMeta, SilenceRow, Store, StoreError,
};

pub struct HeldAccounts {
    inner: Arc<dyn Store>,
    accounts: Arc<HashSet<String>>,
}

impl HeldAccounts {
    pub fn new(inner: Arc<dyn Store>, accounts: Arc<HashSet<String>>) -> Self {
        HeldAccounts { inner, accounts }
    }

    /// `filter` narrowed to the held accounts; `None` when that leaves nothing (an empty
    /// account list would mean "every account").
    fn narrow(&self, filter: &SeriesFilter) -> Option<SeriesFilter> {
        let accounts: Vec<String> = if filter.accounts.is_empty() {
            let mut all: Vec<String> = self.accounts.iter().cloned().collect();
            all.sort();
            all
        } else {
            filter
                .accounts
                .iter()
                .filter(|a| self.accounts.contains(*a))
                .cloned()
                .collect()
        };
        (!accounts.is_empty()).then(|| SeriesFilter {
            accounts,
            ..filter.clone()
        })
    }
}

impl Store for HeldAccounts {
    fn list_series(&self, filter: &SeriesFilter) -> Result<Vec<SeriesMeta>, StoreError> {
        match self.narrow(filter) {
            Some(f) => self.inner.list_series(&f),
            None => Ok(Vec::new()),
        }
    }

    fn series_points(
        &self,
        filter: &SeriesFilter,
        from: Timestamp,
        to: Timestamp,
        anchored: bool,
    ) -> Result<Vec<(SeriesMeta, Vec<Point>)>, StoreError> {
        match self.narrow(filter) {
            Some(f) => self.inner.series_points(&f, from, to, anchored),
            None => Ok(Vec::new()),
        }
    }

    // Everything else is the store itself.

    fn put_observations(&self, observations: &[Observation]) -> Result<PutStats, StoreError> {
        self.inner.put_observations(observations)
    }
    fn points(
        &self,
        key: &SeriesKey,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Point>, StoreError> {
        self.inner.points(key, from, to)
    }
    fn latest_point(&self, key: &SeriesKey) -> Result<Option<Point>, StoreError> {
        self.inner.latest_point(key)
    }
    fn has_series(&self, key: &SeriesKey) -> Result<bool, StoreError> {
        self.inner.has_series(key)
    }
    fn series_count(&self, source: &str) -> Result<usize, StoreError> {
        self.inner.series_count(source)
    }
    fn point_before(&self, key: &SeriesKey, at: Timestamp) -> Result<Option<Point>, StoreError> {
        self.inner.point_before(key, at)
    }
    fn load_alerts(&self) -> Result<Vec<AlertRecord>, StoreError> {
        self.inner.load_alerts()
    }
    fn save_alert(
        &self,
        alert: &AlertRecord,
        outgoing: &[Outgoing],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.save_alert(alert, outgoing, now)
    }
    fn open_outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.inner.open_outbox(limit)
    }
    fn change_rows(&self, changes: &[RowChange], at: Timestamp) -> Result<(), StoreError> {
        self.inner.change_rows(changes, at)
    }
    fn load_groups(&self) -> Result<Vec<GroupState>, StoreError> {
        self.inner.load_groups()
    }
    fn record_send(&self, record: &SendRecord) -> Result<(), StoreError> {
        self.inner.record_send(record)
    }
    fn list_outbox(
        &self,
        state: Option<RowState>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.inner.list_outbox(state, limit)
    }
    fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        self.inner.outbox_stats()
    }
    fn prune_outbox(&self, before: Timestamp) -> Result<usize, StoreError> {
        self.inner.prune_outbox(before)
    }
    fn detector_states(&self, rule: &str) -> Result<Vec<DetectorState>, StoreError> {
        self.inner.detector_states(rule)
    }
    fn save_detector_states(&self, states: &[DetectorState]) -> Result<(), StoreError> {
        self.inner.save_detector_states(states)
    }
    fn insert_silence(&self, silence: &SilenceRow) -> Result<(), StoreError> {
        self.inner.insert_silence(silence)
    }
    fn silences(&self) -> Result<Vec<SilenceRow>, StoreError> {
        self.inner.silences()
    }
    fn expire_silence(&self, id: &str, at: Timestamp) -> Result<Option<SilenceRow>, StoreError> {
        self.inner.expire_silence(id, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Currency, ObservationKind, Unit};
    use crate::store::SqliteStore;

    fn obs(source: &str, account: &str) -> Observation {
        Observation {
            key: SeriesKey::new(source, account, "spend_period_to_date"),
            at: Timestamp::from_second(1_790_000_000).unwrap(),
            period: None,
            value: rust_decimal::Decimal::ONE,
            kind: ObservationKind::PeriodToDate,
            unit: Unit::Money(Currency::new("USD").unwrap()),
        }
    }

    #[test]
    fn only_held_accounts_are_listed() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        store
            .put_observations(&[obs("rs", "a"), obs("rs", "b"), obs("prom", "a")])
            .unwrap();
        let held = HeldAccounts::new(store.clone(), Arc::new(HashSet::from(["a".to_string()])));
        let all = SeriesFilter::default();
        let listed: Vec<String> = held
            .list_series(&all)
            .unwrap()
            .into_iter()
            .map(|m| format!("{}/{}", m.key.source, m.key.account))
            .collect();
        assert_eq!(listed, ["prom/a", "rs/a"]);
        let asked_for_b = SeriesFilter {
            accounts: vec!["b".into()],
            ..SeriesFilter::default()
        };
        assert!(held.list_series(&asked_for_b).unwrap().is_empty());
        let from = Timestamp::UNIX_EPOCH;
        let to = Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(held.series_points(&all, from, to, true).unwrap().len(), 2);
        let none = HeldAccounts::new(store, Arc::new(HashSet::new()));
        assert!(none.series_points(&all, from, to, true).unwrap().is_empty());
    }
}
