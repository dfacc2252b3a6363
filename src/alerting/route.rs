//! The routing tree, as Alertmanager's `route`: an alert enters at the root and descends
//! into the first child whose matchers match (and on into later siblings while the matched
//! child says `continue`); where no child matches, the node itself is the destination.
//! Children inherit `receiver`, `group_by` and the three timings from their parent.

use std::collections::BTreeMap;
use std::time::Duration;

use super::matcher::{Matcher, all_match};

pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);
/// What the default route (no `[route]` in the config) groups by.
pub const DEFAULT_GROUP_BY: [&str; 2] = ["alertname", "account"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// `["..."]`: every label, so each alert is its own group.
    All,
    Labels(Vec<String>),
}

/// One validated node, with everything inherited already filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Where the node is in the config (`route`, `route.routes[1]`): part of group keys.
    pub id: String,
    pub receiver: String,
    pub matchers: Vec<Matcher>,
    pub continue_matching: bool,
    pub group_by: GroupBy,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub routes: Vec<Route>,
}

impl Route {
    /// The nodes an alert with `labels` ends at, in config order (Alertmanager's `Match`).
    pub fn matching<'a>(&'a self, labels: &BTreeMap<String, String>) -> Vec<&'a Route> {
        if !all_match(&self.matchers, labels) {
            return Vec::new();
        }
        let mut found = Vec::new();
        for child in &self.routes {
            let matched = child.matching(labels);
            let stop = !matched.is_empty() && !child.continue_matching;
            found.extend(matched);
            if stop {
                break;
            }
        }
        if found.is_empty() {
            found.push(self);
        }
        found
    }

    /// The `group_by` labels present on the alert, with their values.
    pub fn group_labels(&self, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        match &self.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        }
    }
}

/// Where one alert's notifications go for one receiver, and how they are grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub receiver: String,
    pub route: String,
    /// `receiver/route/{label="value",...}`: the identity of the group.
    pub group_key: String,
    pub group_labels: BTreeMap<String, String>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
}

/// The whole tree; `None` routes nothing (backtests).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routes {
    root: Option<Route>,
}

impl Routes {
    pub fn none() -> Self {
        Routes { root: None }
    }

    pub fn new(root: Route) -> Self {
        Routes { root: Some(root) }
    }

    /// Without a `[route]`: every receiver gets every alert, grouped by alertname and account.
    pub fn default_for(receivers: &[String]) -> Self {
        let Some(first) = receivers.first() else {
            return Routes::none();
        };
        let node = |id: String, receiver: &str, routes: Vec<Route>| Route {
            id,
            receiver: receiver.to_string(),
            matchers: Vec::new(),
            continue_matching: true,
            group_by: GroupBy::Labels(DEFAULT_GROUP_BY.iter().map(|s| s.to_string()).collect()),
            group_wait: DEFAULT_GROUP_WAIT,
            group_interval: DEFAULT_GROUP_INTERVAL,
            repeat_interval: DEFAULT_REPEAT_INTERVAL,
            routes,
        };
        let children = receivers
            .iter()
            .map(|r| node(format!("default.{r}"), r, Vec::new()))
            .collect();
        Routes::new(node("default".into(), first, children))
    }

    pub fn root(&self) -> Option<&Route> {
        self.root.as_ref()
    }

    /// One destination per receiver, in the order the tree names them. A receiver reached
    /// through two routes gets the first: its idempotency key names the receiver only.
    pub fn destinations(&self, labels: &BTreeMap<String, String>) -> Vec<Destination> {
        let Some(root) = &self.root else {
            return Vec::new();
        };
        let mut out: Vec<Destination> = Vec::new();
        for route in root.matching(labels) {
            if out.iter().any(|d| d.receiver == route.receiver) {
                continue;
            }
            let group_labels = route.group_labels(labels);
            out.push(Destination {
                receiver: route.receiver.clone(),
                route: route.id.clone(),
                group_key: group_key(&route.receiver, &route.id, &group_labels),
                group_labels,
                group_wait: route.group_wait,
                group_interval: route.group_interval,
                repeat_interval: route.repeat_interval,
            });
        }
        out
    }
}

