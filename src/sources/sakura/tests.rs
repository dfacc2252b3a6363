//! The SAKURA client against the project's simulator on 127.0.0.1: the whole poll field by
//! field, many months across years, the identity cache, auth and permission failures, the
//! fault matrix, "no data yet", and odd inputs through every decoder.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rust_decimal::Decimal;

use super::SakuraClient;
use super::config::SakuraSettings;
use super::map::{self, BillData, Identity, TAX_ITEM, Window};
use super::wire::{
    AuthStatus, BillDetailsResponse, BillsResponse, StatementCsvResponse, parse_statement_csv,
};
use crate::config::Secret;
use crate::model::series::{
    ITEM_SPEND_PTD, ITEM_SPEND_TOTAL, SPEND_PTD, SPEND_TOTAL, USAGE_PTD, USAGE_TOTAL,
};
use crate::model::{Clock, Currency, Observation, ObservationKind, Unit};
use crate::sim::sakura::{DEMO_ACCESS_TOKEN, DEMO_ACCESS_TOKEN_SECRET, SimBill, bills_of};
use crate::sim::world::{Api, SimAccount, demo_world};
use crate::sim::{FaultKind, FaultRequest, Sim};
use crate::sources::http::{HttpPolicy, PollErrorKind};
use crate::sources::testkit::{STANDARD_FAULTS, assert_fault_matrix, poll_ok, start_sim};
use crate::sources::{BillingSource, PollError};

const ACCOUNT: &str = "000000526782";

struct Options {
    token: &'static str,
    secret: &'static str,
    months: u32,
    fetch_csv: bool,
    max_retries: usize,
    min_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token: DEMO_ACCESS_TOKEN,
            secret: DEMO_ACCESS_TOKEN_SECRET,
            months: 3,
            fetch_csv: true,
            max_retries: 0,
            min_interval: Duration::ZERO,
        }
    }
}

fn client(addr: SocketAddr, o: Options) -> SakuraClient {
    SakuraClient::new(SakuraSettings {
        name: "sakura".into(),
        access_token: Secret::new(o.token),
        access_token_secret: Secret::new(o.secret),
        base_url: format!("http://{addr}/cloud/zone/is1a/api/")
            .parse()
            .unwrap(),
        interval: Duration::from_secs(3600),
        months: o.months,
        fetch_csv: o.fetch_csv,
        policy: HttpPolicy {
            timeout: Duration::from_millis(500),
            max_retries: o.max_retries,
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            min_interval: o.min_interval,
            ..HttpPolicy::default()
        },
    })
    .unwrap()
}

fn sakura_account(sim: &Sim) -> SimAccount {
    sim.accounts(Api::Sakura).remove(0)
}

/// The simulator's bills inside the poll window, oldest first.
fn expected_bills(sim: &Sim, now: Timestamp, months: u32) -> Vec<SimBill> {
    let window = Window::new(now, months).unwrap();
    let mut bills: Vec<SimBill> = bills_of(&sakura_account(sim), now)
        .into_iter()
        .filter(|b| {
            window.contains(map::UsageMonth {
                year: b.year,
                month: b.month,
            })
        })
        .collect();
    bills.reverse();
    bills
}

