//! Red Hat 3scale Billing API: invoices of buyer accounts (XML), with their line items.
//! Open invoices are the current period so far; closed ones are period totals; variable-cost
//! line items carry usage (API hits) as well as spend.

pub mod client;
pub mod config;
pub mod map;
pub mod wire;

pub use client::ThreescaleClient;

#[cfg(test)]
mod tests;
