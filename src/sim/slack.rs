//! A fake Slack Web API with Slack's documented request and response shapes:
//! `POST /api/chat.postMessage` and `POST /api/chat.update` (JSON body, `Authorization: Bearer`,
//! HTTP 200 with `{"ok":true,"channel","ts","message"}` or `{"ok":false,"error":"…"}`), and
//! incoming webhooks `POST /services/{…}` (`ok` as `text/plain`, errors as an HTTP status with
//! the code as plain text: 400 `invalid_payload` / `no_text`, 404 `no_service`, …).
//!
//! It records every request for assertions and can be told to rate-limit the next requests
//! (HTTP 429 with `Retry-After`) or to answer an error code. It is mounted under `/slack` by
//! [`super::Sim::router`] and can also run alone ([`FakeSlack::start`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub const DEFAULT_BOT_TOKEN: &str = "xoxb-spendwatch-sim";
pub const DEFAULT_CHANNEL: &str = "C0SPENDWATCH";
/// The part after `/services/` of the default incoming webhook URL.
pub const DEFAULT_WEBHOOK: &str = "T0SPENDWATCH/B0SPENDWATCH/sim-webhook-key";
const BOT_ID: &str = "B0SPENDWATCH";

/// One request as the fake received it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlackRequest {
    /// `chat.postMessage`, `chat.update` or `webhook`.
    pub method: String,
    /// The request body as JSON (`null` when it did not parse).
    pub body: Value,
    pub channel: Option<String>,
    /// `ts` of the message posted or updated (none when refused).
    pub ts: Option<String>,
    pub thread_ts: Option<String>,
    pub metadata: Option<Value>,
    /// HTTP status answered.
    pub status: u16,
    /// The Slack error code answered, if any.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// HTTP 429 with `Retry-After: retry_after` (seconds).
    RateLimit { retry_after: u64 },
    /// `{"ok":false,"error":code}` (Web API) or the code's HTTP status (webhooks).
    Error { code: String },
}

/// Queued through [`FakeSlack::inject`] or `POST …/_sim/faults`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// `chat.postMessage`, `chat.update` or `webhook`; any method when absent.
    #[serde(default)]
    pub method: Option<String>,
    pub kind: FaultKind,
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

struct Inner {
    token: String,
    channels: BTreeSet<String>,
    /// Webhook path (after `/services/`) → the channel it posts to.
    webhooks: BTreeMap<String, String>,
    /// (channel, ts) → the stored message.
    messages: BTreeMap<(String, String), Value>,
    requests: Vec<SlackRequest>,
    faults: VecDeque<Fault>,
    last_ts_micros: i64,
}

/// The fake's state; clones share it.
#[derive(Clone)]
pub struct FakeSlack {
    inner: Arc<Mutex<Inner>>,
}

impl Default for FakeSlack {
    fn default() -> Self {
        FakeSlack {
            inner: Arc::new(Mutex::new(Inner {
                token: DEFAULT_BOT_TOKEN.to_string(),
                channels: BTreeSet::from([DEFAULT_CHANNEL.to_string()]),
                webhooks: BTreeMap::from([(
                    DEFAULT_WEBHOOK.to_string(),
                    DEFAULT_CHANNEL.to_string(),
                )]),
                messages: BTreeMap::new(),
                requests: Vec::new(),
                faults: VecDeque::new(),
                last_ts_micros: 0,
            })),
        }
    }
}

impl FakeSlack {
    /// A poisoned lock (a panicked handler) is recovered: the data is plain.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The only bot token accepted from now on.
    pub fn set_token(&self, token: &str) {
        self.lock().token = token.to_string();
    }

    pub fn add_channel(&self, channel: &str) {
        self.lock().channels.insert(channel.to_string());
    }

    /// Adds an incoming webhook `/services/{path}` posting to `channel`.
    pub fn add_webhook(&self, path: &str, channel: &str) {
        self.add_channel(channel);
        self.lock()
            .webhooks
            .insert(path.to_string(), channel.to_string());
    }

