//! The real binary delivering to the fake Slack Web API the simulator serves under `/slack`:
//! bot-token and incoming-webhook receivers, Block Kit content, the idempotency key in the
//! message metadata, and a permanent Slack error counted under its code.

use std::time::Duration;

use spendwatch::sim::slack::{DEFAULT_BOT_TOKEN, DEFAULT_CHANNEL, DEFAULT_WEBHOOK, SlackRequest};

use crate::support::*;

fn with_status<'a>(
    requests: &'a [SlackRequest],
    method: &str,
    status: &str,
) -> Vec<&'a SlackRequest> {
    requests
        .iter()
        .filter(|r| r.method == method && r.status == 200)
        .filter(|r| {
            r.metadata.as_ref().is_some_and(|m| {
                m["event_type"] == "spendwatch_alert" && m["event_payload"]["status"] == status
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_receivers_get_block_kit_alerts_from_the_real_binary() {
    let (sim, sim_addr) = start_sim().await;
    let extra = format!(
        r#"
[[receivers]]
slack = {{ name = "slack-bot", token = {{ file = "slack-token" }}, channel = "{DEFAULT_CHANNEL}", api_url = "http://{sim_addr}/slack/api", timeout = "2s" }}

[[receivers]]
slack = {{ name = "slack-hook", webhook_url = {{ file = "slack-webhook" }}, timeout = "2s" }}

[[receivers]]
slack = {{ name = "slack-broken", token = {{ file = "slack-token" }}, channel = "C0NOWHERE", api_url = "http://{sim_addr}/slack/api" }}
"#
    );
    let config = write_config(
        sim_addr,
        ConfigOptions {
            extra,
            route: fast_route_to(&["hook", "slack-bot", "slack-hook", "slack-broken"]),
            ..ConfigOptions::default()
        },
    );
    std::fs::write(config.dir.path().join("slack-token"), DEFAULT_BOT_TOKEN).unwrap();
    std::fs::write(
        config.dir.path().join("slack-webhook"),
        format!("http://{sim_addr}/slack/services/{DEFAULT_WEBHOOK}"),
    )
    .unwrap();
    let daemon = Daemon::start(&config).await;
    daemon.wait_first_poll().await;

    adjust(sim_addr, "020-1001", "6000.00").await;
    let requests = eventually("firing Slack messages", Duration::from_secs(30), || async {
        let all = sim.slack.requests();
        let both = !with_status(&all, "chat.postMessage", "firing").is_empty()
            && !with_status(&all, "webhook", "firing").is_empty();
        both.then_some(all)
    })
    .await;
    let post = with_status(&requests, "chat.postMessage", "firing")[0];
    assert_eq!(post.channel.as_deref(), Some(DEFAULT_CHANNEL));
    let blocks = post.body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(
        blocks[0]["text"]["text"],
        ":red_circle: FIRING · CRITICAL · budget — account 020-1001"
    );
    let section = blocks
        .iter()
        .find(|b| b["type"] == "section" && b["fields"].is_array())
        .expect("an alert section");
    assert!(
        section["text"]["text"]
            .as_str()
            .unwrap()
            .contains("$5,000.00 budget"),
        "{section}"
    );
    assert_eq!(section["fields"][1]["text"], "*Threshold / expected*\n5000");
    let key = post.metadata.as_ref().unwrap()["event_payload"]["idempotency_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(key.ends_with("-firing-slack-bot"), "{key}");
    let footer = blocks.last().unwrap();
    assert!(
        footer["elements"][0]["text"]
            .as_str()
            .unwrap()
            .contains(&key)
    );

    adjust(sim_addr, "020-1001", "-6000.00").await;
    let requests = eventually(
        "resolved Slack messages",
        Duration::from_secs(30),
        || async {
            let all = sim.slack.requests();
            let bot_resolved = !with_status(&all, "chat.update", "resolved").is_empty();
            (bot_resolved && !with_status(&all, "webhook", "resolved").is_empty()).then_some(all)
        },
    )
    .await;
    // The bot edits the message it posted and says so in its thread (the dispatcher kept the
    // thread reference between the two sends).
    let update = with_status(&requests, "chat.update", "resolved")[0];
    assert_eq!(update.ts, post.ts, "the firing message itself is updated");
    assert!(
        requests
            .iter()
            .any(|r| r.method == "chat.postMessage" && r.thread_ts == post.ts && r.status == 200),
        "a threaded reply under the firing message"
    );

    let text = daemon.metrics().await;
    for receiver in ["slack-bot", "slack-hook"] {
        assert_eq!(
            metric(
                &text,
                &[
                    "spendwatch_notifications_total",
                    &format!("receiver=\"{receiver}\""),
                    "outcome=\"delivered\""
                ]
            ),
            Some(2.0),
            "{receiver}: firing and resolved delivered once each"
        );
    }
    let broken = metric(
        &text,
        &[
            "spendwatch_notification_failures_total",
            "receiver=\"slack-broken\"",
            "reason=\"channel_not_found\"",
        ],
    );
    assert_eq!(
        broken,
        Some(2.0),
        "firing and resolved each failed once with the permanent code; neither was retried"
    );
    assert!(
        metric(
            &text,
            &[
                "spendwatch_notifications_total",
                "receiver=\"slack-broken\"",
                "outcome=\"dead\""
            ]
        )
        .is_some_and(|n| n >= 1.0),
        "its notification is dead-lettered"
    );
    let log = daemon.log_text();
    assert!(
        log.contains("channel_not_found"),
        "the error is surfaced in the log"
    );
    assert!(
        !log.contains(DEFAULT_BOT_TOKEN),
        "the token never appears in the log"
    );
    assert!(
        !log.contains(DEFAULT_WEBHOOK),
        "the webhook URL never appears in the log"
    );
}
