//! Signed generic webhook: a versioned JSON body, `Idempotency-Key`, and an HMAC-SHA256
//! signature over `timestamp + "." + body` so receivers can verify origin and freshness.
//!
//! Two body formats, chosen per receiver (`format`):
//!
//! - `spendwatch` (default, `"version": "1"`): for a group of one alert, the alert's fields at
//!   the top level (`idempotencyKey`, `receiver`, `status`, `fingerprint`, `rule`, `labels`,
//!   `annotations`, `value`, `threshold`, `startsAt`, `endsAt`), unchanged since version 1.
//!   For a group of several: `version`, `idempotencyKey` (the group's), `receiver`, `status`
//!   (firing while any alert fires), `groupKey`, `groupLabels`, and `alerts`, an array of the
//!   same per-alert objects (`idempotencyKey`, `status`, `fingerprint`, `rule`, `labels`,
//!   `annotations`, `value`, `threshold`, `startsAt`, `endsAt`).
//! - `alertmanager`: Alertmanager's own webhook body (`"version": "4"`, see its
//!   `webhook_config`), so receivers written for Alertmanager work unchanged. Labels and
//!   annotations are the ones the Alertmanager receiver pushes
//!   ([`super::alertmanager::label_set`], [`super::alertmanager::annotation_set`]); a firing
//!   alert's `endsAt` is `0001-01-01T00:00:00Z` and a missing `generatorURL` is `""`, as
//!   Alertmanager sends them; `externalURL` is empty and `truncatedAlerts` 0 (nothing is
//!   truncated).
//!
//! Both are signed and carry `Idempotency-Key` (the group's key: an alert's own key for a group
//! of one).

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::alertmanager::{annotation_set, generator_url, label_set, sanitize_label_name};
use super::{Delivery, SendError};
use crate::config::{Secret, WebhookFormat, WebhookReceiver};
use crate::model::{Link, Notification, NotificationGroup, NotificationStatus};

pub const SIGNATURE_HEADER: &str = "X-Spendwatch-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Spendwatch-Timestamp";
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
pub const PAYLOAD_VERSION: &str = "1";
/// `version` of Alertmanager's webhook body.
pub const ALERTMANAGER_PAYLOAD_VERSION: &str = "4";
/// How Alertmanager writes "not ended yet" (Go's zero time).
pub const ALERTMANAGER_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    version: &'static str,
    idempotency_key: &'a str,
    receiver: &'a str,
    status: &'a str,
    fingerprint: &'a str,
    rule: &'a str,
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    value: &'a str,
    threshold: &'a str,
    starts_at: String,
    ends_at: Option<String>,
    /// The alert's page first (`[links] external_url`), then dashboard and console.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    links: &'a [Link],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupPayload<'a> {
    version: &'static str,
    idempotency_key: String,
    receiver: &'a str,
    status: &'static str,
    group_key: &'a str,
    group_labels: &'a BTreeMap<String, String>,
    alerts: Vec<AlertPayload<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertPayload<'a> {
    idempotency_key: &'a str,
    status: &'static str,
    fingerprint: &'a str,
    rule: &'a str,
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    value: &'a str,
    threshold: &'a str,
    starts_at: String,
    ends_at: Option<String>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    links: &'a [Link],
}

