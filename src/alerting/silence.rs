//! Silences (as in Alertmanager): matchers plus a time range. While active, a silence mutes
//! the notifications of every alert whose labels it matches; alert state itself goes on.
//! Muting is decided when a group is about to be sent, so a silence created during
//! `group_wait` still applies, and an alert still firing when its silence ends is notified.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::inhibit::{FiringAlert, InhibitRule};
use super::matcher::{MatchOp, Matcher};
use crate::model::{AlertRecord, AlertState};
use crate::store::SilenceRow;

const MAX_MATCHERS: usize = 32;
const MAX_TEXT: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    /// Starts in the future.
    Pending,
    Active,
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("{0}")]
    Invalid(String),
    #[error("corrupt silence {id}: {reason}")]
    Corrupt { id: String, reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub created_by: String,
    pub comment: String,
    pub updated_at: Timestamp,
}

impl Silence {
    pub fn state(&self, now: Timestamp) -> SilenceState {
        if now < self.starts_at {
            SilenceState::Pending
        } else if now < self.ends_at {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    pub fn mutes(&self, labels: &BTreeMap<String, String>, now: Timestamp) -> bool {
        self.state(now) == SilenceState::Active && super::matcher::all_match(&self.matchers, labels)
    }

    pub fn from_row(row: &SilenceRow) -> Result<Silence, SilenceError> {
        let matchers = row
            .matchers
            .iter()
            .map(|t| Matcher::parse(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SilenceError::Corrupt {
                id: row.id.clone(),
                reason: e.to_string(),
            })?;
        Ok(Silence {
            id: row.id.clone(),
            matchers,
            starts_at: row.starts_at,
            ends_at: row.ends_at,
            created_by: row.created_by.clone(),
            comment: row.comment.clone(),
            updated_at: row.updated_at,
        })
    }

    pub fn to_row(&self) -> SilenceRow {
        SilenceRow {
            id: self.id.clone(),
            matchers: self.matchers.iter().map(|m| m.to_string()).collect(),
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            created_by: self.created_by.clone(),
            comment: self.comment.clone(),
            updated_at: self.updated_at,
        }
    }

    /// The API's view (Alertmanager's v2 shape).
    pub fn to_json(&self, now: Timestamp) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "matchers": self.matchers.iter().map(MatcherJson::from).collect::<Vec<_>>(),
            "startsAt": self.starts_at.to_string(),
            "endsAt": self.ends_at.to_string(),
            "updatedAt": self.updated_at.to_string(),
            "createdBy": self.created_by,
            "comment": self.comment,
            "status": {"state": self.state(now).as_str()},
        })
    }
}

/// A matcher as Alertmanager's API writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatcherJson {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub is_regex: bool,
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl MatcherJson {
    pub fn to_matcher(&self) -> Result<Matcher, super::matcher::MatcherError> {
        let op = match (self.is_regex, self.is_equal) {
            (false, true) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::Regex,
            (true, false) => MatchOp::NotRegex,
        };
        Matcher::new(&self.name, op, &self.value)
    }
}

impl From<&Matcher> for MatcherJson {
    fn from(m: &Matcher) -> Self {
        MatcherJson {
            name: m.name.clone(),
            value: m.value.clone(),
            is_regex: matches!(m.op, MatchOp::Regex | MatchOp::NotRegex),
            is_equal: matches!(m.op, MatchOp::Equal | MatchOp::Regex),
        }
    }
}

/// A matcher in a request: `"account=\"x\""` or `{"name": ..., "value": ..., ...}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MatcherInput {
    Text(String),
    Object(MatcherJson),
}

impl MatcherInput {
    fn to_matcher(&self) -> Result<Matcher, String> {
        match self {
            MatcherInput::Text(t) => Matcher::parse(t).map_err(|e| e.to_string()),
            MatcherInput::Object(o) => o.to_matcher().map_err(|e| e.to_string()),
        }
    }
}

/// `POST /api/v1/silences` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewSilence {
    pub matchers: Vec<MatcherInput>,
    /// Default: now.
    pub starts_at: Option<Timestamp>,
    pub ends_at: Timestamp,
    pub created_by: String,
    pub comment: String,
}

