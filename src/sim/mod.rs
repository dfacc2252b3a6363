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

pub use faults::{FaultKind, FaultRequest, RandomFaults};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::routing::{get, post};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
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
    /// Faults served per API and kind (`rackspace` → `status503` → 2).
    #[serde(default)]
    pub faults_by_api: BTreeMap<String, BTreeMap<String, u64>>,
}

pub(crate) struct Inner {
    pub accounts: Vec<world::SimAccount>,
    /// token → real expiry
    pub tokens: HashMap<String, jiff::Timestamp>,
    pub faults: VecDeque<FaultRequest>,
    /// The random schedule, if any, with its generator.
    pub random_faults: Option<(RandomFaults, StdRng)>,
    pub stats: SimStats,
    pub webhooks: receiver::Received,
    /// Every billing poll (first page of a Rackspace account), in arrival order.
    pub polls: Vec<PollRecord>,
}

/// Poll records kept (about 30 MB).
pub const MAX_POLL_RECORDS: usize = 200_000;

/// One billing poll as the simulator saw it: which account, who asked, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollRecord {
    pub account: String,
    /// The `User-Agent` (spendwatch names its replica there in a cluster).
    pub requester: String,
    pub at: jiff::Timestamp,
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
                random_faults: None,
                stats: SimStats::default(),
                webhooks: receiver::Received::default(),
                polls: Vec::new(),
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

    /// Draws a fault for every data request from now on (`None` turns the schedule off).
    /// Queued faults are served first.
    pub fn set_random_faults(&self, schedule: Option<RandomFaults>) {
        self.lock().random_faults = schedule.map(|s| {
            let rng = StdRng::seed_from_u64(s.seed);
            (s, rng)
        });
    }

    /// Takes the next queued fault for `api`, else draws one from the random schedule, and
    /// counts it as served.
    pub fn take_fault(&self, api: &str) -> Option<FaultRequest> {
        let mut inner = self.lock();
        let served = match inner.faults.iter().position(|f| f.api == api) {
            Some(index) => {
                let fault = inner.faults.get_mut(index)?;
                fault.count = fault.count.saturating_sub(1);
                let served = fault.clone();
                if fault.count == 0 {
                    inner.faults.remove(index);
                }
                served
            }
            None => {
                let (schedule, rng) = inner.random_faults.as_mut()?;
                if schedule.kinds.is_empty() || !rng.random_bool(schedule.rate.clamp(0.0, 1.0)) {
                    return None;
                }
                let kind = *schedule
                    .kinds
                    .get(rng.random_range(0..schedule.kinds.len()))?;
                FaultRequest {
                    api: api.to_string(),
                    fault: kind,
                    count: 1,
                    delay_ms: schedule.delay_ms,
                }
            }
        };
        inner.stats.faults_served += 1;
        *inner
            .stats
            .faults_by_api
            .entry(api.to_string())
            .or_default()
            .entry(served.fault.as_str().to_string())
            .or_default() += 1;
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

    /// Every billing poll recorded so far (Rackspace accounts, first pages), in order.
    pub fn polls(&self) -> Vec<PollRecord> {
        self.lock().polls.clone()
    }

    /// Drops the queued faults (the random schedule stays as set).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sim() -> Sim {
        Sim::new(Clock::System, world::demo_world())
    }

    #[test]
    fn random_faults_follow_the_rate_and_queued_faults_come_first() {
        let sim = sim();
        assert!(sim.take_fault("sakura").is_none(), "no schedule, no fault");

        sim.set_random_faults(Some(RandomFaults {
            rate: 1.0,
            kinds: vec![FaultKind::Status503],
            delay_ms: Some(10),
            seed: 7,
        }));
        sim.inject_fault(FaultRequest {
            api: "sakura".into(),
            fault: FaultKind::Html,
            count: 1,
            delay_ms: None,
        });
        let first = sim.take_fault("sakura").unwrap();
        assert_eq!(first.fault, FaultKind::Html, "the queued fault first");
        for _ in 0..5 {
            let drawn = sim.take_fault("sakura").unwrap();
            assert_eq!(
                (drawn.fault, drawn.delay_ms),
                (FaultKind::Status503, Some(10))
            );
        }
        let stats = sim.stats();
        assert_eq!(stats.faults_served, 6);
        assert_eq!(stats.faults_by_api["sakura"]["status503"], 5);
        assert_eq!(stats.faults_by_api["sakura"]["html"], 1);

        sim.set_random_faults(Some(RandomFaults {
            rate: 0.0,
            kinds: FaultKind::ALL.to_vec(),
            delay_ms: None,
            seed: 7,
        }));
        assert!((0..100).all(|_| sim.take_fault("rackspace").is_none()));
        sim.set_random_faults(None);
        assert!(sim.take_fault("rackspace").is_none());
    }

    /// About `rate` of the requests get a fault, and the same seed draws the same kinds.
    #[test]
    fn a_seeded_schedule_is_repeatable() {
        let draw = || {
            let sim = sim();
            sim.set_random_faults(Some(RandomFaults {
                rate: 0.2,
                kinds: FaultKind::ALL.to_vec(),
                delay_ms: None,
                seed: 42,
            }));
            (0..2000)
                .map(|_| sim.take_fault("prometheus").map(|f| f.fault))
                .collect::<Vec<_>>()
        };
        let (a, b) = (draw(), draw());
        assert_eq!(a, b);
        let faults = a.iter().flatten().count();
        assert!((300..500).contains(&faults), "{faults} of 2000 at 20 %");
        for kind in FaultKind::ALL {
            assert!(a.contains(&Some(kind)), "{kind:?} drawn");
        }
    }

    #[test]
    fn fault_kind_names_are_the_wire_names() {
        for kind in FaultKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }
}
