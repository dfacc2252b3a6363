//! Rackspace Billing v2: estimated charges for the current billing cycle.

pub mod client;
pub mod config;
pub mod map;
pub mod wire;

pub use client::RackspaceClient;

#[cfg(test)]
mod tests;
