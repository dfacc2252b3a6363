//! Prometheus as a traffic source: any PromQL over `/api/v1/query_range`.

pub mod client;
pub mod config;
pub mod map;
pub mod wire;

pub use client::PrometheusClient;

#[cfg(test)]
mod tests;
