//! What every `Store` backend must do, written once against `&dyn Store` and run on each:
//! SQLite always, PostgreSQL when `SPENDWATCH_TEST_PG_URL` names a database (each test in a
//! schema of its own, so they run in parallel and leave nothing behind).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use jiff::Timestamp;
use rust_decimal::Decimal;

use super::{
    GroupSettings, GroupState, Outgoing, PostgresStore, RowChange, RowState, SendRecord,
    SeriesFilter, SeriesMeta, SilenceRow, SqliteStore, Store, StoreError,
};
use crate::model::{
    AlertRecord, AlertState, Currency, DetectorState, Notification, NotificationStatus,
    Observation, ObservationKind, Period, Point, SeriesKey, Severity, Unit,
};

pub const PG_URL_VAR: &str = "SPENDWATCH_TEST_PG_URL";

/// Storage that outlives one store, so a test can reopen it as a restart would.
pub enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres { url: String, schema: String },
}

impl Backend {
    fn sqlite() -> Self {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    /// A fresh schema in the test database, or `None` (with a note on stderr) without one.
    pub fn postgres(test: &str) -> Option<Self> {
        let Ok(base) = std::env::var(PG_URL_VAR) else {
            // Straight to stderr: the test harness would swallow `eprintln!`.
            let note = format!("{test} on postgres skipped: {PG_URL_VAR} not set\n");
            let _ = std::io::stderr().lock().write_all(note.as_bytes());
            return None;
        };
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let schema = format!(
            "t{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            &test[..test.len().min(32)]
        );
        let mut admin = postgres::Client::connect(&base, postgres::NoTls)
            .unwrap_or_else(|e| panic!("{PG_URL_VAR} is set but unreachable: {e}"));
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(Backend::Postgres {
            url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
            schema,
        })
    }

    pub fn open(&self) -> Box<dyn Store> {
        match self {
            Backend::Sqlite(dir) => Box::new(SqliteStore::open(&dir.path().join("s.db")).unwrap()),
            Backend::Postgres { url, .. } => Box::new(PostgresStore::open(url).unwrap()),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Backend::Postgres { schema, .. } = self
            && let Ok(base) = std::env::var(PG_URL_VAR)
            && let Ok(mut admin) = postgres::Client::connect(&base, postgres::NoTls)
        {
            let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

/// One `#[test]` per backend for each behaviour.
macro_rules! behaviours {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $( #[test] fn $name() { super::$name(&super::Backend::sqlite()); } )*
        }
        mod on_postgres {
            $( #[test] fn $name() {
                if let Some(backend) = super::Backend::postgres(stringify!($name)) {
                    super::$name(&backend);
                }
            } )*
        }
    };
}

behaviours!(
    repolling_the_same_data_adds_nothing,
    a_restated_run_keeps_its_last_seen,
    a_conflicting_kind_is_refused_and_nothing_is_written,
    traffic_samples_are_never_merged,
    series_points_agrees_with_reading_series_one_by_one,
    a_random_history_is_stored_as_the_reference_store_stores_it,
    values_stay_exact,
    series_are_listed_in_byte_order_and_filtered,
    history_survives_reopen,
    the_outbox_goes_through_its_states,
    groups_are_saved_and_deleted_with_their_sends,
    pruning_drops_only_old_finished_rows,
    detector_states_are_upserted,
    silences_expire,
);

fn t(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn obs(at: &str, value: &str) -> Observation {
    Observation {
        key: SeriesKey::new("rs", "020-1", "estimated_charges").with_label("currency", "USD"),
        at: t(at),
        period: Some(Period {
            start: t("2026-11-01T00:00:00Z"),
            end: t("2026-12-01T00:00:00Z"),
        }),
        value: Decimal::from_str(value).unwrap(),
        kind: ObservationKind::PeriodToDate,
        unit: Unit::Money(Currency::new("USD").unwrap()),
    }
}

fn everything(store: &dyn Store) -> Vec<(SeriesMeta, Vec<Point>)> {
    store
        .series_points(
            &SeriesFilter::default(),
            Timestamp::UNIX_EPOCH,
            t("2030-01-01T00:00:00Z"),
            false,
        )
        .unwrap()
}

fn repolling_the_same_data_adds_nothing(b: &Backend) {
    let store = b.open();
    assert_eq!(store.put_observations(&[]).unwrap(), Default::default());
    let batch = [obs("2026-11-02T00:00:00Z", "10.00")];
    assert_eq!(store.put_observations(&batch).unwrap().inserted, 1);
    assert_eq!(store.put_observations(&batch).unwrap().unchanged, 1);
    // Same value polled later only extends the run.
    let later = [obs("2026-11-02T01:00:00Z", "10")];
    assert_eq!(store.put_observations(&later).unwrap().extended, 1);
    let key = &batch[0].key;
    let points = store
        .points(key, Timestamp::UNIX_EPOCH, t("2027-01-01T00:00:00Z"))
        .unwrap();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].last_seen, t("2026-11-02T01:00:00Z"));
    // Inside the run: already known.
    let inside = [obs("2026-11-02T00:30:00Z", "10")];
    assert_eq!(store.put_observations(&inside).unwrap().unchanged, 1);
    // A new value is a new point.
    store
        .put_observations(&[obs("2026-11-02T02:00:00Z", "12.50")])
        .unwrap();
    let latest = store.latest_point(key).unwrap().unwrap();
    assert_eq!(latest.value, Decimal::from_str("12.5").unwrap());
    assert_eq!(latest.at, t("2026-11-02T02:00:00Z"));
    let before = store.point_before(key, t("2026-11-02T02:00:00Z")).unwrap();
    assert_eq!(before.map(|p| p.at), Some(t("2026-11-02T00:00:00Z")));
    assert!(
        store
            .point_before(key, t("2026-11-02T00:00:00Z"))
            .unwrap()
            .is_none()
    );
}

/// A restated newest value keeps its run: a later poll inside the run with the new value
/// is already known.
fn a_restated_run_keeps_its_last_seen(b: &Backend) {
    let store = b.open();
    for (at, value) in [("00", "10"), ("02", "10"), ("00", "11")] {
        store
            .put_observations(&[obs(&format!("2026-11-02T{at}:00:00Z"), value)])
            .unwrap();
    }
    let stats = store
        .put_observations(&[obs("2026-11-02T01:00:00Z", "11")])
        .unwrap();
    assert_eq!(stats.unchanged, 1, "{stats:?}");
    let p = store
        .latest_point(&obs("2026-11-02T00:00:00Z", "1").key)
        .unwrap()
        .unwrap();
    assert_eq!(p.last_seen, t("2026-11-02T02:00:00Z"));
    assert_eq!(p.value, Decimal::from(11));
}

fn a_conflicting_kind_is_refused_and_nothing_is_written(b: &Backend) {
    let store = b.open();
    store
        .put_observations(&[obs("2026-11-02T00:00:00Z", "10")])
        .unwrap();
    let mut bad = obs("2026-11-03T00:00:00Z", "99");
    bad.kind = ObservationKind::PeriodTotal;
    let good = obs("2026-11-03T00:00:00Z", "11");
    let mut fresh = obs("2026-11-03T00:00:00Z", "1");
    fresh.key.account = "020-9".into();
    assert!(matches!(
        store.put_observations(&[fresh.clone(), good.clone(), bad]),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.latest_point(&good.key).unwrap().unwrap().value,
        Decimal::from(10),
        "the batch is all or nothing"
    );
    assert!(!store.has_series(&fresh.key).unwrap(), "no series either");
    // Two observations of one new series that disagree on the unit: neither is stored.
    let mut other_unit = fresh.clone();
    other_unit.unit = Unit::Quantity("GB".into());
    let err = store
        .put_observations(&[fresh.clone(), other_unit])
        .unwrap_err();
    assert!(
        err.to_string().contains("period_to_date in money:USD"),
        "{err}"
    );
    assert!(!store.has_series(&fresh.key).unwrap());
    assert_eq!(store.series_count("rs").unwrap(), 1);
    // And the store still works afterwards.
    assert_eq!(store.put_observations(&[fresh]).unwrap().inserted, 1);
}

fn traffic_samples_are_never_merged(b: &Backend) {
    let store = b.open();
    let sample = |at: &str| Observation {
        key: SeriesKey::new("prom", "020-1", "requests"),
        at: t(at),
        period: None,
        value: Decimal::from(5),
        kind: ObservationKind::Traffic,
        unit: Unit::Quantity("COUNT".into()),
    };
    let batch: Vec<Observation> = ["00", "01", "02"]
        .iter()
        .map(|h| sample(&format!("2026-11-02T{h}:00:00Z")))
        .collect();
    let stats = store.put_observations(&batch).unwrap();
    assert_eq!((stats.inserted, stats.extended), (3, 0));
    assert_eq!(store.put_observations(&batch).unwrap().unchanged, 1);
    let points = store
        .points(
            &batch[0].key,
            Timestamp::UNIX_EPOCH,
            t("2027-01-01T00:00:00Z"),
        )
        .unwrap();
    assert_eq!(points.len(), 3);
    assert!(
        points
            .iter()
            .all(|p| p.at == p.last_seen && p.period.is_none())
    );
}

/// The one-query read a rule makes agrees with the per-series reads it replaces.
fn series_points_agrees_with_reading_series_one_by_one(b: &Backend) {
    let store = b.open();
    let mut batch = Vec::new();
    for (account, values) in [
        ("020-3", &["1", "2", "3", "4"][..]),
        ("020-1", &["5", "6", "7", "8"][..]),
        ("020-2", &["9"][..]),
    ] {
        for (h, v) in values.iter().enumerate() {
            let mut o = obs(&format!("2026-11-02T0{h}:00:00Z"), v);
            o.key.account = account.into();
            batch.push(o);
        }
    }
    let mut other = obs("2026-11-02T02:00:00Z", "1");
    other.key.metric = "other".into();
    batch.push(other);
    store.put_observations(&batch).unwrap();
    let from = t("2026-11-02T01:30:00Z");
    let to = t("2026-11-02T02:30:00Z");
    for accounts in [vec![], vec!["020-2".to_string(), "020-3".to_string()]] {
        let filter = SeriesFilter {
            source: Some("rs".into()),
            metric: Some("estimated_charges".into()),
            accounts,
        };
        for anchored in [false, true] {
            let one_by_one: Vec<(SeriesMeta, Vec<Point>)> = store
                .list_series(&filter)
                .unwrap()
                .into_iter()
                .map(|meta| {
                    let mut points = Vec::new();
                    if anchored {
                        points.extend(store.point_before(&meta.key, from).unwrap());
                    }
                    points.extend(store.points(&meta.key, from, to).unwrap());
                    (meta, points)
                })
                .collect();
            let batched = store.series_points(&filter, from, to, anchored).unwrap();
            assert_eq!(batched, one_by_one, "anchored {anchored} {filter:?}");
        }
    }
    let all = SeriesFilter {
        source: Some("rs".into()),
        metric: Some("estimated_charges".into()),
        accounts: vec![],
    };
    let batched = store.series_points(&all, from, to, true).unwrap();
    let accounts: Vec<&str> = batched
        .iter()
        .map(|(m, _)| m.key.account.as_str())
        .collect();
    assert_eq!(accounts, ["020-1", "020-2", "020-3"]);
    // 020-1: anchor at 01:00 and the point at 02:00; 020-2: only its anchor at 00:00.
    let values: Vec<Vec<String>> = batched
        .iter()
        .map(|(_, p)| p.iter().map(|p| p.value.to_string()).collect())
        .collect();
    assert_eq!(values, [vec!["6", "7"], vec!["9"], vec!["2", "3"]]);
    let unanchored = store.series_points(&all, from, to, false).unwrap();
    assert!(unanchored[1].1.is_empty(), "{unanchored:?}");
}

/// Random re-polls, runs, restatements, backfills and traffic, in batches that often touch
/// one row several times: the same counts and the same points as an in-memory SQLite store
/// given the same batches.
fn a_random_history_is_stored_as_the_reference_store_stores_it(b: &Backend) {
    let store = b.open();
    let reference = SqliteStore::open_in_memory().unwrap();
    let mut seed: u64 = 0x5EED_2026;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..300 {
        let mut batch = Vec::new();
        for _ in 0..1 + next(6) {
            // Few instants and values, so runs, restatements and backfills collide often.
            let hour = next(6);
            let mut o = obs(
                &format!("2026-11-02T{hour:02}:00:00Z"),
                &format!("{}.{}", 10 + next(2), next(2) * 5),
            );
            o.key.account = format!("020-{}", next(3));
            if next(4) == 0 {
                o.key.metric = "requests".into();
                o.kind = ObservationKind::Traffic;
                o.unit = Unit::Quantity("COUNT".into());
                o.period = None;
            }
            batch.push(o);
        }
        let expected = reference.put_observations(&batch).unwrap();
        assert_eq!(
            store.put_observations(&batch).unwrap(),
            expected,
            "{batch:?}"
        );
    }
    assert_eq!(everything(store.as_ref()), everything(&reference));
}

fn values_stay_exact(b: &Backend) {
    let store = b.open();
    let values = [
        "0.000000000000000000000000001",
        "79228162514264337593543950335",
        "-12.50",
        "1234567.8900",
        "0",
    ];
    let batch: Vec<Observation> = values
        .iter()
        .enumerate()
        .map(|(i, v)| obs(&format!("2026-11-02T0{i}:00:00Z"), v))
        .collect();
    store.put_observations(&batch).unwrap();
    let points = store
        .points(
            &batch[0].key,
            Timestamp::UNIX_EPOCH,
            t("2027-01-01T00:00:00Z"),
        )
        .unwrap();
    let stored: Vec<String> = points.iter().map(|p| p.value.to_string()).collect();
    let expected: Vec<String> = values
        .iter()
        .map(|v| Decimal::from_str(v).unwrap().normalize().to_string())
        .collect();
    assert_eq!(stored, expected);
}

fn series_are_listed_in_byte_order_and_filtered(b: &Backend) {
    let store = b.open();
    // Byte order, as SQLite compares text: "B" < "_" < "a" < "é" (a locale would differ).
    let mut batch = Vec::new();
    for account in ["é", "a", "_x", "B"] {
        let mut o = obs("2026-11-02T00:00:00Z", "1");
        o.key.account = account.into();
        batch.push(o);
    }
    let mut elsewhere = obs("2026-11-02T00:00:00Z", "1");
    elsewhere.key.source = "sakura".into();
    batch.push(elsewhere.clone());
    store.put_observations(&batch).unwrap();
    let rs = SeriesFilter {
        source: Some("rs".into()),
        ..Default::default()
    };
    let accounts: Vec<String> = store
        .list_series(&rs)
        .unwrap()
        .into_iter()
        .map(|m| m.key.account)
        .collect();
    assert_eq!(accounts, ["B", "_x", "a", "é"]);
    let picked = SeriesFilter {
        accounts: vec!["a".into(), "020-1".into()],
        ..Default::default()
    };
    let metas = store.list_series(&picked).unwrap();
    assert_eq!(
        metas
            .iter()
            .map(|m| (m.key.source.as_str(), m.key.account.as_str()))
            .collect::<Vec<_>>(),
        [("rs", "a"), ("sakura", "020-1")]
    );
    assert_eq!(metas[0].kind, ObservationKind::PeriodToDate);
    assert_eq!(metas[0].unit, Unit::Money(Currency::new("USD").unwrap()));
    assert_eq!(
        metas[0].key.labels,
        BTreeMap::from([("currency".to_string(), "USD".to_string())])
    );
    assert_eq!(store.series_count("rs").unwrap(), 4);
    assert_eq!(store.series_count("sakura").unwrap(), 1);
    assert_eq!(store.series_count("none").unwrap(), 0);
    assert!(store.has_series(&elsewhere.key).unwrap());
    let mut unknown = elsewhere.key.clone();
    unknown.metric = "other".into();
    assert!(!store.has_series(&unknown).unwrap());
    assert!(store.latest_point(&unknown).unwrap().is_none());
}

fn history_survives_reopen(b: &Backend) {
    {
        let store = b.open();
        store
            .put_observations(&[obs("2026-11-02T00:00:00Z", "10")])
            .unwrap();
    }
    let store = b.open();
    let key = obs("2026-11-02T00:00:00Z", "10").key;
    assert_eq!(
        store.latest_point(&key).unwrap().unwrap().value,
        Decimal::from(10)
    );
    assert_eq!(
        store.list_series(&SeriesFilter::default()).unwrap().len(),
        1
    );
    // The run continues from what the first store wrote.
    let stats = store
        .put_observations(&[obs("2026-11-02T01:00:00Z", "10")])
        .unwrap();
    assert_eq!(stats.extended, 1);
}

fn alert(fingerprint: &str, seq: u64) -> AlertRecord {
    AlertRecord {
        fingerprint: fingerprint.into(),
        rule: "budget".into(),
        labels: BTreeMap::from([("account".to_string(), "020-1".to_string())]),
        annotations: BTreeMap::new(),
        severity: Severity::Critical,
        state: AlertState::Firing,
        active_at: Some(t("2026-11-02T00:00:00Z")),
        fired_at: Some(t("2026-11-02T00:05:00Z")),
        resolved_at: None,
        keep_firing_since: None,
        value: "120.50".into(),
        threshold: "100".into(),
        summary: "over budget".into(),
        seq,
        contributors: vec![],
    }
}

fn outgoing(key: &str, fingerprint: &str, group: &str) -> Outgoing {
    Outgoing {
        notification: Notification {
            idempotency_key: key.into(),
            receiver: "hook".into(),
            status: NotificationStatus::Firing,
            fingerprint: fingerprint.into(),
            rule: "budget".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            value: "120.50".into(),
            threshold: "100".into(),
            starts_at: t("2026-11-02T00:05:00Z"),
            ends_at: None,
            contributors: vec![],
            links: vec![],
        },
        group: GroupSettings {
            key: group.into(),
            route: "default".into(),
            labels: BTreeMap::from([("account".to_string(), "020-1".to_string())]),
            group_wait_ms: 30_000,
            group_interval_ms: 300_000,
            repeat_interval_ms: 14_400_000,
        },
    }
}

fn keys(rows: &[super::OutboxEntry]) -> Vec<&str> {
    rows.iter()
        .map(|r| r.notification.idempotency_key.as_str())
        .collect()
}

fn the_outbox_goes_through_its_states(b: &Backend) {
    let store = b.open();
    let t0 = t("2026-11-02T00:05:00Z");
    let batch = [
        outgoing("k1", "fp-b", "hook/default/{account=\"020-1\"}"),
        outgoing("k2", "fp-b", "hook/default/{account=\"020-1\"}"),
    ];
    store.save_alert(&alert("fp-b", 1), &batch, t0).unwrap();
    // The same notifications again (a retried evaluation): nothing new.
    store.save_alert(&alert("fp-b", 2), &batch, t0).unwrap();
    store
        .save_alert(&alert("fp-a", 1), &[outgoing("k3", "fp-a", "g2")], t0)
        .unwrap();
    let alerts = store.load_alerts().unwrap();
    assert_eq!(
        alerts
            .iter()
            .map(|a| (a.fingerprint.as_str(), a.seq))
            .collect::<Vec<_>>(),
        [("fp-a", 1), ("fp-b", 2)],
        "saved alerts are replaced, listed by fingerprint"
    );
    let open = store.open_outbox(10).unwrap();
    assert_eq!(keys(&open), ["k1", "k2", "k3"]);
    assert_eq!(open[0].notification, batch[0].notification);
    assert_eq!(open[0].group, batch[0].group);
    assert_eq!((open[0].state, open[0].attempts), (RowState::Pending, 0));
    assert_eq!((open[0].created_at, open[0].pending_since), (t0, t0));
    assert_eq!(keys(&store.open_outbox(2).unwrap()), ["k1", "k2"]);
    let (k1, k2, k3) = (open[0].id, open[1].id, open[2].id);

    // Suppressed, then released: pending again since the release, the note kept.
    let t1 = t("2026-11-02T01:00:00Z");
    store
        .change_rows(
            &[RowChange {
                id: k2,
                state: RowState::Suppressed,
                note: Some("silence:s1".into()),
            }],
            t1,
        )
        .unwrap();
    let t2 = t("2026-11-02T02:00:00Z");
    store
        .change_rows(
            &[RowChange {
                id: k2,
                state: RowState::Pending,
                note: None,
            }],
            t2,
        )
        .unwrap();
    let k2_row = store.list_outbox(Some(RowState::Pending), 10).unwrap();
    assert_eq!(keys(&k2_row), ["k3", "k2", "k1"], "newest first");
    assert_eq!(k2_row[1].pending_since, t2);
    assert_eq!(k2_row[1].suppressed_by.as_deref(), Some("silence:s1"));
    // Releasing a row that is already pending does not move its `pending_since`.
    store
        .change_rows(
            &[RowChange {
                id: k1,
                state: RowState::Pending,
                note: None,
            }],
            t2,
        )
        .unwrap();
    assert_eq!(store.open_outbox(1).unwrap()[0].pending_since, t0);

    // One send: k1 delivered, k2 failed (retried), k3 dead.
    let t3 = t("2026-11-02T03:00:00Z");
    store
        .record_send(&SendRecord {
            receiver: "hook".into(),
            key: "g".into(),
            group: None,
            delivered: vec![k1],
            failed: vec![k2],
            dead: vec![k3],
            error: Some("HTTP 500".into()),
            at: t3,
        })
        .unwrap();
    let all = store.list_outbox(None, 10).unwrap();
    let by_key = |k: &str| {
        all.iter()
            .find(|r| r.notification.idempotency_key == k)
            .unwrap()
    };
    assert_eq!(by_key("k1").state, RowState::Delivered);
    assert_eq!(by_key("k1").delivered_at, Some(t3));
    assert_eq!(
        (by_key("k1").attempts, by_key("k1").last_error.clone()),
        (1, None)
    );
    assert_eq!(by_key("k2").state, RowState::Pending);
    assert_eq!(by_key("k2").last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(by_key("k3").state, RowState::Dead);
    assert_eq!(by_key("k3").attempts, 1);
    assert_eq!(
        keys(&store.list_outbox(Some(RowState::Dead), 10).unwrap()),
        ["k3"]
    );
    assert_eq!(keys(&store.open_outbox(10).unwrap()), ["k2"]);
    let stats = store.outbox_stats().unwrap();
    assert_eq!(
        (stats.pending, stats.delivered, stats.suppressed, stats.dead),
        (1, 1, 0, 1)
    );
    assert_eq!(stats.oldest_pending, Some(t2));

    // Skipped rows leave the open outbox too.
    store
        .change_rows(
            &[RowChange {
                id: k2,
                state: RowState::Skipped,
                note: None,
            }],
            t3,
        )
        .unwrap();
    assert!(store.open_outbox(10).unwrap().is_empty());
    let stats = store.outbox_stats().unwrap();
    assert_eq!((stats.pending, stats.oldest_pending), (0, None));
}

fn groups_are_saved_and_deleted_with_their_sends(b: &Backend) {
    let store = b.open();
    let o = outgoing("k1", "fp", "hook/default/{account=\"020-1\"}");
    let state = |attempts: u32| GroupState {
        receiver: "hook".into(),
        settings: o.group.clone(),
        last_sent: Some(t("2026-11-02T00:06:00Z")),
        members: vec![o.notification.clone()],
        thread: Some("1730505960.000100".into()),
        attempts,
        next_attempt: Some(t("2026-11-02T00:11:00Z")),
        last_error: None,
    };
    let send = |group: Option<GroupState>, receiver: &str| SendRecord {
        receiver: receiver.into(),
        key: o.group.key.clone(),
        group,
        delivered: vec![],
        failed: vec![],
        dead: vec![],
        error: None,
        at: t("2026-11-02T00:06:00Z"),
    };
    store.record_send(&send(Some(state(0)), "hook")).unwrap();
    store.record_send(&send(Some(state(0)), "another")).unwrap();
    store.record_send(&send(Some(state(2)), "hook")).unwrap();
    let groups = store.load_groups().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].receiver, "another");
    let mut expected = state(2);
    expected.receiver = "hook".into();
    assert_eq!(groups[1], expected, "replaced, not added");
    store.record_send(&send(None, "hook")).unwrap();
    let groups = store.load_groups().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].receiver, "another");
}

