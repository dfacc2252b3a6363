//! The grouping dispatcher on a simulated clock, against a recording receiver: group_wait,
//! group_interval, repeat_interval, storms, ordering, crashes, permanent errors, silences,
//! inhibition and restarts.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;

use super::{Delivery, Dispatcher, RetryPolicy, SendError, Sender};
use crate::alerting::inhibit::InhibitRule;
use crate::alerting::matcher::Matcher;
use crate::alerting::route::{GroupBy, Route, Routes};
use crate::alerting::silence::{MatcherInput, NewSilence};
use crate::alerting::{Alerting, fingerprint};
use crate::metrics::Metrics;
use crate::model::{
    Finding, NotificationGroup, NotificationStatus, Outcome, Severity, Transition, Unit,
};
use crate::store::{RowState, SqliteStore, Store};

/// Records every message it is sent; answers from a script, then with success.
#[derive(Default)]
pub struct FakeReceiver {
    inner: Mutex<FakeInner>,
}

#[derive(Default)]
struct FakeInner {
    messages: Vec<(NotificationGroup, Option<String>)>,
    answers: VecDeque<SendError>,
}

impl FakeReceiver {
    pub fn send(
        &self,
        group: &NotificationGroup,
        thread: Option<&str>,
    ) -> Result<Delivery, SendError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .messages
            .push((group.clone(), thread.map(str::to_string)));
        match inner.answers.pop_front() {
            Some(e) => Err(e),
            None => Ok(Delivery {
                thread: Some(format!("thread-{}", inner.messages.len())),
            }),
        }
    }

    fn fail_next(&self, e: SendError) {
        self.inner.lock().unwrap().answers.push_back(e);
    }

    fn messages(&self) -> Vec<(NotificationGroup, Option<String>)> {
        self.inner.lock().unwrap().messages.clone()
    }
}

const WAIT: i64 = 30;
const INTERVAL: i64 = 300;
const REPEAT: i64 = 4 * 3600;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap() + SignedDuration::from_secs(secs)
}

fn tree(group_by: &[&str]) -> Routes {
    Routes::new(Route {
        id: "route".into(),
        receiver: "rec".into(),
        matchers: Vec::new(),
        continue_matching: false,
        group_by: GroupBy::Labels(group_by.iter().map(|s| s.to_string()).collect()),
        group_wait: Duration::from_secs(WAIT as u64),
        group_interval: Duration::from_secs(INTERVAL as u64),
        repeat_interval: Duration::from_secs(REPEAT as u64),
        routes: Vec::new(),
    })
}

