//! The 3scale client against the project's simulator on 127.0.0.1: every series field by
//! field, paging, auth modes, the retry table, faults and "no invoice yet".

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use jiff::Timestamp;
use rust_decimal::Decimal;

use super::ThreescaleClient;
use super::config::{AuthMode, Months, ThreescaleSettings};
use super::map::{LABEL_LINE_ITEM_TYPE, LABEL_METRIC_ID, VAT_ITEM};
use crate::config::Secret;
use crate::model::series::{
    ITEM_SPEND_PTD, ITEM_SPEND_TOTAL, LABEL_CURRENCY, LABEL_ITEM, LABEL_UNIT, SPEND_PTD,
    SPEND_TOTAL, USAGE_PTD, USAGE_TOTAL,
};
use crate::model::{Clock, Currency, Observation, ObservationKind, Period, Unit};
use crate::sim::threescale::{ACCESS_TOKEN, EXTRA_LIST_WITHOUT_LINE_ITEMS};
use crate::sim::world::{Api, SimAccount, demo_world};
use crate::sim::{FaultKind, FaultRequest, Sim};
use crate::sources::BillingSource;
use crate::sources::http::{HttpPolicy, PollErrorKind};
use crate::sources::testkit::{STANDARD_FAULTS, assert_fault_matrix, start_sim};

const USD_BUYER: &str = "2445580101";
const EUR_BUYER: &str = "2445580102";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// Mid-month, after the USD buyer's traffic spike (days 12–14).
fn frozen_now() -> Timestamp {
    ts("2026-11-15T12:00:00Z")
}

/// The simulator with its clock standing still at `now`, so expected values are exact.
async fn start_frozen_sim(world: Vec<SimAccount>, now: Timestamp) -> (Sim, SocketAddr) {
    crate::ensure_crypto_provider();
    let sim = Sim::new(Clock::simulated(now, f64::MIN_POSITIVE), world);
    let (addr, _task) = sim
        .start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("simulator starts");
    (sim, addr)
}

fn settings(addr: SocketAddr) -> ThreescaleSettings {
    ThreescaleSettings {
        name: "3scale".into(),
        base_url: format!("http://{addr}/").parse().unwrap(),
        access_token: Secret::new(ACCESS_TOKEN),
        auth: AuthMode::Basic,
        per_page: 20,
        months: Months::Last(3),
        accounts: Vec::new(),
        interval: Duration::from_secs(60),
        max_pages: 20,
        usage_unit: "hits".into(),
        metric_units: BTreeMap::new(),
        fetch_missing_line_items: true,
        policy: HttpPolicy {
            timeout: Duration::from_millis(500),
            max_retries: 1,
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            ..HttpPolicy::default()
        },
    }
}

fn client(s: ThreescaleSettings) -> ThreescaleClient {
    ThreescaleClient::new(s).unwrap()
}

fn world_account(id: &str) -> SimAccount {
    demo_world()
        .into_iter()
        .find(|a| a.api == Api::Threescale && a.id == id)
        .unwrap()
}

/// What the simulated invoice of `account` for the period containing `as_of` should say.
struct Expected {
    period: Period,
    fee: Decimal,
    hits_cost: Decimal,
    hits: Decimal,
    vat: Option<Decimal>,
    cost: Decimal,
}

fn expected(account: &SimAccount, as_of: Timestamp) -> Expected {
    let (period, charges) = account.charges(as_of).unwrap();
    let fee = charges[0].amount;
    let hits_cost = charges[1].amount;
    let without_vat = fee + hits_cost;
    let vat = account
        .extra
        .get("vat_rate")
        .map(|r| without_vat * r.parse::<Decimal>().unwrap() / Decimal::from(100));
    let cost = without_vat.round_dp(2) + vat.map_or(Decimal::ZERO, |v| v.round_dp(2));
    Expected {
        period,
        fee,
        hits_cost,
        hits: charges[1].quantity,
        vat,
        cost,
    }
}

