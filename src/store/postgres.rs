//! The PostgreSQL store: the same behaviour as the SQLite one, for state shared by several
//! replicas.
//!
//! The `Store` trait is synchronous and called straight from tokio worker threads, where the
//! blocking `postgres` client would panic (it runs its own runtime). So one dedicated OS
//! thread owns the connection and every method sends it a job over a channel and waits for
//! the answer: callable from any thread, inside a runtime or not.
//!
//! Nothing here is per-process: several replicas may open the same database at once
//! (migrations run under an advisory lock, a batch of observations locks its series rows, the
//! outbox's idempotency key is unique in the table they share).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use jiff::Timestamp;
use postgres::config::SslMode;
use postgres::{Client, NoTls, Row, Transaction};
use rust_decimal::Decimal;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    GroupSettings, GroupState, OutboxEntry, OutboxStats, Outgoing, PutStats, RowChange, RowState,
    SendRecord, SeriesFilter, SeriesMeta, SilenceRow, Store, StoreError,
};
use crate::model::{
    AlertRecord, DetectorState, Notification, Observation, ObservationKind, Period, Point,
    SeriesKey, Unit,
};

/// Applied in order, each in the same transaction as its row in `spendwatch_schema_version`.
/// Never edit a shipped entry.
///
/// Times are milliseconds since the epoch (BIGINT), as in the SQLite store, so both keep the
/// same precision; values are NUMERIC (exact); JSON documents are TEXT so they come back
/// byte for byte. Keys and names are `COLLATE "C"`: byte order, as SQLite sorts them.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE series (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        canonical TEXT COLLATE \"C\" NOT NULL UNIQUE,
        source TEXT COLLATE \"C\" NOT NULL,
        account TEXT COLLATE \"C\" NOT NULL,
        metric TEXT COLLATE \"C\" NOT NULL,
        labels TEXT NOT NULL,
        kind TEXT NOT NULL,
        unit TEXT NOT NULL
    );
    CREATE INDEX series_by_source_metric ON series (source, metric);
    CREATE INDEX series_by_account_metric ON series (account, metric);
    CREATE TABLE points (
        series_id BIGINT NOT NULL REFERENCES series (id),
        at_ms BIGINT NOT NULL,
        last_seen_ms BIGINT NOT NULL,
        period_start_ms BIGINT,
        period_end_ms BIGINT,
        value NUMERIC NOT NULL,
        PRIMARY KEY (series_id, at_ms)
    );
    CREATE TABLE alerts (
        fingerprint TEXT COLLATE \"C\" PRIMARY KEY,
        rule TEXT NOT NULL,
        record TEXT NOT NULL
    );
    CREATE TABLE outbox (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        receiver TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        next_attempt_ms BIGINT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        delivered_ms BIGINT,
        last_error TEXT,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'suppressed', 'delivered', 'dead', 'skipped')),
        fingerprint TEXT NOT NULL,
        group_key TEXT NOT NULL,
        group_settings TEXT NOT NULL,
        pending_since_ms BIGINT NOT NULL,
        suppressed_by TEXT
    );
    CREATE INDEX outbox_open ON outbox (id) WHERE state IN ('pending', 'suppressed');
    CREATE INDEX outbox_by_state ON outbox (state, id);
    CREATE INDEX outbox_finished ON outbox (created_ms)
        WHERE state IN ('delivered', 'dead', 'skipped');
    CREATE TABLE notification_groups (
        receiver TEXT COLLATE \"C\" NOT NULL,
        group_key TEXT COLLATE \"C\" NOT NULL,
        settings TEXT NOT NULL,
        last_sent_ms BIGINT,
        members TEXT NOT NULL,
        thread TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms BIGINT,
        last_error TEXT,
        PRIMARY KEY (receiver, group_key)
    );
    CREATE TABLE silences (
        id TEXT COLLATE \"C\" PRIMARY KEY,
        matchers TEXT NOT NULL,
        starts_ms BIGINT NOT NULL,
        ends_ms BIGINT NOT NULL,
        created_by TEXT NOT NULL,
        comment TEXT NOT NULL,
        updated_ms BIGINT NOT NULL
    );
    CREATE TABLE detector_state (
        rule TEXT NOT NULL,
        instance TEXT NOT NULL,
        config TEXT NOT NULL,
        learned_until_ms BIGINT NOT NULL,
        learning_since_ms BIGINT NOT NULL,
        samples BIGINT NOT NULL,
        state TEXT NOT NULL,
        updated_ms BIGINT NOT NULL,
        PRIMARY KEY (rule, instance)
    );",
    "
    -- Replicas sharing this store and the leases that split the work between them
    -- (src/cluster). Times are PostgreSQL's own clock (now()), never a replica's.
    CREATE TABLE cluster_replicas (
        id TEXT COLLATE \"C\" PRIMARY KEY,
        mode TEXT NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        heartbeat_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE cluster_leases (
        key TEXT COLLATE \"C\" PRIMARY KEY,
        owner TEXT COLLATE \"C\" NOT NULL,
        acquired_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX cluster_leases_by_owner ON cluster_leases (owner);",
];

/// How long a connection attempt may take unless the URL says (`connect_timeout`): an
/// unreachable server fails the call instead of hanging a poll.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce(&mut Session) + Send>;

/// canonical series key → (row id, "kind in unit").
type SeriesIds = HashMap<String, (i64, String)>;

pub struct PostgresStore {
    jobs: Option<mpsc::Sender<Job>>,
    worker: Option<JoinHandle<()>>,
}

/// What the worker thread owns.
struct Session {
    config: postgres::Config,
    /// `None` when the URL says `sslmode=disable`.
    tls: Option<MakeRustlsConnect>,
    /// Where the server is, without credentials, for messages.
    target: String,
    /// Words that must never appear in a message (the password).
    redact: Vec<String>,
    /// `None` after a broken connection: the next call reconnects.
    client: Option<Client>,
    /// canonical series key → (row id, "kind in unit"). Series rows never change once
    /// written, so this stays true whatever other replicas write.
    series_ids: HashMap<String, (i64, String)>,
}

fn ms(ts: Timestamp) -> i64 {
    ts.as_millisecond()
}

fn from_ms(table: &'static str, v: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millisecond(v).map_err(|e| corrupt(table, format!("timestamp {v}: {e}")))
}

fn corrupt(table: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table,
        reason: reason.into(),
    }
}

/// The error and its causes on one line (`postgres::Error`'s own text is only its kind).
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Postgres(describe(&e))
    }
}

