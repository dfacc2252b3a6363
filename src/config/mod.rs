//! TOML configuration: `RawConfig` (serde, `deny_unknown_fields`) is checked as a whole by
//! [`validate`], which reports *every* bad field with its path, into a `Config` that the
//! runtime builds from.

pub mod routing;
pub mod rules;
mod secret;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;

pub use secret::{Secret, SecretRef};

use crate::model::{Currency, Money, Severity, parse_amount};
use crate::notify::slack::{RawSlack, SlackReceiver};
use crate::sources::file::config::{FileSettings, RawFile};
use crate::sources::prometheus::config::{PrometheusSettings, RawPrometheus};
use crate::sources::racknap::config::{RacknapSettings, RawRacknap};
use crate::sources::rackspace::config::{RackspaceSettings, RawRackspace};
use crate::sources::sakura::config::{RawSakura, SakuraSettings};
use crate::sources::threescale::config::{RawThreescale, ThreescaleSettings};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9750";

/// One problem in a config file: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} error(s)", self.file.display(), self.errors.len())?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- raw (as written)

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub evaluation: RawEvaluation,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub sources: Vec<RawSource>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    #[serde(default)]
    pub receivers: Vec<RawReceiver>,
    pub route: Option<routing::RawRoute>,
    #[serde(default)]
    pub inhibit_rules: Vec<routing::RawInhibitRule>,
    #[serde(default)]
    pub api: routing::RawApi,
    #[serde(default)]
    pub links: RawLinks,
    /// Only with `store.postgres`: how replicas share the accounts.
    pub cluster: Option<RawCluster>,
}

/// `[cluster]`: replicas sharing one PostgreSQL store.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// This replica's id, unique among the replicas; default: host name and process id.
    pub replica: Option<String>,
    /// `shard` (default: each account is polled and evaluated by one replica) or `ha`
    /// (every replica covers every account; one delivers notifications).
    pub mode: Option<String>,
    /// How long a lease lasts without renewal (default 30s).
    pub lease: Option<String>,
    /// How often leases are renewed and the assignment recomputed (default 10s).
    pub heartbeat: Option<String>,
}

/// URL templates for the links every notification carries.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLinks {
    /// Where people reach this spendwatch: alert pages are `{external_url}/alerts/{fingerprint}`.
    pub external_url: Option<String>,
    /// Grafana (or any) panel URL template, e.g. `https://grafana/d/spendwatch-overview?var-account={{ account }}`.
    pub dashboard: Option<String>,
    /// Billing console URL template per source name.
    #[serde(default)]
    pub console: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub sqlite: Option<RawSqlite>,
    pub postgres: Option<RawPostgres>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    /// `postgresql://user:password@host:port/dbname?sslmode=...`: holds a password, so a
    /// secret reference.
    pub url: SecretRef,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSqlite {
    pub path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvaluation {
    pub interval: Option<String>,
    /// Rules evaluated at once (default: the machine's cores).
    pub threads: Option<usize>,
}

/// Bounds that keep one misbehaving source from growing the store without end.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Distinct series a source may create (default 100,000); observations of further new
    /// series are refused and counted, existing series keep updating.
    pub max_series_per_source: Option<usize>,
    /// Consecutive polls a period-to-date total must stay at exactly 0, after a non-zero
    /// value in the same period, before the zero is stored (default 3; 1 stores it at once).
    /// A billing API answering "no charges" for one poll mid-period is a glitch, not a refund.
    pub confirm_zero_polls: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawSource {
    Rackspace(RawRackspace),
    Prometheus(RawPrometheus),
    File(RawFile),
    Threescale(RawThreescale),
    Sakura(RawSakura),
    Racknap(RawRacknap),
}

// Built once at start-up: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawRule {
    Budget(RawBudget),
    Ratio(rules::RawRatio),
    Divergence(rules::RawDivergence),
    Change(rules::RawChange),
    Stale(rules::RawStale),
    Anomaly(rules::RawAnomaly),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    pub name: String,
    /// Name of the source whose spend is budgeted; all sources when absent.
    pub source: Option<String>,
    /// Accounts to watch; all accounts of the source when absent.
    #[serde(default)]
    pub accounts: Vec<String>,
    pub amount: AmountText,
    pub currency: String,
    pub levels: Vec<RawLevel>,
    #[serde(rename = "for")]
    pub hold: Option<String>,
    pub keep_firing_for: Option<String>,
    pub severity: Option<Severity>,
    /// Trailing window whose spend rate the forecast extrapolates.
    pub forecast_window: Option<String>,
    /// `linear` (default) or `profile` (the daily profile of past periods).
    pub forecast: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLevel {
    pub percent: AmountText,
    pub severity: Option<Severity>,
    /// `actual` (period-to-date spend, the default) or `forecast` (projected period end).
    pub basis: Option<String>,
}

/// A decimal written as a TOML number or string (`1000`, `"1000.00"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AmountText {
    Int(i64),
    Float(f64),
    Text(String),
}

