//! Several replicas on one PostgreSQL store: who polls which target, who evaluates which
//! account, and who delivers the outbox, decided by leases in PostgreSQL.
//!
//! Each replica heartbeats every `heartbeat`: it renews its leases, computes the wanted
//! assignment over the live replicas (rendezvous hashing, so a replica joining or leaving
//! moves only about 1/N of the keys), releases what it should no longer hold and takes what it
//! should hold once it is free or its lease expired. Times in the database are PostgreSQL's
//! `now()`, never a replica's clock; a replica trusts a lease locally for `lease` from the
//! start of the heartbeat that renewed it, so it stops polling before anyone may take over.
//!
//! Keys: `poll/{source}/{target}` (one per configured target), `eval/{account}` (one per
//! account in the store: rules that combine sources of an account are evaluated in one place)
//! and `outbox` (the one replica that delivers notifications). In `ha` mode only `outbox` is
//! leased: every replica polls and evaluates everything. SQLite runs none of this.

mod leases;
mod view;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

pub use view::HeldAccounts;

use crate::config::{ClusterMode, ClusterSettings};
use crate::metrics::Metrics;

/// The lease of the replica that delivers notifications.
pub const OUTBOX_KEY: &str = "outbox";

pub fn poll_key(source: &str, target: &str) -> String {
    format!("poll/{source}/{target}")
}

pub fn eval_key(account: &str) -> String {
    format!("eval/{account}")
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster: cannot reach PostgreSQL at {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("cluster: {0}")]
    Postgres(String),
}

/// Rendezvous (highest random weight) hashing: the replica whose hash with `key` is highest.
/// Every replica computes the same owner from the same live set, and removing one replica
/// moves only the keys it owned.
pub fn owner<'a>(key: &str, replicas: &'a [String]) -> Option<&'a str> {
    replicas
        .iter()
        .max_by_key(|r| {
            let mut h = Sha256::new();
            h.update(r.as_bytes());
            h.update([0xff]);
            h.update(key.as_bytes());
            let digest = h.finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&digest[..8]);
            (u64::from_be_bytes(first), r.as_str())
        })
        .map(String::as_str)
}

/// This replica's view of the assignment, as `/api/v1/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub replica: String,
    pub mode: &'static str,
    /// Replicas whose heartbeat is younger than the lease, this one included.
    pub live_replicas: Vec<String>,
    /// Targets (`source/target`) this replica polls.
    pub targets_held: usize,
    /// Accounts this replica evaluates.
    pub accounts_held: usize,
    pub delivers_notifications: bool,
    pub last_heartbeat: Option<Timestamp>,
    /// When this replica's leases expire unless renewed (PostgreSQL's clock).
    pub lease_expires_at: Option<Timestamp>,
    pub lease_seconds: f64,
    pub heartbeat_seconds: f64,
    pub last_error: Option<String>,
}

/// What the pipeline asks: may I poll this, evaluate that, deliver now?
pub struct Membership {
    replica: String,
    mode: ClusterMode,
    held: RwLock<Held>,
    /// Bumped whenever the held set changes; pollers wake to poll what they just got.
    changed: watch::Sender<u64>,
    /// The generation the evaluator is using now, or `IDLE`: an account is released only
    /// once no evaluation that still counts it as held is running.
    eval_in_use: AtomicU64,
}

const IDLE: u64 = u64::MAX;

#[derive(Debug, Clone)]
struct Held {
    generation: u64,
    keys: HashSet<String>,
    accounts: Arc<HashSet<String>>,
    /// Local deadline of the leases renewed by the last successful heartbeat.
    valid_until: Option<Instant>,
    status: ClusterStatus,
}

