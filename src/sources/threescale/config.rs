//! `[sources.threescale]`: the provider's admin portal, its access token, which buyer
//! accounts and months to read, paging and limits.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{Checker, Secret, SecretRef, placeholder_url, with_trailing_slash};
use crate::sources::http::HttpPolicy;

/// porta's pagination filter: default 20; values outside 1..=500 silently fall back to 20
/// (ActiveDocs says "default and max is 20", the code accepts up to 500).
pub const DEFAULT_PER_PAGE: u32 = 20;
pub const MAX_PER_PAGE: u32 = 500;
/// The open month plus the two before it: the months whose invoices still change
/// (open → finalized → pending → paid).
pub const DEFAULT_MONTHS: u32 = 3;
/// Line items carry no unit; 3scale's default metric is `hits`. Uncertain for other
/// metrics, hence `usage_unit` and `metric_units` in the config.
pub const DEFAULT_USAGE_UNIT: &str = "hits";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThreescale {
    pub name: String,
    /// The admin portal, e.g. `https://acme-admin.3scale.net/`.
    pub base_url: String,
    pub access_token: SecretRef,
    /// `basic` (default: HTTP Basic, the token never sits in a URL) or `query`
    /// (`access_token=` as ActiveDocs documents it).
    pub auth: Option<String>,
    pub per_page: Option<u32>,
    /// How many months to read back (the current one included), or `"all"`.
    pub months: Option<RawMonths>,
    /// Buyer account IDs; all buyers of the provider when absent.
    pub accounts: Option<Vec<String>>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub max_retries: Option<u32>,
    pub max_pages: Option<u32>,
    /// Unit of variable-cost usage (default `hits`).
    pub usage_unit: Option<String>,
    /// Unit per metric ID, for variable costs on metrics other than hits.
    pub metric_units: Option<BTreeMap<String, String>>,
    /// Fetch `/api/invoices/{id}/line_items.xml` when an invoice with a non-zero cost
    /// embeds no line items (default true).
    pub fetch_missing_line_items: Option<bool>,
}

