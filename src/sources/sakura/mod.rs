//! SAKURA Cloud billing API (請求関連API): monthly bills of the API key's account, with
//! per-contract details and the CSV statement. Calendar months in JST, amounts in JPY.

pub mod client;
pub mod config;
pub mod map;
pub mod wire;

pub use client::SakuraClient;

#[cfg(test)]
mod tests;
