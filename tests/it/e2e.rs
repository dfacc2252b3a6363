//! The whole path: simulated Rackspace → `spendwatch run` → budget alert → signed webhook,
//! with `/metrics` showing spend and alert state.

use std::collections::BTreeSet;
use std::time::Duration;

use spendwatch::config::Secret;
use spendwatch::notify::webhook::verify;
use spendwatch::sim::receiver::ReceivedWebhook;

use crate::support::*;

fn by_status<'a>(hooks: &'a [ReceivedWebhook], status: &str) -> Vec<&'a ReceivedWebhook> {
    hooks
        .iter()
        .filter(|h| {
            serde_json::from_str::<serde_json::Value>(&h.body)
                .map(|b| b["status"] == status)
                .unwrap_or(false)
        })
        .collect()
}

fn assert_signed(hook: &ReceivedWebhook) {
    let ts: i64 = hook.headers["x-spendwatch-timestamp"]
        .parse()
        .expect("timestamp header");
    let sig = &hook.headers["x-spendwatch-signature"];
    assert!(
        verify(&Secret::new(WEBHOOK_SECRET), ts, hook.body.as_bytes(), sig),
        "signature must verify: {sig}"
    );
    let body: serde_json::Value = serde_json::from_str(&hook.body).expect("JSON body");
    assert_eq!(
        hook.headers["idempotency-key"],
        body["idempotencyKey"].as_str().unwrap_or("")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overspend_fires_once_and_resolves_once_with_signed_webhooks() {
    let (sim, sim_addr) = start_sim().await;
    let config = write_config(sim_addr, ConfigOptions::default());
    let mut daemon = Daemon::start(&config).await;

    // Spend is visible before anything happens, and below budget.
    let spend = daemon
        .wait_metric(
            "spend gauge",
            &[
                "spendwatch_spend_period_to_date",
                "account=\"020-1001\"",
                "currency=\"USD\"",
            ],
            |v| v > 0.0,
        )
        .await;
    assert!(
        spend < 5000.0,
        "demo account starts under the $5,000 budget, got {spend}"
    );
    let text = daemon.metrics().await;
    assert!(
        metric(
            &text,
            &[
                "spendwatch_line_item_spend_period_to_date",
                "item=\"RCDN/BWOUT\""
            ]
        )
        .is_some()
    );
    assert!(metric(&text, &["spendwatch_usage_period_to_date", "unit=\"GB\""]).is_some());
    assert_eq!(
        metric(
            &text,
            &["spendwatch_alerts", "rule=\"budget\"", "state=\"firing\""]
        ),
        Some(0.0)
    );

    // Injected overspend: one firing notification.
    adjust(sim_addr, "020-1001", "6000.00").await;
    eventually("firing webhook", Duration::from_secs(30), || async {
        (!by_status(&sim.accepted_webhooks(), "firing").is_empty()).then_some(())
    })
    .await;
    daemon
        .wait_metric(
            "alert firing in /metrics",
            &["spendwatch_alerts", "rule=\"budget\"", "state=\"firing\""],
            |v| v == 1.0,
        )
        .await;

    // The API shows the firing alert with its explanation, and the rule's verdicts.
    let alerts: serde_json::Value = reqwest::get(format!("{}/api/v1/alerts", daemon.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let active = alerts["data"]["alerts"].as_array().unwrap();
    assert_eq!(active.len(), 1, "{alerts}");
    assert_eq!(active[0]["state"], "firing");
    assert!(
        active[0]["summary"]
            .as_str()
            .unwrap()
            .contains("$5,000.00 budget"),
        "{alerts}"
    );
    let rules: serde_json::Value = reqwest::get(format!("{}/api/v1/rules", daemon.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rule = &rules["data"]["rules"][0];
    assert_eq!(rule["name"], "budget");
    assert_eq!(rule["health"], "ok");
    assert_eq!(rule["instances"][0]["outcome"], "breach", "{rules}");
    assert!(rule["last_evaluation"].is_string());

    // Credit it back: one resolved notification.
    adjust(sim_addr, "020-1001", "-6000.00").await;
    eventually("resolved webhook", Duration::from_secs(30), || async {
        (!by_status(&sim.accepted_webhooks(), "resolved").is_empty()).then_some(())
    })
    .await;

    // Let several more poll/evaluate cycles pass, then count: still exactly one of each.
    daemon
        .wait_for_more(
            "three more evaluations",
            &["spendwatch_rule_evaluations_total"],
            3.0,
        )
        .await;
    let hooks = sim.accepted_webhooks();
    let firing = by_status(&hooks, "firing");
    let resolved = by_status(&hooks, "resolved");
    assert_eq!(firing.len(), 1, "exactly one firing notification");
    assert_eq!(resolved.len(), 1, "exactly one resolved notification");
    for h in firing.iter().chain(&resolved) {
        assert_signed(h);
    }
    let keys: BTreeSet<_> = hooks
        .iter()
        .map(|h| h.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(
        keys.len(),
        hooks.len(),
        "every delivery has its own idempotency key"
    );

    let fired: serde_json::Value = serde_json::from_str(&firing[0].body).unwrap();
    assert_eq!(fired["labels"]["account"], "020-1001");
    assert_eq!(fired["labels"]["team"], "payments");
    assert_eq!(fired["labels"]["severity"], "critical");
    assert_eq!(fired["threshold"], "5000");
    let value: f64 = fired["value"].as_str().unwrap().parse().unwrap();
    assert!(value > 6000.0, "value is the spend that crossed: {value}");
    assert!(
        fired["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("$5,000.00 budget")
    );
    let done: serde_json::Value = serde_json::from_str(&resolved[0].body).unwrap();
    assert_eq!(done["fingerprint"], fired["fingerprint"]);
    assert!(done["endsAt"].is_string());

    let text = daemon.metrics().await;
    assert_eq!(
        metric(
            &text,
            &["spendwatch_alerts", "rule=\"budget\"", "state=\"firing\""]
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &text,
            &["spendwatch_notifications_total", "outcome=\"delivered\""]
        ),
        Some(2.0)
    );
    assert_eq!(metric(&text, &["spendwatch_outbox_pending"]), Some(0.0));
    assert!(metric(&text, &["spendwatch_budget", "rule=\"budget\""]) == Some(5000.0));
    assert!(
        metric(
            &text,
            &[
                "spendwatch_last_successful_poll_timestamp_seconds",
                "source=\"rs\""
            ]
        )
        .is_some()
    );
    assert!(
        metric(
            &text,
            &[
                "spendwatch_last_data_timestamp_seconds",
                "account=\"020-1001\""
            ]
        )
        .is_some()
    );
    assert!(
        metric(
            &text,
            &["spendwatch_poll_duration_seconds_count", "source=\"rs\""]
        )
        .unwrap_or(0.0)
            >= 1.0
    );

    // The backtest replays the same history through the same rules: the same alert fires
    // and resolves, in that order.
    daemon.kill();
    let report_path = config.dir.path().join("backtest.json");
    let out = run_cli(
        &[
            "backtest",
            "--config",
            config.path.to_str().unwrap(),
            "--from-store",
            // Finer than the 1 s poll interval: the breach may have lasted under a second of
            // data time when polls ran close together.
            "--step",
            "250ms",
            "--output",
            report_path.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let replayed: Vec<(String, String)> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["change"] != "PENDING")
        .map(|e| {
            (
                e["change"].as_str().unwrap().to_string(),
                e["fingerprint"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let fp = fired["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(
        replayed,
        vec![
            ("FIRING".to_string(), fp.clone()),
            ("RESOLVED".to_string(), fp)
        ],
        "{report}"
    );
    assert_eq!(report["rules"]["budget"]["fired"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_and_metric_names() {
    let (_sim, sim_addr) = start_sim().await;
    let config = write_config(sim_addr, ConfigOptions::default());
    let daemon = Daemon::start(&config).await;
    let health = reqwest::get(format!("{}/healthz", daemon.base))
        .await
        .unwrap();
    assert!(health.status().is_success());
    let text = daemon.metrics().await;
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        assert!(
            line.starts_with("spendwatch_"),
            "every series has the prefix: {line}"
        );
    }
    for counter in text
        .lines()
        .filter(|l| l.starts_with("# TYPE") && l.ends_with(" counter"))
    {
        let name = counter.split(' ').nth(2).unwrap();
        assert!(name.ends_with("_total"), "counter {name} ends in _total");
    }
}
