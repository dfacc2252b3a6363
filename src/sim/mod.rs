//! Simulators of the billing APIs (Rackspace Identity + Billing v2 so far), with control
//! endpoints under `/_sim/` to inject faults and incidents, and a webhook receiver that
//! records what spendwatch delivers. Used by `spendwatch sim`, `demo` and the tests.

pub mod faults;
pub mod prometheus;
pub mod racknap;
pub mod rackspace;
pub mod receiver;
pub mod sakura;
pub mod slack;
pub mod threescale;
pub mod world;

pub use faults::{FaultKind, FaultRequest};

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::model::Clock;

pub const DEFAULT_USERNAME: &str = "demo";
pub const DEFAULT_API_KEY: &str = "demo-api-key";

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct SimStats {
    pub auth_requests: u64,
    pub billing_requests: u64,
    pub unauthorized: u64,
    pub faults_served: u64,
}

pub(crate) struct Inner {
    pub accounts: Vec<world::SimAccount>,
    /// token → real expiry
    pub tokens: HashMap<String, jiff::Timestamp>,
    pub faults: VecDeque<FaultRequest>,
    pub stats: SimStats,
    pub webhooks: receiver::Received,
}

/// Shared simulator state.
#[derive(Clone)]
pub struct Sim {
    pub clock: Clock,
    pub username: String,
    pub api_key: String,
    pub token_ttl: std::time::Duration,
    /// The fake Slack Web API, served under `/slack`.
    pub slack: slack::FakeSlack,
    inner: Arc<Mutex<Inner>>,
}

impl Sim {
    pub fn new(clock: Clock, accounts: Vec<world::SimAccount>) -> Self {
        Sim {
            clock,
            username: DEFAULT_USERNAME.into(),
            api_key: DEFAULT_API_KEY.into(),
            token_ttl: std::time::Duration::from_secs(24 * 3600),
            slack: slack::FakeSlack::default(),
            inner: Arc::new(Mutex::new(Inner {
                accounts,
                tokens: HashMap::new(),
                faults: VecDeque::new(),
                stats: SimStats::default(),
                webhooks: receiver::Received::default(),
            })),
        }
    }

    /// The state lock; a poisoned lock (a panicked handler) is recovered, the data is plain.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }

    /// Queues a fault for the next `count` data requests of `fault.api`.
    pub fn inject_fault(&self, fault: FaultRequest) {
        if fault.count > 0 {
            self.lock().faults.push_back(fault);
        }
    }

    /// Takes the next queued fault for `api`, if any, and counts it as served.
    pub fn take_fault(&self, api: &str) -> Option<FaultRequest> {
        let mut inner = self.lock();
        let index = inner.faults.iter().position(|f| f.api == api)?;
        let fault = inner.faults.get_mut(index)?;
        fault.count = fault.count.saturating_sub(1);
        let served = fault.clone();
        if fault.count == 0 {
            inner.faults.remove(index);
        }
        inner.stats.faults_served += 1;
        Some(served)
    }

    /// The simulated accounts served by `api`, as of now.
    pub fn accounts(&self, api: world::Api) -> Vec<world::SimAccount> {
        self.lock()
            .accounts
            .iter()
            .filter(|a| a.api == api)
            .cloned()
            .collect()
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Expires every token issued so far: the next billing call answers 401.
    pub fn expire_tokens(&self) {
        let past = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1);
        for exp in self.lock().tokens.values_mut() {
            *exp = past;
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/v2.0/tokens", post(rackspace::tokens))
            .route(
                "/v2/accounts/{ran}/estimated_charges",
                get(rackspace::estimated_charges),
            )
            // The documented `next` links use this spelling.
            .route(
                "/v2/accounts/{ran}/estimated-charges",
                get(rackspace::estimated_charges),
            )
            .route(
                "/api/v1/query_range",
                get(prometheus::query_range_get).post(prometheus::query_range_post),
            )
            .route("/api/invoices.xml", get(threescale::list_invoices))
            .route(
                "/api/accounts/{id}/invoices.xml",
                get(threescale::list_account_invoices),
            )
            // `{id}.xml`: the router has no suffix parameters.
            .route("/api/invoices/{file}", get(threescale::get_invoice))
            .route(
                "/api/invoices/{id}/line_items.xml",
                get(threescale::get_line_items),
            )
            // SAKURA: any zone answers the same (billing is per account).
            .route(
                "/cloud/zone/{zone}/api/cloud/1.1/auth-status",
                get(sakura::auth_status),
            )
            .route(
                "/cloud/zone/{zone}/api/system/1.0/bill/by-contract/{account}",
                get(sakura::bills_all),
            )
            .route(
                "/cloud/zone/{zone}/api/system/1.0/bill/by-contract/{account}/{year}",
                get(sakura::bills_by_year),
            )
            .route(
                "/cloud/zone/{zone}/api/system/1.0/bill/by-contract/{account}/{year}/{month}",
                get(sakura::bills_by_month),
            )
            .route(
                "/cloud/zone/{zone}/api/system/1.0/billdetail/{member}/{bill}",
                get(sakura::bill_details),
            )
            .route(
                "/cloud/zone/{zone}/api/system/1.0/billdetail/{member}/{bill}/csv",
                get(sakura::bill_csv),
            )
            .route("/v1/invoices", get(racknap::list_invoices))
            .route("/_sim/faults", post(rackspace::inject_fault))
            .route("/_sim/expire-tokens", post(rackspace::expire_tokens))
            .route(
                "/_sim/accounts/{ran}/adjustments",
                post(rackspace::add_adjustment),
            )
            .route("/_sim/stats", get(rackspace::stats))
            .route("/_sim/webhook", post(receiver::receive).get(receiver::list))
            .route("/_sim/webhook/mode", post(receiver::set_mode))
            .with_state(self.clone())
            .nest("/slack", self.slack.router())
    }

    /// Binds and serves until the returned handle is aborted or the process ends.
    pub async fn start(
        &self,
        addr: SocketAddr,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let app = self.router();
        let handle = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "Simulator server stopped.");
            }
        });
        Ok((local, handle))
    }
}
