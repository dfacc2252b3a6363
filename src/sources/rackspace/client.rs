//! Rackspace Identity token handling and the paged `estimated_charges` call.

use std::time::Duration;

use jiff::Timestamp;
use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use tokio::sync::Mutex;

use super::config::RackspaceSettings;
use super::map::{map_estimated_charges, parse_api_time};
use super::wire::{EstimatedCharges, EstimatedChargesResponse, TokenResponse};
use crate::model::Observation;
use crate::sources::http::{
    ApiClient, AttemptError, Fetched, PollError, PollErrorKind, RetryAction, default_classify,
};
use crate::sources::{BillingSource, PollFuture};

/// Re-authenticate this long before the token's stated expiry.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

#[derive(Clone)]
struct CachedToken {
    id: String,
    expires: Timestamp,
}

pub struct RackspaceClient {
    settings: RackspaceSettings,
    api: ApiClient,
    token: Mutex<Option<CachedToken>>,
}

/// Rackspace's table: 401 re-authenticates; 413 and 429 are throttling (the Billing
/// throttling code is undocumented, other Rackspace APIs use both).
fn classify(status: StatusCode) -> RetryAction {
    default_classify(status)
}

impl RackspaceClient {
    pub fn new(settings: RackspaceSettings) -> Result<Self, PollError> {
        let api = ApiClient::new(settings.policy.clone())?;
        Ok(RackspaceClient {
            settings,
            api,
            token: Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &RackspaceSettings {
        &self.settings
    }

    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    /// A valid token: the cached one unless it is near expiry or `force` is set.
    async fn token(&self, force: bool, request_id: &str) -> Result<String, PollError> {
        let mut cached = self.token.lock().await;
        if !force
            && let Some(t) = cached.as_ref()
            && Timestamp::now() + REFRESH_MARGIN < t.expires
        {
            return Ok(t.id.clone());
        }
        let url = self
            .settings
            .identity_url
            .join("tokens")
            .map_err(|e| PollError::new(PollErrorKind::Client, format!("identity URL: {e}")))?;
        let body = serde_json::json!({
            "auth": {"RAX-KSKEY:apiKeyCredentials": {
                "username": self.settings.username,
                "apiKey": self.settings.api_key.expose(),
            }}
        });
        let request = self
            .api
            .http()
            .post(url)
            .header(ACCEPT, "application/json")
            .header("X-Request-Id", request_id)
            .json(&body);
        let fetched = self
            .api
            .send_once(request, classify)
            .await
            .map_err(|e| match e {
                // A 401 from Identity means the credentials are wrong: no point re-authenticating.
                AttemptError::Unauthorized(m) => PollError::new(
                    PollErrorKind::Auth,
                    format!("identity rejected the API key: {m}"),
                ),
                AttemptError::Failed(e) => e,
            })?;
        let parsed: TokenResponse = fetched.json("identity token")?;
        let expires = parse_api_time(&parsed.access.token.expires)?;
        tracing::info!(expires = %expires, "Authenticated with Rackspace Identity.");
        let token = CachedToken {
            id: parsed.access.token.id,
            expires,
        };
        let id = token.id.clone();
        *cached = Some(token);
        Ok(id)
    }

    /// GET with the token; on 401 re-authenticates once and repeats the request.
    async fn get_authorized(&self, url: &url::Url, request_id: &str) -> Result<Fetched, PollError> {
        let mut reauthenticated = false;
        loop {
            let token = self.token(reauthenticated, request_id).await?;
            let request = self
                .api
                .http()
                .get(url.clone())
                .header("X-Auth-Token", token)
                .header(ACCEPT, "application/json")
                .header("X-Request-Id", request_id);
            match self.api.send_once(request, classify).await {
                Ok(f) => return Ok(f),
                Err(AttemptError::Unauthorized(m)) if !reauthenticated => {
                    tracing::info!(reason = %m, "Token rejected; re-authenticating once.");
                    reauthenticated = true;
                }
                Err(e) => return Err(e.into_poll_error()),
            }
        }
    }

    fn page_url(&self, ran: &str, marker: Option<u64>) -> Result<url::Url, PollError> {
        let mut url = self
            .settings
            .billing_url
            .join(&format!("accounts/{ran}/estimated_charges"))
            .map_err(|e| PollError::new(PollErrorKind::Client, format!("billing URL: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", &self.settings.page_size.to_string());
            if let Some(m) = marker {
                q.append_pair("marker", &m.to_string());
            }
        }
        Ok(url)
    }

    /// All pages of one account's estimated charges. `next` links are followed by their
    /// `marker` only, against the configured base URL: the token never goes to another host,
    /// and both the `estimated_charges` and `estimated-charges` spellings work.
    pub async fn estimated_charges(
        &self,
        ran: &str,
        request_id: &str,
    ) -> Result<Vec<EstimatedCharges>, PollError> {
        let mut pages = Vec::new();
        // `marker` is a 0-based item index; a next page must start further on, which
        // also ends the documented example's `next` link that points back at marker 0.
        let mut marker: Option<u64> = None;
        loop {
            if pages.len() >= self.settings.max_pages as usize {
                return Err(PollError::new(
                    PollErrorKind::Paging,
                    format!(
                        "more than {} pages of estimated charges",
                        self.settings.max_pages
                    ),
                ));
            }
            let url = self.page_url(ran, marker)?;
            let fetched = self.get_authorized(&url, request_id).await?;
            let page = fetched
                .json::<EstimatedChargesResponse>("estimated charges")?
                .estimated_charges;
            let empty = page.estimated_charge.is_empty();
            let next_marker = page.next_href().and_then(marker_of);
            pages.push(page);
            match next_marker {
                Some(m) if !empty && m > marker.unwrap_or(0) => marker = Some(m),
                _ => break,
            }
        }
        Ok(pages)
    }

    /// One poll of one account, with the retry policy around it. Estimated charges carry no
    /// time of their own: they describe the account as of the poll (`at`).
    pub async fn poll_account(
        &self,
        ran: &str,
        at: Timestamp,
        request_id: &str,
    ) -> Result<Vec<Observation>, PollError> {
        let pages = self
            .api
            .with_retries(|| self.estimated_charges(ran, request_id))
            .await?;
        map_estimated_charges(&self.settings.name, ran, &pages, at)
    }
}

impl BillingSource for RackspaceClient {
    fn name(&self) -> &str {
        &self.settings.name
    }
    fn kind(&self) -> &'static str {
        "rackspace"
    }
    fn targets(&self) -> Vec<String> {
        self.settings.accounts.clone()
    }
    fn interval(&self) -> std::time::Duration {
        self.settings.interval
    }
    fn poll<'a>(&'a self, target: &'a str, now: Timestamp, request_id: &'a str) -> PollFuture<'a> {
        Box::pin(self.poll_account(target, now, request_id))
    }
}

fn marker_of(href: &str) -> Option<u64> {
    let parsed = url::Url::parse(href)
        .or_else(|_| url::Url::parse("http://relative.invalid/")?.join(href))
        .ok()?;
    parsed
        .query_pairs()
        .find(|(k, _)| k == "marker")
        .and_then(|(_, v)| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_from_either_spelling() {
        assert_eq!(
            marker_of(
                "https://billing.api.rackspacecloud.com/v2/accounts/{ran}/estimated-charges?marker=10&limit=10"
            ),
            Some(10)
        );
        assert_eq!(
            marker_of("/v2/accounts/1/estimated_charges?limit=5&marker=5"),
            Some(5)
        );
        assert_eq!(marker_of("/v2/accounts/1/estimated_charges?limit=5"), None);
    }
}
