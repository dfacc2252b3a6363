//! The 3scale Billing API client: token auth (HTTP Basic by default), paged invoice
//! listings per month, line items when an invoice does not embed them, and the status table.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use super::config::{AuthMode, Months, ThreescaleSettings};
use super::map::{MapSettings, StateClass, classify_state, map_invoices};
use super::wire::{Invoice, LineItems, parse_invoice_list, parse_line_items};
use crate::model::Observation;
use crate::sources::http::{ApiClient, Fetched, PollError, PollErrorKind, RetryAction, snippet};
use crate::sources::{BillingSource, PollFuture};

/// The target that reads every buyer through `/api/invoices.xml`.
pub const ALL_ACCOUNTS: &str = "all";

/// 3scale's table: an invalid or expired token, a missing scope or a disabled finance
/// module all answer 403 (never 401, and re-authenticating cannot help: the token is
/// static); 404 (empty body for XML) is an unknown account or invoice; 415 is an
/// unsupported API version. Throttling is undocumented: 413/429 are treated as such.
pub fn classify(status: StatusCode) -> RetryAction {
    match status.as_u16() {
        401 | 403 => RetryAction::Fail(PollErrorKind::Auth),
        408 => RetryAction::Retry(PollErrorKind::Timeout),
        413 | 429 => RetryAction::Retry(PollErrorKind::RateLimited),
        500..=599 => RetryAction::Retry(PollErrorKind::Server),
        _ => RetryAction::Fail(PollErrorKind::Client),
    }
}

/// Refuses anything but XML before parsing: HTML pages from proxies, the plain-text 415
/// `Unsupported Finance API version`, JSON.
pub fn require_xml(fetched: &Fetched, what: &str) -> Result<(), PollError> {
    let content_type = fetched
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/xml" || mime == "text/xml" {
        Ok(())
    } else {
        Err(PollError::new(
            PollErrorKind::NotJson,
            format!(
                "{what}: expected XML, got Content-Type {content_type:?} ({})",
                snippet(&fetched.body)
            ),
        ))
    }
}

/// `YYYY-MM` of `months` calendar months (UTC) ending with the one containing `now`,
/// newest first: the running month is read first.
pub fn months_back(now: Timestamp, months: u32) -> Vec<String> {
    let today = now.to_zoned(TimeZone::UTC).date();
    let mut month = Date::new(today.year(), today.month(), 1).ok();
    let mut out = Vec::new();
    for _ in 0..months {
        let Some(m) = month else { break };
        out.push(format!("{:04}-{:02}", m.year(), m.month()));
        month = m.checked_sub(jiff::ToSpan::month(1)).ok();
    }
    out
}

pub struct ThreescaleClient {
    settings: ThreescaleSettings,
    map: MapSettings,
    api: ApiClient,
}

impl ThreescaleClient {
    pub fn new(settings: ThreescaleSettings) -> Result<Self, PollError> {
        let api = ApiClient::new(settings.policy.clone())?;
        let map = MapSettings {
            source: settings.name.clone(),
            usage_unit: settings.usage_unit.clone(),
            metric_units: settings.metric_units.clone(),
        };
        Ok(ThreescaleClient { settings, map, api })
    }

