//! The Slack sender against the fake Slack Web API (`crate::sim::slack`) on 127.0.0.1.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::render::{self, MAX_BLOCKS, MAX_FIELD_TEXT, MAX_HEADER_TEXT, MAX_SECTION_TEXT};
use super::*;
use crate::config::Secret;
use crate::model::{ContributorLine, Link, Notification, NotificationGroup, NotificationStatus};
use crate::sim::slack::{DEFAULT_BOT_TOKEN, DEFAULT_CHANNEL, DEFAULT_WEBHOOK, FakeSlack};

const TOKEN: &str = "xoxb-111-222-do-not-print";
const CHANNEL: &str = "C0ALERTS";
const WEBHOOK_PATH: &str = "T0TEAM/B0HOOK/webhook-key-do-not-print";

struct Fake {
    slack: FakeSlack,
    base: String,
    _server: tokio::task::JoinHandle<()>,
}

async fn fake() -> Fake {
    let slack = FakeSlack::default();
    slack.set_token(TOKEN);
    slack.add_channel(CHANNEL);
    slack.add_webhook(WEBHOOK_PATH, CHANNEL);
    let (addr, server) = slack.start().await.unwrap();
    Fake {
        slack,
        base: format!("http://{addr}"),
        _server: server,
    }
}

fn receiver(api_url: &str, mode: SlackMode) -> SlackReceiver {
    SlackReceiver {
        name: "oncall".into(),
        mode,
        api_url: url::Url::parse(api_url).unwrap(),
        timeout: Duration::from_secs(5),
    }
}

fn bot(fake: &Fake, token: &str, channel: &str) -> SlackSender {
    SlackSender::new(receiver(
        &format!("{}/api", fake.base),
        SlackMode::Bot {
            token: Secret::new(token),
            channel: channel.into(),
        },
    ))
    .unwrap()
}

fn webhook(fake: &Fake, path: &str) -> SlackSender {
    SlackSender::new(receiver(
        config::DEFAULT_API_URL,
        SlackMode::Webhook {
            url: Secret::new(format!("{}/services/{path}", fake.base)),
        },
    ))
    .unwrap()
}

fn alert(
    fingerprint: &str,
    status: NotificationStatus,
    severity: &str,
    account: &str,
) -> Notification {
    Notification {
        idempotency_key: format!("{fingerprint}-1-{}-oncall", status.as_str()),
        receiver: "oncall".into(),
        status,
        fingerprint: fingerprint.into(),
        rule: "monthly-budget".into(),
        labels: BTreeMap::from([
            ("alertname".to_string(), "monthly-budget".to_string()),
            ("account".to_string(), account.to_string()),
            ("severity".to_string(), severity.to_string()),
        ]),
        annotations: BTreeMap::from([(
            "summary".to_string(),
            format!("Forecast spend of account {account} reaches $1,240.00 by month end"),
        )]),
        value: "$1,240.00".into(),
        threshold: "$1,000.00".into(),
        starts_at: "2026-11-12T08:00:00Z".parse().unwrap(),
        ends_at: (status == NotificationStatus::Resolved)
            .then(|| "2026-11-13T09:30:00Z".parse().unwrap()),
        contributors: vec![
            ContributorLine {
                item: "RCDN/BWOUT".into(),
                amount: "$412.00".into(),
                delta: "+$380.00".into(),
            },
            ContributorLine {
                item: "Cloud Servers".into(),
                amount: "$300.00".into(),
                delta: "+$12.00".into(),
            },
        ],
        links: vec![
            Link {
                title: "Grafana panel".into(),
                url: "https://grafana.example.com/d/spend?var-account=020-1".into(),
            },
            Link {
                title: "Silence".into(),
                url: "https://spendwatch.example.com/silences/new?account=020-1".into(),
            },
        ],
    }
}

fn group(alerts: Vec<Notification>) -> NotificationGroup {
    NotificationGroup {
        receiver: "oncall".into(),
        key: "oncall/account=020-1".into(),
        labels: BTreeMap::from([("account".to_string(), "020-1".to_string())]),
        alerts,
    }
}

fn firing(fp: &str) -> Notification {
    alert(fp, NotificationStatus::Firing, "critical", "020-1")
}

