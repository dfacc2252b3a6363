//! Rackspace Identity v2.0 and Billing v2 `estimated_charges`, in the documented shapes
//! (string amounts with leading dots, numeric `total`, offset-less period dates, `link`
//! paging with the hyphenated `next` href), plus fault injection.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Sim;
use super::faults::{self, BodyFormat, FaultKind, FaultRequest};
use super::world::{Adjustment, Api};
use crate::model::parse_amount;

fn fault_body(status: StatusCode, key: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ key: { "code": status.as_u16(), "message": message } }).to_string(),
    )
        .into_response()
}

/// Amounts as the API writes them: `"100.00"`, and `.40` without the leading zero.
fn api_amount(d: Decimal) -> String {
    let text = format!("{:.2}", d.round_dp(2));
    match text.strip_prefix("0.") {
        Some(rest) => format!(".{rest}"),
        None => match text.strip_prefix("-0.") {
            Some(rest) => format!("-.{rest}"),
            None => text,
        },
    }
}

pub async fn tokens(State(sim): State<Sim>, Json(body): Json<Value>) -> Response {
    let creds = &body["auth"]["RAX-KSKEY:apiKeyCredentials"];
    let mut inner = sim.lock();
    inner.stats.auth_requests += 1;
    if creds["username"] != sim.username.as_str() || creds["apiKey"] != sim.api_key.as_str() {
        return fault_body(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Username or api key is invalid.",
        );
    }
    let token = format!("sim-{:032x}", rand::random::<u128>());
    let ttl = jiff::SignedDuration::try_from(sim.token_ttl)
        .unwrap_or(jiff::SignedDuration::from_hours(24));
    let expires = jiff::Timestamp::now() + ttl;
    inner.tokens.insert(token.clone(), expires);
    let body = json!({
        "access": {
            "token": {
                "id": token,
                "expires": expires.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                "tenant": {"id": "123456", "name": "123456"},
                "RAX-AUTH:authenticatedBy": ["APIKEY"]
            },
            "serviceCatalog": [],
            "user": {"id": "1", "name": sim.username, "roles": [{"name": "billing:observer"}]}
        }
    });
    (StatusCode::OK, Json(body)).into_response()
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    limit: Option<usize>,
    marker: Option<usize>,
}

