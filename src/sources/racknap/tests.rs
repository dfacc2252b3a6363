//! The RackNap client against the project's simulator and against small scripted servers
//! on 127.0.0.1 (for the misbehaviours the simulator does not produce): envelope checks,
//! paging and its guards, the retry table, rate limits, faults and parser robustness.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::RacknapClient;
use super::client::read_list;
use super::config::{RacknapSettings, policy};
use crate::config::Secret;
use crate::model::series::{LABEL_CURRENCY, SPEND_TOTAL};
use crate::model::{Currency, ObservationKind, Unit};
use crate::sim::world::Api;
use crate::sim::{self, FaultKind, FaultRequest, Sim};
use crate::sources::BillingSource;
use crate::sources::http::{Fetched, HttpPolicy, PollErrorKind};
use crate::sources::testkit::{STANDARD_FAULTS, assert_fault_matrix, poll_ok, start_sim};

const CUSTOMERS: usize = 3;
const PERIODS: usize = sim::racknap::CLOSED_PERIODS;

fn settings(
    addr: SocketAddr,
    api_key: &str,
    page_size: u32,
    max_retries: usize,
) -> RacknapSettings {
    RacknapSettings {
        name: "rn".into(),
        api_key: Secret::new(api_key),
        customers: Vec::new(),
        currency: Currency::new("USD").unwrap(),
        ignore_statuses: Vec::new(),
        interval: Duration::from_secs(60),
        base_url: format!("http://{addr}/v1/").parse().unwrap(),
        page_size,
        max_pages: 10,
        policy: HttpPolicy {
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            ..policy(Duration::from_millis(500), max_retries)
        },
    }
}

fn client(addr: SocketAddr, api_key: &str, page_size: u32, max_retries: usize) -> RacknapClient {
    RacknapClient::new(settings(addr, api_key, page_size, max_retries)).unwrap()
}

async fn poll(
    c: &RacknapClient,
    target: &str,
) -> Result<Vec<crate::model::Observation>, crate::sources::PollError> {
    c.poll_target(target, Timestamp::now(), "t").await
}

fn fault(sim: &Sim, fault: FaultKind, count: u32) {
    sim.inject_fault(FaultRequest {
        api: "racknap".into(),
        fault,
        count,
        delay_ms: Some(2_000),
    });
}

// ------------------------------------------------------------------ against the simulator

#[tokio::test]
async fn every_customer_s_closed_periods_match_the_simulated_world() {
    let (sim, addr) = start_sim().await;
    let c = client(addr, sim::DEFAULT_API_KEY, 100, 0);
    assert_eq!(c.targets(), vec!["all".to_string()]);
    let now = Timestamp::now();
    let obs = c.poll_target("all", now, "t").await.unwrap();
    let accounts = sim.accounts(Api::Racknap);
    assert_eq!(accounts.len(), CUSTOMERS);
    assert_eq!(obs.len(), CUSTOMERS * PERIODS);
    for acct in &accounts {
        let mut period = acct.period(now).unwrap();
        for _ in 0..PERIODS {
            period = acct.previous_period(period).unwrap();
            let (_, charges) = acct
                .charges(period.end - SignedDuration::from_millis(1))
                .unwrap();
            let expected: Decimal = charges.iter().map(|c| c.amount).sum();
            let o = obs
                .iter()
                .find(|o| o.key.account == acct.id && o.period == Some(period))
                .unwrap_or_else(|| panic!("{} {period:?} missing", acct.id));
            assert_eq!(o.key.source, "rn");
            assert_eq!(o.key.metric, SPEND_TOTAL);
            assert_eq!(o.key.labels.len(), 1);
            assert_eq!(o.key.labels[LABEL_CURRENCY], acct.currency);
            assert_eq!(o.value, expected.round_dp(2), "{} {period:?}", acct.id);
            assert_eq!(o.kind, ObservationKind::PeriodTotal);
            assert_eq!(o.unit, Unit::Money(Currency::new(&acct.currency).unwrap()));
            assert_eq!(
                o.at, period.end,
                "a closed period is described up to its end"
            );
        }
    }
    let eur = obs
        .iter()
        .filter(|o| o.key.labels[LABEL_CURRENCY] == "EUR")
        .count();
    assert_eq!(eur, PERIODS, "the EUR customer keeps its currency");
    assert_eq!(sim.stats().billing_requests, 1);
}