fn resolved(fp: &str) -> Notification {
    alert(fp, NotificationStatus::Resolved, "critical", "020-1")
}

fn blocks_of(body: &Value) -> &Vec<Value> {
    body["blocks"].as_array().expect("blocks")
}

fn of_type<'a>(body: &'a Value, kind: &str) -> Vec<&'a Value> {
    blocks_of(body)
        .iter()
        .filter(|b| b["type"] == kind)
        .collect()
}

fn all_text(body: &Value) -> String {
    body.to_string()
}

#[tokio::test]
async fn block_kit_content_field_by_field() {
    let fake = fake().await;
    let sender = bot(&fake, TOKEN, CHANNEL);
    let g = group(vec![firing("fp0001")]);
    sender.send(&g, None).await.unwrap();

    let requests = fake.slack.requests();
    assert_eq!(requests.len(), 1);
    let post = &requests[0];
    assert_eq!(post.method, "chat.postMessage");
    assert_eq!(post.channel.as_deref(), Some(CHANNEL));
    let body = &post.body;

    let header = of_type(body, "header");
    assert_eq!(header.len(), 1);
    assert_eq!(header[0]["text"]["type"], "plain_text");
    assert_eq!(
        header[0]["text"]["text"],
        ":red_circle: FIRING · CRITICAL · monthly-budget — account 020-1"
    );

    let sections = of_type(body, "section");
    let alert_section = sections[0];
    let text = alert_section["text"]["text"].as_str().unwrap();
    assert_eq!(alert_section["text"]["type"], "mrkdwn");
    assert!(
        text.contains("*monthly-budget* (critical) · account `020-1` — FIRING"),
        "{text}"
    );
    assert!(
        text.contains("Forecast spend of account 020-1 reaches $1,240.00 by month end"),
        "{text}"
    );
    let fields: Vec<&str> = alert_section["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "*Value*\n$1,240.00",
            "*Threshold / expected*\n$1,000.00",
            "*Status*\nFiring since 2026-11-12 08:00 UTC"
        ]
    );

    let contributors = sections[1]["text"]["text"].as_str().unwrap();
    assert_eq!(
        contributors,
        "*Top contributors*\n• `RCDN/BWOUT` — $412.00 (+$380.00)\n• `Cloud Servers` — $300.00 (+$12.00)"
    );

    let actions = of_type(body, "actions");
    assert_eq!(actions.len(), 1);
    let buttons = actions[0]["elements"].as_array().unwrap();
    assert_eq!(buttons.len(), 2);
    assert_eq!(buttons[0]["type"], "button");
    assert_eq!(buttons[0]["text"]["text"], "Grafana panel");
    assert_eq!(
        buttons[0]["url"],
        "https://grafana.example.com/d/spend?var-account=020-1"
    );
    assert_eq!(buttons[1]["text"]["text"], "Silence");

    let footer = blocks_of(body).last().unwrap();
    assert_eq!(footer["type"], "context");
    assert_eq!(
        footer["elements"][0]["text"],
        "Idempotency key `fp0001-1-firing-oncall` · spendwatch"
    );

    let metadata = post.metadata.as_ref().expect("metadata");
    assert_eq!(metadata["event_type"], "spendwatch_alert");
    let payload = &metadata["event_payload"];
    assert_eq!(payload["idempotency_key"], "fp0001-1-firing-oncall");
    assert_eq!(payload["fingerprints"], "fp0001");
    assert_eq!(payload["alert_keys"], "fp0001-1-firing-oncall");
    assert_eq!(payload["status"], "firing");
    assert_eq!(payload["group_key"], "oncall/account=020-1");

    assert_eq!(
        body["text"],
        "[FIRING] CRITICAL monthly-budget — account 020-1: Forecast spend of account 020-1 reaches $1,240.00 by month end"
    );
}

