//! `[sources.sakura]`: one API key (= one account), the API root, how many closed months
//! to re-read, whether to read the CSV statement, and limits.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Checker, Secret, SecretRef, placeholder_url, with_trailing_slash};
use crate::sources::http::HttpPolicy;

/// The API root; auth-status is under `cloud/1.1/`, billing under `system/1.0/`. Billing is
/// per account whatever the zone, so any zone gives the same answers.
pub const DEFAULT_BASE_URL: &str = "https://secure.sakura.ad.jp/cloud/zone/is1a/api/";
/// SAKURA's clients pace themselves at 5 requests/s (api-client-go's default).
pub const MIN_REQUEST_INTERVAL: Duration = Duration::from_millis(200);
pub const DEFAULT_MONTHS: u32 = 3;
/// Bills are kept for years, but each month costs two requests per poll.
pub const MAX_MONTHS: u32 = 36;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSakura {
    pub name: String,
    pub access_token: SecretRef,
    pub access_token_secret: SecretRef,
    /// The API root, e.g. `https://secure.sakura.ad.jp/cloud/zone/is1a/api/`.
    pub base_url: Option<String>,
    pub interval: Option<String>,
    /// Closed months re-read on every poll (their confirmed amounts can still change early on).
    pub months: Option<u32>,
    /// Read the CSV statement for product names, the month of use and price/tax apart.
    pub fetch_csv: Option<bool>,
    pub timeout: Option<String>,
    pub max_retries: Option<u32>,
    /// Client-side pacing between requests (default 200 ms: 5/s, as SAKURA's own clients do;
    /// the server-side limit is undocumented).
    pub request_interval: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SakuraSettings {
    pub name: String,
    pub access_token: Secret,
    pub access_token_secret: Secret,
    pub base_url: url::Url,
    pub interval: Duration,
    pub months: u32,
    pub fetch_csv: bool,
    pub policy: HttpPolicy,
}

impl RawSakura {
    pub fn validate(&self, path: &str, c: &mut Checker) -> SakuraSettings {
        c.name(&format!("{path}.name"), &self.name);
        let access_token = c.secret(&format!("{path}.access_token"), &self.access_token);
        let access_token_secret = c.secret(
            &format!("{path}.access_token_secret"),
            &self.access_token_secret,
        );
        let interval = c.positive_duration(
            &format!("{path}.interval"),
            self.interval.as_deref(),
            Duration::from_secs(3600),
        );
        let base_url = c
            .url(
                &format!("{path}.base_url"),
                self.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
            )
            .map(with_trailing_slash);
        let months = self.months.unwrap_or(DEFAULT_MONTHS);
        if months > MAX_MONTHS {
            c.error(
                format!("{path}.months"),
                format!("must be between 0 and {MAX_MONTHS} (closed months re-read each poll)"),
            );
        }
        let timeout = c.positive_duration(
            &format!("{path}.timeout"),
            self.timeout.as_deref(),
            Duration::from_secs(30),
        );
        SakuraSettings {
            name: self.name.clone(),
            access_token,
            access_token_secret,
            base_url: base_url.unwrap_or_else(placeholder_url),
            interval,
            months: months.min(MAX_MONTHS),
            fetch_csv: self.fetch_csv.unwrap_or(true),
            policy: HttpPolicy {
                timeout,
                max_retries: self.max_retries.unwrap_or(3) as usize,
                min_interval: c.duration(
                    &format!("{path}.request_interval"),
                    self.request_interval.as_deref(),
                    MIN_REQUEST_INTERVAL,
                ),
                ..HttpPolicy::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SourceSettings, parse_raw, validate};
    use std::path::Path;

    /// Through the whole config path (`parse_raw` + `validate`), as `spendwatch check` does.
    fn check(fields: &str) -> Result<SakuraSettings, Vec<String>> {
        let text = format!("[[sources]]\n[sources.sakura]\n{fields}");
        let raw = parse_raw(&text).map_err(|e| vec![e.to_string()])?;
        let config = validate(raw, Path::new("/tmp"))
            .map_err(|errs| errs.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        match config.sources.into_iter().next() {
            Some(SourceSettings::Sakura(s)) => Ok(s),
            other => panic!("expected a sakura source, got {other:?}"),
        }
    }

    const KEYS: &str =
        "access_token = { env = \"PATH\" }\naccess_token_secret = { env = \"PATH\" }\n";

    #[test]
    fn defaults() {
        let s = check(&format!("name = \"sakura\"\n{KEYS}")).unwrap();
        assert_eq!(s.base_url.as_str(), DEFAULT_BASE_URL);
        assert_eq!(s.interval, Duration::from_secs(3600));
        assert_eq!(s.months, 3);
        assert!(s.fetch_csv);
        assert_eq!(s.policy.min_interval, Duration::from_millis(200));
        assert_eq!(s.policy.max_retries, 3);
        assert_eq!(s.policy.timeout, Duration::from_secs(30));
        let path = std::env::var("PATH").unwrap();
        assert!(!format!("{s:?}").contains(&path), "secrets print as ***");
    }

    #[test]
    fn bad_fields_have_paths() {
        let errors = check(
            r#"
name = "sa kura"
access_token = { env = "SPENDWATCH_TEST_UNSET_VARIABLE" }
access_token_secret = { env = "PATH" }
base_url = "ftp://example.com"
months = 99
interval = "0s"
"#,
        )
        .unwrap_err();
        for path in ["name", "access_token", "base_url", "months", "interval"] {
            let want = format!("sources[0].sakura.{path}");
            assert!(
                errors.iter().any(|e| e.starts_with(&want)),
                "{want}: {errors:?}"
            );
        }
        let errors = check(
            "name = \"s\"\naccess_token = \"pasted-in-secret\"\naccess_token_secret = { env = \"PATH\" }\n",
        )
        .unwrap_err();
        assert!(!errors.concat().contains("pasted-in-secret"), "{errors:?}");
        let errors = check(&format!("name = \"s\"\n{KEYS}zone = \"is1a\"\n")).unwrap_err();
        assert!(
            errors.concat().contains("zone"),
            "unknown fields are refused: {errors:?}"
        );
    }

    #[test]
    fn all_fields_and_a_trailing_slash() {
        let s = check(&format!(
            "name = \"s\"\n{KEYS}base_url = \"https://secure.sakura.ad.jp/cloud/zone/tk1v/api\"\n\
             interval = \"30m\"\nmonths = 0\nfetch_csv = false\ntimeout = \"5s\"\nmax_retries = 1\n"
        ))
        .unwrap();
        assert_eq!(
            s.base_url.as_str(),
            "https://secure.sakura.ad.jp/cloud/zone/tk1v/api/"
        );
        assert_eq!(s.interval, Duration::from_secs(1800));
        assert_eq!(s.months, 0);
        assert!(!s.fetch_csv);
        assert_eq!(s.policy.timeout, Duration::from_secs(5));
        assert_eq!(s.policy.max_retries, 1);
    }
}