impl NewSilence {
    /// Checks the request as Alertmanager does and gives the silence a fresh id.
    pub fn validate(&self, now: Timestamp) -> Result<Silence, SilenceError> {
        let bad = |m: String| Err(SilenceError::Invalid(m));
        if self.matchers.is_empty() {
            return bad(
                "matchers: at least one is required, e.g. [\"account=\\\"020-1001\\\"\"]".into(),
            );
        }
        if self.matchers.len() > MAX_MATCHERS {
            return bad(format!("matchers: at most {MAX_MATCHERS}"));
        }
        let mut matchers = Vec::new();
        for (i, m) in self.matchers.iter().enumerate() {
            match m.to_matcher() {
                Ok(m) => matchers.push(m),
                Err(e) => return bad(format!("matchers[{i}]: {e}")),
            }
        }
        // A silence whose every matcher matches an empty label would mute nearly everything.
        if matchers.iter().all(|m| m.matches_value("")) {
            return bad(
                "matchers: at least one must require a non-empty value (e.g. account=\"020-1001\"), so the silence cannot mute every alert"
                    .into(),
            );
        }
        let starts_at = self.starts_at.unwrap_or(now).max(now);
        if self.ends_at <= now {
            return bad("endsAt: must be in the future".into());
        }
        if self.ends_at <= starts_at {
            return bad("endsAt: must be after startsAt".into());
        }
        for (field, value) in [("createdBy", &self.created_by), ("comment", &self.comment)] {
            if value.trim().is_empty() {
                return bad(format!("{field}: must not be empty"));
            }
            if value.len() > MAX_TEXT {
                return bad(format!("{field}: at most {MAX_TEXT} bytes"));
            }
        }
        Ok(Silence {
            id: new_id(),
            matchers,
            starts_at,
            ends_at: self.ends_at,
            created_by: self.created_by.trim().to_string(),
            comment: self.comment.trim().to_string(),
            updated_at: now,
        })
    }
}