#[tokio::test]
async fn bot_mode_posts_then_resolve_updates_the_same_message_and_replies_in_its_thread() {
    let fake = fake().await;
    let sender = bot(&fake, TOKEN, CHANNEL);

    let opened = sender
        .send(&group(vec![firing("fp0001")]), None)
        .await
        .unwrap();
    let thread = opened.thread.expect("a firing group keeps its thread");
    let first = &fake.slack.requests()[0];
    let ts = first.ts.clone().unwrap();
    assert_eq!(thread, format!("{CHANNEL}:{ts}"));

    let closed = sender
        .send(&group(vec![resolved("fp0001")]), Some(&thread))
        .await
        .unwrap();
    assert_eq!(
        closed.thread, None,
        "a fully resolved group closes its thread"
    );

    let requests = fake.slack.requests();
    assert_eq!(requests.len(), 3);
    let update = &requests[1];
    assert_eq!(update.method, "chat.update");
    assert_eq!(update.channel.as_deref(), Some(CHANNEL));
    assert_eq!(
        update.body["ts"],
        ts.as_str(),
        "the first message is updated"
    );
    assert_eq!(
        of_type(&update.body, "header")[0]["text"]["text"],
        ":white_check_mark: RESOLVED · CRITICAL · monthly-budget — account 020-1"
    );
    assert_eq!(
        update.metadata.as_ref().unwrap()["event_payload"]["status"],
        "resolved"
    );

    let reply = &requests[2];
    assert_eq!(reply.method, "chat.postMessage");
    assert_eq!(reply.thread_ts.as_deref(), Some(ts.as_str()));
    let text = reply.body["text"].as_str().unwrap();
    assert!(
        text.starts_with(":white_check_mark: *All alerts in this group resolved.*"),
        "{text}"
    );
    assert!(
        text.contains(
            "*Resolved*\n• *monthly-budget* (critical) · account `020-1` at 2026-11-13 09:30 UTC"
        ),
        "{text}"
    );
    assert_eq!(
        reply.metadata.as_ref().unwrap()["event_type"],
        "spendwatch_alert_change"
    );

    let stored = fake.slack.message(CHANNEL, &ts).unwrap();
    assert!(
        stored.to_string().contains("RESOLVED"),
        "the channel shows the current state"
    );

    // The next episode starts a new message.
    sender
        .send(&group(vec![firing("fp0001")]), closed.thread.as_deref())
        .await
        .unwrap();
    let last = fake.slack.requests().pop().unwrap();
    assert_eq!(last.method, "chat.postMessage");
    assert_eq!(last.thread_ts, None);
    assert_ne!(last.ts.as_deref(), Some(ts.as_str()));
}

#[tokio::test]
async fn joined_and_escalated_alerts_are_said_in_the_thread() {
    let fake = fake().await;
    let sender = bot(&fake, TOKEN, CHANNEL);
    let warning = alert("fp0001", NotificationStatus::Firing, "warning", "020-1");
    let thread = sender
        .send(&group(vec![warning]), None)
        .await
        .unwrap()
        .thread
        .unwrap();

    let escalated = alert("fp0001", NotificationStatus::Firing, "critical", "020-1");
    let newcomer = alert("fp0002", NotificationStatus::Firing, "warning", "020-2");
    let delivery = sender
        .send(&group(vec![escalated, newcomer]), Some(&thread))
        .await
        .unwrap();
    assert_eq!(
        delivery.thread.as_deref(),
        Some(thread.as_str()),
        "still firing: same thread"
    );

    let requests = fake.slack.requests();
    assert_eq!(requests[1].method, "chat.update");
    let reply = requests[2].body["text"].as_str().unwrap();
    assert!(
        reply.starts_with(":arrow_up: *Escalated* — 2 firing, 0 resolved."),
        "{reply}"
    );
    assert!(
        reply.contains(
            "*Escalated*\n• *monthly-budget* (critical) · account `020-1` — warning → critical"
        ),
        "{reply}"
    );
    assert!(
        reply.contains(
            "*New alert joined*\n• *monthly-budget* (warning) · account `020-2`: Forecast spend"
        ),
        "{reply}"
    );
    assert!(!reply.contains("*Resolved*"), "{reply}");
}