/// Alertmanager's webhook body, version 4 (field order as Alertmanager writes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerMessage {
    pub receiver: String,
    pub status: String,
    pub alerts: Vec<AlertmanagerAlert>,
    pub group_labels: BTreeMap<String, String>,
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub version: String,
    pub group_key: String,
    pub truncated_alerts: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerAlert {
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

fn encode<T: Serialize>(payload: &T) -> Result<Vec<u8>, SendError> {
    serde_json::to_vec(payload).map_err(|e| SendError::permanent(format!("encoding payload: {e}")))
}

/// The spendwatch body of a single notification: deterministic for a given notification.
pub fn render(n: &Notification) -> Result<Vec<u8>, SendError> {
    encode(&Payload {
        version: PAYLOAD_VERSION,
        idempotency_key: &n.idempotency_key,
        receiver: &n.receiver,
        status: n.status.as_str(),
        fingerprint: &n.fingerprint,
        rule: &n.rule,
        labels: &n.labels,
        annotations: &n.annotations,
        value: &n.value,
        threshold: &n.threshold,
        starts_at: n.starts_at.to_string(),
        ends_at: n.ends_at.map(|t| t.to_string()),
        links: &n.links,
    })
}

/// The request body for a group in the receiver's format: deterministic for a given group.
pub fn render_group(
    group: &NotificationGroup,
    format: WebhookFormat,
) -> Result<Vec<u8>, SendError> {
    match (format, group.alerts.as_slice()) {
        (_, []) => Err(SendError::permanent(format!(
            "group {:?} has no alerts to send",
            group.key
        ))),
        (WebhookFormat::Spendwatch, [only]) => render(only),
        (WebhookFormat::Spendwatch, alerts) => encode(&GroupPayload {
            version: PAYLOAD_VERSION,
            idempotency_key: group.idempotency_key(),
            receiver: &group.receiver,
            status: group.status().as_str(),
            group_key: &group.key,
            group_labels: &group.labels,
            alerts: alerts
                .iter()
                .map(|n| AlertPayload {
                    idempotency_key: &n.idempotency_key,
                    status: n.status.as_str(),
                    fingerprint: &n.fingerprint,
                    rule: &n.rule,
                    labels: &n.labels,
                    annotations: &n.annotations,
                    value: &n.value,
                    threshold: &n.threshold,
                    starts_at: n.starts_at.to_string(),
                    ends_at: n.ends_at.map(|t| t.to_string()),
                    links: &n.links,
                })
                .collect(),
        }),
        (WebhookFormat::Alertmanager, _) => encode(&alertmanager_message(group)?),
    }
}

/// The group as Alertmanager's webhook notifier would describe it.
pub fn alertmanager_message(group: &NotificationGroup) -> Result<AlertmanagerMessage, SendError> {
    let invalid = |e: super::alertmanager::LabelError| {
        SendError::permanent_with_reason("invalid_labels", e.to_string())
    };
    let mut alerts = Vec::with_capacity(group.alerts.len());
    for n in &group.alerts {
        alerts.push(AlertmanagerAlert {
            status: n.status.as_str().to_string(),
            labels: label_set(n).map_err(invalid)?,
            annotations: annotation_set(n).map_err(invalid)?,
            starts_at: n.starts_at.to_string(),
            ends_at: match n.status {
                NotificationStatus::Firing => ALERTMANAGER_ZERO_TIME.to_string(),
                NotificationStatus::Resolved => n
                    .ends_at
                    .map_or_else(|| ALERTMANAGER_ZERO_TIME.to_string(), |t| t.to_string()),
            },
            generator_url: generator_url(n).unwrap_or_default(),
            fingerprint: n.fingerprint.clone(),
        });
    }
    let common_labels = common(alerts.iter().map(|a| &a.labels));
    let common_annotations = common(alerts.iter().map(|a| &a.annotations));
    let group_labels = group
        .labels
        .iter()
        .filter_map(|(k, v)| Some((sanitize_label_name(k)?, v.clone())))
        .collect();
    Ok(AlertmanagerMessage {
        receiver: group.receiver.clone(),
        status: group.status().as_str().to_string(),
        alerts,
        group_labels,
        common_labels,
        common_annotations,
        external_url: String::new(),
        version: ALERTMANAGER_PAYLOAD_VERSION.to_string(),
        group_key: group.key.clone(),
        truncated_alerts: 0,
    })
}

/// The pairs every map has, with the same value.
fn common<'a>(
    mut maps: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let Some(first) = maps.next() else {
        return BTreeMap::new();
    };
    let mut shared = first.clone();
    for m in maps {
        shared.retain(|k, v| m.get(k) == Some(v));
    }
    shared
}

/// `sha256=<hex>` of HMAC-SHA256(secret, "{timestamp}.{body}").
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature in constant time (what a receiver does).
pub fn verify(secret: &Secret, timestamp: i64, body: &[u8], signature: &str) -> bool {
    let Some(hex_sig) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(bytes) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes()) else {
        return false;
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&bytes).is_ok()
}

pub struct WebhookSender {
    config: WebhookReceiver,
    http: reqwest::Client,
}

