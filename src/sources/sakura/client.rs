//! The SAKURA billing client: Basic auth with the API key, the account and member resolved
//! once from auth-status, bill lists per year, and details (+ CSV statement) per bill.

use jiff::Timestamp;
use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use super::config::SakuraSettings;
use super::map::{BillData, Identity, UsageMonth, Window, identity, map_bills};
use super::wire::{
    ApiErrorBody, AuthStatus, Bill, BillDetail, BillDetailsResponse, BillsResponse,
    StatementCsvResponse, StatementRow, parse_statement_csv,
};
use crate::model::Observation;
use crate::sources::http::{
    ApiClient, Fetched, PollError, PollErrorKind, RetryAction, default_classify,
};
use crate::sources::{BillingSource, PollFuture};

/// One API key is one account: the single target of a SAKURA source.
pub const TARGET: &str = "self";

/// auth-status lives with the resource API, not the billing one.
const AUTH_STATUS_PATH: &str = "cloud/1.1/auth-status";
const BILLING_PREFIX: &str = "system/1.0/";

/// URL paths, in one place. libsacloud and iaas-api-go format the account ID, bill ID, year
/// and month with `%d`: no zero padding (month `6`, account `526782`). **Uncertain** whether
/// padded forms are accepted too; these are the forms the official clients send.
mod paths {
    use super::*;

    /// A numeric ID as `%d` prints it: digits only, leading zeros dropped.
    pub fn numeric(id: &str, what: &str) -> Result<String, PollError> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PollError::malformed(format!(
                "{what} {id:?} is not a numeric ID"
            )));
        }
        let trimmed = id.trim_start_matches('0');
        Ok(if trimmed.is_empty() { "0" } else { trimmed }.to_string())
    }

    /// The member code goes into the path verbatim (e.g. `xxx000001`).
    fn member(code: &str) -> Result<&str, PollError> {
        if code.is_empty()
            || !code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(PollError::malformed(format!(
                "unexpected member code {code:?}"
            )));
        }
        Ok(code)
    }

    pub fn auth_status() -> String {
        AUTH_STATUS_PATH.to_string()
    }

    pub fn bills_of_year(account_id: &str, year: i16) -> Result<String, PollError> {
        Ok(format!(
            "{BILLING_PREFIX}bill/by-contract/{}/{year}",
            numeric(account_id, "account ID")?
        ))
    }

    pub fn bill_details(member_code: &str, bill_id: &str) -> Result<String, PollError> {
        Ok(format!(
            "{BILLING_PREFIX}billdetail/{}/{}",
            member(member_code)?,
            numeric(bill_id, "bill ID")?
        ))
    }

    pub fn bill_csv(member_code: &str, bill_id: &str) -> Result<String, PollError> {
        Ok(format!("{}/csv", bill_details(member_code, bill_id)?))
    }
}

/// SAKURA's table: 401/403 are a bad or under-privileged key (no tokens to refresh); 423
/// (Locked) and 503 are retried as iaas-api-go does; 429 and other 5xx as everywhere.
pub fn classify(status: StatusCode) -> RetryAction {
    match status.as_u16() {
        401 | 403 => RetryAction::Fail(PollErrorKind::Auth),
        423 => RetryAction::Retry(PollErrorKind::Server),
        _ => default_classify(status),
    }
}

/// Decodes a JSON body; when it is not the expected shape but an iaas-api-go error document,
/// says so with the API's code and message.
fn decode<T: DeserializeOwned>(fetched: &Fetched, what: &str) -> Result<T, PollError> {
    fetched
        .json::<T>(what)
        .map_err(|e| match (e.kind, ApiErrorBody::parse(&fetched.body)) {
            (PollErrorKind::Malformed, Some(api)) => {
                PollError::malformed(format!("{what}: API error {}", api.describe()))
            }
            _ => e,
        })
}

fn check_ok(is_ok: Option<bool>, what: &str) -> Result<(), PollError> {
    if is_ok == Some(false) {
        return Err(PollError::malformed(format!("{what}: is_ok is false")));
    }
    Ok(())
}

/// **Uncertain** whether these lists ever page (no paging parameters are documented). A
/// `Total` (iaas-api-go's envelope) beyond what came back means a partial list: refused
/// rather than read as complete.
fn check_complete(total: Option<u64>, got: usize, what: &str) -> Result<(), PollError> {
    match total {
        Some(total) if total > got as u64 => Err(PollError::new(
            PollErrorKind::Paging,
            format!("{what} is partial: Total {total}, {got} returned"),
        )),
        _ => Ok(()),
    }
}

pub struct SakuraClient {
    settings: SakuraSettings,
    api: ApiClient,
    identity: Mutex<Option<Identity>>,
}