pub fn group_key(receiver: &str, route: &str, labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{receiver}/{route}/{{{}}}", pairs.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn node(id: &str, receiver: &str, matchers: &[&str], cont: bool, routes: Vec<Route>) -> Route {
        Route {
            id: id.into(),
            receiver: receiver.into(),
            matchers: matchers
                .iter()
                .map(|m| Matcher::parse(m).unwrap())
                .collect(),
            continue_matching: cont,
            group_by: GroupBy::Labels(vec!["alertname".into()]),
            group_wait: DEFAULT_GROUP_WAIT,
            group_interval: DEFAULT_GROUP_INTERVAL,
            repeat_interval: DEFAULT_REPEAT_INTERVAL,
            routes,
        }
    }

    fn receivers(routes: &Routes, l: &BTreeMap<String, String>) -> Vec<String> {
        routes
            .destinations(l)
            .into_iter()
            .map(|d| d.receiver)
            .collect()
    }

    #[test]
    fn first_matching_child_wins_unless_it_continues() {
        let tree = Routes::new(node(
            "route",
            "default",
            &[],
            false,
            vec![
                node(
                    "route.routes[0]",
                    "pager",
                    &["severity=\"critical\""],
                    true,
                    vec![],
                ),
                node(
                    "route.routes[1]",
                    "payments",
                    &["team=~\"pay.*\""],
                    false,
                    vec![],
                ),
                node("route.routes[2]", "never", &["team=~\".+\""], false, vec![]),
            ],
        ));
        let crit_pay = labels(&[("severity", "critical"), ("team", "payments")]);
        assert_eq!(receivers(&tree, &crit_pay), ["pager", "payments"]);
        let warn_pay = labels(&[("severity", "warning"), ("team", "payments")]);
        assert_eq!(receivers(&tree, &warn_pay), ["payments"]);
        let warn_ops = labels(&[("severity", "warning"), ("team", "ops")]);
        assert_eq!(receivers(&tree, &warn_ops), ["never"]);
        // Nothing below matches: the root itself is the destination.
        assert_eq!(receivers(&tree, &labels(&[])), ["default"]);
        // A continuing match alone still stops the fallback to the parent.
        let crit = labels(&[("severity", "critical")]);
        assert_eq!(receivers(&tree, &crit), ["pager"]);
    }

    #[test]
    fn nested_routes_descend_and_dedupe_receivers() {
        let tree = Routes::new(node(
            "route",
            "default",
            &[],
            false,
            vec![
                node(
                    "route.routes[0]",
                    "team",
                    &["team=\"payments\""],
                    true,
                    vec![node(
                        "route.routes[0].routes[0]",
                        "pager",
                        &["severity=\"critical\""],
                        false,
                        vec![],
                    )],
                ),
                node(
                    "route.routes[1]",
                    "pager",
                    &["account=~\"020-.*\""],
                    false,
                    vec![],
                ),
            ],
        ));
        let l = labels(&[
            ("team", "payments"),
            ("severity", "critical"),
            ("account", "020-1"),
        ]);
        let d = tree.destinations(&l);
        assert_eq!(d.len(), 1, "pager reached twice is notified once: {d:?}");
        assert_eq!(d[0].route, "route.routes[0].routes[0]");
        let l = labels(&[("team", "payments"), ("severity", "warning")]);
        assert_eq!(tree.destinations(&l)[0].route, "route.routes[0]");
    }

    #[test]
    fn group_keys_use_the_group_by_values_present() {
        let mut root = node("route", "hook", &[], false, vec![]);
        root.group_by = GroupBy::Labels(vec!["alertname".into(), "account".into()]);
        let tree = Routes::new(root.clone());
        let a = labels(&[("alertname", "budget"), ("account", "1"), ("level", "80")]);
        let b = labels(&[("alertname", "budget"), ("account", "1"), ("level", "100")]);
        let c = labels(&[("alertname", "budget"), ("account", "2"), ("level", "80")]);
        let key = |l| tree.destinations(l)[0].group_key.clone();
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c));
        assert_eq!(key(&a), "hook/route/{account=\"1\",alertname=\"budget\"}");
        root.group_by = GroupBy::All;
        let all = Routes::new(root);
        assert_ne!(
            all.destinations(&a)[0].group_key,
            all.destinations(&b)[0].group_key
        );
        assert_eq!(all.destinations(&a)[0].group_labels, a);
    }

    #[test]
    fn default_route_sends_every_alert_to_every_receiver() {
        let tree = Routes::default_for(&["a".into(), "b".into()]);
        let l = labels(&[("alertname", "x"), ("account", "1"), ("team", "t")]);
        let d = tree.destinations(&l);
        assert_eq!(
            d.iter().map(|d| d.receiver.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(d[0].group_wait, DEFAULT_GROUP_WAIT);
        assert_eq!(d[0].group_interval, DEFAULT_GROUP_INTERVAL);
        assert_eq!(d[0].repeat_interval, DEFAULT_REPEAT_INTERVAL);
        assert_eq!(
            d[0].group_labels,
            labels(&[("alertname", "x"), ("account", "1")])
        );
        assert!(Routes::default_for(&[]).destinations(&l).is_empty());
        assert!(Routes::none().destinations(&l).is_empty());
    }
}
