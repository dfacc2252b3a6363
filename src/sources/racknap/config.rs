//! `[sources.racknap]`: API key, customers, the currency assumed for invoices without one,
//! endpoint and limits.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Checker, Secret, SecretRef, placeholder_url, with_trailing_slash};
use crate::model::Currency;
use crate::sources::http::HttpPolicy;

pub const DEFAULT_BASE_URL: &str = "https://api.racknap.com/v1/";
/// The documented invoice has no currency (REFERENCE.md §3, uncertain): this one applies to
/// invoices that carry no `currency` field, unless `currency` is configured.
pub const DEFAULT_CURRENCY: &str = "USD";
/// The target that lists every invoice of the reseller and groups them by `customerId`.
pub const ALL_CUSTOMERS: &str = "all";
/// The server's maximum `limit` is undocumented; the quick start asks for 10. We refuse
/// page sizes above this so a typo cannot ask for a million rows.
pub const MAX_PAGE_SIZE: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRacknap {
    pub name: String,
    pub api_key: SecretRef,
    /// Customer IDs (`cust_…`) polled one by one with `customerId=`; empty or absent: one
    /// target `all` that lists every invoice.
    #[serde(default)]
    pub customers: Vec<String>,
    /// ISO 4217 code for invoices without a `currency` field (default `USD`).
    pub currency: Option<String>,
    /// Invoice statuses that are not spend (e.g. `["VOID", "DRAFT"]`), compared
    /// case-insensitively. Only `PAID` is documented, so by default every invoice counts.
    #[serde(default)]
    pub ignore_statuses: Vec<String>,
    pub interval: Option<String>,
    pub base_url: Option<String>,
    /// `limit` per page.
    pub page_size: Option<u32>,
    pub max_pages: Option<u32>,
    pub timeout: Option<String>,
    pub max_retries: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct RacknapSettings {
    pub name: String,
    pub api_key: Secret,
    pub customers: Vec<String>,
    pub currency: Currency,
    /// Upper-cased.
    pub ignore_statuses: Vec<String>,
    pub interval: Duration,
    pub base_url: url::Url,
    pub page_size: u32,
    pub max_pages: u32,
    pub policy: HttpPolicy,
}

impl RacknapSettings {
    /// The configured customers, or the one `all` target.
    pub fn targets(&self) -> Vec<String> {
        if self.customers.is_empty() {
            vec![ALL_CUSTOMERS.to_string()]
        } else {
            self.customers.clone()
        }
    }
}

fn valid_customer_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
}

impl RawRacknap {
    pub fn validate(&self, path: &str, c: &mut Checker) -> RacknapSettings {
        c.name(&format!("{path}.name"), &self.name);
        let api_key = c.secret(&format!("{path}.api_key"), &self.api_key);
        let mut seen = std::collections::BTreeSet::new();
        for (i, id) in self.customers.iter().enumerate() {
            let at = format!("{path}.customers[{i}]");
            if id == ALL_CUSTOMERS {
                c.error(
                    at,
                    "\"all\" is the target used when no customers are listed; omit `customers` to poll every customer",
                );
            } else if !valid_customer_id(id) {
                c.error(
                    at,
                    format!("invalid customer ID {id:?} (e.g. \"cust_3d8f4a2b\")"),
                );
            } else if !seen.insert(id.as_str()) {
                c.error(at, format!("duplicate customer ID {id:?}"));
            }
        }
        let currency_text = self.currency.as_deref().unwrap_or(DEFAULT_CURRENCY);
        let currency = Currency::new(currency_text).unwrap_or_else(|e| {
            c.error(format!("{path}.currency"), e.to_string());
            Currency::new(DEFAULT_CURRENCY).unwrap_or_else(|_| unreachable!())
        });
        for (i, s) in self.ignore_statuses.iter().enumerate() {
            if s.trim().is_empty() {
                c.error(format!("{path}.ignore_statuses[{i}]"), "must not be empty");
            }
        }
        let interval = c.positive_duration(
            &format!("{path}.interval"),
            self.interval.as_deref(),
            // Invoices are issued once a period; a few polls a day notice a new one soon enough.
            Duration::from_secs(6 * 3600),
        );
        let base_url = c
            .url(
                &format!("{path}.base_url"),
                self.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
            )
            .map(with_trailing_slash);
        let page_size = self.page_size.unwrap_or(100);
        if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
            c.error(
                format!("{path}.page_size"),
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            );
        }
        let max_pages = self.max_pages.unwrap_or(100);
        if max_pages == 0 {
            c.error(format!("{path}.max_pages"), "must be at least 1");
        }
        let timeout = c.positive_duration(
            &format!("{path}.timeout"),
            self.timeout.as_deref(),
            Duration::from_secs(30),
        );
        RacknapSettings {
            name: self.name.clone(),
            api_key,
            customers: self.customers.clone(),
            currency,
            ignore_statuses: self
                .ignore_statuses
                .iter()
                .map(|s| s.trim().to_ascii_uppercase())
                .collect(),
            interval,
            base_url: base_url.unwrap_or_else(placeholder_url),
            page_size,
            max_pages,
            policy: policy(timeout, self.max_retries.unwrap_or(3) as usize),
        }
    }
}

/// RackNap allows 1000 requests a minute per account. Customers are polled concurrently
/// (4 at a time) through one client, so keep a few requests of the quota in reserve:
/// at or under this many remaining, the next request waits for `X-RateLimit-Reset`.
pub fn policy(timeout: Duration, max_retries: usize) -> HttpPolicy {
    HttpPolicy {
        timeout,
        max_retries,
        rate_limit_reserve: 5,
        ..HttpPolicy::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Validates `name`, an `api_key` read from a file, and `rest`.
    fn check(rest: &str) -> (RacknapSettings, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), "k\n").unwrap();
        let text = format!("name = \"rn\"\napi_key = {{ file = \"key\" }}\n{rest}");
        let raw: RawRacknap = toml::from_str(&text).unwrap();
        let mut c = Checker {
            base_dir: dir.path().to_path_buf(),
            ..Checker::default()
        };
        let s = raw.validate("sources[0].racknap", &mut c);
        (s, c.errors.into_iter().map(|e| e.path).collect())
    }

    #[test]
    fn defaults() {
        let (s, errors) = check("");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.api_key.expose(), "k");
        assert_eq!(s.targets(), vec!["all".to_string()]);
        assert_eq!(s.currency.as_str(), "USD");
        assert_eq!(s.base_url.as_str(), "https://api.racknap.com/v1/");
        assert_eq!((s.page_size, s.max_pages), (100, 100));
        assert_eq!(s.policy.rate_limit_reserve, 5);
    }

    #[test]
    fn every_bad_field_is_reported_with_its_path() {
        let (_, errors) = check(
            r#"customers = ["cust_1", "all", "bad id", "cust_1"]
currency = "usd"
ignore_statuses = [" "]
base_url = "ftp://x"
page_size = 0
max_pages = 0
"#,
        );
        for p in [
            "customers[1]",
            "customers[2]",
            "customers[3]",
            "currency",
            "ignore_statuses[0]",
            "base_url",
            "page_size",
            "max_pages",
        ] {
            let full = format!("sources[0].racknap.{p}");
            assert!(errors.contains(&full), "{full} missing from {errors:?}");
        }
    }
}