#[tokio::test]
async fn a_restarted_sender_still_reports_resolutions_from_the_group_itself() {
    let fake = fake().await;
    let thread = bot(&fake, TOKEN, CHANNEL)
        .send(&group(vec![firing("fp0001"), firing("fp0002")]), None)
        .await
        .unwrap()
        .thread
        .unwrap();
    // A new process: no memory of the thread's previous message.
    let restarted = bot(&fake, TOKEN, CHANNEL);
    restarted
        .send(
            &group(vec![resolved("fp0001"), firing("fp0002")]),
            Some(&thread),
        )
        .await
        .unwrap();
    let requests = fake.slack.requests();
    assert_eq!(requests[1].method, "chat.update");
    let reply = requests[2].body["text"].as_str().unwrap();
    assert!(
        reply.contains("*Resolved*\n• *monthly-budget* (critical)"),
        "{reply}"
    );
    assert!(
        !reply.contains("New alert joined"),
        "alerts that started before the first message did not join since: {reply}"
    );
}

#[tokio::test]
async fn message_not_found_on_update_posts_a_new_message() {
    let fake = fake().await;
    let sender = bot(&fake, TOKEN, CHANNEL);
    let gone = format!("{CHANNEL}:1700000000.000100");
    let delivery = sender
        .send(&group(vec![firing("fp0001")]), Some(&gone))
        .await
        .unwrap();
    let requests = fake.slack.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].method, "chat.update");
    assert_eq!(requests[0].error.as_deref(), Some("message_not_found"));
    assert_eq!(requests[1].method, "chat.postMessage");
    assert_eq!(requests[1].thread_ts, None, "a fresh message, not a reply");
    let new_ts = requests[1].ts.clone().unwrap();
    assert_eq!(delivery.thread, Some(format!("{CHANNEL}:{new_ts}")));
}

#[tokio::test]
async fn webhook_mode_posts_a_new_message_per_send() {
    let fake = fake().await;
    let sender = webhook(&fake, WEBHOOK_PATH);
    let first = sender
        .send(&group(vec![firing("fp0001")]), None)
        .await
        .unwrap();
    let second = sender
        .send(&group(vec![resolved("fp0001")]), Some("ignored:1.0"))
        .await
        .unwrap();
    assert_eq!(first.thread, None);
    assert_eq!(second.thread, None);
    let requests = fake.slack.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests
            .iter()
            .all(|r| r.method == "webhook" && r.status == 200)
    );
    assert_eq!(requests[0].channel.as_deref(), Some(CHANNEL));
    assert_ne!(requests[0].ts, requests[1].ts, "two messages");
    assert_eq!(requests[1].thread_ts, None);
    assert_eq!(
        of_type(&requests[1].body, "header")[0]["text"]["text"],
        ":white_check_mark: RESOLVED · CRITICAL · monthly-budget — account 020-1"
    );
    assert_eq!(
        requests[0].metadata.as_ref().unwrap()["event_payload"]["idempotency_key"],
        "fp0001-1-firing-oncall"
    );
}