impl Membership {
    fn new(settings: &ClusterSettings) -> Self {
        Membership {
            replica: settings.replica.clone(),
            mode: settings.mode,
            held: RwLock::new(Held {
                generation: 0,
                keys: HashSet::new(),
                accounts: Arc::new(HashSet::new()),
                valid_until: None,
                status: ClusterStatus {
                    replica: settings.replica.clone(),
                    mode: settings.mode.as_str(),
                    live_replicas: Vec::new(),
                    targets_held: 0,
                    accounts_held: 0,
                    delivers_notifications: false,
                    last_heartbeat: None,
                    lease_expires_at: None,
                    lease_seconds: settings.lease.as_secs_f64(),
                    heartbeat_seconds: settings.heartbeat.as_secs_f64(),
                    last_error: None,
                },
            }),
            changed: watch::channel(0).0,
            eval_in_use: AtomicU64::new(IDLE),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Held> {
        self.held.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Whether this replica holds `key` now: leased to it and renewed within the lease.
    fn holds(&self, key: &str) -> bool {
        let held = self.read();
        held.valid_until.is_some_and(|t| Instant::now() < t) && held.keys.contains(key)
    }

    /// Checked before every poll: a target whose lease was lost or has lapsed is not polled.
    pub fn may_poll(&self, source: &str, target: &str) -> bool {
        match self.mode {
            ClusterMode::Ha => true,
            ClusterMode::Shard => self.holds(&poll_key(source, target)),
        }
    }

    /// Whether this replica delivers the outbox now (checked before each send).
    pub fn may_deliver(&self) -> bool {
        self.holds(OUTBOX_KEY)
    }

    /// The accounts to evaluate (`None`: all of them) and the generation they belong to.
    /// Call [`Membership::evaluation_started`] with that generation before evaluating.
    pub fn accounts(&self) -> (u64, Option<Arc<HashSet<String>>>) {
        let held = self.read();
        match self.mode {
            ClusterMode::Ha => (held.generation, None),
            ClusterMode::Shard => {
                let valid = held.valid_until.is_some_and(|t| Instant::now() < t);
                let accounts = if valid {
                    held.accounts.clone()
                } else {
                    Arc::new(HashSet::new())
                };
                (held.generation, Some(accounts))
            }
        }
    }

    pub fn evaluation_started(&self, generation: u64) {
        self.eval_in_use.store(generation, Ordering::SeqCst);
    }

    pub fn evaluation_finished(&self) {
        self.eval_in_use.store(IDLE, Ordering::SeqCst);
    }

    /// Resolves when the held set changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn status(&self) -> ClusterStatus {
        self.read().status.clone()
    }
}

/// The heartbeat task's state.
pub struct Cluster {
    settings: ClusterSettings,
    membership: Arc<Membership>,
    client: leases::LeaseClient,
    /// Every `poll/...` key of the config (the same on every replica).
    poll_keys: Vec<String>,
    metrics: Arc<Metrics>,
    /// Keys dropped locally but still leased, with the generation that dropped them.
    releasing: HashMap<String, u64>,
}

impl Cluster {
    /// Connects and runs the first heartbeat, so the pipeline starts with its share.
    pub async fn join(
        settings: &ClusterSettings,
        url: &str,
        poll_keys: Vec<String>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ClusterError> {
        let mut cluster = Cluster {
            settings: settings.clone(),
            membership: Arc::new(Membership::new(settings)),
            client: leases::LeaseClient::new(url, &settings.replica)?,
            poll_keys,
            metrics,
            releasing: HashMap::new(),
        };
        cluster.beat().await?;
        tracing::info!(replica = %settings.replica, mode = settings.mode.as_str(),
            status = ?cluster.membership.status(), "Joined the cluster.");
        Ok(cluster)
    }

    pub fn membership(&self) -> Arc<Membership> {
        self.membership.clone()
    }

    /// Heartbeats until `shutdown`, then gives every lease back so the others take over
    /// at their next heartbeat instead of after the lease time.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(self.settings.heartbeat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            if let Err(e) = self.beat().await {
                self.metrics.cluster_heartbeat_failed();
                tracing::warn!(replica = %self.settings.replica, error = %e,
                    "Cluster heartbeat failed; leases lapse unless the next one succeeds.");
                if let Ok(mut held) = self.membership.held.write() {
                    held.status.last_error = Some(e.to_string());
                }
            }
        }
        match self.client.leave(&self.settings.replica).await {
            Ok(n) => tracing::info!(released = n, "Left the cluster."),
            Err(e) => tracing::warn!(error = %e, "Leaving the cluster failed; leases expire."),
        }
    }

