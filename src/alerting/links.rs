//! Links that go with every notification, so on-call lands on the right page from the message:
//! the alert's own page and its silence form on spendwatch, the Grafana panel, and the billing
//! console of the alert's source. URL templates come from `[links]` in the config.

use std::collections::BTreeMap;

use crate::config::LinksConfig;
use crate::model::{AlertRecord, Link};

/// Builds the links of an alert from the configured templates.
#[derive(Debug, Clone, Default)]
pub struct LinkBuilder {
    config: LinksConfig,
}

impl LinkBuilder {
    pub fn new(config: LinksConfig) -> Self {
        LinkBuilder { config }
    }

    /// Alert page, silence form, dashboard and console, each only when configured. A template
    /// that renders to something that is not a URL is left out (and was refused by `check`).
    pub fn for_alert(&self, alert: &AlertRecord) -> Vec<Link> {
        let mut links = Vec::new();
        if let Some(base) = &self.config.external_url {
            let page = format!(
                "{}/alerts/{}",
                base.as_str().trim_end_matches('/'),
                alert.fingerprint
            );
            links.push(Link {
                title: "alert".into(),
                url: page.clone(),
            });
            links.push(Link {
                title: "silence".into(),
                url: format!("{page}#silence"),
            });
        }
        let context = template_context(alert);
        if let Some(url) = self
            .config
            .dashboard
            .as_deref()
            .and_then(|t| render_url(t, &context))
        {
            links.push(Link {
                title: "dashboard".into(),
                url,
            });
        }
        if let Some(url) = alert
            .labels
            .get("source")
            .and_then(|s| self.config.console.get(s))
            .and_then(|t| render_url(t, &context))
        {
            links.push(Link {
                title: "console".into(),
                url,
            });
        }
        links
    }
}

/// What a link template may use: every label of the alert plus `fingerprint` and `rule`.
fn template_context(alert: &AlertRecord) -> BTreeMap<String, String> {
    let mut context: BTreeMap<String, String> = alert
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    context.insert("fingerprint".into(), alert.fingerprint.clone());
    context.insert("rule".into(), alert.rule.clone());
    context
}

/// Renders a template with values URL-encoded (an account name with a space or `&` must not
/// break the query string), then checks the result is a URL.
pub fn render_url(template: &str, context: &BTreeMap<String, String>) -> Option<String> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let encoded: BTreeMap<&str, String> = context
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                url::form_urlencoded::byte_serialize(v.as_bytes()).collect(),
            )
        })
        .collect();
    let text = env.render_str(template, encoded).ok()?;
    url::Url::parse(&text).ok().map(|u| u.to_string())
}

/// For `spendwatch check`: the template compiles and renders to a URL for a typical alert.
pub fn check_template(template: &str) -> Result<(), String> {
    let sample = BTreeMap::from([
        ("account".to_string(), "020-1234567".to_string()),
        ("alertname".to_string(), "monthly-budget".to_string()),
        ("source".to_string(), "rackspace".to_string()),
        ("severity".to_string(), "critical".to_string()),
        ("currency".to_string(), "USD".to_string()),
        ("fingerprint".to_string(), "0123456789abcdef".to_string()),
        ("rule".to_string(), "monthly-budget".to_string()),
    ]);
    let env = minijinja::Environment::new();
    env.template_from_str(template)
        .map_err(|e| format!("template does not compile: {e}"))?;
    render_url(template, &sample)
        .map(|_| ())
        .ok_or_else(|| "does not render to a URL for an alert with account, alertname, source, severity, currency, fingerprint and rule".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlertState, Severity};

    fn alert() -> AlertRecord {
        AlertRecord {
            fingerprint: "e3d6a586f9014a3d".into(),
            rule: "monthly-budget".into(),
            labels: BTreeMap::from([
                ("account".to_string(), "acme & co".to_string()),
                ("source".to_string(), "rackspace".to_string()),
            ]),
            annotations: BTreeMap::new(),
            severity: Severity::Critical,
            state: AlertState::Firing,
            active_at: None,
            fired_at: None,
            resolved_at: None,
            keep_firing_since: None,
            value: String::new(),
            threshold: String::new(),
            summary: String::new(),
            seq: 1,
            contributors: Vec::new(),
        }
    }

    #[test]
    fn every_configured_link_in_order_with_encoded_values() {
        let links = LinkBuilder::new(LinksConfig {
            external_url: Some(url::Url::parse("https://sw.example.com/base/").unwrap()),
            dashboard: Some(
                "https://grafana.example.com/d/spendwatch-overview?var-account={{ account }}"
                    .into(),
            ),
            console: BTreeMap::from([(
                "rackspace".to_string(),
                "https://portal.example.com/accounts/{{ account }}/billing".to_string(),
            )]),
        })
        .for_alert(&alert());
        let pairs: Vec<(&str, &str)> = links
            .iter()
            .map(|l| (l.title.as_str(), l.url.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                (
                    "alert",
                    "https://sw.example.com/base/alerts/e3d6a586f9014a3d"
                ),
                (
                    "silence",
                    "https://sw.example.com/base/alerts/e3d6a586f9014a3d#silence"
                ),
                (
                    "dashboard",
                    "https://grafana.example.com/d/spendwatch-overview?var-account=acme+%26+co"
                ),
                (
                    "console",
                    "https://portal.example.com/accounts/acme+%26+co/billing"
                ),
            ]
        );
    }

    #[test]
    fn nothing_configured_means_no_links_and_bad_templates_are_refused() {
        assert!(LinkBuilder::default().for_alert(&alert()).is_empty());
        assert!(check_template("https://g.example.com/?a={{ account }}").is_ok());
        assert!(check_template("https://g.example.com/?a={{ account").is_err());
        assert!(check_template("{{ account }}").is_err(), "not a URL");
        assert!(
            check_template("https://g.example.com/?a={{ team }}").is_err(),
            "unknown"
        );
    }
}
