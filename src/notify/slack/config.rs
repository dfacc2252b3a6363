//! `[[receivers]] slack = { … }`: a bot token and a channel (post, then update the message and
//! reply in its thread), or an incoming webhook URL (one new message per send).

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Checker, Secret, SecretRef};

pub const DEFAULT_API_URL: &str = "https://slack.com/api";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlack {
    pub name: String,
    /// Bot mode: a bot token (`xoxb-…`, scope `chat:write`) and the channel to post to.
    pub token: Option<SecretRef>,
    pub channel: Option<String>,
    /// Webhook mode: the incoming webhook URL. Whoever holds it can post, so it is a secret.
    pub webhook_url: Option<SecretRef>,
    /// Base of the Web API methods (`{api_url}/chat.postMessage`).
    pub api_url: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SlackReceiver {
    pub name: String,
    pub mode: SlackMode,
    /// Without a trailing slash.
    pub api_url: url::Url,
    /// For one Slack API call (a send may make two: the update and the thread reply).
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum SlackMode {
    /// `chat.postMessage`, then `chat.update` + a threaded reply for the same group.
    Bot { token: Secret, channel: String },
    /// Incoming webhook: cannot update or thread, so every send is a new message.
    Webhook { url: Secret },
}

impl RawSlack {
    /// Checks every field, recording errors with their paths; `None` when the receiver cannot
    /// be built (the errors say why).
    pub fn validate(&self, path: &str, c: &mut Checker) -> Option<SlackReceiver> {
        c.name(&format!("{path}.name"), &self.name);
        let api_url = c.url(
            &format!("{path}.api_url"),
            self.api_url
                .as_deref()
                .unwrap_or(DEFAULT_API_URL)
                .trim_end_matches('/'),
        );
        let timeout = c.positive_duration(
            &format!("{path}.timeout"),
            self.timeout.as_deref(),
            DEFAULT_TIMEOUT,
        );
        let mode = match (&self.token, &self.channel, &self.webhook_url) {
            (Some(token), Some(channel), None) => {
                let channel_ok = !channel.is_empty()
                    && !channel.chars().any(|ch| ch.is_whitespace() || ch == ':');
                if !channel_ok {
                    c.error(
                        format!("{path}.channel"),
                        format!(
                            "invalid channel {channel:?}: give a channel ID (e.g. \"C0123456789\") or name (\"#alerts\")"
                        ),
                    );
                }
                let token = c.secret(&format!("{path}.token"), token);
                channel_ok.then(|| SlackMode::Bot {
                    token,
                    channel: channel.clone(),
                })
            }
            (None, None, Some(url)) => {
                let url_path = format!("{path}.webhook_url");
                let url = c.secret(&url_path, url);
                // The value is a secret: the error must not quote it.
                let valid = url.expose().is_empty()
                    || url::Url::parse(url.expose()).is_ok_and(|u| {
                        matches!(u.scheme(), "http" | "https") && u.host().is_some()
                    });
                if !valid {
                    c.error(
                        url_path,
                        "the secret is not an http(s) URL (value not shown); expected e.g. \
                         https://hooks.slack.com/services/T…/B…/…",
                    );
                }
                valid.then_some(SlackMode::Webhook { url })
            }
            (Some(_), None, None) => {
                c.error(
                    format!("{path}.channel"),
                    "required with token (a channel ID such as \"C0123456789\")",
                );
                None
            }
            (None, Some(_), None) => {
                c.error(
                    format!("{path}.token"),
                    "required with channel, e.g. token = { env = \"SLACK_BOT_TOKEN\" }",
                );
                None
            }
            (None, None, None) => {
                c.error(
                    path,
                    "give either token + channel (bot mode) or webhook_url (incoming webhook mode)",
                );
                None
            }
            (_, _, Some(_)) => {
                c.error(
                    path,
                    "give either token + channel (bot mode) or webhook_url (incoming webhook mode), not both",
                );
                None
            }
        };
        Some(SlackReceiver {
            name: self.name.clone(),
            mode: mode?,
            api_url: api_url?,
            timeout,
        })
    }
}