impl AmountText {
    pub(crate) fn parse(&self) -> Result<Decimal, String> {
        match self {
            AmountText::Int(i) => Ok(Decimal::from(*i)),
            // TOML floats are parsed by their shortest text form, not the binary value.
            AmountText::Float(f) => parse_amount(&f.to_string()).map_err(|e| e.to_string()),
            AmountText::Text(t) => parse_amount(t).map_err(|e| e.to_string()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawReceiver {
    Webhook(RawWebhook),
    Alertmanager(RawAlertmanager),
    Slack(RawSlack),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub name: String,
    pub url: String,
    /// HMAC-SHA256 signing key.
    pub secret: SecretRef,
    pub timeout: Option<String>,
    /// Body format: `spendwatch` (default) or `alertmanager` (Alertmanager's webhook version 4).
    pub format: Option<WebhookFormat>,
}

/// Pushes alerts to `POST /api/v2/alerts` of every listed Alertmanager.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertmanager {
    pub name: String,
    /// Base URLs, e.g. `["http://alertmanager-0:9093", "http://alertmanager-1:9093"]`.
    pub urls: Vec<String>,
    pub timeout: Option<String>,
    /// How often firing alerts are sent again (Prometheus' `resend_delay`); default 1m.
    pub resend_interval: Option<String>,
    pub auth: Option<RawHttpAuth>,
}

/// `{ bearer = { env = "AM_TOKEN" } }` or `{ basic = { username = "u", password = { file = "p" } } }`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawHttpAuth {
    Bearer(SecretRef),
    Basic(RawBasicAuth),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub username: String,
    pub password: SecretRef,
}

// ---------------------------------------------------------------- validated

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub store: StoreSettings,
    pub evaluation_interval: Duration,
    /// See [`RawEvaluation::threads`].
    pub evaluation_threads: usize,
    /// See [`RawLimits::max_series_per_source`].
    pub max_series_per_source: usize,
    /// See [`RawLimits::confirm_zero_polls`].
    pub confirm_zero_polls: usize,
    pub sources: Vec<SourceSettings>,
    pub rules: Vec<RuleConfig>,
    pub receivers: Vec<ReceiverConfig>,
    /// Where each alert's notifications go and how they are grouped.
    pub routes: crate::alerting::route::Routes,
    pub inhibit_rules: Vec<crate::alerting::inhibit::InhibitRule>,
    /// Bearer token for the API's write endpoints (silences).
    pub api_token: Option<Secret>,
    pub links: LinksConfig,
    /// Set exactly when the store is PostgreSQL: replicas may share it.
    pub cluster: Option<ClusterSettings>,
}

/// How replicas split the work (`[cluster] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterMode {
    /// Each account is polled and evaluated by exactly one live replica.
    Shard,
    /// Every replica polls and evaluates every account (an HA pair); one delivers.
    Ha,
}

impl ClusterMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterMode::Shard => "shard",
            ClusterMode::Ha => "ha",
        }
    }
}

/// Validated `[cluster]`.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub replica: String,
    pub mode: ClusterMode,
    pub lease: Duration,
    pub heartbeat: Duration,
}

/// Host name and process id: unique per process on a host, readable in `pg_stat_activity`.
fn default_replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "spendwatch".into());
    format!("{host}-{}", std::process::id())
}

fn validate_cluster(
    raw: Option<&RawCluster>,
    store: &StoreSettings,
    c: &mut Checker,
) -> Option<ClusterSettings> {
    if matches!(store, StoreSettings::Sqlite { .. }) {
        if raw.is_some() {
            c.error(
                "cluster",
                "replicas share a PostgreSQL store: [cluster] needs [store.postgres] (SQLite is one process)",
            );
        }
        return None;
    }
    let default = RawCluster::default();
    let raw = raw.unwrap_or(&default);
    let replica = match raw.replica.as_deref().map(str::trim) {
        None => default_replica_id(),
        Some(id) if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) => {
            c.error(
                "cluster.replica",
                "must be 1–200 printable characters, e.g. \"spendwatch-0\"",
            );
            String::new()
        }
        Some(id) => id.to_string(),
    };
    let mode = match raw.mode.as_deref() {
        None | Some("shard") => ClusterMode::Shard,
        Some("ha") => ClusterMode::Ha,
        Some(other) => {
            c.error(
                "cluster.mode",
                format!("unknown mode {other:?}: \"shard\" or \"ha\""),
            );
            ClusterMode::Shard
        }
    };
    let lease = c.positive_duration(
        "cluster.lease",
        raw.lease.as_deref(),
        Duration::from_secs(30),
    );
    let heartbeat = c.positive_duration(
        "cluster.heartbeat",
        raw.heartbeat.as_deref(),
        Duration::from_secs(10),
    );
    // A lease must survive one missed heartbeat, or a short hiccup moves every account.
    if heartbeat * 2 > lease {
        c.error(
            "cluster.heartbeat",
            format!(
                "must be at most half of cluster.lease ({}), e.g. lease = \"30s\", heartbeat = \"10s\"",
                humantime::format_duration(lease)
            ),
        );
    }
    Some(ClusterSettings {
        replica,
        mode,
        lease,
        heartbeat,
    })
}

/// Where history and alert state live (`[store]`): exactly one backend.
#[derive(Debug, Clone)]
pub enum StoreSettings {
    /// The default: one file next to the config.
    Sqlite { path: PathBuf },
    /// Shared by replicas; the URL holds a password and prints as `***`.
    Postgres { url: Secret },
}

impl StoreSettings {
    /// Which store, for logs and `check`: the SQLite path, or the PostgreSQL server and
    /// database without credentials.
    pub fn describe(&self) -> String {
        match self {
            StoreSettings::Sqlite { path } => format!("sqlite {}", path.display()),
            StoreSettings::Postgres { url } => match crate::store::postgres_target(url.expose()) {
                Some(target) => format!("postgres {target}"),
                None => "postgres".into(),
            },
        }
    }
}

/// Validated `[links]`: templates are minijinja over the alert's labels, `fingerprint`, `rule`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinksConfig {
    pub external_url: Option<url::Url>,
    pub dashboard: Option<String>,
    pub console: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub enum SourceSettings {
    Rackspace(RackspaceSettings),
    Prometheus(PrometheusSettings),
    File(FileSettings),
    Threescale(ThreescaleSettings),
    Sakura(SakuraSettings),
    Racknap(RacknapSettings),
}