impl WebhookSender {
    pub fn new(config: WebhookReceiver) -> Result<Self, SendError> {
        crate::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("spendwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SendError::permanent(format!("building HTTP client: {e}")))?;
        Ok(WebhookSender { config, http })
    }

    /// The URL without query or credentials, safe for logs.
    pub fn redacted_url(&self) -> String {
        let u = &self.config.url;
        format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.path()
        )
    }

    /// One signed POST of the group. Webhooks keep no thread, so none is used or returned.
    pub async fn send(
        &self,
        group: &NotificationGroup,
        _thread: Option<&str>,
    ) -> Result<Delivery, SendError> {
        let body = render_group(group, self.config.format)?;
        let timestamp = jiff::Timestamp::now().as_second();
        let signature = sign(&self.config.secret, timestamp, &body);
        let response = self
            .http
            .post(self.config.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_HEADER, group.idempotency_key())
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let reason = if e.is_timeout() { "timeout" } else { "connect" };
                // Without the URL: it may carry a token.
                SendError::recoverable(reason, format!("POST {}: {reason}", self.redacted_url()))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(Delivery::default());
        }
        let message = format!("POST {} answered {status}", self.redacted_url());
        // A refusal (bad signature, unknown path, ...) will not change by retrying; a busy or
        // broken receiver may recover.
        Err(match status.as_u16() {
            429 => SendError::recoverable("rate_limited", message),
            408 => SendError::recoverable("timeout", message),
            400..=499 => SendError::permanent_with_reason("http_4xx", message),
            _ => SendError::recoverable("http_5xx", message),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NotificationStatus;
    use std::collections::BTreeMap;

    fn notification() -> Notification {
        Notification {
            idempotency_key: "fp-1-firing-hook".into(),
            receiver: "hook".into(),
            status: NotificationStatus::Firing,
            fingerprint: "fp".into(),
            rule: "budget".into(),
            labels: BTreeMap::from([("account".to_string(), "020-1".to_string())]),
            annotations: BTreeMap::new(),
            value: "1200".into(),
            threshold: "1000".into(),
            starts_at: "2026-11-12T00:00:00Z".parse().unwrap(),
            ends_at: None,
            contributors: Vec::new(),
            links: Vec::new(),
        }
    }

    #[test]
    fn signature_round_trip_and_tamper() {
        let secret = Secret::new("k3y");
        let body = render(&notification()).unwrap();
        let sig = sign(&secret, 1_700_000_000, &body);
        assert!(verify(&secret, 1_700_000_000, &body, &sig));
        assert!(
            !verify(&secret, 1_700_000_001, &body, &sig),
            "timestamp is signed"
        );
        assert!(!verify(&Secret::new("other"), 1_700_000_000, &body, &sig));
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        assert!(!verify(&secret, 1_700_000_000, &tampered, &sig));
    }

    #[test]
    fn payload_carries_what_receivers_need() {
        let body: serde_json::Value =
            serde_json::from_slice(&render(&notification()).unwrap()).unwrap();
        assert_eq!(body["version"], "1");
        assert_eq!(body["status"], "firing");
        assert_eq!(body["idempotencyKey"], "fp-1-firing-hook");
        assert_eq!(body["labels"]["account"], "020-1");
        assert_eq!(body["startsAt"], "2026-11-12T00:00:00Z");
        assert!(body["endsAt"].is_null());
        assert_eq!(body["threshold"], "1000");
        assert!(
            body.get("links").is_none(),
            "no links configured, none sent"
        );
    }

    /// Issue 11: the on-call person follows the message to the alert's page.
    #[test]
    fn payload_links_to_the_alert_page_first() {
        let mut n = notification();
        n.links = vec![
            Link {
                title: "alert".into(),
                url: "https://sw.example.com/alerts/fp".into(),
            },
            Link {
                title: "silence".into(),
                url: "https://sw.example.com/alerts/fp#silence".into(),
            },
        ];
        let body: serde_json::Value = serde_json::from_slice(&render(&n).unwrap()).unwrap();
        assert_eq!(body["links"][0]["title"], "alert");
        assert_eq!(body["links"][0]["url"], "https://sw.example.com/alerts/fp");
        let mut other = n.clone();
        other.idempotency_key = "fp2-1-firing-hook".into();
        let grouped: serde_json::Value = serde_json::from_slice(
            &render_group(&group(vec![n, other]), WebhookFormat::Spendwatch).unwrap(),
        )
        .unwrap();
        assert_eq!(
            grouped["alerts"][1]["links"][1]["url"],
            "https://sw.example.com/alerts/fp#silence"
        );
    }

    fn group(alerts: Vec<Notification>) -> NotificationGroup {
        NotificationGroup {
            receiver: "hook".into(),
            key: "{}:{account=\"020-1\"}".into(),
            labels: BTreeMap::from([("account".to_string(), "020-1".to_string())]),
            alerts,
        }
    }

    /// Two alerts of one account: a firing one with links and contributors, a resolved one.
    fn two() -> Vec<Notification> {
        let mut first = notification();
        first.labels.insert("alertname".into(), "budget".into());
        first.labels.insert("level".into(), "100".into());
        first
            .annotations
            .insert("summary".into(), "Spend over budget".into());
        first.contributors = vec![crate::model::ContributorLine {
            item: "RCDN/BWOUT".into(),
            amount: "$412.00".into(),
            delta: "+$380.00".into(),
        }];
        first.links = vec![crate::model::Link {
            title: "alert".into(),
            url: "http://sw.example/api/v1/alerts".into(),
        }];
        let mut second = notification();
        second.idempotency_key = "fp2-1-resolved-hook".into();
        second.fingerprint = "fp2".into();
        second.status = NotificationStatus::Resolved;
        second.labels.insert("alertname".into(), "budget".into());
        second.labels.insert("level".into(), "80".into());
        second
            .annotations
            .insert("summary".into(), "Spend over budget".into());
        second.ends_at = Some("2026-11-12T06:00:00Z".parse().unwrap());
        vec![first, second]
    }

    #[test]
    fn spendwatch_body_of_a_group_of_one_is_the_version_1_body() {
        let n = notification();
        let body = render_group(&group(vec![n.clone()]), WebhookFormat::Spendwatch).unwrap();
        assert_eq!(body, render(&n).unwrap());
        // Pinned byte for byte: receivers of version 1 must see no change.
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"version":"1","idempotencyKey":"fp-1-firing-hook","receiver":"hook","status":"firing","fingerprint":"fp","rule":"budget","labels":{"account":"020-1"},"annotations":{},"value":"1200","threshold":"1000","startsAt":"2026-11-12T00:00:00Z","endsAt":null}"#
        );
    }

