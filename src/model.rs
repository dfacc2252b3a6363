//! The types that cross the seams of the one-way flow:
//! `sources → Observation → store → Point → eval → Transition → alerting → Notification → notify`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub mod clock;
pub use clock::Clock;

/// Store metric names shared by every source, so rules and metrics need no per-API code.
/// Every money series carries a `currency` label; every line-item series an `item` label
/// (a readable name such as `RCDN/BWOUT`); usage series a `unit` label.
pub mod series {
    /// Account spend in the current period so far (period-to-date).
    pub const SPEND_PTD: &str = "spend_period_to_date";
    /// Account spend of a closed period (period total).
    pub const SPEND_TOTAL: &str = "spend_period_total";
    pub const ITEM_SPEND_PTD: &str = "line_item_spend_period_to_date";
    pub const ITEM_SPEND_TOTAL: &str = "line_item_spend_period_total";
    pub const USAGE_PTD: &str = "usage_period_to_date";
    pub const USAGE_TOTAL: &str = "usage_period_total";
    /// Traffic from a metrics system or a file (kind `Traffic`).
    pub const TRAFFIC: &str = "traffic";

    pub const LABEL_CURRENCY: &str = "currency";
    pub const LABEL_ITEM: &str = "item";
    pub const LABEL_UNIT: &str = "unit";
}

/// ISO 4217 currency code: three ASCII uppercase letters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Currency(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("invalid currency code {0:?}: expected three uppercase letters such as \"USD\"")]
    BadCurrency(String),
    #[error(
        "invalid amount {0:?}: expected a decimal number such as \"100.00\", \".40\" or \"-50\""
    )]
    BadAmount(String),
    #[error("cannot combine {left} with {right}: amounts in different currencies are never added")]
    CurrencyMismatch { left: Currency, right: Currency },
    #[error("amount overflow")]
    Overflow,
}

impl Currency {
    pub fn new(code: &str) -> Result<Self, MoneyError> {
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency(code.to_string()))
        } else {
            Err(MoneyError::BadCurrency(code.to_string()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Symbol used in human-readable messages, where one is unambiguous.
    pub fn symbol(&self) -> Option<&'static str> {
        match self.0.as_str() {
            "USD" => Some("$"),
            "EUR" => Some("€"),
            "GBP" => Some("£"),
            "JPY" => Some("¥"),
            _ => None,
        }
    }
    /// Minor-unit digits used when formatting (JPY has none).
    pub fn minor_digits(&self) -> u32 {
        match self.0.as_str() {
            "JPY" | "KRW" | "VND" | "CLP" | "ISK" => 0,
            _ => 2,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Parses an amount as the billing APIs send it: `30`, `"100.00"`, `".40"`, `"-50.00"`, `"4330"`.
/// Rejects everything else (empty, exponents, thousands separators, NaN, words).
pub fn parse_amount(text: &str) -> Result<Decimal, MoneyError> {
    let t = text.trim();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let well_formed = all_digits(int)
        && frac.is_none_or(all_digits)
        && (!int.is_empty() || frac.is_some_and(|f| !f.is_empty()));
    if !well_formed {
        return Err(MoneyError::BadAmount(text.to_string()));
    }
    // rust_decimal wants a leading digit for ".40".
    let normalized = if int.is_empty() {
        let sign = if t.starts_with('-') { "-" } else { "" };
        format!("{sign}0.{}", frac.unwrap_or_default())
    } else {
        t.to_string()
    };
    Decimal::from_str(&normalized).map_err(|_| MoneyError::BadAmount(text.to_string()))
}

/// An amount of money in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount: Decimal,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Money { amount, currency }
    }
    pub fn parse(amount: &str, currency: &str) -> Result<Self, MoneyError> {
        Ok(Money::new(parse_amount(amount)?, Currency::new(currency)?))
    }
    pub fn zero(currency: Currency) -> Self {
        Money::new(Decimal::ZERO, currency)
    }
    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency.clone(),
                right: other.currency.clone(),
            })
        }
    }
    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency.clone()))
    }
    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount
            .checked_sub(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency.clone()))
    }
}

