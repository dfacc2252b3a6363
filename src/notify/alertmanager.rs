//! Alertmanager receiver: pushes alerts to `POST {url}/api/v2/alerts` of every configured
//! Alertmanager, as Prometheus' notifier does, so Alertmanager's routing, silences, inhibition
//! and HA deduplication apply to spendwatch alerts.
//!
//! - **Body**: a JSON array of `postableAlert` (Alertmanager's `api/v2/openapi.yaml`):
//!   `labels`, `annotations`, `startsAt`, `endsAt`, and `generatorURL` when the alert has a
//!   link titled `alert`.
//! - **`endsAt`**: a firing alert is valid until `now + 4 × resend_interval` (Prometheus:
//!   `ValidUntil = ts + 4 × resendDelay`), and [`Resender`] posts it again every
//!   `resend_interval`; if spendwatch dies, Alertmanager resolves it by itself. A resolved
//!   alert carries its resolution time.
//! - **Several Alertmanagers**: the same body goes to each, concurrently. A send succeeds when
//!   at least one accepted it (as Prometheus counts it): the Alertmanagers of one HA cluster
//!   share alerts by gossip, so one copy is enough. Failures of the others are logged and
//!   counted in `spendwatch_alertmanager_requests_total`.
//! - **Errors**: 5xx, 429, 408, connection failures and timeouts are recoverable; any other 4xx
//!   is permanent (`http_4xx`) and quotes the start of the response body (Alertmanager says
//!   there which label or time was refused).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Delivery, SendError};
use crate::alerting::links::LinkBuilder;
use crate::alerting::notification_for;
use crate::alerting::silence::Silence;
use crate::config::{AlertmanagerReceiver, HttpAuth};
use crate::metrics::Metrics;
use crate::model::{AlertRecord, AlertState, Notification, NotificationGroup, NotificationStatus};
use crate::store::{Store, StoreError};

/// Joined to each base URL.
pub const ALERTS_PATH: &str = "api/v2/alerts";
/// A firing alert stays valid for this many resend intervals (Prometheus uses 4).
pub const VALIDITY_RESENDS: u32 = 4;
/// Alerts per request, as Prometheus' notifier batches them.
pub const MAX_BATCH: usize = 256;
/// The link whose URL becomes `generatorURL`.
pub const GENERATOR_LINK_TITLE: &str = "alert";
/// How much of a refusal's body an error quotes.
const MAX_ERROR_BODY: usize = 512;

/// One alert as `POST /api/v2/alerts` takes it (`postableAlert`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    #[serde(
        rename = "generatorURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub generator_url: Option<String>,
}

/// A label or annotation name that cannot be made a valid Prometheus label name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("alert {fingerprint}: an {kind} name is empty")]
    Empty {
        kind: &'static str,
        fingerprint: String,
    },
    #[error(
        "alert {fingerprint}: {kind} names {first:?} and {second:?} both become {sanitized:?} as Prometheus label names; rename one"
    )]
    Collision {
        kind: &'static str,
        fingerprint: String,
        first: String,
        second: String,
        sanitized: String,
    },
}

/// `name` as a Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`): every other character
/// becomes `_`, and a leading digit gets a `_` in front. `None` for an empty name.
pub fn sanitize_label_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    Some(out)
}

/// Sanitizes every name; two names that meet in one sanitized name are an error, not a
/// silent overwrite. Empty values are dropped, as Alertmanager does with labels.
fn sanitized(
    pairs: &BTreeMap<String, String>,
    kind: &'static str,
    fingerprint: &str,
) -> Result<BTreeMap<String, String>, LabelError> {
    let mut out = BTreeMap::new();
    let mut origin: BTreeMap<String, &str> = BTreeMap::new();
    for (name, value) in pairs {
        let clean = sanitize_label_name(name).ok_or_else(|| LabelError::Empty {
            kind,
            fingerprint: fingerprint.to_string(),
        })?;
        if let Some(first) = origin.get(&clean) {
            return Err(LabelError::Collision {
                kind,
                fingerprint: fingerprint.to_string(),
                first: first.to_string(),
                second: name.clone(),
                sanitized: clean,
            });
        }
        origin.insert(clean.clone(), name);
        if !value.is_empty() {
            out.insert(clean, value.clone());
        }
    }
    Ok(out)
}