    #[test]
    fn spendwatch_body_of_a_group_lists_its_alerts() {
        let g = group(two());
        let body: serde_json::Value =
            serde_json::from_slice(&render_group(&g, WebhookFormat::Spendwatch).unwrap()).unwrap();
        assert_eq!(body["version"], "1");
        assert_eq!(body["idempotencyKey"], g.idempotency_key());
        assert!(
            body["idempotencyKey"]
                .as_str()
                .unwrap()
                .starts_with("group-")
        );
        assert_eq!(body["receiver"], "hook");
        assert_eq!(body["status"], "firing", "firing while any alert fires");
        assert_eq!(body["groupKey"], g.key);
        assert_eq!(body["groupLabels"]["account"], "020-1");
        let alerts = body["alerts"].as_array().unwrap();
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0]["idempotencyKey"], "fp-1-firing-hook");
        assert_eq!(alerts[0]["status"], "firing");
        assert!(alerts[0]["endsAt"].is_null());
        assert_eq!(alerts[1]["fingerprint"], "fp2");
        assert_eq!(alerts[1]["status"], "resolved");
        assert_eq!(alerts[1]["endsAt"], "2026-11-12T06:00:00Z");
        assert_eq!(alerts[1]["labels"]["level"], "80");
        assert_eq!(alerts[1]["threshold"], "1000");
    }

    #[test]
    fn alertmanager_body_is_webhook_version_4() {
        let g = group(two());
        let body: serde_json::Value =
            serde_json::from_slice(&render_group(&g, WebhookFormat::Alertmanager).unwrap())
                .unwrap();
        let mut keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "alerts",
                "commonAnnotations",
                "commonLabels",
                "externalURL",
                "groupKey",
                "groupLabels",
                "receiver",
                "status",
                "truncatedAlerts",
                "version"
            ]
        );
        assert_eq!(body["version"], "4");
        assert_eq!(body["groupKey"], "{}:{account=\"020-1\"}");
        assert_eq!(body["truncatedAlerts"], 0);
        assert_eq!(body["status"], "firing");
        assert_eq!(body["receiver"], "hook");
        assert_eq!(body["groupLabels"], serde_json::json!({"account": "020-1"}));
        assert_eq!(
            body["commonLabels"],
            serde_json::json!({"account": "020-1", "alertname": "budget"}),
            "level differs between the two"
        );
        assert_eq!(
            body["commonAnnotations"],
            serde_json::json!({"summary": "Spend over budget", "value": "1200", "threshold": "1000"})
        );
        assert_eq!(body["externalURL"], "");

        let alerts = body["alerts"].as_array().unwrap();
        let mut alert_keys: Vec<&str> = alerts[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        alert_keys.sort_unstable();
        assert_eq!(
            alert_keys,
            [
                "annotations",
                "endsAt",
                "fingerprint",
                "generatorURL",
                "labels",
                "startsAt",
                "status"
            ]
        );
        assert_eq!(alerts[0]["status"], "firing");
        assert_eq!(alerts[0]["labels"]["level"], "100");
        assert_eq!(
            alerts[0]["annotations"]["contributors"],
            "RCDN/BWOUT: $412.00 (+$380.00)"
        );
        assert_eq!(alerts[0]["startsAt"], "2026-11-12T00:00:00Z");
        assert_eq!(alerts[0]["endsAt"], ALERTMANAGER_ZERO_TIME, "not ended yet");
        assert_eq!(alerts[0]["generatorURL"], "http://sw.example/api/v1/alerts");
        assert_eq!(alerts[0]["fingerprint"], "fp");
        assert_eq!(alerts[1]["status"], "resolved");
        assert_eq!(alerts[1]["endsAt"], "2026-11-12T06:00:00Z");
        assert_eq!(
            alerts[1]["generatorURL"], "",
            "Alertmanager sends an empty string"
        );

        // It parses as the typed message, and a lone resolved alert makes the group resolved.
        let one = group(vec![two().remove(1)]);
        let msg: AlertmanagerMessage =
            serde_json::from_slice(&render_group(&one, WebhookFormat::Alertmanager).unwrap())
                .unwrap();
        assert_eq!(msg.status, "resolved");
        assert_eq!(msg.common_labels, msg.alerts[0].labels);
    }

    #[tokio::test]
    async fn both_formats_are_signed_and_carry_the_group_key() {
        use axum::extract::State;
        use axum::http::HeaderMap;
        use std::sync::{Arc, Mutex};

        type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;
        let seen: Seen = Arc::default();
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(
                    |State(seen): State<Seen>, headers: HeaderMap, body: axum::body::Bytes| async move {
                        seen.lock().unwrap().push((headers, body.to_vec()));
                        axum::http::StatusCode::NO_CONTENT
                    },
                ),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let secret = Secret::new("hook-k3y");
        let g = group(two());
        for format in [WebhookFormat::Spendwatch, WebhookFormat::Alertmanager] {
            let sender = WebhookSender::new(WebhookReceiver {
                name: "hook".into(),
                url: format!("http://{addr}/hook").parse().unwrap(),
                secret: secret.clone(),
                timeout: Duration::from_secs(2),
                format,
            })
            .unwrap();
            let delivery = sender.send(&g, None).await.unwrap();
            assert_eq!(delivery, Delivery::default());
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        for (headers, body) in seen.iter() {
            assert_eq!(headers[IDEMPOTENCY_HEADER], g.idempotency_key().as_str());
            let ts: i64 = headers[TIMESTAMP_HEADER].to_str().unwrap().parse().unwrap();
            let sig = headers[SIGNATURE_HEADER].to_str().unwrap();
            assert!(verify(&secret, ts, body, sig));
        }
        let am: AlertmanagerMessage = serde_json::from_slice(&seen[1].1).unwrap();
        assert_eq!(am.version, "4");
        assert_eq!(am.alerts.len(), 2);
    }
}