impl SakuraClient {
    pub fn new(settings: SakuraSettings) -> Result<Self, PollError> {
        let api = ApiClient::new(settings.policy.clone())?;
        Ok(SakuraClient {
            settings,
            api,
            identity: Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &SakuraSettings {
        &self.settings
    }

    fn url(&self, path: &str) -> Result<url::Url, PollError> {
        self.settings
            .base_url
            .join(path)
            .map_err(|e| PollError::new(PollErrorKind::Client, format!("base URL: {e}")))
    }

    /// One GET with the key; `X-Sakura-Bigint-As-Int` asks for integer IDs (we accept both).
    async fn get(&self, path: &str, request_id: &str) -> Result<Fetched, PollError> {
        let request = self
            .api
            .http()
            .get(self.url(path)?)
            .basic_auth(
                self.settings.access_token.expose(),
                Some(self.settings.access_token_secret.expose()),
            )
            .header(ACCEPT, "application/json")
            .header("X-Sakura-Bigint-As-Int", "1")
            .header("X-Request-Id", request_id);
        self.api
            .send_once(request, classify)
            .await
            .map_err(|e| e.into_poll_error())
    }

    /// The key's account and member, resolved once and cached.
    pub async fn identity(&self, request_id: &str) -> Result<Identity, PollError> {
        let mut cached = self.identity.lock().await;
        if let Some(id) = cached.as_ref() {
            return Ok(id.clone());
        }
        let fetched = self.get(&paths::auth_status(), request_id).await?;
        let status: AuthStatus = decode(&fetched, "auth-status")?;
        let id = identity(&status)?;
        tracing::info!(account = %id.account_id, "Resolved the SAKURA account of the API key.");
        *cached = Some(id.clone());
        Ok(id)
    }

    /// Bills dated in `year` (the bill `Date`, not the usage month).
    pub async fn bills_of_year(
        &self,
        id: &Identity,
        year: i16,
        request_id: &str,
    ) -> Result<(Vec<Bill>, Option<Timestamp>), PollError> {
        let path = paths::bills_of_year(&id.account_id, year)?;
        let fetched = self.get(&path, request_id).await?;
        let list: BillsResponse = decode(&fetched, "bill list")?;
        check_ok(list.is_ok, "bill list")?;
        check_complete(
            list.total,
            list.bills.len(),
            &format!("bill list for {year}"),
        )?;
        let server_time = list.responsed_at.as_deref().and_then(|t| t.parse().ok());
        Ok((list.bills, server_time))
    }

    pub async fn bill_details(
        &self,
        id: &Identity,
        bill_id: &str,
        request_id: &str,
    ) -> Result<Vec<BillDetail>, PollError> {
        let path = paths::bill_details(&id.member_code, bill_id)?;
        let fetched = self.get(&path, request_id).await?;
        let details: BillDetailsResponse = decode(&fetched, "bill details")?;
        check_ok(details.is_ok, "bill details")?;
        check_complete(
            details.total,
            details.bill_details.len(),
            &format!("bill details of {bill_id}"),
        )?;
        Ok(details.bill_details)
    }

    pub async fn statement(
        &self,
        id: &Identity,
        bill_id: &str,
        request_id: &str,
    ) -> Result<Vec<StatementRow>, PollError> {
        let path = paths::bill_csv(&id.member_code, bill_id)?;
        let fetched = self.get(&path, request_id).await?;
        let csv: StatementCsvResponse = decode(&fetched, "CSV statement")?;
        check_ok(csv.is_ok, "CSV statement")?;
        parse_statement_csv(&csv.body)
            .map_err(|e| PollError::new(e.kind, format!("bill {bill_id}: {}", e.message)))
    }

    /// Everything one poll needs, fetched: bills of the window's years (newest first),
    /// then details and statement of each bill in the window.
    async fn fetch(
        &self,
        window: &Window,
        request_id: &str,
    ) -> Result<(Identity, Vec<BillData>, Option<Timestamp>), PollError> {
        let id = self.identity(request_id).await?;
        let mut seen = std::collections::BTreeSet::new();
        let mut bills = Vec::new();
        let mut server_time = None;
        for year in window.bill_years()? {
            let (listed, responded) = self.bills_of_year(&id, year, request_id).await?;
            server_time = server_time.or(responded);
            for bill in listed {
                if !seen.insert(bill.bill_id.clone()) {
                    continue;
                }
                // The date rule selects; the CSV may still correct the month afterwards.
                if window.contains(UsageMonth::of_bill_date(&bill.date)?) {
                    bills.push(bill);
                }
            }
        }
        let mut data = Vec::with_capacity(bills.len());
        for bill in bills {
            let bill_id = bill.bill_id.as_str().to_string();
            let details = self.bill_details(&id, &bill_id, request_id).await?;
            let statement = if self.settings.fetch_csv {
                Some(self.statement(&id, &bill_id, request_id).await?)
            } else {
                None
            };
            data.push(BillData {
                bill,
                details,
                statement,
            });
        }
        Ok((id, data, server_time))
    }

    /// One poll as of `now` (the pipeline's clock), with the retry policy around it. An auth
    /// failure forgets the cached identity, so a key fixed in the control panel is re-checked.
    pub async fn poll_account(
        &self,
        now: Timestamp,
        request_id: &str,
    ) -> Result<Vec<Observation>, PollError> {
        let window = Window::new(now, self.settings.months)?;
        let result = self
            .api
            .with_retries(|| self.fetch(&window, request_id))
            .await;
        let (id, data, server_time) = match result {
            Ok(r) => r,
            Err(e) => {
                if e.kind == PollErrorKind::Auth {
                    *self.identity.lock().await = None;
                }
                return Err(e);
            }
        };
        // The data is as of the server's day (`ResponsedAt`), which a slow poll or a skewed
        // clock may put after ours: stamp it with the server's, not the poll's, time.
        let window = match server_time {
            Some(t) => Window::new(t, self.settings.months)?,
            None => window,
        };
        map_bills(&self.settings.name, &id.account_id, &window, &data)
    }
}

impl BillingSource for SakuraClient {
    fn name(&self) -> &str {
        &self.settings.name
    }
    fn kind(&self) -> &'static str {
        "sakura"
    }
    fn targets(&self) -> Vec<String> {
        vec![TARGET.to_string()]
    }
    fn interval(&self) -> std::time::Duration {
        self.settings.interval
    }
    fn concurrency(&self) -> usize {
        1
    }
    fn poll<'a>(&'a self, _target: &'a str, now: Timestamp, request_id: &'a str) -> PollFuture<'a> {
        Box::pin(self.poll_account(now, request_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_use_percent_d_formatting() {
        assert_eq!(
            paths::bills_of_year("000000526782", 2016).unwrap(),
            "system/1.0/bill/by-contract/526782/2016"
        );
        assert_eq!(
            paths::bill_details("xxx000001", "013481639").unwrap(),
            "system/1.0/billdetail/xxx000001/13481639"
        );
        assert_eq!(
            paths::bill_csv("xxx000001", "13481639").unwrap(),
            "system/1.0/billdetail/xxx000001/13481639/csv"
        );
        assert_eq!(paths::numeric("0000", "x").unwrap(), "0");
        assert!(paths::numeric("12a", "x").is_err());
        assert!(paths::bill_details("../x", "1").is_err());
        assert_eq!(paths::auth_status(), "cloud/1.1/auth-status");
    }

    #[test]
    fn a_partial_list_is_a_paging_error() {
        assert!(
            check_complete(None, 2, "bills").is_ok(),
            "the manual shows no Total"
        );
        assert!(check_complete(Some(2), 2, "bills").is_ok());
        let err = check_complete(Some(12), 2, "bills").unwrap_err();
        assert_eq!(err.kind, PollErrorKind::Paging);
        assert!(err.message.contains("Total 12"), "{err}");
    }

    #[test]
    fn retry_table() {
        let c = |s: u16| classify(StatusCode::from_u16(s).unwrap());
        assert_eq!(c(401), RetryAction::Fail(PollErrorKind::Auth));
        assert_eq!(c(403), RetryAction::Fail(PollErrorKind::Auth));
        assert_eq!(c(423), RetryAction::Retry(PollErrorKind::Server));
        assert_eq!(c(503), RetryAction::Retry(PollErrorKind::Server));
        assert_eq!(c(500), RetryAction::Retry(PollErrorKind::Server));
        assert_eq!(c(429), RetryAction::Retry(PollErrorKind::RateLimited));
        assert_eq!(c(404), RetryAction::Fail(PollErrorKind::Client));
    }

    #[test]
    fn error_documents_explain_a_wrong_shape() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        let fetched = Fetched {
            status: StatusCode::OK,
            headers,
            body: br#"{"is_fatal":true,"serial":"s1","status":"500 Internal Server Error","error_code":"unknown","error_msg":"unexpected"}"#.to_vec(),
        };
        let err = decode::<BillsResponse>(&fetched, "bill list").unwrap_err();
        assert_eq!(err.kind, PollErrorKind::Malformed);
        assert!(
            err.message.contains("unknown: unexpected"),
            "{}",
            err.message
        );
    }
}
