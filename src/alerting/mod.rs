//! Alert state: inactive → pending → firing → resolved, keyed by a stable fingerprint of
//! the alert's labels, persisted with its notifications in one transaction.

pub mod inhibit;
pub mod links;
pub mod matcher;
pub mod route;
pub mod silence;
mod state;

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use sha2::{Digest, Sha256};

pub use matcher::Matcher;
pub use route::Routes;
pub use state::{Change, step};

use crate::model::{AlertRecord, AlertState, Notification, NotificationStatus, Transition};
use crate::store::{GroupSettings, Outgoing, Store, StoreError};

/// Stable across builds and platforms: SHA-256 over sorted `name 0xff value 0xff`.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0xff]);
        h.update(v.as_bytes());
        h.update([0xff]);
    }
    hex::encode(&h.finalize()[..8])
}

/// A state change worth telling a human about (the demo prints these).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    pub at: Timestamp,
    pub change: Change,
    pub alert: AlertRecord,
}

pub struct Alerting {
    alerts: HashMap<String, AlertRecord>,
    routes: Routes,
    links: links::LinkBuilder,
}

impl Alerting {
    /// Resumes from the alerts persisted in the store: a restart neither re-fires nor forgets.
    /// Each firing and resolution is enqueued once per receiver the routing tree picks.
    pub fn restore(store: &dyn Store, routes: Routes) -> Result<Self, StoreError> {
        let alerts = store
            .load_alerts()?
            .into_iter()
            .map(|a| (a.fingerprint.clone(), a))
            .collect();
        Ok(Alerting {
            alerts,
            routes,
            links: links::LinkBuilder::default(),
        })
    }

    /// Links (alert page, silence, dashboard, console) every notification carries.
    pub fn with_links(mut self, links: links::LinkBuilder) -> Self {
        self.links = links;
        self
    }

    pub fn alerts(&self) -> impl Iterator<Item = &AlertRecord> {
        self.alerts.values()
    }

