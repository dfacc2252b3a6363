//! Parser throughput (MB/s) for every parser of outside input, on large generated bodies:
//! each API's responses parsed and, where there is a public map function, mapped to
//! observations, exactly as the fuzz targets (`fuzz/fuzz_targets/*.rs`) drive them. Each body
//! is checked to parse and map without error once before it is timed, so a generator that
//! drifts from the wire format fails here instead of timing an early error.
//!
//! `cargo bench --bench parsers` prints criterion's figures, then a summary table of MB/s
//! (median of repeated runs over about a second per parser).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::Timestamp;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use spendwatch::model::Currency;
use spendwatch::sources::file::config::FileSettings;
use spendwatch::sources::http::Fetched;
use spendwatch::sources::prometheus::config::QuerySettings;
use spendwatch::sources::prometheus::wire::Envelope;
use spendwatch::sources::racknap::client::read_list;
use spendwatch::sources::racknap::map::Page;
use spendwatch::sources::rackspace::wire::EstimatedChargesResponse;
use spendwatch::sources::sakura::map::{BillData, UsageMonth, Window};
use spendwatch::sources::sakura::wire::{
    Bill, BillDetailsResponse, BillsResponse, parse_statement_csv,
};
use spendwatch::sources::threescale::map::MapSettings;
use spendwatch::sources::threescale::wire::{
    LineItems, parse_invoice, parse_invoice_list, parse_line_items,
};
use spendwatch::sources::{file, prometheus, racknap, rackspace, sakura, threescale};

/// Line items, invoices or bills in one generated page.
const PAGE: usize = 1_000;
/// Rows of the generated CSV files.
const CSV_ROWS: usize = 100_000;
/// Series × samples of the generated `query_range` response.
const PROM_SERIES: usize = 200;
const PROM_SAMPLES: usize = 2_000;
/// Rules in the generated config (one of each of two kinds per step).
const CONFIG_RULES: usize = 500;

/// The poll time every mapping is given (2026-05-28, as the fuzz targets use).
fn now() -> Timestamp {
    Timestamp::from_second(1_780_000_000).unwrap()
}

/// A cheap deterministic number in `[0, n)` for generated values.
fn pick(i: usize, salt: u64, n: u64) -> u64 {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    x % n
}

