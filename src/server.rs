//! HTTP server: `/metrics`, `/healthz`, `/readyz`, and the `/api/v1/` endpoints (rules,
//! alerts, silences, notifications). The router is a plain function so tests can drive it
//! without a socket.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::alerting::inhibit::InhibitRule;
use crate::alerting::silence::{Muter, NewSilence, Silence};
use crate::config::Secret;
use crate::metrics::Metrics;
use crate::model::{AlertRecord, AlertState, RuleStatus};
use crate::store::{RowState, Store};

#[derive(Clone)]
pub struct ServerState {
    pub metrics: Arc<Metrics>,
    /// Set once the store is open and the first evaluation has run.
    pub ready: Arc<AtomicBool>,
    /// What the evaluator last saw: rules with their verdicts, and active alerts.
    pub status: Arc<RwLock<EvalView>>,
    /// Silences and the outbox.
    pub store: Arc<dyn Store>,
    /// To show which alerts are inhibited.
    pub inhibit_rules: Arc<Vec<InhibitRule>>,
    /// Required as a bearer token by the write endpoints; without it they answer 403.
    pub api_token: Option<Secret>,
    /// What the HTML pages need beyond the API's state: rules, links, the pipeline clock.
    pub pages: Arc<crate::web::PageContext>,
    /// This replica's share of the work, with `store.postgres`; `None` with SQLite.
    pub cluster: Option<Arc<crate::cluster::Membership>>,
}

/// The evaluator's latest state as the API shows it.
#[derive(Debug, Default, Clone, Serialize)]
pub struct EvalView {
    pub rules: Vec<RuleStatus>,
    pub alerts: Vec<AlertRecord>,
}

/// Largest request body the API reads.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;

pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/silences", get(list_silences).post(create_silence))
        .route("/api/v1/silences/{id}", delete(expire_silence))
        .route("/api/v1/notifications", get(notifications))
        .merge(crate::web::routes())
        // A silence is a few hundred bytes; nothing the API takes needs more than this.
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY))
        .with_state(state)
}

/// An API failure; internal details are logged, never sent.
#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    Unauthorized(&'static str),
    Forbidden(&'static str),
    NotFound(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m.to_string()),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m.to_string()),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "API request failed.");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_string(),
                )
            }
        };
        let body = Json(serde_json::json!({"status": "error", "error": message}));
        if status == StatusCode::UNAUTHORIZED {
            (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

pub const NO_TOKEN_MESSAGE: &str = "changing silences is disabled: set [api] token = { env = \"SPENDWATCH_API_TOKEN\" } in the config";

/// The write endpoints need `Authorization: Bearer <[api] token>`.
pub(crate) fn authorize(s: &ServerState, headers: &HeaderMap) -> Result<(), ApiError> {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let Some(token) = &s.api_token else {
        return Err(ApiError::Forbidden(NO_TOKEN_MESSAGE));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized(
            "missing \"Authorization: Bearer <token>\" header",
        ))?;
    // Hashes first, so the comparison takes the same time whatever the lengths.
    let a = Sha256::digest(presented.trim().as_bytes());
    let b = Sha256::digest(token.expose().as_bytes());
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("invalid bearer token"))
    }
}

pub(crate) fn load_silences(store: &dyn Store) -> Result<Vec<Silence>, ApiError> {
    store
        .silences()?
        .iter()
        .map(|row| Silence::from_row(row).map_err(|e| ApiError::Internal(e.to_string())))
        .collect()
}

async fn list_silences(State(s): State<ServerState>) -> Result<Json<serde_json::Value>, ApiError> {
    let now = Timestamp::now();
    let silences: Vec<serde_json::Value> = load_silences(s.store.as_ref())?
        .iter()
        .map(|x| x.to_json(now))
        .collect();
    Ok(Json(
        serde_json::json!({"status": "success", "data": {"silences": silences}}),
    ))
}

async fn create_silence(
    State(s): State<ServerState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&s, &headers)?;
    let request: NewSilence = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid silence: {e}")))?;
    let now = Timestamp::now();
    let silence = insert_silence(&s, &request, now)?;
    Ok(Json(serde_json::json!({
        "status": "success",
        "data": {"silenceID": silence.id, "silence": silence.to_json(now)},
    })))
}