    /// Counts per (rule, state) for the `spendwatch_alerts` gauge; every known rule appears.
    pub fn counts<'a>(
        &self,
        rules: impl Iterator<Item = &'a str>,
    ) -> Vec<(String, AlertState, i64)> {
        let mut out = Vec::new();
        for rule in rules {
            for state in [AlertState::Pending, AlertState::Firing] {
                let n = self
                    .alerts
                    .values()
                    .filter(|a| a.rule == rule && a.state == state)
                    .count();
                out.push((rule.to_string(), state, n as i64));
            }
        }
        out
    }

    /// Applies one evaluation's transitions at `at`. Each changed alert is saved together
    /// with the notifications it causes (`enqueued_at` is the outbox's wall-clock time).
    pub fn apply(
        &mut self,
        transitions: &[Transition],
        at: Timestamp,
        enqueued_at: Timestamp,
        store: &dyn Store,
    ) -> Result<Vec<AlertEvent>, StoreError> {
        let mut events = Vec::new();
        for t in transitions {
            let fp = fingerprint(&t.labels);
            let previous = self.alerts.get(&fp);
            let (next, change) = step(previous, &fp, t, at);
            if previous == Some(&next) {
                continue;
            }
            let notifications = match change {
                Some(Change::Fired) => self.notifications(&next, NotificationStatus::Firing),
                Some(Change::Resolved) => self.notifications(&next, NotificationStatus::Resolved),
                Some(Change::Pending) | Some(Change::Dropped) | None => Vec::new(),
            };
            store.save_alert(&next, &notifications, enqueued_at)?;
            if let Some(change) = change {
                events.push(AlertEvent {
                    at,
                    change,
                    alert: next.clone(),
                });
            }
            self.alerts.insert(fp, next);
        }
        Ok(events)
    }

    /// Resolves firing alerts of rules no longer in the config (and forgets pending ones),
    /// so removing a rule does not leave a page open forever.
    pub fn retire_removed_rules<'a>(
        &mut self,
        rules: impl Iterator<Item = &'a str>,
        at: Timestamp,
        enqueued_at: Timestamp,
        store: &dyn Store,
    ) -> Result<Vec<AlertEvent>, StoreError> {
        let known: std::collections::BTreeSet<&str> = rules.collect();
        let orphans: Vec<String> = self
            .alerts
            .values()
            .filter(|a| !known.contains(a.rule.as_str()))
            .filter(|a| matches!(a.state, AlertState::Firing | AlertState::Pending))
            .map(|a| a.fingerprint.clone())
            .collect();
        let mut events = Vec::new();
        for fp in orphans {
            let Some(mut alert) = self.alerts.get(&fp).cloned() else {
                continue;
            };
            let was_firing = alert.state == AlertState::Firing;
            alert.summary = format!("Rule {} was removed from the configuration.", alert.rule);
            alert.active_at = None;
            alert.keep_firing_since = None;
            let notifications = if was_firing {
                alert.state = AlertState::Resolved;
                alert.resolved_at = Some(at);
                self.notifications(&alert, NotificationStatus::Resolved)
            } else {
                alert.state = AlertState::Inactive;
                Vec::new()
            };
            store.save_alert(&alert, &notifications, enqueued_at)?;
            if was_firing {
                events.push(AlertEvent {
                    at,
                    change: Change::Resolved,
                    alert: alert.clone(),
                });
            }
            self.alerts.insert(fp, alert);
        }
        Ok(events)
    }

    fn notifications(&self, alert: &AlertRecord, status: NotificationStatus) -> Vec<Outgoing> {
        let Some(starts_at) = alert.fired_at else {
            return Vec::new();
        };
        self.routes
            .destinations(&alert.labels)
            .into_iter()
            .map(|d| {
                let n = notification(alert, status, starts_at, &d.receiver, &self.links);
                (n, d)
            })
            .map(|(notification, d)| Outgoing {
                notification,
                group: GroupSettings {
                    key: d.group_key,
                    route: d.route,
                    labels: d.group_labels,
                    group_wait_ms: millis(d.group_wait),
                    group_interval_ms: millis(d.group_interval),
                    repeat_interval_ms: millis(d.repeat_interval),
                },
            })
            .collect()
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A notification of one alert transition for one receiver; `None` for an alert that never
/// fired. Alerting enqueues these; the Alertmanager resender rebuilds the firing ones.
pub fn notification_for(
    alert: &AlertRecord,
    status: NotificationStatus,
    receiver: &str,
    links: &links::LinkBuilder,
) -> Option<Notification> {
    Some(notification(
        alert,
        status,
        alert.fired_at?,
        receiver,
        links,
    ))
}

fn notification(
    alert: &AlertRecord,
    status: NotificationStatus,
    starts_at: Timestamp,
    receiver: &str,
    links: &links::LinkBuilder,
) -> Notification {
    Notification {
        // Deterministic: the same transition always yields the same key.
        idempotency_key: format!(
            "{}-{}-{}-{}",
            alert.fingerprint,
            alert.seq,
            status.as_str(),
            receiver
        ),
        receiver: receiver.to_string(),
        status,
        fingerprint: alert.fingerprint.clone(),
        rule: alert.rule.clone(),
        labels: alert.labels.clone(),
        annotations: alert.annotations.clone(),
        value: alert.value.clone(),
        threshold: alert.threshold.clone(),
        starts_at,
        ends_at: match status {
            NotificationStatus::Firing => None,
            NotificationStatus::Resolved => alert.resolved_at,
        },
        contributors: alert.contributors.clone(),
        links: links.for_alert(alert),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Finding, Outcome, Severity, Unit};
    use crate::store::SqliteStore;
    use jiff::SignedDuration;
    use rust_decimal::Decimal;

    fn breach(rule: &str) -> Transition {
        Transition {
            rule: rule.into(),
            labels: BTreeMap::from([("alertname".to_string(), rule.to_string())]),
            annotations: BTreeMap::new(),
            severity: Severity::Critical,
            hold: SignedDuration::ZERO,
            keep_firing_for: SignedDuration::ZERO,
            data_time: Timestamp::UNIX_EPOCH,
            outcome: Outcome::Breach(Finding {
                value: Decimal::from(2),
                threshold: Decimal::ONE,
                unit: Unit::Quantity("x".into()),
                summary: "over".into(),
                contributors: Vec::new(),
            }),
        }
    }

    #[test]
    fn firing_and_resolution_enqueue_one_notification_per_receiver() {
        let store = SqliteStore::open_in_memory().unwrap();
        let mut alerting =
            Alerting::restore(&store, Routes::default_for(&["a".into(), "b".into()])).unwrap();
        let t0 = Timestamp::UNIX_EPOCH;
        let events = alerting.apply(&[breach("r")], t0, t0, &store).unwrap();
        assert_eq!(events.len(), 1);
        // The same breach again changes nothing and enqueues nothing.
        assert!(
            alerting
                .apply(&[breach("r")], t0, t0, &store)
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.outbox_stats().unwrap().pending, 2);

        // A restart restores the firing alert; a removed rule resolves it once.
        let mut restored =
            Alerting::restore(&store, Routes::default_for(&["a".into(), "b".into()])).unwrap();
        assert!(
            restored
                .apply(&[breach("r")], t0, t0, &store)
                .unwrap()
                .is_empty()
        );
        let retired = restored
            .retire_removed_rules(["other"].into_iter(), t0, t0, &store)
            .unwrap();
        assert_eq!(retired.len(), 1);
        assert_eq!(retired[0].change, Change::Resolved);
        assert!(
            restored
                .retire_removed_rules(["other"].into_iter(), t0, t0, &store)
                .unwrap()
                .is_empty()
        );
        let due = store.open_outbox(10).unwrap();
        assert_eq!(due.len(), 4);
        assert_eq!(
            due.iter()
                .filter(|e| e.notification.status == NotificationStatus::Resolved)
                .count(),
            2
        );
    }

    #[test]
    fn fingerprint_is_stable_and_order_free() {
        let mut a = BTreeMap::new();
        a.insert("alertname".to_string(), "budget".to_string());
        a.insert("account".to_string(), "020-1".to_string());
        // Pinned: a change here would orphan stored alerts and idempotency keys.
        assert_eq!(fingerprint(&a), "e3d6a586f9014a3d");
        let mut b = a.clone();
        b.insert("account".to_string(), "020-2".to_string());
        assert_ne!(fingerprint(&a), fingerprint(&b));
        // "a=bc" and "ab=c" must differ.
        let x: BTreeMap<_, _> = [("a".to_string(), "bc".to_string())].into();
        let y: BTreeMap<_, _> = [("ab".to_string(), "c".to_string())].into();
        assert_ne!(fingerprint(&x), fingerprint(&y));
    }
}
