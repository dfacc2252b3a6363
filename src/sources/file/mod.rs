//! Traffic from a CSV file: `timestamp,value[,labels]`, re-read at every poll, so late or
//! corrected rows update the points they describe.

pub mod config;
pub mod map;

use jiff::Timestamp;

use crate::sources::http::{PollError, PollErrorKind};
use crate::sources::{BillingSource, PollFuture};
use config::FileSettings;

pub struct FileSource {
    settings: FileSettings,
}

impl FileSource {
    pub fn new(settings: FileSettings) -> Self {
        FileSource { settings }
    }

    async fn read(&self) -> Result<Vec<crate::model::Observation>, PollError> {
        let path = &self.settings.path;
        let io = |e: std::io::Error| {
            PollError::new(PollErrorKind::Io, format!("{}: {e}", path.display()))
        };
        let size = tokio::fs::metadata(path).await.map_err(io)?.len();
        if size > self.settings.max_bytes {
            return Err(PollError::new(
                PollErrorKind::BodyTooLarge,
                format!(
                    "{}: {size} bytes exceeds the {} byte limit",
                    path.display(),
                    self.settings.max_bytes
                ),
            ));
        }
        let bytes = tokio::fs::read(path).await.map_err(io)?;
        map::parse_csv(&self.settings, &bytes)
    }
}

impl BillingSource for FileSource {
    fn name(&self) -> &str {
        &self.settings.name
    }
    fn kind(&self) -> &'static str {
        "file"
    }
    fn targets(&self) -> Vec<String> {
        vec![self.settings.series.clone()]
    }
    fn interval(&self) -> std::time::Duration {
        self.settings.interval
    }
    fn poll<'a>(
        &'a self,
        _target: &'a str,
        _now: Timestamp,
        _request_id: &'a str,
    ) -> PollFuture<'a> {
        Box::pin(self.read())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn source(path: std::path::PathBuf, max_bytes: u64) -> FileSource {
        FileSource::new(FileSettings {
            name: "file".into(),
            path,
            unit: "requests".into(),
            series: "requests".into(),
            account: Some("all".into()),
            interval: Duration::from_secs(60),
            max_bytes,
        })
    }

    #[tokio::test]
    async fn rereads_the_file_and_reports_io_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "timestamp,value\n2026-11-24T10:00:00Z,3\n").unwrap();
        let s = source(path.clone(), 1024);
        assert_eq!(
            s.poll("requests", Timestamp::now(), "t")
                .await
                .unwrap()
                .len(),
            1
        );
        std::fs::write(
            &path,
            "timestamp,value\n2026-11-24T10:00:00Z,4\n2026-11-24T11:00:00Z,5\n",
        )
        .unwrap();
        let obs = s.poll("requests", Timestamp::now(), "t").await.unwrap();
        assert_eq!(obs.len(), 2, "late rows are picked up");
        assert_eq!(
            obs[0].value,
            rust_decimal::Decimal::from(4),
            "a corrected row replaces"
        );
        let small = source(path.clone(), 10);
        assert_eq!(
            small
                .poll("requests", Timestamp::now(), "t")
                .await
                .unwrap_err()
                .kind,
            PollErrorKind::BodyTooLarge
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            s.poll("requests", Timestamp::now(), "t")
                .await
                .unwrap_err()
                .kind,
            PollErrorKind::Io
        );
    }
}