fn find<'a>(
    obs: &'a [Observation],
    account: &str,
    metric: &str,
    item: Option<&str>,
    period_start: Timestamp,
) -> &'a Observation {
    let found: Vec<_> = obs
        .iter()
        .filter(|o| {
            o.key.account == account
                && o.key.metric == metric
                && o.key.labels.get(LABEL_ITEM).map(String::as_str) == item
                && o.period.map(|p| p.start) == Some(period_start)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{account} {metric} {item:?} {period_start}: {obs:#?}"
    );
    found[0]
}

/// Every series of one buyer's month, field by field.
fn check_month(
    obs: &[Observation],
    account: &SimAccount,
    e: &Expected,
    open: bool,
    now: Timestamp,
) {
    let (spend, item_spend, usage, kind, at) = if open {
        (
            SPEND_PTD,
            ITEM_SPEND_PTD,
            USAGE_PTD,
            ObservationKind::PeriodToDate,
            now,
        )
    } else {
        (
            SPEND_TOTAL,
            ITEM_SPEND_TOTAL,
            USAGE_TOTAL,
            ObservationKind::PeriodTotal,
            e.period.end,
        )
    };
    let money = Unit::Money(Currency::new(&account.currency).unwrap());
    let id = account.id.as_str();
    let start = e.period.start;

    let total = find(obs, id, spend, None, start);
    assert_eq!(total.key.source, "3scale");
    assert_eq!(total.value, e.cost, "{id} {spend}");
    assert_eq!((total.kind, &total.unit, total.at), (kind, &money, at));
    assert_eq!(total.period, Some(e.period));
    assert_eq!(total.key.labels.len(), 1);
    assert_eq!(total.key.labels[LABEL_CURRENCY], account.currency);

    let fee_name = &account.items[0].name;
    let fee = find(obs, id, item_spend, Some(fee_name), start);
    assert_eq!(fee.value, e.fee);
    assert_eq!(
        (fee.kind, &fee.unit, fee.at, fee.period),
        (kind, &money, at, Some(e.period))
    );
    assert_eq!(fee.key.labels[LABEL_LINE_ITEM_TYPE], "plan_cost");
    assert_eq!(fee.key.labels[LABEL_CURRENCY], account.currency);
    assert!(!fee.key.labels.contains_key(LABEL_METRIC_ID));

    let hits = find(obs, id, item_spend, Some("Hits"), start);
    assert_eq!(hits.value, e.hits_cost);
    assert_eq!((hits.kind, &hits.unit, hits.at), (kind, &money, at));
    assert_eq!(hits.key.labels[LABEL_LINE_ITEM_TYPE], "variable_cost");
    assert_eq!(hits.key.labels[LABEL_METRIC_ID], account.items[1].code);

    let used = find(obs, id, usage, Some("Hits"), start);
    assert_eq!(used.value, e.hits);
    assert_eq!(used.kind, ObservationKind::Usage);
    assert_eq!(used.unit, Unit::Quantity("hits".into()));
    assert_eq!((used.at, used.period), (at, Some(e.period)));
    assert_eq!(used.key.labels[LABEL_UNIT], "hits");
    assert_eq!(used.key.labels[LABEL_METRIC_ID], account.items[1].code);
    assert!(!used.key.labels.contains_key(LABEL_CURRENCY));

    match e.vat {
        Some(vat) => {
            let v = find(obs, id, item_spend, Some(VAT_ITEM), start);
            assert_eq!(v.value, vat);
            assert_eq!(v.key.labels[LABEL_LINE_ITEM_TYPE], "vat");
            assert_eq!(e.cost, (e.fee + e.hits_cost).round_dp(2) + vat.round_dp(2));
        }
        None => {
            assert!(!obs.iter().any(|o| o.key.account == id
                && o.key.labels.get(LABEL_ITEM).map(String::as_str) == Some(VAT_ITEM)));
            assert_eq!(e.cost, fee.value + hits.value, "items add up to the total");
        }
    }
}

#[tokio::test]
async fn reads_every_buyer_and_maps_every_series_field_by_field() {
    let now = frozen_now();
    let (sim, addr) = start_frozen_sim(demo_world(), now).await;
    let source = client(settings(addr));
    assert_eq!(source.targets(), ["all"]);
    let obs = source.poll("all", now, "t").await.unwrap();

    for id in [USD_BUYER, EUR_BUYER] {
        let account = world_account(id);
        let current = expected(&account, now);
        assert_eq!(current.period.start, ts("2026-11-01T00:00:00Z"));
        assert_eq!(current.period.end, ts("2026-12-01T00:00:00Z"));
        check_month(&obs, &account, &current, true, now);
        let october = expected(&account, ts("2026-10-31T23:59:59.999Z"));
        assert_eq!(october.period.start, ts("2026-10-01T00:00:00Z"));
        check_month(&obs, &account, &october, false, now);
        let september = expected(&account, ts("2026-09-30T23:59:59.999Z"));
        check_month(&obs, &account, &september, false, now);
        let per_month = if account.extra.contains_key("vat_rate") {
            5
        } else {
            4
        };
        assert_eq!(
            obs.iter().filter(|o| o.key.account == id).count(),
            3 * per_month
        );
    }
    assert_eq!(obs.len(), 3 * 4 + 3 * 5);
    // One listing per month (the current one first), one page each.
    assert_eq!(sim.stats().billing_requests, 3);

    // The USD buyer's spike is in its hits: days 12–14 run at six times the usual rate.
    let usd = world_account(USD_BUYER);
    let hits_by = |day: &str| expected(&usd, ts(&format!("2026-11-{day}T00:00:00Z"))).hits;
    let normal_day = hits_by("11") - hits_by("10");
    let spike_day = hits_by("14") - hits_by("13");
    assert!(
        spike_day > normal_day * Decimal::from(5),
        "{normal_day} vs {spike_day}"
    );
}

#[tokio::test]
async fn one_buyer_per_target_when_accounts_are_configured() {
    let now = frozen_now();
    let (_sim, addr) = start_frozen_sim(demo_world(), now).await;
    let mut s = settings(addr);
    s.accounts = vec![EUR_BUYER.into(), USD_BUYER.into()];
    let source = client(s);
    assert_eq!(source.targets(), [EUR_BUYER, USD_BUYER]);
    let obs = source.poll(EUR_BUYER, now, "t").await.unwrap();
    assert_eq!(obs.len(), 15);
    assert!(obs.iter().all(|o| o.key.account == EUR_BUYER));
    assert!(
        obs.iter()
            .filter(|o| o.unit.currency().is_some())
            .all(|o| o.key.labels[LABEL_CURRENCY] == "EUR")
    );
}

#[tokio::test]
async fn pages_through_small_pages_to_the_same_result() {
    let now = frozen_now();
    let (sim, addr) = start_frozen_sim(demo_world(), now).await;
    let reference = client(settings(addr)).poll("all", now, "t").await.unwrap();
    for (per_page, months, requests) in [
        // 3 months × 2 buyers: two pages a month.
        (1, Months::Last(3), 6),
        // 6 invoices, no month filter: pages 1–6, the last one says total_pages = 6.
        (1, Months::All, 6),
        (4, Months::All, 2),
        (500, Months::All, 1),
    ] {
        let before = sim.stats().billing_requests;
        let mut s = settings(addr);
        s.per_page = per_page;
        s.months = months;
        let obs = client(s).poll("all", now, "t").await.unwrap();
        assert_eq!(obs, reference, "per_page {per_page}, {months:?}");
        assert_eq!(
            sim.stats().billing_requests - before,
            requests,
            "per_page {per_page}"
        );
    }
}

#[tokio::test]
async fn too_many_pages_is_a_paging_error_not_a_partial_month() {
    let now = frozen_now();
    let (_sim, addr) = start_frozen_sim(demo_world(), now).await;
    let mut s = settings(addr);
    s.per_page = 1;
    s.months = Months::All;
    s.max_pages = 2;
    let err = client(s).poll("all", now, "t").await.unwrap_err();
    assert_eq!(err.kind, PollErrorKind::Paging);
}

#[tokio::test]
async fn months_back_only_lists_those_months() {
    let now = frozen_now();
    let (_sim, addr) = start_frozen_sim(demo_world(), now).await;
    let mut s = settings(addr);
    s.months = Months::Last(1);
    let obs = client(s).poll("all", now, "t").await.unwrap();
    assert!(!obs.is_empty());
    assert!(
        obs.iter()
            .all(|o| o.period.unwrap().start == ts("2026-11-01T00:00:00Z"))
    );
    assert!(obs.iter().all(|o| o.kind != ObservationKind::PeriodTotal));
}

#[tokio::test]
async fn line_items_left_out_of_a_listing_are_fetched() {
    let now = frozen_now();
    let mut world = demo_world();
    for a in world.iter_mut().filter(|a| a.id == USD_BUYER) {
        a.extra
            .insert(EXTRA_LIST_WITHOUT_LINE_ITEMS.into(), "true".into());
    }
    let (sim, addr) = start_frozen_sim(world, now).await;
    let obs = client(settings(addr)).poll("all", now, "t").await.unwrap();
    let usd = world_account(USD_BUYER);
    check_month(&obs, &usd, &expected(&usd, now), true, now);
    check_month(
        &obs,
        &usd,
        &expected(&usd, ts("2026-10-31T23:59:59.999Z")),
        false,
        now,
    );
    // 3 listings + the USD buyer's 3 invoices' line items.
    assert_eq!(sim.stats().billing_requests, 6);

    let mut s = settings(addr);
    s.fetch_missing_line_items = false;
    let obs = client(s).poll("all", now, "t").await.unwrap();
    let usd_series: Vec<_> = obs.iter().filter(|o| o.key.account == USD_BUYER).collect();
    assert_eq!(usd_series.len(), 3, "totals only: {usd_series:#?}");
    assert!(
        usd_series
            .iter()
            .all(|o| o.key.metric.starts_with("spend_"))
    );
}

#[tokio::test]
async fn query_auth_works_and_wrong_tokens_are_auth_errors_that_do_not_leak() {
    let now = frozen_now();
    let (sim, addr) = start_frozen_sim(demo_world(), now).await;
    let mut s = settings(addr);
    s.auth = AuthMode::Query;
    assert!(!client(s).poll("all", now, "t").await.unwrap().is_empty());

    let wrong = "s3cr3t-wrong-token-value";
    for auth in [AuthMode::Basic, AuthMode::Query] {
        let before = sim.stats();
        let mut s = settings(addr);
        s.auth = auth;
        s.access_token = Secret::new(wrong);
        s.policy.max_retries = 3;
        let err = client(s).poll("all", now, "t").await.unwrap_err();
        assert_eq!(err.kind, PollErrorKind::Auth, "{auth:?}");
        assert!(err.message.contains("403"), "{}", err.message);
        assert!(!err.message.contains(wrong), "{auth:?}: {}", err.message);
        assert!(!err.to_string().contains(wrong));
        let after = sim.stats();
        assert_eq!(
            after.billing_requests - before.billing_requests,
            1,
            "a 403 is not retried"
        );
        assert_eq!(after.unauthorized - before.unauthorized, 1);
    }
}

#[tokio::test]
async fn the_query_token_is_not_in_transport_errors() {
    let (sim, addr) = start_sim().await;
    let mut s = settings(addr);
    s.auth = AuthMode::Query;
    s.policy.max_retries = 0;
    sim.inject_fault(FaultRequest {
        api: "threescale".into(),
        fault: FaultKind::Timeout,
        count: 1,
        delay_ms: Some(2_000),
    });
    let err = client(s)
        .poll("all", Timestamp::now(), "t")
        .await
        .unwrap_err();
    assert_eq!(err.kind, PollErrorKind::Timeout);
    assert!(!err.message.contains(ACCESS_TOKEN), "{}", err.message);
    assert!(!err.message.contains("access_token"), "{}", err.message);
}

#[tokio::test]
async fn unknown_account_is_a_client_error_without_retries() {
    let now = frozen_now();
    let (sim, addr) = start_frozen_sim(demo_world(), now).await;
    let mut s = settings(addr);
    s.policy.max_retries = 3;
    let err = client(s).poll("999", now, "t").await.unwrap_err();
    assert_eq!(err.kind, PollErrorKind::Client);
    assert!(
        err.message.contains("404") && err.message.contains("empty body"),
        "{}",
        err.message
    );
    assert_eq!(sim.stats().billing_requests, 1);
}

#[tokio::test]
async fn transient_faults_are_retried_within_the_poll() {
    let (sim, addr) = start_sim().await;
    for kind in [
        FaultKind::Status500,
        FaultKind::Status503,
        FaultKind::Status429,
        FaultKind::Html,
        FaultKind::Timeout,
    ] {
        sim.inject_fault(FaultRequest {
            api: "threescale".into(),
            fault: kind,
            count: 1,
            delay_ms: Some(2_000),
        });
        let obs = client(settings(addr))
            .poll("all", Timestamp::now(), "t")
            .await;
        assert!(obs.is_ok_and(|o| !o.is_empty()), "{kind:?} then success");
    }
    assert_eq!(sim.stats().faults_served, 5);
}

#[tokio::test]
async fn fault_matrix() {
    let (sim, addr) = start_sim().await;
    let mut s = settings(addr);
    s.per_page = 1;
    let source = client(s);
    assert_fault_matrix(&source, &sim, "threescale", "all", STANDARD_FAULTS).await;
}

/// EmptyPeriod: the running month's open invoice does not exist yet. That is "no data
/// for this month yet": no period-to-date series at all (not a zero), the closed months
/// as usual.
#[tokio::test]
async fn no_open_invoice_yet_is_no_data_not_zero() {
    let now = frozen_now();
    let (_sim, addr) = start_frozen_sim(demo_world(), now).await;
    _sim.inject_fault(FaultRequest {
        api: "threescale".into(),
        fault: FaultKind::EmptyPeriod,
        count: 1,
        delay_ms: None,
    });
    let obs = client(settings(addr)).poll("all", now, "t").await.unwrap();
    assert!(
        obs.iter().all(|o| o.kind != ObservationKind::PeriodToDate),
        "{obs:#?}"
    );
    assert!(!obs.iter().any(|o| o.key.metric == USAGE_PTD));
    assert!(
        obs.iter()
            .all(|o| o.period.unwrap().end <= ts("2026-11-01T00:00:00Z"))
    );
    assert_eq!(
        obs.iter().filter(|o| o.key.metric == SPEND_TOTAL).count(),
        4
    );
    assert!(obs.iter().all(|o| !o.value.is_zero()));
}

/// The single-invoice and line-items endpoints, and the empty-body 404.
#[tokio::test]
async fn single_invoice_and_line_item_endpoints() {
    use super::wire::{parse_invoice, parse_line_items};
    let now = frozen_now();
    let (sim, addr) = start_frozen_sim(demo_world(), now).await;
    let ids = crate::sim::threescale::invoice_ids(&sim);
    let id = &ids[EUR_BUYER][0];
    let http = reqwest::Client::new();
    let get = |path: String| {
        http.get(format!("http://{addr}{path}"))
            .basic_auth("", Some(ACCESS_TOKEN))
            .send()
    };
    let r = get(format!("/api/invoices/{id}.xml")).await.unwrap();
    assert_eq!(r.status(), 200);
    let invoice = parse_invoice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(invoice.id.as_deref(), Some(id.as_str()));
    assert_eq!(invoice.state.as_deref(), Some("open"));
    assert_eq!(
        invoice.buyer.unwrap().org_name.as_deref(),
        Some("Café Müller GmbH")
    );
    assert!(invoice.vat_amount.is_some());
    let embedded = invoice.line_items.unwrap().items;

    let r = get(format!("/api/invoices/{id}/line_items.xml"))
        .await
        .unwrap();
    let items = parse_line_items(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items.iter().map(|i| i.cost).collect::<Vec<_>>(),
        embedded.iter().map(|i| i.cost).collect::<Vec<_>>()
    );

    for path in [
        "/api/invoices/1.xml",
        "/api/invoices/1/line_items.xml",
        "/api/accounts/1/invoices.xml",
    ] {
        let r = get(path.to_string()).await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert!(r.bytes().await.unwrap().is_empty(), "{path}");
    }
    let r = http
        .get(format!(
            "http://{addr}/api/invoices.xml?access_token={ACCESS_TOKEN}&state=paid"
        ))
        .send()
        .await
        .unwrap();
    let list = super::wire::parse_invoice_list(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(list.invoices.len(), 2);
    let r = http
        .get(format!("http://{addr}/api/invoices.xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("<error>Access denied</error>")
    );
}

/// A stand-in server whose `/api/invoices.xml` answers `respond(page)`, counting requests:
/// for server behaviour the simulator does not have.
async fn start_stub(
    respond: fn(u64) -> (u16, &'static str, String),
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::extract::Query;
    use axum::response::IntoResponse;
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    crate::ensure_crypto_provider();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let app = axum::Router::new().route(
        "/api/invoices.xml",
        axum::routing::get(move |Query(q): Query<HashMap<String, String>>| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let page = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let (status, content_type, body) = respond(page);
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    [(axum::http::header::CONTENT_TYPE, content_type)],
                    body,
                )
                    .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, count)
}

fn stub_invoice(id: u64) -> String {
    format!(
        "<invoice><id>{id}</id><state>paid</state><currency>USD</currency><cost>1.5</cost>\
<period><from>2026-09-01</from><to>2026-09-30</to></period><buyer><id>7</id></buyer>\
<line-items><line-item><name>Fee</name><cost>1.5</cost></line-item></line-items></invoice>"
    )
}

#[tokio::test]
async fn a_page_that_does_not_advance_is_a_paging_error() {
    // porta falls back to page 1 for a page it cannot use; here it always does.
    let (addr, count) = start_stub(|_| {
        (
            200,
            "application/xml",
            format!(
                "<invoices><pagination total_pages=\"2\" current_page=\"1\" per_page=\"1\" total_entries=\"2\"/>{}</invoices>",
                stub_invoice(1)
            ),
        )
    })
    .await;
    let mut s = settings(addr);
    s.months = Months::All;
    s.policy.max_retries = 0;
    let err = client(s).poll("all", frozen_now(), "t").await.unwrap_err();
    assert_eq!(err.kind, PollErrorKind::Paging, "{err}");
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn without_pagination_data_pages_are_read_until_an_empty_one() {
    let (addr, count) = start_stub(|page| {
        let body = if page <= 3 {
            stub_invoice(page)
        } else {
            String::new()
        };
        (200, "text/xml", format!("<invoices>{body}</invoices>"))
    })
    .await;
    let mut s = settings(addr);
    s.months = Months::All;
    let obs = client(s).poll("all", frozen_now(), "t").await.unwrap();
    let total = obs.iter().find(|o| o.key.metric == SPEND_TOTAL).unwrap();
    assert_eq!(total.value, Decimal::new(45, 1), "three invoices of 1.5");
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[tokio::test]
async fn version_errors_and_error_documents_are_errors() {
    for (respond, kind) in [
        (
            (|_| {
                (
                    415,
                    "text/plain",
                    "Unsupported Finance API version 2.0".to_string(),
                )
            }) as fn(u64) -> (u16, &'static str, String),
            PollErrorKind::Client,
        ),
        (
            |_| {
                (
                    200,
                    "text/plain",
                    "Unsupported Finance API version 2.0".to_string(),
                )
            },
            PollErrorKind::NotJson,
        ),
        (
            |_| {
                (
                    200,
                    "application/xml",
                    "<?xml version=\"1.0\"?><error>Access denied</error>".to_string(),
                )
            },
            PollErrorKind::Malformed,
        ),
        (
            |_| (200, "application/xml", String::new()),
            PollErrorKind::Malformed,
        ),
        (
            |_| {
                (
                    403,
                    "application/xml",
                    "<error>Finance module not enabled for the account</error>".to_string(),
                )
            },
            PollErrorKind::Auth,
        ),
    ] {
        let (addr, count) = start_stub(respond).await;
        let mut s = settings(addr);
        s.policy.max_retries = 0;
        let err = client(s).poll("all", frozen_now(), "t").await.unwrap_err();
        assert_eq!(err.kind, kind, "{err}");
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
