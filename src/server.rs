//! HTTP server: `/metrics`, `/healthz`, `/readyz`. The router is a plain function so tests
//! can drive it without a socket.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::metrics::Metrics;
use crate::model::{AlertRecord, AlertState, RuleStatus};

#[derive(Clone)]
pub struct ServerState {
    pub metrics: Arc<Metrics>,
    /// Set once the store is open and the first evaluation has run.
    pub ready: Arc<AtomicBool>,
    /// What the evaluator last saw: rules with their verdicts, and active alerts.
    pub status: Arc<RwLock<EvalView>>,
}

/// The evaluator's latest state as the API shows it.
#[derive(Debug, Default, Clone, Serialize)]
pub struct EvalView {
    pub rules: Vec<RuleStatus>,
    pub alerts: Vec<AlertRecord>,
}

pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .with_state(state)
}

async fn metrics(State(s): State<ServerState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

fn view(s: &ServerState) -> EvalView {
    s.status.read().map(|v| v.clone()).unwrap_or_default()
}

/// Every rule: health, last evaluation, and each instance's verdict (or why it waits).
async fn rules(State(s): State<ServerState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "success", "data": {"rules": view(&s).rules}}))
}

/// Pending and firing alerts with their explanations.
async fn alerts(State(s): State<ServerState>) -> Json<serde_json::Value> {
    let active: Vec<AlertRecord> = view(&s)
        .alerts
        .into_iter()
        .filter(|a| matches!(a.state, AlertState::Pending | AlertState::Firing))
        .collect();
    Json(serde_json::json!({"status": "success", "data": {"alerts": active}}))
}

async fn readyz(State(s): State<ServerState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}
