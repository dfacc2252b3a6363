//! Block Kit rendering of one alert group, and of the thread reply that says what changed.
//! Pure functions: tested without a server. Every piece of user-derived text (summaries,
//! label values, contributors, link titles) goes through [`escape`], and every text is cut to
//! Slack's documented limits, so a group of 200 alerts still renders as one valid message.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use slack_morphism::prelude::*;

use crate::model::{Notification, NotificationGroup, NotificationStatus, Severity};

/// `metadata.event_type` of group messages; receivers de-duplicate on its `idempotency_key`.
pub const EVENT_TYPE: &str = "spendwatch_alert";
/// `metadata.event_type` of thread replies (they repeat the group's key, so keep them apart).
pub const CHANGE_EVENT_TYPE: &str = "spendwatch_alert_change";

// Slack's limits (Block Kit reference): 50 blocks per message, 3000 characters of section
// text, 2000 per field and context element, 150 for a header, 75 for a button label and
// 3000 for its URL, at most 10 fields per section.
pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_TEXT: usize = 3000;
pub const MAX_FIELD_TEXT: usize = 2000;
pub const MAX_HEADER_TEXT: usize = 150;
pub const MAX_BUTTON_TEXT: usize = 75;
pub const MAX_BUTTON_URL: usize = 3000;
/// The notification text: Slack accepts far more, but a push notification shows a line.
pub const MAX_FALLBACK_TEXT: usize = 3000;
/// Alerts shown as sections; the rest are summarised in one "and N more" section. With at
/// most four blocks per alert this keeps a message well under [`MAX_BLOCKS`].
pub const MAX_ALERTS_SHOWN: usize = 10;
pub const MAX_CONTRIBUTORS: usize = 5;
pub const MAX_LINKS: usize = 5;
/// Fingerprints (and alert idempotency keys) listed in the metadata; the group's idempotency
/// key covers the whole group.
pub const MAX_METADATA_FINGERPRINTS: usize = 50;
/// Alerts named per kind of change in a thread reply.
const MAX_CHANGES_LISTED: usize = 10;

/// One rendered Slack message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Plain fallback for notifications and screen readers (mrkdwn, escaped).
    pub text: String,
    pub blocks: Vec<SlackBlock>,
    pub metadata: SlackMessageMetadata,
}

impl Message {
    pub fn content(&self) -> SlackMessageContent {
        SlackMessageContent::new()
            .with_text(self.text.clone())
            .with_blocks(self.blocks.clone())
            .with_metadata(self.metadata.clone())
    }
}

/// Escapes Slack's mrkdwn control characters (`&`, `<`, `>`): user text cannot form a link,
/// a mention (`<!channel>`) or a broken entity.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            other => out.push(other),
        }
    }
    out
}

/// `escape`, for text shown inside a code span: a backtick would end the span early.
fn code(text: &str) -> String {
    format!("`{}`", escape(&text.replace('`', "'")))
}

/// Cuts `text` to at most `max` characters, ending with `…` when cut, and never in the middle
/// of an escape entity (`&amp;`).
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    if let Some(amp) = cut.rfind('&')
        && !cut[amp..].contains(';')
    {
        cut.truncate(amp);
    }
    cut.push('…');
    cut
}

pub fn severity_of(n: &Notification) -> Option<Severity> {
    let label = n.labels.get("severity")?;
    [Severity::Info, Severity::Warning, Severity::Critical]
        .into_iter()
        .find(|s| s.as_str() == label)
}

fn alertname(n: &Notification) -> &str {
    n.labels
        .get("alertname")
        .map_or(n.rule.as_str(), String::as_str)
}

fn firing(n: &Notification) -> bool {
    n.status == NotificationStatus::Firing
}

/// Highest severity among the firing alerts, or among all when the group is resolved.
fn group_severity(group: &NotificationGroup) -> Option<Severity> {
    let any_firing = group.alerts.iter().any(firing);
    group
        .alerts
        .iter()
        .filter(|n| !any_firing || firing(n))
        .filter_map(severity_of)
        .max()
}

