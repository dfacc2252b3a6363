//! A webhook receiver that records every delivery (headers and body) and answers with a
//! configurable status, so tests and the demo can check signatures, idempotency keys
//! and behaviour during an outage.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::Sim;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceivedWebhook {
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// The status this receiver answered.
    pub answered: u16,
}

#[derive(Debug, Default)]
pub struct Received {
    pub requests: Vec<ReceivedWebhook>,
    /// Status to answer with; 200 unless set through `/_sim/webhook/mode`.
    pub answer: Option<u16>,
}

pub async fn receive(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut inner = sim.lock();
    let answered = inner.webhooks.answer.unwrap_or(200);
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    inner.webhooks.requests.push(ReceivedWebhook {
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        answered,
    });
    StatusCode::from_u16(answered).unwrap_or(StatusCode::OK)
}

pub async fn list(State(sim): State<Sim>) -> Json<Vec<ReceivedWebhook>> {
    Json(sim.lock().webhooks.requests.clone())
}

#[derive(Debug, Deserialize)]
pub struct Mode {
    pub status: u16,
}

pub async fn set_mode(State(sim): State<Sim>, Json(mode): Json<Mode>) -> StatusCode {
    if StatusCode::from_u16(mode.status).is_err() {
        return StatusCode::BAD_REQUEST;
    }
    sim.lock().webhooks.answer = Some(mode.status);
    StatusCode::NO_CONTENT
}

impl Sim {
    /// The status the receiver answers from now on; `None` is 200 (as `/_sim/webhook/mode`).
    pub fn set_webhook_answer(&self, status: Option<u16>) {
        self.lock().webhooks.answer = status;
    }

    /// Every delivery attempt received, in order.
    pub fn webhook_requests(&self) -> Vec<ReceivedWebhook> {
        self.lock().webhooks.requests.clone()
    }

    /// Every delivery attempt received so far, in order, leaving the log empty (a long run
    /// reads it as it goes instead of keeping every body).
    pub fn take_webhook_requests(&self) -> Vec<ReceivedWebhook> {
        std::mem::take(&mut self.lock().webhooks.requests)
    }

    /// Deliveries the receiver accepted (2xx).
    pub fn accepted_webhooks(&self) -> Vec<ReceivedWebhook> {
        self.lock()
            .webhooks
            .requests
            .iter()
            .filter(|r| (200..300).contains(&r.answered))
            .cloned()
            .collect()
    }
}
