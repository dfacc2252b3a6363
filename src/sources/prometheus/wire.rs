//! Prometheus HTTP API `query_range` responses, as documented
//! (<https://prometheus.io/docs/prometheus/latest/querying/api/>).

use std::collections::BTreeMap;

use serde::Deserialize;

/// `{"status": "success"|"error", "data": …, "errorType": …, "error": …, "warnings": […]}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub status: String,
    pub data: Option<RangeData>,
    pub error_type: Option<String>,
    pub error: Option<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeData {
    pub result_type: String,
    #[serde(default)]
    pub result: Vec<RangeSeries>,
}

#[derive(Debug, Deserialize)]
pub struct RangeSeries {
    #[serde(default)]
    pub metric: BTreeMap<String, String>,
    #[serde(default)]
    pub values: Vec<SamplePair>,
}

/// `[<unix seconds, float>, "<value as string>"]`; strings because JSON has no NaN/Inf.
#[derive(Debug, Deserialize)]
pub struct SamplePair(pub f64, pub String);
