//! `[sources.prometheus]`: traffic from any PromQL over `/api/v1/query_range`.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Checker, Secret, SecretRef};
use crate::sources::http::HttpPolicy;

/// Prometheus refuses more points per series than this (400 "exceeded maximum resolution").
pub const MAX_POINTS_PER_SERIES: u64 = 11_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrometheus {
    pub name: String,
    /// Base URL of the Prometheus server, e.g. `http://prometheus:9090/`.
    pub url: String,
    pub queries: Vec<RawQuery>,
    /// Resolution and window: each value describes one whole step ending at its timestamp.
    pub step: Option<String>,
    /// How far back each poll reads (late samples for recent windows are picked up again).
    pub lookback: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub max_retries: Option<u32>,
    /// Optional `Authorization: Bearer` token for a protected Prometheus.
    pub bearer_token: Option<SecretRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuery {
    /// Series name used in the `series` label and by rules, e.g. `requests`.
    pub name: String,
    /// PromQL; should yield the traffic of one step per sample, e.g.
    /// `sum by (account) (increase(http_requests_total[1h]))` with `step = "1h"`.
    pub query: String,
    /// Unit of the values, e.g. `requests`, `GB`.
    pub unit: String,
    /// Result label naming the account (default `account`).
    pub account_label: Option<String>,
    /// Account for results without that label.
    pub account: Option<String>,
}

#[derive(Debug, Clone)]
pub struct QuerySettings {
    pub name: String,
    pub query: String,
    pub unit: String,
    pub account_label: String,
    pub account: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PrometheusSettings {
    pub name: String,
    pub url: url::Url,
    pub queries: Vec<QuerySettings>,
    pub step: Duration,
    pub lookback: Duration,
    pub interval: Duration,
    pub bearer_token: Option<Secret>,
    pub policy: HttpPolicy,
}

impl RawPrometheus {
    pub fn validate(&self, path: &str, c: &mut Checker) -> PrometheusSettings {
        c.name(&format!("{path}.name"), &self.name);
        let url = c
            .url(&format!("{path}.url"), &self.url)
            .map(crate::config::with_trailing_slash);
        let step = c.positive_duration(
            &format!("{path}.step"),
            self.step.as_deref(),
            Duration::from_secs(3600),
        );
        let lookback = c.positive_duration(
            &format!("{path}.lookback"),
            self.lookback.as_deref(),
            Duration::from_secs(86_400),
        );
        if lookback < step {
            c.error(format!("{path}.lookback"), "must be at least one step");
        } else if lookback.as_secs() / step.as_secs().max(1) > MAX_POINTS_PER_SERIES {
            c.error(
                format!("{path}.lookback"),
                format!("lookback / step exceeds Prometheus's {MAX_POINTS_PER_SERIES} points per series; raise step or shorten lookback"),
            );
        }
        if step.subsec_nanos() != 0 {
            c.error(format!("{path}.step"), "must be whole seconds");
        }
        if self.queries.is_empty() {
            c.error(format!("{path}.queries"), "list at least one query, e.g. [{ name = \"requests\", query = \"...\", unit = \"requests\" }]");
        }
        let mut names = std::collections::BTreeSet::new();
        let mut queries = Vec::new();
        for (i, q) in self.queries.iter().enumerate() {
            let qpath = format!("{path}.queries[{i}]");
            c.name(&format!("{qpath}.name"), &q.name);
            if !names.insert(q.name.clone()) {
                c.error(
                    format!("{qpath}.name"),
                    format!("duplicate query name {:?}", q.name),
                );
            }
            if q.query.trim().is_empty() {
                c.error(format!("{qpath}.query"), "must not be empty");
            }
            if q.unit.trim().is_empty() {
                c.error(
                    format!("{qpath}.unit"),
                    "name the unit of the values, e.g. \"requests\" or \"GB\"",
                );
            }
            queries.push(QuerySettings {
                name: q.name.clone(),
                query: q.query.clone(),
                unit: q.unit.clone(),
                account_label: q.account_label.clone().unwrap_or_else(|| "account".into()),
                account: q.account.clone(),
            });
        }
        let bearer_token = self
            .bearer_token
            .as_ref()
            .map(|s| c.secret(&format!("{path}.bearer_token"), s));
        let timeout = c.positive_duration(
            &format!("{path}.timeout"),
            self.timeout.as_deref(),
            Duration::from_secs(30),
        );
        PrometheusSettings {
            name: self.name.clone(),
            url: url.unwrap_or_else(crate::config::placeholder_url),
            queries,
            step,
            lookback,
            interval: c.positive_duration(
                &format!("{path}.interval"),
                self.interval.as_deref(),
                Duration::from_secs(300),
            ),
            bearer_token,
            policy: HttpPolicy {
                timeout,
                max_retries: self.max_retries.unwrap_or(3) as usize,
                ..HttpPolicy::default()
            },
        }
    }
}