/// Finished rows older than the cut are dropped; pending ones never are, however old.
fn pruning_drops_only_old_finished_rows(b: &Backend) {
    let store = b.open();
    let at = |s: i64| Timestamp::from_second(1_790_000_000 + s).unwrap();
    for (key, created) in [("old-done", 0), ("old-pending", 10), ("new-done", 100)] {
        store
            .save_alert(&alert("fp", 1), &[outgoing(key, "fp", "g")], at(created))
            .unwrap();
    }
    let ids: BTreeMap<String, i64> = store
        .open_outbox(10)
        .unwrap()
        .into_iter()
        .map(|r| (r.notification.idempotency_key, r.id))
        .collect();
    store
        .record_send(&SendRecord {
            receiver: "hook".into(),
            key: "g".into(),
            group: None,
            delivered: vec![ids["old-done"], ids["new-done"]],
            failed: vec![],
            dead: vec![],
            error: None,
            at: at(200),
        })
        .unwrap();
    assert_eq!(store.prune_outbox(at(50)).unwrap(), 1);
    assert_eq!(store.prune_outbox(at(50)).unwrap(), 0, "idempotent");
    let stats = store.outbox_stats().unwrap();
    assert_eq!((stats.pending, stats.delivered), (1, 1));
    assert_eq!(keys(&store.open_outbox(10).unwrap()), ["old-pending"]);
}