/// The alert's identity labels as Alertmanager takes them, with `alertname` always present.
pub fn label_set(n: &Notification) -> Result<BTreeMap<String, String>, LabelError> {
    let mut labels = sanitized(&n.labels, "label", &n.fingerprint)?;
    labels
        .entry("alertname".to_string())
        .or_insert_with(|| n.rule.clone());
    Ok(labels)
}

/// The rule's annotations (`summary`, …) plus `value`, `threshold`, `contributors` (one line
/// per line item) and one `<title>_url` per link. A rule's own annotation of the same name
/// wins over a computed one.
pub fn annotation_set(n: &Notification) -> Result<BTreeMap<String, String>, LabelError> {
    let mut annotations = sanitized(&n.annotations, "annotation", &n.fingerprint)?;
    let mut add = |name: String, value: String| {
        if !value.is_empty() {
            annotations.entry(name).or_insert(value);
        }
    };
    add("value".into(), n.value.clone());
    add("threshold".into(), n.threshold.clone());
    add("contributors".into(), contributors_text(n));
    for link in &n.links {
        if let Some(name) = sanitize_label_name(&link.title.to_ascii_lowercase()) {
            add(format!("{name}_url"), link.url.clone());
        }
    }
    Ok(annotations)
}

/// `RCDN/BWOUT: $412.00 (+$380.00)`, one line per contributor.
pub fn contributors_text(n: &Notification) -> String {
    n.contributors
        .iter()
        .map(|c| format!("{}: {} ({})", c.item, c.amount, c.delta))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The URL of the first link titled `alert`, if it is an absolute URL.
pub fn generator_url(n: &Notification) -> Option<String> {
    n.links
        .iter()
        .find(|l| l.title.eq_ignore_ascii_case(GENERATOR_LINK_TITLE))
        .filter(|l| url::Url::parse(&l.url).is_ok())
        .map(|l| l.url.clone())
}

/// `endsAt`: a firing alert is valid for [`VALIDITY_RESENDS`] resend intervals from `now`; a
/// resolved one ends when it was resolved (`now` if that is unknown).
pub fn ends_at(n: &Notification, now: Timestamp, resend_interval: Duration) -> Timestamp {
    match n.status {
        NotificationStatus::Firing => {
            let validity = SignedDuration::try_from(resend_interval)
                .unwrap_or(SignedDuration::MAX)
                .checked_mul(VALIDITY_RESENDS as i32)
                .unwrap_or(SignedDuration::MAX);
            now.saturating_add(validity).unwrap_or(Timestamp::MAX)
        }
        NotificationStatus::Resolved => n.ends_at.unwrap_or(now),
    }
}

pub fn postable(
    n: &Notification,
    now: Timestamp,
    resend_interval: Duration,
) -> Result<PostableAlert, LabelError> {
    Ok(PostableAlert {
        labels: label_set(n)?,
        annotations: annotation_set(n)?,
        starts_at: n.starts_at,
        ends_at: ends_at(n, now, resend_interval),
        generator_url: generator_url(n),
    })
}

/// The request bodies for `alerts` (at most [`MAX_BATCH`] alerts each).
pub fn render(
    alerts: &[Notification],
    now: Timestamp,
    resend_interval: Duration,
) -> Result<Vec<Vec<u8>>, SendError> {
    let postables = alerts
        .iter()
        .map(|n| postable(n, now, resend_interval))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SendError::permanent_with_reason("invalid_labels", e.to_string()))?;
    postables
        .chunks(MAX_BATCH)
        .map(|batch| {
            serde_json::to_vec(batch)
                .map_err(|e| SendError::permanent(format!("encoding alerts: {e}")))
        })
        .collect()
}

