//! `/rules`: every rule with its health, last evaluation, alerts, each instance's verdict
//! (or why it waits for data) and a sparkline of its input.

use axum::extract::State;
use axum::response::Html;
use maud::{PreEscaped, html};

use super::chart::sparkline;
use super::data::rule_sparkline;
use super::format::{utc, when};
use super::layout::{self, PageError, badge};
use crate::model::AlertState;
use crate::server::{ServerState, view};

fn render(s: &ServerState) -> Result<maud::Markup, PageError> {
    let now = s.pages.clock.now();
    let v = view(s);
    let body = html! {
        h1 { "Rules" }
        @if v.rules.is_empty() { p.muted { "No evaluation has run yet." } }
        @for r in &v.rules {
            @let config = s.pages.rules.iter().find(|c| c.name() == r.name);
            @let spark = config.map(|c| rule_sparkline(c, s.store.as_ref(), now));
            @let firing = v.alerts.iter().filter(|a| a.rule == r.name && a.state == AlertState::Firing).count();
            @let pending = v.alerts.iter().filter(|a| a.rule == r.name && a.state == AlertState::Pending).count();
            section.rule id={ "rule-" (r.name) } {
                h2 { (r.name) }
                p {
                    span class={ "badge " @if r.health == "ok" { "state-resolved" } @else { "state-firing" } } { (r.health) }
                    @if firing > 0 { " " (badge("state", "firing")) " " (firing) }
                    @if pending > 0 { " " (badge("state", "pending")) " " (pending) }
                    " "
                    @match &spark {
                        Some(Ok((what, values))) => { span title=(what) { (PreEscaped(sparkline(values))) } " " span.muted { (what) } }
                        Some(Err(e)) => { span.muted { "no sparkline: " (e) } }
                        None => { span.muted { "not in the config" } }
                    }
                }
                dl {
                    dt { "Last evaluation" }
                    dd { @if let Some(t) = r.last_evaluation { (when(t, now)) } @else { "never" } }
                    @if let Some(e) = &r.last_error { dt { "Error" } dd { (e) } }
                }
                @if !r.instances.is_empty() {
                    div.scroll { table.stack {
                        thead { tr { th { "Account" } th { "Verdict" } th { "Detail (or why it waits for data)" } } }
                        tbody { @for i in &r.instances {
                            tr {
                                td data-label="Account" { (i.labels.get("account").map(String::as_str).unwrap_or("")) }
                                td data-label="Verdict" { (i.outcome) }
                                td data-label="Detail" { (i.detail) }
                            }
                        } }
                    } }
                }
            }
        }
        p.muted { "Times in UTC; now is " (utc(now)) "." }
    };
    Ok(layout::page("Rules", body))
}

pub async fn page(State(s): State<ServerState>) -> Result<Html<String>, PageError> {
    Ok(Html(render(&s)?.into_string()))
}