impl fmt::Display for Money {
    /// `$1,234.50`, `¥4,330`, `1,234.50 CHF`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = format_decimal(self.amount, self.currency.minor_digits());
        match self.currency.symbol() {
            Some(sym) => match text.strip_prefix('-') {
                Some(abs) => write!(f, "-{sym}{abs}"),
                None => write!(f, "{sym}{text}"),
            },
            None => write!(f, "{text} {}", self.currency),
        }
    }
}

/// Rounds to `digits` places and groups thousands with commas.
pub fn format_decimal(value: Decimal, digits: u32) -> String {
    let rounded = value.round_dp(digits);
    let text = format!("{:.*}", digits as usize, rounded);
    let (sign, body) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let mut grouped = String::with_capacity(int.len() + int.len() / 3);
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// What a series' values mean over time; decides how eval turns values into spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservationKind {
    /// Cumulative within a billing period, resets at the period start.
    PeriodToDate,
    /// One value per closed period.
    PeriodTotal,
    /// A usage quantity from a bill line (GB, hours, API hits).
    Usage,
    /// Traffic from a metrics system or a file.
    Traffic,
}

impl ObservationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObservationKind::PeriodToDate => "period_to_date",
            ObservationKind::PeriodTotal => "period_total",
            ObservationKind::Usage => "usage",
            ObservationKind::Traffic => "traffic",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        [
            ObservationKind::PeriodToDate,
            ObservationKind::PeriodTotal,
            ObservationKind::Usage,
            ObservationKind::Traffic,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// The unit of a series' values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Money(Currency),
    /// A quantity such as `GB`, `HRS`, `COUNT`.
    Quantity(String),
}

impl Unit {
    /// Stored text form: `money:USD` or `qty:GB`.
    pub fn encode(&self) -> String {
        match self {
            Unit::Money(c) => format!("money:{c}"),
            Unit::Quantity(q) => format!("qty:{q}"),
        }
    }
    pub fn decode(text: &str) -> Option<Self> {
        if let Some(c) = text.strip_prefix("money:") {
            Currency::new(c).ok().map(Unit::Money)
        } else {
            text.strip_prefix("qty:")
                .map(|q| Unit::Quantity(q.to_string()))
        }
    }
    pub fn currency(&self) -> Option<&Currency> {
        match self {
            Unit::Money(c) => Some(c),
            Unit::Quantity(_) => None,
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unit::Money(c) => write!(f, "{c}"),
            Unit::Quantity(q) => f.write_str(q),
        }
    }
}

/// Identity of one time series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The configured source name (e.g. `rackspace-prod`).
    pub source: String,
    pub account: String,
    /// One of [`series`]' names, e.g. `spend_period_to_date`.
    pub metric: String,
    pub labels: BTreeMap<String, String>,
}

impl SeriesKey {
    pub fn new(source: &str, account: &str, metric: &str) -> Self {
        SeriesKey {
            source: source.to_string(),
            account: account.to_string(),
            metric: metric.to_string(),
            labels: BTreeMap::new(),
        }
    }
    pub fn with_label(mut self, name: &str, value: &str) -> Self {
        self.labels.insert(name.to_string(), value.to_string());
        self
    }
    /// Canonical, stable text identity used as the store key.
    pub fn canonical(&self) -> String {
        let mut out = format!("{}\u{1f}{}\u{1f}{}", self.source, self.account, self.metric);
        for (k, v) in &self.labels {
            out.push('\u{1f}');
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        out
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.source, self.account, self.metric)?;
        if !self.labels.is_empty() {
            let parts: Vec<String> = self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            write!(f, "{{{}}}", parts.join(","))?;
        }
        Ok(())
    }
}

/// A billing period `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Period {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Period {
    pub fn contains(&self, at: Timestamp) -> bool {
        self.start <= at && at < self.end
    }
    pub fn length_seconds(&self) -> f64 {
        self.end.duration_since(self.start).as_secs_f64()
    }
}

/// One value a source observed, stamped with the time the data *describes*.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub key: SeriesKey,
    /// The instant the value describes (for period-to-date: "as of").
    pub at: Timestamp,
    /// The billing period for period-to-date and period-total values.
    pub period: Option<Period>,
    pub value: Decimal,
    pub kind: ObservationKind,
    pub unit: Unit,
}

/// A stored value as eval reads it. Unchanged re-polls extend `last_seen`
/// rather than adding rows, so `at` is when this value was first observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub at: Timestamp,
    pub last_seen: Timestamp,
    pub period: Option<Period>,
    pub value: Decimal,
}