impl SourceSettings {
    pub fn name(&self) -> &str {
        match self {
            SourceSettings::Rackspace(s) => &s.name,
            SourceSettings::Prometheus(s) => &s.name,
            SourceSettings::File(s) => &s.name,
            SourceSettings::Threescale(s) => &s.name,
            SourceSettings::Sakura(s) => &s.name,
            SourceSettings::Racknap(s) => &s.name,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSettings::Rackspace(_) => "rackspace",
            SourceSettings::Prometheus(_) => "prometheus",
            SourceSettings::File(_) => "file",
            SourceSettings::Threescale(_) => "threescale",
            SourceSettings::Sakura(_) => "sakura",
            SourceSettings::Racknap(_) => "racknap",
        }
    }
    pub fn interval(&self) -> Duration {
        match self {
            SourceSettings::Rackspace(s) => s.interval,
            SourceSettings::Prometheus(s) => s.interval,
            SourceSettings::File(s) => s.interval,
            SourceSettings::Threescale(s) => s.interval,
            SourceSettings::Sakura(s) => s.interval,
            SourceSettings::Racknap(s) => s.interval,
        }
    }
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum RuleConfig {
    Budget(BudgetRule),
    Ratio(rules::RatioRule),
    Divergence(rules::DivergenceRule),
    Change(rules::ChangeRule),
    Stale(rules::StaleRule),
    Anomaly(rules::AnomalyRule),
}

impl RuleConfig {
    /// The sources the rule names, with the field each is named in.
    pub fn source_refs(&self) -> Vec<(&'static str, Option<&str>)> {
        match self {
            RuleConfig::Budget(r) => vec![("source", r.source.as_deref())],
            RuleConfig::Ratio(r) => vec![
                ("numerator.source", r.numerator.source.as_deref()),
                ("denominator.source", r.denominator.source.as_deref()),
            ],
            RuleConfig::Divergence(r) => vec![
                ("spend.source", r.spend.source.as_deref()),
                ("traffic.source", r.traffic.source.as_deref()),
            ],
            RuleConfig::Change(r) => vec![("series.source", r.series.source.as_deref())],
            RuleConfig::Stale(r) => vec![("source", r.source.as_deref())],
            RuleConfig::Anomaly(r) => match &r.input {
                rules::AnomalyInput::Series(s) => vec![("series.source", s.source.as_deref())],
                // The ratio rule's own sources are checked with it.
                rules::AnomalyInput::UnitCost { .. } => Vec::new(),
            },
        }
    }

    pub fn name(&self) -> &str {
        match self {
            RuleConfig::Budget(r) => &r.name,
            RuleConfig::Ratio(r) => &r.meta.name,
            RuleConfig::Divergence(r) => &r.meta.name,
            RuleConfig::Change(r) => &r.meta.name,
            RuleConfig::Stale(r) => &r.meta.name,
            RuleConfig::Anomaly(r) => &r.meta.name,
        }
    }
}

fn validate_links(raw: &RawLinks, sources: &BTreeSet<String>, c: &mut Checker) -> LinksConfig {
    let mut check = |path: String, template: &str| {
        if let Err(e) = crate::alerting::links::check_template(template) {
            c.error(path, e);
        }
    };
    if let Some(t) = &raw.dashboard {
        check("links.dashboard".into(), t);
    }
    for (source, t) in &raw.console {
        check(format!("links.console.{source}"), t);
    }
    for source in raw.console.keys() {
        if !sources.contains(source) {
            c.error(
                format!("links.console.{source}"),
                format!("no source named {source:?}"),
            );
        }
    }
    LinksConfig {
        external_url: raw
            .external_url
            .as_deref()
            .and_then(|u| c.url("links.external_url", u)),
        dashboard: raw.dashboard.clone(),
        console: raw.console.clone(),
    }
}

/// Anomaly rules on a unit cost get their ratio rule, by name, once all rules are known.
fn resolve_unit_cost_inputs(rules: &mut [(String, RuleConfig)], c: &mut Checker) {
    let ratios: BTreeMap<String, rules::RatioRule> = rules
        .iter()
        .filter_map(|(_, r)| match r {
            RuleConfig::Ratio(ratio) => Some((ratio.meta.name.clone(), ratio.clone())),
            _ => None,
        })
        .collect();
    for (path, rule) in rules.iter_mut() {
        if let RuleConfig::Anomaly(a) = rule
            && let rules::AnomalyInput::UnitCost { ratio, rule } = &mut a.input
        {
            match ratios.get(ratio.as_str()) {
                Some(found) => *rule = Some(Box::new(found.clone())),
                None => c.error(
                    format!("{path}.unit_cost_of"),
                    format!("no ratio rule named {ratio:?}"),
                ),
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    Actual,
    Forecast,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Actual => "actual",
            Basis::Forecast => "forecast",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForecastMethod {
    /// The recent spend rate extrapolated to the period end.
    Linear,
    /// This period's spend so far scaled by the share past periods had reached by now.
    Profile,
}

#[derive(Debug, Clone)]
pub struct BudgetLevel {
    pub percent: Decimal,
    pub severity: Severity,
    pub basis: Basis,
}

#[derive(Debug, Clone)]
pub struct BudgetRule {
    pub name: String,
    pub source: Option<String>,
    pub accounts: Vec<String>,
    pub budget: Money,
    pub levels: Vec<BudgetLevel>,
    pub hold: Duration,
    pub keep_firing_for: Duration,
    pub forecast_window: Duration,
    pub forecast: ForecastMethod,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub enum ReceiverConfig {
    Webhook(WebhookReceiver),
    Alertmanager(AlertmanagerReceiver),
    Slack(SlackReceiver),
}

impl ReceiverConfig {
    pub fn name(&self) -> &str {
        match self {
            ReceiverConfig::Webhook(w) => &w.name,
            ReceiverConfig::Alertmanager(a) => &a.name,
            ReceiverConfig::Slack(s) => &s.name,
        }
    }
}

#[derive(Debug, Clone)]
pub struct WebhookReceiver {
    pub name: String,
    pub url: url::Url,
    pub secret: Secret,
    pub timeout: Duration,
    pub format: WebhookFormat,
}

/// The body a generic webhook receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// spendwatch's own versioned body.
    #[default]
    Spendwatch,
    /// Alertmanager's webhook body (`"version": "4"`), so existing receivers work unchanged.
    Alertmanager,
}

#[derive(Debug, Clone)]
pub struct AlertmanagerReceiver {
    pub name: String,
    /// Base URLs with a trailing `/`; alerts go to `{url}api/v2/alerts`.
    pub urls: Vec<url::Url>,
    pub timeout: Duration,
    pub resend_interval: Duration,
    pub auth: Option<HttpAuth>,
}

/// Credentials sent with every request.
#[derive(Debug, Clone)]
pub enum HttpAuth {
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

// ---------------------------------------------------------------- loading

/// Collects errors while checking a config; every check records and continues.
#[derive(Default)]
pub struct Checker {
    pub errors: Vec<ConfigError>,
    /// Directory of the config file: relative paths in it are relative to here.
    pub base_dir: PathBuf,
}

impl Checker {
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn duration(&mut self, path: &str, text: Option<&str>, default: Duration) -> Duration {
        match text {
            None => default,
            Some(t) => match humantime::parse_duration(t) {
                Ok(d) => d,
                Err(_) => {
                    self.error(
                        path,
                        format!("invalid duration {t:?} (e.g. \"5m\", \"1h30m\", \"2d\")"),
                    );
                    default
                }
            },
        }
    }

    pub fn positive_duration(
        &mut self,
        path: &str,
        text: Option<&str>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(path, text, default);
        if d.is_zero() {
            self.error(path, "must be greater than zero");
            default
        } else {
            d
        }
    }

    pub fn url(&mut self, path: &str, text: &str) -> Option<url::Url> {
        match url::Url::parse(text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(_) => {
                self.error(
                    path,
                    format!("invalid URL {text:?}: expected an http(s) URL with a host"),
                );
                None
            }
            Err(e) => {
                self.error(path, format!("invalid URL {text:?}: {e}"));
                None
            }
        }
    }

    pub fn secret(&mut self, path: &str, reference: &SecretRef) -> Secret {
        let resolved = match reference {
            SecretRef::File(p) if p.is_relative() => SecretRef::File(self.base_dir.join(p)),
            other => other.clone(),
        };
        match resolved.load() {
            Ok(s) => s,
            Err(e) => {
                self.error(path, e);
                Secret::new("")
            }
        }
    }

    pub fn name(&mut self, path: &str, name: &str) {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            self.error(
                path,
                format!("invalid name {name:?}: use letters, digits, '-', '_' or '.'"),
            );
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let fail = |errors| ConfigErrors {
            file: path.to_path_buf(),
            errors,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            fail(vec![ConfigError {
                path: String::new(),
                message: format!("cannot read config file: {e}"),
            }])
        })?;
        let raw = parse_raw(&text).map_err(|e| fail(vec![e]))?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        validate(raw, base_dir).map_err(fail)
    }
}

/// Parses TOML into the raw schema. Errors carry the field path and never quote the
/// source line (it could hold a secret pasted in by mistake).
pub fn parse_raw(text: &str) -> Result<RawConfig, ConfigError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e
            .span()
            .map(|span| {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}")
            })
            .unwrap_or_default();
        ConfigError {
            path: at,
            message: format!("TOML syntax error: {}", e.message()),
        }
    })?;
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// Checks a raw config completely; returns every error found.
pub fn validate(raw: RawConfig, base_dir: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut c = Checker {
        errors: Vec::new(),
        base_dir: base_dir.to_path_buf(),
    };

    let listen_text = raw.server.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
        c.error(
            "server.listen",
            format!("invalid address {listen_text:?} (e.g. \"127.0.0.1:9750\")"),
        );
        SocketAddr::from(([127, 0, 0, 1], 9750))
    });

