//! RackNap `GET /v1/invoices` with a bearer key: the envelope checks (HTTP status *and*
//! `success`), offset/limit paging with guards, and the retry table. Every failure's message
//! ends with the `meta.requestId` RackNap gave the response (what its support asks for).

use std::collections::HashSet;

use jiff::Timestamp;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use super::config::{ALL_CUSTOMERS, RacknapSettings};
use super::map::{Page, map_invoices};
use super::wire::{Head, InvoiceList};
use crate::model::Observation;
use crate::sources::http::{
    ApiClient, Fetched, PollError, PollErrorKind, RetryAction, default_classify, snippet, wait_for,
};
use crate::sources::{BillingSource, PollFuture};

/// RackNap's table. A bearer key cannot be refreshed, so 401 and 403 fail as `Auth` at once
/// (which of the two a revoked key gets is undocumented); 429 retries after
/// `X-RateLimit-Reset`; 408 and 5xx retry; any other 4xx fails.
pub fn classify(status: StatusCode) -> RetryAction {
    match status.as_u16() {
        401 | 403 => RetryAction::Fail(PollErrorKind::Auth),
        429 => RetryAction::Retry(PollErrorKind::RateLimited),
        _ => default_classify(status),
    }
}

fn kind_of(action: RetryAction) -> PollErrorKind {
    match action {
        RetryAction::Reauthenticate => PollErrorKind::Auth,
        RetryAction::Retry(kind) | RetryAction::Fail(kind) => kind,
    }
}

/// `; RackNap requestId req_…` for the end of an error message.
fn request_id_suffix(id: Option<&str>) -> String {
    match id {
        Some(id) => format!("; RackNap requestId {id}"),
        None => "; no RackNap requestId".to_string(),
    }
}

fn with_request_id(mut err: PollError, id: Option<&str>) -> PollError {
    err.message.push_str(&request_id_suffix(id));
    err
}

/// The envelope head of any JSON body, error or not; `None` for anything else.
fn head_of(body: &[u8]) -> Option<Head> {
    serde_json::from_slice(body).ok()
}

/// One page of the listing, with its requestId.
#[derive(Debug)]
pub struct Listed {
    pub list: InvoiceList,
    pub request_id: Option<String>,
}

/// Reads one list response. An error status, `success: false` (even with HTTP 200), a body
/// that is not JSON or not the documented envelope are all errors that carry the requestId.
pub fn read_list(fetched: &Fetched) -> Result<Listed, PollError> {
    let status = fetched.status;
    if !status.is_success() {
        let head = head_of(&fetched.body);
        let rid = head.as_ref().and_then(Head::request_id);
        let detail = match head.as_ref().and_then(|h| h.error.as_ref()) {
            Some(e) => format!(
                "{} (type {})",
                e.message.as_deref().unwrap_or("no message"),
                e.kind.as_deref().unwrap_or("none")
            ),
            None => snippet(&fetched.body),
        };
        let mut err = PollError::new(
            kind_of(classify(status)),
            format!("HTTP {status}: {detail}"),
        );
        err.retry_after = wait_for(err.kind, &fetched.headers);
        return Err(with_request_id(err, rid));
    }
    // Content type first: an HTML page from a proxy is `NotJson`, not `Malformed`.
    let head: Head = fetched
        .json("RackNap invoices")
        .map_err(|e| with_request_id(e, None))?;
    let rid = head.request_id().map(str::to_string);
    if !head.success {
        // HTTP 200 but the envelope says it failed: classify by the `code` it repeats;
        // without a usable one, assume a server-side failure worth a retry.
        let code = head
            .code
            .and_then(|c| u16::try_from(c).ok())
            .and_then(|c| StatusCode::from_u16(c).ok())
            .filter(|s| s.is_client_error() || s.is_server_error());
        let kind = code.map_or(PollErrorKind::Server, |s| kind_of(classify(s)));
        let (message, kind_text) = head.error.as_ref().map_or(("no message", "none"), |e| {
            (
                e.message.as_deref().unwrap_or("no message"),
                e.kind.as_deref().unwrap_or("none"),
            )
        });
        let mut err = PollError::new(
            kind,
            format!(
                "HTTP {status} with success=false (code {}): {message} (type {kind_text})",
                head.code.map_or("none".to_string(), |c| c.to_string())
            ),
        );
        err.retry_after = wait_for(err.kind, &fetched.headers);
        return Err(with_request_id(err, rid.as_deref()));
    }
    if let Some(code) = head.code
        && !(200..300).contains(&code)
    {
        return Err(with_request_id(
            PollError::malformed(format!("HTTP {status} with success=true but code {code}")),
            rid.as_deref(),
        ));
    }
    let list: InvoiceList = serde_json::from_slice(&fetched.body).map_err(|e| {
        with_request_id(
            PollError::malformed(format!("RackNap invoices: {e}")),
            rid.as_deref(),
        )
    })?;
    Ok(Listed {
        list,
        request_id: rid,
    })
}

pub struct RacknapClient {
    settings: RacknapSettings,
    api: ApiClient,
}

impl RacknapClient {
    pub fn new(settings: RacknapSettings) -> Result<Self, PollError> {
        let api = ApiClient::new(settings.policy.clone())?;
        Ok(RacknapClient { settings, api })
    }

    pub fn settings(&self) -> &RacknapSettings {
        &self.settings
    }