/// Classifies an Alertmanager's non-2xx answer.
pub fn classify_status(status: StatusCode, body: &str, endpoint: &str) -> SendError {
    let answered = format!("POST {endpoint}{ALERTS_PATH} answered {status}");
    match status.as_u16() {
        500..=599 => SendError::recoverable("http_5xx", answered),
        429 => SendError::recoverable("rate_limited", answered),
        408 => SendError::recoverable("timeout", answered),
        400..=499 => {
            let text = truncate(body.trim(), MAX_ERROR_BODY);
            if text.is_empty() {
                SendError::permanent_with_reason("http_4xx", answered)
            } else {
                SendError::permanent_with_reason("http_4xx", format!("{answered}: {text}"))
            }
        }
        _ => SendError::recoverable("unexpected_status", answered),
    }
}

/// At most `max` bytes of `text`, cut on a character boundary, with `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// One Alertmanager: where alerts go, and how it is named in logs and metrics.
#[derive(Debug, Clone)]
struct Endpoint {
    alerts_url: url::Url,
    /// The base URL. Config refuses credentials, queries and fragments in it, so it is safe
    /// to show.
    label: String,
}

/// What one send achieved.
#[derive(Debug, Clone, Default)]
pub struct PostReport {
    /// Alertmanagers that accepted every batch.
    pub accepted: usize,
    /// The others, with why.
    pub failures: Vec<(String, SendError)>,
}

pub struct AlertmanagerSender {
    name: String,
    endpoints: Vec<Endpoint>,
    resend_interval: Duration,
    auth: Option<HttpAuth>,
    http: reqwest::Client,
    metrics: Option<Arc<Metrics>>,
}

impl AlertmanagerSender {
    pub fn new(config: AlertmanagerReceiver) -> Result<Self, SendError> {
        crate::ensure_crypto_provider();
        if config.urls.is_empty() {
            return Err(SendError::permanent(format!(
                "receiver {:?} has no Alertmanager URL",
                config.name
            )));
        }
        let endpoints = config
            .urls
            .iter()
            .map(|base| {
                let base = crate::config::with_trailing_slash(base.clone());
                let alerts_url = base
                    .join(ALERTS_PATH)
                    .map_err(|e| SendError::permanent(format!("Alertmanager URL {base}: {e}")))?;
                Ok(Endpoint {
                    alerts_url,
                    label: base.to_string(),
                })
            })
            .collect::<Result<Vec<_>, SendError>>()?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("spendwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SendError::permanent(format!("building HTTP client: {e}")))?;
        Ok(AlertmanagerSender {
            name: config.name,
            endpoints,
            resend_interval: config.resend_interval,
            auth: config.auth,
            http,
            metrics: None,
        })
    }

    /// Counts every request in `spendwatch_alertmanager_requests_total`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn resend_interval(&self) -> Duration {
        self.resend_interval
    }

    /// Posts the group's alerts to every Alertmanager. Alertmanager groups alerts itself, so
    /// the thread reference is not used and none is returned.
    pub async fn send(
        &self,
        group: &NotificationGroup,
        _thread: Option<&str>,
    ) -> Result<Delivery, SendError> {
        self.post(&group.alerts, Timestamp::now()).await?;
        Ok(Delivery::default())
    }