#[tokio::test]
async fn a_configured_customer_is_listed_with_customer_id() {
    let (sim, addr) = start_sim().await;
    let mut s = settings(addr, sim::DEFAULT_API_KEY, 100, 0);
    s.customers = vec!["cust_7a1c9e05".into(), "cust_5e2b7d19".into()];
    let c = RacknapClient::new(s).unwrap();
    assert_eq!(c.targets(), vec!["cust_7a1c9e05", "cust_5e2b7d19"]);
    let obs = poll(&c, "cust_5e2b7d19").await.unwrap();
    assert_eq!(obs.len(), PERIODS);
    assert!(obs.iter().all(|o| o.key.account == "cust_5e2b7d19"));
    assert!(
        obs.iter()
            .all(|o| o.unit == Unit::Money(Currency::new("EUR").unwrap()))
    );
    // A customer without invoices: nothing, not a zero.
    assert!(poll(&c, "cust_00000000").await.unwrap().is_empty());
    assert_eq!(sim.stats().billing_requests, 2);
}

#[tokio::test]
async fn small_pages_give_the_same_totals() {
    let (sim, addr) = start_sim().await;
    let reference = poll(&client(addr, sim::DEFAULT_API_KEY, 100, 0), "all")
        .await
        .unwrap();
    for (page_size, pages) in [(1u32, 9u64), (2, 5), (4, 3)] {
        let before = sim.stats().billing_requests;
        let obs = poll(&client(addr, sim::DEFAULT_API_KEY, page_size, 0), "all")
            .await
            .unwrap();
        assert_eq!(obs, reference, "page size {page_size}");
        assert_eq!(
            sim.stats().billing_requests - before,
            pages,
            "page size {page_size}: one request per page"
        );
    }
}

#[tokio::test]
async fn too_many_pages_is_a_paging_error() {
    let (sim, addr) = start_sim().await;
    let mut s = settings(addr, sim::DEFAULT_API_KEY, 1, 0);
    s.max_pages = 4;
    let err = poll(&RacknapClient::new(s).unwrap(), "all")
        .await
        .unwrap_err();
    assert_eq!(err.kind, PollErrorKind::Paging);
    assert_eq!(sim.stats().billing_requests, 4);
}

#[tokio::test]
async fn wrong_api_key_is_an_auth_error_without_the_key() {
    let (sim, addr) = start_sim().await;
    let wrong = "rk_live_not-the-key-9f8e7d";
    let err = poll(&client(addr, wrong, 100, 3), "all").await.unwrap_err();
    assert_eq!(err.kind, PollErrorKind::Auth);
    assert!(!err.message.contains(wrong), "{}", err.message);
    assert!(!err.to_string().contains(wrong));
    assert!(
        err.message.contains("Invalid or missing API key"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("RackNap requestId req_"),
        "{}",
        err.message
    );
    let stats = sim.stats();
    assert_eq!(
        (stats.billing_requests, stats.unauthorized),
        (1, 1),
        "a bad key is not retried"
    );
    let settings = settings(addr, wrong, 100, 3);
    assert!(!format!("{settings:?}").contains(wrong));
}

#[tokio::test]
async fn a_429_waits_for_x_ratelimit_reset_then_succeeds() {
    let (sim, addr) = start_sim().await;
    let c = client(addr, sim::DEFAULT_API_KEY, 100, 1);
    fault(&sim, FaultKind::Status429, 1);
    // The fault's reset is the next whole second after it is served.
    let started = Instant::now();
    let reset_at = Timestamp::now().as_second() + 1;
    let earliest = Duration::from_millis(
        u64::try_from(reset_at * 1000 - Timestamp::now().as_millisecond()).unwrap_or(0),
    );
    let obs = poll(&c, "all").await.unwrap();
    let waited = started.elapsed();
    assert_eq!(obs.len(), CUSTOMERS * PERIODS);
    assert!(
        waited + Duration::from_millis(50) >= earliest,
        "retried after {waited:?}, before the reset ({earliest:?} away)"
    );
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    let stats = sim.stats();
    assert_eq!((stats.faults_served, stats.billing_requests), (1, 2));
}

#[tokio::test]
async fn transient_faults_are_retried_within_the_poll() {
    let (sim, addr) = start_sim().await;
    for kind in [
        FaultKind::Status500,
        FaultKind::Status503,
        FaultKind::Html,
        FaultKind::Timeout,
    ] {
        fault(&sim, kind, 1);
        let started = Instant::now();
        let obs = poll(&client(addr, sim::DEFAULT_API_KEY, 100, 1), "all").await;
        assert!(obs.is_ok(), "{kind:?} then success: {obs:?}");
        // Every simulated response carries `X-RateLimit-Reset` (the next minute): only a
        // 429 waits for it.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{kind:?}: retried after {:?}",
            started.elapsed()
        );
    }
    assert_eq!(sim.stats().faults_served, 4);
}