#[tokio::test]
async fn http_429_is_recoverable_with_retry_after_and_not_retried_inside() {
    let fake = fake().await;
    let senders = [bot(&fake, TOKEN, CHANNEL), webhook(&fake, WEBHOOK_PATH)];
    for sender in &senders {
        fake.slack.rate_limit_next(1, 7);
        let before = fake.slack.requests().len();
        let err = sender
            .send(&group(vec![firing("fp0001")]), None)
            .await
            .unwrap_err();
        assert!(err.recoverable, "{err}");
        assert_eq!(err.reason, "rate_limited");
        assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(
            fake.slack.requests().len(),
            before + 1,
            "one attempt: the dispatcher owns retries"
        );
        sender
            .send(&group(vec![firing("fp0001")]), None)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn permanent_slack_errors_stop_with_their_code_as_reason() {
    let fake = fake().await;
    let err = bot(&fake, "xoxb-wrong", CHANNEL)
        .send(&group(vec![firing("fp0001")]), None)
        .await
        .unwrap_err();
    assert!(!err.recoverable);
    assert_eq!(err.reason, "invalid_auth");
    assert!(err.message.contains("invalid_auth"), "{err}");

    let err = bot(&fake, TOKEN, "C0NOWHERE")
        .send(&group(vec![firing("fp0001")]), None)
        .await
        .unwrap_err();
    assert!(!err.recoverable);
    assert_eq!(err.reason, "channel_not_found");

    let err = webhook(&fake, "T0/B0/unknown")
        .send(&group(vec![firing("fp0001")]), None)
        .await
        .unwrap_err();
    assert!(!err.recoverable);
    assert_eq!(err.reason, "no_service");
    assert!(err.message.contains("HTTP 404"), "{err}");

    fake.slack
        .fail_next(Some("chat.postMessage"), "a_code_from_the_future", 1);
    let err = bot(&fake, TOKEN, CHANNEL)
        .send(&group(vec![firing("fp0001")]), None)
        .await
        .unwrap_err();
    assert!(!err.recoverable);
    assert_eq!(err.reason, "slack_error", "unknown codes share one label");
    assert!(err.message.contains("a_code_from_the_future"), "{err}");
}

#[tokio::test]
async fn transient_slack_errors_are_recoverable() {
    let fake = fake().await;
    let sender = bot(&fake, TOKEN, CHANNEL);
    for (code, reason) in [
        ("ratelimited", "rate_limited"),
        ("internal_error", "internal_error"),
        ("service_unavailable", "service_unavailable"),
        ("fatal_error", "fatal_error"),
        ("request_timeout", "request_timeout"),
    ] {
        fake.slack.fail_next(Some("chat.postMessage"), code, 1);
        let err = sender
            .send(&group(vec![firing("fp0001")]), None)
            .await
            .unwrap_err();
        assert!(err.recoverable, "{code}: {err}");
        assert_eq!(err.reason, reason);
    }
    // A webhook's HTTP 500 `rollup_error` too.
    fake.slack.fail_next(Some("webhook"), "rollup_error", 1);
    let err = webhook(&fake, WEBHOOK_PATH)
        .send(&group(vec![firing("fp0001")]), None)
        .await
        .unwrap_err();
    assert!(err.recoverable, "{err}");
    assert_eq!(err.reason, "rollup_error");
}

#[tokio::test]
async fn a_failed_thread_reply_fails_the_send_so_it_is_retried_whole() {
    let fake = fake().await;
    let sender = bot(&fake, TOKEN, CHANNEL);
    let thread = sender
        .send(&group(vec![firing("fp0001")]), None)
        .await
        .unwrap()
        .thread
        .unwrap();
    fake.slack
        .fail_next(Some("chat.postMessage"), "internal_error", 1);
    let err = sender
        .send(&group(vec![resolved("fp0001")]), Some(&thread))
        .await
        .unwrap_err();
    assert!(err.recoverable);
    // The retry updates again (idempotent) and replies.
    let delivery = sender
        .send(&group(vec![resolved("fp0001")]), Some(&thread))
        .await
        .unwrap();
    assert_eq!(delivery.thread, None);
    let methods: Vec<String> = fake
        .slack
        .requests()
        .into_iter()
        .map(|r| r.method)
        .collect();
    assert_eq!(
        methods,
        [
            "chat.postMessage",
            "chat.update",
            "chat.postMessage",
            "chat.update",
            "chat.postMessage"
        ]
    );
    let reply = fake.slack.requests().pop().unwrap();
    assert!(reply.body["text"].as_str().unwrap().contains("*Resolved*"));
}

#[tokio::test]
async fn transport_failures_are_recoverable() {
    // A port with nothing listening.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let sender = SlackSender::new(receiver(
        &format!("http://{closed_addr}/api"),
        SlackMode::Bot {
            token: Secret::new(TOKEN),
            channel: CHANNEL.into(),
        },
    ))
    .unwrap();
    let err = sender
        .send(&group(vec![firing("fp0001")]), None)
        .await
        .unwrap_err();
    assert!(err.recoverable);
    assert_eq!(err.reason, "connect");

    // A server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let mut config = receiver(
        &format!("http://{silent_addr}/api"),
        SlackMode::Bot {
            token: Secret::new(TOKEN),
            channel: CHANNEL.into(),
        },
    );
    config.timeout = Duration::from_millis(300);
    let err = SlackSender::new(config)
        .unwrap()
        .send(&group(vec![firing("fp0001")]), None)
        .await
        .unwrap_err();
    assert!(err.recoverable);
    assert_eq!(err.reason, "timeout");
    hold.abort();
}

