//! `[sources.rackspace]`: credentials, billing accounts (RANs), endpoints and limits.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Checker, Secret, SecretRef, placeholder_url, with_trailing_slash};
use crate::sources::http::HttpPolicy;

/// Identity v2.0 (US). UK accounts were documented with `https://lon.identity.api.rackspacecloud.com/v2.0/`.
pub const DEFAULT_IDENTITY_URL: &str = "https://identity.api.rackspacecloud.com/v2.0/";
/// Billing v2 is not regionalized.
pub const DEFAULT_BILLING_URL: &str = "https://billing.api.rackspacecloud.com/v2/";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRackspace {
    pub name: String,
    pub username: String,
    pub api_key: SecretRef,
    /// Billing account numbers (RAN), e.g. `020-1234567`.
    pub accounts: Vec<String>,
    pub interval: Option<String>,
    pub identity_url: Option<String>,
    pub billing_url: Option<String>,
    /// `limit` per page (server maximum 200).
    pub page_size: Option<u32>,
    pub max_pages: Option<u32>,
    pub timeout: Option<String>,
    pub max_retries: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct RackspaceSettings {
    pub name: String,
    pub username: String,
    pub api_key: Secret,
    pub accounts: Vec<String>,
    pub interval: Duration,
    pub identity_url: url::Url,
    pub billing_url: url::Url,
    pub page_size: u32,
    pub max_pages: u32,
    pub policy: HttpPolicy,
}

impl RawRackspace {
    pub fn validate(&self, path: &str, c: &mut Checker) -> RackspaceSettings {
        c.name(&format!("{path}.name"), &self.name);
        if self.username.trim().is_empty() {
            c.error(format!("{path}.username"), "must not be empty");
        }
        if self.accounts.is_empty() {
            c.error(
                format!("{path}.accounts"),
                "list at least one billing account number (RAN), e.g. [\"020-1234567\"]",
            );
        }
        for (i, ran) in self.accounts.iter().enumerate() {
            let ok = !ran.is_empty()
                && ran
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-');
            if !ok {
                c.error(
                    format!("{path}.accounts[{i}]"),
                    format!("invalid account number {ran:?}"),
                );
            }
        }
        let api_key = c.secret(&format!("{path}.api_key"), &self.api_key);
        let interval = c.positive_duration(
            &format!("{path}.interval"),
            self.interval.as_deref(),
            Duration::from_secs(3600),
        );
        let identity_url = c
            .url(
                &format!("{path}.identity_url"),
                self.identity_url.as_deref().unwrap_or(DEFAULT_IDENTITY_URL),
            )
            .map(with_trailing_slash);
        let billing_url = c
            .url(
                &format!("{path}.billing_url"),
                self.billing_url.as_deref().unwrap_or(DEFAULT_BILLING_URL),
            )
            .map(with_trailing_slash);
        let page_size = self.page_size.unwrap_or(100);
        if !(1..=200).contains(&page_size) {
            c.error(
                format!("{path}.page_size"),
                "must be between 1 and 200 (the API's maximum)",
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
        RackspaceSettings {
            name: self.name.clone(),
            username: self.username.clone(),
            api_key,
            accounts: self.accounts.clone(),
            interval,
            identity_url: identity_url.unwrap_or_else(placeholder_url),
            billing_url: billing_url.unwrap_or_else(placeholder_url),
            page_size,
            max_pages,
            policy: HttpPolicy {
                timeout,
                max_retries: self.max_retries.unwrap_or(3) as usize,
                ..HttpPolicy::default()
            },
        }
    }
}
