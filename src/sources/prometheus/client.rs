//! `GET /api/v1/query_range` per configured query, over whole steps only.

use jiff::Timestamp;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION};

use super::config::{PrometheusSettings, QuerySettings};
use super::map::map_range;
use super::wire::Envelope;
use crate::model::Observation;
use crate::sources::http::{ApiClient, PollError, PollErrorKind, RetryAction, default_classify};
use crate::sources::{BillingSource, PollFuture};

pub struct PrometheusClient {
    settings: PrometheusSettings,
    api: ApiClient,
}

/// 400 (bad_data) and 422 (cannot execute) are the query's fault: no retry. 503 is a
/// timeout or overload: retry. Other statuses come from proxies in front of the API.
fn classify(status: StatusCode) -> RetryAction {
    match status.as_u16() {
        400 | 422 => RetryAction::Fail(PollErrorKind::Client),
        _ => default_classify(status),
    }
}

/// `[start, end]` of complete steps up to `now`: the last sample describes the step that
/// ended at or before `now`, never a step still in progress.
pub fn aligned_range(now: Timestamp, step_secs: i64, lookback_secs: i64) -> (i64, i64) {
    let end = now.as_second().div_euclid(step_secs) * step_secs;
    let start = end - (lookback_secs / step_secs).max(1) * step_secs + step_secs;
    (start, end)
}

impl PrometheusClient {
    pub fn new(settings: PrometheusSettings) -> Result<Self, PollError> {
        let api = ApiClient::new(settings.policy.clone())?;
        Ok(PrometheusClient { settings, api })
    }

    fn query_for(&self, target: &str) -> Result<&QuerySettings, PollError> {
        self.settings
            .queries
            .iter()
            .find(|q| q.name == target)
            .ok_or_else(|| {
                PollError::new(PollErrorKind::Client, format!("no query named {target:?}"))
            })
    }

    async fn fetch(
        &self,
        query: &QuerySettings,
        now: Timestamp,
        request_id: &str,
    ) -> Result<Vec<Observation>, PollError> {
        let step = self.settings.step.as_secs().max(1) as i64;
        let (start, end) = aligned_range(now, step, self.settings.lookback.as_secs() as i64);
        let url =
            self.settings.url.join("api/v1/query_range").map_err(|e| {
                PollError::new(PollErrorKind::Client, format!("Prometheus URL: {e}"))
            })?;
        // POST form: PromQL can be long, and the query stays out of proxy logs.
        let mut request = self
            .api
            .http()
            .post(url)
            .header(ACCEPT, "application/json")
            .header("X-Request-Id", request_id)
            .form(&[
                ("query", query.query.as_str()),
                ("start", &start.to_string()),
                ("end", &end.to_string()),
                ("step", &step.to_string()),
            ]);
        if let Some(token) = &self.settings.bearer_token {
            request = request.header(AUTHORIZATION, format!("Bearer {}", token.expose()));
        }
        // Error answers carry `errorType`/`error` in JSON; the shared layer quotes the body.
        let fetched = self
            .api
            .send_once(request, classify)
            .await
            .map_err(|e| e.into_poll_error())?;
        let envelope: Envelope = fetched.json("query_range")?;
        map_range(&self.settings.name, query, envelope)
    }
}

impl BillingSource for PrometheusClient {
    fn name(&self) -> &str {
        &self.settings.name
    }
    fn kind(&self) -> &'static str {
        "prometheus"
    }
    fn targets(&self) -> Vec<String> {
        self.settings
            .queries
            .iter()
            .map(|q| q.name.clone())
            .collect()
    }
    fn interval(&self) -> std::time::Duration {
        self.settings.interval
    }
    fn poll<'a>(&'a self, target: &'a str, now: Timestamp, request_id: &'a str) -> PollFuture<'a> {
        Box::pin(async move {
            let query = self.query_for(target)?;
            self.api
                .with_retries(|| self.fetch(query, now, request_id))
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_whole_steps_only() {
        let now: Timestamp = "2026-11-25T10:37:12Z".parse().unwrap();
        let (start, end) = aligned_range(now, 3600, 86_400);
        assert_eq!(
            Timestamp::from_second(end).unwrap(),
            "2026-11-25T10:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(end - start, 23 * 3600, "24 samples");
        assert_eq!(
            aligned_range(now, 3600, 1),
            (end, end),
            "at least the last complete step"
        );
    }
}
