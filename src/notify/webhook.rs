//! Signed generic webhook: a versioned JSON body, `Idempotency-Key`, and an HMAC-SHA256
//! signature over `timestamp + "." + body` so receivers can verify origin and freshness.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::{Delivery, SendError};
use crate::config::{Secret, WebhookReceiver};
use crate::model::{Notification, NotificationGroup};

pub const SIGNATURE_HEADER: &str = "X-Spendwatch-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Spendwatch-Timestamp";
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
pub const PAYLOAD_VERSION: &str = "1";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    version: &'static str,
    idempotency_key: &'a str,
    receiver: &'a str,
    status: &'a str,
    fingerprint: &'a str,
    rule: &'a str,
    labels: &'a std::collections::BTreeMap<String, String>,
    annotations: &'a std::collections::BTreeMap<String, String>,
    value: &'a str,
    threshold: &'a str,
    starts_at: String,
    ends_at: Option<String>,
}

/// The request body: deterministic for a given notification.
pub fn render(n: &Notification) -> Result<Vec<u8>, SendError> {
    let payload = Payload {
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
    };
    serde_json::to_vec(&payload).map_err(|e| SendError::permanent(format!("encoding payload: {e}")))
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

    /// Until the webhook renders a whole group in one body, each alert of the group is posted
    /// as its own request with its own idempotency key (a group of one is unchanged). A
    /// failure fails the group: members already posted are posted again on the retry, with
    /// the same keys.
    pub async fn send(
        &self,
        group: &NotificationGroup,
        _thread: Option<&str>,
    ) -> Result<Delivery, SendError> {
        for n in &group.alerts {
            self.send_one(n).await?;
        }
        Ok(Delivery::default())
    }

    async fn send_one(&self, n: &Notification) -> Result<(), SendError> {
        let body = render(n)?;
        let timestamp = jiff::Timestamp::now().as_second();
        let signature = sign(&self.config.secret, timestamp, &body);
        let response = self
            .http
            .post(self.config.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_HEADER, &n.idempotency_key)
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
            return Ok(());
        }
        let reason = if status.is_server_error() {
            "http_5xx"
        } else if status.as_u16() == 429 {
            "rate_limited"
        } else {
            "http_4xx"
        };
        Err(SendError::recoverable(
            reason,
            format!("POST {} answered {status}", self.redacted_url()),
        ))
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
    }
}
