//! Grouping decisions as a pure function of the open outbox rows, the stored group states,
//! the mutes in force and `now` — Alertmanager's aggregation groups and dedup stage:
//!
//! - a new group is sent `group_wait` after its first row became pending;
//! - a change to a group already sent goes out no sooner than `group_interval` after the
//!   last acknowledged send;
//! - a group with firing alerts and no change is sent again every `repeat_interval`;
//! - per alert and receiver only the oldest open row takes part, so a resolution never
//!   overtakes its firing;
//! - a firing row that a silence or inhibition mutes is held back (suppressed), released
//!   if the mute ends while the alert still fires, and skipped together with its resolution
//!   if the alert resolves first. Resolutions of alerts whose firing was sent are not muted:
//!   whoever saw the page should see it end.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};

use crate::alerting::silence::Mute;
use crate::model::{Notification, NotificationGroup, NotificationStatus};
use crate::store::{GroupSettings, GroupState, OutboxEntry, RowChange, RowState};

/// One group message to send now.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedSend {
    pub group: NotificationGroup,
    pub settings: GroupSettings,
    /// The rows this message delivers (none for a repeat).
    pub rows: Vec<i64>,
    pub previous: Option<GroupState>,
    pub repeat: bool,
    /// Members of the stored group whose episode is over without a row here (the alert
    /// moved to another group, or its rule went away): dropped from the group.
    pub stale: Vec<String>,
}

/// What one pass should do.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// Rows to suppress, release or skip before sending.
    pub changes: Vec<RowChange>,
    /// Rows newly suppressed: (receiver, metric outcome).
    pub suppressed: Vec<(String, &'static str)>,
    pub sends: Vec<PlannedSend>,
    /// Stored groups with nothing left in them: (receiver, key) to delete.
    pub forget: Vec<(String, String)>,
    /// Groups with changes that wait for `group_wait`, `group_interval` or a retry.
    pub waiting_groups: usize,
}

/// Whether an alert (fingerprint, labels) is muted now, and by what.
pub type MuteCheck<'a> = dyn Fn(&str, &BTreeMap<String, String>) -> Option<Mute> + 'a;