    pub fn settings(&self) -> &ThreescaleSettings {
        &self.settings
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<url::Url, PollError> {
        let mut url = self
            .settings
            .base_url
            .join(path)
            .map_err(|e| PollError::new(PollErrorKind::Client, format!("base URL: {e}")))?;
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// One GET with the token; the body must be XML. Errors never carry the URL (it may
    /// hold the token in `query` mode) — only `what` names the request.
    async fn get_xml(
        &self,
        mut url: url::Url,
        what: &str,
        request_id: &str,
    ) -> Result<Fetched, PollError> {
        let token = self.settings.access_token.expose();
        if self.settings.auth == AuthMode::Query {
            url.query_pairs_mut().append_pair("access_token", token);
        }
        let mut request = self
            .api
            .http()
            .get(url)
            .header(ACCEPT, "application/xml")
            .header("X-Request-Id", request_id);
        if self.settings.auth == AuthMode::Basic {
            // base64(":<token>"), as 3scale-api-ruby sends it; porta takes the first
            // non-empty of user and password.
            request = request.basic_auth("", Some(token));
        }
        let fetched = self.api.send_once(request, classify).await.map_err(|e| {
            let mut e = e.into_poll_error();
            e.message = format!("{what}: {}", e.message);
            if e.kind == PollErrorKind::Auth {
                e.message.push_str(
                    " (3scale answers 403 to a missing, expired or revoked access token, one without the Billing API scope, or a provider without the finance module)",
                );
            }
            e
        })?;
        require_xml(&fetched, what)?;
        Ok(fetched)
    }

    /// Every page of one listing (one buyer or all, one month or all).
    pub async fn list_invoices(
        &self,
        target: &str,
        month: Option<&str>,
        request_id: &str,
    ) -> Result<Vec<Invoice>, PollError> {
        let path = if target == ALL_ACCOUNTS {
            "api/invoices.xml".to_string()
        } else {
            format!("api/accounts/{target}/invoices.xml")
        };
        let what = match month {
            Some(m) => format!("invoices of {target} for {m}"),
            None => format!("invoices of {target}"),
        };
        let mut invoices = Vec::new();
        let mut page: u64 = 1;
        loop {
            if page > u64::from(self.settings.max_pages) {
                return Err(PollError::new(
                    PollErrorKind::Paging,
                    format!("{what}: more than {} pages", self.settings.max_pages),
                ));
            }
            let mut query = vec![
                ("page", page.to_string()),
                ("per_page", self.settings.per_page.to_string()),
            ];
            if let Some(m) = month {
                query.push(("month", m.to_string()));
            }
            let url = self.url(&path, &query)?;
            let page_what = format!("{what}, page {page}");
            let fetched = self.get_xml(url, &page_what, request_id).await?;
            let list = parse_invoice_list(&fetched.body)?;
            let count = list.invoices.len();
            invoices.extend(list.invoices);
            if count == 0 {
                break;
            }
            // Without pagination data, read on until an empty page.
            if let Some(p) = list.pagination {
                let current = p.current_page.unwrap_or(page);
                // porta resets an out-of-range page to 1: a page that does not move on would
                // repeat data, and stopping there would return a partial month.
                if current != page {
                    return Err(PollError::new(
                        PollErrorKind::Paging,
                        format!("{page_what}: the server answered page {current}"),
                    ));
                }
                if p.total_pages.is_some_and(|total| current >= total) {
                    break;
                }
            }
            page += 1;
        }
        Ok(invoices)
    }

    /// `/api/invoices/{id}/line_items.xml`.
    pub async fn line_items(
        &self,
        invoice_id: &str,
        request_id: &str,
    ) -> Result<LineItems, PollError> {
        if invoice_id.is_empty() || !invoice_id.bytes().all(|b| b.is_ascii_digit()) {
            // It goes into a URL path: only a plain numeric id.
            return Err(PollError::malformed(format!(
                "invoice id {invoice_id:?} is not numeric"
            )));
        }
        let url = self.url(&format!("api/invoices/{invoice_id}/line_items.xml"), &[])?;
        let what = format!("line items of invoice {invoice_id}");
        let fetched = self.get_xml(url, &what, request_id).await?;
        Ok(LineItems {
            items: parse_line_items(&fetched.body)?,
        })
    }

    /// All invoices of one target in the configured months (deduplicated by id, as
    /// listings shift when invoices are created while paging), line items resolved.
    pub async fn fetch(
        &self,
        target: &str,
        now: Timestamp,
        request_id: &str,
    ) -> Result<Vec<Invoice>, PollError> {
        let months: Vec<Option<String>> = match self.settings.months {
            Months::All => vec![None],
            Months::Last(n) => months_back(now, n).into_iter().map(Some).collect(),
        };
        let mut by_id: BTreeMap<String, Invoice> = BTreeMap::new();
        let mut order = Vec::new();
        for month in &months {
            for invoice in self
                .list_invoices(target, month.as_deref(), request_id)
                .await?
            {
                let id = invoice
                    .id
                    .clone()
                    .ok_or_else(|| PollError::malformed("an invoice has no <id>"))?;
                if let std::collections::btree_map::Entry::Vacant(slot) = by_id.entry(id) {
                    order.push(slot.key().clone());
                    slot.insert(invoice);
                }
            }
        }
        let mut invoices = Vec::with_capacity(order.len());
        for id in order {
            let Some(mut invoice) = by_id.remove(&id) else {
                continue;
            };
            if target != ALL_ACCOUNTS {
                let buyer = invoice.buyer.as_ref().and_then(|b| b.id.as_deref());
                if buyer != Some(target) {
                    return Err(PollError::malformed(format!(
                        "invoice {id} belongs to buyer {buyer:?}, not the requested account {target}"
                    )));
                }
            }
            if self.needs_line_items(&invoice) {
                tracing::debug!(invoice = %id, "Invoice embeds no line items; fetching them.");
                invoice.line_items = Some(self.line_items(&id, request_id).await?);
            }
            invoices.push(invoice);
        }
        Ok(invoices)
    }

    /// An invoice with a cost but no embedded line items (a listing that leaves them out).
    fn needs_line_items(&self, invoice: &Invoice) -> bool {
        let embedded = invoice
            .line_items
            .as_ref()
            .is_some_and(|l| !l.items.is_empty());
        let counted = invoice
            .state
            .as_deref()
            .and_then(classify_state)
            .is_some_and(|c| c != StateClass::Cancelled);
        let costs_something = invoice
            .cost_without_vat
            .or(invoice.cost)
            .is_some_and(|c| !c.is_zero());
        self.settings.fetch_missing_line_items && !embedded && counted && costs_something
    }

    /// One poll of one target with the retry policy around the whole read.
    pub async fn poll_account(
        &self,
        target: &str,
        now: Timestamp,
        request_id: &str,
    ) -> Result<Vec<Observation>, PollError> {
        let invoices = self
            .api
            .with_retries(|| self.fetch(target, now, request_id))
            .await?;
        map_invoices(&self.map, &invoices, now)
    }
}

impl BillingSource for ThreescaleClient {
    fn name(&self) -> &str {
        &self.settings.name
    }
    fn kind(&self) -> &'static str {
        "threescale"
    }
    fn targets(&self) -> Vec<String> {
        if self.settings.accounts.is_empty() {
            vec![ALL_ACCOUNTS.to_string()]
        } else {
            self.settings.accounts.clone()
        }
    }
    fn interval(&self) -> std::time::Duration {
        self.settings.interval
    }
    fn poll<'a>(&'a self, target: &'a str, now: Timestamp, request_id: &'a str) -> PollFuture<'a> {
        Box::pin(self.poll_account(target, now, request_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn status_table() {
        assert_eq!(
            classify(StatusCode::FORBIDDEN),
            RetryAction::Fail(PollErrorKind::Auth)
        );
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED),
            RetryAction::Fail(PollErrorKind::Auth)
        );
        assert_eq!(
            classify(StatusCode::NOT_FOUND),
            RetryAction::Fail(PollErrorKind::Client)
        );
        assert_eq!(
            classify(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            RetryAction::Fail(PollErrorKind::Client)
        );
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS),
            RetryAction::Retry(PollErrorKind::RateLimited)
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE),
            RetryAction::Retry(PollErrorKind::Server)
        );
    }

    #[test]
    fn only_xml_content_types_pass() {
        let fetched = |ct: Option<&'static str>, body: &str| {
            let mut headers = HeaderMap::new();
            if let Some(ct) = ct {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            }
            Fetched {
                status: StatusCode::OK,
                headers,
                body: body.as_bytes().to_vec(),
            }
        };
        for ok in [
            "application/xml",
            "application/xml; charset=utf-8",
            "text/xml",
            "Text/XML;charset=UTF-8",
        ] {
            assert!(
                require_xml(&fetched(Some(ok), "<invoices/>"), "x").is_ok(),
                "{ok}"
            );
        }
        for (ct, body) in [
            (Some("text/html; charset=utf-8"), "<html>Maintenance</html>"),
            (Some("text/plain"), "Unsupported Finance API version 2.0"),
            (Some("application/json"), r#"{"invoices":[]}"#),
            (None, "<invoices/>"),
        ] {
            let err = require_xml(&fetched(ct, body), "invoices").unwrap_err();
            assert_eq!(err.kind, PollErrorKind::NotJson, "{ct:?}");
        }
    }

    #[test]
    fn months_are_calendar_months_newest_first() {
        let now: Timestamp = "2026-01-15T10:00:00Z".parse().unwrap();
        assert_eq!(months_back(now, 3), ["2026-01", "2025-12", "2025-11"]);
        assert_eq!(months_back(now, 1), ["2026-01"]);
    }
}
