//! The daemon: pollers → store → evaluator → alerting → outbox dispatcher, plus the HTTP
//! server, all stopped by one shutdown signal. Only this module reads the clock.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::alerting::links::LinkBuilder;
use crate::alerting::{AlertEvent, Alerting, Change, Routes};
use crate::cluster::{Cluster, ClusterError, HeldAccounts, Membership};
use crate::config::{Config, ReceiverConfig, StoreSettings};
use crate::eval::Evaluator;
use crate::ingest::ZeroGuard;
use crate::metrics::Metrics;
use crate::model::{Clock, Observation};
use crate::notify::alertmanager::{self, AlertmanagerSender, Resender};
use crate::notify::{Dispatcher, RetryPolicy, SendError};
use crate::server::{self, EvalView, ServerState};
use crate::sources::{self, BillingSource, PollError, PollResult, poll_target};
use crate::store::{self, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("source: {0}")]
    Source(#[from] PollError),
    #[error("receiver: {0}")]
    Receiver(#[from] SendError),
    #[error("server: {0}")]
    Server(#[from] std::io::Error),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// Counters for the end-of-run summary.
#[derive(Debug, Default)]
pub struct Totals {
    pub polls_ok: AtomicU64,
    pub polls_failed: AtomicU64,
    pub evaluations: AtomicU64,
    pub fired: AtomicU64,
    pub resolved: AtomicU64,
    pub delivered: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How often the outbox is checked for due retries (real time).
    pub dispatch_interval: Duration,
    pub retry: RetryPolicy,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            dispatch_interval: Duration::from_secs(1),
            retry: RetryPolicy::default(),
        }
    }
}

pub struct Runtime {
    config: Config,
    clock: Clock,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    totals: Arc<Totals>,
}

impl Runtime {
    pub fn open(config: Config, clock: Clock) -> Result<Self, RuntimeError> {
        let store = store::open(&config.store)?;
        Ok(Runtime {
            config,
            clock,
            store,
            metrics: Arc::new(Metrics::new()),
            totals: Arc::new(Totals::default()),
        })
    }

    pub fn totals(&self) -> Arc<Totals> {
        self.totals.clone()
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Runs until `shutdown` turns true. Alert changes are also sent to `events`, if given.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: watch::Receiver<bool>,
        events: Option<mpsc::UnboundedSender<AlertEvent>>,
        options: RunOptions,
    ) -> Result<(), RuntimeError> {
        let ready = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();

        // With PostgreSQL, replicas split the work: join before polling, so this replica
        // starts with its share and never polls what another one holds.
        let mut built = Vec::new();
        if let Some(settings) = &self.config.cluster {
            crate::sources::http::identify_replica(&settings.replica);
        }
        for settings in &self.config.sources {
            built.push(sources::build(settings)?);
        }
        let membership = match (&self.config.cluster, &self.config.store) {
            (Some(settings), StoreSettings::Postgres { url }) => {
                let poll_keys = built
                    .iter()
                    .flat_map(|s| {
                        s.targets()
                            .into_iter()
                            .map(|t| crate::cluster::poll_key(s.name(), &t))
                    })
                    .collect();
                let cluster =
                    Cluster::join(settings, url.expose(), poll_keys, self.metrics.clone()).await?;
                let membership = cluster.membership();
                tasks.spawn(cluster.run(shutdown.clone()));
                Some(membership)
            }
            _ => None,
        };
        let shared = Arc::new(Shared {
            membership: membership.clone(),
            clock: self.clock.clone(),
            max_series_per_source: self.config.max_series_per_source,
            zero_guard: ZeroGuard::new(self.config.confirm_zero_polls),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            totals: self.totals.clone(),
            evaluate_now: Notify::new(),
            dispatch_now: Notify::new(),
        });

        let status = Arc::new(std::sync::RwLock::new(EvalView::default()));
        let app = server::router(ServerState {
            metrics: self.metrics.clone(),
            ready: ready.clone(),
            status: status.clone(),
            store: self.store.clone(),
            inhibit_rules: Arc::new(self.config.inhibit_rules.clone()),
            api_token: self.config.api_token.clone(),
            pages: Arc::new(crate::web::PageContext::new(
                &self.config,
                self.clock.clone(),
            )),
            cluster: membership.clone(),
        });
        let mut server_stop = shutdown.clone();
        tasks.spawn(async move {
            let stop = async move {
                let _ = server_stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "HTTP server failed.");
            }
        });

        for source in built {
            tasks.spawn(poll_loop(source, shared.clone(), shutdown.clone()));
        }

        let links = LinkBuilder::new(self.config.links.clone());
        let mut alerting = Alerting::restore(self.store.as_ref(), self.config.routes.clone())?
            .with_links(links.clone());
        let rule_names = self.config.rules.iter().map(|r| r.name());
        for event in alerting.retire_removed_rules(
            rule_names,
            self.clock.now(),
            Timestamp::now(),
            self.store.as_ref(),
        )? {
            tracing::info!(rule = %event.alert.rule, fingerprint = %event.alert.fingerprint, "Resolved an alert of a removed rule.");
        }
        let evaluation = Evaluation {
            evaluator: Evaluator::with_threads(
                self.config.rules.clone(),
                self.config.evaluation_threads,
            ),
            alerting,
            interval: self.config.evaluation_interval,
            routes: self.config.routes.clone(),
            links: links.clone(),
            events,
            ready,
            status,
        };
        tasks.spawn(evaluate_loop(evaluation, shared.clone(), shutdown.clone()));

        // Firing alerts are re-sent to each Alertmanager receiver so their `endsAt` moves on.
        for receiver in &self.config.receivers {
            if let ReceiverConfig::Alertmanager(am) = receiver {
                let sender =
                    AlertmanagerSender::new(am.clone())?.with_metrics(self.metrics.clone());
                // Only the alerts the routing tree sends to this receiver.
                let routes = self.config.routes.clone();
                let name = am.name.clone();
                let routed: alertmanager::AlertFilter = Arc::new(move |labels| {
                    routes
                        .destinations(labels)
                        .iter()
                        .any(|d| d.receiver == name)
                });
                let resender =
                    Resender::new(sender, self.store.clone(), routed, self.metrics.clone())
                        .with_links(links.clone());
                tasks.spawn(resender.run(shutdown.clone()));
            }
        }

        let mut dispatcher = Dispatcher::new(
            &self.config.receivers,
            self.config.inhibit_rules.clone(),
            self.store.clone(),
            self.metrics.clone(),
            options.retry,
        )?;
        if let Some(m) = &membership {
            let m = m.clone();
            dispatcher = dispatcher.with_gate(Arc::new(move || m.may_deliver()));
        }
        tasks.spawn(dispatch_loop(
            dispatcher,
            options.dispatch_interval,
            shared,
            shutdown,
        ));

        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                tracing::error!(error = %e, "A pipeline task ended abnormally.");
            }
        }
        Ok(())
    }
}

