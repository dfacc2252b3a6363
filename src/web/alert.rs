//! `/alerts/{fingerprint}`: one alert explained (chart with the expected band and the alert
//! interval, contributors, labels, history, notifications), and the silence form, whose
//! POST goes through the API's token check and silence code.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use jiff::{SignedDuration, Timestamp};
use maud::{Markup, PreEscaped, html};

use super::chart;
use super::data::{Charts, alert_charts};
use super::format::{utc, when};
use super::layout::{self, PageError, badge};
use super::overview::{alert_title, label};
use crate::alerting::silence::{MatcherInput, MatcherJson, Muter, NewSilence};
use crate::model::AlertRecord;
use crate::server::{ServerState, authorize, insert_silence, load_silences, view};

/// Outbox rows read to find one alert's notifications (newest first).
const NOTIFICATIONS_SCANNED: usize = 2_000;
/// Longest silence the form accepts.
const MAX_SILENCE: SignedDuration = SignedDuration::from_hours(24 * 90);

/// The alert, from the evaluator's view or else the store (resolved ones stay there).
fn find_alert(s: &ServerState, fingerprint: &str) -> Result<AlertRecord, PageError> {
    if let Some(a) = view(s)
        .alerts
        .into_iter()
        .find(|a| a.fingerprint == fingerprint)
    {
        return Ok(a);
    }
    s.store
        .load_alerts()?
        .into_iter()
        .find(|a| a.fingerprint == fingerprint)
        .ok_or_else(|| {
            PageError::new(
                StatusCode::NOT_FOUND,
                format!("no alert with fingerprint {fingerprint:?}"),
            )
        })
}

/// The matchers a silence from this page gets: every identifying label, exactly.
pub fn silence_matchers(alert: &AlertRecord) -> Vec<MatcherInput> {
    alert
        .labels
        .iter()
        .map(|(name, value)| {
            MatcherInput::Object(MatcherJson {
                name: name.clone(),
                value: value.clone(),
                is_regex: false,
                is_equal: true,
            })
        })
        .collect()
}

#[derive(Debug, serde::Deserialize)]
pub struct PageQuery {
    silenced: Option<String>,
}

fn table(rows: &BTreeMap<String, String>) -> Markup {
    html! {
        div.scroll { table { tbody {
            @for (k, v) in rows { tr { th { (k) } td { (v) } } }
        } } }
    }
}

fn history(alert: &AlertRecord, now: Timestamp) -> Markup {
    let steps = [
        ("pending since", alert.active_at),
        ("firing since", alert.fired_at),
        (
            "condition cleared, kept firing since",
            alert.keep_firing_since,
        ),
        ("resolved", alert.resolved_at),
    ];
    html! {
        dl #history {
            @for (what, at) in steps {
                @if let Some(at) = at { dt { (what) } dd { (when(at, now)) } }
            }
            dt { "episode" } dd { (alert.seq) }
        }
    }
}

fn silence_form(s: &ServerState, alert: &AlertRecord, silenced_by: &[String]) -> Markup {
    let matchers: Vec<String> = alert
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    html! {
        section #silence {
            h2 { "Silence" }
            @if !silenced_by.is_empty() {
                p { "Silenced now by " (silenced_by.join(", ")) "." }
            }
            @if s.api_token.is_none() {
                p.muted { "Silencing from this page is disabled: set "
                    code { "[api] token = { env = \"SPENDWATCH_API_TOKEN\" }" }
                    " in the config; the form then asks for that token." }
            } @else {
                form method="post" action={ "/alerts/" (alert.fingerprint) "/silence" } {
                    p.muted { "Mutes notifications for alerts matching " code { (matchers.join(", ")) } "." }
                    label for="duration" { "Duration" }
                    input #duration name="duration" value="2h" required
                        placeholder="e.g. 30m, 2h, 1d" autocomplete="off";
                    label for="comment" { "Comment" }
                    input #comment name="comment" required placeholder="why, and who follows up";
                    label for="created_by" { "Your name" }
                    input #created_by name="created_by" required autocomplete="username";
                    label for="token" { "API token" }
                    input #token name="token" type="password" autocomplete="current-password"
                        placeholder="[api] token (or send an Authorization header)";
                    button type="submit" { "Silence" }
                }
            }
        }
    }
}

