//! Delivery from the durable outbox, grouped as Alertmanager groups: due rows are batched
//! per receiver and group key into one [`NotificationGroup`] message (see [`group`] for the
//! timing rules), muted rows are held back, and a group's rows are marked delivered in one
//! transaction only after the receiver acknowledged. A recoverable failure retries the group
//! with jittered exponential backoff; a permanent one dead-letters its rows. A receiver
//! outage or a restart delays notifications; it loses none, and a resend after a crash
//! carries the same idempotency keys.

pub mod alertmanager;
pub mod group;
pub mod slack;
#[cfg(test)]
mod tests_dispatch;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use jiff::{SignedDuration, Timestamp};

use crate::alerting::inhibit::InhibitRule;
use crate::alerting::silence::{Muter, Silence};
use crate::config::ReceiverConfig;
use crate::metrics::Metrics;
use crate::model::{AlertRecord, AlertState, Notification, NotificationGroup};
use crate::store::{SendRecord, Store, StoreError};
use alertmanager::AlertmanagerSender;
use group::PlannedSend;
use slack::SlackSender;
use webhook::WebhookSender;

/// What a receiver acknowledged for one group message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// An opaque reference the receiver wants back with the group's next message (Slack: the
    /// channel and `ts` of the first post, so later changes update it and reply in its thread).
    pub thread: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct SendError {
    pub recoverable: bool,
    /// Short fixed label: timeout, connect, http_5xx, http_4xx, rate_limited, ...
    pub reason: &'static str,
    pub message: String,
    /// The receiver asked to wait this long before the next attempt (e.g. `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl SendError {
    pub fn recoverable(reason: &'static str, message: impl Into<String>) -> Self {
        SendError {
            recoverable: true,
            reason,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::permanent_with_reason("permanent", message)
    }
    /// A permanent failure with a more precise label (e.g. Slack's `invalid_auth`).
    pub fn permanent_with_reason(reason: &'static str, message: impl Into<String>) -> Self {
        SendError {
            recoverable: false,
            reason,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn with_retry_after(mut self, wait: Option<Duration>) -> Self {
        self.retry_after = wait;
        self
    }
}

enum Sender {
    Webhook(WebhookSender),
    Alertmanager(AlertmanagerSender),
    Slack(SlackSender),
    #[cfg(test)]
    Fake(Arc<tests_dispatch::FakeReceiver>),
}

impl Sender {
    async fn send(
        &self,
        group: &NotificationGroup,
        thread: Option<&str>,
    ) -> Result<Delivery, SendError> {
        match self {
            Sender::Webhook(w) => w.send(group, thread).await,
            Sender::Alertmanager(a) => a.send(group, thread).await,
            Sender::Slack(s) => s.send(group, thread).await,
            #[cfg(test)]
            Sender::Fake(f) => f.send(group, thread),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// Wait before attempt number `attempts + 1` (jittered, capped).
    pub fn backoff(&self, attempts: u32) -> Duration {
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.min_backoff)
            .with_max_delay(self.max_backoff)
            .without_max_times()
            .build()
            .nth(attempts as usize)
            .unwrap_or(self.max_backoff)
    }
}

/// Whether this process may deliver now.
pub type DeliveryGate = Arc<dyn Fn() -> bool + Send + Sync>;

const UNKNOWN_RECEIVER: &str = "unknown_receiver";

/// Open rows read per pass: far more than a storm produces between two passes.
const MAX_OPEN_ROWS: usize = 20_000;

pub struct Dispatcher {
    store: Arc<dyn Store>,
    senders: HashMap<String, Sender>,
    metrics: Arc<Metrics>,
    policy: RetryPolicy,
    inhibit_rules: Vec<InhibitRule>,
    /// Asked before every pass and every send: in a cluster only the holder of the outbox
    /// lease delivers, so two replicas never send the same group.
    gate: Option<DeliveryGate>,
    /// Test hook: stop after a send was acknowledged and before it is recorded, as a
    /// crash would.
    #[cfg(test)]
    crash_after_send: std::sync::atomic::AtomicBool,
}

/// What one pass over the outbox did (counts of outbox rows, and messages sent).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassStats {
    pub delivered: usize,
    pub failed: usize,
    pub dead: usize,
    pub suppressed: usize,
    /// Group messages acknowledged, repeats included.
    pub messages: usize,
}

impl Dispatcher {
    pub fn new(
        receivers: &[ReceiverConfig],
        inhibit_rules: Vec<InhibitRule>,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        policy: RetryPolicy,
    ) -> Result<Self, SendError> {
        let mut senders = HashMap::new();
        for r in receivers {
            let sender = match r {
                ReceiverConfig::Webhook(w) => Sender::Webhook(WebhookSender::new(w.clone())?),
                ReceiverConfig::Alertmanager(a) => Sender::Alertmanager(
                    AlertmanagerSender::new(a.clone())?.with_metrics(metrics.clone()),
                ),
                ReceiverConfig::Slack(s) => Sender::Slack(SlackSender::new(s.clone())?),
            };
            senders.insert(r.name().to_string(), sender);
        }
        Ok(Dispatcher {
            store,
            senders,
            metrics,
            policy,
            inhibit_rules,
            gate: None,
            #[cfg(test)]
            crash_after_send: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Delivers only while `gate` says so (checked before each pass and each send).
    pub fn with_gate(mut self, gate: DeliveryGate) -> Self {
        self.gate = Some(gate);
        self
    }

    fn may_deliver(&self) -> bool {
        self.gate.as_ref().is_none_or(|gate| gate())
    }

    /// Delivers everything due now (wall clock).
    pub async fn deliver_due(&self) -> Result<PassStats, StoreError> {
        self.deliver_due_at(Timestamp::now()).await
    }

    /// One pass at `now`: mute, group, send what is due, record each send as one transaction.
    pub async fn deliver_due_at(&self, now: Timestamp) -> Result<PassStats, StoreError> {
        let mut stats = PassStats::default();
        // Another replica delivers; this one neither sends nor changes rows.
        if !self.may_deliver() {
            return Ok(stats);
        }
        let rows = self.store.open_outbox(MAX_OPEN_ROWS)?;
        let groups = self.store.load_groups()?;
        // Inhibition needs the firing alerts, and group members are checked against them;
        // skip reading them when neither applies.
        let alerts = if self.inhibit_rules.is_empty() && groups.is_empty() {
            Vec::new()
        } else {
            self.store.load_alerts()?
        };
        let firing: HashMap<&str, Timestamp> = alerts
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .filter_map(|a| Some((a.fingerprint.as_str(), a.fired_at?)))
            .collect();
        let muter = self.muter(&alerts, now)?;
        let plan = group::plan(
            &rows,
            &groups,
            &|fp, labels| muter.mutes(fp, labels),
            // A member is current while its episode (the firing it was sent for) goes on.
            &|m| firing.get(m.fingerprint.as_str()) == Some(&m.starts_at),
            now,
        );
        if !plan.changes.is_empty() {
            self.store.change_rows(&plan.changes, now)?;
        }
        for (receiver, key) in &plan.forget {
            self.store.record_send(&SendRecord {
                receiver: receiver.clone(),
                key: key.clone(),
                group: None,
                delivered: Vec::new(),
                failed: Vec::new(),
                dead: Vec::new(),
                error: None,
                at: now,
            })?;
            tracing::info!(receiver = %receiver, group = %key, "Forgot a notification group with nothing left in it.");
        }
        for (receiver, outcome) in &plan.suppressed {
            self.metrics.notifications(receiver, outcome, 1);
            stats.suppressed += 1;
        }
        for change in &plan.changes {
            tracing::info!(row = change.id, state = change.state.as_str(), reason = ?change.note,
                "Notification held back or released.");
        }
        for send in &plan.sends {
            // The lease may have lapsed during a slow send: the next holder sends the rest.
            if !self.may_deliver() {
                break;
            }
            self.deliver(send, &rows, now, &mut stats).await?;
        }
        self.refresh_gauges(now, plan.waiting_groups, muter.active_silences())?;
        Ok(stats)
    }

    fn muter(&self, alerts: &[AlertRecord], now: Timestamp) -> Result<Muter, StoreError> {
        let silences = self
            .store
            .silences()?
            .iter()
            .filter_map(|row| match Silence::from_row(row) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(error = %e, "Ignoring an unreadable silence.");
                    None
                }
            })
            .collect();
        Ok(Muter::new(silences, &self.inhibit_rules, alerts, now))
    }

    async fn deliver(
        &self,
        send: &PlannedSend,
        rows: &[crate::store::OutboxEntry],
        now: Timestamp,
        stats: &mut PassStats,
    ) -> Result<(), StoreError> {
        let receiver = send.group.receiver.as_str();
        let ids: std::collections::HashSet<i64> = send.rows.iter().copied().collect();
        let sent_rows: Vec<&Notification> = rows
            .iter()
            .filter(|r| ids.contains(&r.id))
            .map(|r| &r.notification)
            .collect();
        let key = send.group.idempotency_key();
        let result = match self.senders.get(receiver) {
            Some(sender) => {
                let started = Instant::now();
                let thread = send.previous.as_ref().and_then(|p| p.thread.as_deref());
                let result = sender.send(&send.group, thread).await;
                self.metrics
                    .notification_send(receiver, started.elapsed().as_secs_f64());
                result
            }
            None => Err(SendError {
                recoverable: false,
                reason: UNKNOWN_RECEIVER,
                message: format!("receiver {receiver:?} is not configured"),
                retry_after: None,
            }),
        };
        match result {
            Ok(delivery) => {
                #[cfg(test)]
                if self
                    .crash_after_send
                    .load(std::sync::atomic::Ordering::SeqCst)
                {
                    return Err(StoreError::Poisoned);
                }
                self.store.record_send(&SendRecord {
                    receiver: receiver.to_string(),
                    key: send.group.key.clone(),
                    group: group::after_delivery(send, &sent_rows, delivery.thread, now),
                    delivered: send.rows.clone(),
                    failed: Vec::new(),
                    dead: Vec::new(),
                    error: None,
                    at: now,
                })?;
                self.metrics
                    .notifications(receiver, "delivered", send.rows.len() as u64);
                stats.delivered += send.rows.len();
                stats.messages += 1;
                tracing::info!(receiver, group = %send.group.key, key = %key, alerts = send.group.alerts.len(),
                    delivered = send.rows.len(), repeat = send.repeat, status = send.group.status().as_str(),
                    "Notification group delivered.");
            }
            Err(e) => {
                self.metrics.notification_failure(receiver, e.reason);
                let error = e.to_string();
                let attempts = send.previous.as_ref().map_or(0, |p| p.attempts);
                let (failed, dead, next_attempt) = if e.recoverable {
                    let wait = self
                        .policy
                        .backoff(attempts)
                        .max(e.retry_after.unwrap_or_default());
                    let next = now
                        + SignedDuration::try_from(wait).unwrap_or(SignedDuration::from_secs(300));
                    (send.rows.clone(), Vec::new(), Some(next))
                } else if send.repeat {
                    // Nothing to dead-letter: try the reminder again at the next repeat.
                    let next = now
                        + SignedDuration::from_millis(
                            i64::try_from(send.settings.repeat_interval_ms).unwrap_or(i64::MAX),
                        );
                    (Vec::new(), Vec::new(), Some(next))
                } else {
                    (Vec::new(), send.rows.clone(), None)
                };
                // A receiver no longer configured keeps no group state.
                let group = if e.reason == UNKNOWN_RECEIVER {
                    None
                } else {
                    group::after_failure(send, &error, next_attempt)
                };
                self.store.record_send(&SendRecord {
                    receiver: receiver.to_string(),
                    key: send.group.key.clone(),
                    group,
                    delivered: Vec::new(),
                    failed: failed.clone(),
                    dead: dead.clone(),
                    error: Some(error.clone()),
                    at: now,
                })?;
                self.metrics
                    .notifications(receiver, "failed", failed.len() as u64);
                self.metrics
                    .notifications(receiver, "dead", dead.len() as u64);
                stats.failed += failed.len();
                stats.dead += dead.len();
                if e.recoverable {
                    tracing::warn!(receiver, group = %send.group.key, key = %key, attempt = attempts + 1,
                        retry_at = ?next_attempt, error = %e, "Notification delivery failed.");
                } else {
                    tracing::error!(receiver, group = %send.group.key, key = %key, dead = dead.len(),
                        error = %e, "Notification refused for good; not retried.");
                }
            }
        }
        Ok(())
    }

    fn refresh_gauges(
        &self,
        now: Timestamp,
        waiting_groups: usize,
        active_silences: usize,
    ) -> Result<(), StoreError> {
        let s = self.store.outbox_stats()?;
        let age = s
            .oldest_pending
            .map(|t| now.duration_since(t).as_secs_f64().max(0.0))
            .unwrap_or(0.0);
        self.metrics.set_outbox(s.pending, age);
        self.metrics.set_groups_waiting(waiting_groups);
        self.metrics.set_silences_active(active_silences);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        };
        assert!(p.backoff(0) >= Duration::from_secs(1) && p.backoff(0) <= Duration::from_secs(2));
        assert!(p.backoff(3) >= Duration::from_secs(8));
        assert!(
            p.backoff(30) <= Duration::from_secs(120),
            "capped (jitter may add up to one step)"
        );
    }
}