/// Validates and stores a silence: the one path for the API and the alert page's form.
/// The caller has already checked the token with [`authorize`].
pub(crate) fn insert_silence(
    s: &ServerState,
    request: &NewSilence,
    now: Timestamp,
) -> Result<Silence, ApiError> {
    let silence = request
        .validate(now)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    s.store.insert_silence(&silence.to_row())?;
    tracing::info!(id = %silence.id, created_by = %silence.created_by,
        matchers = %silence.matchers.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(","),
        ends_at = %silence.ends_at, "Silence created.");
    Ok(silence)
}

async fn expire_silence(
    State(s): State<ServerState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&s, &headers)?;
    let now = Timestamp::now();
    let row = s
        .store
        .expire_silence(&id, now)?
        .ok_or_else(|| ApiError::NotFound(format!("no silence with id {id:?}")))?;
    let silence = Silence::from_row(&row).map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(id = %silence.id, "Silence expired.");
    Ok(Json(
        serde_json::json!({"status": "success", "data": {"silence": silence.to_json(now)}}),
    ))
}

#[derive(Debug, Deserialize)]
struct NotificationQuery {
    state: Option<String>,
    limit: Option<usize>,
}

/// Outbox rows (newest first; `?state=pending|suppressed|delivered|dead|skipped`, `?limit=`)
/// and the state of every notification group.
async fn notifications(
    State(s): State<ServerState>,
    Query(q): Query<NotificationQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let state = match q.state.as_deref() {
        None => None,
        Some(text) => Some(RowState::parse(text).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown state {text:?}: use pending, suppressed, delivered, dead or skipped"
            ))
        })?),
    };
    let limit = q.limit.unwrap_or(200).min(5_000);
    let rows: Vec<serde_json::Value> = s
        .store
        .list_outbox(state, limit)?
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "idempotencyKey": r.notification.idempotency_key,
                "receiver": r.notification.receiver,
                "group": r.group.key,
                "route": r.group.route,
                "fingerprint": r.notification.fingerprint,
                "status": r.notification.status.as_str(),
                "state": r.state.as_str(),
                "attempts": r.attempts,
                "createdAt": r.created_at.to_string(),
                "deliveredAt": r.delivered_at.map(|t| t.to_string()),
                "suppressedBy": r.suppressed_by,
                "lastError": r.last_error,
                "labels": r.notification.labels,
            })
        })
        .collect();
    let groups: Vec<serde_json::Value> = s
        .store
        .load_groups()?
        .into_iter()
        .map(|g| {
            serde_json::json!({
                "receiver": g.receiver,
                "key": g.settings.key,
                "route": g.settings.route,
                "labels": g.settings.labels,
                "lastSent": g.last_sent.map(|t| t.to_string()),
                "members": g.members.iter().map(|m| serde_json::json!({
                    "fingerprint": m.fingerprint, "status": m.status.as_str(),
                })).collect::<Vec<_>>(),
                "thread": g.thread.is_some(),
                "attempts": g.attempts,
                "nextAttempt": g.next_attempt.map(|t| t.to_string()),
                "lastError": g.last_error,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "status": "success",
        "data": {"notifications": rows, "groups": groups},
    })))
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

pub(crate) fn view(s: &ServerState) -> EvalView {
    s.status.read().map(|v| v.clone()).unwrap_or_default()
}

/// Every rule: health, last evaluation, and each instance's verdict (or why it waits).
async fn rules(State(s): State<ServerState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "success", "data": {"rules": view(&s).rules}}))
}

