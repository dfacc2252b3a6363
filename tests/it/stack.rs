//! The shipped dashboards and rules against a real Prometheus (Debian's `prometheus`):
//! `spendwatch demo` is scraped every second, alerts/*.yml are loaded as rule files, and
//! every dashboard query, variable query and rule expression runs through the HTTP API.
//! The demo's clock runs fast (days per real minute) while Prometheus scrapes in wall time,
//! so this also shows the panels' windows hold data after a few scrapes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::artifacts::{self, PanelQuery};
use crate::support::{BIN, Proc, eventually, free_addr};

/// A tool from Debian's `prometheus` package; its absence is a failure, not a skip.
fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not on PATH: this test runs the real Prometheus. Install Debian's \
                 `prometheus` package (`apt-get install prometheus`; .ci/run does)"
            )
        })
}

struct Prometheus {
    proc: Proc,
    base: String,
    http: reqwest::Client,
}

impl Prometheus {
    async fn start(dir: &Path, target: SocketAddr) -> Prometheus {
        let binary = tool("prometheus");
        let rule_files: Vec<String> = artifacts::rule_files()
            .iter()
            .map(|p| format!("  - {:?}", p.display().to_string()))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n{}\n\
             scrape_configs:\n  - job_name: spendwatch\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rule_files.join("\n")
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let listen = free_addr();
        let mut proc = Proc::spawn(
            Command::new(binary)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={listen}"))
                .arg("--log.level=warn"),
            dir.join("prometheus.log"),
        );
        let http = reqwest::Client::new();
        let base = format!("http://{listen}");
        let ready = format!("{base}/-/ready");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            proc.assert_running("prometheus");
            if let Ok(r) = http.get(&ready).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready after 30s; its log:\n{}",
                proc.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Prometheus { proc, base, http }
    }

