//! Faults any simulated API can serve instead of a normal response, queued per API through
//! `POST /_sim/faults` (`{"api": "sakura", "fault": "status503", "count": 2}`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Syntactically broken body with the API's content type.
    Malformed,
    /// The body stops half-way (a connection cut mid-response).
    Truncated,
    /// An HTML error page from a "proxy", status 200.
    Html,
    /// 401: the token or key is rejected (as an expired token is).
    Status401,
    /// 429 with `Retry-After: 1` and `X-RateLimit-Remaining: 0` / `X-RateLimit-Reset`.
    Status429,
    Status500,
    Status503,
    /// No answer for `delay_ms` (default 30 s).
    Timeout,
    /// The current period has no data yet (each API renders its own "empty").
    EmptyPeriod,
}

impl FaultKind {
    /// Every kind, for a random schedule that draws from all of them.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Malformed,
        FaultKind::Truncated,
        FaultKind::Html,
        FaultKind::Status401,
        FaultKind::Status429,
        FaultKind::Status500,
        FaultKind::Status503,
        FaultKind::Timeout,
        FaultKind::EmptyPeriod,
    ];

    /// The name used in `POST /_sim/faults`.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Malformed => "malformed",
            FaultKind::Truncated => "truncated",
            FaultKind::Html => "html",
            FaultKind::Status401 => "status401",
            FaultKind::Status429 => "status429",
            FaultKind::Status500 => "status500",
            FaultKind::Status503 => "status503",
            FaultKind::Timeout => "timeout",
            FaultKind::EmptyPeriod => "empty_period",
        }
    }
}

/// Faults drawn per data request on top of the queued ones (`spendwatch soak`): each request
/// of every API gets a fault with probability `rate`, its kind drawn uniformly from `kinds`.
/// Seeded, so a schedule is repeatable as far as the order of requests is.
#[derive(Debug, Clone)]
pub struct RandomFaults {
    pub rate: f64,
    pub kinds: Vec<FaultKind>,
    /// How long a `Timeout` fault holds its answer back.
    pub delay_ms: Option<u64>,
    pub seed: u64,
}

/// Which body format a fault should imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Xml,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FaultRequest {
    /// `rackspace`, `sakura`, `racknap`, `threescale` or `prometheus`.
    #[serde(default = "default_api")]
    pub api: String,
    pub fault: FaultKind,
    #[serde(default = "one")]
    pub count: u32,
    pub delay_ms: Option<u64>,
}

fn default_api() -> String {
    "rackspace".into()
}

fn one() -> u32 {
    1
}

fn content_type(format: BodyFormat) -> &'static str {
    match format {
        BodyFormat::Json => "application/json",
        BodyFormat::Xml => "application/xml; charset=utf-8",
    }
}

/// The generic response for a fault, or `None` for `EmptyPeriod`, which the API's own
/// handler renders. `error_body` is the API's error document for the status faults.
pub async fn serve(
    fault: &FaultRequest,
    format: BodyFormat,
    error_body: impl Fn(StatusCode) -> String,
) -> Option<Response> {
    let typed = |status: StatusCode, body: String| {
        (status, [(header::CONTENT_TYPE, content_type(format))], body).into_response()
    };
    Some(match fault.fault {
        FaultKind::Malformed => typed(
            StatusCode::OK,
            match format {
                BodyFormat::Json => r#"{"data": [{"amount": 12.5, "id": "x""#.to_string(),
                BodyFormat::Xml => "<?xml version=\"1.0\"?><invoices><invoice><cost>12.5</invoice>".to_string(),
            },
        ),
        FaultKind::Truncated => typed(
            StatusCode::OK,
            match format {
                BodyFormat::Json => r#"{"success": true, "code": 200, "data": [{"id": "inv_1", "amount": 10"#.to_string(),
                BodyFormat::Xml => "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<invoices><invoice><id>1</id><cost>1".to_string(),
            },
        ),
        FaultKind::Html => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<html><head><title>Maintenance</title></head><body><h1>We'll be right back</h1></body></html>",
        )
            .into_response(),
        FaultKind::Status401 => typed(StatusCode::UNAUTHORIZED, error_body(StatusCode::UNAUTHORIZED)),
        FaultKind::Status429 => {
            let mut r = typed(StatusCode::TOO_MANY_REQUESTS, error_body(StatusCode::TOO_MANY_REQUESTS));
            let reset = (jiff::Timestamp::now().as_second() + 1).to_string();
            let headers = r.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            if let Ok(v) = HeaderValue::from_str(&reset) {
                headers.insert("x-ratelimit-reset", v);
            }
            r
        }
        FaultKind::Status500 => typed(StatusCode::INTERNAL_SERVER_ERROR, error_body(StatusCode::INTERNAL_SERVER_ERROR)),
        FaultKind::Status503 => typed(StatusCode::SERVICE_UNAVAILABLE, error_body(StatusCode::SERVICE_UNAVAILABLE)),
        FaultKind::Timeout => {
            tokio::time::sleep(std::time::Duration::from_millis(fault.delay_ms.unwrap_or(30_000))).await;
            typed(StatusCode::GATEWAY_TIMEOUT, error_body(StatusCode::GATEWAY_TIMEOUT))
        }
        FaultKind::EmptyPeriod => return None,
    })
}
