//! RackNap (cloud billing for resellers): invoices per customer as period totals.

pub mod client;
pub mod config;
pub mod map;
pub mod wire;

pub use client::RacknapClient;

#[cfg(test)]
mod tests;