    let store = validate_store(&raw.store, base_dir, &mut c);

    let evaluation_interval = c.positive_duration(
        "evaluation.interval",
        raw.evaluation.interval.as_deref(),
        Duration::from_secs(60),
    );

    let evaluation_threads = raw
        .evaluation
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    if !(1..=64).contains(&evaluation_threads) {
        c.error("evaluation.threads", "must be between 1 and 64");
    }

    let mut source_names = BTreeSet::new();
    let mut sources = Vec::new();
    for (i, s) in raw.sources.iter().enumerate() {
        let settings = match s {
            RawSource::Rackspace(r) => {
                SourceSettings::Rackspace(r.validate(&format!("sources[{i}].rackspace"), &mut c))
            }
            RawSource::Prometheus(r) => {
                SourceSettings::Prometheus(r.validate(&format!("sources[{i}].prometheus"), &mut c))
            }
            RawSource::File(r) => {
                SourceSettings::File(r.validate(&format!("sources[{i}].file"), &mut c))
            }
            RawSource::Threescale(r) => {
                SourceSettings::Threescale(r.validate(&format!("sources[{i}].threescale"), &mut c))
            }
            RawSource::Sakura(r) => {
                SourceSettings::Sakura(r.validate(&format!("sources[{i}].sakura"), &mut c))
            }
            RawSource::Racknap(r) => {
                SourceSettings::Racknap(r.validate(&format!("sources[{i}].racknap"), &mut c))
            }
        };
        if !source_names.insert(settings.name().to_string()) {
            c.error(
                format!("sources[{i}].{}.name", settings.kind()),
                format!("duplicate source name {:?}", settings.name()),
            );
        }
        sources.push(settings);
    }

    let mut rule_names = BTreeSet::new();
    let mut rules = Vec::new();
    for (i, r) in raw.rules.iter().enumerate() {
        let (path, rule) = match r {
            RawRule::Budget(b) => {
                let path = format!("rules[{i}].budget");
                let rule = RuleConfig::Budget(validate_budget(b, &path, &mut c));
                (path, rule)
            }
            RawRule::Ratio(r) => {
                let path = format!("rules[{i}].ratio");
                (path.clone(), RuleConfig::Ratio(r.validate(&path, &mut c)))
            }
            RawRule::Divergence(r) => {
                let path = format!("rules[{i}].divergence");
                (
                    path.clone(),
                    RuleConfig::Divergence(r.validate(&path, &mut c)),
                )
            }
            RawRule::Change(r) => {
                let path = format!("rules[{i}].change");
                (path.clone(), RuleConfig::Change(r.validate(&path, &mut c)))
            }
            RawRule::Stale(r) => {
                let path = format!("rules[{i}].stale");
                (path.clone(), RuleConfig::Stale(r.validate(&path, &mut c)))
            }
            RawRule::Anomaly(r) => {
                let path = format!("rules[{i}].anomaly");
                (path.clone(), RuleConfig::Anomaly(r.validate(&path, &mut c)))
            }
        };
        // Every source a rule names must exist.
        for (field, source) in rule.source_refs() {
            if let Some(name) = source
                && !source_names.contains(name)
            {
                c.error(
                    format!("{path}.{field}"),
                    format!("no source named {name:?}"),
                );
            }
        }
        if !rule_names.insert(rule.name().to_string()) {
            c.error(
                format!("{path}.name"),
                format!("duplicate rule name {:?}", rule.name()),
            );
        }
        rules.push((path, rule));
    }
    resolve_unit_cost_inputs(&mut rules, &mut c);
    let rules: Vec<RuleConfig> = rules.into_iter().map(|(_, r)| r).collect();

