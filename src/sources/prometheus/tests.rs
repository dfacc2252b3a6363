//! The Prometheus source against the simulator's `query_range` and the fault matrix.

use std::net::SocketAddr;
use std::time::Duration;

use jiff::Timestamp;
use rust_decimal::prelude::ToPrimitive;

use super::PrometheusClient;
use super::config::{PrometheusSettings, QuerySettings};
use crate::model::series::TRAFFIC;
use crate::sources::BillingSource;
use crate::sources::http::{HttpPolicy, PollErrorKind};
use crate::sources::testkit::{STANDARD_FAULTS, assert_fault_matrix, poll_ok, start_sim};

fn client(addr: SocketAddr, query: &str) -> PrometheusClient {
    PrometheusClient::new(PrometheusSettings {
        name: "prom".into(),
        url: format!("http://{addr}/").parse().unwrap(),
        queries: vec![QuerySettings {
            name: "requests".into(),
            query: query.into(),
            unit: "requests".into(),
            account_label: "account".into(),
            account: None,
        }],
        step: Duration::from_secs(3600),
        lookback: Duration::from_secs(6 * 3600),
        interval: Duration::from_secs(60),
        bearer_token: None,
        policy: HttpPolicy {
            timeout: Duration::from_millis(500),
            max_retries: 1,
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            ..HttpPolicy::default()
        },
    })
    .unwrap()
}

const QUERY: &str = "sum by (account) (increase(requests_total[1h]))";

#[tokio::test]
async fn reads_hourly_traffic_per_account_over_whole_steps() {
    let (_sim, addr) = start_sim().await;
    let source = client(addr, QUERY);
    let obs = poll_ok(&source, "requests").await;
    let rackspace: Vec<_> = obs.iter().filter(|o| o.key.account == "020-1001").collect();
    assert_eq!(rackspace.len(), 6, "six whole hours");
    let now = Timestamp::now();
    for o in &rackspace {
        assert_eq!(o.key.metric, TRAFFIC);
        assert_eq!(o.key.labels["series"], "requests");
        assert_eq!(o.at.as_second() % 3600, 0, "aligned to the step");
        assert!(o.at <= now, "never a step still in progress");
        // base 10,000/h with a ±50 % daily cycle
        let v = o.value.to_f64().unwrap();
        assert!((4_900.0..=15_100.0).contains(&v), "{v}");
    }
}

#[tokio::test]
async fn unknown_series_is_empty_and_bad_queries_are_client_errors() {
    let (_sim, addr) = start_sim().await;
    assert!(
        poll_ok(&client(addr, "sum(rate(nothing_here[5m]))"), "requests")
            .await
            .is_empty()
    );
    let err = client(addr, "sum(rate(requests_total[5m])")
        .poll("requests", Timestamp::now(), "t")
        .await
        .unwrap_err();
    assert_eq!(err.kind, PollErrorKind::Client);
    assert!(err.message.contains("bad_data"), "{}", err.message);
}

#[tokio::test]
async fn fault_matrix() {
    let (sim, addr) = start_sim().await;
    assert_fault_matrix(
        &client(addr, QUERY),
        &sim,
        "prometheus",
        "requests",
        STANDARD_FAULTS,
    )
    .await;
}
