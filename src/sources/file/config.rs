//! `[sources.file]`: a CSV of traffic values.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::Checker;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub name: String,
    /// CSV with a header row `timestamp,value` or `timestamp,value,labels`; relative to the config file.
    pub path: String,
    /// Unit of the values, e.g. `requests`, `GB`.
    pub unit: String,
    /// Series name (the `series` label), default `traffic`.
    pub series: Option<String>,
    /// Account for rows whose labels name none.
    pub account: Option<String>,
    pub interval: Option<String>,
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct FileSettings {
    pub name: String,
    pub path: PathBuf,
    pub unit: String,
    pub series: String,
    pub account: Option<String>,
    pub interval: Duration,
    pub max_bytes: u64,
}

impl RawFile {
    pub fn validate(&self, path: &str, c: &mut Checker) -> FileSettings {
        c.name(&format!("{path}.name"), &self.name);
        if self.path.trim().is_empty() {
            c.error(format!("{path}.path"), "must not be empty");
        }
        if self.unit.trim().is_empty() {
            c.error(
                format!("{path}.unit"),
                "name the unit of the values, e.g. \"requests\"",
            );
        }
        let series = self.series.clone().unwrap_or_else(|| "traffic".into());
        c.name(&format!("{path}.series"), &series);
        FileSettings {
            name: self.name.clone(),
            path: c.base_dir.join(&self.path),
            unit: self.unit.clone(),
            series,
            account: self.account.clone(),
            interval: c.positive_duration(
                &format!("{path}.interval"),
                self.interval.as_deref(),
                Duration::from_secs(300),
            ),
            max_bytes: self.max_bytes.unwrap_or(64 * 1024 * 1024),
        }
    }
}