    /// An instant query: `Ok(number of series)` or `Err(Prometheus' error)`.
    async fn query(&self, expr: &str) -> Result<usize, String> {
        let r = self
            .http
            .post(format!("{}/api/v1/query", self.base))
            .form(&[("query", expr)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let body: Value = r.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() || body["status"] != "success" {
            return Err(format!(
                "{status}: {}",
                body["error"].as_str().unwrap_or("no error text")
            ));
        }
        Ok(match &body["data"]["result"] {
            Value::Array(a) => a.len(),
            // A scalar or string result is one value.
            Value::Null => 0,
            _ => 1,
        })
    }

    async fn label_values(&self, selector: &str, label: &str) -> Result<usize, String> {
        let mut url = url::Url::parse(&format!("{}/api/v1/label/{label}/values", self.base))
            .map_err(|e| e.to_string())?;
        url.query_pairs_mut().append_pair("match[]", selector);
        let body: Value = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(body["error"].as_str().unwrap_or("?").to_string());
        }
        Ok(body["data"].as_array().map_or(0, Vec::len))
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON")
    }
}

/// What must hold for one check to pass.
enum Need {
    /// Parses and returns at least one series.
    Data,
    /// Parses (an alert that is quiet in the demo is fine).
    Parse,
}

struct Check {
    name: String,
    kind: CheckKind,
    need: Need,
}

enum CheckKind {
    Query(String),
    LabelValues(String, String),
}

fn checks() -> Vec<Check> {
    let mut out = Vec::new();
    let dashboards = artifacts::dashboards();
    assert!(dashboards.len() >= 4, "expected the four dashboards");
    for (_, d) in &dashboards {
        let queries = artifacts::panel_queries(d);
        assert!(!queries.is_empty(), "{} has no queries", d["uid"]);
        for q in queries {
            let PanelQuery { expr, .. } = &q;
            out.push(Check {
                name: q.name(),
                kind: CheckKind::Query(artifacts::substitute(expr)),
                need: Need::Data,
            });
        }
        for (var, selector, label) in artifacts::label_value_queries(d) {
            out.push(Check {
                name: format!("{} / variable ${var}", d["uid"].as_str().unwrap_or("?")),
                kind: CheckKind::LabelValues(artifacts::substitute(&selector), label),
                need: Need::Data,
            });
        }
    }
    let rules = artifacts::rules();
    assert!(rules.len() >= 10, "expected the alert rules");
    for r in rules {
        out.push(Check {
            name: format!(
                "{} / {} {}",
                r.file,
                if r.recording { "record" } else { "alert" },
                r.name
            ),
            kind: CheckKind::Query(r.expr.clone()),
            need: if r.recording { Need::Data } else { Need::Parse },
        });
    }
    out
}

/// Runs every check once; the failures, each with the reason.
async fn failures(prom: &Prometheus, checks: &[Check]) -> Vec<String> {
    let mut failed = Vec::new();
    for c in checks {
        let result = match &c.kind {
            CheckKind::Query(q) => prom.query(q).await,
            CheckKind::LabelValues(sel, label) => prom.label_values(sel, label).await,
        };
        let what = match &c.kind {
            CheckKind::Query(q) => q.clone(),
            CheckKind::LabelValues(sel, label) => format!("label_values({sel}, {label})"),
        };
        match (result, &c.need) {
            (Err(e), _) => failed.push(format!("{}: does not run: {e}\n    {what}", c.name)),
            (Ok(0), Need::Data) => failed.push(format!("{}: no data\n    {what}", c.name)),
            (Ok(_), _) => {}
        }
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The lock serializes whole tests that run a demo; no task of this runtime takes it.
#[allow(clippy::await_holding_lock)]
async fn dashboards_and_rules_run_against_a_real_prometheus() {
    crate::support::init();
    let _one_demo_at_a_time = crate::support::demo_lock();
    let promtool = tool("promtool");
    tool("prometheus");
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();

    // The demo for long enough to outlive the test; the drop kills it.
    let demo_addr = free_addr();
    let mut demo = Proc::spawn(
        Command::new(BIN)
            .args(["demo", "--duration", "600s", "--speed", "43200", "--listen"])
            .arg(demo_addr.to_string()),
        dir.path().join("demo.log"),
    );
    let http = reqwest::Client::new();
    let metrics_url = format!("http://{demo_addr}/metrics");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        demo.assert_running("spendwatch demo");
        if let Ok(r) = http.get(&metrics_url).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the demo's /metrics did not answer in 30s; its log:\n{}",
            demo.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut prom = Prometheus::start(dir.path(), demo_addr).await;

    // Enough scraped: the last families to appear (a learned unit-cost band, anomaly
    // scores, a delivered notification) are in Prometheus.
    for metric in [
        "spendwatch_unit_cost_expected",
        "spendwatch_anomaly_score",
        "spendwatch_notifications_total",
        "spendwatch_poll_errors_total",
    ] {
        eventually(
            &format!("{metric} in Prometheus"),
            Duration::from_secs(90),
            || async { prom.query(metric).await.ok().filter(|n| *n > 0) },
        )
        .await;
    }

    // Windows need two samples of a series; retry until all pass or the deadline, then
    // report every check that still fails.
    let checks = checks();
    let deadline = Instant::now() + Duration::from_secs(60);
    let failed = loop {
        let failed = failures(&prom, &checks).await;
        if failed.is_empty() || Instant::now() > deadline {
            break failed;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(
        failed.is_empty(),
        "{} of {} dashboard/rule checks fail against Prometheus:\n  {}\nprometheus log:\n{}",
        failed.len(),
        checks.len(),
        failed.join("\n  "),
        prom.proc.log_tail()
    );

    // Prometheus loaded every group of alerts/*.yml, and none of its rules has an error.
    let expected_groups: Vec<(String, String)> = artifacts::rules()
        .iter()
        .map(|r| (r.group.clone(), r.name.clone()))
        .collect();
    let loaded = prom.get("/api/v1/rules").await;
    let groups = loaded["data"]["groups"].as_array().expect("groups");
    let mut seen = Vec::new();
    let mut errors = Vec::new();
    for g in groups {
        let group = g["name"].as_str().unwrap_or("?");
        for r in g["rules"].as_array().into_iter().flatten() {
            let name = r["name"].as_str().unwrap_or("?");
            seen.push((group.to_string(), name.to_string()));
            let err = r["lastError"].as_str().unwrap_or("");
            if !err.is_empty() || r["health"] == "err" {
                errors.push(format!("{group}/{name}: {err}"));
            }
        }
    }
    for want in &expected_groups {
        assert!(
            seen.contains(want),
            "Prometheus did not load {want:?}; loaded: {seen:?}"
        );
    }
    assert!(errors.is_empty(), "rules with errors: {errors:#?}");

    // The naming lint on a scrape of /metrics.
    let scrape = http
        .get(&metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(scrape.contains("spendwatch_unit_cost"), "{scrape}");
    let mut lint = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    {
        use std::io::Write;
        lint.stdin
            .take()
            .unwrap()
            .write_all(scrape.as_bytes())
            .unwrap();
    }
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics complains:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    demo.assert_running("spendwatch demo");
    prom.proc.assert_running("prometheus");
    eprintln!(
        "{} checks passed against Prometheus in {:.1}s",
        checks.len(),
        started.elapsed().as_secs_f64()
    );
}