/// What every pipeline task shares.
struct Shared {
    /// In a cluster: what this replica holds. `None`: everything (SQLite, one process).
    membership: Option<Arc<Membership>>,
    clock: Clock,
    max_series_per_source: usize,
    zero_guard: ZeroGuard,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    totals: Arc<Totals>,
    evaluate_now: Notify,
    dispatch_now: Notify,
}

impl Shared {
    /// Drops the observations of new series beyond the source's series limit; series that
    /// exist always keep updating. Refusals are counted and logged, never silent.
    fn within_series_limit(
        &self,
        source: &str,
        observations: Vec<Observation>,
    ) -> Vec<Observation> {
        let mut seen = HashSet::new();
        let mut unknown = Vec::new();
        for o in &observations {
            let canonical = o.key.canonical();
            if seen.insert(canonical.clone()) {
                match self.store.has_series(&o.key) {
                    Ok(true) => {}
                    Ok(false) => unknown.push(canonical),
                    // The write below reports the store's trouble.
                    Err(_) => return observations,
                }
            }
        }
        if unknown.is_empty() {
            return observations;
        }
        let existing = match self.store.series_count(source) {
            Ok(n) => n,
            Err(_) => return observations,
        };
        let room = self.max_series_per_source.saturating_sub(existing);
        if unknown.len() <= room {
            return observations;
        }
        let refused: HashSet<String> = unknown.split_off(room).into_iter().collect();
        let (kept, dropped): (Vec<Observation>, Vec<Observation>) = observations
            .into_iter()
            .partition(|o| !refused.contains(&o.key.canonical()));
        self.metrics
            .observations_over_series_limit(source, dropped.len());
        tracing::error!(
            source,
            series_now = existing,
            limit = self.max_series_per_source,
            refused_series = refused.len(),
            refused_observations = dropped.len(),
            "Source reached its series limit; observations of new series were not stored. Raise limits.max_series_per_source if this growth is expected."
        );
        kept
    }