fn detector_states_are_upserted(b: &Backend) {
    let store = b.open();
    let state = |instance: &str, samples: u64, body: &str| DetectorState {
        rule: "spikes".into(),
        instance: instance.into(),
        config: "ewma:0.3".into(),
        learned_until: t("2026-11-02T00:00:00Z"),
        learning_since: t("2026-10-01T00:00:00Z"),
        samples,
        state: body.into(),
        updated_at: t("2026-11-02T00:01:00Z"),
    };
    let bits = r#"{"mean":0.30000000000000004,"var":1e-300}"#;
    store
        .save_detector_states(&[state("020-1", 10, "{}"), state("020-2", 3, bits)])
        .unwrap();
    store
        .save_detector_states(&[state("020-1", 11, bits)])
        .unwrap();
    let mut saved = store.detector_states("spikes").unwrap();
    saved.sort_by(|a, b| a.instance.cmp(&b.instance));
    assert_eq!(saved, [state("020-1", 11, bits), state("020-2", 3, bits)]);
    assert!(store.detector_states("other").unwrap().is_empty());
}

fn silences_expire(b: &Backend) {
    let store = b.open();
    let silence = |id: &str, starts: &str, ends: &str| SilenceRow {
        id: id.into(),
        matchers: vec!["account=\"020-1\"".into(), "rule=~\"bud.*\"".into()],
        starts_at: t(starts),
        ends_at: t(ends),
        created_by: "ops".into(),
        comment: "maintenance".into(),
        updated_at: t("2026-11-02T00:00:00Z"),
    };
    let active = silence("s-active", "2026-11-02T00:00:00Z", "2026-11-02T06:00:00Z");
    let pending = silence("s-pending", "2026-11-03T00:00:00Z", "2026-11-03T06:00:00Z");
    let over = silence("s-over", "2026-11-01T00:00:00Z", "2026-11-01T01:00:00Z");
    for s in [&pending, &active, &over] {
        store.insert_silence(s).unwrap();
    }
    assert!(store.insert_silence(&active).is_err(), "ids are unique");
    assert_eq!(
        store.silences().unwrap(),
        [over.clone(), active.clone(), pending.clone()],
        "by start"
    );
    let now = t("2026-11-02T01:00:00Z");
    let ended = store.expire_silence("s-active", now).unwrap().unwrap();
    assert_eq!(
        (ended.starts_at, ended.ends_at, ended.updated_at),
        (active.starts_at, now, now)
    );
    let never = store.expire_silence("s-pending", now).unwrap().unwrap();
    assert_eq!((never.starts_at, never.ends_at), (now, now));
    assert_eq!(store.expire_silence("s-over", now).unwrap().unwrap(), over);
    assert_eq!(store.expire_silence("nope", now).unwrap(), None);
}
