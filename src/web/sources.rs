//! `/sources`: per source its last successful poll; per account its last successful poll,
//! newest data, lag and failed polls by reason.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::response::Html;
use maud::html;

use super::format::{short_duration, when};
use super::layout::{self, PageError};
use crate::server::ServerState;

fn render(s: &ServerState) -> maud::Markup {
    let now = s.pages.clock.now();
    let status = s.metrics.source_status();
    let mut accounts: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (source, account) in status.newest_data.keys() {
        accounts.entry(source).or_default().insert(account);
    }
    for (source, account, _) in status.poll_errors.keys() {
        accounts.entry(source).or_default().insert(account);
    }
    for (source, account) in status.last_poll_by_account.keys() {
        accounts.entry(source).or_default().insert(account);
    }
    for source in status.last_poll.keys() {
        accounts.entry(source).or_default();
    }
    let body = html! {
        h1 { "Sources" }
        @if accounts.is_empty() { p.muted { "No poll has finished yet." } }
        @for (source, accts) in &accounts {
            section.source id={ "source-" (source) } {
                h2 { (source) }
                p { "Last successful poll: "
                    @if let Some(t) = status.last_poll.get(*source) { (when(*t, now)) } @else { "never" } }
                div.scroll { table.stack {
                    thead { tr { th { "Account" } th { "Last poll" } th { "Newest data" } th { "Lag" } th { "Failed polls by reason" } } }
                    tbody { @for account in accts {
                        @let key = (source.to_string(), account.to_string());
                        @let newest = status.newest_data.get(&key);
                        @let polled = status.last_poll_by_account.get(&key);
                        @let errors: Vec<String> = status.poll_errors.iter()
                            .filter(|((s, a, _), _)| s == source && a == account)
                            .map(|((_, _, reason), n)| format!("{reason}: {n}"))
                            .collect();
                        tr {
                            td data-label="Account" { (account) }
                            td data-label="Last poll" { @if let Some(t) = polled { (when(*t, now)) } @else { "never" } }
                            td data-label="Newest data" { @if let Some(t) = newest { (when(*t, now)) } @else { "none yet" } }
                            td.num data-label="Lag" { @if let Some(t) = newest { (short_duration(now.duration_since(*t).as_secs().max(0) as u64)) } }
                            td data-label="Failed polls" { @if errors.is_empty() { span.muted { "none" } } @else { (errors.join(", ")) } }
                        }
                    } }
                } }
            }
        }
    };
    layout::page("Sources", body)
}

pub async fn page(State(s): State<ServerState>) -> Result<Html<String>, PageError> {
    Ok(Html(render(&s).into_string()))
}
