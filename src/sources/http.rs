//! The HTTP policy every source shares: timeouts, a body-size limit, retries with jittered
//! exponential backoff (backon), `Retry-After`, and a request id for every poll.
//! A source supplies only its `classify` table (which statuses retry, re-authenticate or fail).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use backon::{ExponentialBuilder, Retryable};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};

/// Why a poll (or one attempt of it) failed. `as_str` is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PollErrorKind {
    Timeout,
    Connect,
    /// 5xx from the API.
    Server,
    /// 429, or 413 used for throttling.
    RateLimited,
    /// 401/403 that re-authentication did not fix.
    Auth,
    /// Another 4xx: the request is wrong, retrying will not help.
    Client,
    /// The body is not JSON (an HTML error page from a proxy, plain text).
    NotJson,
    /// JSON that does not match the documented shape.
    Malformed,
    /// Pagination did not terminate or went past the limits.
    Paging,
    BodyTooLarge,
    /// A local file could not be read.
    Io,
    /// Parts of one answer disagree (data updated while it was being read).
    Inconsistent,
}

impl PollErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PollErrorKind::Timeout => "timeout",
            PollErrorKind::Connect => "connect",
            PollErrorKind::Server => "http_5xx",
            PollErrorKind::RateLimited => "rate_limited",
            PollErrorKind::Auth => "auth",
            PollErrorKind::Client => "http_4xx",
            PollErrorKind::NotJson => "not_json",
            PollErrorKind::Malformed => "malformed",
            PollErrorKind::Paging => "paging",
            PollErrorKind::BodyTooLarge => "body_too_large",
            PollErrorKind::Io => "io",
            PollErrorKind::Inconsistent => "inconsistent",
        }
    }
}

impl fmt::Display for PollErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct PollError {
    pub kind: PollErrorKind,
    pub message: String,
    /// Wait requested by the server (`Retry-After`, rate-limit reset).
    pub retry_after: Option<Duration>,
}

impl PollError {
    pub fn new(kind: PollErrorKind, message: impl Into<String>) -> Self {
        PollError {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn malformed(message: impl Into<String>) -> Self {
        PollError::new(PollErrorKind::Malformed, message)
    }
    /// Worth another attempt within the same poll.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            PollErrorKind::Timeout
                | PollErrorKind::Connect
                | PollErrorKind::Server
                | PollErrorKind::RateLimited
                | PollErrorKind::NotJson
                | PollErrorKind::Inconsistent
        )
    }
}

/// What one API's status table says about a non-success response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAction {
    Retry(PollErrorKind),
    Reauthenticate,
    Fail(PollErrorKind),
}

/// The default table: 429/413 throttle, 408 and 5xx retry, 401/403 auth, other 4xx fail.
pub fn default_classify(status: StatusCode) -> RetryAction {
    match status.as_u16() {
        401 => RetryAction::Reauthenticate,
        403 => RetryAction::Fail(PollErrorKind::Auth),
        408 => RetryAction::Retry(PollErrorKind::Timeout),
        413 | 429 => RetryAction::Retry(PollErrorKind::RateLimited),
        500..=599 => RetryAction::Retry(PollErrorKind::Server),
        _ => RetryAction::Fail(PollErrorKind::Client),
    }
}

#[derive(Debug, Clone)]
pub struct HttpPolicy {
    pub timeout: Duration,
    /// Extra attempts after the first, within one poll.
    pub max_retries: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest server-requested wait honoured inside one poll; longer ones fail the poll
    /// and the next interval retries.
    pub max_retry_after: Duration,
    pub max_body_bytes: usize,
    /// Client-side pacing: at least this long between two requests (e.g. SAKURA's 5/s).
    pub min_interval: Duration,
    /// When `X-RateLimit-Remaining` drops to this or below, wait for `X-RateLimit-Reset`
    /// before the next request instead of running into a 429.
    pub rate_limit_reserve: u64,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        HttpPolicy {
            timeout: Duration::from_secs(30),
            max_retries: 3,
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(60),
            max_body_bytes: 16 * 1024 * 1024,
            min_interval: Duration::ZERO,
            rate_limit_reserve: 1,
        }
    }
}

/// A response whose body has been read within the size limit.
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Fetched {
    /// Refuses bodies that are not JSON before parsing them (HTML pages from proxies, text faults).
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, PollError> {
        let content_type = self
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.contains("json") {
            return Err(PollError::new(
                PollErrorKind::NotJson,
                format!(
                    "{what}: expected JSON, got Content-Type {content_type:?} ({})",
                    snippet(&self.body)
                ),
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| PollError::malformed(format!("{what}: {e}")))
    }
}

/// The start of a body for error messages, on one line.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        "empty body".to_string()
    } else {
        format!("body starts {one_line:?}")
    }
}