    let mut receiver_names = BTreeSet::new();
    let mut receivers = Vec::new();
    for (i, r) in raw.receivers.iter().enumerate() {
        let (kind, name) = match r {
            RawReceiver::Webhook(w) => ("webhook", &w.name),
            RawReceiver::Alertmanager(a) => ("alertmanager", &a.name),
            RawReceiver::Slack(s) => ("slack", &s.name),
        };
        let path = format!("receivers[{i}].{kind}");
        c.name(&format!("{path}.name"), name);
        if !receiver_names.insert(name.clone()) {
            c.error(
                format!("{path}.name"),
                format!("duplicate receiver name {name:?}"),
            );
        }
        match r {
            RawReceiver::Webhook(w) => {
                let url = c.url(&format!("{path}.url"), &w.url);
                let secret = c.secret(&format!("{path}.secret"), &w.secret);
                let timeout = c.positive_duration(
                    &format!("{path}.timeout"),
                    w.timeout.as_deref(),
                    Duration::from_secs(10),
                );
                if let Some(url) = url {
                    receivers.push(ReceiverConfig::Webhook(WebhookReceiver {
                        name: w.name.clone(),
                        url,
                        secret,
                        timeout,
                        format: w.format.unwrap_or_default(),
                    }));
                }
            }
            RawReceiver::Alertmanager(a) => {
                receivers.push(ReceiverConfig::Alertmanager(validate_alertmanager(
                    a, &path, &mut c,
                )));
            }
            RawReceiver::Slack(raw_slack) => {
                if let Some(slack) = raw_slack.validate(&path, &mut c) {
                    receivers.push(ReceiverConfig::Slack(slack));
                }
            }
        }
    }

    let max_series_per_source = raw.limits.max_series_per_source.unwrap_or(100_000);
    if max_series_per_source == 0 {
        c.error("limits.max_series_per_source", "must be at least 1");
    }
    let confirm_zero_polls = raw.limits.confirm_zero_polls.unwrap_or(3);
    if !(1..=100).contains(&confirm_zero_polls) {
        c.error(
            "limits.confirm_zero_polls",
            "must be between 1 and 100 polls",
        );
    }
    let links = validate_links(&raw.links, &source_names, &mut c);
    let receivers_in_order: Vec<String> = receivers.iter().map(|r| r.name().to_string()).collect();
    let routes = routing::validate_route(
        raw.route.as_ref(),
        &receiver_names,
        &receivers_in_order,
        &mut c,
    );
    let inhibit_rules = routing::validate_inhibit_rules(&raw.inhibit_rules, &mut c);
    let api_token = routing::validate_api(&raw.api, &mut c);
    let cluster = validate_cluster(raw.cluster.as_ref(), &store, &mut c);

    if c.errors.is_empty() {
        Ok(Config {
            listen,
            store,
            evaluation_interval,
            evaluation_threads,
            max_series_per_source,
            confirm_zero_polls,
            sources,
            rules,
            receivers,
            links,
            routes,
            inhibit_rules,
            api_token,
            cluster,
        })
    } else {
        Err(c.errors)
    }
}

fn validate_alertmanager(a: &RawAlertmanager, path: &str, c: &mut Checker) -> AlertmanagerReceiver {
    if a.urls.is_empty() {
        c.error(
            format!("{path}.urls"),
            "at least one Alertmanager base URL is required, e.g. [\"http://127.0.0.1:9093\"]",
        );
    }
    let mut urls: Vec<url::Url> = Vec::new();
    for (j, text) in a.urls.iter().enumerate() {
        let upath = format!("{path}.urls[{j}]");
        let Some(url) = c.url(&upath, text) else {
            continue;
        };
        // URLs appear in logs and metric labels; credentials belong in `auth`.
        if !url.username().is_empty() || url.password().is_some() {
            c.error(
                &upath,
                "credentials in the URL are not accepted; use auth = { basic = { ... } }",
            );
            continue;
        }
        if url.query().is_some() || url.fragment().is_some() {
            c.error(
                &upath,
                "a base URL has no query or fragment; alerts go to {url}/api/v2/alerts",
            );
            continue;
        }
        let url = with_trailing_slash(url);
        if urls.contains(&url) {
            c.error(&upath, format!("duplicate Alertmanager URL {text:?}"));
            continue;
        }
        urls.push(url);
    }
    let auth = match &a.auth {
        None => None,
        Some(RawHttpAuth::Bearer(token)) => Some(HttpAuth::Bearer(
            c.secret(&format!("{path}.auth.bearer"), token),
        )),
        Some(RawHttpAuth::Basic(b)) => {
            if b.username.is_empty() || b.username.contains(':') {
                c.error(
                    format!("{path}.auth.basic.username"),
                    "must be non-empty and contain no ':'",
                );
            }
            Some(HttpAuth::Basic {
                username: b.username.clone(),
                password: c.secret(&format!("{path}.auth.basic.password"), &b.password),
            })
        }
    };
    AlertmanagerReceiver {
        name: a.name.clone(),
        urls,
        timeout: c.positive_duration(
            &format!("{path}.timeout"),
            a.timeout.as_deref(),
            Duration::from_secs(10),
        ),
        resend_interval: c.positive_duration(
            &format!("{path}.resend_interval"),
            a.resend_interval.as_deref(),
            Duration::from_secs(60),
        ),
        auth,
    }
}

