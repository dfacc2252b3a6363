//! Inhibition, with Alertmanager's semantics: while an alert matching `source` fires, alerts
//! matching `target` whose `equal` labels have the same values (absent counts as empty) are
//! muted. An alert never inhibits itself, and when the target also matches `source`, only
//! sources that do not also match `target` count (so two alerts matching both sides cannot
//! mute each other).

use std::collections::BTreeMap;

use super::matcher::{Matcher, all_match};

#[derive(Debug, Clone, PartialEq)]
pub struct InhibitRule {
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    pub equal: Vec<String>,
}

/// A firing alert as inhibition sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct FiringAlert {
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
}

impl InhibitRule {
    /// The fingerprint of a firing alert that inhibits the target, if any.
    pub fn inhibitor<'a>(
        &self,
        target_fingerprint: &str,
        target: &BTreeMap<String, String>,
        firing: &'a [FiringAlert],
    ) -> Option<&'a str> {
        if !all_match(&self.target, target) {
            return None;
        }
        let two_sided = all_match(&self.source, target);
        let value = |labels: &'a BTreeMap<String, String>, name: &str| {
            labels.get(name).map_or("", String::as_str)
        };
        firing
            .iter()
            .filter(|s| s.fingerprint != target_fingerprint)
            .filter(|s| all_match(&self.source, &s.labels))
            .filter(|s| !(two_sided && all_match(&self.target, &s.labels)))
            .find(|s| {
                self.equal.iter().all(|name| {
                    value(&s.labels, name) == target.get(name).map_or("", String::as_str)
                })
            })
            .map(|s| s.fingerprint.as_str())
    }
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

    fn budget_rule() -> InhibitRule {
        InhibitRule {
            source: vec![Matcher::parse("level=\"100\"").unwrap()],
            target: vec![Matcher::parse("level=\"80\"").unwrap()],
            equal: vec!["alertname".into(), "account".into()],
        }
    }

    fn alert(fp: &str, account: &str, level: &str) -> FiringAlert {
        FiringAlert {
            fingerprint: fp.into(),
            labels: labels(&[
                ("alertname", "budget"),
                ("account", account),
                ("level", level),
            ]),
        }
    }

    #[test]
    fn the_100_percent_level_mutes_80_for_the_same_account_only() {
        let rule = budget_rule();
        let firing = [alert("s1", "020-1", "100")];
        let t_same = alert("t1", "020-1", "80");
        let t_other = alert("t2", "020-2", "80");
        assert_eq!(rule.inhibitor("t1", &t_same.labels, &firing), Some("s1"));
        assert_eq!(rule.inhibitor("t2", &t_other.labels, &firing), None);
        // The source itself is not a target; nothing fires: nothing is muted.
        assert_eq!(rule.inhibitor("s1", &firing[0].labels, &firing), None);
        assert_eq!(rule.inhibitor("t1", &t_same.labels, &[]), None);
    }

    #[test]
    fn equal_treats_absent_labels_as_empty() {
        let rule = InhibitRule {
            source: vec![Matcher::parse("severity=\"critical\"").unwrap()],
            target: vec![Matcher::parse("severity=\"warning\"").unwrap()],
            equal: vec!["team".into()],
        };
        let firing = [FiringAlert {
            fingerprint: "s".into(),
            labels: labels(&[("severity", "critical")]),
        }];
        assert!(
            rule.inhibitor("t", &labels(&[("severity", "warning")]), &firing)
                .is_some()
        );
        assert!(
            rule.inhibitor(
                "t",
                &labels(&[("severity", "warning"), ("team", "a")]),
                &firing
            )
            .is_none()
        );
    }

    #[test]
    fn alerts_matching_both_sides_do_not_mute_each_other() {
        let rule = InhibitRule {
            source: vec![Matcher::parse("alertname=\"budget\"").unwrap()],
            target: vec![Matcher::parse("alertname=\"budget\"").unwrap()],
            equal: vec!["account".into()],
        };
        let a = alert("a", "1", "80");
        let b = alert("b", "1", "100");
        let firing = [a.clone(), b.clone()];
        assert_eq!(rule.inhibitor("a", &a.labels, &firing), None);
        assert_eq!(rule.inhibitor("b", &b.labels, &firing), None);
    }
}