#[tokio::test]
async fn debug_and_errors_never_contain_the_token_or_webhook_url() {
    let fake = fake().await;
    let webhook_url = format!("{}/services/{WEBHOOK_PATH}", fake.base);
    let secrets = [
        TOKEN,
        WEBHOOK_PATH,
        "webhook-key-do-not-print",
        webhook_url.as_str(),
    ];
    let assert_clean = |what: &str, text: &str| {
        for s in secrets {
            assert!(!text.contains(s), "{what} leaks a secret: {text}");
        }
    };

    let bot_sender = bot(&fake, TOKEN, CHANNEL);
    let hook_sender = webhook(&fake, WEBHOOK_PATH);
    assert_clean("bot Debug", &format!("{bot_sender:?}"));
    assert_clean("webhook Debug", &format!("{hook_sender:?}"));

    let g = group(vec![firing("fp0001")]);
    let mut errors = Vec::new();
    fake.slack.fail_next(None, "invalid_auth", 1);
    errors.push(bot_sender.send(&g, None).await.unwrap_err());
    fake.slack.rate_limit_next(2, 3);
    errors.push(bot_sender.send(&g, None).await.unwrap_err());
    errors.push(hook_sender.send(&g, None).await.unwrap_err());
    fake.slack.fail_next(Some("webhook"), "invalid_token", 1);
    errors.push(hook_sender.send(&g, None).await.unwrap_err());
    // The webhook's key is in the path: a wrong key is `no_service`.
    let wrong_key = SlackSender::new(receiver(
        "https://slack.com/api",
        SlackMode::Webhook {
            url: Secret::new(format!("{}/services/{WEBHOOK_PATH}-x", fake.base)),
        },
    ))
    .unwrap();
    errors.push(wrong_key.send(&g, None).await.unwrap_err());
    // Transport errors, whose text comes from the HTTP stack.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let unreachable = SlackSender::new(receiver(
        "https://slack.com/api",
        SlackMode::Webhook {
            url: Secret::new(format!("http://{closed_addr}/services/{WEBHOOK_PATH}")),
        },
    ))
    .unwrap();
    errors.push(unreachable.send(&g, None).await.unwrap_err());
    assert_eq!(errors.len(), 6);
    for e in &errors {
        assert_clean("error Display", &e.to_string());
        assert_clean("error Debug", &format!("{e:?}"));
    }
}

#[test]
fn user_text_is_escaped_for_mrkdwn() {
    let mut n = firing("fp0001");
    n.annotations.insert(
        "summary".into(),
        "<!channel> spend & <https://evil.example|click here>".into(),
    );
    n.labels.insert("account".into(), "a<b>&c".into());
    n.contributors[0].item = "<@U123>".into();
    n.links[0].title = "<b>&".into();
    let message = render::render(&group(vec![n]));
    let body = serde_json::to_value(message.content()).unwrap();
    let section = of_type(&body, "section")[0]["text"]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        section.contains("&lt;!channel&gt; spend &amp; &lt;https://evil.example|click here&gt;"),
        "{section}"
    );
    assert!(section.contains("account `a&lt;b&gt;&amp;c`"), "{section}");
    let contributors = of_type(&body, "section")[1]["text"]["text"]
        .as_str()
        .unwrap();
    assert!(contributors.contains("`&lt;@U123&gt;`"), "{contributors}");
    // No raw control sequence survives anywhere in mrkdwn text.
    for text in [section.as_str(), contributors, message.text.as_str()] {
        assert!(
            !text.contains("<!channel>") && !text.contains("<@U123>"),
            "{text}"
        );
    }
    // Plain-text objects (header, button labels) are shown literally by Slack.
    assert_eq!(
        of_type(&body, "actions")[0]["elements"][0]["text"]["text"],
        "<b>&"
    );
    assert_eq!(render::escape("a&b<c>d"), "a&amp;b&lt;c&gt;d");
    // Truncation never cuts an entity in half.
    let cut = render::truncate(&render::escape("aaaa&"), 7);
    assert_eq!(cut, "aaaa…");
}

/// Every text object of a rendered message with its kind, for limit checks.
fn texts(body: &Value) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for block in blocks_of(body) {
        let kind = block["type"].as_str().unwrap().to_string();
        if let Some(t) = block["text"]["text"].as_str() {
            out.push((kind.clone(), t.chars().count()));
        }
        for f in block["fields"].as_array().into_iter().flatten() {
            out.push(("field".into(), f["text"].as_str().unwrap().chars().count()));
        }
        for e in block["elements"].as_array().into_iter().flatten() {
            if let Some(t) = e["text"].as_str() {
                out.push(("context".into(), t.chars().count()));
            }
            if let Some(t) = e["text"]["text"].as_str() {
                out.push(("button".into(), t.chars().count()));
            }
        }
    }
    out
}