impl PostgresStore {
    /// Connects, applies pending migrations and starts the connection's thread. `url` is a
    /// libpq-style URL or key=value string; it is never written into an error or a log.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let redact = secrets_in(url);
        let fail = |reason: String| StoreError::Open {
            path: "postgres".into(),
            reason: scrub(reason, &redact),
        };
        let mut config = postgres::Config::from_str(url)
            .map_err(|e| fail(format!("not a valid PostgreSQL URL: {}", describe(&e))))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        // Names its sessions in `pg_stat_activity` unless the URL does.
        if config.get_application_name().is_none() {
            config.application_name("spendwatch");
        }
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            _ => Some(rustls_connector().map_err(fail)?),
        };
        let mut session = Session {
            target: target_of(&config),
            config,
            tls,
            redact: redact.clone(),
            client: None,
            series_ids: HashMap::new(),
        };
        // Connect and migrate on the worker thread too: the blocking client must never run
        // on the caller's (possibly async) thread.
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let worker = std::thread::Builder::new()
            .name("spendwatch-postgres".into())
            .spawn(move || {
                let opened = session.client().and_then(migrate);
                let failed = opened.is_err();
                let _ = ready_tx.send(opened);
                if failed {
                    return;
                }
                while let Ok(job) = inbox.recv() {
                    job(&mut session);
                }
            })
            .map_err(|e| fail(format!("cannot start the store thread: {e}")))?;
        let opened = ready_rx
            .recv()
            .map_err(|_| fail("the store thread stopped while connecting".into()))?;
        let store = PostgresStore {
            jobs: Some(jobs),
            worker: Some(worker),
        };
        match opened {
            Ok(()) => Ok(store),
            Err(StoreError::Open { path, reason }) => Err(StoreError::Open {
                path,
                reason: scrub(reason, &redact),
            }),
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// Runs `job` on the connection's thread and waits for its answer.
    fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Session) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let stopped = || StoreError::Postgres("the store thread has stopped".into());
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |session: &mut Session| {
            let result = job(session);
            let result = session.after(result);
            let _ = reply.send(result);
        });
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Closing the channel ends the worker's loop once queued jobs are done.
        self.jobs.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl Session {
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            let connected = match &self.tls {
                None => self.config.connect(NoTls),
                Some(tls) => self.config.connect(tls.clone()),
            };
            let client = connected.map_err(|e| StoreError::Open {
                path: format!("postgres {}", self.target),
                reason: scrub(describe(&e), &self.redact),
            })?;
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::Postgres("no connection".into()))
    }

    /// Drops a broken connection so that the next call reconnects, and says so. A FATAL
    /// error ends the server's session even before the client has noticed the socket close
    /// (e.g. `pg_terminate_backend`), so it counts as lost too.
    fn after<R>(&mut self, result: Result<R, StoreError>) -> Result<R, StoreError> {
        let fatal = matches!(&result, Err(StoreError::Postgres(reason)) if reason.contains("db error: FATAL:"));
        if result.is_err() && (fatal || self.client.as_ref().is_some_and(Client::is_closed)) {
            self.client = None;
            return result.map_err(|e| match e {
                StoreError::Postgres(reason) => StoreError::Postgres(format!(
                    "connection to {} lost ({reason}); the next call reconnects",
                    self.target
                )),
                other => other,
            });
        }
        result
    }
}

/// The password and the whole URL: neither may appear in a message.
fn secrets_in(url: &str) -> Vec<String> {
    let mut words = vec![url.to_string()];
    if let Ok(config) = postgres::Config::from_str(url)
        && let Some(password) = config.get_password()
    {
        words.push(String::from_utf8_lossy(password).into_owned());
    }
    if let Ok(parsed) = url::Url::parse(url)
        && let Some(password) = parsed.password()
    {
        words.push(password.to_string());
    }
    words.retain(|w| !w.is_empty());
    words
}

fn scrub(mut text: String, secrets: &[String]) -> String {
    for secret in secrets {
        text = text.replace(secret.as_str(), "***");
    }
    text
}

/// `host:port/dbname` of a URL, without credentials; `None` when it does not parse.
pub fn postgres_target(url: &str) -> Option<String> {
    postgres::Config::from_str(url).ok().map(|c| target_of(&c))
}

/// `host:port/dbname` for messages.
fn target_of(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or(""))
}

