//! The Rackspace client against the project's simulator on 127.0.0.1: paging, token
//! refresh, the retry table and faults. Each case checks what was (not) returned.

use std::net::SocketAddr;
use std::time::Duration;

use jiff::Timestamp;
use rust_decimal::Decimal;

use super::RackspaceClient;
use super::config::RackspaceSettings;
use crate::config::Secret;
use crate::model::series::{
    ITEM_SPEND_PTD as METRIC_LINE_ITEM, SPEND_PTD as METRIC_TOTAL, USAGE_PTD as METRIC_USAGE,
};
use crate::sim::{self, FaultKind, FaultRequest, Sim};
use crate::sources::http::{HttpPolicy, PollErrorKind};
use crate::sources::testkit::{assert_fault_matrix, poll_ok, start_sim};

fn client(addr: SocketAddr, api_key: &str, page_size: u32, max_retries: usize) -> RackspaceClient {
    RackspaceClient::new(RackspaceSettings {
        name: "rs".into(),
        username: sim::DEFAULT_USERNAME.into(),
        api_key: Secret::new(api_key),
        accounts: vec!["020-1001".into()],
        interval: Duration::from_secs(60),
        identity_url: format!("http://{addr}/v2.0/").parse().unwrap(),
        billing_url: format!("http://{addr}/v2/").parse().unwrap(),
        page_size,
        max_pages: 10,
        policy: HttpPolicy {
            timeout: Duration::from_millis(500),
            max_retries,
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            ..HttpPolicy::default()
        },
    })
    .unwrap()
}

async fn fault(sim: &Sim, fault: FaultKind, count: u32) {
    sim.inject_fault(FaultRequest {
        api: "rackspace".into(),
        fault,
        count,
        delay_ms: Some(2_000),
    });
}

#[tokio::test]
async fn reads_every_page_and_maps_all_series() {
    let (sim, addr) = start_sim().await;
    for page_size in [1, 2, 200] {
        let obs = client(addr, sim::DEFAULT_API_KEY, page_size, 0)
            .poll_account("020-1001", Timestamp::now(), "t")
            .await
            .unwrap();
        let count = |m: &str| obs.iter().filter(|o| o.key.metric == m).count();
        assert_eq!(
            (
                count(METRIC_TOTAL),
                count(METRIC_LINE_ITEM),
                count(METRIC_USAGE)
            ),
            (1, 3, 3),
            "page size {page_size}"
        );
        let items: Decimal = obs
            .iter()
            .filter(|o| o.key.metric == METRIC_LINE_ITEM)
            .map(|o| o.value)
            .sum();
        assert_eq!(items, obs[0].value, "line items add up to the total");
    }
    assert_eq!(sim.stats().auth_requests, 3, "one token per client");
}

#[tokio::test]
async fn cached_token_is_reused_and_refreshed_after_a_401() {
    let (sim, addr) = start_sim().await;
    let c = client(addr, sim::DEFAULT_API_KEY, 200, 0);
    for _ in 0..3 {
        c.poll_account("020-1001", Timestamp::now(), "t")
            .await
            .unwrap();
    }
    assert_eq!(sim.stats().auth_requests, 1);
    sim.expire_tokens();
    c.poll_account("020-1001", Timestamp::now(), "t")
        .await
        .unwrap();
    let stats = sim.stats();
    assert_eq!((stats.auth_requests, stats.unauthorized), (2, 1));
}

#[tokio::test]
async fn wrong_api_key_is_an_auth_error() {
    let (_sim, addr) = start_sim().await;
    let err = client(addr, "not-the-key", 200, 3)
        .poll_account("020-1001", Timestamp::now(), "t")
        .await
        .unwrap_err();
    assert_eq!(err.kind, PollErrorKind::Auth);
    assert!(!err.message.contains("not-the-key"));
}

#[tokio::test]
async fn unknown_account_is_a_client_error_without_retries() {
    let (sim, addr) = start_sim().await;
    let err = client(addr, sim::DEFAULT_API_KEY, 200, 3)
        .poll_account("020-9999", Timestamp::now(), "t")
        .await
        .unwrap_err();
    assert_eq!(err.kind, PollErrorKind::Client);
    assert!(err.message.contains("Account not Found"), "{}", err.message);
    assert_eq!(sim.stats().billing_requests, 1, "a 404 is not retried");
}

#[tokio::test]
async fn transient_faults_are_retried_within_the_poll() {
    let (sim, addr) = start_sim().await;
    for kind in [
        FaultKind::Status500,
        FaultKind::Status429,
        FaultKind::Html,
        FaultKind::Timeout,
    ] {
        fault(&sim, kind, 1).await;
        let obs = client(addr, sim::DEFAULT_API_KEY, 200, 1)
            .poll_account("020-1001", Timestamp::now(), "t")
            .await;
        assert!(obs.is_ok(), "{kind:?} then success: {obs:?}");
    }
    assert_eq!(sim.stats().faults_served, 4);
}

#[tokio::test]
async fn fault_matrix() {
    let (sim, addr) = start_sim().await;
    let source = client(addr, sim::DEFAULT_API_KEY, 2, 1);
    assert_fault_matrix(
        &source,
        &sim,
        "rackspace",
        "020-1001",
        &[
            (FaultKind::Malformed, PollErrorKind::Malformed),
            (FaultKind::Truncated, PollErrorKind::Malformed),
            (FaultKind::Html, PollErrorKind::NotJson),
            (FaultKind::Status500, PollErrorKind::Server),
            (FaultKind::Status503, PollErrorKind::Server),
            (FaultKind::Status429, PollErrorKind::RateLimited),
            (FaultKind::Timeout, PollErrorKind::Timeout),
        ],
    )
    .await;
    // A 401 re-authenticates once and retries: one fault is absorbed, two are an auth error.
    sim.inject_fault(FaultRequest {
        api: "rackspace".into(),
        fault: FaultKind::Status401,
        count: 1,
        delay_ms: None,
    });
    poll_ok(&source, "020-1001").await;
    sim.inject_fault(FaultRequest {
        api: "rackspace".into(),
        fault: FaultKind::Status401,
        count: 2,
        delay_ms: None,
    });
    let err = source
        .poll_account("020-1001", Timestamp::now(), "t")
        .await
        .unwrap_err();
    assert_eq!(err.kind, PollErrorKind::Auth);
}

#[tokio::test]
async fn empty_period_is_zero_spend_not_an_error() {
    let (sim, addr) = start_sim().await;
    sim.inject_fault(FaultRequest {
        api: "rackspace".into(),
        fault: FaultKind::EmptyPeriod,
        count: 1,
        delay_ms: None,
    });
    let obs = client(addr, sim::DEFAULT_API_KEY, 2, 0)
        .poll_account("020-1001", Timestamp::now(), "t")
        .await
        .unwrap();
    // The API itself says "nothing accrued yet": a real zero, with its billing period.
    assert_eq!(obs.len(), 1);
    assert_eq!(obs[0].value, Decimal::ZERO);
    assert!(obs[0].period.is_some());
}