/// A random UUID (version 4 layout).
fn new_id() -> String {
    let v = (rand::random::<u128>() & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Why a notification is held back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mute {
    /// By the silence with this id.
    Silenced(String),
    /// By the firing alert with this fingerprint.
    Inhibited(String),
}

impl Mute {
    /// Stored on the outbox row and shown by the API: `silence:<id>` or `inhibited_by:<fp>`.
    pub fn describe(&self) -> String {
        match self {
            Mute::Silenced(id) => format!("silence:{id}"),
            Mute::Inhibited(fp) => format!("inhibited_by:{fp}"),
        }
    }
    /// The metric outcome it counts as.
    pub fn outcome(&self) -> &'static str {
        match self {
            Mute::Silenced(_) => "suppressed_silenced",
            Mute::Inhibited(_) => "suppressed_inhibited",
        }
    }
}

/// Silences and inhibition at one instant.
pub struct Muter {
    silences: Vec<Silence>,
    rules: Vec<InhibitRule>,
    firing: Vec<FiringAlert>,
    now: Timestamp,
}

impl Muter {
    pub fn new(
        silences: Vec<Silence>,
        rules: &[InhibitRule],
        alerts: &[AlertRecord],
        now: Timestamp,
    ) -> Self {
        let firing = alerts
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .map(|a| FiringAlert {
                fingerprint: a.fingerprint.clone(),
                labels: a.labels.clone(),
            })
            .collect();
        Muter {
            silences: silences
                .into_iter()
                .filter(|s| s.state(now) == SilenceState::Active)
                .collect(),
            rules: rules.to_vec(),
            firing,
            now,
        }
    }

    /// Inhibition first, then silences: the order of Alertmanager's pipeline.
    pub fn mutes(&self, fingerprint: &str, labels: &BTreeMap<String, String>) -> Option<Mute> {
        self.inhibited_by(fingerprint, labels)
            .into_iter()
            .next()
            .map(Mute::Inhibited)
            .or_else(|| {
                self.silenced_by(labels)
                    .into_iter()
                    .next()
                    .map(Mute::Silenced)
            })
    }

    pub fn silenced_by(&self, labels: &BTreeMap<String, String>) -> Vec<String> {
        self.silences
            .iter()
            .filter(|s| s.mutes(labels, self.now))
            .map(|s| s.id.clone())
            .collect()
    }

    pub fn inhibited_by(
        &self,
        fingerprint: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<String> {
        let mut out: Vec<String> = self
            .rules
            .iter()
            .filter_map(|r| r.inhibitor(fingerprint, labels, &self.firing))
            .map(str::to_string)
            .collect();
        out.dedup();
        out
    }

    pub fn active_silences(&self) -> usize {
        self.silences.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn at(min: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_mins(min)
    }

    fn request(matchers: &[&str], ends: i64) -> NewSilence {
        NewSilence {
            matchers: matchers
                .iter()
                .map(|m| MatcherInput::Text(m.to_string()))
                .collect(),
            starts_at: None,
            ends_at: at(ends),
            created_by: "ana".into(),
            comment: "planned migration".into(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_silence_mutes_matching_alerts_while_active() {
        let s = request(&["account=\"020-1\""], 120)
            .validate(at(0))
            .unwrap();
        assert_eq!(s.state(at(0)), SilenceState::Active);
        assert!(s.mutes(&labels(&[("account", "020-1")]), at(60)));
        assert!(!s.mutes(&labels(&[("account", "020-2")]), at(60)));
        assert!(
            !s.mutes(&labels(&[("account", "020-1")]), at(120)),
            "expired"
        );
        assert_eq!(s.state(at(120)), SilenceState::Expired);
        let row = s.to_row();
        assert_eq!(Silence::from_row(&row).unwrap(), s);
    }

    #[test]
    fn requests_are_checked_like_alertmanager_does() {
        for (req, why) in [
            (request(&[], 10), "at least one is required"),
            (request(&["team=~\".*\""], 10), "non-empty value"),
            (request(&["account=\"x\""], 0), "in the future"),
            (request(&["account=~\"(\""], 10), "matchers[0]"),
        ] {
            let err = req.validate(at(0)).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
        let mut no_author = request(&["account=\"x\""], 10);
        no_author.created_by = " ".into();
        assert!(
            no_author
                .validate(at(0))
                .unwrap_err()
                .to_string()
                .contains("createdBy")
        );
        let object: NewSilence = serde_json::from_value(serde_json::json!({
            "matchers": [{"name": "account", "value": "0.*", "isRegex": true}],
            "endsAt": "1970-01-01T01:00:00Z", "createdBy": "a", "comment": "c"
        }))
        .unwrap();
        let s = object.validate(at(0)).unwrap();
        assert_eq!(s.matchers[0].to_string(), "account=~\"0.*\"");
        assert_eq!(s.id.len(), 36);
        assert_eq!(&s.id[14..15], "4");
    }

    #[test]
    fn muter_reports_silences_and_inhibitors() {
        let silence = request(&["account=\"020-2\""], 60).validate(at(0)).unwrap();
        let id = silence.id.clone();
        let rule = InhibitRule {
            source: vec![Matcher::parse("level=\"100\"").unwrap()],
            target: vec![Matcher::parse("level=\"80\"").unwrap()],
            equal: vec!["account".into()],
        };
        let source = AlertRecord {
            fingerprint: "src".into(),
            rule: "budget".into(),
            labels: labels(&[("account", "020-1"), ("level", "100")]),
            annotations: BTreeMap::new(),
            severity: crate::model::Severity::Critical,
            state: AlertState::Firing,
            active_at: None,
            fired_at: Some(at(0)),
            resolved_at: None,
            keep_firing_since: None,
            value: String::new(),
            threshold: String::new(),
            summary: String::new(),
            seq: 1,
            contributors: Vec::new(),
        };
        let muter = Muter::new(vec![silence], &[rule], &[source], at(1));
        assert_eq!(
            muter.mutes("t", &labels(&[("account", "020-1"), ("level", "80")])),
            Some(Mute::Inhibited("src".into()))
        );
        assert_eq!(
            muter.mutes("t", &labels(&[("account", "020-2"), ("level", "80")])),
            Some(Mute::Silenced(id))
        );
        assert_eq!(
            muter.mutes("t", &labels(&[("account", "020-3"), ("level", "80")])),
            None
        );
    }
}
