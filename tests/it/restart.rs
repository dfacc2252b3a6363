//! A SIGKILL between firing and delivery: after restart the pending notification is
//! delivered exactly once, and the alert is not fired a second time.

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_notification_is_delivered_exactly_once_after_sigkill() {
    let (sim, sim_addr) = start_sim().await;
    // The receiver is down: every delivery attempt gets a 503.
    post_json(
        &format!("http://{sim_addr}/_sim/webhook/mode"),
        serde_json::json!({"status": 503}),
    )
    .await;
    let config = write_config(sim_addr, ConfigOptions::default());
    let mut daemon = Daemon::start(&config).await;
    adjust(sim_addr, "020-1001", "6000.00").await;

    eventually(
        "a failed delivery attempt",
        Duration::from_secs(30),
        || async {
            sim.webhook_requests()
                .iter()
                .any(|r| r.answered == 503)
                .then_some(())
        },
    )
    .await;
    daemon
        .wait_metric("outbox backlog", &["spendwatch_outbox_pending"], |v| {
            v == 1.0
        })
        .await;
    daemon.kill();

    // The receiver recovers; the daemon restarts on the same store.
    post_json(
        &format!("http://{sim_addr}/_sim/webhook/mode"),
        serde_json::json!({"status": 200}),
    )
    .await;
    let daemon = Daemon::start(&config).await;
    eventually(
        "delivery after restart",
        Duration::from_secs(30),
        || async { (!sim.accepted_webhooks().is_empty()).then_some(()) },
    )
    .await;
    daemon
        .wait_for_more(
            "more evaluations after delivery",
            &["spendwatch_rule_evaluations_total"],
            3.0,
        )
        .await;
    daemon
        .wait_metric("outbox drained", &["spendwatch_outbox_pending"], |v| {
            v == 0.0
        })
        .await;

    let accepted = sim.accepted_webhooks();
    assert_eq!(accepted.len(), 1, "delivered exactly once");
    let all = sim.webhook_requests();
    let keys: std::collections::BTreeSet<_> = all
        .iter()
        .map(|r| r.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "every attempt, before and after the restart, carried the same key"
    );
    let body: serde_json::Value = serde_json::from_str(&accepted[0].body).unwrap();
    assert_eq!(body["status"], "firing");
    let text = daemon.metrics().await;
    assert_eq!(
        metric(
            &text,
            &["spendwatch_alerts", "rule=\"budget\"", "state=\"firing\""]
        ),
        Some(1.0),
        "the restored alert is still firing"
    );
    assert_eq!(
        metric_sum(
            &text,
            &["spendwatch_alert_transitions_total", "state=\"firing\""]
        ),
        0.0,
        "the restarted daemon did not fire it again"
    );
}
