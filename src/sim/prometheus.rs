//! A Prometheus `query_range` endpoint serving the simulated world's traffic. It does not
//! evaluate PromQL: a query naming `requests` returns the requests of every account per
//! step (labels `account`, `api`); any other metric returns an empty matrix, as Prometheus
//! does for absent series. Parameter errors answer as Prometheus does.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::Sim;
use super::faults::{self, BodyFormat, FaultKind};
use crate::sources::prometheus::config::MAX_POINTS_PER_SERIES;

fn error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"status": "error", "errorType": error_type, "error": message})),
    )
        .into_response()
}

/// Seconds as a float, or a Prometheus duration such as `15s`, `1h`.
fn parse_seconds(text: &str) -> Option<f64> {
    text.parse::<f64>()
        .ok()
        .or_else(|| {
            humantime::parse_duration(text)
                .ok()
                .map(|d| d.as_secs_f64())
        })
        .filter(|v| v.is_finite())
}

fn parse_time(text: &str) -> Option<f64> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .or_else(|| {
            text.parse::<Timestamp>()
                .ok()
                .map(|t| t.as_millisecond() as f64 / 1000.0)
        })
}

fn balanced(query: &str) -> bool {
    let mut depth = 0i32;
    for c in query.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0
}

pub async fn query_range_get(
    State(sim): State<Sim>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    query_range(sim, params).await
}

pub async fn query_range_post(
    State(sim): State<Sim>,
    axum::Form(params): axum::Form<HashMap<String, String>>,
) -> Response {
    query_range(sim, params).await
}

async fn query_range(sim: Sim, params: HashMap<String, String>) -> Response {
    sim.lock().stats.billing_requests += 1;
    let fault = sim.take_fault("prometheus");
    if let Some(f) = &fault
        && let Some(r) = faults::serve(f, BodyFormat::Json, |status| {
            json!({"status": "error", "errorType": "internal", "error": status.canonical_reason().unwrap_or("error")})
                .to_string()
        })
        .await
    {
        return r;
    }
    let empty = fault.is_some_and(|f| f.fault == FaultKind::EmptyPeriod);

    let Some(query) = params.get("query").filter(|q| !q.trim().is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "invalid parameter \"query\": unknown position",
        );
    };
    if !balanced(query) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "invalid parameter \"query\": 1:1: parse error: unclosed left parenthesis",
        );
    }
    let (Some(start), Some(end)) = (
        params.get("start").and_then(|s| parse_time(s)),
        params.get("end").and_then(|s| parse_time(s)),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "invalid parameter \"start\"/\"end\": cannot parse to a valid timestamp",
        );
    };
    let Some(step) = params
        .get("step")
        .and_then(|s| parse_seconds(s))
        .filter(|s| *s > 0.0)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        );
    };
    if end < start {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "invalid parameter \"end\": end timestamp must not be before start time",
        );
    }
    if (end - start) / step > MAX_POINTS_PER_SERIES as f64 {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        );
    }

    let mut result: Vec<Value> = Vec::new();
    if query.contains("requests") && !empty {
        let accounts = sim.lock().accounts.clone();
        let step_d = SignedDuration::from_secs_f64(step);
        for account in accounts {
            let mut values = Vec::new();
            let mut t = start;
            while t <= end {
                let Ok(at) = Timestamp::from_millisecond((t * 1000.0).round() as i64) else {
                    break;
                };
                let from = at - step_d;
                if let Some(period) = account.period(from) {
                    let v = account.traffic_between(period, from, at);
                    values.push(json!([t, format!("{v:.3}")]));
                }
                t += step;
            }
            result.push(json!({
                "metric": {"account": account.id, "api": format!("{:?}", account.api).to_lowercase()},
                "values": values,
            }));
        }
    }
    Json(json!({"status": "success", "data": {"resultType": "matrix", "result": result}}))
        .into_response()
}
