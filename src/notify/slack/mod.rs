//! Slack receiver (slack-morphism). Two modes:
//!
//! - **Bot token**: the first message of a group is a `chat.postMessage`; the returned
//!   `Delivery.thread` is `"<channel>:<ts>"`. Each later message for the same group updates that
//!   message in place (`chat.update`, so the channel always shows the group's current state) and
//!   posts a threaded reply (`thread_ts`) saying what changed: resolved, a new alert joined,
//!   fired again, escalated. When the whole group has resolved, that update and reply close the
//!   thread: the sender returns `thread: None`, so the group's next episode starts a fresh,
//!   visible message instead of reviving an old thread that scrolled out of sight.
//! - **Incoming webhook**: one new message per send (webhooks can neither update nor thread).
//!
//! One send makes at most one attempt per API call and classifies the outcome; the dispatcher
//! owns retries (slack-morphism's own rate-control retries stay off). A 429 carries its
//! `Retry-After`. `ok:false` codes are permanent (bad token, unknown channel, refused blocks)
//! or transient (`ratelimited`, `internal_error`, …); the reason label is the Slack code for
//! the known ones. Neither the token nor the webhook URL ever appears in an error or log.

pub mod config;
pub mod render;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use super::{Delivery, SendError};
use crate::model::{NotificationGroup, NotificationStatus};
pub use config::{RawSlack, SlackMode, SlackReceiver};
use render::Snapshot;

/// Open threads remembered for their "what changed" replies. Past this many (groups that
/// never resolved and were dropped by the dispatcher), the memory starts over; replies then
/// fall back to what the group itself tells (see [`render::diff`]).
const MAX_REMEMBERED_THREADS: usize = 10_000;

/// `chat.update` answers meaning the first message cannot be updated any more: post a new one
/// rather than fail the notification.
const START_OVER_ON: &[&str] = &[
    "message_not_found",
    "cant_update_message",
    "edit_window_closed",
    "channel_not_found",
    "is_archived",
];

enum Mode {
    Bot {
        token: SlackApiToken,
        channel: String,
    },
    Webhook {
        url: url::Url,
    },
}

pub struct SlackSender {
    name: String,
    mode: Mode,
    client: SlackClient<SlackClientHyperHttpsConnector>,
    timeout: Duration,
    /// Secrets to scrub from any text that comes from the client library.
    secrets: Vec<String>,
    threads: Mutex<HashMap<String, Snapshot>>,
}

