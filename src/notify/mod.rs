//! Delivery from the durable outbox: read due rows, send, mark delivered only after a 2xx,
//! otherwise schedule the next attempt with jittered exponential backoff. A receiver outage
//! or a restart delays notifications; it loses none and sends none twice (idempotency keys).

pub mod alertmanager;
pub mod slack;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use jiff::{SignedDuration, Timestamp};

use crate::config::ReceiverConfig;
use crate::metrics::Metrics;
use crate::model::{Notification, NotificationGroup};
use crate::store::{Store, StoreError};
use alertmanager::AlertmanagerSender;
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
    /// How long the receiver asked us to wait (e.g. a 429's `Retry-After`), if it said.
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
}

/// Until the grouping dispatcher lands: one notification is a group of one.
fn group_of_one(n: &Notification) -> NotificationGroup {
    NotificationGroup {
        receiver: n.receiver.clone(),
        key: n.fingerprint.clone(),
        labels: Default::default(),
        alerts: vec![n.clone()],
    }
}

impl Sender {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let group = group_of_one(n);
        match self {
            Sender::Webhook(w) => w.send(&group, None).await.map(drop),
            Sender::Alertmanager(a) => a.send(&group, None).await.map(drop),
            Sender::Slack(s) => s.send(&group, None).await.map(drop),
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

pub struct Dispatcher {
    store: Arc<dyn Store>,
    senders: HashMap<String, Sender>,
    metrics: Arc<Metrics>,
    policy: RetryPolicy,
}

/// What one pass over the outbox did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassStats {
    pub delivered: usize,
    pub failed: usize,
}

impl Dispatcher {
    pub fn new(
        receivers: &[ReceiverConfig],
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
        })
    }

    /// Delivers everything due now (wall clock). Receivers are tried one row at a time in
    /// order, so a notification's resolution never overtakes its firing.
    pub async fn deliver_due(&self) -> Result<PassStats, StoreError> {
        let mut stats = PassStats::default();
        let now = Timestamp::now();
        let due = self.store.due_notifications(now, 100)?;
        let mut blocked: Vec<(String, String)> = Vec::new();
        for entry in due {
            let n = &entry.notification;
            // After a failure, later rows for the same alert and receiver wait their turn.
            let lane = (n.fingerprint.clone(), n.receiver.clone());
            if blocked.contains(&lane) {
                continue;
            }
            let Some(sender) = self.senders.get(&n.receiver) else {
                let next = now + SignedDuration::from_secs(3600);
                self.store.mark_attempt_failed(
                    entry.id,
                    next,
                    &format!("receiver {:?} is not configured", n.receiver),
                )?;
                self.metrics
                    .notification_attempt(&n.receiver, "unknown_receiver", 0.0);
                stats.failed += 1;
                continue;
            };
            let started = Instant::now();
            let result = sender.send(n).await;
            let seconds = started.elapsed().as_secs_f64();
            match result {
                Ok(()) => {
                    self.store.mark_delivered(entry.id, Timestamp::now())?;
                    self.metrics
                        .notification_attempt(&n.receiver, "delivered", seconds);
                    tracing::info!(receiver = %n.receiver, key = %n.idempotency_key, status = n.status.as_str(), "Notification delivered.");
                    stats.delivered += 1;
                }
                Err(e) => {
                    let wait = self.policy.backoff(entry.attempts);
                    let next = Timestamp::now()
                        + SignedDuration::try_from(wait).unwrap_or(SignedDuration::from_secs(300));
                    self.store
                        .mark_attempt_failed(entry.id, next, &e.to_string())?;
                    self.metrics
                        .notification_attempt(&n.receiver, e.reason, seconds);
                    tracing::warn!(receiver = %n.receiver, key = %n.idempotency_key, attempt = entry.attempts + 1,
                        retry_in = ?wait, error = %e, "Notification delivery failed.");
                    blocked.push(lane);
                    stats.failed += 1;
                }
            }
        }
        self.refresh_gauges()?;
        Ok(stats)
    }

    pub fn refresh_gauges(&self) -> Result<(), StoreError> {
        let s = self.store.outbox_stats()?;
        let age = s
            .oldest_pending
            .map(|t| Timestamp::now().duration_since(t).as_secs_f64().max(0.0))
            .unwrap_or(0.0);
        self.metrics.set_outbox(s.pending, age);
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
