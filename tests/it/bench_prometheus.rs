//! The Prometheus side-by-side (`benches/prometheus-side-by-side.sh`) at a tiny size: the
//! bench world exported as OpenMetrics, backfilled with `promtool tsdb create-blocks-from
//! openmetrics`, served by Debian's `prometheus`, answers the unit-cost expression of the
//! exported rule file with the unit cost spendwatch's `unit-cost` rule computes from its own
//! store of the same world, for every account.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rust_decimal::prelude::ToPrimitive;
use serde_json::Value;
use spendwatch::config::Config;
use spendwatch::eval::Evaluator;
use spendwatch::metrics::Metrics;
use spendwatch::model::Outcome;
use spendwatch::store::SqliteStore;

use crate::support::{free_addr, init, run_cli};

const ACCOUNTS: usize = 20;
/// A whole day, so the rule's window is the day before it; no month starts in the world.
const END: &str = "2026-01-20T00:00:00Z";

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Killed and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spendwatch(args: &[&str]) -> String {
    let out = run_cli(args, &[], None);
    assert!(
        out.status.success(),
        "spendwatch {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn checked(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// spendwatch's unit cost per account for the `unit-cost` rule at `at`, and the window end.
fn spendwatch_unit_costs(dir: &Path, at: Timestamp) -> (BTreeMap<String, f64>, Timestamp) {
    let config = Config::load(&dir.join("bench.toml")).expect("bench config");
    let rules = config
        .rules
        .into_iter()
        .filter(|r| r.name() == "unit-cost")
        .collect();
    let store = SqliteStore::open(&dir.join("bench.db")).expect("bench store");
    let evaluation = Evaluator::new(rules).evaluate(&store, at, &Metrics::new());
    assert!(evaluation.errors.is_empty(), "{:?}", evaluation.errors);
    let mut window_end = None;
    let costs = evaluation
        .transitions
        .iter()
        .map(|t| {
            let finding = match &t.outcome {
                Outcome::Breach(f) | Outcome::Clear(f) => f,
                Outcome::Waiting(why) => panic!("{:?} waiting: {why}", t.labels),
            };
            window_end = Some(t.data_time);
            (
                t.labels["account"].clone(),
                finding.value.to_f64().expect("a finite cost"),
            )
        })
        .collect();
    (costs, window_end.expect("at least one account"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfilled_prometheus_computes_the_unit_cost_spendwatch_does() {
    let Some(promtool) = on_path("promtool") else {
        eprintln!(
            "SKIPPED: `promtool` is not on PATH (Debian's `prometheus` package; .ci/run installs it)"
        );
        return;
    };
    let prometheus = on_path("prometheus")
        .expect("promtool is installed but `prometheus` is not: install Debian's `prometheus`");
    init();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let world = [
        "--accounts",
        "20",
        "--items",
        "2",
        "--days",
        "9",
        "--end",
        END,
    ];

    let (world_om, rules) = (path("world.om"), path("rules.yml"));
    let export = [
        &["bench"][..],
        &world,
        &["--openmetrics", &world_om, "--prometheus-rules", &rules],
    ]
    .concat();
    spendwatch(&export);
    checked(Command::new(&promtool).args(["check", "rules", &rules]));
    checked(Command::new(&promtool).args([
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        &world_om,
        &path("tsdb"),
    ]));

    // The same world in spendwatch's store, and its rule's unit cost of the last whole day.
    let table = spendwatch(&[&["bench"][..], &world, &["--keep", &path("store")]].concat());
    assert!(
        table.contains(&format!("{} series", ACCOUNTS * 4)),
        "{table}"
    );
    let end: Timestamp = END.parse().unwrap();
    let (costs, window_end) = spendwatch_unit_costs(&dir.path().join("store"), end);
    assert_eq!(window_end, end, "the rule judged the day ending at {END}");
    assert_eq!(costs.len(), ACCOUNTS, "{costs:?}");

    let listen = free_addr();
    std::fs::write(path("prometheus.yml"), "global: {}\n").unwrap();
    let log = std::fs::File::create(path("prometheus.log")).unwrap();
    let mut server = Killed(
        Command::new(prometheus)
            .arg(format!("--config.file={}", path("prometheus.yml")))
            .arg(format!("--storage.tsdb.path={}", path("tsdb")))
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address={listen}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start prometheus"),
    );
    let http = reqwest::Client::new();
    let base = format!("http://{listen}");
    let log_text = || std::fs::read_to_string(path("prometheus.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("prometheus exited ({status}): {}", log_text());
        }
        if let Ok(r) = http.get(format!("{base}/-/ready")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus not ready after 60s: {}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let expr = spendwatch::bench::openmetrics::unit_cost_promql();
    let body: Value = http
        .post(format!("{base}/api/v1/query"))
        .form(&[
            ("query", expr.as_str()),
            ("time", &window_end.as_second().to_string()),
        ])
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("JSON answer");
    assert_eq!(body["status"], "success", "{body}");
    let result = body["data"]["result"].as_array().expect("a vector");
    let answered: BTreeMap<String, f64> = result
        .iter()
        .map(|s| {
            let account = s["metric"]["account"].as_str().unwrap().to_string();
            let value: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
            (account, value)
        })
        .collect();
    assert_eq!(
        answered.keys().collect::<Vec<_>>(),
        costs.keys().collect::<Vec<_>>(),
        "{body}"
    );
    for (account, ours) in &costs {
        let theirs = answered[account];
        assert!(
            ((theirs - ours) / ours).abs() < 1e-6,
            "{account}: Prometheus {theirs}, spendwatch {ours}"
        );
    }
    // Not trivially equal: the accounts' unit costs differ.
    let first = costs.values().next().copied().unwrap();
    assert!(
        costs.values().any(|c| (c - first).abs() > 1e-3),
        "{costs:?}"
    );
}
