//! Metric families (prometheus crate). The pipeline reports into these through small typed
//! methods; this module never calls into the pipeline. Secrets never become label values.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use rust_decimal::prelude::ToPrimitive;

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::Timestamp;

use crate::model::{AlertState, Observation, ObservationKind, series};

/// One budget evaluation of one account, as metric values.
pub struct BudgetSample<'a> {
    pub rule: &'a str,
    pub source: &'a str,
    pub account: &'a str,
    pub currency: &'a str,
    pub budget: f64,
    pub actual: f64,
    pub forecast: Option<f64>,
}

mod data;

/// The data gauges' families; label names sorted, values passed in that order.
static DATA_FAMILIES: &[data::DataFamily] = &[
    data::DataFamily {
        name: "spendwatch_spend_period_to_date",
        help: "Spend in the current billing period so far, in the account's currency.",
        labels: &["account", "currency", "source"],
    },
    data::DataFamily {
        name: "spendwatch_spend_last_period",
        help: "Spend of the most recent closed billing period, in the account's currency.",
        labels: &["account", "currency", "source"],
    },
    data::DataFamily {
        name: "spendwatch_line_item_spend_period_to_date",
        help: "Spend per line item in the current billing period so far, in the account's currency.",
        labels: &["account", "currency", "item", "source"],
    },
    data::DataFamily {
        name: "spendwatch_line_item_spend_last_period",
        help: "Spend per line item in the most recent closed billing period, in the account's currency.",
        labels: &["account", "currency", "item", "source"],
    },
    data::DataFamily {
        name: "spendwatch_usage_period_to_date",
        help: "Usage per line item in the current billing period so far, in the unit named by `unit`.",
        labels: &["account", "item", "source", "unit"],
    },
    data::DataFamily {
        name: "spendwatch_usage_last_period",
        help: "Usage per line item in the most recent closed billing period, in the unit named by `unit`.",
        labels: &["account", "item", "source", "unit"],
    },
    data::DataFamily {
        name: "spendwatch_traffic",
        help: "Latest traffic value per traffic series, in the unit named by `unit`.",
        labels: &["account", "series", "source", "unit"],
    },
];
const SPEND_PTD_FAMILY: usize = 0;
const SPEND_LAST_FAMILY: usize = 1;
const ITEM_PTD_FAMILY: usize = 2;
const ITEM_LAST_FAMILY: usize = 3;
const USAGE_PTD_FAMILY: usize = 4;
const USAGE_LAST_FAMILY: usize = 5;
const TRAFFIC_FAMILY: usize = 6;

pub struct Metrics {
    registry: Families,
    /// Spend, line-item, usage and traffic gauges: one per stored series.
    data: data::DataGauges,
    /// Per series: the data time behind each gauge value, so older data never overwrites newer.
    gauge_times: Mutex<HashMap<String, Timestamp>>,
    /// Newest data time per (source, account), for the lag gauge.
    newest_data: Mutex<HashMap<(String, String), Timestamp>>,
    /// (source, account) → last successful poll, for `/sources` (not exported: the
    /// per-source gauge is enough for alerting, and this keeps an account label off it).
    last_poll_by_account: Mutex<HashMap<(String, String), Timestamp>>,
    data_lag: GaugeVec,
    billing_period_end: GaugeVec,
    forecast: GaugeVec,
    budget: GaugeVec,
    budget_ratio: GaugeVec,
    unit_cost: GaugeVec,
    rule_instances: IntGaugeVec,
    anomaly_band: GaugeVec,
    anomaly_score: GaugeVec,
    anomaly_value: GaugeVec,
    anomaly_state_age: GaugeVec,
    anomaly_state_samples: GaugeVec,
    unit_cost_band: GaugeVec,
    polls: IntCounterVec,
    poll_errors: IntCounterVec,
    poll_duration: HistogramVec,
    last_successful_poll: GaugeVec,
    last_data: GaugeVec,
    observations_written: IntCounterVec,
    alerts: IntGaugeVec,
    rule_evaluations: IntCounterVec,
    rule_evaluation_duration: HistogramVec,
    alert_transitions: IntCounterVec,
    outbox_pending: IntGauge,
    outbox_oldest_pending_age: Gauge,
    notifications: IntCounterVec,
    notification_failures: IntCounterVec,
    notification_duration: HistogramVec,
    alertmanager_requests: IntCounterVec,
    alertmanager_resends: IntCounterVec,
    notification_groups_waiting: IntGauge,
    silences_active: IntGauge,
    cluster_held: IntGaugeVec,
    cluster_delivering: IntGauge,
    cluster_replicas_live: IntGauge,
    cluster_lease_changes: IntCounterVec,
    cluster_heartbeat_failures: prometheus::IntCounter,
    cluster_last_heartbeat: Gauge,
}