    /// Stores one poll's observations (all or nothing) and updates metrics.
    fn record(&self, source: &str, polled: PollResult) {
        match polled.result {
            Ok(observations) => {
                self.totals.polls_ok.fetch_add(1, Ordering::Relaxed);
                let observations = self.within_series_limit(source, observations);
                let screened = self.zero_guard.screen(self.store.as_ref(), observations);
                self.metrics.zeros_screened(
                    source,
                    screened.held,
                    screened.discarded,
                    screened.confirmed,
                );
                let observations = screened.accepted;
                match self.store.put_observations(&observations) {
                    Ok(stats) => {
                        self.metrics.observed(&observations);
                        self.metrics.observations_written(
                            source,
                            stats.inserted,
                            stats.extended,
                            stats.unchanged,
                        );
                    }
                    Err(e) => {
                        self.metrics
                            .observations_rejected(source, observations.len());
                        tracing::error!(source, account = %polled.target, request_id = %polled.request_id,
                            error = %e, "Storing observations failed; nothing from this poll was written.");
                    }
                }
            }
            // Already logged with its request id and counted by reason.
            Err(_) => {
                self.totals.polls_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.metrics.refresh_data_lag(self.clock.now());
    }
}

/// `interval` ± 10 %, so many sources and replicas do not poll in lockstep.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::random_range(0.9..1.1))
}

impl Shared {
    /// Whether this replica polls `target` now (always, outside a cluster).
    fn may_poll(&self, source: &str, target: &str) -> bool {
        self.membership
            .as_ref()
            .is_none_or(|m| m.may_poll(source, target))
    }
}

/// Polls every target of a source this replica holds each interval, at most `concurrency`
/// at a time. Targets it gains between rounds are polled as soon as it gains them, so a
/// takeover does not wait a whole interval.
async fn poll_loop(
    source: Arc<dyn BillingSource>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _participant = shared.clock.participate();
    let limit = Arc::new(Semaphore::new(source.concurrency().max(1)));
    let mut assignment = shared.membership.as_ref().map(|m| m.subscribe());
    let held = |shared: &Shared| -> HashSet<String> {
        source
            .targets()
            .into_iter()
            .filter(|t| shared.may_poll(source.name(), t))
            .collect()
    };
    loop {
        let mut polled = held(&shared);
        if poll_round(&source, &shared, &limit, polled.clone(), &mut shutdown).await {
            return;
        }
        shared.evaluate_now.notify_one();
        let pause = shared.clock.sleep(jittered(source.interval()));
        tokio::pin!(pause);
        loop {
            let gained = async {
                match assignment.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let changed = tokio::select! {
                _ = &mut pause => break,
                _ = shutdown.wait_for(|s| *s) => return,
                ok = gained => ok,
            };
            if !changed {
                // The cluster task ended: keep to the interval.
                assignment = None;
                continue;
            }
            let new: HashSet<String> = held(&shared).difference(&polled).cloned().collect();
            if new.is_empty() {
                continue;
            }
            polled.extend(new.iter().cloned());
            if poll_round(&source, &shared, &limit, new, &mut shutdown).await {
                return;
            }
            shared.evaluate_now.notify_one();
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Polls `targets` (each checked again just before its poll); true when shutdown came.
async fn poll_round(
    source: &Arc<dyn BillingSource>,
    shared: &Arc<Shared>,
    limit: &Arc<Semaphore>,
    targets: HashSet<String>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut round = JoinSet::new();
    let mut targets: Vec<String> = targets.into_iter().collect();
    targets.sort();
    for target in targets {
        let (source, shared, limit) = (source.clone(), shared.clone(), limit.clone());
        round.spawn(async move {
            let Ok(_permit) = limit.acquire_owned().await else {
                return;
            };
            // The lease may have moved while this poll waited for its turn.
            if !shared.may_poll(source.name(), &target) {
                return;
            }
            let polled = poll_target(
                source.as_ref(),
                &target,
                shared.clock.now(),
                &shared.metrics,
            )
            .await;
            off_the_runtime(|| shared.record(source.name(), polled));
        });
    }
    tokio::select! {
        _ = async { while round.join_next().await.is_some() {} } => false,
        _ = shutdown.wait_for(|s| *s) => {
            round.abort_all();
            true
        }
    }
}

/// Runs store-bound work (a poll's write, an evaluation cycle: seconds at 200k series)
/// without stalling the other tasks of a multi-threaded runtime — the HTTP server answering
/// scrapes, the other pollers. A current-thread runtime (unit tests) runs it in place.
fn off_the_runtime<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// What the evaluation task owns.
struct Evaluation {
    evaluator: Evaluator,
    alerting: Alerting,
    interval: Duration,
    /// To reload alert state when this replica gains accounts.
    routes: Routes,
    links: LinkBuilder,
    /// Alert changes, for the demo's printer.
    events: Option<mpsc::UnboundedSender<AlertEvent>>,
    ready: Arc<AtomicBool>,
    status: Arc<std::sync::RwLock<EvalView>>,
}

async fn evaluate_loop(task: Evaluation, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let Evaluation {
        evaluator,
        mut alerting,
        interval,
        routes,
        links,
        events,
        ready,
        status,
    } = task;
    let Shared {
        membership,
        clock,
        store,
        metrics,
        totals,
        evaluate_now,
        dispatch_now,
        ..
    } = shared.as_ref();
    let _participant = clock.participate();
    let mut generation = membership.as_ref().map(|m| m.accounts().0);
    loop {
        let at = clock.now();
        // In a shard, evaluate only the held accounts. Their alert state was last written
        // by whoever held them before: reload it whenever the held set changes.
        let view: Arc<dyn Store> = match membership {
            None => store.clone(),
            Some(m) => {
                let (current, accounts) = m.accounts();
                m.evaluation_started(current);
                if generation != Some(current) {
                    match Alerting::restore(store.as_ref(), routes.clone()) {
                        Ok(restored) => {
                            alerting = restored.with_links(links.clone());
                            generation = Some(current);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "Reloading alert state for a new assignment failed; retried at the next evaluation.")
                        }
                    }
                }
                match accounts {
                    Some(accounts) => Arc::new(HeldAccounts::new(store.clone(), accounts)),
                    None => store.clone(),
                }
            }
        };
        let (evaluation, applied) = off_the_runtime(|| {
            let evaluation = evaluator.evaluate(view.as_ref(), at, metrics);
            let applied = alerting.apply(
                &evaluation.transitions,
                at,
                Timestamp::now(),
                store.as_ref(),
            );
            (evaluation, applied)
        });
        if let Some(m) = membership {
            m.evaluation_finished();
        }
        totals.evaluations.fetch_add(1, Ordering::Relaxed);
        match applied {
            Ok(changes) => {
                for event in changes {
                    metrics.alert_transition(&event.alert.rule, event.alert.state);
                    match event.change {
                        Change::Fired => {
                            totals.fired.fetch_add(1, Ordering::Relaxed);
                        }
                        Change::Resolved => {
                            totals.resolved.fetch_add(1, Ordering::Relaxed);
                        }
                        Change::Pending | Change::Dropped => {}
                    }
                    tracing::info!(rule = %event.alert.rule, fingerprint = %event.alert.fingerprint,
                        change = event.change.as_str(), summary = %event.alert.summary, "Alert changed.");
                    if let Some(tx) = &events {
                        let _ = tx.send(event);
                    }
                }
                dispatch_now.notify_one();
            }
            Err(e) => {
                tracing::error!(error = %e, "Saving alert state failed; will retry at the next evaluation.")
            }
        }
        metrics.set_alert_counts(&alerting.counts(evaluator.rule_names()));
        if let Ok(mut view) = status.write() {
            view.rules = evaluation.status;
            view.alerts = alerting.alerts().cloned().collect();
        }
        metrics.refresh_data_lag(at);
        ready.store(true, Ordering::Release);
        tokio::select! {
            _ = evaluate_now.notified() => {}
            _ = clock.sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

async fn dispatch_loop(
    dispatcher: Dispatcher,
    interval: Duration,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Shared {
        totals,
        dispatch_now,
        ..
    } = shared.as_ref();
    let mut pruned_at = std::time::Instant::now();
    loop {
        match dispatcher.deliver_due().await {
            Ok(stats) => {
                totals
                    .delivered
                    .fetch_add(stats.delivered as u64, Ordering::Relaxed);
            }
            Err(e) => tracing::error!(error = %e, "Reading the outbox failed."),
        }
        // Finished rows are kept a while for `/api/v1/notifications`, then dropped, so the
        // outbox does not grow with every notification ever sent.
        if pruned_at.elapsed() >= PRUNE_EVERY {
            pruned_at = std::time::Instant::now();
            let before = jiff::Timestamp::now() - OUTBOX_RETENTION;
            match shared.store.prune_outbox(before) {
                Ok(n) if n > 0 => tracing::info!(rows = n, "Pruned finished outbox rows."),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "Pruning the outbox failed; retried later."),
            }
        }
        tokio::select! {
            _ = dispatch_now.notified() => {}
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    // One last bounded pass, so a clean shutdown does not leave due notifications behind.
    match tokio::time::timeout(DRAIN_TIMEOUT, dispatcher.deliver_due()).await {
        Ok(Ok(stats)) => {
            totals
                .delivered
                .fetch_add(stats.delivered as u64, Ordering::Relaxed);
        }
        Ok(Err(e)) => tracing::error!(error = %e, "Reading the outbox failed."),
        Err(_) => tracing::warn!("Outbox drain timed out; the rest is delivered after restart."),
    }
}

const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long delivered, dead and skipped notifications stay in the outbox.
const OUTBOX_RETENTION: jiff::SignedDuration = jiff::SignedDuration::from_hours(14 * 24);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ObservationKind, SeriesKey, Unit};
    use crate::store::SqliteStore;

    fn traffic(series: &str, at: &str) -> Observation {
        Observation {
            key: SeriesKey::new("src", "acct", crate::model::series::TRAFFIC)
                .with_label("series", series),
            at: at.parse().unwrap(),
            period: None,
            value: rust_decimal::Decimal::ONE,
            kind: ObservationKind::Traffic,
            unit: Unit::Quantity("requests".into()),
        }
    }

    fn poll(observations: Vec<Observation>) -> PollResult {
        PollResult {
            source: "src".into(),
            target: "acct".into(),
            request_id: "r".into(),
            result: Ok(observations),
            seconds: 0.0,
        }
    }

    /// A source past its series limit: new series are refused and counted, the ones that exist
    /// keep updating, and nothing of another source is affected.
    #[test]
    fn new_series_beyond_the_limit_are_refused_and_counted() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        let metrics = Arc::new(Metrics::new());
        let shared = Shared {
            membership: None,
            clock: Clock::System,
            max_series_per_source: 2,
            zero_guard: ZeroGuard::new(3),
            store: store.clone(),
            metrics: metrics.clone(),
            totals: Arc::new(Totals::default()),
            evaluate_now: Notify::new(),
            dispatch_now: Notify::new(),
        };
        let at = "2026-11-25T10:00:00Z";
        shared.record(
            "src",
            poll(vec![traffic("a", at), traffic("b", at), traffic("c", at)]),
        );
        assert_eq!(store.series_count("src").unwrap(), 2);
        let c =
            SeriesKey::new("src", "acct", crate::model::series::TRAFFIC).with_label("series", "c");
        assert!(!store.has_series(&c).unwrap());
        let text = metrics.render();
        assert!(
            text.contains(r#"spendwatch_observations_written_total{result="over_series_limit",source="src"} 1"#),
            "{text}"
        );

        // Later polls: the two known series update; `c` is still refused.
        let later = "2026-11-25T11:00:00Z";
        shared.record(
            "src",
            poll(vec![
                traffic("a", later),
                traffic("b", later),
                traffic("c", later),
            ]),
        );
        let a =
            SeriesKey::new("src", "acct", crate::model::series::TRAFFIC).with_label("series", "a");
        assert_eq!(
            store.latest_point(&a).unwrap().unwrap().at,
            later.parse::<jiff::Timestamp>().unwrap()
        );
        assert_eq!(store.series_count("src").unwrap(), 2);
        assert!(metrics.render().contains(
            r#"spendwatch_observations_written_total{result="over_series_limit",source="src"} 2"#
        ));
    }
}
