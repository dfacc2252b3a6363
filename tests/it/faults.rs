//! The fault matrix against the running daemon: token expiry, malformed JSON, an HTML
//! page, a 500 and a timeout. The daemon keeps running, counts each by reason, and
//! writes nothing for a failed poll.

use jiff::Timestamp;
use rust_decimal::Decimal;
use spendwatch::model::series::SPEND_PTD as METRIC_TOTAL;
use spendwatch::sim::{FaultKind, FaultRequest};
use spendwatch::store::{SeriesFilter, SqliteStore, Store};

use crate::support::*;

/// Observations one successful poll of 020-1001 produces: total + 3 line items + 3 usage.
const OBSERVATIONS_PER_POLL: f64 = 7.0;

fn stored_totals(config: &TestConfig) -> Vec<Decimal> {
    let store = SqliteStore::open(&store_path(config)).expect("open store");
    let series = store
        .list_series(&SeriesFilter {
            metric: Some(METRIC_TOTAL.into()),
            ..Default::default()
        })
        .expect("series");
    assert_eq!(series.len(), 1);
    store
        .points(&series[0].key, Timestamp::UNIX_EPOCH, Timestamp::now())
        .expect("points")
        .into_iter()
        .map(|p| p.value)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiry_mid_run_reauthenticates_without_a_gap() {
    let (sim, sim_addr) = start_sim().await;
    let config = write_config(sim_addr, ConfigOptions::default());
    let mut daemon = Daemon::start(&config).await;
    daemon.wait_first_poll().await;
    let auths_before = sim.stats().auth_requests;
    post_json(
        &format!("http://{sim_addr}/_sim/expire-tokens"),
        serde_json::json!({}),
    )
    .await;
    let unauthorized_before = sim.stats().unauthorized;
    daemon
        .wait_for_more(
            "two more successful polls",
            &["spendwatch_polls_total", "outcome=\"success\""],
            2.0,
        )
        .await;
    let stats = sim.stats();
    assert!(
        stats.unauthorized > unauthorized_before,
        "the expired token was rejected"
    );
    assert!(
        stats.auth_requests > auths_before,
        "and the daemon re-authenticated"
    );
    let text = daemon.metrics().await;
    assert_eq!(
        metric_sum(&text, &["spendwatch_poll_errors_total"]),
        0.0,
        "no poll failed: {text}"
    );
    daemon.kill();

    let totals = stored_totals(&config);
    assert!(!totals.is_empty());
    assert!(
        totals.iter().all(|v| *v > Decimal::ZERO),
        "no zero was recorded: {totals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_responses_are_counted_by_reason_and_never_stored() {
    let (sim, sim_addr) = start_sim().await;
    let config = write_config(
        sim_addr,
        ConfigOptions {
            timeout: "1s",
            ..Default::default()
        },
    );
    let mut daemon = Daemon::start(&config).await;
    daemon.wait_first_poll().await;

    for (fault, reason) in [
        (FaultKind::Malformed, "malformed"),
        (FaultKind::Html, "not_json"),
        (FaultKind::Status500, "http_5xx"),
        (FaultKind::Timeout, "timeout"),
    ] {
        let request = FaultRequest {
            api: "rackspace".into(),
            fault,
            count: 1,
            delay_ms: Some(3_000),
        };
        post_json(
            &format!("http://{sim_addr}/_sim/faults"),
            serde_json::to_value(&request).unwrap(),
        )
        .await;
        daemon
            .wait_metric(
                reason,
                &[
                    "spendwatch_poll_errors_total",
                    "source=\"rs\"",
                    &format!("reason=\"{reason}\""),
                ],
                |v| v >= 1.0,
            )
            .await;
    }
    // Still alive and polling successfully afterwards.
    daemon
        .wait_for_more(
            "recovery",
            &["spendwatch_polls_total", "outcome=\"success\""],
            2.0,
        )
        .await;
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "daemon still running"
    );
    assert_eq!(sim.stats().faults_served, 4);

    // Every observation written came from a successful poll.
    let text = daemon.metrics().await;
    let success = metric(&text, &["spendwatch_polls_total", "outcome=\"success\""]).unwrap();
    let written = metric_sum(&text, &["spendwatch_observations_written_total"]);
    assert_eq!(written, success * OBSERVATIONS_PER_POLL, "{text}");
    let log = daemon.log_text();
    assert!(
        log.contains("request_id="),
        "failures are logged with the poll's request id"
    );
    daemon.kill();

    let totals = stored_totals(&config);
    assert!(
        totals.iter().all(|v| *v > Decimal::ZERO),
        "no zero was recorded: {totals:?}"
    );
}