#[tokio::test]
async fn fault_matrix() {
    let (sim, addr) = start_sim().await;
    let source = client(addr, sim::DEFAULT_API_KEY, 4, 1);
    assert_fault_matrix(&source, &sim, "racknap", "all", STANDARD_FAULTS).await;
}

#[tokio::test]
async fn status_faults_name_the_request_id() {
    let (sim, addr) = start_sim().await;
    for kind in [FaultKind::Status401, FaultKind::Status500] {
        fault(&sim, kind, 1);
        let err = poll(&client(addr, sim::DEFAULT_API_KEY, 100, 0), "all")
            .await
            .unwrap_err();
        assert!(
            err.message.contains("RackNap requestId req_"),
            "{kind:?}: {}",
            err.message
        );
    }
}

#[tokio::test]
async fn empty_period_is_no_invoice_yet_not_an_error_nor_a_zero() {
    let (sim, addr) = start_sim().await;
    let c = client(addr, sim::DEFAULT_API_KEY, 100, 0);
    let full = poll_ok(&c, "all").await;
    fault(&sim, FaultKind::EmptyPeriod, 1);
    let obs = poll_ok(&c, "all").await;
    assert_eq!(obs.len(), CUSTOMERS * (PERIODS - 1));
    let newest = full.iter().map(|o| o.period.unwrap().end).max().unwrap();
    assert!(obs.iter().all(|o| o.period.unwrap().end < newest));
    assert!(obs.iter().all(|o| o.value > Decimal::ZERO));
    // The older periods are unchanged.
    for o in &obs {
        assert!(full.contains(o), "{o:?}");
    }
}

#[tokio::test]
async fn every_response_carries_rate_limit_headers() {
    let (sim, addr) = start_sim().await;
    let http = reqwest::Client::new();
    let get = |key: &'static str| {
        http.get(format!("http://{addr}/v1/invoices?limit=2"))
            .bearer_auth(key)
            .send()
    };
    let first = get(sim::DEFAULT_API_KEY).await.unwrap();
    let second = get("wrong").await.unwrap();
    assert_eq!(second.status(), 401);
    for (r, remaining) in [(&first, "999"), (&second, "998")] {
        let h = r.headers();
        assert_eq!(h["x-ratelimit-limit"], "1000");
        assert_eq!(h["x-ratelimit-remaining"], remaining);
        let reset: i64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
        assert!(reset > Timestamp::now().as_second() && reset <= Timestamp::now().as_second() + 60);
    }
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["type"], "authentication_error");
    assert!(
        body["meta"]["requestId"]
            .as_str()
            .unwrap()
            .starts_with("req_")
    );
    assert_eq!(sim.stats().unauthorized, 1);
}

// ------------------------------------------------------------------ scripted servers

/// A server answering `GET /v1/invoices` from `script(offset, request number)`.
async fn scripted<F>(script: F) -> SocketAddr
where
    F: Fn(u64, usize) -> Response + Send + Sync + 'static,
{
    crate::ensure_crypto_provider();
    let script = Arc::new(script);
    let calls = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/v1/invoices",
        get(move |Query(q): Query<HashMap<String, String>>| {
            let (script, calls) = (script.clone(), calls.clone());
            async move {
                let offset = q.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
                script(offset, calls.fetch_add(1, Ordering::SeqCst))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn invoice(n: u64) -> Value {
    json!({"id": format!("inv_{n}"), "customerId": "cust_1", "amount": 1.25, "status": "PAID",
           "dueDate": "2026-05-10"})
}

fn list_body(data: Vec<Value>, total: u64, offset: u64, has_more: bool) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"success": true, "code": 200, "data": data,
               "pagination": {"total": total, "offset": offset, "limit": 2, "hasMore": has_more},
               "meta": {"timestamp": "2026-06-02T14:32:10Z", "requestId": format!("req_o{offset}")}})
        .to_string(),
    )
        .into_response()
}