/// A random id attached to every log line of one poll, and sent as `X-Request-Id`.
pub fn new_request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The replica id of this process, when it is one of several (see [`identify_replica`]).
static REPLICA: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names this process's replica in the `User-Agent` of every billing API request, so the
/// provider's logs (and the simulator) show which replica polled. Set once, before the
/// sources are built; later calls are ignored.
pub fn identify_replica(replica: &str) {
    let _ = REPLICA.set(replica.to_string());
}

/// `spendwatch/0.1.0`, or `spendwatch/0.1.0 (replica r1)` in a cluster.
pub fn user_agent() -> String {
    let product = concat!("spendwatch/", env!("CARGO_PKG_VERSION"));
    match REPLICA.get() {
        Some(replica) => format!("{product} (replica {replica})"),
        None => product.to_string(),
    }
}

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    policy: HttpPolicy,
    /// Earliest instant the next request may go out (pacing and rate-limit headers).
    next_allowed: Arc<Mutex<Option<Instant>>>,
}

impl ApiClient {
    pub fn new(policy: HttpPolicy) -> Result<Self, PollError> {
        crate::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout.min(Duration::from_secs(10)))
            .user_agent(user_agent())
            .build()
            .map_err(|e| {
                PollError::new(PollErrorKind::Connect, format!("building HTTP client: {e}"))
            })?;
        Ok(ApiClient {
            http,
            policy,
            next_allowed: Arc::new(Mutex::new(None)),
        })
    }

    /// Waits until the pacing and the last rate-limit headers allow another request.
    async fn pace(&self) {
        let mut next = self.next_allowed.lock().await;
        if let Some(at) = *next {
            tokio::time::sleep_until(at.into()).await;
        }
        *next = (!self.policy.min_interval.is_zero())
            .then(|| Instant::now() + self.policy.min_interval);
    }

    /// After a response: nearly out of quota → hold further requests until the reset.
    async fn observe_limits(&self, headers: &HeaderMap) {
        let Some(remaining) = header_u64(headers, "x-ratelimit-remaining") else {
            return;
        };
        if remaining > self.policy.rate_limit_reserve {
            return;
        }
        if let Some(wait) = rate_limit_reset(headers) {
            let wait = wait.min(self.policy.max_retry_after);
            tracing::info!(remaining, wait = ?wait, "Rate limit nearly used up; slowing down until it resets.");
            let until = Instant::now() + wait;
            let mut next = self.next_allowed.lock().await;
            *next = Some(next.map_or(until, |n| n.max(until)));
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    /// Sends once: reads the body within the size limit and maps non-success statuses
    /// through `classify`. `Reauthenticate` comes back as an `Auth` error flagged for the caller.
    pub async fn send_once(
        &self,
        request: reqwest::RequestBuilder,
        classify: fn(StatusCode) -> RetryAction,
    ) -> Result<Fetched, AttemptError> {
        let fetched = self.send_once_any_status(request).await?;
        if fetched.status.is_success() {
            return Ok(fetched);
        }
        let message = format!("HTTP {}: {}", fetched.status, snippet(&fetched.body));
        match classify(fetched.status) {
            RetryAction::Reauthenticate => Err(AttemptError::Unauthorized(message)),
            RetryAction::Retry(kind) | RetryAction::Fail(kind) => {
                let mut err = PollError::new(kind, message);
                err.retry_after = wait_for(kind, &fetched.headers);
                Err(AttemptError::Failed(err))
            }
        }
    }

    /// Like [`ApiClient::send_once`] (pacing, rate-limit headers, body-size limit), but a
    /// non-success status comes back as a `Fetched` too, for APIs whose error bodies carry
    /// what the error message must report (RackNap's `meta.requestId`). The caller maps the
    /// status through its `classify` and takes the wait from [`retry_after`].
    pub async fn send_once_any_status(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Fetched, AttemptError> {
        self.pace().await;
        let mut response = request.send().await.map_err(AttemptError::from_reqwest)?;
        let status = response.status();
        let headers = response.headers().clone();
        self.observe_limits(&headers).await;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(AttemptError::from_reqwest)? {
            if body.len() + chunk.len() > self.policy.max_body_bytes {
                return Err(AttemptError::Failed(PollError::new(
                    PollErrorKind::BodyTooLarge,
                    format!("response body exceeds {} bytes", self.policy.max_body_bytes),
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            status,
            headers,
            body,
        })
    }

    /// Runs `attempt` with the retry policy: transient errors back off with jitter,
    /// `Retry-After` is honoured up to `max_retry_after`, the rest fail at once.
    /// Every retried attempt is logged (inside the poll's span, so with its request id).
    pub async fn with_retries<T, F, Fut>(&self, attempt: F) -> Result<T, PollError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, PollError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.policy.min_backoff)
            .with_max_delay(self.policy.max_backoff)
            .with_max_times(self.policy.max_retries);
        let max_wait = self.policy.max_retry_after;
        attempt
            .retry(backoff)
            .when(|e: &PollError| e.is_transient() && e.retry_after.is_none_or(|d| d <= max_wait))
            .adjust(|e: &PollError, planned| match (planned, e.retry_after) {
                (Some(p), Some(asked)) => Some(p.max(asked)),
                (planned, _) => planned,
            })
            .notify(|e: &PollError, wait| {
                tracing::warn!(kind = %e.kind, error = %e.message, retry_in = ?wait, "Request failed; retrying.");
            })
            .await
    }
}

/// One attempt's failure: either a plain error or a 401 the caller may fix by re-authenticating.
#[derive(Debug)]
pub enum AttemptError {
    Unauthorized(String),
    Failed(PollError),
}

impl AttemptError {
    fn from_reqwest(e: reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            PollErrorKind::Timeout
        } else if e.is_connect() {
            PollErrorKind::Connect
        } else if e.is_body() || e.is_decode() {
            PollErrorKind::Malformed
        } else {
            PollErrorKind::Connect
        };
        // Without the URL: a query string may carry a token (3scale's `access_token`).
        AttemptError::Failed(PollError::new(kind, error_chain(&e.without_url())))
    }

    pub fn into_poll_error(self) -> PollError {
        match self {
            AttemptError::Unauthorized(m) => PollError::new(PollErrorKind::Auth, m),
            AttemptError::Failed(e) => e,
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Time until `X-RateLimit-Reset` (Unix seconds), if the header is there.
pub fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    let reset = header_u64(headers, "x-ratelimit-reset")?;
    let reset = jiff::Timestamp::from_second(i64::try_from(reset).ok()?).ok()?;
    Some(Duration::try_from(reset.duration_since(jiff::Timestamp::now())).unwrap_or(Duration::ZERO))
}

/// How long the server asks us to wait: `Retry-After` (seconds or an HTTP date), else
/// `X-RateLimit-Reset`.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_header(headers).or_else(|| rate_limit_reset(headers))
}

/// The wait before retrying an error of `kind`: `Retry-After` whenever given, and
/// `X-RateLimit-Reset` only for throttling — APIs that send the reset on every response
/// would otherwise make a 503 wait for the whole quota window.
pub fn wait_for(kind: PollErrorKind, headers: &HeaderMap) -> Option<Duration> {
    if kind == PollErrorKind::RateLimited {
        retry_after(headers)
    } else {
        retry_after_header(headers)
    }
}

fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = when.duration_since(jiff::Timestamp::now());
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn rate_limit_reset_is_a_unix_time() {
        let mut h = HeaderMap::new();
        let reset = jiff::Timestamp::now().as_second() + 30;
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&reset.to_string()).unwrap(),
        );
        let wait = retry_after(&h).unwrap();
        assert!(
            wait > Duration::from_secs(28) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(
            retry_after(&h),
            Some(Duration::from_secs(3)),
            "Retry-After wins"
        );
    }

    #[tokio::test]
    async fn nearly_exhausted_quota_holds_the_next_request() {
        let client = ApiClient::new(HttpPolicy::default()).unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("1"));
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&(jiff::Timestamp::now().as_second() + 2).to_string()).unwrap(),
        );
        client.observe_limits(&h).await;
        let held = client.next_allowed.lock().await.unwrap();
        assert!(
            held > Instant::now() + Duration::from_millis(500),
            "the next request waits for the reset"
        );
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("500"));
        let other = ApiClient::new(HttpPolicy::default()).unwrap();
        other.observe_limits(&h).await;
        assert!(
            other.next_allowed.lock().await.is_none(),
            "plenty of quota: no wait"
        );
    }

    #[test]
    fn default_table() {
        assert_eq!(
            default_classify(StatusCode::UNAUTHORIZED),
            RetryAction::Reauthenticate
        );
        assert_eq!(
            default_classify(StatusCode::TOO_MANY_REQUESTS),
            RetryAction::Retry(PollErrorKind::RateLimited)
        );
        assert_eq!(
            default_classify(StatusCode::BAD_GATEWAY),
            RetryAction::Retry(PollErrorKind::Server)
        );
        assert_eq!(
            default_classify(StatusCode::NOT_FOUND),
            RetryAction::Fail(PollErrorKind::Client)
        );
    }

    #[test]
    fn html_is_not_json() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
        let f = Fetched {
            status: StatusCode::OK,
            headers,
            body: b"<html><body>Bad gateway</body></html>".to_vec(),
        };
        let err = f
            .json::<serde_json::Value>("estimated charges")
            .unwrap_err();
        assert_eq!(err.kind, PollErrorKind::NotJson);
        assert!(err.message.contains("<html>"), "{}", err.message);
    }
}