/// What `# TYPE` says a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// One registered family as documented: the README's metrics reference and the deploy
/// tests (dashboards and alert rules may only name families listed here) read these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyDoc {
    pub name: String,
    pub kind: MetricType,
    pub help: String,
    pub labels: Vec<String>,
}

impl FamilyDoc {
    /// The sample names the family exposes (`_bucket`, `_sum`, `_count` for a histogram).
    pub fn sample_names(&self) -> Vec<String> {
        match self.kind {
            MetricType::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{}{s}", self.name))
                .collect(),
            MetricType::Counter | MetricType::Gauge => vec![self.name.clone()],
        }
    }
}

/// The registry plus a record of each family registered through the helpers below. The
/// registry is private to it, so a family cannot be served without being documented.
struct Families {
    registry: Registry,
    docs: Mutex<Vec<FamilyDoc>>,
}

impl Families {
    fn new() -> Self {
        Families {
            registry: Registry::new(),
            docs: Mutex::new(Vec::new()),
        }
    }

    fn add<C: Collector + Clone + 'static>(
        &self,
        collector: C,
        kind: MetricType,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> C {
        self.registry
            .register(Box::new(collector.clone()))
            .unwrap_or_else(|e| panic!("register {name}: {e}"));
        self.document(kind, name, help, labels);
        collector
    }

    /// Records a family served outside the registry (the data gauges).
    fn document(&self, kind: MetricType, name: &str, help: &str, labels: &[&str]) {
        self.docs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(FamilyDoc {
                name: name.to_string(),
                kind,
                help: help.to_string(),
                labels: labels.iter().map(|l| l.to_string()).collect(),
            });
    }
}

fn gauge_vec(registry: &Families, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry.add(g, MetricType::Gauge, name, help, labels)
}

fn int_gauge_vec(registry: &Families, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry.add(g, MetricType::Gauge, name, help, labels)
}

fn gauge(registry: &Families, name: &str, help: &str) -> Gauge {
    let g = Gauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry.add(g, MetricType::Gauge, name, help, &[])
}

fn int_gauge(registry: &Families, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry.add(g, MetricType::Gauge, name, help, &[])
}

fn counter_vec(registry: &Families, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry.add(c, MetricType::Counter, name, help, labels)
}

fn histogram_vec(
    registry: &Families,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry.add(h, MetricType::Histogram, name, help, labels)
}