/// Without the token or the webhook URL.
impl std::fmt::Debug for SlackSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.mode {
            Mode::Bot { channel, .. } => format!("bot (channel {channel})"),
            Mode::Webhook { .. } => "incoming webhook".to_string(),
        };
        f.debug_struct("SlackSender")
            .field("name", &self.name)
            .field("mode", &mode)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The first message of a group: `"<channel>:<ts>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ThreadRef {
    channel: String,
    ts: String,
}

impl ThreadRef {
    fn parse(text: &str) -> Option<Self> {
        let (channel, ts) = text.split_once(':')?;
        (!channel.is_empty() && !ts.is_empty()).then(|| ThreadRef {
            channel: channel.to_string(),
            ts: ts.to_string(),
        })
    }

    fn encode(&self) -> String {
        format!("{}:{}", self.channel, self.ts)
    }

    /// When the message was posted (Slack's `ts` is `<unix seconds>.<micros>`).
    fn posted_at(&self) -> Option<Timestamp> {
        let (secs, _) = self.ts.split_once('.').unwrap_or((&self.ts, ""));
        Timestamp::from_second(secs.parse().ok()?).ok()
    }
}

impl SlackSender {
    pub fn new(config: SlackReceiver) -> Result<Self, SendError> {
        crate::ensure_crypto_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| {
                SendError::permanent(format!(
                    "slack receiver {:?}: loading the system's TLS root certificates: {e}",
                    config.name
                ))
            })?
            // http only for a local API (tests, the simulator); Slack itself is https.
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let connector = SlackClientHyperConnector::from(https)
            .with_slack_api_url(config.api_url.as_str().trim_end_matches('/'));
        let (mode, secrets) = match &config.mode {
            SlackMode::Bot { token, channel } => (
                Mode::Bot {
                    token: SlackApiToken::new(SlackApiTokenValue(token.expose().to_string())),
                    channel: channel.clone(),
                },
                vec![token.expose().to_string()],
            ),
            SlackMode::Webhook { url } => {
                let parsed = url::Url::parse(url.expose()).map_err(|_| {
                    SendError::permanent(format!(
                        "slack receiver {:?}: webhook_url is not a URL (value not shown)",
                        config.name
                    ))
                })?;
                // The path is the credential; the library may print it on its own.
                let secrets = vec![url.expose().to_string(), parsed.path().to_string()];
                (Mode::Webhook { url: parsed }, secrets)
            }
        };
        Ok(SlackSender {
            name: config.name,
            mode,
            client: SlackClient::new(connector),
            timeout: config.timeout,
            secrets: secrets.into_iter().filter(|s| s.len() > 1).collect(),
            threads: Mutex::new(HashMap::new()),
        })
    }

    /// Sends the group's current state. `thread` is what an earlier send for the same group
    /// returned in `Delivery.thread` (bot mode only; ignored by webhooks).
    pub async fn send(
        &self,
        group: &NotificationGroup,
        thread: Option<&str>,
    ) -> Result<Delivery, SendError> {
        match &self.mode {
            Mode::Webhook { url } => self.send_webhook(url, group).await,
            Mode::Bot { token, channel } => {
                let parent = thread.and_then(|t| {
                    let parsed = ThreadRef::parse(t);
                    if parsed.is_none() {
                        tracing::warn!(receiver = %self.name, "Ignoring an unreadable Slack thread reference; posting a new message.");
                    }
                    parsed
                });
                self.send_bot(token, channel, group, parent).await
            }
        }
    }

    async fn send_webhook(
        &self,
        url: &url::Url,
        group: &NotificationGroup,
    ) -> Result<Delivery, SendError> {
        let message = render::render(group);
        let request = SlackApiPostWebhookMessageRequest::new(message.content());
        self.call(
            "incoming webhook",
            self.client.post_webhook_message(url, &request),
        )
        .await?;
        Ok(Delivery { thread: None })
    }

    async fn send_bot(
        &self,
        token: &SlackApiToken,
        channel: &str,
        group: &NotificationGroup,
        parent: Option<ThreadRef>,
    ) -> Result<Delivery, SendError> {
        let session = self.client.open_session(token);
        let message = render::render(group);
        let Some(parent) = parent else {
            return self.post_new(&session, channel, group, &message).await;
        };
        let update = SlackApiChatUpdateRequest::new(
            SlackChannelId(parent.channel.clone()),
            message.content(),
            SlackTs(parent.ts.clone()),
        );
        match self.call("chat.update", session.chat_update(&update)).await {
            Ok(_) => {}
            Err(e) if !e.recoverable && START_OVER_ON.contains(&e.reason) => {
                tracing::warn!(receiver = %self.name, reason = e.reason,
                    "The group's Slack message cannot be updated; posting a new one.");
                self.forget(&parent);
                return self.post_new(&session, channel, group, &message).await;
            }
            Err(e) => return Err(e),
        }
        let previous = self.remembered(&parent);
        let change = render::diff(group, previous.as_ref(), parent.posted_at());
        let reply = render::render_change(group, &change);
        let request = SlackApiChatPostMessageRequest::new(
            SlackChannelId(parent.channel.clone()),
            reply.content(),
        )
        .with_thread_ts(SlackTs(parent.ts.clone()));
        self.call(
            "chat.postMessage (thread reply)",
            session.chat_post_message(&request),
        )
        .await?;
        Ok(self.after(parent, group))
    }

    async fn post_new(
        &self,
        session: &SlackClientSession<'_, SlackClientHyperHttpsConnector>,
        channel: &str,
        group: &NotificationGroup,
        message: &render::Message,
    ) -> Result<Delivery, SendError> {
        let request = SlackApiChatPostMessageRequest::new(
            SlackChannelId(channel.to_string()),
            message.content(),
        );
        let posted = self
            .call("chat.postMessage", session.chat_post_message(&request))
            .await?;
        let parent = ThreadRef {
            channel: posted.channel.0,
            ts: posted.ts.0,
        };
        Ok(self.after(parent, group))
    }

    /// Keeps the thread open while anything fires; closes it once all resolved.
    fn after(&self, parent: ThreadRef, group: &NotificationGroup) -> Delivery {
        if group.status() == NotificationStatus::Resolved {
            self.forget(&parent);
            return Delivery { thread: None };
        }
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        if threads.len() >= MAX_REMEMBERED_THREADS {
            threads.clear();
        }
        threads.insert(parent.encode(), render::snapshot(group));
        Delivery {
            thread: Some(parent.encode()),
        }
    }

    fn remembered(&self, parent: &ThreadRef) -> Option<Snapshot> {
        let threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        threads.get(&parent.encode()).cloned()
    }

    fn forget(&self, parent: &ThreadRef) {
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        threads.remove(&parent.encode());
    }

    /// One API call under the configured timeout, its failure classified.
    async fn call<T>(
        &self,
        method: &str,
        request: impl Future<Output = ClientResult<T>>,
    ) -> Result<T, SendError> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(self.classify(method, e)),
            Err(_) => Err(SendError::recoverable(
                "timeout",
                format!(
                    "slack receiver {:?}: {method}: no answer within {:?}",
                    self.name, self.timeout
                ),
            )),
        }
    }

    fn classify(&self, method: &str, error: SlackClientError) -> SendError {
        let context = format!("slack receiver {:?}: {method}", self.name);
        match error {
            SlackClientError::RateLimitError(e) => {
                let wait = e
                    .retry_after
                    .map(|d| format!("; Retry-After {}s", d.as_secs()))
                    .unwrap_or_default();
                SendError::recoverable(
                    "rate_limited",
                    format!("{context}: rate limited (HTTP 429{wait})"),
                )
                .with_retry_after(e.retry_after)
            }
            SlackClientError::ApiError(e) => from_code(&context, &e.code, None),
            SlackClientError::HttpError(e) => {
                let status = e.status_code.as_u16();
                // Incoming webhooks answer with an HTTP status and the error code as text.
                let body_code = e
                    .http_response_body
                    .as_deref()
                    .map(str::trim)
                    .filter(|b| known_code(b).is_some());
                match body_code {
                    Some(code) => from_code(&context, code, Some(status)),
                    None if e.status_code.is_server_error() => {
                        SendError::recoverable("http_5xx", format!("{context}: HTTP {status}"))
                    }
                    None if status == 408 => {
                        SendError::recoverable("timeout", format!("{context}: HTTP 408"))
                    }
                    None => SendError::permanent_with_reason(
                        "http_4xx",
                        format!("{context}: HTTP {status}; not retried"),
                    ),
                }
            }
            SlackClientError::ProtocolError(e) => SendError::recoverable(
                "bad_response",
                self.scrub(&format!(
                    "{context}: the answer is not Slack's JSON: {}",
                    e.json_error
                )),
            ),
            SlackClientError::HttpProtocolError(e) => SendError::recoverable(
                "connect",
                self.scrub(&format!(
                    "{context}: {}",
                    describe_cause(e.cause.as_deref())
                )),
            ),
            SlackClientError::SystemError(e) => SendError::recoverable(
                "connect",
                self.scrub(&format!(
                    "{context}: {}",
                    describe_cause(e.cause.as_deref())
                )),
            ),
            SlackClientError::EndOfStream(_) | SlackClientError::SocketModeProtocolError(_) => {
                SendError::recoverable("connect", format!("{context}: connection closed"))
            }
        }
    }

    fn scrub(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_string(), |acc, secret| {
            acc.replace(secret.as_str(), "***")
        })
    }
}

/// The whole cause chain of a transport error, one line.
fn describe_cause(cause: Option<&(dyn std::error::Error + Send + Sync)>) -> String {
    let Some(mut e) = cause.map(|c| c as &dyn std::error::Error) else {
        return "request failed".to_string();
    };
    let mut text = e.to_string();
    while let Some(next) = e.source() {
        text.push_str(": ");
        text.push_str(&next.to_string());
        e = next;
    }
    text
}

/// A Slack error code: whether a retry can help, and what it means for the operator.
struct SlackCode {
    code: &'static str,
    /// The reason label: the code itself, except where two codes mean the same.
    label: &'static str,
    recoverable: bool,
    meaning: &'static str,
}

const fn transient(code: &'static str, meaning: &'static str) -> SlackCode {
    SlackCode {
        code,
        label: code,
        recoverable: true,
        meaning,
    }
}

const fn permanent(code: &'static str, meaning: &'static str) -> SlackCode {
    SlackCode {
        code,
        label: code,
        recoverable: false,
        meaning,
    }
}

/// The codes of `chat.postMessage`, `chat.update` and incoming webhooks we tell apart. Their
/// names are the reason labels (a bounded set); any other code is `slack_error`.
const SLACK_CODES: &[SlackCode] = &[
    // Same label as an HTTP 429.
    SlackCode {
        code: "ratelimited",
        label: "rate_limited",
        recoverable: true,
        meaning: "rate limited",
    },
    transient("rate_limited", "rate limited"),
    transient("internal_error", "Slack internal error"),
    transient("fatal_error", "Slack fatal error"),
    transient("service_unavailable", "Slack is unavailable"),
    transient("request_timeout", "Slack timed out"),
    transient("rollup_error", "Slack webhook error"),
    transient("team_added_to_org", "workspace migration in progress"),
    permanent("invalid_auth", "the token is invalid"),
    permanent("not_authed", "no token was accepted"),
    permanent(
        "account_inactive",
        "the token's user or workspace is deactivated",
    ),
    permanent("token_revoked", "the token was revoked"),
    permanent("token_expired", "the token expired"),
    permanent("no_permission", "the token lacks a permission"),
    permanent("missing_scope", "the token lacks the chat:write scope"),
    permanent("not_allowed_token_type", "this token type cannot post"),
    permanent(
        "ekm_access_denied",
        "refused by the workspace's key management",
    ),
    permanent("access_denied", "access denied"),
    permanent(
        "channel_not_found",
        "the channel does not exist or the app cannot see it",
    ),
    permanent(
        "not_in_channel",
        "the bot is not a member of the channel (invite it)",
    ),
    permanent("is_archived", "the channel is archived"),
    permanent("channel_is_archived", "the channel is archived"),
    permanent(
        "restricted_action",
        "a workspace setting forbids posting there",
    ),
    permanent(
        "restricted_action_read_only_channel",
        "the channel is read-only",
    ),
    permanent(
        "restricted_action_thread_only_channel",
        "the channel accepts thread replies only",
    ),
    permanent(
        "restricted_action_non_threadable_channel",
        "the channel has no threads",
    ),
    permanent("msg_too_long", "the message is too long"),
    permanent("no_text", "the message has no text"),
    permanent("too_many_attachments", "too many attachments"),
    permanent("invalid_blocks", "Slack refused the Block Kit layout"),
    permanent(
        "invalid_blocks_format",
        "Slack refused the Block Kit layout",
    ),
    permanent(
        "invalid_metadata_format",
        "Slack refused the message metadata",
    ),
    permanent(
        "invalid_metadata_schema",
        "Slack refused the message metadata",
    ),
    permanent("metadata_too_large", "the message metadata is too large"),
    permanent(
        "message_not_found",
        "the message to update no longer exists",
    ),
    permanent(
        "cant_update_message",
        "the message was not posted by this app",
    ),
    permanent("edit_window_closed", "the message can no longer be edited"),
    permanent("invalid_arguments", "Slack refused the request's arguments"),
    permanent("invalid_arg_name", "Slack refused the request's arguments"),
    permanent("invalid_charset", "Slack refused the request's charset"),
    permanent("invalid_form_data", "Slack refused the request body"),
    permanent("invalid_json", "Slack refused the request body"),
    permanent("json_not_object", "Slack refused the request body"),
    permanent("invalid_post_type", "Slack refused the request body"),
    permanent("missing_post_type", "Slack refused the request body"),
    permanent("invalid_payload", "Slack refused the webhook payload"),
    permanent("invalid_token", "the webhook token is invalid"),
    permanent("action_prohibited", "the workspace forbids this webhook"),
    permanent(
        "no_service",
        "the webhook URL is disabled or does not exist",
    ),
    permanent("no_team", "the webhook's workspace does not exist"),
    permanent("user_not_found", "user not found"),
    permanent(
        "two_factor_setup_required",
        "the workspace requires two-factor setup",
    ),
    permanent("method_deprecated", "the API method is deprecated"),
    permanent("deprecated_endpoint", "the API endpoint is deprecated"),
];

fn known_code(code: &str) -> Option<&'static SlackCode> {
    SLACK_CODES.iter().find(|c| c.code == code)
}

fn from_code(context: &str, code: &str, http_status: Option<u16>) -> SendError {
    let status = http_status
        .map(|s| format!(" (HTTP {s})"))
        .unwrap_or_default();
    match known_code(code) {
        Some(known) if known.recoverable => SendError::recoverable(
            known.label,
            format!(
                "{context}: Slack answered {}{status}: {}",
                known.code, known.meaning
            ),
        ),
        Some(known) => SendError::permanent_with_reason(
            known.label,
            format!(
                "{context}: Slack answered {}{status}: {}; not retried",
                known.code, known.meaning
            ),
        ),
        None => {
            // Shown, not used as a label: only a plain code, and not too long.
            let shown: String = code
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            SendError::permanent_with_reason(
                "slack_error",
                format!("{context}: Slack answered {shown}{status}; not retried"),
            )
        }
    }
}