fn labels(account: &str, level: &str) -> BTreeMap<String, String> {
    [
        ("alertname", "budget"),
        ("account", account),
        ("level", level),
        ("severity", "critical"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn transition(account: &str, level: &str, breach: bool) -> Transition {
    let finding = Finding {
        value: Decimal::from(120),
        threshold: Decimal::from(100),
        unit: Unit::Quantity("USD".into()),
        summary: format!("{account} over {level}%"),
        contributors: Vec::new(),
    };
    Transition {
        rule: "budget".into(),
        labels: labels(account, level),
        annotations: BTreeMap::new(),
        severity: Severity::Critical,
        hold: SignedDuration::ZERO,
        keep_firing_for: SignedDuration::ZERO,
        data_time: t(0),
        outcome: if breach {
            Outcome::Breach(finding)
        } else {
            Outcome::Clear(finding)
        },
    }
}

struct Harness {
    store: Arc<dyn Store>,
    alerting: Alerting,
    receiver: Arc<FakeReceiver>,
    metrics: Arc<Metrics>,
    rules: Vec<InhibitRule>,
}

impl Harness {
    fn new(group_by: &[&str]) -> Self {
        Self::on(Arc::new(SqliteStore::open_in_memory().unwrap()), group_by)
    }

    fn on(store: Arc<dyn Store>, group_by: &[&str]) -> Self {
        Harness {
            alerting: Alerting::restore(store.as_ref(), tree(group_by)).unwrap(),
            store,
            receiver: Arc::new(FakeReceiver::default()),
            metrics: Arc::new(Metrics::new()),
            rules: Vec::new(),
        }
    }

    fn dispatcher(&self) -> Dispatcher {
        let mut senders = std::collections::HashMap::new();
        senders.insert("rec".to_string(), Sender::Fake(self.receiver.clone()));
        Dispatcher {
            store: self.store.clone(),
            senders,
            metrics: self.metrics.clone(),
            policy: RetryPolicy {
                min_backoff: Duration::from_secs(10),
                max_backoff: Duration::from_secs(60),
            },
            inhibit_rules: self.rules.clone(),
            gate: None,
            crash_after_send: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn apply(&mut self, at: i64, transitions: &[Transition]) {
        self.alerting
            .apply(transitions, t(at), t(at), self.store.as_ref())
            .unwrap();
    }

    async fn pass(&self, at: i64) -> super::PassStats {
        self.dispatcher().deliver_due_at(t(at)).await.unwrap()
    }

    fn count(&self, outcome: &str) -> f64 {
        let text = self.metrics.render();
        let needle =
            format!("spendwatch_notifications_total{{outcome=\"{outcome}\",receiver=\"rec\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    fn silence(&self, matcher: &str, at: i64, until: i64) -> String {
        let s = NewSilence {
            matchers: vec![MatcherInput::Text(matcher.into())],
            starts_at: None,
            ends_at: t(until),
            created_by: "test".into(),
            comment: "maintenance".into(),
        }
        .validate(t(at))
        .unwrap();
        self.store.insert_silence(&s.to_row()).unwrap();
        s.id
    }
}

/// (account, status), firing first, then by account.
fn accounts_in(group: &NotificationGroup) -> Vec<(String, NotificationStatus)> {
    let mut out: Vec<_> = group
        .alerts
        .iter()
        .map(|n| (n.labels["account"].clone(), n.status))
        .collect();
    out.sort_by_key(|(a, s)| (*s != NotificationStatus::Firing, a.clone()));
    out
}

#[tokio::test]
async fn a_storm_of_200_accounts_is_one_message_per_group() {
    let mut h = Harness::new(&["alertname"]);
    // 200 accounts cross the same budget within a few seconds of each other.
    for i in 0..200 {
        h.apply(i / 20, &[transition(&format!("acct-{i:03}"), "100", true)]);
    }
    assert_eq!(h.pass(WAIT - 1).await.messages, 0, "group_wait not over");
    assert!(h.receiver.messages().is_empty());
    let stats = h.pass(WAIT).await;
    assert_eq!((stats.messages, stats.delivered), (1, 200));
    let messages = h.receiver.messages();
    assert_eq!(messages.len(), 1, "one message for the whole storm");
    let group = &messages[0].0;
    assert_eq!(group.alerts.len(), 200);
    assert_eq!(
        group.labels,
        BTreeMap::from([("alertname".to_string(), "budget".to_string())])
    );
    assert!(group.idempotency_key().starts_with("group-"));
    assert_eq!(h.count("delivered"), 200.0);
    assert_eq!(h.store.outbox_stats().unwrap().pending, 0);
    // Nothing more until the repeat interval.
    assert_eq!(h.pass(WAIT + 60).await.messages, 0);

    // Grouped by account (the default), the same storm is one message per account.
    let mut h = Harness::new(&["alertname", "account"]);
    for i in 0..200 {
        h.apply(0, &[transition(&format!("acct-{i:03}"), "100", true)]);
    }
    assert_eq!(h.pass(WAIT).await.messages, 200);
}

#[tokio::test]
async fn group_interval_paces_changes_and_repeat_interval_reminds() {
    let mut h = Harness::new(&["alertname"]);
    h.apply(0, &[transition("a", "100", true)]);
    h.pass(WAIT).await;
    h.apply(40, &[transition("b", "100", true)]);
    assert_eq!(
        h.pass(WAIT + INTERVAL - 1).await.messages,
        0,
        "a change waits for group_interval after the last send"
    );
    assert_eq!(h.pass(WAIT + INTERVAL).await.messages, 1);
    h.apply(WAIT + INTERVAL + 10, &[transition("a", "100", false)]);
    assert_eq!(h.pass(WAIT + INTERVAL + 60).await.messages, 0);
    assert_eq!(h.pass(WAIT + 2 * INTERVAL).await.messages, 1);
    let last_change = WAIT + 2 * INTERVAL;
    // No change: reminded every repeat_interval while something fires.
    assert_eq!(h.pass(last_change + REPEAT - 1).await.messages, 0);
    assert_eq!(h.pass(last_change + REPEAT).await.messages, 1);

    let m = h.receiver.messages();
    use NotificationStatus::{Firing, Resolved};
    assert_eq!(accounts_in(&m[0].0), [("a".to_string(), Firing)]);
    assert_eq!(
        accounts_in(&m[1].0),
        [("a".to_string(), Firing), ("b".to_string(), Firing)],
        "the group as it stands, not only the change"
    );
    assert_eq!(
        accounts_in(&m[2].0),
        [("b".to_string(), Firing), ("a".to_string(), Resolved)]
    );
    assert_eq!(accounts_in(&m[3].0), [("b".to_string(), Firing)]);
    // The receiver's thread comes back with every later message of the group.
    assert_eq!(m[0].1, None);
    assert_eq!(m[1].1.as_deref(), Some("thread-1"));
    assert_eq!(m[3].1.as_deref(), Some("thread-3"));
    assert_eq!(h.count("delivered"), 3.0, "a repeat delivers no new row");

    // Everything resolves: the last message, then the group and its thread are gone.
    let resolved_at = last_change + REPEAT + 10;
    h.apply(resolved_at, &[transition("b", "100", false)]);
    assert_eq!(h.pass(last_change + REPEAT + INTERVAL).await.messages, 1);
    assert!(h.store.load_groups().unwrap().is_empty());
    // A new alert starts a new group: group_wait again, no thread.
    let again = last_change + REPEAT + INTERVAL + 100;
    h.apply(again, &[transition("c", "100", true)]);
    assert_eq!(h.pass(again + WAIT - 1).await.messages, 0);
    assert_eq!(h.pass(again + WAIT).await.messages, 1);
    assert_eq!(h.receiver.messages().last().unwrap().1, None);
}

#[tokio::test]
async fn resolution_never_overtakes_firing() {
    let mut h = Harness::new(&["alertname"]);
    h.apply(0, &[transition("a", "100", true)]);
    h.receiver
        .fail_next(SendError::recoverable("http_5xx", "down"));
    assert_eq!(h.pass(WAIT).await.failed, 1);
    h.apply(WAIT + 1, &[transition("a", "100", false)]);
    // The retry carries the firing only; the resolution follows a group_interval later.
    let mut at = WAIT + 1;
    let mut sent = Vec::new();
    while sent.len() < 2 && at < 3600 {
        at += 5;
        if h.pass(at).await.messages > 0 {
            sent.push(at);
        }
    }
    let m = h.receiver.messages();
    let statuses: Vec<_> = m.iter().map(|(g, _)| g.status()).collect();
    use NotificationStatus::{Firing, Resolved};
    assert_eq!(statuses, [Firing, Firing, Resolved], "{sent:?}");
    assert_eq!(
        m[0].0.idempotency_key(),
        m[1].0.idempotency_key(),
        "the retry carries the same key"
    );
    assert!(sent[1] - sent[0] >= INTERVAL);
}

#[tokio::test]
async fn a_crash_between_send_and_mark_resends_the_same_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let receiver = Arc::new(FakeReceiver::default());
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        let mut h = Harness::on(store, &["alertname"]);
        h.receiver = receiver.clone();
        h.apply(
            0,
            &[transition("a", "100", true), transition("b", "100", true)],
        );
        let d = h.dispatcher();
        d.crash_after_send
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(
            d.deliver_due_at(t(WAIT)).await.is_err(),
            "died after the send"
        );
        assert_eq!(h.count("delivered"), 0.0);
    }
    // Restart on the same file.
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let mut h = Harness::on(store, &["alertname"]);
    h.receiver = receiver.clone();
    assert_eq!(h.pass(WAIT + 1).await.delivered, 2);
    assert_eq!(h.pass(WAIT + 2).await.messages, 0);
    let m = receiver.messages();
    assert_eq!(m.len(), 2, "sent twice: before the crash and after");
    assert_eq!(m[0].0.idempotency_key(), m[1].0.idempotency_key());
    // A receiver that drops duplicate keys shows it once.
    let unique: std::collections::BTreeSet<String> =
        m.iter().map(|(g, _)| g.idempotency_key()).collect();
    assert_eq!(unique.len(), 1);
    assert_eq!(h.count("delivered"), 2.0, "two rows, counted once");
    assert_eq!(h.store.outbox_stats().unwrap().delivered, 2);
}

#[tokio::test]
async fn a_permanent_error_dead_letters_and_stops_retrying() {
    let mut h = Harness::new(&["alertname"]);
    h.apply(0, &[transition("a", "100", true)]);
    h.receiver.fail_next(SendError::permanent("invalid_auth"));
    let stats = h.pass(WAIT).await;
    assert_eq!((stats.dead, stats.failed), (1, 0));
    for at in [WAIT + 60, WAIT + 3600, WAIT + 86_400] {
        assert_eq!(h.pass(at).await.messages, 0);
    }
    assert_eq!(h.receiver.messages().len(), 1, "never retried");
    let dead = h.store.list_outbox(Some(RowState::Dead), 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("invalid_auth")
    );
    assert_eq!(h.count("dead"), 1.0);
    let stats = h.store.outbox_stats().unwrap();
    assert_eq!((stats.pending, stats.dead), (0, 1));
    let text = h.metrics.render();
    assert!(
        text.contains(
            "spendwatch_notification_failures_total{reason=\"permanent\",receiver=\"rec\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn recoverable_errors_back_off_and_honour_retry_after() {
    let mut h = Harness::new(&["alertname"]);
    h.apply(0, &[transition("a", "100", true)]);
    h.receiver.fail_next(
        SendError::recoverable("rate_limited", "slow down")
            .with_retry_after(Some(Duration::from_secs(600))),
    );
    assert_eq!(h.pass(WAIT).await.failed, 1);
    assert_eq!(
        h.pass(WAIT + 120).await.messages,
        0,
        "waits for Retry-After"
    );
    assert_eq!(h.pass(WAIT + 600).await.messages, 1);
    assert_eq!((h.count("failed"), h.count("delivered")), (1.0, 1.0));
}

#[tokio::test]
async fn a_silence_suppresses_and_its_expiry_releases() {
    let mut h = Harness::new(&["alertname"]);
    let id = h.silence("account=\"a\"", 0, 3600);
    h.apply(
        0,
        &[transition("a", "100", true), transition("b", "100", true)],
    );
    let stats = h.pass(WAIT).await;
    assert_eq!((stats.delivered, stats.suppressed), (1, 1));
    assert_eq!(
        accounts_in(&h.receiver.messages()[0].0),
        [("b".to_string(), NotificationStatus::Firing)]
    );
    let held = h.store.list_outbox(Some(RowState::Suppressed), 10).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].suppressed_by, Some(format!("silence:{id}")));
    // Held, counted once, not sent, and not counted as backlog.
    for at in [WAIT + 60, WAIT + 600, 3599] {
        assert_eq!(h.pass(at).await.messages, 0);
    }
    assert_eq!(h.count("suppressed_silenced"), 1.0);
    assert_eq!(h.store.outbox_stats().unwrap().pending, 0);

    // The silence is expired early; the alert still fires: it is notified.
    h.store.expire_silence(&id, t(1800)).unwrap();
    let mut at = 3599;
    while h.receiver.messages().len() < 2 && at < 3599 + 2 * INTERVAL {
        at += 5;
        h.pass(at).await;
    }
    let m = h.receiver.messages();
    assert_eq!(m.len(), 2);
    assert_eq!(
        accounts_in(&m[1].0),
        [
            ("a".to_string(), NotificationStatus::Firing),
            ("b".to_string(), NotificationStatus::Firing)
        ]
    );
    assert_eq!(h.count("delivered"), 2.0);
}

#[tokio::test]
async fn an_alert_that_resolves_while_silenced_is_never_sent() {
    let mut h = Harness::new(&["alertname"]);
    h.silence("account=\"a\"", 0, 3600);
    h.apply(0, &[transition("a", "100", true)]);
    assert_eq!(h.pass(WAIT).await.suppressed, 1);
    h.apply(100, &[transition("a", "100", false)]);
    for at in [200, 4000, 10_000] {
        assert_eq!(h.pass(at).await.messages, 0);
    }
    assert!(h.receiver.messages().is_empty());
    assert_eq!(
        h.store
            .list_outbox(Some(RowState::Skipped), 10)
            .unwrap()
            .len(),
        2
    );
    let stats = h.store.outbox_stats().unwrap();
    assert_eq!((stats.pending, stats.suppressed), (0, 0));
}

#[tokio::test]
async fn budget_100_percent_inhibits_80_for_the_same_account() {
    let mut h = Harness::new(&["alertname", "account"]);
    h.rules = vec![InhibitRule {
        source: vec![Matcher::parse("level=\"100\"").unwrap()],
        target: vec![Matcher::parse("level=\"80\"").unwrap()],
        equal: vec!["alertname".into(), "account".into()],
    }];
    h.apply(
        0,
        &[
            transition("a", "80", true),
            transition("a", "100", true),
            transition("b", "80", true),
        ],
    );
    let stats = h.pass(WAIT).await;
    assert_eq!((stats.messages, stats.suppressed), (2, 1));
    let levels = |g: &NotificationGroup| -> Vec<String> {
        g.alerts.iter().map(|n| n.labels["level"].clone()).collect()
    };
    let m = h.receiver.messages();
    let a = m.iter().find(|(g, _)| g.labels["account"] == "a").unwrap();
    let b = m.iter().find(|(g, _)| g.labels["account"] == "b").unwrap();
    assert_eq!(levels(&a.0), ["100"]);
    assert_eq!(levels(&b.0), ["80"], "another account is not inhibited");
    assert_eq!(h.count("suppressed_inhibited"), 1.0);
    let held = h.store.list_outbox(Some(RowState::Suppressed), 10).unwrap();
    assert_eq!(
        held[0].suppressed_by,
        Some(format!("inhibited_by:{}", fingerprint(&labels("a", "100"))))
    );

    // The 100 % level resolves while 80 % still fires: 80 % is told now.
    h.apply(100, &[transition("a", "100", false)]);
    h.pass(WAIT + INTERVAL).await;
    let m = h.receiver.messages();
    assert_eq!(m.len(), 3);
    let mut statuses: Vec<(String, NotificationStatus)> = m[2]
        .0
        .alerts
        .iter()
        .map(|n| (n.labels["level"].clone(), n.status))
        .collect();
    statuses.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        statuses,
        [
            ("100".to_string(), NotificationStatus::Resolved),
            ("80".to_string(), NotificationStatus::Firing)
        ]
    );
}

#[tokio::test]
async fn group_state_and_silences_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let receiver = Arc::new(FakeReceiver::default());
    let silence_id;
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        let mut h = Harness::on(store, &["alertname"]);
        h.receiver = receiver.clone();
        h.apply(0, &[transition("a", "100", true)]);
        h.pass(WAIT).await;
        silence_id = h.silence("account=\"c\"", 0, 86_400);
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let groups = store.load_groups().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].last_sent, Some(t(WAIT)));
    assert_eq!(groups[0].thread.as_deref(), Some("thread-1"));
    assert_eq!(groups[0].members[0].labels["account"], "a");
    assert_eq!(store.silences().unwrap()[0].id, silence_id);

    let mut h = Harness::on(store, &["alertname"]);
    h.receiver = receiver.clone();
    h.apply(
        60,
        &[transition("b", "100", true), transition("c", "100", true)],
    );
    // The restarted dispatcher counts group_interval from the send before the restart,
    // passes the stored thread back, and the stored silence still mutes c.
    assert_eq!(h.pass(WAIT + INTERVAL - 1).await.messages, 0);
    assert_eq!(h.pass(WAIT + INTERVAL).await.messages, 1);
    assert_eq!(h.count("suppressed_silenced"), 1.0);
    let m = receiver.messages();
    assert_eq!(m[1].1.as_deref(), Some("thread-1"));
    assert_eq!(
        accounts_in(&m[1].0),
        [
            ("a".to_string(), NotificationStatus::Firing),
            ("b".to_string(), NotificationStatus::Firing)
        ]
    );
}

#[tokio::test]
async fn a_group_left_behind_by_a_route_change_is_forgotten() {
    let mut h = Harness::new(&["alertname"]);
    h.apply(0, &[transition("a", "100", true)]);
    assert_eq!(h.pass(WAIT).await.messages, 1);
    let old_key = h.store.load_groups().unwrap()[0].settings.key.clone();
    // The config now groups by account too: the resolution lands in another group.
    h.alerting = Alerting::restore(h.store.as_ref(), tree(&["alertname", "account"])).unwrap();
    h.apply(100, &[transition("a", "100", false)]);
    h.pass(101).await;
    let groups = h.store.load_groups().unwrap();
    assert!(
        groups.iter().all(|g| g.settings.key != old_key),
        "the old group no longer holds the resolved alert: {groups:?}"
    );
    assert_eq!(h.pass(100 + WAIT).await.messages, 1);
    let m = h.receiver.messages();
    assert_eq!(m[1].0.status(), NotificationStatus::Resolved);
    // No reminder of a stale firing alert, ever.
    assert_eq!(h.pass(REPEAT * 2).await.messages, 0);
    assert!(h.store.load_groups().unwrap().is_empty());
}