pub async fn estimated_charges(
    State(sim): State<Sim>,
    Path(ran): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    {
        let mut inner = sim.lock();
        inner.stats.billing_requests += 1;
        let token = headers
            .get("X-Auth-Token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let valid = inner
            .tokens
            .get(token)
            .is_some_and(|exp| *exp > jiff::Timestamp::now());
        if !valid {
            inner.stats.unauthorized += 1;
            return fault_body(StatusCode::UNAUTHORIZED, "Error", "Unauthorized");
        }
        if q.marker.unwrap_or(0) == 0 {
            let requester = headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            // Bounded, for a simulator left running: the oldest half goes.
            if inner.polls.len() >= super::MAX_POLL_RECORDS {
                inner.polls.drain(..super::MAX_POLL_RECORDS / 2);
            }
            inner.polls.push(super::PollRecord {
                account: ran.clone(),
                requester,
                at: jiff::Timestamp::now(),
            });
        }
    }
    let fault = sim.take_fault("rackspace");
    if let Some(f) = &fault
        && let Some(response) = faults::serve(f, BodyFormat::Json, |status| {
            json!({"Error": {"code": status.as_u16(), "message": status.canonical_reason().unwrap_or("error")}}).to_string()
        })
        .await
    {
        return response;
    }
    let empty_period = fault.is_some_and(|f| f.fault == FaultKind::EmptyPeriod);

    let now = sim.clock.now();
    let (account, charges) = {
        let inner = sim.lock();
        let Some(account) = inner
            .accounts
            .iter()
            .find(|a| a.api == Api::Rackspace && a.id == ran)
            .cloned()
        else {
            return (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "application/json")],
                json!({"notFound": {"message": "Account not Found", "referenceCode": "sim-404"}})
                    .to_string(),
            )
                .into_response();
        };
        let charges = account.charges(now);
        (account, charges)
    };
    let Some((period, mut charges)) = charges else {
        return fault_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error",
            "period computation failed",
        );
    };
    if empty_period {
        // Start of a cycle: no charges accrued yet.
        charges.clear();
    }
    let total: Decimal = charges.iter().map(|c| c.amount).sum();
    let limit = q.limit.unwrap_or(25).clamp(1, 200);
    let marker = q.marker.unwrap_or(0);
    let page: Vec<Value> = charges
        .iter()
        .skip(marker)
        .take(limit)
        .map(|c| {
            json!({
                "offeringCode": c.code,
                "chargeType": c.charge_type,
                "category": "CHARGE",
                "quantity": api_amount(c.quantity),
                "amount": api_amount(c.amount),
                "unitOfMeasure": c.unit,
                "rate": api_amount(c.unit_price),
            })
        })
        .collect();
    let fmt = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let remaining_days = period.end.duration_since(now).as_secs() / 86_400;
    let mut links = Vec::new();
    if marker + limit < charges.len() {
        links.push(json!({
            "rel": "next",
            "href": format!("https://billing.api.rackspacecloud.com/v2/accounts/{ran}/estimated-charges?marker={}&limit={limit}", marker + limit),
        }));
    }
    if marker > 0 {
        links.push(json!({
            "rel": "prev",
            "href": format!("https://billing.api.rackspacecloud.com/v2/accounts/{ran}/estimated-charges?marker={}&limit={limit}", marker.saturating_sub(limit)),
        }));
    }
    let body = json!({
        "estimatedCharges": {
            // A JSON number, as in the documented examples; the other totals are strings.
            "total": total.round_dp(2).to_f64().unwrap_or(0.0),
            "discountTotal": "0.00",
            "chargeSubTotal": api_amount(total),
            "chargeHierarchyTotal": "0.00",
            "currency": account.currency,
            "currentBillingPeriodStartDate": fmt(period.start),
            "currentBillingPeriodEndDate": fmt(period.end),
            "durationRemainingInCycle": format!("P{remaining_days}D"),
            "estimatedCharge": page,
            "link": links,
        }
    });
    (StatusCode::OK, Json(body)).into_response()
}

pub async fn inject_fault(State(sim): State<Sim>, Json(f): Json<FaultRequest>) -> StatusCode {
    sim.inject_fault(f);
    StatusCode::NO_CONTENT
}

pub async fn expire_tokens(State(sim): State<Sim>) -> StatusCode {
    sim.expire_tokens();
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
pub struct AdjustmentRequest {
    pub amount: String,
    /// The item code (Rackspace offering, SAKURA service class, …).
    #[serde(alias = "offering")]
    pub item: String,
}

pub async fn add_adjustment(
    State(sim): State<Sim>,
    Path(ran): Path<String>,
    Json(req): Json<AdjustmentRequest>,
) -> Response {
    let amount = match parse_amount(&req.amount) {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let at = sim.clock.now();
    let mut inner = sim.lock();
    let Some(account) = inner.accounts.iter_mut().find(|a| a.id == ran) else {
        return (StatusCode::NOT_FOUND, "no such account").into_response();
    };
    if !account.items.iter().any(|i| i.code == req.item) {
        return (StatusCode::BAD_REQUEST, "no such item on this account").into_response();
    }
    account.adjustments.push(Adjustment {
        at,
        item: req.item,
        amount,
    });
    StatusCode::NO_CONTENT.into_response()
}

pub async fn stats(State(sim): State<Sim>) -> Json<super::SimStats> {
    Json(sim.stats())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_look_like_the_api() {
        assert_eq!(api_amount(Decimal::new(40, 2)), ".40");
        assert_eq!(api_amount(Decimal::new(-5, 1)), "-.50");
        assert_eq!(api_amount(Decimal::from(1000)), "1000.00");
    }
}
