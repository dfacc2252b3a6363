//! The leases in PostgreSQL: one heartbeat is one transaction on a connection of its own, so
//! it never waits behind the store's queries (an evaluation at scale takes seconds).

use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::ClusterError;
use crate::config::ClusterMode;

/// How long connecting may take unless the URL says: a heartbeat must not hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Replica rows older than this are dropped: a replica that never comes back.
const FORGET_REPLICAS_AFTER: &str = "1 day";

pub(super) struct LeaseClient {
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    target: String,
    /// Words that must never appear in a message (the URL, the password).
    redact: Vec<String>,
    client: Option<Client>,
}

/// What one heartbeat found and did.
#[derive(Debug)]
pub(super) struct Beat {
    /// Live replicas, sorted.
    pub live: Vec<String>,
    /// Every account in the store.
    pub accounts: Vec<String>,
    /// Keys the assignment gives this replica.
    pub wanted: Vec<String>,
    /// Keys leased to this replica after the heartbeat.
    pub owned: Vec<String>,
    /// Free keys taken.
    pub acquired: usize,
    /// Keys taken from a replica whose lease had expired.
    pub taken_over: usize,
    /// PostgreSQL's time of the heartbeat, and when the renewed leases expire.
    pub now: Timestamp,
    pub expires: Timestamp,
}

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