    pub fn inject(&self, fault: Fault) {
        if fault.count > 0 {
            self.lock().faults.push_back(fault);
        }
    }

    /// The next `count` requests (any method) answer 429 with `Retry-After`.
    pub fn rate_limit_next(&self, count: u32, retry_after_secs: u64) {
        self.inject(Fault {
            method: None,
            kind: FaultKind::RateLimit {
                retry_after: retry_after_secs,
            },
            count,
        });
    }

    /// The next `count` requests to `method` (any when `None`) answer the error `code`.
    pub fn fail_next(&self, method: Option<&str>, code: &str, count: u32) {
        self.inject(Fault {
            method: method.map(str::to_string),
            kind: FaultKind::Error {
                code: code.to_string(),
            },
            count,
        });
    }

    /// Faults queued and not yet served (each counts its remaining requests).
    pub fn pending_faults(&self) -> u32 {
        self.lock().faults.iter().map(|f| f.count).sum()
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Messages kept (every post, as last updated) and their size as JSON: the fake's memory.
    pub fn stored_messages(&self) -> (usize, usize) {
        let inner = self.lock();
        let bytes = inner.messages.values().map(|m| m.to_string().len()).sum();
        (inner.messages.len(), bytes)
    }

    /// Every request received so far, in order, leaving the log empty.
    pub fn take_requests(&self) -> Vec<SlackRequest> {
        std::mem::take(&mut self.lock().requests)
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<SlackRequest> {
        self.lock().requests.clone()
    }

    /// A message as it stands now (after updates).
    pub fn message(&self, channel: &str, ts: &str) -> Option<Value> {
        self.lock()
            .messages
            .get(&(channel.to_string(), ts.to_string()))
            .cloned()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/chat.postMessage", post(post_message))
            .route("/api/chat.update", post(update))
            .route("/services/{*path}", post(webhook))
            .route("/_sim/requests", get(list_requests))
            .route("/_sim/faults", post(add_fault))
            .with_state(self.clone())
    }

    /// Serves the fake alone on 127.0.0.1 (an ephemeral port) until the handle is aborted.
    pub async fn start(&self) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let local = listener.local_addr()?;
        let app = self.router();
        let handle = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "Fake Slack server stopped.");
            }
        });
        Ok((local, handle))
    }

    fn take_fault(&self, method: &str) -> Option<FaultKind> {
        let mut inner = self.lock();
        let index = inner
            .faults
            .iter()
            .position(|f| f.method.as_deref().is_none_or(|m| m == method))?;
        let fault = inner.faults.get_mut(index)?;
        fault.count = fault.count.saturating_sub(1);
        let kind = fault.kind.clone();
        if fault.count == 0 {
            inner.faults.remove(index);
        }
        Some(kind)
    }

    /// A fresh `ts` ("<seconds>.<micros>", the wall clock, unique and increasing).
    fn next_ts(inner: &mut Inner) -> String {
        let now = jiff::Timestamp::now().as_microsecond();
        let micros = now.max(inner.last_ts_micros + 1);
        inner.last_ts_micros = micros;
        format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
    }
}

/// What a handler decided, recorded before it is answered.
struct Outcome {
    status: StatusCode,
    body: Value,
    channel: Option<String>,
    ts: Option<String>,
    error: Option<String>,
}

fn api_error(code: &str) -> Outcome {
    Outcome {
        status: StatusCode::OK,
        body: json!({ "ok": false, "error": code }),
        channel: None,
        ts: None,
        error: Some(code.to_string()),
    }
}

