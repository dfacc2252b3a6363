//! Billing sources. Each API is one folder (client, wire, map, config); the HTTP policy
//! lives once in `http.rs`; this module builds a source from its settings and runs one
//! poll of one account with logging and metrics around it.

pub mod amount;
pub mod http;
pub mod rackspace;

use std::time::Instant;

use jiff::Timestamp;
use tracing::Instrument;

use crate::config::SourceSettings;
use crate::metrics::Metrics;
use crate::model::Observation;
pub use http::{PollError, PollErrorKind};

pub enum Source {
    Rackspace(rackspace::RackspaceClient),
}

/// One poll of one account.
#[derive(Debug)]
pub struct PollResult {
    pub source: String,
    pub account: String,
    pub request_id: String,
    pub result: Result<Vec<Observation>, PollError>,
    pub seconds: f64,
}

impl Source {
    pub fn build(settings: &SourceSettings) -> Result<Source, PollError> {
        match settings {
            SourceSettings::Rackspace(s) => Ok(Source::Rackspace(rackspace::RackspaceClient::new(
                s.clone(),
            )?)),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Source::Rackspace(c) => &c.settings().name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Source::Rackspace(_) => "rackspace",
        }
    }

    pub fn accounts(&self) -> &[String] {
        match self {
            Source::Rackspace(c) => &c.settings().accounts,
        }
    }

    /// Polls one account, observing the data as of `at`. Failures are logged with the
    /// poll's request id and counted by reason; they never produce observations.
    pub async fn poll_account(
        &self,
        account: &str,
        at: Timestamp,
        metrics: &Metrics,
    ) -> PollResult {
        let request_id = http::new_request_id();
        let span = tracing::info_span!("poll", source = self.name(), kind = self.kind(), account, request_id = %request_id);
        let started = Instant::now();
        let result = async {
            let on_error = |e: &PollError| {
                tracing::warn!(reason = %e.kind, error = %e.message, "Poll attempt failed.");
            };
            let result = match self {
                Source::Rackspace(c) => c.poll_account(account, at, &request_id, on_error).await,
            };
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
            Ok(_) => metrics.poll_succeeded(self.name(), seconds, Timestamp::now()),
            Err(e) => metrics.poll_failed(self.name(), e.kind.as_str(), seconds),
        }
        PollResult {
            source: self.name().to_string(),
            account: account.to_string(),
            request_id,
            result,
            seconds,
        }
    }
}