fn to_f64(d: rust_decimal::Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Builds the fixed set of families. Names and labels are constants, so registration
    /// cannot fail at run time; a panic here is a programming error caught by every test.
    pub fn new() -> Self {
        let r = Families::new();
        let poll_buckets = vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
        let fast_buckets = vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
        for f in DATA_FAMILIES {
            r.document(MetricType::Gauge, f.name, f.help, f.labels);
        }
        let m = Metrics {
            data: data::DataGauges::new(DATA_FAMILIES),
            gauge_times: Mutex::new(HashMap::new()),
            newest_data: Mutex::new(HashMap::new()),
            last_poll_by_account: Mutex::new(HashMap::new()),
            data_lag: gauge_vec(
                &r,
                "spendwatch_data_lag_seconds",
                "Seconds between now and the newest data time from a source and account; refreshed at every poll and evaluation, so it grows while no new data arrives.",
                &["source", "account"],
            ),
            billing_period_end: gauge_vec(
                &r,
                "spendwatch_billing_period_end_timestamp_seconds",
                "End of the current billing period.",
                &["source", "account"],
            ),
            forecast: gauge_vec(
                &r,
                "spendwatch_spend_forecast_period_end",
                "Forecast spend at the end of the current billing period, in the budget's currency.",
                &["rule", "source", "account", "currency"],
            ),
            budget: gauge_vec(
                &r,
                "spendwatch_budget",
                "Budget amount per billing period, in the budget's currency.",
                &["rule", "account", "currency"],
            ),
            budget_ratio: gauge_vec(
                &r,
                "spendwatch_budget_used_ratio",
                "Period-to-date spend (basis=actual) or forecast (basis=forecast) divided by the budget.",
                &["rule", "source", "account", "basis"],
            ),
            unit_cost: gauge_vec(
                &r,
                "spendwatch_unit_cost",
                "Spend per traffic unit in the last complete window of a ratio rule, in `currency` per the rule's `per` units.",
                &["rule", "account", "currency"],
            ),
            unit_cost_band: gauge_vec(
                &r,
                "spendwatch_unit_cost_expected",
                "Expected unit-cost band of a ratio rule (bound = lower | upper), same unit as spendwatch_unit_cost.",
                &["rule", "account", "currency", "bound"],
            ),
            anomaly_band: gauge_vec(
                &r,
                "spendwatch_anomaly_expected",
                "Expected value of an anomaly rule's series in its last window (bound = expected | lower | upper).",
                &["rule", "account", "bound"],
            ),
            anomaly_score: gauge_vec(
                &r,
                "spendwatch_anomaly_score",
                "How unusual the last window of an anomaly rule's series is, in [0, 1].",
                &["rule", "account"],
            ),
            anomaly_value: gauge_vec(
                &r,
                "spendwatch_anomaly_value",
                "Value of an anomaly rule's series in its last judged window (drawn inside spendwatch_anomaly_expected).",
                &["rule", "account"],
            ),
            anomaly_state_age: gauge_vec(
                &r,
                "spendwatch_anomaly_state_age_seconds",
                "How far back an anomaly rule's detector state has been learning (since its first window), per account.",
                &["rule", "account"],
            ),
            anomaly_state_samples: gauge_vec(
                &r,
                "spendwatch_anomaly_state_samples",
                "Windows an anomaly rule's detector has learned from, per account.",
                &["rule", "account"],
            ),
            rule_instances: int_gauge_vec(
                &r,
                "spendwatch_rule_instances",
                "Alert instances of a rule by their last verdict (breach, clear, waiting — for data or a baseline).",
                &["rule", "outcome"],
            ),
            polls: counter_vec(
                &r,
                "spendwatch_polls_total",
                "Polls of one account of a source, by outcome (success or the failure reason).",
                &["source", "outcome"],
            ),
            poll_errors: counter_vec(
                &r,
                "spendwatch_poll_errors_total",
                "Failed polls, by reason (timeout, http_5xx, not_json, malformed, auth, rate_limited, ...).",
                &["source", "account", "reason"],
            ),
            poll_duration: histogram_vec(
                &r,
                "spendwatch_poll_duration_seconds",
                "Duration of one poll of one account, retries included.",
                &["source"],
                poll_buckets,
            ),
            last_successful_poll: gauge_vec(
                &r,
                "spendwatch_last_successful_poll_timestamp_seconds",
                "Time of the last successful poll of a source.",
                &["source"],
            ),
            last_data: gauge_vec(
                &r,
                "spendwatch_last_data_timestamp_seconds",
                "Newest time described by data from a source and account.",
                &["source", "account"],
            ),
            observations_written: counter_vec(
                &r,
                "spendwatch_observations_written_total",
                "Observations handed to the store, by result (inserted, extended, unchanged, rejected, over_series_limit: a new series beyond limits.max_series_per_source; zero_held: a period-to-date drop to 0 held until it persists for limits.confirm_zero_polls polls, zero_discarded: held zeros dropped when the value came back, zero_confirmed: held zeros stored).",
                &["source", "result"],
            ),
            alerts: int_gauge_vec(
                &r,
                "spendwatch_alerts",
                "Alert instances per rule and state.",
                &["rule", "state"],
            ),
            rule_evaluations: counter_vec(
                &r,
                "spendwatch_rule_evaluations_total",
                "Rule evaluations, by outcome (ok or error).",
                &["rule", "outcome"],
            ),
            rule_evaluation_duration: histogram_vec(
                &r,
                "spendwatch_rule_evaluation_duration_seconds",
                "Duration of one evaluation of one rule.",
                &["rule"],
                fast_buckets.clone(),
            ),
            alert_transitions: counter_vec(
                &r,
                "spendwatch_alert_transitions_total",
                "Alert state changes, by rule and new state.",
                &["rule", "state"],
            ),
            outbox_pending: int_gauge(
                &r,
                "spendwatch_outbox_pending",
                "Notifications waiting in the outbox for delivery.",
            ),
            outbox_oldest_pending_age: gauge(
                &r,
                "spendwatch_outbox_oldest_pending_age_seconds",
                "Age of the oldest undelivered notification (0 when none).",
            ),
            notifications: counter_vec(
                &r,
                "spendwatch_notifications_total",
                "Outbox notifications by receiver and outcome: delivered, failed (an attempt failed; retried), dead (refused for good), suppressed_silenced, suppressed_inhibited.",
                &["receiver", "outcome"],
            ),
            notification_failures: counter_vec(
                &r,
                "spendwatch_notification_failures_total",
                "Failed group messages, by receiver and reason (timeout, connect, http_5xx, http_4xx, rate_limited, ...).",
                &["receiver", "reason"],
            ),
            notification_duration: histogram_vec(
                &r,
                "spendwatch_notification_duration_seconds",
                "Duration of one attempt to send one group message; its count is the number of messages attempted.",
                &["receiver"],
                fast_buckets,
            ),
            alertmanager_requests: counter_vec(
                &r,
                "spendwatch_alertmanager_requests_total",
                "POSTs to each Alertmanager of a receiver, by outcome (accepted or the failure reason).",
                &["receiver", "alertmanager", "outcome"],
            ),
            alertmanager_resends: counter_vec(
                &r,
                "spendwatch_alertmanager_resends_total",
                "Re-sends of firing alerts to a receiver's Alertmanagers, by outcome (delivered or the failure reason).",
                &["receiver", "outcome"],
            ),
            notification_groups_waiting: int_gauge(
                &r,
                "spendwatch_notification_groups_pending",
                "Notification groups with changes waiting for group_wait, group_interval or a retry.",
            ),
            silences_active: int_gauge(&r, "spendwatch_silences_active", "Silences in force now."),
            cluster_held: int_gauge_vec(
                &r,
                "spendwatch_cluster_accounts_held",
                "What this replica holds a lease on (role = poll: source targets it polls; evaluate: accounts it evaluates). Only with store.postgres.",
                &["role"],
            ),
            cluster_delivering: int_gauge(
                &r,
                "spendwatch_cluster_delivering",
                "1 while this replica holds the outbox lease and delivers notifications, else 0. Only with store.postgres.",
            ),
            cluster_replicas_live: int_gauge(
                &r,
                "spendwatch_cluster_replicas_live",
                "Replicas whose heartbeat is younger than the lease, as this replica last saw them. Only with store.postgres.",
            ),
            cluster_lease_changes: counter_vec(
                &r,
                "spendwatch_cluster_lease_changes_total",
                "Leases this replica acquired (free), took over (expired, from another replica), released (rebalancing) or lost (taken while it missed renewals).",
                &["change"],
            ),
            cluster_heartbeat_failures: {
                let c = prometheus::IntCounter::new(
                    "spendwatch_cluster_heartbeat_failures_total",
                    "Cluster heartbeats that failed (PostgreSQL unreachable or erroring); leases lapse after the lease time without one.",
                )
                .unwrap_or_else(|e| panic!("metric spendwatch_cluster_heartbeat_failures_total: {e}"));
                r.add(
                    c,
                    MetricType::Counter,
                    "spendwatch_cluster_heartbeat_failures_total",
                    "Cluster heartbeats that failed (PostgreSQL unreachable or erroring); leases lapse after the lease time without one.",
                    &[],
                )
            },
            cluster_last_heartbeat: gauge(
                &r,
                "spendwatch_cluster_last_heartbeat_timestamp_seconds",
                "PostgreSQL's time of this replica's last successful cluster heartbeat.",
            ),
            registry: r,
        };
        let info = gauge_vec(
            &m.registry,
            "spendwatch_build_info",
            "Build information; always 1.",
            &["version"],
        );
        info.with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);
        m
    }

    /// The assignment after a successful cluster heartbeat.
    pub fn cluster_assignment(
        &self,
        targets: usize,
        accounts: usize,
        delivering: bool,
        live: usize,
        at: Timestamp,
    ) {
        let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.cluster_held
            .with_label_values(&["poll"])
            .set(as_i64(targets));
        self.cluster_held
            .with_label_values(&["evaluate"])
            .set(as_i64(accounts));
        self.cluster_delivering.set(i64::from(delivering));
        self.cluster_replicas_live.set(as_i64(live));
        self.cluster_last_heartbeat
            .set(at.as_millisecond() as f64 / 1000.0);
    }

    /// `change`: acquired, taken_over, released or lost.
    pub fn cluster_lease_changes(&self, change: &str, n: usize) {
        let counter = self.cluster_lease_changes.with_label_values(&[change]);
        if n > 0 {
            counter.inc_by(n as u64);
        }
    }

    pub fn cluster_heartbeat_failed(&self) {
        self.cluster_heartbeat_failures.inc();
    }

    /// Every family this build serves, in registration order.
    pub fn reference(&self) -> Vec<FamilyDoc> {
        self.registry
            .docs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The metrics reference as a Markdown table (the README's "Metrics" section).
    pub fn reference_markdown(&self) -> String {
        // A `|` inside a cell would end it.
        let cell = |s: &str| s.replace('|', "\\|");
        let mut out = String::from("| metric | type | labels | description |\n|---|---|---|---|\n");
        for f in self.reference() {
            let labels = f
                .labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                f.name,
                f.kind.as_str(),
                labels,
                cell(&f.help)
            ));
        }
        out
    }

    /// Text exposition format for `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "Encoding metrics failed.");
        }
        let mut out = String::with_capacity(self.data.estimated_len() + buf.len());
        self.data.render_into(&mut out);
        out.push_str(&String::from_utf8_lossy(&buf));
        out
    }

    /// Observations stored from a poll: the newest value of each series becomes a gauge
    /// (by data time: re-delivered older data never overwrites newer).
    pub fn observed(&self, observations: &[Observation]) {
        let mut times = self.gauge_times.lock().unwrap_or_else(|p| p.into_inner());
        for o in observations {
            let key = &o.key;
            // Period totals compete by period, everything else by instant.
            let data_time = match o.kind {
                ObservationKind::PeriodTotal => o.period.map_or(o.at, |p| p.end),
                _ => o.at,
            };
            // One canonical key per observation: this runs for every series of every poll.
            match times.entry(key.canonical()) {
                std::collections::hash_map::Entry::Occupied(seen) if *seen.get() > data_time => {
                    continue;
                }
                std::collections::hash_map::Entry::Occupied(mut seen) => {
                    seen.insert(data_time);
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(data_time);
                }
            }
            let label = |name: &str| key.labels.get(name).map(String::as_str).unwrap_or("");
            let value = to_f64(o.value);
            let currency = o.unit.currency().map(|c| c.as_str()).unwrap_or("");
            let unit = o.unit.to_string();
            let (source, account) = (key.source.as_str(), key.account.as_str());
            let item = label(series::LABEL_ITEM);
            match key.metric.as_str() {
                series::SPEND_PTD => {
                    self.data
                        .set(SPEND_PTD_FAMILY, &[account, currency, source], value);
                    if let Some(p) = o.period {
                        self.billing_period_end
                            .with_label_values(&[source, account])
                            .set(p.end.as_second() as f64);
                    }
                }
                series::SPEND_TOTAL => {
                    self.data
                        .set(SPEND_LAST_FAMILY, &[account, currency, source], value)
                }
                series::ITEM_SPEND_PTD => {
                    self.data
                        .set(ITEM_PTD_FAMILY, &[account, currency, item, source], value)
                }
                series::ITEM_SPEND_TOTAL => {
                    self.data
                        .set(ITEM_LAST_FAMILY, &[account, currency, item, source], value)
                }
                series::USAGE_PTD => {
                    self.data
                        .set(USAGE_PTD_FAMILY, &[account, item, source, &unit], value)
                }
                series::USAGE_TOTAL => {
                    self.data
                        .set(USAGE_LAST_FAMILY, &[account, item, source, &unit], value)
                }
                series::TRAFFIC => self.data.set(
                    TRAFFIC_FAMILY,
                    &[account, label("series"), source, &unit],
                    value,
                ),
                _ => {}
            }
            let mut newest = self.newest_data.lock().unwrap_or_else(|p| p.into_inner());
            let slot = newest
                .entry((source.to_string(), account.to_string()))
                .or_insert(o.at);
            if o.at >= *slot {
                *slot = o.at;
                self.last_data
                    .with_label_values(&[source, account])
                    .set(o.at.as_millisecond() as f64 / 1000.0);
            }
        }
    }

    /// Sets `spendwatch_data_lag_seconds` = `now` − newest data time, for every source and
    /// account seen; called after polls and at every evaluation, so the lag keeps growing
    /// while no new data arrives.
    pub fn refresh_data_lag(&self, now: Timestamp) {
        let newest = self.newest_data.lock().unwrap_or_else(|p| p.into_inner());
        for ((source, account), at) in newest.iter() {
            let lag = now.duration_since(*at).as_secs_f64().max(0.0);
            self.data_lag.with_label_values(&[source, account]).set(lag);
        }
    }

    pub fn observations_written(
        &self,
        source: &str,
        inserted: usize,
        extended: usize,
        unchanged: usize,
    ) {
        for (result, n) in [
            ("inserted", inserted),
            ("extended", extended),
            ("unchanged", unchanged),
        ] {
            self.observations_written
                .with_label_values(&[source, result])
                .inc_by(n as u64);
        }
    }

    /// Observations of new series refused because the source reached its series limit.
    pub fn observations_over_series_limit(&self, source: &str, n: usize) {
        self.observations_written
            .with_label_values(&[source, "over_series_limit"])
            .inc_by(n as u64);
    }

    /// Counts what the zero guard (`crate::ingest`) did with one poll.
    pub fn zeros_screened(&self, source: &str, held: usize, discarded: usize, confirmed: usize) {
        for (result, n) in [
            ("zero_held", held),
            ("zero_discarded", discarded),
            ("zero_confirmed", confirmed),
        ] {
            if n > 0 {
                self.observations_written
                    .with_label_values(&[source, result])
                    .inc_by(n as u64);
            }
        }
    }

    pub fn observations_rejected(&self, source: &str, n: usize) {
        self.observations_written
            .with_label_values(&[source, "rejected"])
            .inc_by(n as u64);
    }

    pub fn poll_succeeded(&self, source: &str, account: &str, seconds: f64, now: jiff::Timestamp) {
        self.last_poll_by_account
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((source.to_string(), account.to_string()), now);
        self.polls.with_label_values(&[source, "success"]).inc();
        self.poll_duration
            .with_label_values(&[source])
            .observe(seconds);
        self.last_successful_poll
            .with_label_values(&[source])
            .set(now.as_millisecond() as f64 / 1000.0);
    }

    pub fn poll_failed(&self, source: &str, account: &str, reason: &str, seconds: f64) {
        self.polls.with_label_values(&[source, reason]).inc();
        self.poll_errors
            .with_label_values(&[source, account, reason])
            .inc();
        self.poll_duration
            .with_label_values(&[source])
            .observe(seconds);
    }

    /// What the `/sources` page shows, read back from the families above: per source its
    /// last successful poll, per account its newest data time and poll errors by reason.
    pub fn source_status(&self) -> SourceStatus {
        type Sample = (std::collections::BTreeMap<String, String>, f64);
        fn samples(c: &dyn Collector, value: fn(&prometheus::proto::Metric) -> f64) -> Vec<Sample> {
            c.collect()
                .iter()
                .flat_map(|family| family.get_metric().iter())
                .map(|m| {
                    let labels = m
                        .get_label()
                        .iter()
                        .map(|l| (l.name().to_string(), l.value().to_string()))
                        .collect();
                    (labels, value(m))
                })
                .collect()
        }
        let last_poll = samples(&self.last_successful_poll, |m| m.get_gauge().get_value())
            .into_iter()
            .filter_map(|(labels, v)| {
                Some((labels.get("source")?.clone(), seconds_to_timestamp(v)?))
            })
            .collect();
        let poll_errors = samples(&self.poll_errors, |m| m.get_counter().get_value())
            .into_iter()
            .filter_map(|(labels, v)| {
                let label = |name: &str| labels.get(name).cloned();
                Some((
                    (label("source")?, label("account")?, label("reason")?),
                    v as u64,
                ))
            })
            .collect();
        let newest_data = self
            .newest_data
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .into_iter()
            .collect();
        let last_poll_by_account = self
            .last_poll_by_account
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .into_iter()
            .collect();
        SourceStatus {
            last_poll,
            last_poll_by_account,
            newest_data,
            poll_errors,
        }
    }

    pub fn budget_evaluated(&self, b: &BudgetSample<'_>) {
        self.budget
            .with_label_values(&[b.rule, b.account, b.currency])
            .set(b.budget);
        self.budget_ratio
            .with_label_values(&[b.rule, b.source, b.account, "actual"])
            .set(b.actual / b.budget);
        if let Some(f) = b.forecast {
            self.forecast
                .with_label_values(&[b.rule, b.source, b.account, b.currency])
                .set(f);
            self.budget_ratio
                .with_label_values(&[b.rule, b.source, b.account, "forecast"])
                .set(f / b.budget);
        }
    }

    pub fn unit_cost(
        &self,
        rule: &str,
        account: &str,
        currency: &crate::model::Currency,
        value: Option<f64>,
        lower: Option<f64>,
        upper: Option<f64>,
    ) {
        let c = currency.as_str();
        if let Some(v) = value {
            self.unit_cost.with_label_values(&[rule, account, c]).set(v);
        }
        for (bound, v) in [("lower", lower), ("upper", upper)] {
            if let Some(v) = v {
                self.unit_cost_band
                    .with_label_values(&[rule, account, c, bound])
                    .set(v);
            }
        }
    }

    pub fn anomaly(
        &self,
        rule: &str,
        account: &str,
        expected: f64,
        lower: f64,
        upper: f64,
        score: f64,
    ) {
        for (bound, v) in [("expected", expected), ("lower", lower), ("upper", upper)] {
            self.anomaly_band
                .with_label_values(&[rule, account, bound])
                .set(v);
        }
        self.anomaly_score
            .with_label_values(&[rule, account])
            .set(score);
    }

    /// The value an anomaly rule judged in its last window.
    pub fn anomaly_value(&self, rule: &str, account: &str, value: f64) {
        self.anomaly_value
            .with_label_values(&[rule, account])
            .set(value);
    }

    /// How much an anomaly detector has learned: age of its state and windows seen.
    pub fn anomaly_state(&self, rule: &str, account: &str, age_seconds: f64, samples: u64) {
        self.anomaly_state_age
            .with_label_values(&[rule, account])
            .set(age_seconds);
        self.anomaly_state_samples
            .with_label_values(&[rule, account])
            .set(samples as f64);
    }

    /// Counts of a rule's instances per verdict after one evaluation.
    pub fn rule_outcomes(&self, rule: &str, instances: &[crate::model::InstanceStatus]) {
        for outcome in ["breach", "clear", "waiting"] {
            let n = instances.iter().filter(|i| i.outcome == outcome).count();
            self.rule_instances
                .with_label_values(&[rule, outcome])
                .set(n as i64);
        }
    }

    pub fn rule_evaluated(&self, rule: &str, ok: bool, seconds: f64) {
        self.rule_evaluations
            .with_label_values(&[rule, if ok { "ok" } else { "error" }])
            .inc();
        self.rule_evaluation_duration
            .with_label_values(&[rule])
            .observe(seconds);
    }

    pub fn alert_transition(&self, rule: &str, state: AlertState) {
        self.alert_transitions
            .with_label_values(&[rule, state.as_str()])
            .inc();
    }

    /// Replaces the per-rule alert counts (rules listed with zero counts stay visible).
    pub fn set_alert_counts(&self, counts: &[(String, AlertState, i64)]) {
        self.alerts.reset();
        for (rule, state, n) in counts {
            self.alerts
                .with_label_values(&[rule, state.as_str()])
                .set(*n);
        }
    }

    pub fn set_outbox(&self, pending: u64, oldest_age_seconds: f64) {
        self.outbox_pending.set(pending as i64);
        self.outbox_oldest_pending_age.set(oldest_age_seconds);
    }

    /// `n` outbox notifications reached `outcome` (delivered, failed, dead, suppressed_*).
    pub fn notifications(&self, receiver: &str, outcome: &str, n: u64) {
        self.notifications
            .with_label_values(&[receiver, outcome])
            .inc_by(n);
    }

    /// One group message attempted (whatever its outcome).
    pub fn notification_send(&self, receiver: &str, seconds: f64) {
        self.notification_duration
            .with_label_values(&[receiver])
            .observe(seconds);
    }

    /// One POST to one Alertmanager (`alertmanager` is its base URL without credentials).
    pub fn alertmanager_request(&self, receiver: &str, alertmanager: &str, outcome: &str) {
        self.alertmanager_requests
            .with_label_values(&[receiver, alertmanager, outcome])
            .inc();
    }

    /// One re-send round of a receiver's firing alerts.
    pub fn alertmanager_resend(&self, receiver: &str, outcome: &str) {
        self.alertmanager_resends
            .with_label_values(&[receiver, outcome])
            .inc();
    }

    pub fn notification_failure(&self, receiver: &str, reason: &str) {
        self.notification_failures
            .with_label_values(&[receiver, reason])
            .inc();
    }

    pub fn set_groups_waiting(&self, n: usize) {
        self.notification_groups_waiting.set(n as i64);
    }

    pub fn set_silences_active(&self, n: usize) {
        self.silences_active.set(n as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_all_families_with_prefix() {
        let m = Metrics::new();
        m.poll_failed("rs", "020-1", "timeout", 1.0);
        m.set_outbox(2, 5.0);
        let text = m.render();
        assert!(
            text.contains("spendwatch_polls_total{outcome=\"timeout\",source=\"rs\"} 1"),
            "{text}"
        );
        assert!(text.contains("spendwatch_outbox_pending 2"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("spendwatch_"), "{line}");
        }
    }

    const BEGIN: &str = "<!-- metrics-reference:begin -->";
    const END: &str = "<!-- metrics-reference:end -->";

    /// README.md with the text between the metrics-reference markers replaced.
    fn readme_with_reference(readme: &str, table: &str) -> Option<String> {
        let start = readme.find(BEGIN)? + BEGIN.len();
        let end = start + readme[start..].find(END)?;
        Some(format!("{}\n{table}{}", &readme[..start], &readme[end..]))
    }

    #[test]
    fn metrics_reference_in_readme_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let table = Metrics::new().reference_markdown();
        let expected = readme_with_reference(&readme, &table)
            .unwrap_or_else(|| panic!("README.md lacks the {BEGIN} / {END} markers"));
        if expected == readme {
            return;
        }
        if std::env::var_os("SPENDWATCH_UPDATE_README").is_some() {
            std::fs::write(&path, expected).unwrap();
            return;
        }
        panic!(
            "README.md's metrics reference is out of date (a metric family was added or changed in \
             src/metrics.rs). Regenerate it with:\n  SPENDWATCH_UPDATE_README=1 cargo test --lib metrics_reference\n\
             Expected table:\n{table}"
        );
    }

    #[test]
    fn metrics_reference_lists_every_family_once() {
        let m = Metrics::new();
        let docs = m.reference();
        let mut names: Vec<&str> = docs.iter().map(|d| d.name.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a family is registered twice");
        // Families with a child appear in the exposition: each must be documented as the
        // same type with the same help text.
        m.poll_failed("rs", "020-1", "timeout", 1.0);
        m.rule_evaluated("r", true, 0.1);
        let gathered = m.registry.registry.gather();
        assert!(gathered.len() >= 5);
        for mf in gathered {
            let doc = docs
                .iter()
                .find(|d| d.name == mf.name())
                .unwrap_or_else(|| panic!("{} is served but not documented", mf.name()));
            assert_eq!(doc.help, mf.help());
            let kind = match mf.get_field_type() {
                prometheus::proto::MetricType::COUNTER => MetricType::Counter,
                prometheus::proto::MetricType::GAUGE => MetricType::Gauge,
                prometheus::proto::MetricType::HISTOGRAM => MetricType::Histogram,
                other => panic!("unexpected type {other:?}"),
            };
            assert_eq!(doc.kind, kind, "{}", doc.name);
        }
        let table = m.reference_markdown();
        assert!(table.contains(
            "| `spendwatch_poll_errors_total` | counter | `source`, `account`, `reason` |"
        ));
        // A `|` in a help text is escaped, not a new column.
        assert!(table.contains("(bound = lower \\| upper)"), "{table}");
    }
}

fn seconds_to_timestamp(seconds: f64) -> Option<Timestamp> {
    Timestamp::from_millisecond((seconds * 1000.0) as i64).ok()
}

/// Poll and data state per source and account, for the pages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceStatus {
    /// Source → last successful poll.
    pub last_poll: std::collections::BTreeMap<String, Timestamp>,
    /// (source, account) → last successful poll.
    pub last_poll_by_account: std::collections::BTreeMap<(String, String), Timestamp>,
    /// (source, account) → newest data time.
    pub newest_data: std::collections::BTreeMap<(String, String), Timestamp>,
    /// (source, account, reason) → failed polls.
    pub poll_errors: std::collections::BTreeMap<(String, String, String), u64>,
}
