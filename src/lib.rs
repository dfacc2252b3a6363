//! spendwatch: spend alerting and anomaly monitoring for billing APIs.
//!
//! Data flows one way: `sources → store → eval → alerting → notify`; `metrics` is a
//! read-only view of all of them. The types crossing each seam live in [`model`].

pub mod alerting;
pub mod backtest;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod detect;
pub mod eval;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod runtime;
pub mod server;
pub mod sim;
pub mod soak;
pub mod sources;
pub mod store;
pub mod web;

/// Installs the one TLS crypto provider (ring) for this process. Idempotent; every HTTP
/// client is built after calling it, because reqwest without a provider panics.
pub fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