fn validate_budget(b: &RawBudget, path: &str, c: &mut Checker) -> BudgetRule {
    c.name(&format!("{path}.name"), &b.name);
    let currency = Currency::new(&b.currency).unwrap_or_else(|e| {
        c.error(format!("{path}.currency"), e.to_string());
        Currency::new("XXX").unwrap_or_else(|_| unreachable!("XXX is a valid code"))
    });
    let amount = match b.amount.parse() {
        Ok(a) if a > Decimal::ZERO => a,
        Ok(_) => {
            c.error(format!("{path}.amount"), "must be greater than zero");
            Decimal::ONE
        }
        Err(e) => {
            c.error(format!("{path}.amount"), e);
            Decimal::ONE
        }
    };
    let default_severity = b.severity.unwrap_or(Severity::Warning);
    if b.levels.is_empty() {
        c.error(
            format!("{path}.levels"),
            "at least one level is required, e.g. [{ percent = 100 }]",
        );
    }
    let mut seen = BTreeSet::new();
    let mut levels = Vec::new();
    for (j, l) in b.levels.iter().enumerate() {
        let lpath = format!("{path}.levels[{j}]");
        let percent = match l.percent.parse() {
            Ok(p) if p > Decimal::ZERO => p,
            Ok(_) => {
                c.error(format!("{lpath}.percent"), "must be greater than zero");
                continue;
            }
            Err(e) => {
                c.error(format!("{lpath}.percent"), e);
                continue;
            }
        };
        let basis = match l.basis.as_deref() {
            None | Some("actual") => Basis::Actual,
            Some("forecast") => Basis::Forecast,
            Some(other) => {
                c.error(
                    format!("{lpath}.basis"),
                    format!("unknown basis {other:?}: use \"actual\" or \"forecast\""),
                );
                continue;
            }
        };
        if !seen.insert((percent.normalize().to_string(), basis.as_str())) {
            c.error(
                lpath.clone(),
                format!("duplicate level {percent}% ({})", basis.as_str()),
            );
        }
        levels.push(BudgetLevel {
            percent: percent.normalize(),
            severity: l.severity.unwrap_or(default_severity),
            basis,
        });
    }
    for name in b.labels.keys() {
        if !is_label_name(name) {
            c.error(
                format!("{path}.labels.{name}"),
                "invalid label name: use [a-zA-Z_][a-zA-Z0-9_]*",
            );
        }
    }
    BudgetRule {
        name: b.name.clone(),
        source: b.source.clone(),
        accounts: b.accounts.clone(),
        budget: Money::new(amount, currency),
        levels,
        hold: c.duration(&format!("{path}.for"), b.hold.as_deref(), Duration::ZERO),
        keep_firing_for: c.duration(
            &format!("{path}.keep_firing_for"),
            b.keep_firing_for.as_deref(),
            Duration::ZERO,
        ),
        forecast_window: c.positive_duration(
            &format!("{path}.forecast_window"),
            b.forecast_window.as_deref(),
            Duration::from_secs(3 * 86_400),
        ),
        forecast: match b.forecast.as_deref() {
            None | Some("linear") => ForecastMethod::Linear,
            Some("profile") => ForecastMethod::Profile,
            Some(other) => {
                c.error(
                    format!("{path}.forecast"),
                    format!("unknown forecast {other:?}: use \"linear\" or \"profile\""),
                );
                ForecastMethod::Linear
            }
        },
        labels: b.labels.clone(),
        annotations: b.annotations.clone(),
    }
}

/// Base URLs are joined with relative paths, so they must end in `/`.
pub fn with_trailing_slash(mut url: url::Url) -> url::Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

fn validate_store(raw: &RawStore, base_dir: &Path, c: &mut Checker) -> StoreSettings {
    let sqlite = |c: &mut Checker| match &raw.sqlite {
        Some(s) if s.path.trim().is_empty() => {
            c.error("store.sqlite.path", "must not be empty");
            PathBuf::new()
        }
        Some(s) => base_dir.join(&s.path),
        None => base_dir.join("spendwatch.db"),
    };
    match &raw.postgres {
        None => StoreSettings::Sqlite { path: sqlite(c) },
        Some(_) if raw.sqlite.is_some() => {
            c.error(
                "store",
                "give one of store.sqlite or store.postgres, not both",
            );
            StoreSettings::Sqlite { path: sqlite(c) }
        }
        Some(pg) => {
            let url = c.secret("store.postgres.url", &pg.url);
            // Checked here so that `check` catches it; the message never quotes the URL.
            if !url.expose().is_empty() && postgres::Config::from_str(url.expose()).is_err() {
                c.error(
                    "store.postgres.url",
                    "not a valid PostgreSQL URL (value not shown), e.g. \
                     postgresql://spendwatch:PASSWORD@db.example:5432/spendwatch",
                );
            }
            StoreSettings::Postgres { url }
        }
    }
}

/// Stands in for a URL that failed validation; `validate` returns errors before any use.
pub fn placeholder_url() -> url::Url {
    url::Url::parse("http://invalid.invalid/")
        .unwrap_or_else(|_| unreachable!("a constant, valid URL"))
}