/// TLS with the system's roots, through ring (the one crypto provider this binary uses).
/// The server's certificate is always verified, whatever the sslmode.
pub(crate) fn rustls_connector() -> Result<MakeRustlsConnect, String> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(loaded.certs);
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Applies pending migrations in one transaction, under an advisory lock so that replicas
/// starting together migrate once. The lock is per schema: stores in other schemas of the
/// same database do not wait for each other.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('spendwatch migrations'), hashtext(current_schema()))",
        &[],
    )?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS spendwatch_schema_version (
            version INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )?;
    let version: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM spendwatch_schema_version",
            &[],
        )?
        .get(0);
    let version = usize::try_from(version).unwrap_or(0);
    if version > MIGRATIONS.len() {
        return Err(StoreError::Open {
            path: "postgres".into(),
            reason: format!(
                "store schema version {version} is newer than this build supports ({})",
                MIGRATIONS.len()
            ),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.batch_execute(sql)?;
        let number = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO spendwatch_schema_version (version) VALUES ($1)",
            &[&number],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// A `points` row as read: at, last_seen, period start, period end (ms) and value.
#[derive(Debug, Clone, PartialEq)]
struct RawPoint {
    at: i64,
    last_seen: i64,
    period_start: Option<i64>,
    period_end: Option<i64>,
    value: Decimal,
}

const POINT_COLUMNS: &str = "at_ms, last_seen_ms, period_start_ms, period_end_ms, value";

/// Reads the five point columns starting at column `first`.
fn raw_point(row: &Row, first: usize) -> Result<RawPoint, StoreError> {
    Ok(RawPoint {
        at: row.try_get(first)?,
        last_seen: row.try_get(first + 1)?,
        period_start: row.try_get(first + 2)?,
        period_end: row.try_get(first + 3)?,
        value: row.try_get(first + 4)?,
    })
}

fn to_point(raw: RawPoint) -> Result<Point, StoreError> {
    let period = match (raw.period_start, raw.period_end) {
        (Some(s), Some(e)) => Some(Period {
            start: from_ms("points", s)?,
            end: from_ms("points", e)?,
        }),
        _ => None,
    };
    Ok(Point {
        at: from_ms("points", raw.at)?,
        last_seen: from_ms("points", raw.last_seen)?,
        period,
        value: raw.value,
    })
}

/// What a batch does to one `points` row, after folding every observation that touches it.
#[derive(Debug, Default)]
struct Touch {
    /// New value and period (an insert or a restatement).
    value: Option<(Option<i64>, Option<i64>, Decimal)>,
    /// `last_seen` moved forward by a run.
    last_seen: Option<i64>,
}

/// The series of a batch: existing rows read in one query, new ones created in one, all of
/// them locked (in id order, so two replicas cannot deadlock) until the batch commits, so a
/// concurrent writer of the same series waits instead of deciding on a stale newest point.
fn resolve_series(
    tx: &mut Transaction<'_>,
    cache: &HashMap<String, (i64, String)>,
    observations: &[Observation],
) -> Result<(Vec<i64>, SeriesIds), StoreError> {
    let canonicals: Vec<String> = observations.iter().map(|o| o.key.canonical()).collect();
    let mut known: HashMap<String, (i64, String)> = HashMap::new();
    let missing: Vec<&str> = {
        let mut seen = HashSet::new();
        canonicals
            .iter()
            .filter(|c| !cache.contains_key(*c) && seen.insert(c.as_str()))
            .map(String::as_str)
            .collect()
    };
    let read = |tx: &mut Transaction<'_>,
                keys: &[&str],
                known: &mut HashMap<String, (i64, String)>|
     -> Result<(), StoreError> {
        for row in tx.query(
            "SELECT canonical, id, kind, unit FROM series WHERE canonical = ANY($1)",
            &[&keys],
        )? {
            let kind: String = row.try_get(2)?;
            let unit: String = row.try_get(3)?;
            known.insert(
                row.try_get(0)?,
                (row.try_get(1)?, format!("{kind} in {unit}")),
            );
        }
        Ok(())
    };
    if !missing.is_empty() {
        read(tx, &missing, &mut known)?;
    }
    // A series keeps the kind and unit it was created with: the first observation of a new
    // series in the batch decides them, and any observation that disagrees is refused.
    let mut new_rows: Vec<&Observation> = Vec::new();
    let mut shapes: HashMap<&str, String> = HashMap::new();
    for (obs, canonical) in observations.iter().zip(&canonicals) {
        let shape = format!("{} in {}", obs.kind.as_str(), obs.unit.encode());
        let stored = match cache.get(canonical).or_else(|| known.get(canonical)) {
            Some((_, stored)) => stored.clone(),
            None => match shapes.get(canonical.as_str()) {
                Some(s) => s.clone(),
                None => {
                    shapes.insert(canonical.as_str(), shape.clone());
                    new_rows.push(obs);
                    shape.clone()
                }
            },
        };
        if stored != shape {
            return Err(StoreError::Conflict {
                series: obs.key.to_string(),
                stored,
                incoming: shape,
            });
        }
    }
    if !new_rows.is_empty() {
        let mut columns: [Vec<String>; 7] = Default::default();
        for obs in &new_rows {
            let labels = serde_json::to_string(&obs.key.labels)
                .map_err(|e| corrupt("series", e.to_string()))?;
            let values = [
                obs.key.canonical(),
                obs.key.source.clone(),
                obs.key.account.clone(),
                obs.key.metric.clone(),
                labels,
                obs.kind.as_str().to_string(),
                obs.unit.encode(),
            ];
            for (column, value) in columns.iter_mut().zip(values) {
                column.push(value);
            }
        }
        let [canonical, source, account, metric, labels, kind, unit] = &columns;
        let created = tx.query(
            "INSERT INTO series (canonical, source, account, metric, labels, kind, unit)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[])
             ON CONFLICT (canonical) DO NOTHING
             RETURNING canonical, id, kind, unit",
            &[canonical, source, account, metric, labels, kind, unit],
        )?;
        for row in created {
            let kind: String = row.try_get(2)?;
            let unit: String = row.try_get(3)?;
            known.insert(
                row.try_get(0)?,
                (row.try_get(1)?, format!("{kind} in {unit}")),
            );
        }
        // Created meanwhile by another replica: read back, and refuse a different shape.
        let raced: Vec<&str> = canonical
            .iter()
            .filter(|c| !known.contains_key(*c))
            .map(String::as_str)
            .collect();
        if !raced.is_empty() {
            read(tx, &raced, &mut known)?;
            for obs in observations {
                let shape = format!("{} in {}", obs.kind.as_str(), obs.unit.encode());
                if let Some((_, stored)) = known.get(&obs.key.canonical())
                    && *stored != shape
                {
                    return Err(StoreError::Conflict {
                        series: obs.key.to_string(),
                        stored: stored.clone(),
                        incoming: shape,
                    });
                }
            }
        }
    }
    let mut ids = Vec::with_capacity(canonicals.len());
    for canonical in &canonicals {
        let (id, _) = cache
            .get(canonical)
            .or_else(|| known.get(canonical))
            .ok_or_else(|| corrupt("series", format!("series {canonical:?} not found")))?;
        ids.push(*id);
    }
    let mut locked: Vec<i64> = ids.clone();
    locked.sort_unstable();
    locked.dedup();
    tx.execute(
        "SELECT 1 FROM series WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
        &[&locked],
    )?;
    Ok((ids, known))
}

fn put_batch(
    client: &mut Client,
    cache: &mut HashMap<String, (i64, String)>,
    observations: &[Observation],
) -> Result<PutStats, StoreError> {
    let mut stats = PutStats::default();
    if observations.is_empty() {
        return Ok(stats);
    }
    let mut tx = client.transaction()?;
    let (ids, created) = resolve_series(&mut tx, cache, observations)?;
    // Newest point of every series in the batch, read under the lock (no cache: another
    // replica may have written since).
    let mut distinct: Vec<i64> = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let mut latest: HashMap<i64, RawPoint> = HashMap::new();
    for row in tx.query(
        &format!(
            "SELECT s.id, p.{} FROM unnest($1::bigint[]) AS s (id)
             CROSS JOIN LATERAL (SELECT {POINT_COLUMNS} FROM points
                                 WHERE series_id = s.id ORDER BY at_ms DESC LIMIT 1) p",
            POINT_COLUMNS.replace(", ", ", p.")
        ),
        &[&distinct],
    )? {
        latest.insert(row.try_get(0)?, raw_point(&row, 1)?);
    }
    // The same decisions as the SQLite store, one observation after another; the writes
    // they make are folded per row and sent as two statements.
    let mut touched: HashMap<(i64, i64), Touch> = HashMap::new();
    for (obs, &id) in observations.iter().zip(&ids) {
        let at = ms(obs.at);
        let value = obs.value.normalize();
        let (ps, pe) = match obs.period {
            Some(p) => (Some(ms(p.start)), Some(ms(p.end))),
            None => (None, None),
        };
        if let Some(l) = latest.get(&id).cloned() {
            let same = l.value == value && l.period_start == ps && l.period_end == pe;
            if same && at >= l.at && at <= l.last_seen {
                stats.unchanged += 1;
                continue;
            }
            // Traffic samples each describe their own step: never merged into a run.
            if same && at > l.last_seen && obs.kind != ObservationKind::Traffic {
                touched.entry((id, l.at)).or_default().last_seen = Some(at);
                stats.extended += 1;
                latest.insert(id, RawPoint { last_seen: at, ..l });
                continue;
            }
            match at.cmp(&l.at) {
                // A backfill or restatement of an older instant: the newest point stays.
                std::cmp::Ordering::Less => {}
                // A restatement of the newest instant keeps its run (`last_seen`).
                std::cmp::Ordering::Equal => {
                    latest.insert(
                        id,
                        RawPoint {
                            period_start: ps,
                            period_end: pe,
                            value,
                            ..l
                        },
                    );
                }
                std::cmp::Ordering::Greater => {
                    latest.remove(&id);
                }
            }
        }
        // A value for an instant already stored is a restatement by the API: it replaces.
        touched.entry((id, at)).or_default().value = Some((ps, pe, value));
        stats.inserted += 1;
        latest.entry(id).or_insert(RawPoint {
            at,
            last_seen: at,
            period_start: ps,
            period_end: pe,
            value,
        });
    }
    write_points(&mut tx, touched)?;
    tx.commit()?;
    cache.extend(created);
    Ok(stats)
}

/// Two statements for a whole batch: values (inserts and restatements, with any run that
/// extended them in the same batch) and runs alone.
fn write_points(
    tx: &mut Transaction<'_>,
    touched: HashMap<(i64, i64), Touch>,
) -> Result<(), StoreError> {
    // Columns of the upsert: series id, instant, last seen, period start and end.
    let mut upsert: [Vec<i64>; 3] = Default::default();
    let mut periods: [Vec<Option<i64>>; 2] = Default::default();
    let mut values: Vec<Decimal> = Vec::new();
    let mut runs: (Vec<i64>, Vec<i64>, Vec<i64>) = Default::default();
    for ((id, at), touch) in touched {
        match touch.value {
            Some((ps, pe, value)) => {
                upsert[0].push(id);
                upsert[1].push(at);
                upsert[2].push(touch.last_seen.unwrap_or(at));
                periods[0].push(ps);
                periods[1].push(pe);
                values.push(value);
            }
            None => {
                if let Some(seen) = touch.last_seen {
                    runs.0.push(id);
                    runs.1.push(at);
                    runs.2.push(seen);
                }
            }
        }
    }
    if !values.is_empty() {
        // `last_seen` never goes back: a restated row keeps its run (the stored `last_seen`
        // is at least its instant), and a run extended in this batch wins.
        tx.execute(
            "INSERT INTO points (series_id, at_ms, last_seen_ms, period_start_ms, period_end_ms, value)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                                  $5::bigint[], $6::numeric[])
             ON CONFLICT (series_id, at_ms) DO UPDATE SET
               value = excluded.value, period_start_ms = excluded.period_start_ms,
               period_end_ms = excluded.period_end_ms,
               last_seen_ms = GREATEST(points.last_seen_ms, excluded.last_seen_ms)",
            &[&upsert[0], &upsert[1], &upsert[2], &periods[0], &periods[1], &values],
        )?;
    }
    if !runs.0.is_empty() {
        tx.execute(
            "UPDATE points p SET last_seen_ms = r.seen
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS r (series_id, at_ms, seen)
             WHERE p.series_id = r.series_id AND p.at_ms = r.at_ms",
            &[&runs.0, &runs.1, &runs.2],
        )?;
    }
    Ok(())
}

/// `AND ...` conditions on `series s` for a filter, numbered from `$first`, and their
/// arguments: only the conditions given, so the planner can use the indexes.
fn series_conditions(
    filter: &SeriesFilter,
    first: usize,
) -> (String, Vec<Box<dyn postgres::types::ToSql + Sync + Send>>) {
    let mut sql = String::new();
    let mut args: Vec<Box<dyn postgres::types::ToSql + Sync + Send>> = Vec::new();
    if let Some(source) = &filter.source {
        sql.push_str(&format!(" AND s.source = ${}", first + args.len()));
        args.push(Box::new(source.clone()));
    }
    if let Some(metric) = &filter.metric {
        sql.push_str(&format!(" AND s.metric = ${}", first + args.len()));
        args.push(Box::new(metric.clone()));
    }
    if !filter.accounts.is_empty() {
        sql.push_str(&format!(" AND s.account = ANY(${})", first + args.len()));
        args.push(Box::new(filter.accounts.clone()));
    }
    (sql, args)
}

fn params(
    args: &[Box<dyn postgres::types::ToSql + Sync + Send>],
) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    args.iter()
        .map(|a| a.as_ref() as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

const SERIES_COLUMNS: &str = "s.source, s.account, s.metric, s.labels, s.kind, s.unit";

/// Reads the six series columns starting at column `first`.
fn series_meta(row: &Row, first: usize) -> Result<SeriesMeta, StoreError> {
    let labels: String = row.try_get(first + 3)?;
    let kind: String = row.try_get(first + 4)?;
    let unit: String = row.try_get(first + 5)?;
    let labels: BTreeMap<String, String> =
        serde_json::from_str(&labels).map_err(|e| corrupt("series", format!("labels: {e}")))?;
    Ok(SeriesMeta {
        key: SeriesKey {
            source: row.try_get(first)?,
            account: row.try_get(first + 1)?,
            metric: row.try_get(first + 2)?,
            labels,
        },
        kind: ObservationKind::parse(&kind)
            .ok_or_else(|| corrupt("series", format!("kind {kind:?}")))?,
        unit: Unit::decode(&unit).ok_or_else(|| corrupt("series", format!("unit {unit:?}")))?,
    })
}

fn one_point(
    client: &mut Client,
    sql: &str,
    args: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Option<Point>, StoreError> {
    client
        .query_opt(sql, args)?
        .map(|row| raw_point(&row, 0).and_then(to_point))
        .transpose()
}

const OUTBOX_COLUMNS: &str = "id, payload, attempts, created_ms, state, receiver, group_settings,
    pending_since_ms, suppressed_by, last_error, delivered_ms";

fn to_outbox(row: &Row) -> Result<OutboxEntry, StoreError> {
    let payload: String = row.try_get(1)?;
    let notification: Notification =
        serde_json::from_str(&payload).map_err(|e| corrupt("outbox", e.to_string()))?;
    let settings: String = row.try_get(6)?;
    let group: GroupSettings = serde_json::from_str(&settings)
        .map_err(|e| corrupt("outbox", format!("group settings: {e}")))?;
    let attempts: i32 = row.try_get(2)?;
    let state: String = row.try_get(4)?;
    let delivered: Option<i64> = row.try_get(10)?;
    Ok(OutboxEntry {
        id: row.try_get(0)?,
        notification,
        attempts: u32::try_from(attempts).unwrap_or(0),
        created_at: from_ms("outbox", row.try_get(3)?)?,
        state: RowState::parse(&state)
            .ok_or_else(|| corrupt("outbox", format!("state {state:?}")))?,
        group,
        pending_since: from_ms("outbox", row.try_get(7)?)?,
        suppressed_by: row.try_get(8)?,
        last_error: row.try_get(9)?,
        delivered_at: delivered.map(|v| from_ms("outbox", v)).transpose()?,
    })
}

const SILENCE_COLUMNS: &str = "id, matchers, starts_ms, ends_ms, created_by, comment, updated_ms";

fn to_silence(row: &Row) -> Result<SilenceRow, StoreError> {
    let id: String = row.try_get(0)?;
    let matchers: String = row.try_get(1)?;
    Ok(SilenceRow {
        matchers: serde_json::from_str(&matchers)
            .map_err(|e| corrupt("silences", format!("{id}: matchers: {e}")))?,
        id,
        starts_at: from_ms("silences", row.try_get(2)?)?,
        ends_at: from_ms("silences", row.try_get(3)?)?,
        created_by: row.try_get(4)?,
        comment: row.try_get(5)?,
        updated_at: from_ms("silences", row.try_get(6)?)?,
    })
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store for PostgresStore {
    fn put_observations(&self, observations: &[Observation]) -> Result<PutStats, StoreError> {
        let observations = observations.to_vec();
        self.run(move |s| {
            s.client()?;
            let Session {
                client: Some(client),
                series_ids,
                ..
            } = s
            else {
                return Err(StoreError::Postgres("no connection".into()));
            };
            put_batch(client, series_ids, &observations)
        })
    }

    fn list_series(&self, filter: &SeriesFilter) -> Result<Vec<SeriesMeta>, StoreError> {
        let filter = filter.clone();
        self.run(move |s| {
            let (conditions, args) = series_conditions(&filter, 1);
            let rows = s.client()?.query(
                &format!(
                    "SELECT {SERIES_COLUMNS} FROM series s WHERE true{conditions}
                     ORDER BY s.canonical"
                ),
                &params(&args),
            )?;
            rows.iter().map(|r| series_meta(r, 0)).collect()
        })
    }

    fn series_points(
        &self,
        filter: &SeriesFilter,
        from: Timestamp,
        to: Timestamp,
        anchored: bool,
    ) -> Result<Vec<(SeriesMeta, Vec<Point>)>, StoreError> {
        let filter = filter.clone();
        self.run(move |s| {
            let (conditions, args) = series_conditions(&filter, 3);
            // The anchor is the newest point before `from`; a series with no points in range
            // still comes back, with none, as `list_series` lists it.
            let lower = if anchored {
                "COALESCE((SELECT MAX(at_ms) FROM points WHERE series_id = s.id AND at_ms < $1), $1)"
            } else {
                "$1"
            };
            let sql = format!(
                "SELECT s.id, {SERIES_COLUMNS}, p.at_ms, p.last_seen_ms, p.period_start_ms,
                        p.period_end_ms, p.value
                 FROM series s LEFT JOIN LATERAL (
                     SELECT {POINT_COLUMNS} FROM points
                     WHERE series_id = s.id AND at_ms >= {lower} AND at_ms <= $2
                 ) p ON true
                 WHERE true{conditions}
                 ORDER BY s.canonical, p.at_ms"
            );
            let (from, to) = (ms(from), ms(to));
            let mut all: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&from, &to];
            all.extend(params(&args));
            let rows = s.client()?.query(&sql, &all)?;
            let mut out: Vec<(SeriesMeta, Vec<Point>)> = Vec::new();
            let mut current: Option<i64> = None;
            for row in &rows {
                let id: i64 = row.try_get(0)?;
                if current != Some(id) {
                    out.push((series_meta(row, 1)?, Vec::new()));
                    current = Some(id);
                }
                let at: Option<i64> = row.try_get(7)?;
                if at.is_some()
                    && let Some((_, points)) = out.last_mut()
                {
                    points.push(to_point(raw_point(row, 7)?)?);
                }
            }
            Ok(out)
        })
    }

    fn points(
        &self,
        key: &SeriesKey,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Point>, StoreError> {
        let canonical = key.canonical();
        self.run(move |s| {
            let rows = s.client()?.query(
                &format!(
                    "SELECT {POINT_COLUMNS} FROM points JOIN series ON series.id = points.series_id
                     WHERE series.canonical = $1 AND at_ms >= $2 AND at_ms <= $3 ORDER BY at_ms"
                ),
                &[&canonical, &ms(from), &ms(to)],
            )?;
            rows.iter()
                .map(|r| raw_point(r, 0).and_then(to_point))
                .collect()
        })
    }

    fn latest_point(&self, key: &SeriesKey) -> Result<Option<Point>, StoreError> {
        let canonical = key.canonical();
        self.run(move |s| {
            one_point(
                s.client()?,
                &format!(
                    "SELECT {POINT_COLUMNS} FROM points JOIN series ON series.id = points.series_id
                     WHERE series.canonical = $1 ORDER BY at_ms DESC LIMIT 1"
                ),
                &[&canonical],
            )
        })
    }

    fn has_series(&self, key: &SeriesKey) -> Result<bool, StoreError> {
        let canonical = key.canonical();
        self.run(move |s| {
            if s.series_ids.contains_key(&canonical) {
                return Ok(true);
            }
            Ok(s.client()?
                .query_opt("SELECT 1 FROM series WHERE canonical = $1", &[&canonical])?
                .is_some())
        })
    }

    fn series_count(&self, source: &str) -> Result<usize, StoreError> {
        let source = source.to_string();
        self.run(move |s| {
            let n: i64 = s
                .client()?
                .query_one("SELECT COUNT(*) FROM series WHERE source = $1", &[&source])?
                .try_get(0)?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    fn point_before(&self, key: &SeriesKey, at: Timestamp) -> Result<Option<Point>, StoreError> {
        let canonical = key.canonical();
        self.run(move |s| {
            one_point(
                s.client()?,
                &format!(
                    "SELECT {POINT_COLUMNS} FROM points JOIN series ON series.id = points.series_id
                     WHERE series.canonical = $1 AND at_ms < $2 ORDER BY at_ms DESC LIMIT 1"
                ),
                &[&canonical, &ms(at)],
            )
        })
    }

    fn load_alerts(&self) -> Result<Vec<AlertRecord>, StoreError> {
        self.run(|s| {
            let rows = s
                .client()?
                .query("SELECT record FROM alerts ORDER BY fingerprint", &[])?;
            rows.iter()
                .map(|r| {
                    let record: String = r.try_get(0)?;
                    serde_json::from_str(&record).map_err(|e| corrupt("alerts", e.to_string()))
                })
                .collect()
        })
    }

    fn save_alert(
        &self,
        alert: &AlertRecord,
        outgoing: &[Outgoing],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let record = serde_json::to_string(alert).map_err(|e| corrupt("alerts", e.to_string()))?;
        let (fingerprint, rule) = (alert.fingerprint.clone(), alert.rule.clone());
        let mut rows = Vec::with_capacity(outgoing.len());
        for o in outgoing {
            let n = &o.notification;
            let payload = serde_json::to_string(n).map_err(|e| corrupt("outbox", e.to_string()))?;
            let settings =
                serde_json::to_string(&o.group).map_err(|e| corrupt("outbox", e.to_string()))?;
            rows.push((
                n.idempotency_key.clone(),
                n.receiver.clone(),
                payload,
                n.fingerprint.clone(),
                o.group.key.clone(),
                settings,
            ));
        }
        let now = ms(now);
        self.run(move |s| {
            let mut tx = s.client()?.transaction()?;
            tx.execute(
                "INSERT INTO alerts (fingerprint, rule, record) VALUES ($1, $2, $3)
                 ON CONFLICT (fingerprint) DO UPDATE SET rule = excluded.rule, record = excluded.record",
                &[&fingerprint, &rule, &record],
            )?;
            for (key, receiver, payload, fingerprint, group_key, settings) in &rows {
                // The idempotency key is deterministic and unique across replicas:
                // re-enqueueing the same notification, from here or elsewhere, is a no-op.
                tx.execute(
                    "INSERT INTO outbox (idempotency_key, receiver, payload, created_ms, next_attempt_ms,
                                         state, fingerprint, group_key, group_settings, pending_since_ms)
                     VALUES ($1, $2, $3, $4, $4, 'pending', $5, $6, $7, $4)
                     ON CONFLICT (idempotency_key) DO NOTHING",
                    &[key, receiver, payload, &now, fingerprint, group_key, settings],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn open_outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.run(move |s| {
            let rows = s.client()?.query(
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox
                     WHERE state IN ('pending', 'suppressed') ORDER BY id LIMIT $1"
                ),
                &[&limit_of(limit)],
            )?;
            rows.iter().map(to_outbox).collect()
        })
    }

    fn change_rows(&self, changes: &[RowChange], at: Timestamp) -> Result<(), StoreError> {
        let changes = changes.to_vec();
        self.run(move |s| {
            let mut tx = s.client()?.transaction()?;
            for c in &changes {
                tx.execute(
                    "UPDATE outbox SET state = $1, suppressed_by = COALESCE($2, suppressed_by),
                            pending_since_ms = CASE WHEN $1 = 'pending' AND state <> 'pending'
                                                    THEN $3 ELSE pending_since_ms END
                     WHERE id = $4",
                    &[&c.state.as_str(), &c.note, &ms(at), &c.id],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn load_groups(&self) -> Result<Vec<GroupState>, StoreError> {
        self.run(|s| {
            let table = "notification_groups";
            let rows = s.client()?.query(
                "SELECT receiver, settings, last_sent_ms, members, thread, attempts, next_attempt_ms,
                        last_error
                 FROM notification_groups ORDER BY receiver, group_key",
                &[],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let settings: String = row.try_get(1)?;
                let last_sent: Option<i64> = row.try_get(2)?;
                let members: String = row.try_get(3)?;
                let attempts: i32 = row.try_get(5)?;
                let next: Option<i64> = row.try_get(6)?;
                out.push(GroupState {
                    receiver: row.try_get(0)?,
                    settings: serde_json::from_str(&settings)
                        .map_err(|e| corrupt(table, format!("settings: {e}")))?,
                    last_sent: last_sent.map(|v| from_ms(table, v)).transpose()?,
                    members: serde_json::from_str(&members)
                        .map_err(|e| corrupt(table, format!("members: {e}")))?,
                    thread: row.try_get(4)?,
                    attempts: u32::try_from(attempts).unwrap_or(0),
                    next_attempt: next.map(|v| from_ms(table, v)).transpose()?,
                    last_error: row.try_get(7)?,
                });
            }
            Ok(out)
        })
    }

    fn record_send(&self, record: &SendRecord) -> Result<(), StoreError> {
        let record = record.clone();
        let group = match &record.group {
            None => None,
            Some(g) => Some((
                serde_json::to_string(&g.settings)
                    .map_err(|e| corrupt("notification_groups", e.to_string()))?,
                serde_json::to_string(&g.members)
                    .map_err(|e| corrupt("notification_groups", e.to_string()))?,
            )),
        };
        self.run(move |s| {
            let mut tx = s.client()?.transaction()?;
            let at = ms(record.at);
            if !record.delivered.is_empty() {
                tx.execute(
                    "UPDATE outbox SET state = 'delivered', delivered_ms = $1, attempts = attempts + 1,
                            last_error = NULL WHERE id = ANY($2)",
                    &[&at, &record.delivered],
                )?;
            }
            for (ids, state) in [(&record.failed, "pending"), (&record.dead, "dead")] {
                if !ids.is_empty() {
                    tx.execute(
                        "UPDATE outbox SET state = $1, attempts = attempts + 1, last_error = $2,
                                next_attempt_ms = $3 WHERE id = ANY($4)",
                        &[&state, &record.error, &at, ids],
                    )?;
                }
            }
            match (&record.group, &group) {
                (Some(g), Some((settings, members))) => {
                    let attempts = i32::try_from(g.attempts).unwrap_or(i32::MAX);
                    tx.execute(
                        "INSERT INTO notification_groups
                            (receiver, group_key, settings, last_sent_ms, members, thread, attempts,
                             next_attempt_ms, last_error)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                         ON CONFLICT (receiver, group_key) DO UPDATE SET
                            settings = excluded.settings, last_sent_ms = excluded.last_sent_ms,
                            members = excluded.members, thread = excluded.thread,
                            attempts = excluded.attempts, next_attempt_ms = excluded.next_attempt_ms,
                            last_error = excluded.last_error",
                        &[
                            &record.receiver,
                            &record.key,
                            settings,
                            &g.last_sent.map(ms),
                            members,
                            &g.thread,
                            &attempts,
                            &g.next_attempt.map(ms),
                            &g.last_error,
                        ],
                    )?;
                }
                _ => {
                    tx.execute(
                        "DELETE FROM notification_groups WHERE receiver = $1 AND group_key = $2",
                        &[&record.receiver, &record.key],
                    )?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn list_outbox(
        &self,
        state: Option<RowState>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.run(move |s| {
            let rows = s.client()?.query(
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox
                     WHERE $1::text IS NULL OR state = $1 ORDER BY id DESC LIMIT $2"
                ),
                &[&state.map(RowState::as_str), &limit_of(limit)],
            )?;
            rows.iter().map(to_outbox).collect()
        })
    }

    fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        self.run(|s| {
            let row = s.client()?.query_one(
                "SELECT COUNT(*) FILTER (WHERE state = 'pending'),
                        MIN(pending_since_ms) FILTER (WHERE state = 'pending'),
                        COUNT(*) FILTER (WHERE state = 'delivered'),
                        COUNT(*) FILTER (WHERE state = 'suppressed'),
                        COUNT(*) FILTER (WHERE state = 'dead')
                 FROM outbox",
                &[],
            )?;
            let oldest: Option<i64> = row.try_get(1)?;
            Ok(OutboxStats {
                pending: count(row.try_get(0)?),
                oldest_pending: oldest.map(|v| from_ms("outbox", v)).transpose()?,
                delivered: count(row.try_get(2)?),
                suppressed: count(row.try_get(3)?),
                dead: count(row.try_get(4)?),
            })
        })
    }

    fn prune_outbox(&self, before: Timestamp) -> Result<usize, StoreError> {
        self.run(move |s| {
            let n = s.client()?.execute(
                "DELETE FROM outbox WHERE state IN ('delivered', 'dead', 'skipped') AND created_ms < $1",
                &[&ms(before)],
            )?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn detector_states(&self, rule: &str) -> Result<Vec<DetectorState>, StoreError> {
        let rule = rule.to_string();
        self.run(move |s| {
            let table = "detector_state";
            let rows = s.client()?.query(
                "SELECT instance, config, learned_until_ms, learning_since_ms, samples, state,
                        updated_ms
                 FROM detector_state WHERE rule = $1",
                &[&rule],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let samples: i64 = row.try_get(4)?;
                out.push(DetectorState {
                    rule: rule.clone(),
                    instance: row.try_get(0)?,
                    config: row.try_get(1)?,
                    learned_until: from_ms(table, row.try_get(2)?)?,
                    learning_since: from_ms(table, row.try_get(3)?)?,
                    samples: count(samples),
                    state: row.try_get(5)?,
                    updated_at: from_ms(table, row.try_get(6)?)?,
                });
            }
            Ok(out)
        })
    }

    fn save_detector_states(&self, states: &[DetectorState]) -> Result<(), StoreError> {
        let states = states.to_vec();
        self.run(move |s| {
            let mut tx = s.client()?.transaction()?;
            let stmt = tx.prepare(
                "INSERT INTO detector_state
                    (rule, instance, config, learned_until_ms, learning_since_ms, samples, state,
                     updated_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (rule, instance) DO UPDATE SET
                    config = excluded.config, learned_until_ms = excluded.learned_until_ms,
                    learning_since_ms = excluded.learning_since_ms, samples = excluded.samples,
                    state = excluded.state, updated_ms = excluded.updated_ms",
            )?;
            for st in &states {
                tx.execute(
                    &stmt,
                    &[
                        &st.rule,
                        &st.instance,
                        &st.config,
                        &ms(st.learned_until),
                        &ms(st.learning_since),
                        &i64::try_from(st.samples).unwrap_or(i64::MAX),
                        &st.state,
                        &ms(st.updated_at),
                    ],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn insert_silence(&self, silence: &SilenceRow) -> Result<(), StoreError> {
        let matchers = serde_json::to_string(&silence.matchers)
            .map_err(|e| corrupt("silences", e.to_string()))?;
        let silence = silence.clone();
        self.run(move |s| {
            s.client()?.execute(
                "INSERT INTO silences (id, matchers, starts_ms, ends_ms, created_by, comment, updated_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &silence.id,
                    &matchers,
                    &ms(silence.starts_at),
                    &ms(silence.ends_at),
                    &silence.created_by,
                    &silence.comment,
                    &ms(silence.updated_at),
                ],
            )?;
            Ok(())
        })
    }

    fn silences(&self) -> Result<Vec<SilenceRow>, StoreError> {
        self.run(|s| {
            let rows = s.client()?.query(
                &format!("SELECT {SILENCE_COLUMNS} FROM silences ORDER BY starts_ms, id"),
                &[],
            )?;
            rows.iter().map(to_silence).collect()
        })
    }

    fn expire_silence(&self, id: &str, at: Timestamp) -> Result<Option<SilenceRow>, StoreError> {
        let id = id.to_string();
        self.run(move |s| {
            let mut tx = s.client()?.transaction()?;
            let at = ms(at);
            tx.execute(
                "UPDATE silences SET starts_ms = LEAST(starts_ms, $1), ends_ms = LEAST(ends_ms, $1),
                        updated_ms = $1 WHERE id = $2 AND ends_ms > $1",
                &[&at, &id],
            )?;
            let row = tx.query_opt(
                &format!("SELECT {SILENCE_COLUMNS} FROM silences WHERE id = $1"),
                &[&id],
            )?;
            tx.commit()?;
            row.as_ref().map(to_silence).transpose()
        })
    }
}

/// PostgreSQL-only: connection handling. What every backend does is in `behaviour.rs`.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Currency;
    use crate::store::behaviour::{Backend, PG_URL_VAR};

    const PASSWORD: &str = "hunter2-pg-secret";

    fn obs(account: &str, at: Timestamp, value: i64) -> Observation {
        Observation {
            key: SeriesKey::new("rs", account, "estimated_charges"),
            at,
            period: None,
            value: Decimal::from(value),
            kind: ObservationKind::PeriodToDate,
            unit: Unit::Money(Currency::new("USD").unwrap()),
        }
    }

    fn url_of(backend: &Backend) -> &str {
        match backend {
            Backend::Postgres { url, .. } => url,
            Backend::Sqlite(_) => unreachable!("a postgres backend"),
        }
    }

    /// Neither a malformed URL nor an unreachable server puts the password in the error.
    #[test]
    fn errors_never_show_the_password() {
        for url in [
            format!("postgresql://spendwatch:{PASSWORD}@127.0.0.1:1/spendwatch?connect_timeout=5"),
            format!("postgresql://spendwatch:{PASSWORD}@127.0.0.1:notaport/spendwatch"),
            format!("host=127.0.0.1 port=1 password={PASSWORD} connect_timeout=5"),
            format!("postgresql://spendwatch:{PASSWORD}@127.0.0.1:1/db?sslmode=bogus"),
        ] {
            let err = PostgresStore::open(&url).err().expect("cannot open");
            let text = format!("{err} {err:?}");
            assert!(!text.contains(PASSWORD), "{text}");
            assert!(text.contains("postgres"), "{text}");
        }
        let refused = PostgresStore::open(&format!(
            "postgresql://spendwatch:{PASSWORD}@127.0.0.1:1/spendwatch"
        ))
        .err()
        .expect("nothing listens on port 1")
        .to_string();
        assert!(refused.contains("127.0.0.1:1/spendwatch"), "{refused}");
    }

    #[test]
    fn a_wrong_password_is_refused_without_echo() {
        let Some(backend) = Backend::postgres("wrong_password") else {
            return;
        };
        let mut config = postgres::Config::from_str(url_of(&backend)).unwrap();
        config.password(PASSWORD);
        let Some(Host::Tcp(host)) = config.get_hosts().first().cloned() else {
            return;
        };
        let url = format!(
            "postgresql://{}:{PASSWORD}@{host}:{}/{}?sslmode=disable",
            config.get_user().unwrap_or("postgres"),
            config.get_ports().first().copied().unwrap_or(5432),
            config.get_dbname().unwrap_or("postgres"),
        );
        let err = PostgresStore::open(&url).err().expect("wrong password");
        let text = format!("{err} {err:?}");
        assert!(text.contains("password authentication failed"), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
    }

    use postgres::config::Host;

    /// Replicas starting together: one migrates, the others wait for it and find the schema
    /// current, and all of them can write.
    #[test]
    fn stores_opened_at_once_migrate_once() {
        let Some(backend) = Backend::postgres("migrate_once") else {
            return;
        };
        let url = url_of(&backend).to_string();
        let stores: Vec<PostgresStore> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| PostgresStore::open(&url).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let at = Timestamp::from_second(1_790_000_000).unwrap();
        for (i, store) in stores.iter().enumerate() {
            store
                .put_observations(&[obs(&format!("020-{i}"), at, 1)])
                .unwrap();
        }
        let mut client = postgres::Client::connect(&url, NoTls).unwrap();
        let versions: i64 = client
            .query_one("SELECT COUNT(*) FROM spendwatch_schema_version", &[])
            .unwrap()
            .get(0);
        assert_eq!(versions, MIGRATIONS.len() as i64);
        assert_eq!(stores[0].series_count("rs").unwrap(), 4);
    }

    /// Two replicas (an HA pair) writing the same polls at the same moment: the series row
    /// lock serialises their batches, so for each poll one of them stores it and the other
    /// finds it already stored, and the history is the one a single writer leaves.
    #[test]
    fn concurrent_writers_of_one_series_stay_consistent() {
        let Some(backend) = Backend::postgres("concurrent_writers") else {
            return;
        };
        let (a, b) = (backend.open(), backend.open());
        let start = Timestamp::from_second(1_790_000_000).unwrap();
        let poll = |i: i64| {
            vec![obs(
                "020-1",
                start + jiff::SignedDuration::from_mins(i),
                i / 10,
            )]
        };
        let barrier = std::sync::Barrier::new(2);
        let totals: Vec<PutStats> = std::thread::scope(|scope| {
            let handles: Vec<_> = [&a, &b]
                .into_iter()
                .map(|store| {
                    let (barrier, poll) = (&barrier, &poll);
                    scope.spawn(move || {
                        let mut total = PutStats::default();
                        for i in 0..100 {
                            barrier.wait();
                            let s = store.put_observations(&poll(i)).unwrap();
                            total.inserted += s.inserted;
                            total.extended += s.extended;
                            total.unchanged += s.unchanged;
                        }
                        total
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let sum = |f: fn(&PutStats) -> usize| totals.iter().map(f).sum::<usize>();
        assert_eq!(
            (
                sum(|s| s.inserted),
                sum(|s| s.extended),
                sum(|s| s.unchanged)
            ),
            (10, 90, 100),
            "{totals:?}"
        );
        let points = a
            .points(
                &poll(0)[0].key,
                start,
                start + jiff::SignedDuration::from_hours(3),
            )
            .unwrap();
        // One run per value 0..=9, each from its first minute to its last.
        let runs: Vec<(i64, i64)> = points
            .iter()
            .map(|p| {
                let minute = |t: Timestamp| t.duration_since(start).as_secs() / 60;
                (minute(p.at), minute(p.last_seen))
            })
            .collect();
        let expected: Vec<(i64, i64)> = (0..10).map(|v| (v * 10, v * 10 + 9)).collect();
        assert_eq!(runs, expected);
    }

    /// The blocking client never runs on the caller's thread, so a tokio worker may call
    /// the store directly (the sync `postgres` client would panic there).
    #[test]
    fn works_when_called_from_async_code() {
        let Some(backend) = Backend::postgres("from_async") else {
            return;
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        runtime.block_on(async {
            // Opened and used on a worker thread, as the runtime does.
            let store = backend.open();
            let at = Timestamp::from_second(1_790_000_000).unwrap();
            let stats = store.put_observations(&[obs("020-1", at, 5)]).unwrap();
            assert_eq!(stats.inserted, 1);
            assert!(store.has_series(&obs("020-1", at, 5).key).unwrap());
        });
    }

    /// A dropped connection fails the call in progress with a clear error; the next call
    /// reconnects.
    #[test]
    fn a_broken_connection_is_reopened_on_the_next_call() {
        let Some(backend) = Backend::postgres("reconnect") else {
            return;
        };
        // Named, so that only this store's connection is ended (tests run in parallel).
        let url = format!("{}&application_name=sw-reconnect-test", url_of(&backend));
        let store = PostgresStore::open(&url).unwrap();
        let at = Timestamp::from_second(1_790_000_000).unwrap();
        store.put_observations(&[obs("020-1", at, 5)]).unwrap();
        let mut admin = postgres::Client::connect(url_of(&backend), NoTls).unwrap();
        let killed: i64 = admin
            .query_one(
                "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                  WHERE application_name = 'sw-reconnect-test' AND pid <> pg_backend_pid()) k",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(killed >= 1);
        let err = store.series_count("rs").unwrap_err().to_string();
        assert!(err.contains("the next call reconnects"), "{err}");
        assert_eq!(store.series_count("rs").unwrap(), 1);
    }

    /// Throughput of one batch of 10,000 new observations (10,000 series) and of the same
    /// batch polled again, against the SQLite store on a file. Run with
    /// `cargo test --release --lib put_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn put_throughput() {
        let backend = Backend::postgres("put_throughput")
            .unwrap_or_else(|| panic!("{PG_URL_VAR} must be set for this measurement"));
        let dir = tempfile::tempdir().unwrap();
        let sqlite = crate::store::SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let pg = backend.open();
        let start = Timestamp::from_second(1_790_000_000).unwrap();
        let batch = |round: i64, value: i64| -> Vec<Observation> {
            (0..10_000)
                .map(|i| {
                    obs(
                        &format!("020-{i:05}"),
                        start + jiff::SignedDuration::from_hours(round),
                        value + i,
                    )
                })
                .collect()
        };
        for (name, store) in [("sqlite", &sqlite as &dyn Store), ("postgres", pg.as_ref())] {
            for (label, round, value) in [
                ("new series", 0, 0),
                ("new points", 1, 1),
                ("unchanged re-poll", 1, 1),
                ("runs extended", 2, 1),
            ] {
                let observations = batch(round, value);
                let began = std::time::Instant::now();
                store.put_observations(&observations).unwrap();
                let secs = began.elapsed().as_secs_f64();
                let _ = writeln!(
                    std::io::stderr(),
                    "{name:8} {label:18} 10000 obs in {:7.1} ms = {:9.0} obs/s",
                    secs * 1000.0,
                    10_000.0 / secs
                );
            }
        }
    }

    use std::io::Write as _;
}