/// Pending and firing alerts with their explanations, and whether their notifications are
/// muted: `silencedBy` (silence ids) and `inhibitedBy` (fingerprints of firing alerts).
async fn alerts(State(s): State<ServerState>) -> Result<Json<serde_json::Value>, ApiError> {
    let all = view(&s).alerts;
    let muter = Muter::new(
        load_silences(s.store.as_ref())?,
        &s.inhibit_rules,
        &all,
        Timestamp::now(),
    );
    let active: Vec<serde_json::Value> = all
        .iter()
        .filter(|a| matches!(a.state, AlertState::Pending | AlertState::Firing))
        .map(|a| {
            let silenced = muter.silenced_by(&a.labels);
            let inhibited = muter.inhibited_by(&a.fingerprint, &a.labels);
            let mut v = serde_json::to_value(a).unwrap_or_default();
            if let Some(map) = v.as_object_mut() {
                map.insert(
                    "muted".into(),
                    (!silenced.is_empty() || !inhibited.is_empty()).into(),
                );
                map.insert("silencedBy".into(), silenced.into());
                map.insert("inhibitedBy".into(), inhibited.into());
            }
            v
        })
        .collect();
    Ok(Json(
        serde_json::json!({"status": "success", "data": {"alerts": active}}),
    ))
}

