//! Server-rendered pages for on-call: `/` overview, `/alerts/{fingerprint}` (chart, band,
//! contributors, history, silence form), `/rules` and `/sources`. HTML comes from maud
//! (compile-time checked, escaped by default); charts are inline SVG; no JS.

pub mod alert;
pub mod chart;
pub mod data;
pub mod format;
pub mod layout;
pub mod overview;
pub mod rules;
pub mod sources;
#[cfg(test)]
mod tests;

use axum::Router;
use axum::routing::{get, post};

use crate::alerting::links::LinkBuilder;
use crate::config::{Config, RuleConfig};
use crate::model::Clock;
use crate::server::ServerState;

/// What the pages need that the API's state does not hold.
pub struct PageContext {
    pub rules: Vec<RuleConfig>,
    pub links: LinkBuilder,
    /// The pipeline's clock: data and alert times are in its time (simulated in `demo`).
    pub clock: Clock,
}

impl Default for PageContext {
    fn default() -> Self {
        PageContext {
            rules: Vec::new(),
            links: LinkBuilder::default(),
            clock: Clock::System,
        }
    }
}

impl PageContext {
    pub fn new(config: &Config, clock: Clock) -> Self {
        PageContext {
            rules: config.rules.clone(),
            links: LinkBuilder::new(config.links.clone()),
            clock,
        }
    }
}

pub fn routes() -> Router<ServerState> {
    Router::new()
        .route("/", get(overview::page))
        .route("/alerts/{fingerprint}", get(alert::page))
        .route("/alerts/{fingerprint}/silence", post(alert::silence))
        .route("/rules", get(rules::page))
        .route("/sources", get(sources::page))
}