pub(crate) fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Config {
    /// One line for `spendwatch check`.
    pub fn summary(&self) -> String {
        format!(
            "config ok: {} source(s), {} rule(s), {} receiver(s), store {}, listen {}",
            self.sources.len(),
            self.rules.len(),
            self.receivers.len(),
            self.store.describe(),
            self.listen
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Config, Vec<ConfigError>> {
        let raw = parse_raw(text).map_err(|e| vec![e])?;
        validate(raw, Path::new("/tmp"))
    }

    /// `[store.postgres]` with its URL in a file; the test never needs the variable set.
    fn with_pg_url(
        url: &str,
        extra: &str,
    ) -> (tempfile::TempDir, Result<Config, Vec<ConfigError>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pg-url");
        std::fs::write(&path, format!("{url}\n")).unwrap();
        let text = format!(
            "[store.postgres]\nurl = {{ file = {:?} }}\n{extra}",
            path.display().to_string()
        );
        let result = check(&text);
        (dir, result)
    }

    #[test]
    fn the_store_is_sqlite_by_default_and_postgres_when_configured() {
        let config = check("").unwrap();
        assert!(
            matches!(&config.store, StoreSettings::Sqlite { path } if path == Path::new("/tmp/spendwatch.db"))
        );
        assert!(config.summary().contains("store sqlite /tmp/spendwatch.db"));
        let (_dir, config) = with_pg_url(
            "postgresql://sw:hunter2-pg@db.example:5433/spend?sslmode=require",
            "",
        );
        let config = config.unwrap();
        assert!(matches!(config.store, StoreSettings::Postgres { .. }));
        let summary = config.summary();
        assert!(
            summary.contains("store postgres db.example:5433/spend"),
            "{summary}"
        );
        assert!(!summary.contains("hunter2"), "{summary}");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn exactly_one_store_and_a_bad_url_is_not_echoed() {
        let (_dir, both) = with_pg_url(
            "postgresql://sw:pw@127.0.0.1/spend",
            "[store.sqlite]\npath = \"s.db\"\n",
        );
        let errs = both.unwrap_err();
        assert!(
            errs.iter().any(|e| e.to_string().contains("not both")),
            "{errs:?}"
        );
        let (_dir, bad) = with_pg_url("postgresql://sw:hunter2-pg@127.0.0.1:notaport/spend", "");
        let errs = bad.unwrap_err();
        let text = format!("{errs:?}");
        assert!(text.contains("store.postgres.url"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let unset =
            check("[store.postgres]\nurl = { env = \"SPENDWATCH_TEST_SURELY_UNSET_PG\" }\n")
                .unwrap_err();
        assert!(format!("{unset:?}").contains("SPENDWATCH_TEST_SURELY_UNSET_PG"));
    }

    #[test]
    fn reports_every_bad_field_with_its_path() {
        let errs = check(
            r#"
[[sources]]
[sources.rackspace]
name = "rs"
username = "u"
api_key = { env = "PATH" }
accounts = ["020-1"]
interval = "5 parsecs"

[[rules]]
[rules.budget]
name = "b"
amount = "12x"
currency = "USD"
levels = [{ percent = 100 }]
"#,
        )
        .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"sources[0].rackspace.interval"), "{errs:?}");
        assert!(paths.contains(&"rules[0].budget.amount"), "{errs:?}");
    }

    #[test]
    fn unknown_fields_are_refused_with_a_path() {
        let errs = check("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        assert_eq!(errs[0].path, "server.lisen");
        assert!(errs[0].message.contains("lisen"), "{errs:?}");
    }

    #[test]
    fn syntax_errors_name_the_line_without_quoting_it() {
        let errs = check("a = 1\napi_key = \"hunter2\nb = 2").unwrap_err();
        assert!(errs[0].path.starts_with("line "), "{errs:?}");
        assert!(!errs[0].to_string().contains("hunter2"));
    }

    #[test]
    fn rules_must_name_existing_sources() {
        let errs = check(
            r#"
[[rules]]
[rules.ratio]
name = "r"
numerator = { source = "nope" }
denominator = { source = "also-nope" }
band = { max = 1 }
"#,
        )
        .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert!(
            paths.contains(&"rules[0].ratio.numerator.source"),
            "{errs:?}"
        );
        assert!(
            paths.contains(&"rules[0].ratio.denominator.source"),
            "{errs:?}"
        );
    }

    #[test]
    fn budget_levels_are_checked() {
        let errs = check(
            r#"
[[rules]]
[rules.budget]
name = "b"
amount = 1000
currency = "usd"
levels = [{ percent = 80, basis = "guess" }, { percent = -1 }]
"#,
        )
        .unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter()
                .any(|e| e.starts_with("rules[0].budget.currency")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|e| e.starts_with("rules[0].budget.levels[0].basis")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|e| e.starts_with("rules[0].budget.levels[1].percent")),
            "{text:?}"
        );
    }

    #[test]
    fn anomaly_on_a_unit_cost_names_an_existing_ratio_rule() {
        let ratio = r#"
[[rules]]
[rules.ratio]
name = "unit-cost"
numerator = {}
denominator = {}
band = { max = "0.10" }
"#;
        let ok = check(&format!(
            "{ratio}\n[[rules]]\n[rules.anomaly]\nname = \"a\"\nunit_cost_of = \"unit-cost\"\nwindow = \"1h\"\n"
        ))
        .unwrap();
        let RuleConfig::Anomaly(a) = &ok.rules[1] else {
            panic!("{:?}", ok.rules[1]);
        };
        assert!(matches!(
            &a.input,
            rules::AnomalyInput::UnitCost { rule: Some(r), .. } if r.meta.name == "unit-cost"
        ));

        let errs = check(&format!(
            "{ratio}\n[[rules]]\n[rules.anomaly]\nname = \"a\"\nunit_cost_of = \"nope\"\n\n[[rules]]\n[rules.anomaly]\nname = \"b\"\nunit_cost_of = \"unit-cost\"\nseries = {{}}\n"
        ))
        .unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter()
                .any(|e| e.starts_with("rules[1].anomaly.unit_cost_of")
                    && e.contains("no ratio rule named \"nope\"")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|e| e.starts_with("rules[2].anomaly.unit_cost_of") && e.contains("not both")),
            "{text:?}"
        );
    }

    #[test]
    fn alertmanager_receiver_with_defaults_and_auth() {
        let config = check(
            r#"
[[receivers]]
alertmanager = { name = "am", urls = ["http://127.0.0.1:9093", "http://am-1:9093/prefix"] }

[[receivers]]
[receivers.alertmanager]
name = "am-auth"
urls = ["https://am.example"]
timeout = "3s"
resend_interval = "30s"
auth = { bearer = { env = "PATH" } }
"#,
        )
        .unwrap();
        let [
            ReceiverConfig::Alertmanager(plain),
            ReceiverConfig::Alertmanager(authed),
        ] = config.receivers.as_slice()
        else {
            panic!("{:?}", config.receivers);
        };
        assert_eq!(plain.name, "am");
        assert_eq!(plain.urls[0].as_str(), "http://127.0.0.1:9093/");
        assert_eq!(plain.urls[1].as_str(), "http://am-1:9093/prefix/");
        assert_eq!(plain.timeout, Duration::from_secs(10));
        assert_eq!(plain.resend_interval, Duration::from_secs(60));
        assert!(plain.auth.is_none());
        assert_eq!(authed.timeout, Duration::from_secs(3));
        assert_eq!(authed.resend_interval, Duration::from_secs(30));
        assert!(matches!(authed.auth, Some(HttpAuth::Bearer(_))));
        assert!(!format!("{authed:?}").contains(&std::env::var("PATH").unwrap()));
    }

    #[test]
    fn alertmanager_receiver_errors_name_their_field() {
        let errs = check(
            r#"
[[receivers]]
alertmanager = { name = "none", urls = [] }

[[receivers]]
[receivers.alertmanager]
name = "bad"
urls = ["http://user:pw@am:9093", "ftp://am", "http://am:9093", "http://am:9093/", "http://am/?x=1"]
resend_interval = "0s"
auth = { basic = { username = "", password = { env = "SPENDWATCH_TEST_SURELY_UNSET" } } }
"#,
        )
        .unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        for path in [
            "receivers[0].alertmanager.urls: at least one",
            "receivers[1].alertmanager.urls[0]: credentials in the URL",
            "receivers[1].alertmanager.urls[1]: invalid URL",
            "receivers[1].alertmanager.urls[3]: duplicate",
            "receivers[1].alertmanager.urls[4]: a base URL has no query",
            "receivers[1].alertmanager.resend_interval",
            "receivers[1].alertmanager.auth.basic.username",
            "receivers[1].alertmanager.auth.basic.password",
        ] {
            assert!(
                text.iter().any(|e| e.starts_with(path)),
                "{path}: {text:#?}"
            );
        }
        assert!(!text.iter().any(|e| e.contains("pw@")), "{text:#?}");
    }

    #[test]
    fn webhook_format_defaults_to_spendwatch() {
        let hook = |format: &str| {
            format!(
                "[[receivers]]\nwebhook = {{ name = \"h\", url = \"http://127.0.0.1:1/\", secret = {{ env = \"PATH\" }}{format} }}\n"
            )
        };
        let formats: Vec<WebhookFormat> = [
            "",
            ", format = \"spendwatch\"",
            ", format = \"alertmanager\"",
        ]
        .iter()
        .map(|f| match check(&hook(f)).unwrap().receivers.as_slice() {
            [ReceiverConfig::Webhook(w)] => w.format,
            other => panic!("{other:?}"),
        })
        .collect();
        assert_eq!(
            formats,
            [
                WebhookFormat::Spendwatch,
                WebhookFormat::Spendwatch,
                WebhookFormat::Alertmanager
            ]
        );
        let errs = check(&hook(", format = \"xml\"")).unwrap_err();
        assert_eq!(errs[0].path, "receivers[0].webhook.format", "{errs:?}");
        assert!(errs[0].message.contains("alertmanager"), "{errs:?}");
    }

    #[test]
    fn cluster_settings_default_with_postgres_and_are_refused_with_sqlite() {
        let url = "postgresql://sw:pw@db.example/spend";
        let (_dir, config) = with_pg_url(url, "");
        let cluster = config
            .unwrap()
            .cluster
            .expect("postgres: a cluster of one or more");
        assert_eq!(cluster.mode, ClusterMode::Shard);
        assert_eq!(
            (cluster.lease, cluster.heartbeat),
            (Duration::from_secs(30), Duration::from_secs(10))
        );
        assert!(
            cluster
                .replica
                .ends_with(&format!("-{}", std::process::id()))
        );

        let (_dir, config) = with_pg_url(
            url,
            "[cluster]\nreplica = \"sw-0\"\nmode = \"ha\"\nlease = \"3s\"\nheartbeat = \"1s\"\n",
        );
        let cluster = config.unwrap().cluster.unwrap();
        assert_eq!(
            (cluster.replica.as_str(), cluster.mode),
            ("sw-0", ClusterMode::Ha)
        );

        let (_dir, errs) = with_pg_url(
            url,
            "[cluster]\nreplica = \"\"\nmode = \"ring\"\nlease = \"10s\"\nheartbeat = \"6s\"\n",
        );
        let paths: Vec<String> = errs.unwrap_err().into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            ["cluster.replica", "cluster.mode", "cluster.heartbeat"]
        );

        let errs = check("[cluster]\nmode = \"ha\"\n").unwrap_err();
        assert_eq!(errs[0].path, "cluster", "{errs:?}");
        assert!(check("").unwrap().cluster.is_none());
    }

    #[test]
    fn series_limit_defaults_and_refuses_zero() {
        assert_eq!(check("").unwrap().max_series_per_source, 100_000);
        assert_eq!(
            check("[limits]\nmax_series_per_source = 5\n")
                .unwrap()
                .max_series_per_source,
            5
        );
        let errs = check("[limits]\nmax_series_per_source = 0\n").unwrap_err();
        assert_eq!(errs[0].path, "limits.max_series_per_source", "{errs:?}");
    }

    #[test]
    fn evaluation_threads_default_to_the_cores_and_are_bounded() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(check("").unwrap().evaluation_threads, cores);
        assert_eq!(
            check("[evaluation]\nthreads = 1\n")
                .unwrap()
                .evaluation_threads,
            1
        );
        for bad in ["0", "65"] {
            let errs = check(&format!("[evaluation]\nthreads = {bad}\n")).unwrap_err();
            assert_eq!(errs[0].path, "evaluation.threads", "{errs:?}");
        }
    }

    #[test]
    fn zero_confirmation_defaults_to_three_polls_and_is_bounded() {
        assert_eq!(check("").unwrap().confirm_zero_polls, 3);
        assert_eq!(
            check("[limits]\nconfirm_zero_polls = 1\n")
                .unwrap()
                .confirm_zero_polls,
            1
        );
        for bad in ["0", "101"] {
            let errs = check(&format!("[limits]\nconfirm_zero_polls = {bad}\n")).unwrap_err();
            assert_eq!(errs[0].path, "limits.confirm_zero_polls", "{errs:?}");
        }
    }
}