    /// Posts `alerts` (with `endsAt` computed from `now`) to every Alertmanager concurrently.
    /// `Ok` when at least one accepted all of them; the failures of the others are logged.
    pub async fn post(
        &self,
        alerts: &[Notification],
        now: Timestamp,
    ) -> Result<PostReport, SendError> {
        if alerts.is_empty() {
            return Ok(PostReport {
                accepted: self.endpoints.len(),
                failures: Vec::new(),
            });
        }
        let bodies = Arc::new(render(alerts, now, self.resend_interval)?);
        let mut requests = JoinSet::new();
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            let (http, endpoint, auth, bodies) = (
                self.http.clone(),
                endpoint.clone(),
                self.auth.clone(),
                bodies.clone(),
            );
            requests.spawn(async move {
                let mut outcome = Ok(());
                for body in bodies.iter() {
                    outcome = post_one(&http, &endpoint, auth.as_ref(), body.clone()).await;
                    if outcome.is_err() {
                        break;
                    }
                }
                (index, outcome)
            });
        }
        let mut results: Vec<(usize, Result<(), SendError>)> = Vec::new();
        while let Some(joined) = requests.join_next().await {
            match joined {
                Ok(r) => results.push(r),
                Err(e) => {
                    tracing::error!(receiver = %self.name, error = %e, "An Alertmanager request task failed.")
                }
            }
        }
        results.sort_by_key(|(index, _)| *index);
        let mut report = PostReport::default();
        for (index, outcome) in results {
            let Some(endpoint) = self.endpoints.get(index) else {
                continue;
            };
            let label = match &outcome {
                Ok(()) => "accepted",
                Err(e) => e.reason,
            };
            if let Some(m) = &self.metrics {
                m.alertmanager_request(&self.name, &endpoint.label, label);
            }
            match outcome {
                Ok(()) => report.accepted += 1,
                Err(e) => report.failures.push((endpoint.label.clone(), e)),
            }
        }
        if report.accepted > 0 {
            for (endpoint, e) in &report.failures {
                tracing::warn!(receiver = %self.name, alertmanager = %endpoint, error = %e,
                    "An Alertmanager refused or missed alerts another one accepted.");
            }
            return Ok(report);
        }
        Err(combine(&report.failures))
    }
}

