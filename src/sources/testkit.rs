//! One harness for every source against its simulator: the fault matrix (each fault →
//! the expected error kind, nothing returned, and the next poll succeeds).

use std::net::SocketAddr;

use jiff::Timestamp;

use super::{BillingSource, PollErrorKind};
use crate::model::{Clock, Observation};
use crate::sim::{self, FaultKind, FaultRequest, Sim};

/// The fault matrix every source that cannot re-authenticate by itself answers the same way.
pub const STANDARD_FAULTS: &[(FaultKind, PollErrorKind)] = &[
    (FaultKind::Malformed, PollErrorKind::Malformed),
    (FaultKind::Truncated, PollErrorKind::Malformed),
    (FaultKind::Html, PollErrorKind::NotJson),
    (FaultKind::Status401, PollErrorKind::Auth),
    (FaultKind::Status429, PollErrorKind::RateLimited),
    (FaultKind::Status500, PollErrorKind::Server),
    (FaultKind::Status503, PollErrorKind::Server),
    (FaultKind::Timeout, PollErrorKind::Timeout),
];

/// The simulator with the demo world on a free loopback port, on the real clock.
pub async fn start_sim() -> (Sim, SocketAddr) {
    crate::ensure_crypto_provider();
    let sim = Sim::new(Clock::System, sim::world::demo_world());
    let (addr, _task) = sim
        .start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("simulator starts");
    (sim, addr)
}

/// Polls once and expects success.
pub async fn poll_ok(source: &dyn BillingSource, target: &str) -> Vec<Observation> {
    match source.poll(target, Timestamp::now(), "testkit").await {
        Ok(obs) => obs,
        Err(e) => panic!(
            "{} {target}: expected a successful poll, got {e}",
            source.kind()
        ),
    }
}

/// Runs the fault matrix. The source must be built with `max_retries = 1` and a request
/// timeout under the simulator's 2 s fault delay, so each fault is served `count = 2`
/// times to exhaust the retries.
pub async fn assert_fault_matrix(
    source: &dyn BillingSource,
    sim: &Sim,
    api: &str,
    target: &str,
    cases: &[(FaultKind, PollErrorKind)],
) {
    for (fault, expected) in cases {
        sim.clear_faults();
        sim.inject_fault(FaultRequest {
            api: api.into(),
            fault: *fault,
            count: 2,
            delay_ms: Some(2_000),
        });
        match source.poll(target, Timestamp::now(), "testkit").await {
            Ok(obs) => panic!(
                "{api} {fault:?}: expected {expected}, got {} observations",
                obs.len()
            ),
            Err(e) => assert_eq!(e.kind, *expected, "{api} {fault:?}: {e}"),
        }
        sim.clear_faults();
        poll_ok(source, target).await;
    }
}