fn rackspace_charges() -> String {
    let mut s = String::from(
        r#"{"estimatedCharges":{"total":"0","discountTotal":"0.00","chargeSubTotal":"0.00","chargeHierarchyTotal":"0.00","currency":"USD","currentBillingPeriodStartDate":"2026-05-16T21:32:52","currentBillingPeriodEndDate":"2026-06-16T21:32:52","durationRemainingInCycle":"P19D","estimatedCharge":["#,
    );
    for i in 0..PAGE {
        if i > 0 {
            s.push(',');
        }
        let cents = 100 + pick(i, 1, 500_000);
        let qty = 1 + pick(i, 2, 10_000);
        let _ = write!(
            s,
            r#"{{"offeringCode":"SVC{:02}","chargeType":"TYPE_{i:04}","category":"CHARGE","quantity":"{qty}.00","amount":"{}.{:02}","rate":".{:02}","unitOfMeasure":"HRS","chargeDetails":"usage of server {i}","chargeDescription":"Compute hours, flavor general1-{}"}}"#,
            i % 40,
            cents / 100,
            cents % 100,
            10 + i % 80,
            1 + i % 8
        );
    }
    s.push_str(r#"],"link":[{"rel":"next","href":"https://billing.api.rackspacecloud.com/v2/accounts/123456/estimated-charges?marker=1000&limit=1000"}]}}"#);
    s
}

/// The bill of the usage month May 2026 (billed 2026-06-01), for the given amount.
fn sakura_bill(amount: u64) -> Bill {
    serde_json::from_str(&format!(
        r#"{{"BillID": 1234567, "Amount": {amount}, "Date": "2026-06-01T00:00:00+09:00", "MemberID": "xxx000001", "Paid": false}}"#
    ))
    .unwrap()
}

fn sakura_bills() -> String {
    let mut s = String::from(
        r#"{"is_ok":true,"ResponsedAt":"2026-05-28T13:33:13+09:00","Count":1000,"Total":1000,"From":0,"Bills":["#,
    );
    for i in 0..PAGE {
        if i > 0 {
            s.push(',');
        }
        // Spread over the window's months, several bills a month (one per contract).
        let month = 1 + i % 12;
        let year = if month <= 6 { 2026 } else { 2025 };
        let _ = write!(
            s,
            r#"{{"PaymentClassID":200,"PayLimit":"{year}-{month:02}-28T00:00:00+09:00","Paid":{},"MemberID":"xxx000001","Date":"{year}-{month:02}-10T00:00:00+09:00","BillID":{},"Amount":{}}}"#,
            i % 3 == 0,
            13_000_000 + i,
            1_000 + pick(i, 3, 100_000)
        );
    }
    s.push_str("]}");
    s
}

/// Bill details for May 2026 and the amount of the bill they add up to.
fn sakura_details() -> (String, u64) {
    let mut s = String::from(
        r#"{"is_ok":true,"ResponsedAt":"2026-05-28T13:39:54+09:00","Count":1000,"Total":1000,"BillDetails":["#,
    );
    let mut total = 0;
    for i in 0..PAGE {
        if i > 0 {
            s.push(',');
        }
        let amount = pick(i, 4, 20_000);
        total += amount;
        let _ = write!(
            s,
            r#"{{"Usage":{},"ServiceClassID":{},"Index":{},"ContractID":"1127{:08}","Amount":{amount},"Description":"サーバ/プラン/{}Core-{}GB","ServiceClassPath":"cloud/plan/server","FormattedUsage":"{}時間","Zone":"is1b"}}"#,
            3_600 * (1 + pick(i, 5, 700)),
            50_000 + i % 300,
            i + 1,
            i,
            1 + i % 8,
            2 * (1 + i % 8),
            1 + pick(i, 5, 700)
        );
    }
    s.push_str("]}");
    (s, total)
}

/// The CSV statement of May 2026 and the amount (prices plus tax) of its bill.
fn sakura_csv() -> (String, u64) {
    let mut s = String::from(
        "\u{feff}\"連番\",\"請求書番号\",\"利用年月\",\"支払状況\",\"会員ID\",\"アカウントコード\",\"リソースID\",\"商品ID\",\"商品名\",\"ゾーンID\",\"ゾーン名\",\"日数\",\"時間\",\"商品価格(税抜)\",\"消費税\",\"リソース名\"\r\n",
    );
    let mut total = 0;
    for i in 0..PAGE {
        let price = pick(i, 6, 20_000);
        let tax = price / 10;
        total += price + tax;
        let _ = write!(
            s,
            "\"{}\",\"000001234\",\"2026/05\",\"未入金\",\"xxx000001\",\"payTest\",\"1127{i:08}\",\"{}\",\"サーバ/プラン/{}Core-{}GB\",\"is1b\",\"石狩第2ゾーン\",\"27\",\"{}\",\"{price}\",\"{tax}\",\"web-{i:04}\"\r\n",
            i + 1,
            50_000 + i % 300,
            1 + i % 8,
            2 * (1 + i % 8),
            i % 24
        );
    }
    (s, total)
}

fn racknap_invoices() -> String {
    let mut s = String::from(r#"{"success":true,"code":200,"data":["#);
    for i in 0..PAGE {
        if i > 0 {
            s.push(',');
        }
        let cents = pick(i, 7, 1_000_000);
        // Monthly invoices of 100 customers over 10 months.
        let month = 1 + (i / 100) % 10;
        let _ = write!(
            s,
            r#"{{"id":"inv_{i:08x}","customerId":"cust_{:04}","amount":{}.{:02},"status":"{}","currency":"USD","periodStart":"2025-{month:02}-01","periodEnd":"2025-{month:02}-28","issueDate":"2025-{month:02}-28","dueDate":"2025-{:02}-15"}}"#,
            i % 100,
            cents / 100,
            cents % 100,
            if i % 10 == 0 { "VOID" } else { "PAID" },
            month + 1
        );
    }
    s.push_str(r#"],"pagination":{"total":25000,"offset":0,"limit":1000,"hasMore":true},"meta":{"timestamp":"2026-05-28T14:32:10Z","requestId":"req_xyz789"}}"#);
    s
}

fn threescale_line_item(s: &mut String, i: usize) {
    let cents = pick(i, 8, 100_000);
    if i % 2 == 0 {
        let _ = writeln!(
            s,
            "<line-item><id>{}</id><name>Fixed fee ('Pro {i}')</name><description>Plan cost</description><quantity>1</quantity><type>LineItem::PlanCost</type><metric_id/><plan_id>{}</plan_id><contract_id>{}</contract_id><contract_type>Cinstance</contract_type><cost>{}.{:02}</cost></line-item>",
            100_000 + i,
            7 + i % 5,
            9_000 + i,
            cents / 100,
            cents % 100
        );
    } else {
        let _ = writeln!(
            s,
            "<line-item><id>{}</id><name>Hits of app {i}</name><description>Variable cost</description><quantity>{}</quantity><type>LineItem::VariableCost</type><metric_id>{}</metric_id><plan_id>{}</plan_id><contract_id>{}</contract_id><contract_type>Cinstance</contract_type><cost>{}.{:02}</cost></line-item>",
            100_000 + i,
            1 + pick(i, 9, 1_000_000),
            if i % 3 == 0 { 42 } else { 43 },
            7 + i % 5,
            9_000 + i,
            cents / 100,
            cents % 100
        );
    }
}

/// One `<invoice>` element with `items` line items starting at `first_item`.
fn threescale_invoice(s: &mut String, id: usize, buyer: usize, month: usize, items: usize) {
    let _ = writeln!(
        s,
        "<invoice version=\"1.0\"><id>{id}</id><friendly_id>2026-{month:02}-{id:08}</friendly_id><creation_type>background</creation_type><state>{}</state><paid_at/><due_on>2026-{:02}-15</due_on><issued_on>2026-{:02}-01</issued_on><currency>EUR</currency><cost>1000.0</cost><vat_rate>20.0</vat_rate><vat_amount>200.0</vat_amount><cost_without_vat>800.0</cost_without_vat><period><from>2026-{month:02}-01</from><to>2026-{month:02}-28</to></period><provider><id>2</id><org_name>Provider Inc.</org_name></provider><buyer><id>{buyer}</id><org_name>Buyer {buyer} 株式会社</org_name></buyer><line-items>",
        if month == 5 { "open" } else { "paid" },
        month + 1,
        month + 1
    );
    for i in 0..items {
        threescale_line_item(s, id * 10 + i);
    }
    s.push_str(
        "</line-items><payment_transactions_count>0</payment_transactions_count></invoice>\n",
    );
}

fn threescale_list() -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<invoices version=\"1.0\"><pagination total_pages=\"3\" current_page=\"1\" per_page=\"1000\" total_entries=\"2500\"/>\n",
    );
    for i in 0..PAGE {
        // 200 buyers × 5 months, two line items each.
        threescale_invoice(&mut s, i + 1, i % 200, 1 + i / 200, 2);
    }
    s.push_str("</invoices>\n");
    s
}

fn threescale_one_invoice() -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    threescale_invoice(&mut s, 1, 5, 5, PAGE);
    s
}

