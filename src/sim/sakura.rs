//! SAKURA Cloud billing API (請求関連API) in the documented shapes: auth-status (Basic auth
//! with the access token and secret), bill lists (all, by year, by year/month), bill details
//! and the CSV statement inside JSON, iaas-api-go error bodies, and the fault matrix.
//!
//! Months are JST calendar months. The shared world computes its periods in UTC, so a JST
//! instant is evaluated at the same wall-clock time read as UTC (+9 h): JST day 18 of the
//! bill is day 18 of the world's period. Bills are dated the 10th of the month after their
//! usage; the current month's bill exists from the 2nd (data through yesterday), and
//! `EmptyPeriod` hides it ("not created yet"). Each line is one contract: price = accrued
//! amount rounded down to the yen, tax = 10 % of it rounded down, detail `Amount` = both.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::civil::Date;
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp, ToSpan};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};

use super::Sim;
use super::faults::{self, BodyFormat, FaultKind};
use super::world::{Api, SimAccount};

pub const DEMO_ACCESS_TOKEN: &str = "demo-sakura-access-token";
pub const DEMO_ACCESS_TOKEN_SECRET: &str = "demo-sakura-access-token-secret";

/// Closed months of bill history the simulator keeps.
pub const HISTORY_MONTHS: i32 = 18;
const TAX_PERCENT: i64 = 10;
const PAYMENT_CLASS_ID: u64 = 200;

/// The statement's header row (the manual lists the fields, not the header text).
pub const CSV_HEADER: [&str; 16] = [
    "連番",
    "請求書番号",
    "利用年月",
    "支払状況",
    "会員ID",
    "アカウントコード",
    "リソースID",
    "商品ID",
    "商品名",
    "ゾーンID",
    "ゾーン名",
    "日数",
    "時間",
    "商品価格(税抜)",
    "消費税",
    "リソース名",
];

fn jst() -> TimeZone {
    // Japan has no DST: a fixed offset is exact.
    TimeZone::fixed(Offset::constant(9))
}

