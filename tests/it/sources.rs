//! Every source on one config, polled by the real binary against the simulator: metrics per
//! source, and `poll-once --json` output that is stable from one run to the next.

use std::collections::BTreeSet;

use crate::support::*;

/// Source blocks for every API the simulator serves, appended to the base test config.
fn all_sources(sim: std::net::SocketAddr) -> String {
    format!(
        r#"
[[sources]]
[sources.prometheus]
name = "prom"
url = "http://{sim}/"
step = "1h"
lookback = "3h"
interval = "1s"
timeout = "2s"
max_retries = 0
queries = [{{ name = "requests", query = 'sum by (account) (increase(requests_total[1h]))', unit = "requests" }}]

[[sources]]
[sources.sakura]
name = "sakura"
access_token = {{ file = "sakura-token" }}
access_token_secret = {{ file = "sakura-secret" }}
base_url = "http://{sim}/cloud/zone/is1a/api/"
interval = "1s"
months = 1
timeout = "2s"
max_retries = 0

[[sources]]
[sources.racknap]
name = "racknap"
api_key = {{ file = "api-key" }}
base_url = "http://{sim}/v1/"
interval = "1s"
timeout = "2s"
max_retries = 0

[[sources]]
[sources.threescale]
name = "threescale"
base_url = "http://{sim}/"
access_token = {{ file = "threescale-token" }}
months = 2
interval = "1s"
timeout = "2s"
max_retries = 0

# Waits: a few hours of traffic history are far from a 14-day baseline.
[[rules]]
[rules.ratio]
name = "unit-cost"
numerator = {{ source = "rs" }}
denominator = {{ source = "prom", match = {{ series = "requests" }} }}
window = "1h"
baseline = {{ history = "14d" }}

[[sources]]
[sources.file]
name = "csv"
path = "traffic.csv"
unit = "GB"
series = "egress"
interval = "1s"
"#
    )
}

/// The base config plus every other source, with the CSV it reads.
fn multi_source_config(sim: std::net::SocketAddr) -> TestConfig {
    let config = write_config(
        sim,
        ConfigOptions {
            extra: all_sources(sim),
            ..Default::default()
        },
    );
    let dir = config.dir.path();
    std::fs::write(dir.join("traffic.csv"), CSV).expect("write CSV");
    std::fs::write(
        dir.join("sakura-token"),
        spendwatch::sim::sakura::DEMO_ACCESS_TOKEN,
    )
    .expect("write");
    std::fs::write(
        dir.join("sakura-secret"),
        spendwatch::sim::sakura::DEMO_ACCESS_TOKEN_SECRET,
    )
    .expect("write");
    std::fs::write(
        dir.join("threescale-token"),
        spendwatch::sim::threescale::ACCESS_TOKEN,
    )
    .expect("write");
    config
}

const CSV: &str = "timestamp,value,labels\n2026-11-24T10:00:00Z,182.5,account=020-1001\n2026-11-24T11:00:00Z,201,account=020-1001\n";

/// Per source: a metric family with a sample from that source once it has been polled.
const EXPECTED: &[(&str, &str)] = &[
    ("rs", "spendwatch_spend_period_to_date"),
    ("sakura", "spendwatch_spend_last_period"),
    ("racknap", "spendwatch_spend_last_period"),
    ("threescale", "spendwatch_spend_period_to_date"),
    ("threescale", "spendwatch_usage_period_to_date"),
    ("prom", "spendwatch_traffic"),
    ("csv", "spendwatch_traffic"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_source_on_one_config() {
    let (_sim, sim_addr) = start_sim().await;
    let config = multi_source_config(sim_addr);
    let daemon = Daemon::start(&config).await;
    for (source, family) in EXPECTED {
        let selector = format!("source=\"{source}\"");
        daemon
            .wait_metric(
                &format!("a successful poll of {source}"),
                &["spendwatch_polls_total", &selector, "outcome=\"success\""],
                |v| v >= 1.0,
            )
            .await;
        daemon
            .wait_metric(
                &format!("{family} from {source}"),
                &[family, &selector],
                |_| true,
            )
            .await;
    }
    daemon
        .wait_metric(
            "the ratio rule waiting",
            &[
                "spendwatch_rule_instances",
                "rule=\"unit-cost\"",
                "outcome=\"waiting\"",
            ],
            |v| v >= 1.0,
        )
        .await;
    let rules: serde_json::Value = reqwest::get(format!("{}/api/v1/rules", daemon.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ratio = rules["data"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "unit-cost")
        .cloned()
        .unwrap();
    let reason = ratio["instances"][0]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(ratio["instances"][0]["outcome"], "waiting", "{ratio}");
    assert!(
        reason.contains("learning the baseline") || reason.contains("not complete"),
        "{reason}"
    );
    let text = daemon.metrics().await;
    assert_eq!(
        metric_sum(&text, &["spendwatch_poll_errors_total"]),
        0.0,
        "{text}"
    );
    assert!(
        metric(&text, &["spendwatch_data_lag_seconds", "source=\"csv\""]).unwrap_or(0.0) > 3600.0,
        "the CSV's newest row is old: its lag shows it"
    );
}

/// The shape of `poll-once --json`: per target, the sorted series keys with kind and unit.
fn shape(json: &serde_json::Value) -> Vec<(String, String, bool, BTreeSet<String>)> {
    json.as_array()
        .expect("an array of polls")
        .iter()
        .map(|poll| {
            let series = poll["observations"]
                .as_array()
                .expect("observations")
                .iter()
                .map(|o| format!("{} {} {}", o["key"], o["kind"], o["unit"]))
                .collect();
            (
                poll["source"].as_str().unwrap_or("").to_string(),
                poll["account"].as_str().unwrap_or("").to_string(),
                poll["ok"].as_bool().unwrap_or(false),
                series,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_once_json_is_stable() {
    let (_sim, sim_addr) = start_sim().await;
    let config = multi_source_config(sim_addr);
    let cfg = config.path.to_str().unwrap().to_string();
    let run = move || {
        let out = run_cli(&["poll-once", "--json", "--config", &cfg], &[], None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON on stdout")
    };
    let first = tokio::task::spawn_blocking(run.clone()).await.unwrap();
    let second = tokio::task::spawn_blocking(run).await.unwrap();
    let (a, b) = (shape(&first), shape(&second));
    assert_eq!(a, b, "same targets, same series, same order");
    let sources: BTreeSet<&str> = a.iter().map(|(s, ..)| s.as_str()).collect();
    for (source, _) in EXPECTED {
        assert!(sources.contains(source), "{source} polled: {sources:?}");
    }
    assert!(
        a.iter().all(|(_, _, ok, series)| *ok && !series.is_empty()),
        "{a:?}"
    );
}