    async fn beat(&mut self) -> Result<(), ClusterError> {
        let started = Instant::now();
        let (generation, in_use) = {
            let held = self.membership.read();
            (
                held.generation,
                self.membership.eval_in_use.load(Ordering::SeqCst),
            )
        };
        // An account dropped at generation g may go once no evaluation of a generation
        // before g runs; a target or the outbox may go at once.
        let releasable = |key: &str, dropped: u64| {
            !key.starts_with("eval/") || in_use == IDLE || in_use >= dropped
        };
        let ready: Vec<String> = self
            .releasing
            .iter()
            .filter(|(k, g)| releasable(k, **g))
            .map(|(k, _)| k.clone())
            .collect();
        let mode = self.settings.mode;
        let poll_keys = &self.poll_keys;
        let me = self.settings.replica.as_str();
        let beat = self
            .client
            .beat(
                &self.settings.replica,
                mode,
                self.settings.lease,
                &ready,
                |live, accounts| {
                    let mut universe: Vec<String> = vec![OUTBOX_KEY.to_string()];
                    if mode == ClusterMode::Shard {
                        universe.extend(poll_keys.iter().cloned());
                        universe.extend(accounts.iter().map(|a| eval_key(a)));
                    }
                    universe
                        .into_iter()
                        .filter(|k| owner(k, live) == Some(me))
                        .collect()
                },
            )
            .await?;
        for key in &ready {
            self.releasing.remove(key);
        }
        self.metrics
            .cluster_lease_changes("acquired", beat.acquired);
        self.metrics
            .cluster_lease_changes("taken_over", beat.taken_over);
        self.metrics.cluster_lease_changes("released", ready.len());

        let mut keys: HashSet<String> = beat.owned.iter().cloned().collect();
        let previous = self.membership.read().keys.clone();
        let lost = previous
            .iter()
            .filter(|k| !keys.contains(*k) && !ready.contains(k))
            .count();
        self.metrics.cluster_lease_changes("lost", lost);
        if lost > 0 {
            tracing::warn!(
                lost,
                "Leases were taken by other replicas (this one missed its renewals)."
            );
        }
        // Owned but no longer wanted: stop using it now, give it back at a later heartbeat.
        let wanted: HashSet<&String> = beat.wanted.iter().collect();
        // Wanted again before it was given back (the live set flapped): keep it.
        self.releasing.retain(|k, _| !wanted.contains(k));
        let next_generation = generation + 1;
        for key in &beat.owned {
            if !wanted.contains(key) {
                keys.remove(key);
                self.releasing.entry(key.clone()).or_insert(next_generation);
            }
        }
        let changed = keys != previous;
        let accounts: HashSet<String> = keys
            .iter()
            .filter_map(|k| k.strip_prefix("eval/"))
            .map(str::to_string)
            .collect();
        let targets_held = match mode {
            ClusterMode::Shard => keys.iter().filter(|k| k.starts_with("poll/")).count(),
            ClusterMode::Ha => self.poll_keys.len(),
        };
        let delivers = keys.contains(OUTBOX_KEY);
        {
            let mut held = self
                .membership
                .held
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if changed {
                held.generation = next_generation;
            }
            held.status.live_replicas = beat.live.clone();
            held.status.targets_held = targets_held;
            held.status.accounts_held = match mode {
                ClusterMode::Shard => accounts.len(),
                ClusterMode::Ha => beat.accounts.len(),
            };
            held.status.delivers_notifications = delivers;
            held.status.last_heartbeat = Some(beat.now);
            held.status.lease_expires_at = Some(beat.expires);
            held.status.last_error = None;
            held.accounts = Arc::new(accounts);
            held.keys = keys;
            held.valid_until = Some(started + self.settings.lease);
            self.metrics.cluster_assignment(
                held.status.targets_held,
                held.status.accounts_held,
                delivers,
                beat.live.len(),
                beat.now,
            );
        }
        if changed {
            self.membership.changed.send_replace(next_generation);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("r{i}")).collect()
    }

    /// Each replica gets about 1/N of the keys, and removing one moves only its own keys.
    #[test]
    fn rendezvous_spreads_keys_and_moves_few() {
        let keys: Vec<String> = (0..3000)
            .map(|i| eval_key(&format!("030-{i:04}")))
            .collect();
        let three = replicas(3);
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for k in &keys {
            *counts.entry(owner(k, &three).unwrap()).or_default() += 1;
        }
        for (r, n) in &counts {
            assert!((850..=1150).contains(n), "{r} owns {n} of 3000");
        }
        let two: Vec<String> = vec!["r0".into(), "r2".into()];
        for k in &keys {
            let before = owner(k, &three).unwrap();
            let after = owner(k, &two).unwrap();
            if before != "r1" {
                assert_eq!(before, after, "{k} moved although its owner stayed");
            }
        }
        let four = replicas(4);
        let moved = keys
            .iter()
            .filter(|k| owner(k, &three) != owner(k, &four))
            .count();
        assert!(
            (600..=900).contains(&moved),
            "{moved} of 3000 moved to the 4th"
        );
        assert_eq!(owner("x", &[]), None);
    }
}
