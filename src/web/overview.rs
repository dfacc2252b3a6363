//! `/`: active alerts by severity, sources with their newest data and lag, poll errors,
//! and the outbox.

use axum::extract::State;
use axum::response::Html;
use jiff::Timestamp;
use maud::{Markup, html};

use super::format::{relative, short_duration, utc, when};
use super::layout::{self, PageError, badge};
use crate::alerting::silence::Muter;
use crate::model::{AlertRecord, AlertState, Severity};
use crate::server::{ServerState, load_silences, view};

/// An alert as the lists show it, with whether its notifications are muted and why.
pub struct Listed<'a> {
    pub alert: &'a AlertRecord,
    pub silenced_by: Vec<String>,
    pub inhibited_by: Vec<String>,
}

/// Pending and firing alerts, most severe first, then newest first.
pub fn active_alerts<'a>(
    s: &ServerState,
    alerts: &'a [AlertRecord],
) -> Result<Vec<Listed<'a>>, PageError> {
    // Silences are kept in wall-clock time, as the API and the dispatcher do.
    let muter = Muter::new(
        load_silences(s.store.as_ref())?,
        &s.inhibit_rules,
        alerts,
        Timestamp::now(),
    );
    let mut out: Vec<Listed> = alerts
        .iter()
        .filter(|a| matches!(a.state, AlertState::Pending | AlertState::Firing))
        .map(|a| Listed {
            alert: a,
            silenced_by: muter.silenced_by(&a.labels),
            inhibited_by: muter.inhibited_by(&a.fingerprint, &a.labels),
        })
        .collect();
    out.sort_by_key(|l| {
        (
            std::cmp::Reverse(l.alert.severity),
            std::cmp::Reverse(l.alert.active_at.or(l.alert.fired_at)),
        )
    });
    Ok(out)
}

pub fn label<'a>(alert: &'a AlertRecord, name: &str) -> &'a str {
    alert.labels.get(name).map(String::as_str).unwrap_or("")
}

/// `alertname` plus what tells its instances apart (level and basis for budgets).
pub fn alert_title(alert: &AlertRecord) -> String {
    let mut title = alert.rule.clone();
    if let Some(level) = alert.labels.get("level") {
        let basis = label(alert, "basis");
        title.push_str(&format!(
            " {} ≥ {level}%",
            if basis == "forecast" {
                "forecast"
            } else {
                "spend"
            }
        ));
    }
    title
}

pub fn alert_rows(listed: &[&Listed], now: Timestamp) -> Markup {
    html! {
        div.scroll { table.stack {
            thead { tr { th { "State" } th { "Alert" } th { "Account" } th { "Since" } th { "Summary" } } }
            tbody {
                @for l in listed {
                    @let a = l.alert;
                    tr data-fingerprint=(a.fingerprint) {
                        td {
                            (badge("state", a.state.as_str()))
                            @if !l.silenced_by.is_empty() { " " span.badge.silenced title=(l.silenced_by.join(", ")) { "silenced" } }
                            @if !l.inhibited_by.is_empty() { " " span.badge.silenced title=(l.inhibited_by.join(", ")) { "inhibited" } }
                        }
                        td data-label="Alert" { a href={ "/alerts/" (a.fingerprint) } { (alert_title(a)) } }
                        td data-label="Account" { (label(a, "account")) }
                        td data-label="Since" {
                            @if let Some(t) = a.fired_at.or(a.active_at) {
                                span title=(utc(t)) { (relative(t, now)) }
                            }
                        }
                        td data-label="Summary" { (a.summary) }
                    }
                }
            }
        } }
    }
}

fn render(s: &ServerState) -> Result<Markup, PageError> {
    let now = s.pages.clock.now();
    let alerts = view(s).alerts;
    let listed = active_alerts(s, &alerts)?;
    let status = s.metrics.source_status();
    let outbox = s.store.outbox_stats()?;
    let by_severity = |sev: Severity| -> Vec<&Listed> {
        listed.iter().filter(|l| l.alert.severity == sev).collect()
    };
    let errors_by: std::collections::BTreeMap<(&str, &str), u64> =
        status
            .poll_errors
            .iter()
            .fold(Default::default(), |mut m, ((source, _, reason), n)| {
                *m.entry((source.as_str(), reason.as_str())).or_default() += n;
                m
            });
    let body = html! {
        h1 { "Overview" }
        section #alerts {
            h2 { "Active alerts (" (listed.len()) ")" }
            @if listed.is_empty() { p.muted { "No pending or firing alerts." } }
            @for sev in [Severity::Critical, Severity::Warning, Severity::Info] {
                @let group = by_severity(sev);
                @if !group.is_empty() {
                    h2 { (badge("severity", sev.as_str())) " " (group.len()) }
                    (alert_rows(&group, now))
                }
            }
        }
        section #sources {
            h2 { "Sources" }
            @if status.newest_data.is_empty() { p.muted { "No data received yet." } }
            @else {
                div.scroll { table.stack {
                    thead { tr { th { "Source" } th { "Account" } th { "Newest data" } th { "Lag" } } }
                    tbody {
                        @for ((source, account), at) in &status.newest_data {
                            tr {
                                td data-label="Source" { a href="/sources" { (source) } }
                                td data-label="Account" { (account) }
                                td data-label="Newest data" { (utc(*at)) }
                                td.num data-label="Lag" { (short_duration(now.duration_since(*at).as_secs().max(0) as u64)) }
                            }
                        }
                    }
                } }
            }
        }
        section #poll-errors {
            h2 { "Poll errors" }
            @if errors_by.is_empty() { p.muted { "No failed polls." } }
            @else {
                div.scroll { table {
                    thead { tr { th { "Source" } th { "Reason" } th { "Failed polls" } } }
                    tbody { @for ((source, reason), n) in &errors_by {
                        tr { td { (source) } td { (reason) } td.num { (n) } }
                    } }
                } }
            }
        }
        section #outbox {
            h2 { "Notification outbox" }
            dl {
                dt { "Pending" } dd { (outbox.pending)
                    @if let Some(t) = outbox.oldest_pending { " (oldest since " (when(t, Timestamp::now())) ")" } }
                dt { "Held by silences or inhibitions" } dd { (outbox.suppressed) }
                dt { "Delivered" } dd { (outbox.delivered) }
                dt { "Refused by receivers" } dd { (outbox.dead) }
            }
        }
    };
    Ok(layout::page("Overview", body))
}

pub async fn page(State(s): State<ServerState>) -> Result<Html<String>, PageError> {
    Ok(Html(render(&s)?.into_string()))
}