/// Slack's incoming webhooks answer errors as an HTTP status and the code as text.
fn webhook_status(code: &str) -> StatusCode {
    match code {
        "invalid_payload" | "no_text" | "invalid_blocks" | "user_not_found" => {
            StatusCode::BAD_REQUEST
        }
        "invalid_token" | "action_prohibited" => StatusCode::FORBIDDEN,
        "no_service" | "no_team" | "channel_not_found" => StatusCode::NOT_FOUND,
        "channel_is_archived" => StatusCode::GONE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn rate_limited(retry_after: u64, json_body: bool) -> Response {
    let retry = [(header::RETRY_AFTER, retry_after.to_string())];
    if json_body {
        (
            StatusCode::TOO_MANY_REQUESTS,
            retry,
            Json(json!({ "ok": false, "error": "ratelimited" })),
        )
            .into_response()
    } else {
        (
            StatusCode::TOO_MANY_REQUESTS,
            retry,
            [(header::CONTENT_TYPE, "text/plain")],
            "rate_limited",
        )
            .into_response()
    }
}

fn record(
    slack: &FakeSlack,
    method: &str,
    body: &Value,
    status: StatusCode,
    outcome_channel: Option<String>,
    ts: Option<String>,
    error: Option<String>,
) {
    let field = |name: &str| body.get(name).cloned().filter(|v| !v.is_null());
    slack.lock().requests.push(SlackRequest {
        method: method.to_string(),
        body: body.clone(),
        channel: outcome_channel
            .or_else(|| field("channel").and_then(|v| v.as_str().map(str::to_string))),
        ts,
        thread_ts: field("thread_ts").and_then(|v| v.as_str().map(str::to_string)),
        metadata: field("metadata"),
        status: status.as_u16(),
        error,
    });
}

fn has_content(body: &Value) -> bool {
    let text = body
        .get("text")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    let blocks = body
        .get("blocks")
        .and_then(Value::as_array)
        .is_some_and(|b| !b.is_empty());
    text || blocks
}

/// The message object Slack returns and stores: the content fields of the request.
fn message_of(body: &Value, ts: &str) -> Value {
    let mut message = json!({
        "type": "message",
        "subtype": "bot_message",
        "bot_id": BOT_ID,
        "ts": ts,
        "text": body.get("text").cloned().unwrap_or(Value::String(String::new())),
    });
    for field in ["blocks", "metadata", "thread_ts"] {
        if let Some(v) = body.get(field).filter(|v| !v.is_null()) {
            message[field] = v.clone();
        }
    }
    message
}

/// What the Web API methods share: an injected fault, then authorization and the JSON body.
/// `Err` is the answer already given (and recorded).
fn accept_api_request(
    slack: &FakeSlack,
    method: &str,
    headers: &HeaderMap,
    raw: &Bytes,
) -> Result<Value, Box<Response>> {
    let lenient = serde_json::from_slice::<Value>(raw).unwrap_or(Value::Null);
    match slack.take_fault(method) {
        Some(FaultKind::RateLimit { retry_after }) => {
            let status = StatusCode::TOO_MANY_REQUESTS;
            let code = Some("ratelimited".to_string());
            record(slack, method, &lenient, status, None, None, code);
            return Err(Box::new(rate_limited(retry_after, true)));
        }
        Some(FaultKind::Error { code }) => {
            return Err(Box::new(answer(slack, method, &lenient, api_error(&code))));
        }
        None => {}
    }
    let token = slack.lock().token.clone();
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let refusal = match auth {
        None => Some("not_authed"),
        Some(auth) if auth.strip_prefix("Bearer ") != Some(token.as_str()) => Some("invalid_auth"),
        Some(_) => match &lenient {
            Value::Object(_) => None,
            Value::Null => Some("invalid_json"),
            _ => Some("json_not_object"),
        },
    };
    match refusal {
        Some(code) => Err(Box::new(answer(slack, method, &lenient, api_error(code)))),
        None => Ok(lenient),
    }
}

fn answer(slack: &FakeSlack, method: &str, body: &Value, outcome: Outcome) -> Response {
    record(
        slack,
        method,
        body,
        outcome.status,
        outcome.channel,
        outcome.ts,
        outcome.error,
    );
    (outcome.status, Json(outcome.body)).into_response()
}

async fn post_message(State(slack): State<FakeSlack>, headers: HeaderMap, raw: Bytes) -> Response {
    const METHOD: &str = "chat.postMessage";
    let body = match accept_api_request(&slack, METHOD, &headers, &raw) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let outcome = {
        let mut inner = slack.lock();
        let channel = body.get("channel").and_then(Value::as_str).unwrap_or("");
        if !inner.channels.contains(channel) {
            api_error("channel_not_found")
        } else if !has_content(&body) {
            api_error("no_text")
        } else {
            let ts = FakeSlack::next_ts(&mut inner);
            let message = message_of(&body, &ts);
            inner
                .messages
                .insert((channel.to_string(), ts.clone()), message.clone());
            Outcome {
                status: StatusCode::OK,
                body: json!({ "ok": true, "channel": channel, "ts": ts, "message": message }),
                channel: Some(channel.to_string()),
                ts: Some(ts),
                error: None,
            }
        }
    };
    answer(&slack, METHOD, &body, outcome)
}

async fn update(State(slack): State<FakeSlack>, headers: HeaderMap, raw: Bytes) -> Response {
    const METHOD: &str = "chat.update";
    let body = match accept_api_request(&slack, METHOD, &headers, &raw) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let outcome = {
        let mut inner = slack.lock();
        let channel = body.get("channel").and_then(Value::as_str).unwrap_or("");
        let ts = body.get("ts").and_then(Value::as_str).unwrap_or("");
        let key = (channel.to_string(), ts.to_string());
        if !inner.channels.contains(channel) {
            api_error("channel_not_found")
        } else if !inner.messages.contains_key(&key) {
            api_error("message_not_found")
        } else if !has_content(&body) {
            api_error("no_text")
        } else {
            let thread_ts = inner
                .messages
                .get(&key)
                .and_then(|m| m.get("thread_ts").cloned());
            let mut message = message_of(&body, ts);
            if let Some(t) = thread_ts {
                message["thread_ts"] = t;
            }
            inner.messages.insert(key, message.clone());
            Outcome {
                status: StatusCode::OK,
                body: json!({
                    "ok": true,
                    "channel": channel,
                    "ts": ts,
                    "text": message["text"].clone(),
                    "message": message,
                }),
                channel: Some(channel.to_string()),
                ts: Some(ts.to_string()),
                error: None,
            }
        }
    };
    answer(&slack, METHOD, &body, outcome)
}

async fn webhook(State(slack): State<FakeSlack>, Path(path): Path<String>, raw: Bytes) -> Response {
    const METHOD: &str = "webhook";
    let lenient = serde_json::from_slice::<Value>(&raw).unwrap_or(Value::Null);
    let channel = slack.lock().webhooks.get(&path).cloned();
    let refused = |code: &str| {
        let status = webhook_status(code);
        record(
            &slack,
            METHOD,
            &lenient,
            status,
            channel.clone(),
            None,
            Some(code.to_string()),
        );
        (
            status,
            [(header::CONTENT_TYPE, "text/plain")],
            code.to_string(),
        )
            .into_response()
    };
    match slack.take_fault(METHOD) {
        Some(FaultKind::RateLimit { retry_after }) => {
            record(
                &slack,
                METHOD,
                &lenient,
                StatusCode::TOO_MANY_REQUESTS,
                channel.clone(),
                None,
                Some("rate_limited".into()),
            );
            return rate_limited(retry_after, false);
        }
        Some(FaultKind::Error { code }) => return refused(&code),
        None => {}
    }
    let Some(channel) = channel.clone() else {
        return refused("no_service");
    };
    if !lenient.is_object() {
        return refused("invalid_payload");
    }
    if !has_content(&lenient) {
        return refused("no_text");
    }
    let ts = {
        let mut inner = slack.lock();
        let ts = FakeSlack::next_ts(&mut inner);
        let message = message_of(&lenient, &ts);
        inner
            .messages
            .insert((channel.clone(), ts.clone()), message);
        ts
    };
    record(
        &slack,
        METHOD,
        &lenient,
        StatusCode::OK,
        Some(channel),
        Some(ts),
        None,
    );
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "ok").into_response()
}

async fn list_requests(State(slack): State<FakeSlack>) -> Json<Vec<SlackRequest>> {
    Json(slack.requests())
}

async fn add_fault(State(slack): State<FakeSlack>, Json(fault): Json<Fault>) -> StatusCode {
    slack.inject(fault);
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn started() -> (FakeSlack, String, tokio::task::JoinHandle<()>) {
        let slack = FakeSlack::default();
        let (addr, server) = slack.start().await.unwrap();
        (slack, format!("http://{addr}"), server)
    }

    async fn call(
        url: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, Option<String>, Option<String>, String) {
        crate::ensure_crypto_provider();
        let mut request = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json; charset=utf-8")
            .body(body.to_string());
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let content_type = header(header::CONTENT_TYPE);
        let retry_after = header(header::RETRY_AFTER);
        (
            status,
            content_type,
            retry_after,
            response.text().await.unwrap(),
        )
    }

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[tokio::test]
    async fn web_api_answers_with_slacks_documented_shapes() {
        let (slack, base, server) = started().await;
        let post = format!("{base}/api/chat.postMessage");
        let message = format!(r#"{{"channel":"{DEFAULT_CHANNEL}","text":"hello"}}"#);

        let (status, content_type, _, body) = call(&post, Some(DEFAULT_BOT_TOKEN), &message).await;
        assert_eq!(status, 200);
        assert!(content_type.unwrap().starts_with("application/json"));
        let ok = json(&body);
        assert_eq!(ok["ok"], true);
        assert_eq!(ok["channel"], DEFAULT_CHANNEL);
        let ts = ok["ts"].as_str().unwrap().to_string();
        let (secs, micros) = ts.split_once('.').unwrap();
        assert!(secs.parse::<i64>().is_ok() && micros.len() == 6, "{ts}");
        assert_eq!(ok["message"]["text"], "hello");
        assert_eq!(ok["message"]["ts"], ts.as_str());
        assert_eq!(ok["message"]["type"], "message");

        // Errors are HTTP 200 with ok:false.
        for (token, body, code) in [
            (None, message.as_str(), "not_authed"),
            (Some("xoxb-other"), message.as_str(), "invalid_auth"),
            (
                Some(DEFAULT_BOT_TOKEN),
                r#"{"channel":"C0NOPE","text":"x"}"#,
                "channel_not_found",
            ),
            (
                Some(DEFAULT_BOT_TOKEN),
                &format!(r#"{{"channel":"{DEFAULT_CHANNEL}"}}"#),
                "no_text",
            ),
            (Some(DEFAULT_BOT_TOKEN), "{not json", "invalid_json"),
        ] {
            let (status, _, _, text) = call(&post, token, body).await;
            assert_eq!(
                (status, json(&text)),
                (200, serde_json::json!({"ok": false, "error": code}))
            );
        }

        let update = format!("{base}/api/chat.update");
        let edit = format!(r#"{{"channel":"{DEFAULT_CHANNEL}","ts":"{ts}","text":"edited"}}"#);
        let (status, _, _, body) = call(&update, Some(DEFAULT_BOT_TOKEN), &edit).await;
        assert_eq!(status, 200);
        let ok = json(&body);
        assert_eq!(
            (ok["ok"].clone(), ok["ts"].clone(), ok["text"].clone()),
            (true.into(), ts.clone().into(), "edited".into())
        );
        assert_eq!(
            slack.message(DEFAULT_CHANNEL, &ts).unwrap()["text"],
            "edited"
        );
        let missing = format!(r#"{{"channel":"{DEFAULT_CHANNEL}","ts":"1.000001","text":"x"}}"#);
        let (_, _, _, body) = call(&update, Some(DEFAULT_BOT_TOKEN), &missing).await;
        assert_eq!(json(&body)["error"], "message_not_found");

        // Injected: a rate limit (429 + Retry-After), then an error code.
        slack.rate_limit_next(1, 30);
        let (status, _, retry_after, body) = call(&post, Some(DEFAULT_BOT_TOKEN), &message).await;
        assert_eq!((status, retry_after.as_deref()), (429, Some("30")));
        assert_eq!(json(&body)["error"], "ratelimited");
        slack.fail_next(Some("chat.update"), "internal_error", 1);
        let (_, _, _, body) = call(&post, Some(DEFAULT_BOT_TOKEN), &message).await;
        assert_eq!(json(&body)["ok"], true, "the fault waits for its method");
        let (_, _, _, body) = call(&update, Some(DEFAULT_BOT_TOKEN), &edit).await;
        assert_eq!(json(&body)["error"], "internal_error");

        let recorded = slack.requests();
        assert_eq!(recorded.len(), 11);
        assert_eq!(recorded[0].ts.as_deref(), Some(ts.as_str()));
        assert_eq!(recorded[1].error.as_deref(), Some("not_authed"));
        assert_eq!(recorded[8].status, 429);
        server.abort();
    }

    #[tokio::test]
    async fn incoming_webhooks_answer_plain_text_as_slack_does() {
        let (slack, base, server) = started().await;
        let hook = format!("{base}/services/{DEFAULT_WEBHOOK}");
        let (status, content_type, _, body) =
            call(&hook, None, r#"{"text":"hi","thread_ts":"1.2"}"#).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
        assert!(content_type.unwrap().starts_with("text/plain"));
        for (url, payload, expected) in [
            (hook.as_str(), "[1]", (400, "invalid_payload")),
            (hook.as_str(), r#"{"blocks":[]}"#, (400, "no_text")),
            (
                &format!("{base}/services/T0/B0/nope"),
                r#"{"text":"hi"}"#,
                (404, "no_service"),
            ),
        ] {
            let (status, content_type, _, body) = call(url, None, payload).await;
            assert_eq!((status, body.as_str()), expected);
            assert!(content_type.unwrap().starts_with("text/plain"));
        }
        slack.fail_next(Some("webhook"), "channel_is_archived", 1);
        let (status, _, _, body) = call(&hook, None, r#"{"text":"hi"}"#).await;
        assert_eq!((status, body.as_str()), (410, "channel_is_archived"));

        let recorded = slack.requests();
        assert_eq!(recorded[0].method, "webhook");
        assert_eq!(recorded[0].channel.as_deref(), Some(DEFAULT_CHANNEL));
        assert_eq!(recorded[0].thread_ts.as_deref(), Some("1.2"));
        assert_eq!(recorded.len(), 5);
        server.abort();
    }

    #[tokio::test]
    async fn control_endpoints_list_requests_and_queue_faults() {
        let (slack, base, server) = started().await;
        let client = reqwest::Client::new();
        let fault = serde_json::json!({
            "method": "webhook", "kind": { "rate_limit": { "retry_after": 5 } }, "count": 2
        });
        let status = client
            .post(format!("{base}/_sim/faults"))
            .json(&fault)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 204);
        let hook = format!("{base}/services/{DEFAULT_WEBHOOK}");
        for _ in 0..2 {
            let (status, _, retry_after, _) = call(&hook, None, r#"{"text":"hi"}"#).await;
            assert_eq!((status, retry_after.as_deref()), (429, Some("5")));
        }
        let (status, _, _, _) = call(&hook, None, r#"{"text":"hi"}"#).await;
        assert_eq!(status, 200);
        let listed: Vec<SlackRequest> = client
            .get(format!("{base}/_sim/requests"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            listed.iter().map(|r| r.status).collect::<Vec<_>>(),
            [429, 429, 200]
        );
        assert_eq!(slack.requests().len(), 3);
        server.abort();
    }
}