#[tokio::test]
async fn two_hundred_alerts_fit_in_one_valid_message() {
    let fake = fake().await;
    let alerts: Vec<Notification> = (0..200)
        .map(|i| {
            let status = if i % 10 == 9 {
                NotificationStatus::Resolved
            } else {
                NotificationStatus::Firing
            };
            let mut n = alert(
                &format!("fp{i:04}"),
                status,
                "warning",
                &format!("acct-{i:03}"),
            );
            n.annotations.insert(
                "summary".into(),
                format!("{i}: {}", "spend & more ".repeat(400)),
            );
            n.contributors = (0..20)
                .map(|j| ContributorLine {
                    item: format!("item-{j}-{}", "x".repeat(100)),
                    amount: "$1.00".into(),
                    delta: "+$1.00".into(),
                })
                .collect();
            n.links[0].title = "a very long link title ".repeat(10);
            n
        })
        .collect();
    let mut g = group(alerts);
    g.labels.clear();
    let message = render::render(&g);
    let body = serde_json::to_value(message.content()).unwrap();

    assert!(
        blocks_of(&body).len() <= MAX_BLOCKS,
        "{} blocks",
        blocks_of(&body).len()
    );
    for (kind, len) in texts(&body) {
        let limit = match kind.as_str() {
            "header" => MAX_HEADER_TEXT,
            "section" => MAX_SECTION_TEXT,
            "button" => render::MAX_BUTTON_TEXT,
            _ => MAX_FIELD_TEXT,
        };
        assert!(len <= limit, "{kind} text of {len} chars");
    }
    let header = of_type(&body, "header")[0]["text"]["text"]
        .as_str()
        .unwrap();
    assert_eq!(
        header,
        ":large_orange_circle: FIRING · WARNING · monthly-budget — 200 accounts"
    );
    assert!(all_text(&body).contains("…and *190* more alerts (170 firing, 20 resolved):"));
    let shown_sections = of_type(&body, "section")
        .iter()
        .filter(|s| s["fields"].is_array())
        .count();
    assert_eq!(shown_sections, render::MAX_ALERTS_SHOWN);
    assert_eq!(
        message.metadata.event_payload.as_ref().unwrap()["alerts"],
        "200"
    );
    assert_eq!(
        message.metadata.event_payload.as_ref().unwrap()["fingerprints"]
            .split(',')
            .count(),
        render::MAX_METADATA_FINGERPRINTS
    );
    assert_eq!(
        message.metadata.event_payload.as_ref().unwrap()["alert_keys"]
            .split(',')
            .count(),
        render::MAX_METADATA_FINGERPRINTS
    );
    assert!(message.text.chars().count() <= render::MAX_FALLBACK_TEXT);
    assert!(
        message.metadata.event_payload.as_ref().unwrap()["idempotency_key"].starts_with("group-")
    );

    // And Slack (the fake) accepts it.
    bot(&fake, TOKEN, CHANNEL).send(&g, None).await.unwrap();
    assert_eq!(fake.slack.requests()[0].status, 200);
}

#[tokio::test]
async fn the_simulator_serves_the_fake_slack_under_slash_slack() {
    let sim = crate::sim::Sim::new(crate::model::Clock::System, Vec::new());
    let (addr, server) = sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let sender = SlackSender::new(receiver(
        &format!("http://{addr}/slack/api"),
        SlackMode::Bot {
            token: Secret::new(DEFAULT_BOT_TOKEN),
            channel: DEFAULT_CHANNEL.into(),
        },
    ))
    .unwrap();
    let delivery = sender
        .send(&group(vec![firing("fp0001")]), None)
        .await
        .unwrap();
    assert!(
        delivery
            .thread
            .unwrap()
            .starts_with(&format!("{DEFAULT_CHANNEL}:"))
    );
    let hook = SlackSender::new(receiver(
        "https://slack.com/api",
        SlackMode::Webhook {
            url: Secret::new(format!("http://{addr}/slack/services/{DEFAULT_WEBHOOK}")),
        },
    ))
    .unwrap();
    hook.send(&group(vec![firing("fp0001")]), None)
        .await
        .unwrap();
    let methods: Vec<String> = sim.slack.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["chat.postMessage", "webhook"]);
    server.abort();
}