/// Every Alertmanager failed: recoverable if any of them may succeed later.
fn combine(failures: &[(String, SendError)]) -> SendError {
    let message = failures
        .iter()
        .map(|(_, e)| e.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    match failures.iter().find(|(_, e)| e.recoverable) {
        Some((_, e)) => SendError::recoverable(e.reason, message),
        None => {
            let reason = failures.first().map_or("http_4xx", |(_, e)| e.reason);
            SendError::permanent_with_reason(reason, message)
        }
    }
}

async fn post_one(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    auth: Option<&HttpAuth>,
    body: Vec<u8>,
) -> Result<(), SendError> {
    let mut request = http
        .post(endpoint.alerts_url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    request = match auth {
        None => request,
        Some(HttpAuth::Bearer(token)) => request.bearer_auth(token.expose()),
        Some(HttpAuth::Basic { username, password }) => {
            request.basic_auth(username, Some(password.expose()))
        }
    };
    let response = request.send().await.map_err(|e| {
        let reason = if e.is_timeout() { "timeout" } else { "connect" };
        SendError::recoverable(
            reason,
            format!(
                "POST {}{ALERTS_PATH}: {reason} ({})",
                endpoint.label,
                root_cause(&e)
            ),
        )
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(classify_status(status, &body, &endpoint.label))
}

/// The innermost cause ("Connection refused (os error 111)"): it names no URL or header.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Decides which alerts a receiver gets. Routing plugs in here; until then every alert.
pub type AlertFilter = Arc<dyn Fn(&BTreeMap<String, String>) -> bool + Send + Sync>;

pub fn accept_all() -> AlertFilter {
    Arc::new(|_| true)
}

#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    #[error("loading alerts: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Send(#[from] SendError),
}

impl ResendError {
    pub fn reason(&self) -> &'static str {
        match self {
            ResendError::Store(_) => "store",
            ResendError::Send(e) => e.reason,
        }
    }
}

/// What one re-send round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResendStats {
    /// Firing alerts posted with a fresh `endsAt`.
    pub firing: usize,
    /// Alerts resolved while the round ran, posted as resolved right after.
    pub resolved_meanwhile: usize,
}

/// Posts a receiver's firing alerts again every `resend_interval`, as Prometheus does, so
/// their `endsAt` moves forward while they fire and Alertmanager expires them when
/// spendwatch stops.
pub struct Resender {
    sender: AlertmanagerSender,
    store: Arc<dyn Store>,
    filter: AlertFilter,
    metrics: Arc<Metrics>,
    links: LinkBuilder,
}

impl Resender {
    pub fn new(
        sender: AlertmanagerSender,
        store: Arc<dyn Store>,
        filter: AlertFilter,
        metrics: Arc<Metrics>,
    ) -> Self {
        Resender {
            sender,
            store,
            filter,
            metrics,
            links: LinkBuilder::default(),
        }
    }

    /// The links alerting puts on the same alerts' notifications.
    pub fn with_links(mut self, links: LinkBuilder) -> Self {
        self.links = links;
        self
    }

    /// One round: post every firing alert the filter accepts. Then look again: an alert
    /// resolved (and its resolution possibly delivered by the outbox) while the firing copy
    /// was in flight is posted as resolved, so the late firing copy cannot reopen it.
    pub async fn resend_once(&self) -> Result<ResendStats, ResendError> {
        let receiver = self.sender.name();
        let now = Timestamp::now();
        // Silenced here means silenced there too: the outbox held the firing back, and a
        // re-send must not deliver it behind the silence's back.
        let silences: Vec<Silence> = self
            .store
            .silences()?
            .iter()
            .filter_map(|row| Silence::from_row(row).ok())
            .collect();
        let firing: Vec<AlertRecord> = self
            .store
            .load_alerts()?
            .into_iter()
            .filter(|a| a.state == AlertState::Firing && (self.filter)(&a.labels))
            .filter(|a| !silences.iter().any(|s| s.mutes(&a.labels, now)))
            .collect();
        let notifications: Vec<Notification> = firing
            .iter()
            .filter_map(|a| notification_for(a, NotificationStatus::Firing, receiver, &self.links))
            .collect();
        if notifications.is_empty() {
            return Ok(ResendStats::default());
        }
        self.sender.post(&notifications, Timestamp::now()).await?;

        let sent: BTreeSet<(&str, u64)> = firing
            .iter()
            .map(|a| (a.fingerprint.as_str(), a.seq))
            .collect();
        let resolved: Vec<Notification> = self
            .store
            .load_alerts()?
            .iter()
            .filter(|a| a.state == AlertState::Resolved)
            .filter(|a| sent.contains(&(a.fingerprint.as_str(), a.seq)))
            .filter_map(|a| {
                notification_for(a, NotificationStatus::Resolved, receiver, &self.links)
            })
            .collect();
        if !resolved.is_empty() {
            self.sender.post(&resolved, Timestamp::now()).await?;
        }
        Ok(ResendStats {
            firing: notifications.len(),
            resolved_meanwhile: resolved.len(),
        })
    }

    /// Re-sends every `resend_interval` (real time: Alertmanager compares `endsAt` with its
    /// wall clock) until `shutdown` turns true. Failures are logged and counted, never fatal.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let interval = self.sender.resend_interval();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let round = tokio::select! {
                r = self.resend_once() => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let receiver = self.sender.name();
            match round {
                Ok(stats) if stats.firing == 0 => {}
                Ok(stats) => {
                    self.metrics.alertmanager_resend(receiver, "delivered");
                    tracing::debug!(
                        receiver,
                        firing = stats.firing,
                        resolved_meanwhile = stats.resolved_meanwhile,
                        "Re-sent firing alerts to Alertmanager."
                    );
                }
                Err(e) => {
                    self.metrics.alertmanager_resend(receiver, e.reason());
                    tracing::warn!(receiver, error = %e, retry_in = ?interval,
                        "Re-sending firing alerts to Alertmanager failed.");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
