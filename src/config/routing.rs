//! `[route]`, `[[inhibit_rules]]` and `[api]`: where notifications go, what mutes them, and
//! who may change silences.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

use super::{Checker, Secret, SecretRef, is_label_name};
use crate::alerting::inhibit::InhibitRule;
use crate::alerting::matcher::Matcher;
use crate::alerting::route::{
    DEFAULT_GROUP_BY, DEFAULT_GROUP_INTERVAL, DEFAULT_GROUP_WAIT, DEFAULT_REPEAT_INTERVAL, GroupBy,
    Route, Routes,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub receiver: Option<String>,
    /// `label="value"`, `label!="value"`, `label=~"regex"`, `label!~"regex"`.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Keep matching later siblings after this route matched.
    #[serde(rename = "continue", default)]
    pub continue_matching: bool,
    /// Label names, or `["..."]` for every label.
    pub group_by: Option<Vec<String>>,
    pub group_wait: Option<String>,
    pub group_interval: Option<String>,
    pub repeat_interval: Option<String>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInhibitRule {
    pub source_matchers: Vec<String>,
    pub target_matchers: Vec<String>,
    #[serde(default)]
    pub equal: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// Bearer token that the silence write endpoints require; without it they answer 403.
    pub token: Option<SecretRef>,
}

/// What a node passes down to its children.
struct Inherited {
    receiver: Option<String>,
    group_by: GroupBy,
    group_wait: Duration,
    group_interval: Duration,
    repeat_interval: Duration,
}

/// The validated tree; without `[route]`, every receiver gets every alert.
pub fn validate_route(
    raw: Option<&RawRoute>,
    receiver_names: &BTreeSet<String>,
    receivers_in_order: &[String],
    c: &mut Checker,
) -> Routes {
    let Some(raw) = raw else {
        return Routes::default_for(receivers_in_order);
    };
    if raw.receiver.is_none() {
        c.error(
            "route.receiver",
            "the root route needs a receiver, e.g. receiver = \"ops\"",
        );
    }
    if !raw.matchers.is_empty() {
        c.error(
            "route.matchers",
            "the root route matches every alert; put matchers on its child routes",
        );
    }
    if raw.continue_matching {
        c.error("route.continue", "the root route cannot continue");
    }
    let top = Inherited {
        receiver: None,
        group_by: GroupBy::Labels(DEFAULT_GROUP_BY.iter().map(|s| s.to_string()).collect()),
        group_wait: DEFAULT_GROUP_WAIT,
        group_interval: DEFAULT_GROUP_INTERVAL,
        repeat_interval: DEFAULT_REPEAT_INTERVAL,
    };
    Routes::new(route_node(raw, "route", &top, receiver_names, c))
}

fn route_node(
    raw: &RawRoute,
    path: &str,
    parent: &Inherited,
    receiver_names: &BTreeSet<String>,
    c: &mut Checker,
) -> Route {
    let receiver = raw.receiver.clone().or_else(|| parent.receiver.clone());
    if let Some(name) = &raw.receiver
        && !receiver_names.contains(name)
    {
        let known: Vec<&str> = receiver_names.iter().map(String::as_str).collect();
        c.error(
            format!("{path}.receiver"),
            format!(
                "no receiver named {name:?} (configured: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        );
    }
    let matchers = matchers(&raw.matchers, &format!("{path}.matchers"), c);
    let group_by = match &raw.group_by {
        None => parent.group_by.clone(),
        Some(names) => group_by(names, &format!("{path}.group_by"), c),
    };
    let group_wait = c.duration(
        &format!("{path}.group_wait"),
        raw.group_wait.as_deref(),
        parent.group_wait,
    );
    let group_interval = c.positive_duration(
        &format!("{path}.group_interval"),
        raw.group_interval.as_deref(),
        parent.group_interval,
    );
    let repeat_interval = c.positive_duration(
        &format!("{path}.repeat_interval"),
        raw.repeat_interval.as_deref(),
        parent.repeat_interval,
    );
    let here = Inherited {
        receiver: receiver.clone(),
        group_by: group_by.clone(),
        group_wait,
        group_interval,
        repeat_interval,
    };
    let routes = raw
        .routes
        .iter()
        .enumerate()
        .map(|(i, child)| {
            route_node(
                child,
                &format!("{path}.routes[{i}]"),
                &here,
                receiver_names,
                c,
            )
        })
        .collect();
    Route {
        id: path.to_string(),
        receiver: receiver.unwrap_or_default(),
        matchers,
        continue_matching: raw.continue_matching,
        group_by,
        group_wait,
        group_interval,
        repeat_interval,
        routes,
    }
}

fn group_by(names: &[String], path: &str, c: &mut Checker) -> GroupBy {
    if names.iter().any(|n| n == "...") {
        if names.len() > 1 {
            c.error(path, "\"...\" groups by every label and must stand alone");
        }
        return GroupBy::All;
    }
    let mut seen = BTreeSet::new();
    for (i, n) in names.iter().enumerate() {
        if !is_label_name(n) {
            c.error(
                format!("{path}[{i}]"),
                format!("{n:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*), or use [\"...\"] for all labels"),
            );
        } else if !seen.insert(n.as_str()) {
            c.error(format!("{path}[{i}]"), format!("{n:?} is listed twice"));
        }
    }
    GroupBy::Labels(names.to_vec())
}

/// Parses every matcher of a list, recording each bad one with its index.
pub fn matchers(texts: &[String], path: &str, c: &mut Checker) -> Vec<Matcher> {
    texts
        .iter()
        .enumerate()
        .filter_map(|(i, t)| match Matcher::parse(t) {
            Ok(m) => Some(m),
            Err(e) => {
                c.error(format!("{path}[{i}]"), e.to_string());
                None
            }
        })
        .collect()
}

pub fn validate_inhibit_rules(raw: &[RawInhibitRule], c: &mut Checker) -> Vec<InhibitRule> {
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let path = format!("inhibit_rules[{i}]");
        for (field, list) in [
            ("source_matchers", &r.source_matchers),
            ("target_matchers", &r.target_matchers),
        ] {
            if list.is_empty() {
                c.error(
                    format!("{path}.{field}"),
                    "at least one matcher is required, e.g. [\"level=\\\"100\\\"\"]",
                );
            }
        }
        let source = matchers(&r.source_matchers, &format!("{path}.source_matchers"), c);
        let target = matchers(&r.target_matchers, &format!("{path}.target_matchers"), c);
        for (j, name) in r.equal.iter().enumerate() {
            if !is_label_name(name) {
                c.error(
                    format!("{path}.equal[{j}]"),
                    format!("{name:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"),
                );
            }
        }
        out.push(InhibitRule {
            source,
            target,
            equal: r.equal.clone(),
        });
    }
    out
}

pub fn validate_api(raw: &RawApi, c: &mut Checker) -> Option<Secret> {
    raw.token.as_ref().map(|r| c.secret("api.token", r))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use crate::config::{Config, ConfigError, parse_raw, validate};

    fn check(text: &str) -> Result<Config, Vec<ConfigError>> {
        let raw = parse_raw(text).map_err(|e| vec![e])?;
        validate(raw, Path::new("/tmp"))
    }

    const RECEIVERS: &str = r#"
[[receivers]]
[receivers.webhook]
name = "ops"
url = "http://127.0.0.1:1/hook"
secret = { env = "PATH" }

[[receivers]]
[receivers.webhook]
name = "pager"
url = "http://127.0.0.1:1/page"
secret = { env = "PATH" }
"#;

    #[test]
    fn children_inherit_receiver_grouping_and_timings() {
        let config = check(&format!(
            r#"{RECEIVERS}
[route]
receiver = "ops"
group_by = ["alertname"]
group_wait = "10s"
repeat_interval = "1h"

[[route.routes]]
matchers = ['severity="critical"']
receiver = "pager"
group_interval = "1m"

[[route.routes.routes]]
matchers = ['team=~"pay.*"']
group_by = ["..."]
"#
        ))
        .unwrap();
        let root = config.routes.root().unwrap();
        assert_eq!(root.group_interval.as_secs(), 300, "default");
        let child = &root.routes[0];
        assert_eq!(child.receiver, "pager");
        assert_eq!(child.group_wait.as_secs(), 10, "inherited");
        assert_eq!(child.group_interval.as_secs(), 60, "own");
        assert_eq!(child.repeat_interval.as_secs(), 3600, "inherited");
        let grandchild = &child.routes[0];
        assert_eq!(grandchild.id, "route.routes[0].routes[0]");
        assert_eq!(grandchild.receiver, "pager", "inherited from its parent");
        assert_eq!(grandchild.group_interval.as_secs(), 60);
        let labels: BTreeMap<String, String> = [
            ("severity".to_string(), "critical".to_string()),
            ("team".to_string(), "payments".to_string()),
        ]
        .into();
        let d = config.routes.destinations(&labels);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].route, "route.routes[0].routes[0]");
        assert_eq!(d[0].group_labels, labels, "[\"...\"] groups by every label");
    }

    #[test]
    fn without_a_route_every_receiver_gets_every_alert() {
        let config = check(RECEIVERS).unwrap();
        let labels: BTreeMap<String, String> = [("alertname".to_string(), "b".to_string())].into();
        let d = config.routes.destinations(&labels);
        assert_eq!(
            d.iter().map(|d| d.receiver.as_str()).collect::<Vec<_>>(),
            ["ops", "pager"]
        );
    }

    #[test]
    fn bad_routes_are_reported_with_their_paths() {
        let errs = check(&format!(
            r#"{RECEIVERS}
[route]
group_wait = "soon"
matchers = ['a="b"']

[[route.routes]]
receiver = "nobody"
matchers = ['team=~"(unclosed"', 'ok="fine"', '9="x"']
group_by = ["...", "account"]
repeat_interval = "0s"

[[inhibit_rules]]
source_matchers = []
target_matchers = ['level="80"']
equal = ["account", "not a label"]
"#
        ))
        .unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        for expected in [
            "route.receiver: the root route needs a receiver",
            "route.matchers: the root route matches every alert",
            "route.group_wait: invalid duration",
            "route.routes[0].receiver: no receiver named \"nobody\" (configured: ops, pager)",
            "route.routes[0].matchers[0]: invalid matcher",
            "route.routes[0].matchers[2]: invalid matcher",
            "route.routes[0].group_by: \"...\" groups by every label",
            "route.routes[0].repeat_interval: must be greater than zero",
            "inhibit_rules[0].source_matchers: at least one matcher",
            "inhibit_rules[0].equal[1]",
        ] {
            assert!(
                text.iter().any(|t| t.starts_with(expected)),
                "missing {expected:?} in {text:#?}"
            );
        }
        assert_eq!(
            text.iter()
                .filter(|t| t.starts_with("route.routes[0].matchers[1]"))
                .count(),
            0
        );
    }

    #[test]
    fn api_token_is_a_secret_reference() {
        let errs = check("[api]\ntoken = \"inline-token\"\n").unwrap_err();
        assert!(errs[0].path.starts_with("api.token"), "{errs:?}");
        assert!(!errs[0].to_string().contains("inline-token"));
        let errs =
            check("[api]\ntoken = { env = \"SPENDWATCH_IT_SURELY_UNSET_TOKEN\" }\n").unwrap_err();
        assert_eq!(errs[0].path, "api.token");
        let config = check("[api]\ntoken = { env = \"PATH\" }\n").unwrap();
        assert_eq!(format!("{:?}", config.api_token), "Some(***)");
    }
}
