//! One integration-test binary: the real `spendwatch` binary against the simulator on 127.0.0.1.

mod alertmanager;
mod artifacts;
mod bench_prometheus;
mod browser;
mod cli;
mod cluster;
mod deploy;
mod e2e;
mod faults;
mod notify;
mod restart;
mod scenarios;
mod slack;
mod soak;
mod sources;
mod stack;
mod support;