/// A series with its metadata and the points eval asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub key: SeriesKey,
    pub kind: ObservationKind,
    pub unit: Unit,
    pub points: Vec<Point>,
}

/// Severity as on-call reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What a rule found for one of its alert instances at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub value: Decimal,
    pub threshold: Decimal,
    pub unit: Unit,
    /// One line: what happened, by how much, against what expectation.
    pub summary: String,
    /// The line items that drove it, largest first (may be empty).
    pub contributors: Vec<ContributorLine>,
}

/// A line item that moved, formatted for people (`RCDN/BWOUT`, `$412.00`, `+$380.00`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContributorLine {
    pub item: String,
    /// Amount in the evaluated window.
    pub amount: String,
    /// Change against what was typical, with its sign.
    pub delta: String,
}

/// A link shown with an alert: the alert page, a console, a dashboard panel, a silence form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub title: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Breach(Finding),
    Clear(Finding),
    /// Data not in yet, or too little of it to judge: leaves alert state untouched.
    Waiting(String),
}

/// eval → alerting: a verdict for one alert instance of one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub rule: String,
    /// The identity labels of the alert instance (alertname, account, level, …).
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub severity: Severity,
    pub hold: jiff::SignedDuration,
    pub keep_firing_for: jiff::SignedDuration,
    pub data_time: Timestamp,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationStatus {
    Firing,
    Resolved,
}

impl NotificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Firing => "firing",
            NotificationStatus::Resolved => "resolved",
        }
    }
}

/// alerting → notify: one message for one receiver, rendered once and stored in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub idempotency_key: String,
    pub receiver: String,
    pub status: NotificationStatus,
    pub fingerprint: String,
    pub rule: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub value: String,
    pub threshold: String,
    pub starts_at: Timestamp,
    pub ends_at: Option<Timestamp>,
    /// The line items that drove it (empty for rules without line items).
    #[serde(default)]
    pub contributors: Vec<ContributorLine>,
    #[serde(default)]
    pub links: Vec<Link>,
}

/// notify → one receiver: the notifications of one alert group (same receiver, same values of
/// the route's `group_by` labels), sent as one message. Receivers that group themselves
/// (Alertmanager) get the same shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationGroup {
    pub receiver: String,
    /// Stable identity of the group: the receiver and its `group_by` label values.
    pub key: String,
    /// The `group_by` labels and their values shared by every alert of the group.
    pub labels: BTreeMap<String, String>,
    /// At least one; firing and resolved alerts may be mixed.
    pub alerts: Vec<Notification>,
}

impl NotificationGroup {
    /// Firing while any member fires.
    pub fn status(&self) -> NotificationStatus {
        if self
            .alerts
            .iter()
            .any(|n| n.status == NotificationStatus::Firing)
        {
            NotificationStatus::Firing
        } else {
            NotificationStatus::Resolved
        }
    }

    /// Deterministic for the same members: a resend after a crash carries the same key, so a
    /// receiver can drop the duplicate.
    pub fn idempotency_key(&self) -> String {
        use sha2::{Digest, Sha256};
        if let [only] = self.alerts.as_slice() {
            return only.idempotency_key.clone();
        }
        let mut keys: Vec<&str> = self
            .alerts
            .iter()
            .map(|n| n.idempotency_key.as_str())
            .collect();
        keys.sort_unstable();
        let mut h = Sha256::new();
        h.update(self.key.as_bytes());
        for k in keys {
            h.update([0u8]);
            h.update(k.as_bytes());
        }
        format!("group-{}", &hex::encode(h.finalize())[..32])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        [
            AlertState::Inactive,
            AlertState::Pending,
            AlertState::Firing,
            AlertState::Resolved,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// An alert instance as alerting keeps it and the store persists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub fingerprint: String,
    pub rule: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub severity: Severity,
    pub state: AlertState,
    /// When the condition started holding (pending since).
    pub active_at: Option<Timestamp>,
    pub fired_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    /// Condition cleared while firing; stays firing for `keep_firing_for` from here.
    pub keep_firing_since: Option<Timestamp>,
    pub value: String,
    pub threshold: String,
    pub summary: String,
    /// Count of firing episodes; part of notification idempotency keys.
    pub seq: u64,
    #[serde(default)]
    pub contributors: Vec<ContributorLine>,
}

/// eval ↔ store: what an anomaly rule's detector has learned for one instance, kept between
/// evaluations so each evaluation only feeds the windows that are new.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorState {
    pub rule: String,
    /// The instance within the rule (account and unit).
    pub instance: String,
    /// Identifies the detector settings; a state learned under other settings is discarded.
    pub config: String,
    /// End of the newest window learned.
    pub learned_until: Timestamp,
    /// End of the first window learned.
    pub learning_since: Timestamp,
    pub samples: u64,
    /// The detector itself, serialised (opaque to the store).
    pub state: String,
    pub updated_at: Timestamp,
}

/// One alert instance's verdict at the last evaluation, for `/api/v1/rules`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceStatus {
    pub labels: BTreeMap<String, String>,
    /// `breach`, `clear` or `waiting`.
    pub outcome: &'static str,
    /// The finding's summary, or why the rule waits.
    pub detail: String,
}

