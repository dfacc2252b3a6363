//! Billing and traffic sources. Each API is one folder (config, client, wire, map); the HTTP
//! policy lives once in `http.rs`. A source implements [`BillingSource`]; [`build`] is the one
//! place that knows every kind; [`poll_target`] runs one poll with logging and metrics.

pub mod amount;
pub mod file;
pub mod http;
pub mod prometheus;
pub mod racknap;
pub mod rackspace;
pub mod sakura;
#[cfg(test)]
pub mod testkit;
pub mod threescale;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tracing::Instrument;

use crate::config::SourceSettings;
use crate::metrics::Metrics;
use crate::model::Observation;
pub use http::{PollError, PollErrorKind};

pub type PollFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Observation>, PollError>> + Send + 'a>>;

/// One configured billing or traffic API.
pub trait BillingSource: Send + Sync {
    /// The configured name: the `source` label of series and metrics.
    fn name(&self) -> &str;
    /// The API kind (`rackspace`, `sakura`, ...).
    fn kind(&self) -> &'static str;
    /// Units polled independently (billing accounts, customers, queries): one failing
    /// never stops the others. Used as the `account` label of poll errors.
    fn targets(&self) -> Vec<String>;
    fn interval(&self) -> Duration;
    /// Targets of this source polled at the same time.
    fn concurrency(&self) -> usize {
        4
    }
    /// One complete poll of one target (paging and retries included), observing data as of
    /// `now` on the pipeline's clock. Errors never come with partial observations.
    fn poll<'a>(&'a self, target: &'a str, now: Timestamp, request_id: &'a str) -> PollFuture<'a>;
}

/// The one place that knows every source kind.
pub fn build(settings: &SourceSettings) -> Result<Arc<dyn BillingSource>, PollError> {
    Ok(match settings {
        SourceSettings::Rackspace(s) => Arc::new(rackspace::RackspaceClient::new(s.clone())?),
        SourceSettings::Prometheus(s) => Arc::new(prometheus::PrometheusClient::new(s.clone())?),
        SourceSettings::File(s) => Arc::new(file::FileSource::new(s.clone())),
        SourceSettings::Threescale(s) => Arc::new(threescale::ThreescaleClient::new(s.clone())?),
        SourceSettings::Sakura(s) => Arc::new(sakura::SakuraClient::new(s.clone())?),
        SourceSettings::Racknap(s) => Arc::new(racknap::RacknapClient::new(s.clone())?),
    })
}

/// One poll of one target.
#[derive(Debug)]
pub struct PollResult {
    pub source: String,
    pub target: String,
    pub request_id: String,
    pub result: Result<Vec<Observation>, PollError>,
    pub seconds: f64,
}

/// Polls one target. Failures are logged with the poll's request id and counted by reason;
/// they never produce observations.
pub async fn poll_target(
    source: &dyn BillingSource,
    target: &str,
    now: Timestamp,
    metrics: &Metrics,
) -> PollResult {
    let request_id = http::new_request_id();
    let span = tracing::info_span!("poll", source = source.name(), kind = source.kind(), account = target, request_id = %request_id);
    let started = Instant::now();
    let result = async {
        let result = source.poll(target, now, &request_id).await;
        match &result {
            Ok(obs) => tracing::debug!(observations = obs.len(), "Poll succeeded."),
            Err(e) => tracing::warn!(reason = %e.kind, error = %e.message, "Poll failed."),
        }
        result
    }
    .instrument(span)
    .await;
    let seconds = started.elapsed().as_secs_f64();
    match &result {
        Ok(_) => metrics.poll_succeeded(source.name(), target, seconds, Timestamp::now()),
        Err(e) => metrics.poll_failed(source.name(), target, e.kind.as_str(), seconds),
    }
    PollResult {
        source: source.name().to_string(),
        target: target.to_string(),
        request_id,
        result,
        seconds,
    }
}
