//! RackNap `GET /v1/invoices` in the quick-start's shapes: the `success`/`code`/`data`/
//! `pagination`/`meta` envelope, the error envelope (`success: false`, `error{message,type}`,
//! `meta.requestId`), bearer-key auth, offset/limit paging and `X-RateLimit-*` headers on
//! every response, plus the fault queue.
//!
//! Each customer (`Api::Racknap` account) has one invoice per closed billing period for the
//! last [`CLOSED_PERIODS`] periods, with the optional fields the client can map (`currency`,
//! `periodStart`, `periodEnd` as the last day billed, `issueDate`, `dueDate`).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp, ToSpan};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Sim;
use super::faults::{self, BodyFormat, FaultKind};
use super::world::{Api, SimAccount};

/// Requests per minute per API key, as documented.
pub const RATE_LIMIT: u64 = 1000;
/// Closed periods invoiced per customer.
pub const CLOSED_PERIODS: usize = 3;
/// Page size when `limit` is absent (the quick start asks for 10) and the server's cap,
/// which clients asking for more must cope with.
const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 100;
/// Days from issue to due date.
const PAYMENT_TERMS_DAYS: i64 = 14;

fn new_request_id() -> String {
    format!("req_{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

fn meta(sim: &Sim, request_id: &str) -> Value {
    json!({
        "timestamp": sim.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "requestId": request_id,
    })
}

/// The error envelope. `error.type` values are undocumented; these are the simulator's.
fn error_body(sim: &Sim, status: StatusCode, request_id: &str) -> String {
    let (message, kind) = match status.as_u16() {
        401 => ("Invalid or missing API key", "authentication_error"),
        429 => ("Rate limit exceeded", "rate_limit_error"),
        500 => ("Internal server error", "api_error"),
        503 => ("Service temporarily unavailable", "api_error"),
        504 => ("Upstream timed out", "api_error"),
        _ => ("Request failed", "invalid_request_error"),
    };
    json!({
        "success": false,
        "code": status.as_u16(),
        "error": {"message": message, "type": kind},
        "meta": meta(sim, request_id),
    })
    .to_string()
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `X-RateLimit-Limit/Remaining/Reset` (Reset in Unix seconds: the next minute boundary),
/// unless the response already has them (a 429 fault carries its own). The simulator does
/// not enforce the quota — 429s come from the fault queue — but `Remaining` counts down
/// with its request count so clients see it move. Real time, not the simulated clock:
/// clients wait on it.
fn add_rate_limit_headers(headers: &mut HeaderMap, remaining: u64) {
    let reset = (Timestamp::now().as_second() / 60 + 1) * 60;
    for (name, value) in [
        ("x-ratelimit-limit", RATE_LIMIT.to_string()),
        ("x-ratelimit-remaining", remaining.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.entry(HeaderName::from_static(name)).or_insert(v);
        }
    }
}

/// A stable `inv_…` id for a customer's period (FNV-1a).
fn invoice_id(customer: &str, period_start: Timestamp) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in format!("{customer}/{}", period_start.as_second()).bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("inv_{h:08x}")
}

fn day(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d").to_string()
}

/// The invoices of every customer as of `now`, oldest period first. With `skip_newest`
/// the last closed period has no invoice yet (the `EmptyPeriod` fault).
pub fn invoices(accounts: &[SimAccount], now: Timestamp, skip_newest: bool) -> Option<Vec<Value>> {
    let mut out = Vec::new();
    for acct in accounts {
        let mut period = acct.period(now)?;
        for age in 0..CLOSED_PERIODS {
            period = acct.previous_period(period)?;
            if age == 0 && skip_newest {
                continue;
            }
            let (_, charges) = acct.charges(period.end - SignedDuration::from_millis(1))?;
            let total: Decimal = charges.iter().map(|c| c.amount).sum();
            let issued = period.end;
            let due = issued.to_zoned(jiff::tz::TimeZone::UTC);
            let due = due.checked_add(PAYMENT_TERMS_DAYS.days()).ok()?.timestamp();
            out.push((
                period.start,
                acct.id.clone(),
                json!({
                    "id": invoice_id(&acct.id, period.start),
                    "customerId": acct.id,
                    // A JSON number, as documented.
                    "amount": total.round_dp(2).to_f64()?,
                    "status": if now < due { "UNPAID" } else { "PAID" },
                    "currency": acct.currency,
                    "periodStart": day(period.start),
                    // The last day billed (the client's `PERIOD_END_IS_INCLUSIVE`).
                    "periodEnd": day(period.end - SignedDuration::from_hours(24)),
                    "issueDate": day(issued),
                    "dueDate": day(due),
                }),
            ));
        }
    }
    out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Some(out.into_iter().map(|(_, _, v)| v).collect())
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    offset: Option<usize>,
    #[serde(rename = "customerId")]
    customer_id: Option<String>,
}

/// `GET /v1/invoices?limit=&offset=&customerId=`.
pub async fn list_invoices(
    State(sim): State<Sim>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let remaining = {
        let mut inner = sim.lock();
        inner.stats.billing_requests += 1;
        let n = inner.stats.billing_requests;
        RATE_LIMIT - 1 - (n.saturating_sub(1) % RATE_LIMIT)
    };
    let mut response = respond(&sim, q, &headers).await;
    add_rate_limit_headers(response.headers_mut(), remaining);
    response
}

async fn respond(sim: &Sim, q: ListQuery, headers: &HeaderMap) -> Response {
    let request_id = new_request_id();
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if key != Some(sim.api_key.as_str()) {
        sim.lock().stats.unauthorized += 1;
        return json_response(
            StatusCode::UNAUTHORIZED,
            error_body(sim, StatusCode::UNAUTHORIZED, &request_id),
        );
    }
    let fault = sim.take_fault("racknap");
    if let Some(f) = &fault
        && let Some(mut response) = faults::serve(f, BodyFormat::Json, |status| {
            error_body(sim, status, &request_id)
        })
        .await
    {
        // RackNap documents only `X-RateLimit-Reset` for a 429, not `Retry-After`.
        response.headers_mut().remove(header::RETRY_AFTER);
        return response;
    }
    let empty_period = fault.is_some_and(|f| f.fault == FaultKind::EmptyPeriod);

    let accounts = sim.accounts(Api::Racknap);
    let Some(all) = invoices(&accounts, sim.clock.now(), empty_period) else {
        return json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            error_body(sim, StatusCode::INTERNAL_SERVER_ERROR, &request_id),
        );
    };
    let listed: Vec<Value> = match &q.customer_id {
        Some(c) => all
            .into_iter()
            .filter(|inv| inv["customerId"] == c.as_str())
            .collect(),
        None => all,
    };
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let page: Vec<Value> = listed.iter().skip(offset).take(limit).cloned().collect();
    let body = json!({
        "success": true,
        "code": 200,
        "data": page,
        "pagination": {
            "total": listed.len(),
            "offset": offset,
            "limit": limit,
            "hasMore": offset + page.len() < listed.len(),
        },
        "meta": meta(sim, &request_id),
    });
    json_response(StatusCode::OK, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::world::demo_world;

    fn racknap_accounts() -> Vec<SimAccount> {
        demo_world()
            .into_iter()
            .filter(|a| a.api == Api::Racknap)
            .collect()
    }

    #[test]
    fn one_invoice_per_closed_period_with_the_period_total() {
        let accounts = racknap_accounts();
        assert!(accounts.len() >= 2);
        let now: Timestamp = "2026-11-20T00:00:00Z".parse().unwrap();
        let all = invoices(&accounts, now, false).unwrap();
        assert_eq!(all.len(), accounts.len() * CLOSED_PERIODS);
        let acct = &accounts[0];
        let (period, charges) = acct.last_closed(now).unwrap();
        let total: Decimal = charges.iter().map(|c| c.amount).sum();
        let inv = all
            .iter()
            .find(|i| i["customerId"] == acct.id.as_str() && i["periodStart"] == "2026-10-01")
            .unwrap();
        assert_eq!(
            period.start,
            "2026-10-01T00:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(inv["periodEnd"], "2026-10-31");
        assert_eq!(inv["issueDate"], "2026-11-01");
        assert_eq!(inv["dueDate"], "2026-11-15");
        assert_eq!(inv["status"], "PAID");
        assert_eq!(inv["currency"], acct.currency.as_str());
        assert_eq!(inv["amount"].as_f64(), total.round_dp(2).to_f64());
        assert_eq!(inv["id"], invoice_id(&acct.id, period.start).as_str());
        assert!(total > Decimal::ZERO);
    }

    #[test]
    fn empty_period_drops_only_the_newest_invoices() {
        let accounts = racknap_accounts();
        let now: Timestamp = "2026-11-02T00:00:00Z".parse().unwrap();
        let all = invoices(&accounts, now, true).unwrap();
        assert_eq!(all.len(), accounts.len() * (CLOSED_PERIODS - 1));
        assert!(all.iter().all(|i| i["periodStart"] != "2026-10-01"));
        assert!(all.iter().any(|i| i["periodStart"] == "2026-09-01"));
    }

    #[test]
    fn rate_limit_headers_keep_a_fault_s_own() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        add_rate_limit_headers(&mut h, 500);
        assert_eq!(h["x-ratelimit-remaining"], "0");
        assert_eq!(h["x-ratelimit-limit"], "1000");
        let reset: i64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
        assert_eq!(reset % 60, 0);
        assert!(reset > Timestamp::now().as_second());
    }
}
