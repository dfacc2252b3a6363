//! The alert state machine as a pure function over the stored record.

use jiff::Timestamp;

use crate::model::{AlertRecord, AlertState, Finding, Outcome, Transition};

/// A change a human would want to know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Pending,
    Fired,
    Resolved,
    /// Pending, then cleared before `for` elapsed.
    Dropped,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Pending => "PENDING",
            Change::Fired => "FIRING",
            Change::Resolved => "RESOLVED",
            Change::Dropped => "DROPPED",
        }
    }
}

fn fresh(fingerprint: &str, t: &Transition) -> AlertRecord {
    AlertRecord {
        fingerprint: fingerprint.to_string(),
        rule: t.rule.clone(),
        labels: t.labels.clone(),
        annotations: t.annotations.clone(),
        severity: t.severity,
        state: AlertState::Inactive,
        active_at: None,
        fired_at: None,
        resolved_at: None,
        keep_firing_since: None,
        value: String::new(),
        threshold: String::new(),
        summary: String::new(),
        seq: 0,
        contributors: Vec::new(),
    }
}

fn record_finding(a: &mut AlertRecord, t: &Transition, f: &Finding) {
    a.annotations = t.annotations.clone();
    a.severity = t.severity;
    a.value = f.value.normalize().to_string();
    a.threshold = f.threshold.normalize().to_string();
    a.summary = f.summary.clone();
    a.contributors = f.contributors.clone();
}

fn fire(a: &mut AlertRecord, at: Timestamp) {
    a.state = AlertState::Firing;
    a.fired_at = Some(at);
    a.resolved_at = None;
    a.keep_firing_since = None;
    a.seq += 1;
}

fn start(a: &mut AlertRecord, t: &Transition, at: Timestamp) -> Change {
    a.active_at = Some(at);
    if t.hold.is_zero() {
        fire(a, at);
        Change::Fired
    } else {
        a.state = AlertState::Pending;
        Change::Pending
    }
}

/// Next record and the change, if any. `Waiting` leaves the state untouched: billing data
/// lags, and missing data is not a resolution.
pub fn step(
    previous: Option<&AlertRecord>,
    fingerprint: &str,
    t: &Transition,
    at: Timestamp,
) -> (AlertRecord, Option<Change>) {
    let mut a = previous.cloned().unwrap_or_else(|| fresh(fingerprint, t));
    let change = match (a.state, &t.outcome) {
        (_, Outcome::Waiting(_)) => None,
        (AlertState::Inactive | AlertState::Resolved, Outcome::Breach(f)) => {
            record_finding(&mut a, t, f);
            Some(start(&mut a, t, at))
        }
        (AlertState::Inactive | AlertState::Resolved, Outcome::Clear(_)) => None,
        (AlertState::Pending, Outcome::Breach(f)) => {
            record_finding(&mut a, t, f);
            let since = a.active_at.unwrap_or(at);
            if at.duration_since(since) >= t.hold {
                fire(&mut a, at);
                Some(Change::Fired)
            } else {
                None
            }
        }
        (AlertState::Pending, Outcome::Clear(f)) => {
            record_finding(&mut a, t, f);
            a.state = AlertState::Inactive;
            a.active_at = None;
            Some(Change::Dropped)
        }
        (AlertState::Firing, Outcome::Breach(f)) => {
            record_finding(&mut a, t, f);
            a.keep_firing_since = None;
            None
        }
        (AlertState::Firing, Outcome::Clear(f)) => {
            let since = *a.keep_firing_since.get_or_insert(at);
            if at.duration_since(since) >= t.keep_firing_for {
                record_finding(&mut a, t, f);
                a.state = AlertState::Resolved;
                a.resolved_at = Some(at);
                a.keep_firing_since = None;
                a.active_at = None;
                Some(Change::Resolved)
            } else {
                None
            }
        }
    };
    (a, change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Severity, Unit};
    use jiff::SignedDuration;
    use rust_decimal::Decimal;
    use std::collections::BTreeMap;

    fn t(outcome: &str, hold_min: i64, keep_min: i64) -> Transition {
        let finding = Finding {
            value: Decimal::from(10),
            threshold: Decimal::from(5),
            unit: Unit::Quantity("x".into()),
            summary: "s".into(),
            contributors: Vec::new(),
        };
        Transition {
            rule: "r".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            severity: Severity::Warning,
            hold: SignedDuration::from_mins(hold_min),
            keep_firing_for: SignedDuration::from_mins(keep_min),
            data_time: Timestamp::UNIX_EPOCH,
            outcome: match outcome {
                "breach" => Outcome::Breach(finding),
                "clear" => Outcome::Clear(finding),
                _ => Outcome::Waiting("later".into()),
            },
        }
    }

    fn at(min: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_mins(min)
    }

    /// Runs a sequence of (minute, outcome) and returns the changes seen.
    fn run(seq: &[(i64, &str)], hold: i64, keep: i64) -> (AlertRecord, Vec<(i64, Change)>) {
        let mut rec: Option<AlertRecord> = None;
        let mut changes = Vec::new();
        for (m, o) in seq {
            let (next, change) = step(rec.as_ref(), "fp", &t(o, hold, keep), at(*m));
            if let Some(c) = change {
                changes.push((*m, c));
            }
            rec = Some(next);
        }
        (rec.unwrap(), changes)
    }

    #[test]
    fn fires_at_once_without_for_and_resolves() {
        let (rec, changes) = run(
            &[(0, "clear"), (1, "breach"), (2, "breach"), (3, "clear")],
            0,
            0,
        );
        assert_eq!(changes, vec![(1, Change::Fired), (3, Change::Resolved)]);
        assert_eq!(rec.seq, 1);
        assert_eq!(rec.resolved_at, Some(at(3)));
    }

    #[test]
    fn pending_until_for_has_elapsed() {
        let (_, changes) = run(
            &[(0, "breach"), (5, "breach"), (10, "breach"), (11, "breach")],
            10,
            0,
        );
        assert_eq!(changes, vec![(0, Change::Pending), (10, Change::Fired)]);
        let (rec, changes) = run(&[(0, "breach"), (5, "clear")], 10, 0);
        assert_eq!(changes, vec![(0, Change::Pending), (5, Change::Dropped)]);
        assert_eq!(rec.state, AlertState::Inactive);
    }

    #[test]
    fn waiting_changes_nothing() {
        let (rec, changes) = run(&[(0, "breach"), (1, "waiting"), (500, "waiting")], 0, 0);
        assert_eq!(changes, vec![(0, Change::Fired)]);
        assert_eq!(rec.state, AlertState::Firing);
    }

    #[test]
    fn keep_firing_for_bridges_short_clears() {
        let (_, changes) = run(
            &[
                (0, "breach"),
                (1, "clear"),
                (3, "breach"),
                (4, "clear"),
                (10, "clear"),
                (14, "clear"),
            ],
            0,
            10,
        );
        assert_eq!(changes, vec![(0, Change::Fired), (14, Change::Resolved)]);
    }

    #[test]
    fn refiring_after_resolution_is_a_new_episode() {
        let (rec, changes) = run(&[(0, "breach"), (1, "clear"), (2, "breach")], 0, 0);
        assert_eq!(changes.len(), 3);
        assert_eq!(rec.seq, 2);
    }
}