impl LeaseClient {
    pub fn new(url: &str, replica: &str) -> Result<Self, ClusterError> {
        let mut redact = vec![url.to_string()];
        let fail = |reason: String| ClusterError::Connect {
            target: "postgres".into(),
            reason,
        };
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|_| fail("not a valid PostgreSQL URL (value not shown)".into()))?;
        if let Some(password) = config.get_password() {
            redact.push(String::from_utf8_lossy(password).into_owned());
        }
        redact.retain(|w| !w.is_empty());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // Visible in pg_stat_activity next to the store's connection.
        config.application_name(format!("spendwatch-cluster {replica}"));
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            _ => Some(crate::store::rustls_connector().map_err(fail)?),
        };
        let target = crate::store::postgres_target(url).unwrap_or_else(|| "postgres".into());
        Ok(LeaseClient {
            config,
            tls,
            target,
            redact,
            client: None,
        })
    }

    fn scrub(&self, mut text: String) -> String {
        for secret in &self.redact {
            text = text.replace(secret.as_str(), "***");
        }
        text
    }

    fn error(&mut self, e: tokio_postgres::Error) -> ClusterError {
        // A broken connection is replaced at the next heartbeat.
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
        }
        ClusterError::Postgres(self.scrub(describe(&e)))
    }

    async fn client(&mut self) -> Result<&mut Client, ClusterError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            let connected = match &self.tls {
                None => self
                    .config
                    .connect(NoTls)
                    .await
                    .map(|(client, connection)| {
                        tokio::spawn(async move {
                            let _ = connection.await;
                        });
                        client
                    }),
                Some(tls) => self
                    .config
                    .connect(tls.clone())
                    .await
                    .map(|(client, connection)| {
                        tokio::spawn(async move {
                            let _ = connection.await;
                        });
                        client
                    }),
            };
            let client = connected.map_err(|e| ClusterError::Connect {
                target: self.target.clone(),
                reason: self.scrub(describe(&e)),
            })?;
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| ClusterError::Postgres("no connection".into()))
    }

    /// One heartbeat in one transaction: mark this replica live, renew its leases, give
    /// back `release`, and take whatever `want(live, accounts)` lists that is free or
    /// expired.
    pub async fn beat(
        &mut self,
        me: &str,
        mode: ClusterMode,
        lease: Duration,
        release: &[String],
        want: impl FnOnce(&[String], &[String]) -> Vec<String>,
    ) -> Result<Beat, ClusterError> {
        match self.try_beat(me, mode, lease, release, want).await {
            Ok(beat) => Ok(beat),
            Err(BeatError::Postgres(e)) => Err(self.error(e)),
            Err(BeatError::Cluster(e)) => Err(e),
        }
    }

    async fn try_beat(
        &mut self,
        me: &str,
        mode: ClusterMode,
        lease: Duration,
        release: &[String],
        want: impl FnOnce(&[String], &[String]) -> Vec<String>,
    ) -> Result<Beat, BeatError> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let client = self.client().await.map_err(BeatError::Cluster)?;
        let tx = client.transaction().await?;
        let now_ms: i64 = tx
            .query_one(
                "INSERT INTO cluster_replicas (id, mode, started_at, heartbeat_at)
                 VALUES ($1, $2, now(), now())
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), mode = excluded.mode
                 RETURNING (extract(epoch FROM now()) * 1000)::bigint",
                &[&me, &mode.as_str()],
            )
            .await?
            .try_get(0)?;
        tx.execute(
            &format!(
                "DELETE FROM cluster_replicas WHERE heartbeat_at < now() - interval '{FORGET_REPLICAS_AFTER}'"
            ),
            &[],
        )
        .await?;
        let live: Vec<String> = tx
            .query(
                "SELECT id FROM cluster_replicas
                 WHERE heartbeat_at > now() - $1::bigint * interval '1 millisecond' ORDER BY id",
                &[&lease_ms],
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let accounts: Vec<String> = tx
            .query("SELECT DISTINCT account FROM series ORDER BY account", &[])
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let wanted = want(&live, &accounts);

        // Renew in key order, as every statement here locks rows, so that two replicas
        // never wait for each other in opposite orders.
        let mut owned: Vec<String> = tx
            .query(
                "UPDATE cluster_leases SET expires_at = now() + $2::bigint * interval '1 millisecond'
                 WHERE key IN (SELECT key FROM cluster_leases WHERE owner = $1 ORDER BY key FOR UPDATE)
                 RETURNING key",
                &[&me, &lease_ms],
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        if !release.is_empty() {
            tx.execute(
                "DELETE FROM cluster_leases WHERE owner = $1 AND key = ANY($2)",
                &[&me, &release],
            )
            .await?;
            owned.retain(|k| !release.contains(k));
        }
        let mut missing: Vec<&String> = wanted.iter().filter(|k| !owned.contains(k)).collect();
        missing.sort();
        let (mut acquired, mut taken_over) = (0, 0);
        if !missing.is_empty() {
            // `prev` is the snapshot before this statement: who held each key.
            let rows = tx
                .query(
                    "WITH prev AS (SELECT key, owner FROM cluster_leases WHERE key = ANY($2))
                     INSERT INTO cluster_leases (key, owner, acquired_at, expires_at)
                     SELECT k, $1, now(), now() + $3::bigint * interval '1 millisecond'
                     FROM unnest($2::text[]) AS k ORDER BY k
                     ON CONFLICT (key) DO UPDATE SET owner = excluded.owner,
                        acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
                     WHERE cluster_leases.expires_at < now()
                     RETURNING key, (SELECT owner FROM prev WHERE prev.key = cluster_leases.key)",
                    &[&me, &missing, &lease_ms],
                )
                .await?;
            for row in &rows {
                let key: String = row.try_get(0)?;
                let previous: Option<String> = row.try_get(1)?;
                match previous {
                    Some(p) if p != me => taken_over += 1,
                    _ => acquired += 1,
                }
                owned.push(key);
            }
        }
        tx.commit().await?;
        owned.sort();
        let at = |ms: i64| {
            Timestamp::from_millisecond(ms)
                .map_err(|e| BeatError::Cluster(ClusterError::Postgres(format!("now(): {e}"))))
        };
        Ok(Beat {
            live,
            accounts,
            wanted,
            owned,
            acquired,
            taken_over,
            now: at(now_ms)?,
            expires: at(now_ms.saturating_add(lease_ms))?,
        })
    }

    /// Gives back every lease and removes this replica; returns how many leases it held.
    pub async fn leave(&mut self, me: &str) -> Result<u64, ClusterError> {
        let result = async {
            let client = self.client().await.map_err(BeatError::Cluster)?;
            let tx = client.transaction().await?;
            let n = tx
                .execute("DELETE FROM cluster_leases WHERE owner = $1", &[&me])
                .await?;
            tx.execute("DELETE FROM cluster_replicas WHERE id = $1", &[&me])
                .await?;
            tx.commit().await?;
            Ok::<u64, BeatError>(n)
        }
        .await;
        match result {
            Ok(n) => Ok(n),
            Err(BeatError::Postgres(e)) => Err(self.error(e)),
            Err(BeatError::Cluster(e)) => Err(e),
        }
    }
}

enum BeatError {
    Postgres(tokio_postgres::Error),
    Cluster(ClusterError),
}

impl From<tokio_postgres::Error> for BeatError {
    fn from(e: tokio_postgres::Error) -> Self {
        BeatError::Postgres(e)
    }
}