#[tokio::test]
async fn paging_guards() {
    type Script = fn(u64, usize) -> Response;
    let cases: [(&str, Script, &str); 5] = [
        (
            "ignores offset",
            |_, _| list_body(vec![invoice(1), invoice(2)], 6, 0, true),
            "answered offset 0",
        ),
        (
            "never stops",
            |o, _| list_body(vec![invoice(o), invoice(o + 1)], 1_000_000, o, true),
            "more than 10 pages",
        ),
        (
            "empty page with hasMore",
            |o, _| list_body(Vec::new(), 6, o, true),
            "would not advance",
        ),
        (
            "repeats an invoice",
            |o, _| list_body(vec![invoice(o.min(1)), invoice(5)], 4, o, true),
            "listed twice",
        ),
        (
            "fewer than total",
            |o, _| list_body(vec![invoice(o)], 3, o, o < 1),
            "reports 3 invoices but listed 2",
        ),
    ];
    for (name, script, expected) in cases {
        let addr = scripted(script).await;
        let err = poll(&client(addr, "k", 2, 3), "all").await.unwrap_err();
        assert_eq!(err.kind, PollErrorKind::Paging, "{name}: {err}");
        assert!(err.message.contains(expected), "{name}: {}", err.message);
        if name != "never stops" {
            assert!(
                err.message.contains("RackNap requestId req_o"),
                "{name}: {}",
                err.message
            );
        }
    }
}

#[tokio::test]
async fn a_capped_page_size_is_followed_by_what_was_received() {
    // Asked for 2 per page, the server sends 1: offsets advance by 1.
    let addr = scripted(|o, _| list_body(vec![invoice(o)], 3, o, o < 2)).await;
    let obs = poll(&client(addr, "k", 2, 0), "all").await.unwrap();
    assert_eq!(obs.len(), 1, "three invoices of one customer and month");
    assert_eq!(obs[0].value, Decimal::from_str("3.75").unwrap());
}

