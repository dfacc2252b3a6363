//! Label matchers as Alertmanager writes them: `name="value"`, `name!="value"`,
//! `name=~"regex"`, `name!~"regex"`. Regexes are anchored at both ends, and a label the
//! alert does not have matches as the empty string — so `team!="x"` matches an alert
//! without `team`, and `team=""` matches only such alerts.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchOp {
    #[serde(rename = "=")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
    #[serde(rename = "=~")]
    Regex,
    #[serde(rename = "!~")]
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
    fn is_regex(self) -> bool {
        matches!(self, MatchOp::Regex | MatchOp::NotRegex)
    }
    fn is_negative(self) -> bool {
        matches!(self, MatchOp::NotEqual | MatchOp::NotRegex)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid matcher {text:?}: {reason}")]
pub struct MatcherError {
    pub text: String,
    pub reason: String,
}

/// One condition on one label.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// Compiled `^(?:value)$` for the regex operators.
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}
impl Eq for Matcher {}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Self, MatcherError> {
        let text = format!("{name}{}{}", op.as_str(), quote(value));
        if !crate::config::is_label_name(name) {
            return Err(MatcherError {
                text,
                reason: format!("{name:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"),
            });
        }
        let regex = if op.is_regex() {
            Some(
                Regex::new(&format!("^(?:{value})$")).map_err(|e| MatcherError {
                    text: text.clone(),
                    reason: format!("bad regular expression: {e}"),
                })?,
            )
        } else {
            None
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Parses `name="value"` (also `name=value` without quotes, and any of the four operators).
    pub fn parse(text: &str) -> Result<Self, MatcherError> {
        let fail = |reason: &str| MatcherError {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let t = text.trim();
        let name_len = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(t.len());
        let (name, rest) = t.split_at(name_len);
        if name.is_empty() {
            return Err(fail(
                "expected a label name first, e.g. account=\"020-1001\"",
            ));
        }
        let rest = rest.trim_start();
        let (op, rest) = [
            ("=~", MatchOp::Regex),
            ("!~", MatchOp::NotRegex),
            ("!=", MatchOp::NotEqual),
            ("=", MatchOp::Equal),
        ]
        .into_iter()
        .find_map(|(sym, op)| rest.strip_prefix(sym).map(|r| (op, r)))
        .ok_or_else(|| fail("expected one of =, !=, =~, !~ after the label name"))?;
        let rest = rest.trim();
        let value = match rest.strip_prefix('"') {
            Some(quoted) => unquote(quoted).map_err(|r| fail(&r))?,
            None if rest.contains('"') => return Err(fail("unbalanced quote in the value")),
            None => rest.to_string(),
        };
        Matcher::new(name, op, &value).map_err(|e| MatcherError {
            text: text.to_string(),
            reason: e.reason,
        })
    }

    /// Whether one label value (`""` when the label is absent) satisfies the matcher.
    pub fn matches_value(&self, value: &str) -> bool {
        let positive = match &self.regex {
            Some(re) => re.is_match(value),
            None => value == self.value,
        };
        positive != self.op.is_negative()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_value(labels.get(&self.name).map_or("", String::as_str))
    }
}

/// True when every matcher matches (an empty list matches everything).
pub fn all_match(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.name, self.op.as_str(), quote(&self.value))
    }
}

fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The text after an opening quote: up to the closing quote, which must end the input.
fn unquote(quoted: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                return if chars.as_str().trim().is_empty() {
                    Ok(out)
                } else {
                    Err("unexpected text after the closing quote".into())
                };
            }
            '\\' => match chars.next() {
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some(other) => {
                    // Regexes need their own escapes (`\d`): keep them as written.
                    out.push('\\');
                    out.push(other);
                }
                None => return Err("the value ends in a lone backslash".into()),
            },
            c => out.push(c),
        }
    }
    Err("missing closing quote".into())
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

    #[test]
    fn parses_the_four_operators_and_round_trips() {
        for (text, op, value) in [
            ("account=\"020-1\"", MatchOp::Equal, "020-1"),
            ("account != \"020-1\"", MatchOp::NotEqual, "020-1"),
            ("team=~\"pay.*\"", MatchOp::Regex, "pay.*"),
            ("team!~\"pay|ops\"", MatchOp::NotRegex, "pay|ops"),
            ("level=80", MatchOp::Equal, "80"),
            ("x=\"a \\\"q\\\" b\"", MatchOp::Equal, "a \"q\" b"),
        ] {
            let m = Matcher::parse(text).unwrap();
            assert_eq!((m.op, m.value.as_str()), (op, value), "{text}");
            assert_eq!(Matcher::parse(&m.to_string()).unwrap(), m, "{text}");
        }
    }

    #[test]
    fn regexes_are_anchored() {
        let m = Matcher::parse("team=~\"pay\"").unwrap();
        assert!(m.matches(&labels(&[("team", "pay")])));
        assert!(!m.matches(&labels(&[("team", "payments")])));
        let m = Matcher::parse("account=~\"020-\\d+\"").unwrap();
        assert!(m.matches(&labels(&[("account", "020-1001")])));
        assert!(!m.matches(&labels(&[("account", "x020-1001")])));
    }

    #[test]
    fn absent_labels_match_as_empty() {
        let none = labels(&[]);
        assert!(Matcher::parse("team!=\"x\"").unwrap().matches(&none));
        assert!(Matcher::parse("team=\"\"").unwrap().matches(&none));
        assert!(!Matcher::parse("team=~\".+\"").unwrap().matches(&none));
        assert!(Matcher::parse("team!~\"x\"").unwrap().matches(&none));
    }

    #[test]
    fn bad_matchers_say_why() {
        for (text, why) in [
            ("=\"x\"", "label name"),
            ("a~\"x\"", "one of"),
            ("a=~\"(\"", "regular expression"),
            ("a=\"x\" extra", "after the closing quote"),
            ("a=\"x", "closing quote"),
            ("1a=\"x\"", "label name"),
        ] {
            let err = Matcher::parse(text).unwrap_err();
            assert!(err.to_string().contains(why), "{text}: {err}");
        }
    }
}