fn threescale_items() -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<line_items>\n");
    for i in 0..PAGE {
        threescale_line_item(&mut s, i);
    }
    s.push_str("</line_items>\n");
    s
}

fn prometheus_range() -> String {
    let start = 1_779_000_000u64;
    let mut s = String::from(r#"{"status":"success","data":{"resultType":"matrix","result":["#);
    for series in 0..PROM_SERIES {
        if series > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            r#"{{"metric":{{"account":"acct-{series:05}","job":"api","env":"prod"}},"values":["#
        );
        for k in 0..PROM_SAMPLES {
            if k > 0 {
                s.push(',');
            }
            let value = 1_000.0 + pick(series * PROM_SAMPLES + k, 10, 1_000_000) as f64 / 37.0;
            let _ = write!(s, r#"[{},"{value}"]"#, start + 3_600 * k as u64);
        }
        s.push_str("]}");
    }
    s.push_str("]}}");
    s
}

fn file_csv() -> String {
    let mut s = String::from("timestamp,value,labels\n");
    let start = 1_779_000_000u64;
    for i in 0..CSV_ROWS {
        let _ = writeln!(
            s,
            "{},{}.{},account=acct-{:04};region=eu-{}",
            start + 3_600 * (i / 1_000) as u64,
            pick(i, 11, 100_000),
            pick(i, 12, 1_000),
            i % 1_000,
            i % 3
        );
    }
    s
}

fn detect_csv() -> String {
    let mut s = String::from("timestamp,value\n");
    for i in 0..CSV_ROWS {
        let at = Timestamp::from_second(1_700_000_000 + 3_600 * i as i64).unwrap();
        let _ = writeln!(s, "{at},{}", 100.0 + pick(i, 13, 100_000) as f64 / 997.0);
    }
    s
}

/// The bench world's config (a file source, three rules) plus many more rules.
fn config_toml() -> String {
    let mut s = spendwatch::bench::config_text(Path::new("bench.db"));
    for i in 0..CONFIG_RULES {
        let _ = write!(
            s,
            r#"
[[rules]]
[rules.budget]
name = "budget-{i}"
source = "sim"
accounts = ["acct-{i:05}"]
amount = "{}.00"
currency = "USD"
for = "2h"
labels = {{ team = "team-{}", env = "prod" }}
levels = [{{ percent = 50, severity = "info" }}, {{ percent = 80 }}, {{ percent = 100, severity = "critical", basis = "forecast" }}]

[[rules]]
[rules.ratio]
name = "unit-cost-{i}"
accounts = ["acct-{i:05}"]
numerator = {{ source = "sim" }}
denominator = {{ source = "sim", match = {{ series = "requests" }} }}
window = "1d"
per = 1000
baseline = {{ history = "14d", min_windows = 7, sensitivity = 4 }}
min_impact = "25.00"
"#,
            1_000 + i * 10,
            i % 7
        );
    }
    s
}

/// Parses (and maps) a body; returns how many items it produced.
type Parse = Box<dyn Fn(&[u8]) -> usize>;

/// One parser on one body: what is measured per iteration.
struct Case {
    name: &'static str,
    body: Vec<u8>,
    run: Parse,
}

impl Case {
    fn new(
        name: &'static str,
        body: impl Into<Vec<u8>>,
        run: impl Fn(&[u8]) -> usize + 'static,
    ) -> Self {
        Case {
            name,
            body: body.into(),
            run: Box::new(run),
        }
    }
}

fn cases() -> Vec<Case> {
    let now = now();
    let sakura_window = Window::new(now, 12).unwrap();
    let (details, details_total) = sakura_details();
    let (statement, statement_total) = sakura_csv();
    let json = {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h
    };
    let three_settings = MapSettings {
        source: "threescale".to_string(),
        usage_unit: "hits".to_string(),
        metric_units: BTreeMap::from([("42".to_string(), "requests".to_string())]),
    };
    let three_settings_list = three_settings.clone();
    let three_settings_items = three_settings.clone();
    vec![
        Case::new(
            "rackspace estimated_charges JSON",
            rackspace_charges(),
            move |b| {
                let page: EstimatedChargesResponse = serde_json::from_slice(b).unwrap();
                rackspace::map::map_estimated_charges(
                    "rackspace",
                    "123456",
                    std::slice::from_ref(&page.estimated_charges),
                    now,
                )
                .unwrap()
                .len()
            },
        ),
        Case::new("sakura bills JSON", sakura_bills(), move |b| {
            let list: BillsResponse = serde_json::from_slice(b).unwrap();
            let bills: Vec<BillData> = list
                .bills
                .into_iter()
                .filter(|b| {
                    UsageMonth::of_bill_date(&b.date).is_ok_and(|m| sakura_window.contains(m))
                })
                .map(|bill| BillData {
                    bill,
                    details: Vec::new(),
                    statement: None,
                })
                .collect();
            sakura::map::map_bills("sakura", "000000526782", &sakura_window, &bills)
                .unwrap()
                .len()
        }),
        Case::new("sakura bill details JSON", details, move |b| {
            let details: BillDetailsResponse = serde_json::from_slice(b).unwrap();
            let data = [BillData {
                bill: sakura_bill(details_total),
                details: details.bill_details,
                statement: None,
            }];
            sakura::map::map_bills("sakura", "000000526782", &sakura_window, &data)
                .unwrap()
                .len()
        }),
        Case::new("sakura statement CSV", statement, move |b| {
            let rows = parse_statement_csv(std::str::from_utf8(b).unwrap()).unwrap();
            let data = [BillData {
                bill: sakura_bill(statement_total),
                details: Vec::new(),
                statement: Some(rows),
            }];
            sakura::map::map_bills("sakura", "000000526782", &sakura_window, &data)
                .unwrap()
                .len()
        }),
        Case::new("racknap invoices JSON", racknap_invoices(), move |b| {
            let fetched = Fetched {
                status: StatusCode::OK,
                headers: json.clone(),
                body: b.to_vec(),
            };
            let listed = read_list(&fetched).unwrap();
            let pages = [Page {
                invoices: listed.list.data,
                request_id: listed.request_id,
            }];
            let usd = Currency::new("USD").unwrap();
            racknap::map::map_invoices("racknap", None, &pages, &usd, &["VOID".into()], now)
                .unwrap()
                .len()
        }),
        Case::new("3scale invoice list XML", threescale_list(), move |b| {
            let list = parse_invoice_list(b).unwrap();
            threescale::map::map_invoices(&three_settings_list, &list.invoices, now)
                .unwrap()
                .len()
        }),
        Case::new("3scale invoice XML", threescale_one_invoice(), move |b| {
            let invoice = parse_invoice(b).unwrap();
            threescale::map::map_invoices(&three_settings, &[invoice], now)
                .unwrap()
                .len()
        }),
        Case::new("3scale line items XML", threescale_items(), move |b| {
            let items = parse_line_items(b).unwrap();
            let mut invoice = parse_invoice(
                br#"<invoice><id>1</id><state>open</state><currency>EUR</currency><cost>22.0</cost><period><from>2026-05-01</from><to>2026-05-31</to></period><buyer><id>5</id></buyer></invoice>"#,
            )
            .unwrap();
            invoice.line_items = Some(LineItems { items });
            threescale::map::map_invoices(&three_settings_items, &[invoice], now)
                .unwrap()
                .len()
        }),
        Case::new("prometheus query_range JSON", prometheus_range(), |b| {
            let envelope: Envelope = serde_json::from_slice(b).unwrap();
            let query = QuerySettings {
                name: "requests".to_string(),
                query: "sum by (account) (increase(requests_total[1h]))".to_string(),
                unit: "requests".to_string(),
                account_label: "account".to_string(),
                account: None,
            };
            prometheus::map::map_range("prometheus", &query, envelope)
                .unwrap()
                .len()
        }),
        Case::new("file source CSV", file_csv(), |b| {
            let settings = FileSettings {
                name: "file".to_string(),
                path: "traffic.csv".into(),
                unit: "requests".to_string(),
                series: "requests".to_string(),
                account: None,
                interval: Duration::from_secs(60),
                max_bytes: 1 << 30,
            };
            file::map::parse_csv(&settings, b).unwrap().len()
        }),
        Case::new("detect CSV", detect_csv(), |b| {
            spendwatch::detect::parse_series(b, "bench.csv")
                .unwrap()
                .len()
        }),
        Case::new("config TOML", config_toml(), |b| {
            let raw = spendwatch::config::parse_raw(std::str::from_utf8(b).unwrap()).unwrap();
            spendwatch::config::validate(raw, Path::new("/nonexistent/spendwatch-bench"))
                .unwrap()
                .rules
                .len()
        }),
    ]
}

/// Median seconds per run over about `budget` (at least 3 runs).
fn median_seconds(case: &Case, budget: Duration) -> f64 {
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < 3 || started.elapsed() < budget {
        let t = Instant::now();
        std::hint::black_box((case.run)(std::hint::black_box(&case.body)));
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn bench(c: &mut Criterion) {
    // Criterion's name filter (`cargo bench --bench parsers -- csv`) also limits the summary.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| filter.as_deref().is_none_or(|f| c.name.contains(f)))
        .collect();
    let mut group = c.benchmark_group("parsers");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    let mut summary = Vec::new();
    for case in &cases {
        // The body must be valid: a bench of an early error would measure nothing.
        let produced = (case.run)(&case.body);
        assert!(produced > 0, "{}: nothing produced", case.name);
        group.throughput(Throughput::Bytes(case.body.len() as u64));
        group.bench_function(case.name, |b| {
            b.iter(|| (case.run)(std::hint::black_box(&case.body)))
        });
        let seconds = median_seconds(case, Duration::from_secs(1));
        summary.push((case.name, case.body.len(), produced, seconds));
    }
    group.finish();
    println!(
        "\n| parser (parse + map) | body | produced | time | MB/s |\n|---|---:|---:|---:|---:|"
    );
    for (name, bytes, produced, seconds) in summary {
        println!(
            "| {name} | {:.2} MB | {produced} | {:.2} ms | {:.0} |",
            bytes as f64 / 1e6,
            seconds * 1e3,
            bytes as f64 / 1e6 / seconds
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