fn check_config(
    text: &str,
    dir: &Path,
) -> Result<crate::config::Config, Vec<crate::config::ConfigError>> {
    let raw = crate::config::parse_raw(text).map_err(|e| vec![e])?;
    crate::config::validate(raw, dir)
}

#[test]
fn config_accepts_both_modes_with_defaults_and_reports_bad_fields_by_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(
        dir.path().join("hook"),
        format!("https://hooks.slack.com/services/{WEBHOOK_PATH}"),
    )
    .unwrap();
    std::fs::write(dir.path().join("not-a-url"), WEBHOOK_PATH).unwrap();

    let config = check_config(
        r#"
[[receivers]]
slack = { name = "oncall", token = { file = "token" }, channel = "C0ALERTS" }

[[receivers]]
[receivers.slack]
name = "finops"
webhook_url = { file = "hook" }
api_url = "http://127.0.0.1:9999/api/"
timeout = "3s"
"#,
        dir.path(),
    )
    .unwrap();
    let [
        crate::config::ReceiverConfig::Slack(bot),
        crate::config::ReceiverConfig::Slack(hook),
    ] = config.receivers.as_slice()
    else {
        panic!("two slack receivers: {:?}", config.receivers);
    };
    assert_eq!(bot.name, "oncall");
    assert_eq!(bot.api_url.as_str(), "https://slack.com/api");
    assert_eq!(bot.timeout, Duration::from_secs(10));
    match &bot.mode {
        SlackMode::Bot { token, channel } => {
            assert_eq!(token.expose(), TOKEN);
            assert_eq!(channel, "C0ALERTS");
        }
        other => panic!("bot mode expected: {other:?}"),
    }
    assert_eq!(hook.api_url.as_str(), "http://127.0.0.1:9999/api");
    assert_eq!(hook.timeout, Duration::from_secs(3));
    assert!(
        matches!(&hook.mode, SlackMode::Webhook { url } if url.expose().ends_with(WEBHOOK_PATH))
    );
    assert!(
        !format!("{config:?}").contains(TOKEN),
        "Debug of the config hides secrets"
    );

    let errors = check_config(
        r#"
[[receivers]]
slack = { name = "both", token = { file = "token" }, channel = "C1", webhook_url = { file = "hook" } }
[[receivers]]
slack = { name = "no-channel", token = { file = "token" } }
[[receivers]]
slack = { name = "no-token", channel = "C1" }
[[receivers]]
slack = { name = "nothing" }
[[receivers]]
slack = { name = "bad-url", webhook_url = { file = "not-a-url" } }
[[receivers]]
slack = { name = "bad-api", token = { file = "token" }, channel = "C 1", api_url = "ftp://x", timeout = "soon" }
[[receivers]]
slack = { name = "nothing", webhook_url = { file = "hook" } }
"#,
        dir.path(),
    )
    .unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "receivers[0].slack",
            "receivers[1].slack.channel",
            "receivers[2].slack.token",
            "receivers[3].slack",
            "receivers[4].slack.webhook_url",
            "receivers[5].slack.api_url",
            "receivers[5].slack.timeout",
            "receivers[5].slack.channel",
            "receivers[6].slack.name",
        ],
        "{errors:?}"
    );
    let all = format!("{errors:?}");
    assert!(!all.contains(WEBHOOK_PATH) && !all.contains(TOKEN), "{all}");
    assert!(
        all.contains("not an http(s) URL (value not shown)"),
        "{all}"
    );
    assert!(
        all.contains("duplicate receiver name \\\"nothing\\\""),
        "{all}"
    );

    let inline = check_config(
        "[[receivers]]\nslack = { name = \"x\", webhook_url = \"https://hooks.slack.com/services/T/B/inline-secret\" }\n",
        dir.path(),
    )
    .unwrap_err();
    assert!(
        !format!("{inline:?}").contains("inline-secret"),
        "{inline:?}"
    );
}