async fn readyz(State(s): State<ServerState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

/// The version and, in a cluster, this replica's leases (`cluster` is null with SQLite:
/// one process holds everything).
async fn status(State(s): State<ServerState>) -> impl IntoResponse {
    Json(serde_json::json!({"status": "success", "data": {
        "version": env!("CARGO_PKG_VERSION"),
        "ready": s.ready.load(Ordering::Acquire),
        "cluster": s.cluster.as_ref().map(|m| m.status()),
    }}))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::alerting::matcher::Matcher;
    use crate::model::Severity;
    use crate::store::SqliteStore;

    const TOKEN: &str = "test-api-token-4f1d";

    fn alert(fp: &str, account: &str, level: &str) -> AlertRecord {
        AlertRecord {
            fingerprint: fp.into(),
            rule: "budget".into(),
            labels: [
                ("alertname", "budget"),
                ("account", account),
                ("level", level),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
            annotations: BTreeMap::new(),
            severity: Severity::Critical,
            state: AlertState::Firing,
            active_at: None,
            fired_at: Some(Timestamp::now()),
            resolved_at: None,
            keep_firing_since: None,
            value: "1".into(),
            threshold: "1".into(),
            summary: "s".into(),
            seq: 1,
            contributors: Vec::new(),
        }
    }

    /// The real router on 127.0.0.1:0; returns its base URL.
    async fn serve(token: Option<&str>, alerts: Vec<AlertRecord>) -> String {
        crate::ensure_crypto_provider();
        let state = ServerState {
            metrics: Arc::new(Metrics::new()),
            ready: Arc::new(AtomicBool::new(true)),
            status: Arc::new(RwLock::new(EvalView {
                rules: Vec::new(),
                alerts,
            })),
            store: Arc::new(SqliteStore::open_in_memory().unwrap()),
            inhibit_rules: Arc::new(vec![InhibitRule {
                source: vec![Matcher::parse("level=\"100\"").unwrap()],
                target: vec![Matcher::parse("level=\"80\"").unwrap()],
                equal: vec!["account".into()],
            }]),
            api_token: token.map(Secret::new),
            pages: Arc::new(crate::web::PageContext::default()),
            cluster: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router(state)).await;
        });
        format!("http://{addr}")
    }

    fn silence_body(matcher: &str) -> serde_json::Value {
        let ends = Timestamp::now() + jiff::SignedDuration::from_hours(2);
        serde_json::json!({
            "matchers": [matcher],
            "endsAt": ends.to_string(),
            "createdBy": "ana",
            "comment": "migration window",
        })
    }

    async fn json(r: reqwest::Response) -> (u16, serde_json::Value) {
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    #[tokio::test]
    async fn silences_are_created_listed_and_expired_with_the_token() {
        let base = serve(Some(TOKEN), Vec::new()).await;
        let http = reqwest::Client::new();
        let url = format!("{base}/api/v1/silences");
        let body = silence_body("account=\"020-1\"");

        let (status, err) = json(http.post(&url).json(&body).send().await.unwrap()).await;
        assert_eq!(status, 401, "{err}");
        assert!(err["error"].as_str().unwrap().contains("Bearer"));
        let (status, err) = json(
            http.post(&url)
                .bearer_auth("wrong")
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 401);
        assert!(!err.to_string().contains(TOKEN));

        let (status, created) = json(
            http.post(&url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{created}");
        let id = created["data"]["silenceID"].as_str().unwrap().to_string();

        // Listing needs no token.
        let (status, listed) = json(http.get(&url).send().await.unwrap()).await;
        assert_eq!(status, 200);
        let s = &listed["data"]["silences"][0];
        assert_eq!(s["id"], id.as_str());
        assert_eq!(s["status"]["state"], "active");
        assert_eq!(s["createdBy"], "ana");
        assert_eq!(
            s["matchers"][0],
            serde_json::json!({"name": "account", "value": "020-1", "isRegex": false, "isEqual": true})
        );

        let one = format!("{url}/{id}");
        assert_eq!(http.delete(&one).send().await.unwrap().status(), 401);
        let (status, expired) =
            json(http.delete(&one).bearer_auth(TOKEN).send().await.unwrap()).await;
        assert_eq!(status, 200, "{expired}");
        assert_eq!(expired["data"]["silence"]["status"]["state"], "expired");
        let (_, listed) = json(http.get(&url).send().await.unwrap()).await;
        assert_eq!(listed["data"]["silences"][0]["status"]["state"], "expired");
        let (status, _) = json(
            http.delete(format!("{url}/no-such-id"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 404);

        // Bad requests say what is wrong.
        let (status, err) = json(
            http.post(&url)
                .bearer_auth(TOKEN)
                .json(&silence_body("team=~\".*\""))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400);
        assert!(
            err["error"].as_str().unwrap().contains("non-empty value"),
            "{err}"
        );
        let (status, err) = json(
            http.post(&url)
                .bearer_auth(TOKEN)
                .body("{not json")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400);
        assert!(
            err["error"]
                .as_str()
                .unwrap()
                .starts_with("invalid silence")
        );
    }

    #[tokio::test]
    async fn oversized_request_bodies_are_refused_before_they_are_read() {
        let base = serve(Some(TOKEN), Vec::new()).await;
        let huge = format!(
            r#"{{"matchers":[],"comment":"{}"}}"#,
            "x".repeat(MAX_REQUEST_BODY + 1)
        );
        let response = reqwest::Client::new()
            .post(format!("{base}/api/v1/silences"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(huge)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413);
    }

    #[tokio::test]
    async fn without_a_configured_token_silences_are_read_only() {
        let base = serve(None, Vec::new()).await;
        let http = reqwest::Client::new();
        let url = format!("{base}/api/v1/silences");
        for request in [
            http.post(&url).json(&silence_body("account=\"1\"")),
            http.post(&url)
                .bearer_auth("anything")
                .json(&silence_body("account=\"1\"")),
            http.delete(format!("{url}/some-id"))
                .bearer_auth("anything"),
        ] {
            let (status, err) = json(request.send().await.unwrap()).await;
            assert_eq!(status, 403);
            assert_eq!(err["error"], NO_TOKEN_MESSAGE);
        }
        let (status, listed) = json(http.get(&url).send().await.unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(listed["data"]["silences"], serde_json::json!([]));
    }

    #[tokio::test]
    async fn alerts_show_whether_they_are_silenced_or_inhibited() {
        let base = serve(
            Some(TOKEN),
            vec![
                alert("fp80", "1", "80"),
                alert("fp100", "1", "100"),
                alert("fp-other", "2", "80"),
            ],
        )
        .await;
        let http = reqwest::Client::new();
        let (_, created) = json(
            http.post(format!("{base}/api/v1/silences"))
                .bearer_auth(TOKEN)
                .json(&silence_body("account=\"2\""))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let id = created["data"]["silenceID"].clone();
        let (_, body) = json(
            http.get(format!("{base}/api/v1/alerts"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let alerts = body["data"]["alerts"].as_array().unwrap();
        let by_fp = |fp: &str| {
            alerts
                .iter()
                .find(|a| a["fingerprint"] == fp)
                .unwrap()
                .clone()
        };
        assert_eq!(by_fp("fp80")["inhibitedBy"], serde_json::json!(["fp100"]));
        assert_eq!(by_fp("fp80")["muted"], true);
        assert_eq!(by_fp("fp100")["muted"], false);
        assert_eq!(by_fp("fp-other")["silencedBy"], serde_json::json!([id]));
        assert_eq!(by_fp("fp-other")["inhibitedBy"], serde_json::json!([]));
    }
}