fn one<'a>(
    obs: &'a [Observation],
    metric: &str,
    bill: &SimBill,
    labels: &[(&str, &str)],
) -> &'a Observation {
    let found: Vec<&Observation> = obs
        .iter()
        .filter(|o| {
            o.key.metric == metric
                && o.period.is_some_and(|p| p.start == bill.period_start)
                && labels
                    .iter()
                    .all(|(k, v)| o.key.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{metric} {labels:?} for {}-{}",
        bill.year,
        bill.month
    );
    found[0]
}

fn is_current(bill: &SimBill, now: Timestamp) -> bool {
    map::UsageMonth::containing(now)
        == map::UsageMonth {
            year: bill.year,
            month: bill.month,
        }
}

#[tokio::test]
async fn happy_path_matches_the_simulator_field_by_field() {
    let (sim, addr) = start_sim().await;
    let c = client(addr, Options::default());
    let now = Timestamp::now();
    let obs = c.poll_account(now, "t").await.unwrap();
    let bills = expected_bills(&sim, now, 3);
    let today = now.to_zoned(map::tokyo()).date();
    // The current month's bill exists from the 2nd (JST): three closed months, plus it.
    assert_eq!(bills.len(), if today.day() >= 2 { 4 } else { 3 });
    let jpy = Unit::Money(Currency::new("JPY").unwrap());
    let mut expected_count = 0;
    for bill in &bills {
        let current = is_current(bill, now);
        let (spend, item_spend, usage, kind) = if current {
            (
                SPEND_PTD,
                ITEM_SPEND_PTD,
                USAGE_PTD,
                ObservationKind::PeriodToDate,
            )
        } else {
            (
                SPEND_TOTAL,
                ITEM_SPEND_TOTAL,
                USAGE_TOTAL,
                ObservationKind::PeriodTotal,
            )
        };
        let at = if current {
            map::start_of_day(now).unwrap()
        } else {
            bill.period_end
        };
        assert_eq!(at, bill.data_through);

        let total = one(&obs, spend, bill, &[("currency", "JPY")]);
        assert_eq!(total.value, Decimal::from(bill.amount));
        assert_eq!(total.kind, kind);
        assert_eq!(total.unit, jpy);
        assert_eq!(total.at, at);
        assert_eq!(total.period.unwrap().end, bill.period_end);
        assert_eq!(total.key.source, "sakura");
        assert_eq!(total.key.account, ACCOUNT, "the account ID keeps its zeros");
        expected_count += 1;

        let mut items_and_tax = Decimal::ZERO;
        for line in &bill.lines {
            let class = line.service_class.to_string();
            let item = one(&obs, item_spend, bill, &[("contract", &line.contract)]);
            assert_eq!(item.value, Decimal::from(line.price), "{}", line.name);
            assert_eq!(
                item.key.labels["item"],
                format!("{} ({})", line.name, line.contract)
            );
            assert_eq!(item.key.labels["service_class"], class);
            assert_eq!(item.key.labels["tax"], "excluded");
            assert_eq!(item.key.labels["currency"], "JPY");
            assert_eq!((item.kind, item.at, &item.unit), (kind, at, &jpy));
            items_and_tax += item.value;

            let u = one(&obs, usage, bill, &[("contract", &line.contract)]);
            let unit = if line.unit == "seconds" {
                "seconds"
            } else {
                "count"
            };
            assert_eq!(u.value, Decimal::from(line.usage), "{}", line.name);
            assert_eq!(u.key.labels["unit"], unit);
            assert_eq!(u.unit, Unit::Quantity(unit.into()));
            assert_eq!(u.kind, ObservationKind::Usage);
            assert_eq!(u.at, at);
            assert_eq!(u.key.labels["item"], item.key.labels["item"]);
            expected_count += 2;
        }
        let tax = one(&obs, item_spend, bill, &[("item", TAX_ITEM)]);
        assert_eq!(
            tax.value,
            Decimal::from(bill.lines.iter().map(|l| l.tax).sum::<i64>())
        );
        assert_eq!(tax.key.labels["tax"], "only");
        items_and_tax += tax.value;
        expected_count += 1;
        assert_eq!(
            items_and_tax, total.value,
            "prices and tax add up to the bill"
        );
    }
    assert_eq!(obs.len(), expected_count, "nothing else is emitted");
    // Egress follows traffic and is counted in GB; servers in seconds.
    assert!(
        obs.iter()
            .any(|o| o.key.labels.get("unit").map(String::as_str) == Some("count"))
    );

    // One auth-status; per poll: one list per year, details + CSV per bill.
    let years = Window::new(now, 3).unwrap().bill_years().unwrap().len() as u64;
    let stats = sim.stats();
    assert_eq!(stats.auth_requests, 1);
    assert_eq!(stats.billing_requests, years + 2 * bills.len() as u64);
}

#[tokio::test]
async fn without_the_csv_item_spend_includes_tax() {
    let (sim, addr) = start_sim().await;
    let c = client(
        addr,
        Options {
            fetch_csv: false,
            months: 1,
            ..Options::default()
        },
    );
    let now = Timestamp::now();
    let obs = c.poll_account(now, "t").await.unwrap();
    let bills = expected_bills(&sim, now, 1);
    for bill in &bills {
        let metric = if is_current(bill, now) {
            ITEM_SPEND_PTD
        } else {
            ITEM_SPEND_TOTAL
        };
        for line in &bill.lines {
            let item = one(&obs, metric, bill, &[("contract", &line.contract)]);
            assert_eq!(item.value, Decimal::from(line.amount()));
            assert_eq!(item.key.labels["tax"], "included");
            // Named from the detail's Description.
            assert_eq!(
                item.key.labels["item"],
                format!("{} ({})", line.name, line.contract)
            );
        }
    }
    assert!(
        obs.iter()
            .all(|o| o.key.labels.get("item").map(String::as_str) != Some(TAX_ITEM))
    );
    let years = Window::new(now, 1).unwrap().bill_years().unwrap().len() as u64;
    assert_eq!(
        sim.stats().billing_requests,
        years + bills.len() as u64,
        "no CSV requests"
    );
}

/// SAKURA lists do not page; a poll's "pages" are its bill lists (one per year) and its
/// per-bill requests. Fourteen closed months always span two or three years.
#[tokio::test]
async fn many_months_across_years() {
    let (sim, addr) = start_sim().await;
    let c = client(
        addr,
        Options {
            months: 14,
            ..Options::default()
        },
    );
    let now = Timestamp::now();
    let obs = c.poll_account(now, "t").await.unwrap();
    let mut totals: Vec<&Observation> =
        obs.iter().filter(|o| o.key.metric == SPEND_TOTAL).collect();
    totals.sort_by_key(|o| o.at);
    assert_eq!(totals.len(), 14);
    for pair in totals.windows(2) {
        let (a, b) = (pair[0].period.unwrap(), pair[1].period.unwrap());
        assert_eq!(a.end, b.start, "consecutive months, none missing");
    }
    let bills = expected_bills(&sim, now, 14);
    let years = Window::new(now, 14).unwrap().bill_years().unwrap();
    assert!(years.len() >= 2, "{years:?}");
    assert_eq!(
        sim.stats().billing_requests,
        years.len() as u64 + 2 * bills.len() as u64
    );
    for (total, bill) in totals.iter().zip(&bills) {
        assert_eq!(total.value, Decimal::from(bill.amount));
    }
}

#[tokio::test]
async fn identity_is_resolved_once_and_requests_are_paced() {
    let (sim, addr) = start_sim().await;
    let c = client(
        addr,
        Options {
            months: 1,
            min_interval: Duration::from_millis(40),
            ..Options::default()
        },
    );
    let started = Instant::now();
    c.poll_account(Timestamp::now(), "t").await.unwrap();
    c.poll_account(Timestamp::now(), "t").await.unwrap();
    let elapsed = started.elapsed();
    let stats = sim.stats();
    assert_eq!(stats.auth_requests, 1, "auth-status is cached");
    let requests = stats.auth_requests + stats.billing_requests;
    assert!(
        elapsed >= Duration::from_millis(40) * (requests as u32 - 1),
        "{requests} requests in {elapsed:?}"
    );
    assert_eq!(c.targets(), vec!["self".to_string()]);
    assert_eq!(c.kind(), "sakura");
}

#[tokio::test]
async fn wrong_secret_is_an_auth_error_that_leaks_nothing() {
    let (sim, addr) = start_sim().await;
    let secret = "wrong-secret-5f2c9a";
    let err = client(
        addr,
        Options {
            secret,
            max_retries: 3,
            ..Options::default()
        },
    )
    .poll_account(Timestamp::now(), "t")
    .await
    .unwrap_err();
    assert_eq!(err.kind, PollErrorKind::Auth);
    let text = format!("{err} {err:?}");
    assert!(!text.contains(secret), "{text}");
    assert!(!text.contains(DEMO_ACCESS_TOKEN), "{text}");
    let stats = sim.stats();
    assert_eq!(
        (stats.auth_requests, stats.billing_requests),
        (1, 0),
        "a 401 is not retried"
    );
}

#[tokio::test]
async fn a_key_without_billing_permission_is_refused_before_any_billing_call() {
    crate::ensure_crypto_provider();
    let mut world = demo_world();
    for a in world.iter_mut().filter(|a| a.api == Api::Sakura) {
        a.extra
            .insert("external_permission".into(), "eventlog".into());
    }
    let sim = Sim::new(Clock::System, world);
    let (addr, _task) = sim
        .start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let err = client(addr, Options::default())
        .poll_account(Timestamp::now(), "t")
        .await
        .unwrap_err();
    assert_eq!(err.kind, PollErrorKind::Auth);
    assert!(err.message.contains("Billing Information"), "{err}");
    assert_eq!(sim.stats().billing_requests, 0);
}

#[tokio::test]
async fn fault_matrix() {
    let (sim, addr) = start_sim().await;
    let source = client(
        addr,
        Options {
            months: 1,
            max_retries: 1,
            ..Options::default()
        },
    );
    poll_ok(&source, "self").await;
    assert_fault_matrix(&source, &sim, "sakura", "self", STANDARD_FAULTS).await;
}

#[tokio::test]
async fn transient_faults_are_retried_within_the_poll() {
    let (sim, addr) = start_sim().await;
    let c = client(
        addr,
        Options {
            months: 1,
            max_retries: 1,
            ..Options::default()
        },
    );
    for fault in [FaultKind::Status503, FaultKind::Html, FaultKind::Status500] {
        sim.inject_fault(FaultRequest {
            api: "sakura".into(),
            fault,
            count: 1,
            delay_ms: None,
        });
        let result = c.poll_account(Timestamp::now(), "t").await;
        assert!(result.is_ok(), "{fault:?} then success: {result:?}");
    }
    assert_eq!(sim.stats().faults_served, 3);
}

#[tokio::test]
async fn empty_period_is_no_data_yet_not_zero() {
    let (sim, addr) = start_sim().await;
    let c = client(addr, Options::default());
    // Warm the identity cache so the fault lands on the first bill list (the newest year,
    // which holds the current month's bill).
    let before = c.poll_account(Timestamp::now(), "t").await.unwrap();
    sim.inject_fault(FaultRequest {
        api: "sakura".into(),
        fault: FaultKind::EmptyPeriod,
        count: 1,
        delay_ms: None,
    });
    let obs = c.poll_account(Timestamp::now(), "t").await.unwrap();
    assert!(
        obs.iter()
            .all(|o| o.kind != ObservationKind::PeriodToDate && o.key.metric != USAGE_PTD),
        "no current-month series at all: {obs:#?}"
    );
    let closed = |o: &[Observation]| {
        o.iter()
            .filter(|x| x.key.metric == SPEND_TOTAL)
            .map(|x| (x.at, x.value))
            .collect::<Vec<_>>()
    };
    assert_eq!(closed(&obs).len(), 3);
    assert_eq!(closed(&obs), closed(&before), "closed months unaffected");
    assert_eq!(sim.stats().faults_served, 1);
}

/// A corpus of odd bodies through every decoder and the mapping: each either decodes (and
/// maps) or is an error, and nothing panics.
#[test]
fn odd_inputs_are_errors_never_panics() {
    let identity_of = |text: &str| -> Result<Identity, String> {
        let s: AuthStatus = serde_json::from_str(text).map_err(|e| e.to_string())?;
        map::identity(&s).map_err(|e| e.to_string())
    };
    // auth-status
    let ok_auth = [
        r#"{"Account":{"ID":526782},"Member":{"Code":"abc12345"},"ExternalPermission":"eventlog+bill","Unknown":{"x":[1]}}"#,
        r#"{"is_ok":true,"Account":{"ID":"000000526782","Name":"日本語の名前 🌸"},"Member":{"Code":"xxx000001","Errors":[]},"ExternalPermission":"bill"}"#,
    ];
    for t in ok_auth {
        assert!(identity_of(t).is_ok(), "{t}: {:?}", identity_of(t));
    }
    assert_eq!(identity_of(ok_auth[0]).unwrap().account_id, "526782");
    let bad_auth = [
        "",
        "null",
        "[]",
        r#"{"Account":{"ID":"1"},"ExternalPermission":"bill"}"#,
        r#"{"Account":{},"Member":{"Code":"m"},"ExternalPermission":"bill"}"#,
        r#"{"Account":{"ID":true},"Member":{"Code":"m"},"ExternalPermission":"bill"}"#,
        r#"{"Account":{"ID":1.5},"Member":{"Code":"m"},"ExternalPermission":"bill"}"#,
        r#"{"Account":{"ID":"1"},"Member":{"Code":""},"ExternalPermission":"bill"}"#,
        r#"{"Account":{"ID":"1"},"Member":{"Code":7},"ExternalPermission":"bill"}"#,
        r#"{"is_ok":false,"Account":{"ID":"1"},"Member":{"Code":"m"},"ExternalPermission":"bill"}"#,
        r#"{"Account":{"ID":"1"},"Member":{"Code":"m"},"ExternalPermission":["bill"]}"#,
    ];
    for t in bad_auth {
        assert!(identity_of(t).is_err(), "{t}");
    }

    // bill lists
    let ok_lists = [
        r#"{"Bills":[]}"#,
        r#"{"Bills":null,"Count":0}"#,
        r#"{"is_ok":true,"Bills":[{"BillID":"000123","Amount":"4330","Date":"2016-06-10T00:00:00+09:00","Extra":"x"}]}"#,
    ];
    for t in ok_lists {
        assert!(serde_json::from_str::<BillsResponse>(t).is_ok(), "{t}");
    }
    let bad_lists = [
        r#"{}"#,
        r#"{"Bills":{}}"#,
        r#"{"Bills":[{"Amount":1,"Date":"2016-06-10T00:00:00+09:00"}]}"#,
        r#"{"Bills":[{"BillID":1,"Date":"2016-06-10T00:00:00+09:00"}]}"#,
        r#"{"Bills":[{"BillID":1,"Amount":"¥4,330","Date":"2016-06-10T00:00:00+09:00"}]}"#,
        r#"{"Bills":[{"BillID":1,"Amount":true,"Date":"2016-06-10T00:00:00+09:00"}]}"#,
        r#"{"Bills":[{"BillID":1,"Amount":1,"Date":20160610}]}"#,
        r#"{"Bills":[{"BillID":-1,"Amount":1,"Date":"2016-06-10T00:00:00+09:00"}]}"#,
    ];
    for t in bad_lists {
        assert!(serde_json::from_str::<BillsResponse>(t).is_err(), "{t}");
    }

    // details
    let ok_details = [
        r#"{"BillDetails":[]}"#,
        r#"{"BillDetails":[{"ContractID":112700526782,"ServiceClassID":"50000","Amount":0}]}"#,
        r#"{"BillDetails":[{"ContractID":"1","ServiceClassID":1,"Amount":"5","Usage":"12","Description":"サーバ/プラン","New":1}]}"#,
    ];
    for t in ok_details {
        assert!(
            serde_json::from_str::<BillDetailsResponse>(t).is_ok(),
            "{t}"
        );
    }
    let bad_details = [
        r#"{"BillDetails":[{"ServiceClassID":1,"Amount":0}]}"#,
        r#"{"BillDetails":[{"ContractID":"1","Amount":0}]}"#,
        r#"{"BillDetails":[{"ContractID":"1","ServiceClassID":1}]}"#,
        r#"{"BillDetails":[{"ContractID":"1","ServiceClassID":1,"Amount":0,"Usage":"lots"}]}"#,
        r#"{"BillDetails":[{"ContractID":"1","ServiceClassID":1,"Amount":0,"Index":"first"}]}"#,
        r#"{"BillDetails":"none"}"#,
    ];
    for t in bad_details {
        assert!(
            serde_json::from_str::<BillDetailsResponse>(t).is_err(),
            "{t}"
        );
    }

    // CSV envelopes
    assert!(serde_json::from_str::<StatementCsvResponse>(r#"{"Count":0}"#).is_err());
    assert!(serde_json::from_str::<StatementCsvResponse>(r#"{"Body":null}"#).is_err());
    let empty: StatementCsvResponse = serde_json::from_str(r#"{"Body":""}"#).unwrap();
    assert!(parse_statement_csv(&empty.body).unwrap().is_empty());
    for body in ["a,b\n1", "\"", "x\ny\nz", "🌸,🌸\n1,2,3"] {
        assert!(parse_statement_csv(body).is_err(), "{body:?}");
    }

    // Mapping: a bad date or a bad month of use is an error, never a guess.
    let window = Window::new("2016-06-15T00:00:00+09:00".parse().unwrap(), 3).unwrap();
    let bill = |date: &str| BillData {
        bill: serde_json::from_str(&format!(r#"{{"BillID":1,"Amount":1,"Date":"{date}"}}"#))
            .unwrap(),
        details: Vec::new(),
        statement: None,
    };
    for date in ["", "yesterday", "2016-06-10", "2016-13-10T00:00:00+09:00"] {
        let r: Result<Vec<Observation>, PollError> =
            map::map_bills("s", "a", &window, &[bill(date)]);
        assert!(r.is_err(), "{date:?}");
    }
    let mut with_csv = bill("2016-06-10T00:00:00+09:00");
    let header = "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16";
    with_csv.statement =
        Some(parse_statement_csv(&format!("{header}\n1,1,June,x,m,a,1,2,n,,,1,0,1,0,r")).unwrap());
    assert!(map::map_bills("s", "a", &window, &[with_csv]).is_err());
}