fn status_icon(status: NotificationStatus, severity: Option<Severity>) -> &'static str {
    match (status, severity) {
        (NotificationStatus::Resolved, _) => ":white_check_mark:",
        (NotificationStatus::Firing, Some(Severity::Critical)) => ":red_circle:",
        (NotificationStatus::Firing, Some(Severity::Warning)) => ":large_orange_circle:",
        (NotificationStatus::Firing, Some(Severity::Info) | None) => ":large_blue_circle:",
    }
}

fn status_word(status: NotificationStatus) -> &'static str {
    match status {
        NotificationStatus::Firing => "FIRING",
        NotificationStatus::Resolved => "RESOLVED",
    }
}

/// The value shared by every alert of the group, if they share one.
fn common<'a>(
    group: &'a NotificationGroup,
    value: impl Fn(&'a Notification) -> Option<&'a str>,
) -> Option<&'a str> {
    let mut values = group.alerts.iter().map(&value);
    let first = values.next()??;
    values.all(|v| v == Some(first)).then_some(first)
}

/// "monthly-budget — account 020-1", "3 alerts — 2 accounts": what and where, unescaped.
pub fn title(group: &NotificationGroup) -> String {
    let what = common(group, |n| Some(alertname(n)))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{} alerts", group.alerts.len()));
    let account = group
        .labels
        .get("account")
        .map(String::as_str)
        .or_else(|| common(group, |n| n.labels.get("account").map(String::as_str)));
    match account {
        Some(a) => format!("{what} — account {a}"),
        None => {
            let mut accounts: Vec<&str> = group
                .alerts
                .iter()
                .filter_map(|n| n.labels.get("account").map(String::as_str))
                .collect();
            accounts.sort_unstable();
            accounts.dedup();
            match accounts.len() {
                0 => what,
                k => format!("{what} — {k} accounts"),
            }
        }
    }
}