/// A rule at its last evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleStatus {
    pub name: String,
    /// `ok` or `error`.
    pub health: &'static str,
    pub last_error: Option<String>,
    pub last_evaluation: Option<Timestamp>,
    pub evaluation_seconds: f64,
    pub instances: Vec<InstanceStatus>,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Breach(_) => "breach",
            Outcome::Clear(_) => "clear",
            Outcome::Waiting(_) => "waiting",
        }
    }
    pub fn detail(&self) -> &str {
        match self {
            Outcome::Breach(f) | Outcome::Clear(f) => &f.summary,
            Outcome::Waiting(why) => why,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_amounts_the_apis_send() {
        for (text, expected) in [
            ("30", "30"),
            ("100.00", "100.00"),
            (".40", "0.40"),
            (".12", "0.12"),
            ("-50.00", "-50.00"),
            ("-.5", "-0.5"),
            ("4330", "4330"),
            (" 7.5 ", "7.5"),
            ("0", "0"),
        ] {
            assert_eq!(
                parse_amount(text).unwrap(),
                Decimal::from_str(expected).unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_garbage_amounts() {
        for text in [
            "", " ", "abc", "1,000.00", "1e5", "NaN", "inf", ".", "-", "1.2.3", "12$", "$12",
            "--1", "1 000",
        ] {
            assert!(
                matches!(parse_amount(text), Err(MoneyError::BadAmount(_))),
                "{text:?} should be rejected"
            );
        }
    }

    #[test]
    fn adding_different_currencies_is_an_error() {
        let usd = Money::parse("10.00", "USD").unwrap();
        let jpy = Money::parse("1000", "JPY").unwrap();
        assert!(matches!(
            usd.checked_add(&jpy),
            Err(MoneyError::CurrencyMismatch { .. })
        ));
        let more = Money::parse(".40", "USD").unwrap();
        assert_eq!(
            usd.checked_add(&more).unwrap(),
            Money::parse("10.40", "USD").unwrap()
        );
    }

    #[test]
    fn currency_codes_are_validated() {
        assert!(Currency::new("USD").is_ok());
        for bad in ["usd", "US", "USDX", "U$D", ""] {
            assert!(Currency::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_money_per_currency() {
        assert_eq!(
            Money::parse("1234.5", "USD").unwrap().to_string(),
            "$1,234.50"
        );
        assert_eq!(Money::parse("4330", "JPY").unwrap().to_string(), "¥4,330");
        assert_eq!(Money::parse("-100", "USD").unwrap().to_string(), "-$100.00");
        assert_eq!(
            Money::parse("999.999", "CHF").unwrap().to_string(),
            "1,000.00 CHF"
        );
        assert_eq!(
            Money::parse("123456789", "JPY").unwrap().to_string(),
            "¥123,456,789"
        );
    }

    #[test]
    fn series_canonical_form_is_stable_and_label_order_free() {
        let a = SeriesKey::new("rs", "020-1", "m")
            .with_label("b", "2")
            .with_label("a", "1");
        let b = SeriesKey::new("rs", "020-1", "m")
            .with_label("a", "1")
            .with_label("b", "2");
        assert_eq!(a.canonical(), b.canonical());
        assert_ne!(
            a.canonical(),
            SeriesKey::new("rs", "020-1", "m").canonical()
        );
    }
}