    fn page_url(&self, customer: Option<&str>, offset: u64) -> Result<url::Url, PollError> {
        let mut url =
            self.settings.base_url.join("invoices").map_err(|e| {
                PollError::new(PollErrorKind::Client, format!("RackNap base URL: {e}"))
            })?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", &self.settings.page_size.to_string());
            // `offset` is implied by `pagination.offset` but never shown in a request
            // (REFERENCE.md §3, uncertain): the echo is checked in `list_invoices`.
            q.append_pair("offset", &offset.to_string());
            if let Some(c) = customer {
                q.append_pair("customerId", c);
            }
        }
        Ok(url)
    }

    /// One request for one page.
    async fn fetch_page(
        &self,
        customer: Option<&str>,
        offset: u64,
        request_id: &str,
    ) -> Result<Listed, PollError> {
        let url = self.page_url(customer, offset)?;
        let request = self
            .api
            .http()
            .get(url)
            .bearer_auth(self.settings.api_key.expose())
            .header(ACCEPT, "application/json")
            // The documented examples send it, even on GET.
            .header(CONTENT_TYPE, "application/json")
            .header("X-Request-Id", request_id);
        let fetched = self
            .api
            .send_once_any_status(request)
            .await
            .map_err(|e| with_request_id(e.into_poll_error(), None))?;
        match read_list(&fetched) {
            Ok(listed) => {
                tracing::debug!(
                    racknap_request_id = listed.request_id.as_deref().unwrap_or(""),
                    offset,
                    invoices = listed.list.data.len(),
                    "Fetched a page of RackNap invoices."
                );
                Ok(listed)
            }
            Err(e) => {
                let rid = head_of(&fetched.body).and_then(|h| h.meta?.request_id);
                tracing::warn!(racknap_request_id = rid.as_deref().unwrap_or(""), status = %fetched.status,
                    kind = %e.kind, "RackNap answered with an error.");
                Err(e)
            }
        }
    }

    /// Every page of one listing (one customer, or all of them). Paging follows `offset`
    /// by the number of invoices received (the server may cap `limit`) until `hasMore` is
    /// false, and refuses a server that ignores `offset`, never stops, or whose listing
    /// changes underneath (a repeated invoice, or fewer invoices than `total`).
    pub async fn list_invoices(
        &self,
        customer: Option<&str>,
        request_id: &str,
    ) -> Result<Vec<Page>, PollError> {
        let mut pages: Vec<Page> = Vec::new();
        let mut offset: u64 = 0;
        let mut seen: HashSet<String> = HashSet::new();
        loop {
            if pages.len() >= self.settings.max_pages as usize {
                return Err(PollError::new(
                    PollErrorKind::Paging,
                    format!(
                        "more than {} pages of {} invoices; raise max_pages or page_size",
                        self.settings.max_pages, self.settings.page_size
                    ),
                ));
            }
            let Listed {
                list,
                request_id: rid,
            } = self.fetch_page(customer, offset, request_id).await?;
            let paging_error = |message: String| {
                with_request_id(
                    PollError::new(PollErrorKind::Paging, message),
                    rid.as_deref(),
                )
            };
            let p = &list.pagination;
            if p.offset != offset {
                return Err(paging_error(format!(
                    "asked for offset {offset}, RackNap answered offset {}: paging would repeat or skip invoices",
                    p.offset
                )));
            }
            for inv in &list.data {
                if !seen.insert(inv.id.clone()) {
                    return Err(paging_error(format!(
                        "invoice {:?} listed twice: the listing changed while paging",
                        inv.id
                    )));
                }
            }
            let received = list.data.len() as u64;
            let (has_more, total) = (p.has_more, p.total);
            pages.push(Page {
                invoices: list.data,
                request_id: rid.clone(),
            });
            if !has_more {
                let listed = seen.len() as u64;
                if listed != total {
                    return Err(paging_error(format!(
                        "RackNap reports {total} invoices but listed {listed}: the listing changed while paging"
                    )));
                }
                return Ok(pages);
            }
            if received == 0 {
                return Err(paging_error(format!(
                    "hasMore is true but the page at offset {offset} is empty: paging would not advance"
                )));
            }
            offset += received;
        }
    }

    /// One poll of one target (a customer ID, or `all`), with the retry policy around the
    /// whole listing, so a retry never mixes pages of two attempts.
    pub async fn poll_target(
        &self,
        target: &str,
        now: Timestamp,
        request_id: &str,
    ) -> Result<Vec<Observation>, PollError> {
        let customer = (target != ALL_CUSTOMERS).then_some(target);
        let pages = self
            .api
            .with_retries(|| self.list_invoices(customer, request_id))
            .await?;
        let observations = map_invoices(
            &self.settings.name,
            customer,
            &pages,
            &self.settings.currency,
            &self.settings.ignore_statuses,
            now,
        )?;
        if observations.is_empty() {
            // A new customer has no invoice yet: a normal state, not a zero total.
            tracing::info!("No RackNap invoices yet.");
        }
        Ok(observations)
    }
}

impl BillingSource for RacknapClient {
    fn name(&self) -> &str {
        &self.settings.name
    }
    fn kind(&self) -> &'static str {
        "racknap"
    }
    fn targets(&self) -> Vec<String> {
        self.settings.targets()
    }
    fn interval(&self) -> std::time::Duration {
        self.settings.interval
    }
    fn poll<'a>(&'a self, target: &'a str, now: Timestamp, request_id: &'a str) -> PollFuture<'a> {
        Box::pin(self.poll_target(target, now, request_id))
    }
}