/// Firing first, most severe first, oldest first: what on-call must read comes first.
fn ordered(group: &NotificationGroup) -> Vec<&Notification> {
    let mut alerts: Vec<&Notification> = group.alerts.iter().collect();
    alerts.sort_by(|a, b| {
        firing(b)
            .cmp(&firing(a))
            .then(severity_of(b).cmp(&severity_of(a)))
            .then(a.starts_at.cmp(&b.starts_at))
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    alerts
}

fn counts(group: &NotificationGroup) -> (usize, usize) {
    let f = group.alerts.iter().filter(|n| firing(n)).count();
    (f, group.alerts.len() - f)
}

fn when(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

fn mrkdwn(text: String) -> SlackBlockText {
    SlackBlockText::MarkDown(SlackBlockMarkDownText::new(text))
}

fn section(text: String) -> SlackBlock {
    SlackSectionBlock::new()
        .with_text(mrkdwn(truncate(&text, MAX_SECTION_TEXT)))
        .into()
}

fn context(parts: Vec<String>) -> SlackBlock {
    SlackContextBlock::new(
        parts
            .into_iter()
            .map(|p| {
                SlackContextBlockElement::MarkDown(SlackBlockMarkDownText::new(truncate(
                    &p,
                    MAX_FIELD_TEXT,
                )))
            })
            .collect(),
    )
    .into()
}

/// A one-line label for an alert: "monthly-budget (critical) · account `020-1`", escaped.
fn alert_line(n: &Notification) -> String {
    let mut line = format!("*{}*", escape(alertname(n)));
    if let Some(s) = severity_of(n) {
        line.push_str(&format!(" ({})", s.as_str()));
    }
    if let Some(a) = n.labels.get("account") {
        line.push_str(&format!(" · account {}", code(a)));
    }
    line
}

fn alert_blocks(n: &Notification) -> Vec<SlackBlock> {
    let status = n.status;
    let mut text = format!(
        "{} {} — {}",
        status_icon(status, severity_of(n)),
        alert_line(n),
        status_word(status)
    );
    match n.annotations.get("summary") {
        Some(summary) => text.push_str(&format!("\n{}", escape(summary))),
        None => text.push_str("\n_(no summary)_"),
    }
    if let Some(description) = n.annotations.get("description") {
        text.push_str(&format!("\n{}", escape(description)));
    }
    let state = match (status, n.ends_at) {
        (NotificationStatus::Resolved, Some(end)) => {
            format!(
                "Resolved {}\n(firing since {})",
                when(end),
                when(n.starts_at)
            )
        }
        (NotificationStatus::Resolved, None) => {
            format!("Resolved\n(firing since {})", when(n.starts_at))
        }
        (NotificationStatus::Firing, _) => format!("Firing since {}", when(n.starts_at)),
    };
    let fields = [
        ("Value", escape(&n.value)),
        ("Threshold / expected", escape(&n.threshold)),
        ("Status", state),
    ]
    .into_iter()
    .map(|(name, value)| mrkdwn(truncate(&format!("*{name}*\n{value}"), MAX_FIELD_TEXT)))
    .collect();
    let mut blocks = vec![
        SlackDividerBlock::new().into(),
        SlackSectionBlock::new()
            .with_text(mrkdwn(truncate(&text, MAX_SECTION_TEXT)))
            .with_fields(fields)
            .into(),
    ];
    if !n.contributors.is_empty() {
        let mut lines = vec!["*Top contributors*".to_string()];
        for c in n.contributors.iter().take(MAX_CONTRIBUTORS) {
            lines.push(format!(
                "• {} — {} ({})",
                code(&c.item),
                escape(&c.amount),
                escape(&c.delta)
            ));
        }
        if n.contributors.len() > MAX_CONTRIBUTORS {
            lines.push(format!(
                "…and {} more",
                n.contributors.len() - MAX_CONTRIBUTORS
            ));
        }
        blocks.push(section(lines.join("\n")));
    }
    let buttons: Vec<SlackActionBlockElement> = n
        .links
        .iter()
        .filter(|l| l.url.len() <= MAX_BUTTON_URL)
        // A link that is not an absolute URL cannot be a button; Slack would refuse the message.
        .filter_map(|l| Some((l, url::Url::parse(&l.url).ok()?)))
        .filter(|(_, u)| matches!(u.scheme(), "http" | "https"))
        .take(MAX_LINKS)
        .map(|(l, u)| {
            SlackActionBlockElement::Button(
                SlackBlockButtonElement::new(
                    SlackBlockPlainText::new(truncate(&l.title, MAX_BUTTON_TEXT)).into(),
                )
                .with_url(u),
            )
        })
        .collect();
    if !buttons.is_empty() {
        blocks.push(SlackActionsBlock::new(buttons).into());
    }
    blocks
}

/// The message for the group's current state: header, counts, one section per alert (the
/// first [`MAX_ALERTS_SHOWN`]), contributors, links, and the idempotency key.
pub fn render(group: &NotificationGroup) -> Message {
    let status = group.status();
    let severity = group_severity(group);
    let (n_firing, n_resolved) = counts(group);
    let key = group.idempotency_key();
    let title = title(group);
    let severity_word = severity.map_or("ALERT".to_string(), |s| s.as_str().to_uppercase());

    let header = format!(
        "{} {} · {severity_word} · {title}",
        status_icon(status, severity),
        status_word(status)
    );
    let mut blocks: Vec<SlackBlock> = vec![
        SlackHeaderBlock::new(
            SlackBlockPlainText::new(truncate(&header, MAX_HEADER_TEXT))
                .with_emoji(true)
                .into(),
        )
        .into(),
    ];
    let mut summary = vec![format!("*{n_firing}* firing · *{n_resolved}* resolved")];
    if !group.labels.is_empty() {
        let by: Vec<String> = group
            .labels
            .iter()
            .map(|(k, v)| code(&format!("{k}={v}")))
            .collect();
        summary.push(format!("grouped by {}", by.join(" ")));
    }
    blocks.push(context(summary));

    let alerts = ordered(group);
    for n in alerts.iter().take(MAX_ALERTS_SHOWN) {
        blocks.extend(alert_blocks(n));
    }
    if alerts.len() > MAX_ALERTS_SHOWN {
        let rest = &alerts[MAX_ALERTS_SHOWN..];
        let rest_firing = rest.iter().filter(|n| firing(n)).count();
        let mut text = format!(
            "…and *{}* more alerts ({} firing, {} resolved):",
            rest.len(),
            rest_firing,
            rest.len() - rest_firing
        );
        for n in rest {
            text.push_str(&format!(
                "\n• {} — {}",
                alert_line(n),
                status_word(n.status).to_lowercase()
            ));
        }
        blocks.push(section(text));
    }
    let footer = context(vec![format!("Idempotency key {} · spendwatch", code(&key))]);
    // Cannot trigger with the limits above; kept so a future change cannot make Slack refuse
    // the message (`invalid_blocks`) instead of losing a few lines of detail.
    blocks.truncate(MAX_BLOCKS - 1);
    blocks.push(footer);

    let first_summary = alerts
        .first()
        .and_then(|n| n.annotations.get("summary"))
        .map(|s| format!(": {s}"))
        .unwrap_or_default();
    let more = if group.alerts.len() > 1 {
        format!(" ({n_firing} firing, {n_resolved} resolved)")
    } else {
        String::new()
    };
    let text = truncate(
        &escape(&format!(
            "[{}] {severity_word} {title}{first_summary}{more}",
            status_word(status)
        )),
        MAX_FALLBACK_TEXT,
    );
    Message {
        text,
        blocks,
        metadata: metadata(EVENT_TYPE, group, &key),
    }
}

fn metadata(event_type: &str, group: &NotificationGroup, key: &str) -> SlackMessageMetadata {
    let (n_firing, n_resolved) = counts(group);
    let mut fingerprints: Vec<&str> = group
        .alerts
        .iter()
        .map(|n| n.fingerprint.as_str())
        .collect();
    fingerprints.sort_unstable();
    fingerprints.dedup();
    let total = fingerprints.len();
    fingerprints.truncate(MAX_METADATA_FINGERPRINTS);
    // Each alert's own key, so a receiver can tell which notifications a message carries.
    let mut alert_keys: Vec<&str> = group
        .alerts
        .iter()
        .map(|n| n.idempotency_key.as_str())
        .collect();
    alert_keys.sort_unstable();
    alert_keys.truncate(MAX_METADATA_FINGERPRINTS);
    let payload: HashMap<String, String> = [
        ("idempotency_key", key.to_string()),
        ("alert_keys", alert_keys.join(",")),
        ("group_key", group.key.clone()),
        ("receiver", group.receiver.clone()),
        ("status", group.status().as_str().to_string()),
        ("fingerprints", fingerprints.join(",")),
        ("alerts", total.to_string()),
        ("firing", n_firing.to_string()),
        ("resolved", n_resolved.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    SlackMessageMetadata::new(event_type.to_string()).with_event_payload(payload)
}

/// How one alert looked in the last message of a thread: enough to say what changed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub firing: bool,
    pub severity: Option<Severity>,
}

/// The alerts of a thread's last message, by fingerprint.
pub type Snapshot = BTreeMap<String, Seen>;

pub fn snapshot(group: &NotificationGroup) -> Snapshot {
    group
        .alerts
        .iter()
        .map(|n| {
            (
                n.fingerprint.clone(),
                Seen {
                    firing: firing(n),
                    severity: severity_of(n),
                },
            )
        })
        .collect()
}

/// What changed in a group since its previous message.
#[derive(Debug, Default, PartialEq)]
pub struct Change<'a> {
    pub resolved: Vec<&'a Notification>,
    pub joined: Vec<&'a Notification>,
    pub fired_again: Vec<&'a Notification>,
    /// The alert and its previous severity.
    pub escalated: Vec<(&'a Notification, Severity)>,
}

impl Change<'_> {
    fn is_empty(&self) -> bool {
        self.resolved.is_empty()
            && self.joined.is_empty()
            && self.fired_again.is_empty()
            && self.escalated.is_empty()
    }
}

/// Compares the group with the previous message's snapshot. Without one (the process
/// restarted since), falls back to what the group itself tells: resolved members are
/// resolutions, and firing members that started after the first message (`opened`) joined.
pub fn diff<'a>(
    group: &'a NotificationGroup,
    previous: Option<&Snapshot>,
    opened: Option<Timestamp>,
) -> Change<'a> {
    let mut change = Change::default();
    for n in ordered(group) {
        let before = previous.and_then(|p| p.get(&n.fingerprint));
        match (firing(n), before, previous.is_some()) {
            (false, Some(Seen { firing: false, .. }), _) => {}
            (false, _, _) => change.resolved.push(n),
            (true, None, true) => change.joined.push(n),
            (true, None, false) => {
                if opened.is_some_and(|t| n.starts_at > t) {
                    change.joined.push(n);
                }
            }
            (true, Some(Seen { firing: false, .. }), _) => change.fired_again.push(n),
            (true, Some(seen), _) => {
                if let (Some(was), Some(now)) = (seen.severity, severity_of(n))
                    && now > was
                {
                    change.escalated.push((n, was));
                }
            }
        }
    }
    change
}

fn listed(heading: &str, items: Vec<String>) -> Option<String> {
    if items.is_empty() {
        return None;
    }
    let extra = items.len().saturating_sub(MAX_CHANGES_LISTED);
    let mut text = format!("*{heading}*");
    for item in items.into_iter().take(MAX_CHANGES_LISTED) {
        text.push_str(&format!("\n• {item}"));
    }
    if extra > 0 {
        text.push_str(&format!("\n…and {extra} more"));
    }
    Some(text)
}

/// The threaded reply posted with an update: what changed, then where the group stands.
pub fn render_change(group: &NotificationGroup, change: &Change) -> Message {
    let (n_firing, n_resolved) = counts(group);
    let lead = if group.status() == NotificationStatus::Resolved {
        ":white_check_mark: *All alerts in this group resolved.*".to_string()
    } else if !change.escalated.is_empty() {
        format!(":arrow_up: *Escalated* — {n_firing} firing, {n_resolved} resolved.")
    } else if change.is_empty() {
        format!(":arrows_counterclockwise: *Updated* — {n_firing} firing, {n_resolved} resolved.")
    } else {
        format!(":information_source: *Changed* — {n_firing} firing, {n_resolved} resolved.")
    };
    let parts: Vec<String> = [
        listed(
            "Escalated",
            change
                .escalated
                .iter()
                .map(|(n, was)| {
                    let now = severity_of(n).map_or("?", Severity::as_str);
                    format!("{} — {} → {now}", alert_line(n), was.as_str())
                })
                .collect(),
        ),
        listed(
            "New alert joined",
            change.joined.iter().map(|n| with_summary(n)).collect(),
        ),
        listed(
            "Firing again",
            change.fired_again.iter().map(|n| with_summary(n)).collect(),
        ),
        listed(
            "Resolved",
            change
                .resolved
                .iter()
                .map(|n| match n.ends_at {
                    Some(end) => format!("{} at {}", alert_line(n), when(end)),
                    None => alert_line(n),
                })
                .collect(),
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut text = lead;
    for part in parts {
        text.push_str("\n\n");
        text.push_str(&part);
    }
    let text = truncate(&text, MAX_SECTION_TEXT);
    Message {
        blocks: vec![section(text.clone())],
        text,
        metadata: metadata(CHANGE_EVENT_TYPE, group, &group.idempotency_key()),
    }
}

fn with_summary(n: &Notification) -> String {
    match n.annotations.get("summary") {
        Some(s) => format!("{}: {}", alert_line(n), escape(s)),
        None => alert_line(n),
    }
}