fn after(t: Timestamp, ms: u64) -> Timestamp {
    let d = SignedDuration::from_millis(i64::try_from(ms).unwrap_or(i64::MAX));
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// Decides what to send at `now`. `mutes` says whether an alert (fingerprint, labels) is
/// muted; `current` whether a member's episode still fires.
pub fn plan(
    rows: &[OutboxEntry],
    groups: &[GroupState],
    mutes: &MuteCheck,
    current: &dyn Fn(&Notification) -> bool,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();

    // Lanes: one alert for one receiver, oldest row first.
    let mut lanes: BTreeMap<(&str, &str), Vec<&OutboxEntry>> = BTreeMap::new();
    for row in rows {
        let n = &row.notification;
        lanes
            .entry((n.fingerprint.as_str(), n.receiver.as_str()))
            .or_default()
            .push(row);
    }
    for lane in lanes.values_mut() {
        lane.sort_by_key(|r| r.id);
    }

    // The head of each lane that may be sent now, with the time it became pending.
    let mut eligible: BTreeMap<(String, String), Vec<(&OutboxEntry, Timestamp)>> = BTreeMap::new();
    for lane in lanes.values() {
        let mut i = 0;
        while let Some(head) = lane.get(i) {
            let n = &head.notification;
            if n.status == NotificationStatus::Firing {
                let mute = mutes(&n.fingerprint, &n.labels);
                let resolution = lane
                    .get(i + 1)
                    .filter(|r| r.notification.status == NotificationStatus::Resolved);
                if let Some(resolution) = resolution
                    && (head.state == RowState::Suppressed || mute.is_some())
                {
                    // The whole episode was muted: nobody was told it fired, so its end is news
                    // to no one either.
                    for id in [head.id, resolution.id] {
                        plan.changes.push(RowChange {
                            id,
                            state: RowState::Skipped,
                            note: mute.as_ref().map(Mute::describe),
                        });
                    }
                    i += 2;
                    continue;
                }
                if let Some(mute) = mute {
                    let note = mute.describe();
                    if head.state == RowState::Pending {
                        plan.suppressed.push((n.receiver.clone(), mute.outcome()));
                    }
                    if head.state == RowState::Pending
                        || head.suppressed_by.as_deref() != Some(note.as_str())
                    {
                        plan.changes.push(RowChange {
                            id: head.id,
                            state: RowState::Suppressed,
                            note: Some(note),
                        });
                    }
                    break;
                }
            }
            let pending_since = if head.state == RowState::Suppressed {
                plan.changes.push(RowChange {
                    id: head.id,
                    state: RowState::Pending,
                    note: None,
                });
                now
            } else {
                head.pending_since
            };
            eligible
                .entry((n.receiver.clone(), head.group.key.clone()))
                .or_default()
                .push((head, pending_since));
            break;
        }
    }

    let stored: HashMap<(&str, &str), &GroupState> = groups
        .iter()
        .map(|g| ((g.receiver.as_str(), g.settings.key.as_str()), g))
        .collect();
    let mut keys: Vec<(String, String)> = eligible.keys().cloned().collect();
    for g in groups {
        let k = (g.receiver.clone(), g.settings.key.clone());
        if !eligible.contains_key(&k) {
            keys.push(k);
        }
    }

    for (receiver, key) in keys {
        let state = stored.get(&(receiver.as_str(), key.as_str())).copied();
        let changed = eligible
            .get(&(receiver.clone(), key.clone()))
            .cloned()
            .unwrap_or_default();
        let Some(settings) = changed
            .iter()
            .max_by_key(|(r, _)| r.id)
            .map(|(r, _)| r.group.clone())
            .or_else(|| state.map(|s| s.settings.clone()))
        else {
            continue;
        };
        if let Some(retry_at) = state.and_then(|s| s.next_attempt)
            && retry_at > now
        {
            if !changed.is_empty() {
                plan.waiting_groups += 1;
            }
            continue;
        }
        let (members, stale): (Vec<&Notification>, Vec<&Notification>) = state
            .iter()
            .flat_map(|s| s.members.iter())
            .partition(|m| current(m));
        if changed.is_empty() && members.is_empty() {
            if state.is_some() {
                plan.forget.push((receiver.clone(), key.clone()));
            }
            continue;
        }
        let last_sent = state.and_then(|s| s.last_sent);
        let repeat = changed.is_empty();
        let due = if repeat {
            match last_sent {
                Some(t) => after(t, settings.repeat_interval_ms),
                None => continue,
            }
        } else {
            match last_sent {
                Some(t) => after(t, settings.group_interval_ms),
                None => {
                    let first = changed.iter().map(|(_, since)| *since).min().unwrap_or(now);
                    after(first, settings.group_wait_ms)
                }
            }
        };
        if due > now {
            if !repeat {
                plan.waiting_groups += 1;
            }
            continue;
        }

        // The message shows the group as it stands: firing alerts already sent (unless muted
        // now) and every change in this send.
        let mut alerts: BTreeMap<String, Notification> = BTreeMap::new();
        for m in &members {
            if m.status == NotificationStatus::Firing && mutes(&m.fingerprint, &m.labels).is_none()
            {
                alerts.insert(m.fingerprint.clone(), (*m).clone());
            }
        }
        for (row, _) in &changed {
            alerts.insert(
                row.notification.fingerprint.clone(),
                row.notification.clone(),
            );
        }
        if alerts.is_empty() {
            continue;
        }
        let mut alerts: Vec<Notification> = alerts.into_values().collect();
        alerts.sort_by(|a, b| {
            (b.status == NotificationStatus::Firing)
                .cmp(&(a.status == NotificationStatus::Firing))
                .then(a.starts_at.cmp(&b.starts_at))
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        plan.sends.push(PlannedSend {
            group: NotificationGroup {
                receiver: receiver.clone(),
                key: key.clone(),
                labels: settings.labels.clone(),
                alerts,
            },
            rows: changed.iter().map(|(r, _)| r.id).collect(),
            previous: state.cloned(),
            settings,
            repeat,
            stale: stale.iter().map(|m| m.fingerprint.clone()).collect(),
        });
    }
    plan
}

/// The group's state after an acknowledged send; `None` once nothing in it fires.
pub fn after_delivery(
    send: &PlannedSend,
    rows: &[&Notification],
    thread: Option<String>,
    now: Timestamp,
) -> Option<GroupState> {
    let mut members: BTreeMap<String, Notification> = send
        .previous
        .iter()
        .flat_map(|p| p.members.iter())
        .filter(|m| !send.stale.contains(&m.fingerprint))
        .map(|m| (m.fingerprint.clone(), m.clone()))
        .collect();
    for n in rows {
        match n.status {
            NotificationStatus::Firing => {
                members.insert(n.fingerprint.clone(), (*n).clone());
            }
            NotificationStatus::Resolved => {
                members.remove(&n.fingerprint);
            }
        }
    }
    if members.is_empty() {
        return None;
    }
    Some(GroupState {
        receiver: send.group.receiver.clone(),
        settings: send.settings.clone(),
        last_sent: Some(now),
        members: members.into_values().collect(),
        thread: thread.or_else(|| send.previous.as_ref().and_then(|p| p.thread.clone())),
        attempts: 0,
        next_attempt: None,
        last_error: None,
    })
}

/// The group's state after a failed send: unchanged, except the retry schedule.
pub fn after_failure(
    send: &PlannedSend,
    error: &str,
    next_attempt: Option<Timestamp>,
) -> Option<GroupState> {
    let mut state = send.previous.clone().unwrap_or_else(|| GroupState {
        receiver: send.group.receiver.clone(),
        settings: send.settings.clone(),
        last_sent: None,
        members: Vec::new(),
        thread: None,
        attempts: 0,
        next_attempt: None,
        last_error: None,
    });
    state.attempts = state.attempts.saturating_add(1);
    state.next_attempt = next_attempt;
    state.last_error = Some(error.to_string());
    if state.members.is_empty() && state.last_sent.is_none() && next_attempt.is_none() {
        // A group never sent whose rows are dead: nothing to remember.
        return None;
    }
    Some(state)
}