fn jst_text(t: Timestamp) -> String {
    t.to_zoned(jst())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

fn jst_midnight(d: Date) -> Option<Timestamp> {
    d.to_zoned(jst()).ok().map(|z| z.timestamp())
}

/// The world's instant for a JST instant: the same wall-clock time read as UTC.
fn world_time(t: Timestamp) -> Option<Timestamp> {
    t.to_zoned(jst())
        .datetime()
        .to_zoned(TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// One line of a bill: one contract (resource) of one service class.
#[derive(Debug, Clone, PartialEq)]
pub struct SimLine {
    pub contract: String,
    pub service_class: u64,
    pub name: String,
    pub unit: String,
    /// Seconds, or a count (GB) for traffic.
    pub usage: i64,
    /// Yen, tax excluded.
    pub price: i64,
    pub tax: i64,
    pub zone_id: String,
    pub zone_name: String,
    pub days: i64,
    pub hours: i64,
    pub resource_name: String,
}

impl SimLine {
    pub fn amount(&self) -> i64 {
        self.price + self.tax
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimBill {
    pub id: u64,
    pub year: i16,
    pub month: i8,
    /// The 10th of the month after the usage month, 00:00 JST.
    pub date: Timestamp,
    pub pay_limit: Timestamp,
    pub paid: bool,
    /// Σ line amounts, tax included.
    pub amount: i64,
    pub lines: Vec<SimLine>,
    /// The usage month's period in JST.
    pub period_start: Timestamp,
    pub period_end: Timestamp,
    /// What the bill's data describes: the period end, or today 00:00 JST for the current month.
    pub data_through: Timestamp,
}

fn account_number(account: &SimAccount) -> u64 {
    account.id.parse().unwrap_or(0)
}

fn extra<'a>(account: &'a SimAccount, key: &str) -> &'a str {
    account.extra.get(key).map(String::as_str).unwrap_or("")
}

/// Every bill of `account` as of `now`, newest first: `HISTORY_MONTHS` closed months and,
/// from the 2nd of the month, the current one.
pub fn bills_of(account: &SimAccount, now: Timestamp) -> Vec<SimBill> {
    let today = now.to_zoned(jst()).date();
    let Ok(current) = Date::new(today.year(), today.month(), 1) else {
        return Vec::new();
    };
    let Some(today_start) = jst_midnight(today) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for back in 0..=HISTORY_MONTHS {
        let Ok(first) = current.checked_sub(back.months()) else {
            continue;
        };
        let Ok(next) = first.checked_add(1.month()) else {
            continue;
        };
        let (Some(start), Some(end)) = (jst_midnight(first), jst_midnight(next)) else {
            continue;
        };
        let data_through = if back == 0 {
            // Created the following day: nothing on the 1st.
            if today_start <= start {
                continue;
            }
            today_start
        } else {
            end
        };
        // The world's charges at the last instant the bill covers.
        let Some(world_at) = world_time(data_through) else {
            continue;
        };
        let world_at = if back == 0 {
            world_at
        } else {
            world_at - SignedDuration::from_millis(1)
        };
        let Some((_, charges)) = account.charges(world_at) else {
            continue;
        };
        let elapsed = data_through.duration_since(start);
        let days = elapsed.as_secs() / 86_400;
        let hours = elapsed.as_secs() % 86_400 / 3600;
        let mut lines = Vec::new();
        for (i, c) in charges.iter().enumerate() {
            if c.quantity <= Decimal::ZERO {
                continue;
            }
            let price = c.amount.floor().to_i64().unwrap_or(0);
            let global = c.charge_type == "egress";
            lines.push(SimLine {
                contract: format!("1127{:02}{:06}", i + 1, account_number(account) % 1_000_000),
                service_class: c.code.parse().unwrap_or(0),
                name: c.name.clone(),
                unit: c.unit.clone(),
                usage: c.quantity.round().to_i64().unwrap_or(0),
                price,
                tax: price * TAX_PERCENT / 100,
                zone_id: if global { "" } else { "is1b" }.into(),
                zone_name: if global { "" } else { "石狩第2ゾーン" }.into(),
                days,
                hours,
                // Quotes and a comma, so the CSV needs real quoting.
                resource_name: format!("{} \"{}\", #{}", c.charge_type, c.code, i + 1),
            });
        }
        let Ok(date) = Date::new(next.year(), next.month(), 10) else {
            continue;
        };
        let (Some(date), Some(pay_limit)) =
            (jst_midnight(date), jst_midnight(next.last_of_month()))
        else {
            continue;
        };
        let month_index = (i64::from(first.year()) * 12 + i64::from(first.month())) as u64;
        out.push(SimBill {
            id: 10_000_000 + (account_number(account) % 1000) * 10_000 + month_index % 10_000,
            year: first.year(),
            month: first.month(),
            date,
            pay_limit,
            // Older bills are paid; last month's confirmed one and the current one are not.
            paid: back >= 2,
            amount: lines.iter().map(SimLine::amount).sum(),
            lines,
            period_start: start,
            period_end: end,
            data_through,
        });
    }
    out
}

fn error_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        423 => "locked",
        429 => "too_many_requests",
        503 => "service_unavailable",
        504 => "gateway_timeout",
        _ => "unknown",
    }
}

/// iaas-api-go's `APIErrorResponse` document.
pub fn error_body(status: StatusCode, message: &str) -> String {
    json!({
        "is_fatal": true,
        "serial": format!("{:032x}", rand::random::<u128>()),
        "status": format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")),
        "error_code": error_code(status),
        "error_msg": message,
    })
    .to_string()
}

fn error_response(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        error_body(status, message),
    )
        .into_response()
}