#[tokio::test]
async fn success_false_with_http_200_is_an_error() {
    let addr = scripted(|_, _| {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"success": false, "code": 403, "error": {"message": "Key lacks invoices:read", "type": "permission_error"},
                "meta": {"timestamp": "2026-06-02T14:32:10Z", "requestId": "req_denied"}}"#,
        )
            .into_response()
    })
    .await;
    let err = poll(&client(addr, "k", 2, 3), "all").await.unwrap_err();
    assert_eq!(err.kind, PollErrorKind::Auth);
    assert!(
        err.message.contains("Key lacks invoices:read"),
        "{}",
        err.message
    );
    assert!(err.message.contains("permission_error"), "{}", err.message);
    assert!(
        err.message.ends_with("RackNap requestId req_denied"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn nearly_used_up_quota_holds_the_next_page_until_the_reset() {
    let addr = scripted(|o, call| {
        let mut r = list_body(vec![invoice(o)], 2, o, o < 1);
        if call == 0 {
            let reset = Timestamp::now().as_second() + 1;
            let h = r.headers_mut();
            h.insert("x-ratelimit-remaining", HeaderValue::from_static("3"));
            h.insert(
                "x-ratelimit-reset",
                HeaderValue::from_str(&reset.to_string()).unwrap(),
            );
        }
        r
    })
    .await;
    let started = Instant::now();
    let earliest = Duration::from_millis(
        u64::try_from(
            (Timestamp::now().as_second() + 1) * 1000 - Timestamp::now().as_millisecond(),
        )
        .unwrap_or(0),
    );
    poll(&client(addr, "k", 1, 0), "all").await.unwrap();
    assert!(
        started.elapsed() + Duration::from_millis(50) >= earliest,
        "the second page went out {:?} after the first, before the reset",
        started.elapsed()
    );
}

// ------------------------------------------------------------------ the envelope, offline

fn fetched(status: u16, content_type: &str, body: &str) -> Fetched {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap(),
    );
    Fetched {
        status: StatusCode::from_u16(status).unwrap(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

const JSON: &str = "application/json";

#[test]
fn the_documented_list_response_reads_field_by_field() {
    let listed = read_list(&fetched(
        200,
        JSON,
        include_str!("fixtures/quickstart-list.json"),
    ))
    .unwrap();
    assert_eq!(listed.request_id.as_deref(), Some("req_xyz789"));
    assert_eq!(listed.list.data.len(), 1);
    assert_eq!(listed.list.data[0].amount.0, Decimal::from(1250));
    assert!(listed.list.pagination.has_more);
}

#[test]
fn the_documented_error_envelope_becomes_an_error_with_its_request_id() {
    let body = include_str!("fixtures/error.json");
    let err = read_list(&fetched(404, JSON, body)).unwrap_err();
    assert_eq!(err.kind, PollErrorKind::Client);
    assert_eq!(
        err.message,
        "HTTP 404 Not Found: Invoice not found (type not_found); RackNap requestId req_abc123"
    );
    // The same body with HTTP 200: `success` decides, the body's `code` classifies.
    let err = read_list(&fetched(200, JSON, body)).unwrap_err();
    assert_eq!(err.kind, PollErrorKind::Client);
    assert!(
        err.message.contains("success=false (code 404)"),
        "{}",
        err.message
    );
    assert!(err.message.ends_with("RackNap requestId req_abc123"));
}

#[test]
fn envelope_table() {
    let rid = r#""meta":{"requestId":"req_1"}"#;
    // (HTTP status, content type, body, expected kind, requestId in the message)
    let cases: Vec<(u16, &str, String, PollErrorKind, bool)> = vec![
        (
            429,
            JSON,
            format!(
                r#"{{"success":false,"error":{{"message":"slow down","type":"rate_limit"}},{rid}}}"#
            ),
            PollErrorKind::RateLimited,
            true,
        ),
        (
            401,
            JSON,
            format!(r#"{{"success":false,"error":{{"message":"bad key"}},{rid}}}"#),
            PollErrorKind::Auth,
            true,
        ),
        (
            403,
            JSON,
            format!(r#"{{"success":false,{rid}}}"#),
            PollErrorKind::Auth,
            true,
        ),
        (
            408,
            JSON,
            format!(r#"{{"success":false,{rid}}}"#),
            PollErrorKind::Timeout,
            true,
        ),
        (
            404,
            JSON,
            format!(r#"{{"success":false,{rid}}}"#),
            PollErrorKind::Client,
            true,
        ),
        (
            502,
            "text/html",
            "<html>Bad gateway</html>".into(),
            PollErrorKind::Server,
            false,
        ),
        (
            200,
            JSON,
            format!(r#"{{"success":false,"code":429,{rid}}}"#),
            PollErrorKind::RateLimited,
            true,
        ),
        (
            200,
            JSON,
            format!(r#"{{"success":false,"code":401,{rid}}}"#),
            PollErrorKind::Auth,
            true,
        ),
        (
            200,
            JSON,
            format!(r#"{{"success":false,"code":200,{rid}}}"#),
            PollErrorKind::Server,
            true,
        ),
        (
            200,
            JSON,
            format!(r#"{{"success":false,{rid}}}"#),
            PollErrorKind::Server,
            true,
        ),
        // A `code` of the wrong type: not the documented envelope.
        (
            200,
            JSON,
            format!(r#"{{"success":false,"code":"x",{rid}}}"#),
            PollErrorKind::Malformed,
            false,
        ),
        (
            200,
            JSON,
            format!(
                r#"{{"success":true,"code":500,"data":[],"pagination":{{"total":0,"offset":0,"limit":10,"hasMore":false}},{rid}}}"#
            ),
            PollErrorKind::Malformed,
            true,
        ),
        (
            200,
            JSON,
            format!(r#"{{"success":true,"code":200,"data":[],{rid}}}"#),
            PollErrorKind::Malformed,
            true,
        ),
        (
            200,
            "text/html",
            "<html>Maintenance</html>".into(),
            PollErrorKind::NotJson,
            false,
        ),
        (
            200,
            JSON,
            r#"{"code":200,"data":[]}"#.into(),
            PollErrorKind::Malformed,
            false,
        ),
    ];
    for (status, ct, body, kind, with_rid) in cases {
        let err = read_list(&fetched(status, ct, &body)).unwrap_err();
        assert_eq!(err.kind, kind, "{status} {body}: {err}");
        let suffix = if with_rid {
            "; RackNap requestId req_1"
        } else {
            "; no RackNap requestId"
        };
        assert!(
            err.message.ends_with(suffix),
            "{status} {body}: {}",
            err.message
        );
    }
}

#[test]
fn parser_corpus_never_panics() {
    let page = |data: &str| {
        format!(
            r#"{{"success":true,"code":200,"data":{data},"pagination":{{"total":1,"offset":0,"limit":10,"hasMore":false}},"meta":{{"requestId":"req_c"}}}}"#
        )
    };
    // Accepted: optional fields missing, unknown fields, empty list, non-ASCII, no meta.
    for ok in [
        page("[]"),
        page(r#"[{"id":"inv_1","customerId":"cust_1","amount":0}]"#),
        page(r#"[{"id":"inv_1","customerId":"cust_ü東京","amount":-12.5,"status":"ÜBERFÄLLIG","extra":{"x":[1,2]}}]"#),
        r#"{"success":true,"data":[],"pagination":{"total":0,"offset":0,"limit":10,"hasMore":false},"unknown":1}"#.into(),
    ] {
        assert!(read_list(&fetched(200, JSON, &ok)).is_ok(), "{ok}");
    }
    // Refused: wrong types, missing required fields, not an envelope at all.
    for bad in [
        page(r#"[{"id":"inv_1","customerId":"cust_1","amount":"lots"}]"#),
        page(r#"[{"id":"inv_1","customerId":"cust_1","amount":true}]"#),
        page(r#"[{"id":"inv_1","customerId":"cust_1","amount":1e999}]"#),
        page(r#"[{"id":"inv_1","customerId":"cust_1"}]"#),
        page(r#"[{"id":1,"customerId":"cust_1","amount":1}]"#),
        page(r#"[{"id":"inv_1","customerId":null,"amount":1}]"#),
        page(r#"[{"id":"inv_1","customerId":"c","amount":1,"periodStart":5}]"#),
        page(r#"{"id":"inv_1"}"#),
        page("null"),
        r#"{"success":"yes","data":[]}"#.into(),
        r#"{"success":true,"data":[],"pagination":{"total":"1","offset":0,"limit":10,"hasMore":false}}"#.into(),
        r#"{"success":true,"data":[],"pagination":{"total":-1,"offset":0,"limit":10,"hasMore":false}}"#.into(),
        "[]".into(),
        "".into(),
        "\u{feff}{}".into(),
        r#"{"success":true,"data":[{"id":"inv_1","customerId":"c","amount":1}"#.into(),
    ] {
        let err = read_list(&fetched(200, JSON, &bad)).unwrap_err();
        assert_eq!(err.kind, PollErrorKind::Malformed, "{bad}: {err}");
    }
    // Mapping odd but well-typed invoices: errors, not panics.
    for data in [
        r#"[{"id":"inv_1","customerId":"c","amount":1,"periodStart":"2026-13-01","periodEnd":"2026-13-31"}]"#,
        r#"[{"id":"inv_1","customerId":"c","amount":1,"dueDate":"9999-12-31"}]"#,
        r#"[{"id":"inv_1","customerId":"c","amount":1,"dueDate":""}]"#,
        r#"[{"id":"inv_1","customerId":"c","amount":1,"currency":"€","dueDate":"2026-01-01"}]"#,
        r#"[{"id":"inv_1","customerId":"c","amount":79228162514264337593543950335,"dueDate":"2026-01-01"},{"id":"inv_2","customerId":"c","amount":79228162514264337593543950335,"dueDate":"2026-01-01"}]"#,
    ] {
        let listed = read_list(&fetched(200, JSON, &page(data)));
        let Ok(listed) = listed else { continue };
        let pages = [super::map::Page {
            invoices: listed.list.data,
            request_id: listed.request_id,
        }];
        let mapped = super::map::map_invoices(
            "rn",
            None,
            &pages,
            &Currency::new("USD").unwrap(),
            &[],
            Timestamp::now(),
        );
        assert!(mapped.is_err(), "{data}: {mapped:?}");
    }
}

#[test]
fn only_a_429_waits_for_the_rate_limit_reset() {
    let reset = (Timestamp::now().as_second() + 30).to_string();
    let body = r#"{"success":false,"meta":{"requestId":"req_1"}}"#;
    for (status, waits) in [(429, true), (503, false), (500, false)] {
        let mut f = fetched(status, JSON, body);
        f.headers
            .insert("x-ratelimit-reset", HeaderValue::from_str(&reset).unwrap());
        let err = read_list(&f).unwrap_err();
        assert_eq!(err.retry_after.is_some(), waits, "{status}");
        f.headers
            .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        let err = read_list(&f).unwrap_err();
        assert_eq!(err.retry_after, Some(Duration::from_secs(2)), "{status}");
    }
}