fn render(s: &ServerState, fingerprint: &str, notice: Option<&str>) -> Result<Markup, PageError> {
    let alert = find_alert(s, fingerprint)?;
    let now = s.pages.clock.now();
    let alerts = view(s).alerts;
    let muter = Muter::new(
        load_silences(s.store.as_ref())?,
        &s.inhibit_rules,
        &alerts,
        Timestamp::now(),
    );
    let silenced_by = muter.silenced_by(&alert.labels);
    let inhibited_by = muter.inhibited_by(&alert.fingerprint, &alert.labels);
    let charts = alert_charts(&s.pages.rules, s.store.as_ref(), &alert, now);
    let notifications: Vec<_> = s
        .store
        .list_outbox(None, NOTIFICATIONS_SCANNED)?
        .into_iter()
        .filter(|r| r.notification.fingerprint == alert.fingerprint)
        .collect();
    let links: Vec<_> = s
        .pages
        .links
        .for_alert(&alert)
        .into_iter()
        .filter(|l| l.title != "alert" && l.title != "silence")
        .collect();
    let annotations: BTreeMap<String, String> = alert
        .annotations
        .iter()
        .filter(|(k, _)| k.as_str() != "summary")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();

    let body = html! {
        @if let Some(id) = notice {
            section.notice #notice { p { "Silence " code { (id) } " created." } }
        }
        h1 { (alert_title(&alert)) " · " (label(&alert, "account")) }
        p {
            (badge("state", alert.state.as_str())) " "
            (badge("severity", alert.severity.as_str()))
            @if !silenced_by.is_empty() { " " span.badge.silenced #silenced { "silenced" } }
            @if !inhibited_by.is_empty() { " " span.badge.silenced title=(inhibited_by.join(", ")) { "inhibited" } }
        }
        p #summary { (alert.summary) }
        p {
            a href="#silence" { "Silence" }
            @for l in &links { " · " a href=(l.url) rel="noopener" { (l.title) } }
        }
        section #chart {
            h2 { "Chart" }
            @match &charts {
                Ok(Charts::Panels(panels)) => {
                    @for p in panels {
                        h3 { (p.title) }
                        (PreEscaped(chart::render(p)))
                    }
                    p.muted { "Shaded blue: the expected range. Shaded red: while the alert was pending or firing. Times in UTC." }
                }
                Ok(Charts::None(why)) => { p.muted { "No chart: " (why) "." } }
                Err(e) => { p.muted { "No chart: " (e.to_string()) "." } }
            }
        }
        section #contributors {
            h2 { "Top contributors" }
            @if alert.contributors.is_empty() {
                p.muted { "This rule names no line items for this alert." }
            } @else {
                div.scroll { table.stack {
                    thead { tr { th { "Line item" } th { "Amount in the window" } th { "Change against typical" } } }
                    tbody { @for c in &alert.contributors {
                        tr { td data-label="Line item" { (c.item) } td.num data-label="Amount" { (c.amount) } td.num data-label="Change" { (c.delta) } }
                    } }
                } }
            }
        }
        section #state-history {
            h2 { "History" }
            (history(&alert, now))
        }
        section #notifications {
            h2 { "Notifications" }
            @if notifications.is_empty() { p.muted { "None sent for this alert." } }
            @else {
                div.scroll { table.stack {
                    thead { tr { th { "Status" } th { "Receiver" } th { "Outcome" } th { "Queued" } th { "Delivered" } th { "Attempts" } } }
                    tbody { @for r in &notifications {
                        tr {
                            td data-label="Status" { (r.notification.status.as_str()) }
                            td data-label="Receiver" { (r.notification.receiver) }
                            td data-label="Outcome" {
                                (r.state.as_str())
                                @if let Some(by) = &r.suppressed_by { " (" (by) ")" }
                                @if let Some(e) = &r.last_error { br; span.muted { (e) } }
                            }
                            td data-label="Queued" { (utc(r.created_at)) }
                            td data-label="Delivered" { @if let Some(t) = r.delivered_at { (utc(t)) } }
                            td.num data-label="Attempts" { (r.attempts) }
                        }
                    } }
                } }
            }
        }
        section #labels {
            h2 { "Labels" }
            (table(&alert.labels))
            @if !annotations.is_empty() {
                h2 { "Annotations" }
                (table(&annotations))
            }
            p.muted { "Fingerprint " code { (alert.fingerprint) } ", value " (alert.value) ", threshold " (alert.threshold) "." }
        }
        (silence_form(s, &alert, &silenced_by))
    };
    Ok(layout::page(&alert_title(&alert), body))
}

pub async fn page(
    State(s): State<ServerState>,
    Path(fingerprint): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Html<String>, PageError> {
    Ok(Html(
        render(&s, &fingerprint, q.silenced.as_deref())?.into_string(),
    ))
}

/// The form's fields, checked; each error names the field.
struct SilenceForm {
    duration: SignedDuration,
    comment: String,
    created_by: String,
    token: Option<String>,
}

fn parse_form(body: &[u8]) -> Result<SilenceForm, PageError> {
    let fields: BTreeMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let bad = |m: String| PageError::new(StatusCode::BAD_REQUEST, m);
    let text = |name: &str| {
        fields
            .get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let duration_text = text("duration");
    let duration = humantime::parse_duration(&duration_text)
        .ok()
        .and_then(|d| SignedDuration::try_from(d).ok())
        .ok_or_else(|| {
            bad(format!(
                "duration {duration_text:?} is not a duration: write it like 30m, 2h or 1d"
            ))
        })?;
    if duration.is_zero() || duration > MAX_SILENCE {
        return Err(bad(format!(
            "duration {duration_text:?} must be more than zero and at most 90 days"
        )));
    }
    Ok(SilenceForm {
        duration,
        comment: text("comment"),
        created_by: text("created_by"),
        token: Some(text("token")).filter(|t| !t.is_empty()),
    })
}

/// `POST /alerts/{fingerprint}/silence`: the token is checked by the API's own check (from
/// the form's field, else the request's `Authorization` header), the silence is created by
/// the API's own code, and the browser is sent back to the alert page (303).
pub async fn silence(
    State(s): State<ServerState>,
    Path(fingerprint): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    let form = parse_form(&body)?;
    let mut auth = headers.clone();
    if let Some(token) = &form.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                "the token holds characters a token cannot",
            )
        })?;
        auth.insert(header::AUTHORIZATION, value);
    }
    authorize(&s, &auth)?;
    let alert = find_alert(&s, &fingerprint)?;
    let now = Timestamp::now();
    let request = NewSilence {
        matchers: silence_matchers(&alert),
        starts_at: None,
        ends_at: now + form.duration,
        created_by: form.created_by,
        comment: form.comment,
    };
    let silence = insert_silence(&s, &request, now)?;
    let target = format!(
        "/alerts/{}?silenced={}#silence",
        url::form_urlencoded::byte_serialize(alert.fingerprint.as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(silence.id.as_bytes()).collect::<String>()
    );
    Ok(Redirect::to(&target).into_response())
}