/// `months = 3` or `months = "all"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawMonths {
    Count(i64),
    Word(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// `Authorization: Basic base64(":<token>")`, as 3scale-api-ruby sends it.
    Basic,
    /// `?access_token=<token>`.
    Query,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Months {
    /// The current month and the `n - 1` before it, one `month=YYYY-MM` listing each.
    Last(u32),
    /// No month filter.
    All,
}

#[derive(Debug, Clone)]
pub struct ThreescaleSettings {
    pub name: String,
    pub base_url: url::Url,
    pub access_token: Secret,
    pub auth: AuthMode,
    pub per_page: u32,
    pub months: Months,
    /// Empty: one target, `all`, read through `/api/invoices.xml`.
    pub accounts: Vec<String>,
    pub interval: Duration,
    pub max_pages: u32,
    pub usage_unit: String,
    pub metric_units: BTreeMap<String, String>,
    pub fetch_missing_line_items: bool,
    pub policy: HttpPolicy,
}

fn is_id(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

impl RawThreescale {
    pub fn validate(&self, path: &str, c: &mut Checker) -> ThreescaleSettings {
        c.name(&format!("{path}.name"), &self.name);
        let base_url = c
            .url(&format!("{path}.base_url"), &self.base_url)
            .map(with_trailing_slash);
        if let Some(u) = &base_url
            && (u.query().is_some() || u.fragment().is_some() || !u.username().is_empty())
        {
            // A token pasted into the URL would end up in logs; it belongs in access_token.
            c.error(
                format!("{path}.base_url"),
                "must be a plain admin portal URL without query, fragment or user, e.g. \"https://acme-admin.3scale.net/\"",
            );
        }
        let access_token = c.secret(&format!("{path}.access_token"), &self.access_token);
        let auth = match self.auth.as_deref() {
            None | Some("basic") => AuthMode::Basic,
            Some("query") => AuthMode::Query,
            Some(other) => {
                c.error(
                    format!("{path}.auth"),
                    format!("unknown auth {other:?}: use \"basic\" or \"query\""),
                );
                AuthMode::Basic
            }
        };
        let per_page = self.per_page.unwrap_or(DEFAULT_PER_PAGE);
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            c.error(
                format!("{path}.per_page"),
                format!(
                    "must be between 1 and {MAX_PER_PAGE} (the API falls back to 20 outside it)"
                ),
            );
        }
        let months = match &self.months {
            None => Months::Last(DEFAULT_MONTHS),
            Some(RawMonths::Count(n)) if (1..=120).contains(n) => {
                Months::Last(u32::try_from(*n).unwrap_or(DEFAULT_MONTHS))
            }
            Some(RawMonths::Word(w)) if w == "all" => Months::All,
            Some(_) => {
                c.error(
                    format!("{path}.months"),
                    "must be a number of months between 1 and 120 (the current one included) or \"all\"",
                );
                Months::Last(DEFAULT_MONTHS)
            }
        };
        let accounts = self.accounts.clone().unwrap_or_default();
        if self.accounts.as_ref().is_some_and(|a| a.is_empty()) {
            c.error(
                format!("{path}.accounts"),
                "list at least one buyer account ID, or leave accounts out to read all buyers",
            );
        }
        for (i, id) in accounts.iter().enumerate() {
            if !is_id(id) {
                c.error(
                    format!("{path}.accounts[{i}]"),
                    format!(
                        "invalid buyer account ID {id:?}: expected digits, e.g. \"2445582535\""
                    ),
                );
            } else if accounts[..i].contains(id) {
                c.error(
                    format!("{path}.accounts[{i}]"),
                    format!("duplicate account {id:?}"),
                );
            }
        }
        let interval = c.positive_duration(
            &format!("{path}.interval"),
            self.interval.as_deref(),
            Duration::from_secs(3600),
        );
        let timeout = c.positive_duration(
            &format!("{path}.timeout"),
            self.timeout.as_deref(),
            Duration::from_secs(30),
        );
        let max_pages = self.max_pages.unwrap_or(100);
        if max_pages == 0 {
            c.error(format!("{path}.max_pages"), "must be at least 1");
        }
        let usage_unit = self
            .usage_unit
            .clone()
            .unwrap_or_else(|| DEFAULT_USAGE_UNIT.to_string());
        if usage_unit.trim().is_empty() {
            c.error(format!("{path}.usage_unit"), "must not be empty");
        }
        let metric_units = self.metric_units.clone().unwrap_or_default();
        for (metric, unit) in &metric_units {
            if !is_id(metric) {
                c.error(
                    format!("{path}.metric_units.{metric}"),
                    "keys are metric IDs (digits)",
                );
            }
            if unit.trim().is_empty() {
                c.error(
                    format!("{path}.metric_units.{metric}"),
                    "unit must not be empty",
                );
            }
        }
        ThreescaleSettings {
            name: self.name.clone(),
            base_url: base_url.unwrap_or_else(placeholder_url),
            access_token,
            auth,
            per_page,
            months,
            accounts,
            interval,
            max_pages,
            usage_unit,
            metric_units,
            fetch_missing_line_items: self.fetch_missing_line_items.unwrap_or(true),
            policy: HttpPolicy {
                timeout,
                max_retries: self.max_retries.unwrap_or(3) as usize,
                ..HttpPolicy::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str) -> (Option<ThreescaleSettings>, Vec<String>) {
        let raw: RawThreescale = match toml::from_str(toml_text) {
            Ok(r) => r,
            Err(e) => return (None, vec![format!("parse: {e}")]),
        };
        let mut c = Checker::default();
        let s = raw.validate("sources[0].threescale", &mut c);
        (Some(s), c.errors.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn defaults() {
        let (s, errs) = check(
            r#"name = "3s"
base_url = "https://acme-admin.3scale.net"
access_token = { env = "PATH" }"#,
        );
        assert!(errs.is_empty(), "{errs:?}");
        let s = s.unwrap();
        assert_eq!(s.base_url.as_str(), "https://acme-admin.3scale.net/");
        assert_eq!(s.auth, AuthMode::Basic);
        assert_eq!(s.per_page, 20);
        assert_eq!(s.months, Months::Last(3));
        assert!(s.accounts.is_empty());
        assert_eq!(s.usage_unit, "hits");
        assert!(s.fetch_missing_line_items);
    }

    #[test]
    fn every_bad_field_is_reported() {
        let (_, errs) = check(
            r#"name = "3s"
base_url = "https://acme-admin.3scale.net/?access_token=abc"
access_token = { env = "PATH" }
auth = "header"
per_page = 501
months = "some"
accounts = ["12", "x1", "12"]
metric_units = { hits = "" }"#,
        );
        for field in [
            "base_url",
            "auth",
            "per_page",
            "months",
            "accounts[1]",
            "accounts[2]",
            "metric_units.hits",
        ] {
            assert!(
                errs.iter()
                    .any(|e| e.starts_with(&format!("sources[0].threescale.{field}"))),
                "{field}: {errs:?}"
            );
        }
        assert!(
            !errs.iter().any(|e| e.contains("abc")),
            "the URL's token is not echoed: {errs:?}"
        );
    }

    #[test]
    fn months_all_and_query_auth() {
        let (s, errs) = check(
            r#"name = "3s"
base_url = "https://acme-admin.3scale.net/"
access_token = { env = "PATH" }
auth = "query"
months = "all"
per_page = 500
accounts = ["2445582535"]"#,
        );
        assert!(errs.is_empty(), "{errs:?}");
        let s = s.unwrap();
        assert_eq!(
            (s.auth, s.months, s.per_page),
            (AuthMode::Query, Months::All, 500)
        );
        let (_, errs) = check(
            r#"name = "3s"
base_url = "https://a/"
access_token = { env = "PATH" }
months = 0
accounts = []"#,
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
    }
}