fn ok_json(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        let sextet = |shift: u32| char::from(TABLE[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

/// The `Authorization` value of a key.
pub fn basic_auth(token: &str, secret: &str) -> String {
    format!("Basic {}", base64(format!("{token}:{secret}").as_bytes()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    AuthStatus,
    Billing,
}

/// Counts the request, authenticates the key, then serves a queued fault if any.
/// Returns the key's account and whether the current month must look "not created yet".
async fn begin(
    sim: &Sim,
    headers: &HeaderMap,
    endpoint: Endpoint,
) -> Result<(SimAccount, bool), Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let account = {
        let mut inner = sim.lock();
        match endpoint {
            Endpoint::AuthStatus => inner.stats.auth_requests += 1,
            Endpoint::Billing => inner.stats.billing_requests += 1,
        }
        let found = inner
            .accounts
            .iter()
            .find(|a| {
                a.api == Api::Sakura
                    && given
                        == basic_auth(extra(a, "access_token"), extra(a, "access_token_secret"))
            })
            .cloned();
        if found.is_none() {
            inner.stats.unauthorized += 1;
        }
        found
    };
    let Some(account) = account else {
        return Err(error_response(
            StatusCode::UNAUTHORIZED,
            "error-unauthorized",
        ));
    };
    let fault = sim.take_fault("sakura");
    if let Some(f) = &fault
        && let Some(response) = faults::serve(f, BodyFormat::Json, |status| {
            error_body(status, "simulated fault")
        })
        .await
    {
        return Err(response);
    }
    if endpoint == Endpoint::Billing
        && !extra(&account, "external_permission")
            .split('+')
            .any(|p| p == "bill")
    {
        return Err(error_response(
            StatusCode::FORBIDDEN,
            "error-forbidden: the API key has no access to billing information",
        ));
    }
    let empty_period = fault.is_some_and(|f| f.fault == FaultKind::EmptyPeriod);
    Ok((account, empty_period))
}

pub async fn auth_status(
    State(sim): State<Sim>,
    Path(_zone): Path<String>,
    headers: HeaderMap,
) -> Response {
    let account = match begin(&sim, &headers, Endpoint::AuthStatus).await {
        Ok((a, _)) => a,
        Err(r) => return r,
    };
    ok_json(json!({
        "is_ok": true,
        "Member": {"Errors": null, "Code": extra(&account, "member_code"), "Class": "sakura"},
        "User": null,
        "AuthMethod": "apikey",
        "AuthClass": "account",
        "Permission": "create",
        "ExternalPermission": extra(&account, "external_permission"),
        "RESTFilter": null,
        "IsAPIKey": true,
        "OperationPenalty": "none",
        "Account": {
            "Code": extra(&account, "account_code"),
            "Name": account.name,
            "Class": "account",
            // A zero-padded code: a string even with X-Sakura-Bigint-As-Int.
            "ID": account.id,
        },
    }))
}

fn same_number(a: &str, b: &str) -> bool {
    matches!((a.parse::<u64>(), b.parse::<u64>()), (Ok(x), Ok(y)) if x == y)
}

fn bigint_as_int(headers: &HeaderMap) -> bool {
    headers
        .get("X-Sakura-Bigint-As-Int")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "1")
}

pub async fn bills_all(
    State(sim): State<Sim>,
    Path((_zone, account)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    bill_list(&sim, &headers, &account, None, None).await
}

pub async fn bills_by_year(
    State(sim): State<Sim>,
    Path((_zone, account, year)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    bill_list(&sim, &headers, &account, Some(&year), None).await
}

pub async fn bills_by_month(
    State(sim): State<Sim>,
    Path((_zone, account, year, month)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    bill_list(&sim, &headers, &account, Some(&year), Some(&month)).await
}

async fn bill_list(
    sim: &Sim,
    headers: &HeaderMap,
    account_param: &str,
    year: Option<&str>,
    month: Option<&str>,
) -> Response {
    let (account, empty_period) = match begin(sim, headers, Endpoint::Billing).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if !same_number(account_param, &account.id) {
        return error_response(StatusCode::FORBIDDEN, "error-forbidden");
    }
    let year: Option<i16> = match year.map(str::parse) {
        None => None,
        Some(Ok(y)) => Some(y),
        Some(Err(_)) => return error_response(StatusCode::NOT_FOUND, "error-not-found"),
    };
    let month: Option<i8> = match month.map(str::parse) {
        None => None,
        Some(Ok(m)) if (1..=12).contains(&m) => Some(m),
        Some(_) => return error_response(StatusCode::NOT_FOUND, "error-not-found"),
    };
    let now = sim.clock.now();
    let current = now.to_zoned(jst()).date();
    let bills: Vec<Value> = bills_of(&account, now)
        .into_iter()
        .filter(|b| !(empty_period && b.year == current.year() && b.month == current.month()))
        .filter(|b| {
            let date = b.date.to_zoned(jst()).date();
            year.is_none_or(|y| date.year() == y) && month.is_none_or(|m| date.month() == m)
        })
        .map(|b| {
            json!({
                "PaymentClassID": PAYMENT_CLASS_ID,
                "PayLimit": jst_text(b.pay_limit),
                "Paid": b.paid,
                "MemberID": extra(&account, "member_code"),
                "Date": jst_text(b.date),
                "BillID": b.id,
                "Amount": b.amount,
            })
        })
        .collect();
    ok_json(json!({
        "is_ok": true,
        "ResponsedAt": jst_text(now),
        "Count": bills.len(),
        "Total": bills.len(),
        "From": 0,
        "Bills": bills,
    }))
}

/// The bill `bill_param` of the key's account, or the error response.
async fn find_bill(
    sim: &Sim,
    headers: &HeaderMap,
    member: &str,
    bill_param: &str,
) -> Result<(SimAccount, SimBill, Timestamp), Response> {
    let (account, _) = begin(sim, headers, Endpoint::Billing).await?;
    if member != extra(&account, "member_code") {
        return Err(error_response(StatusCode::FORBIDDEN, "error-forbidden"));
    }
    let now = sim.clock.now();
    bills_of(&account, now)
        .into_iter()
        .find(|b| same_number(bill_param, &b.id.to_string()))
        .map(|b| (account, b, now))
        .ok_or_else(|| error_response(StatusCode::NOT_FOUND, "error-not-found"))
}

fn formatted_usage(line: &SimLine) -> String {
    if line.unit == "seconds" {
        format!("{}時間", line.usage / 3600)
    } else {
        format!("{}{}", line.usage, line.unit)
    }
}

pub async fn bill_details(
    State(sim): State<Sim>,
    Path((_zone, member, bill)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (_, bill, now) = match find_bill(&sim, &headers, &member, &bill).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let as_int = bigint_as_int(&headers);
    let details: Vec<Value> = bill
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let contract = if as_int {
                l.contract
                    .parse::<u64>()
                    .map_or(json!(l.contract), |n| json!(n))
            } else {
                json!(l.contract)
            };
            json!({
                "Usage": l.usage,
                "ServiceClassID": l.service_class,
                "Index": i + 1,
                "ContractID": contract,
                "Amount": l.amount(),
                "Description": l.name,
                "FormattedUsage": formatted_usage(l),
                "Zone": l.zone_id,
                "ContractEndAt": null,
            })
        })
        .collect();
    ok_json(json!({
        "is_ok": true,
        "ResponsedAt": jst_text(now),
        "Count": details.len(),
        "BillDetails": details,
    }))
}

fn quoted(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(",")
}

/// The statement as CSV text: header row, then one fully quoted line per contract.
pub fn statement_csv(account: &SimAccount, bill: &SimBill) -> String {
    let status = if bill.paid {
        "入金済み"
    } else {
        "未入金"
    };
    let mut text = quoted(&CSV_HEADER.map(String::from));
    text.push_str("\r\n");
    for (i, l) in bill.lines.iter().enumerate() {
        text.push_str(&quoted(&[
            (i + 1).to_string(),
            format!("{:09}", bill.id),
            format!("{:04}/{:02}", bill.year, bill.month),
            status.to_string(),
            extra(account, "member_code").to_string(),
            extra(account, "account_code").to_string(),
            l.contract.clone(),
            l.service_class.to_string(),
            l.name.clone(),
            l.zone_id.clone(),
            l.zone_name.clone(),
            l.days.to_string(),
            l.hours.to_string(),
            l.price.to_string(),
            l.tax.to_string(),
            l.resource_name.clone(),
        ]));
        text.push_str("\r\n");
    }
    text
}

pub async fn bill_csv(
    State(sim): State<Sim>,
    Path((_zone, member, bill)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (account, bill, now) = match find_bill(&sim, &headers, &member, &bill).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    ok_json(json!({
        "is_ok": true,
        "ResponsedAt": jst_text(now),
        "Count": bill.lines.len(),
        "Filename": format!("{:09}.csv", bill.id),
        "Body": statement_csv(&account, &bill),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::world::demo_world;

    fn account() -> SimAccount {
        demo_world()
            .into_iter()
            .find(|a| a.api == Api::Sakura)
            .unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn bills_follow_jst_months_and_the_one_day_lag() {
        let acct = account();
        // 1 July 10:00 JST: July's bill is not created yet; June's is, dated 10 July.
        let bills = bills_of(&acct, ts("2026-07-01T10:00:00+09:00"));
        assert_eq!(bills.len(), HISTORY_MONTHS as usize);
        assert_eq!((bills[0].year, bills[0].month), (2026, 6));
        assert_eq!(bills[0].date, ts("2026-07-10T00:00:00+09:00"));
        assert_eq!(bills[0].pay_limit, ts("2026-07-31T00:00:00+09:00"));
        assert!(
            !bills[0].paid && bills[1].paid,
            "last month's bill is not paid yet"
        );
        assert_eq!(bills[0].period_end, ts("2026-07-01T00:00:00+09:00"));
        // 2 July: July's bill holds 1 July.
        let bills = bills_of(&acct, ts("2026-07-02T00:30:00+09:00"));
        assert_eq!((bills[0].year, bills[0].month), (2026, 7));
        assert_eq!(bills[0].data_through, ts("2026-07-02T00:00:00+09:00"));
        let server = bills[0]
            .lines
            .iter()
            .find(|l| l.service_class == 50295)
            .unwrap();
        assert_eq!(server.usage, 172_800, "two servers for one day");
        assert_eq!(server.price, 259);
        assert_eq!(server.tax, 25);
        assert_eq!(
            bills[0].amount,
            bills[0].lines.iter().map(SimLine::amount).sum::<i64>()
        );
        assert!(
            bills[0].lines.iter().all(|l| l.service_class != 50296),
            "no extra server before day 18"
        );
    }

    #[test]
    fn extra_server_runs_on_days_18_to_20() {
        let acct = account();
        let on = |day: &str| {
            let bills = bills_of(&acct, ts(&format!("2026-07-{day}T12:00:00+09:00")));
            bills[0]
                .lines
                .iter()
                .find(|l| l.service_class == 50296)
                .map(|l| l.usage)
        };
        assert_eq!(on("18"), None);
        assert_eq!(on("19"), Some(172_800));
        assert_eq!(on("21"), Some(3 * 172_800));
        assert_eq!(on("28"), Some(3 * 172_800));
    }

    #[test]
    fn statement_csv_is_quoted_and_matches_the_lines() {
        let acct = account();
        let bill = bills_of(&acct, ts("2026-07-15T00:00:00+09:00")).remove(1);
        let text = statement_csv(&acct, &bill);
        let rows = crate::sources::sakura::wire::parse_statement_csv(&text).unwrap();
        assert_eq!(rows.len(), bill.lines.len());
        for (row, line) in rows.iter().zip(&bill.lines) {
            assert_eq!(row.resource_id, line.contract);
            assert_eq!(row.price, Decimal::from(line.price));
            assert_eq!(row.tax, Decimal::from(line.tax));
            assert_eq!(row.month_of_use, "2026/06");
            assert_eq!(row.resource_name, line.resource_name);
            assert!(row.resource_name.contains('"') && row.resource_name.contains(','));
        }
    }
}
