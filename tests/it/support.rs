//! Helpers shared by the integration tests: the simulator on 127.0.0.1:0, the real
//! `spendwatch` binary as a child process, config files, and polling with a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spendwatch::model::Clock;
use spendwatch::sim::{self, Sim};

pub const BIN: &str = env!("CARGO_BIN_EXE_spendwatch");
pub const WEBHOOK_SECRET: &str = "it-webhook-secret-6b1f";

/// Held by tests that run `spendwatch demo`: a demo's simulated clock runs days per second,
/// and two of them at once on a small machine starve each other's pipeline, so the live
/// run falls behind its own clock and its alert times drift.
pub fn demo_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn init() {
    spendwatch::cli::install_crypto_provider();
}

/// Starts the simulator (real clock, demo world) on a free loopback port.
pub async fn start_sim() -> (Sim, SocketAddr) {
    init();
    let sim = Sim::new(Clock::System, sim::world::demo_world());
    let (addr, _task) = sim
        .start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("start simulator");
    (sim, addr)
}

/// A free port on 127.0.0.1 for the daemon's listener.
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Polls `check` until it yields `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub struct TestConfig {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub listen: SocketAddr,
}

/// Options for the generated config.
pub struct ConfigOptions {
    pub accounts: Vec<&'static str>,
    pub budget: &'static str,
    pub max_retries: u32,
    pub timeout: &'static str,
    /// The `[route]` table; the default sends at once and lets changes follow a second later.
    pub route: String,
    pub extra: String,
}

/// The daemon's notification timings shortened for tests (the defaults are 30s and 5m).
pub const FAST_ROUTE: &str = r#"
[route]
receiver = "hook"
group_wait = "0s"
group_interval = "1s"
"#;

/// `FAST_ROUTE`, but every alert goes to each of `receivers` (one child route each, `continue`).
pub fn fast_route_to(receivers: &[&str]) -> String {
    let mut route = FAST_ROUTE.to_string();
    for r in receivers {
        route.push_str(&format!(
            "[[route.routes]]\nreceiver = \"{r}\"\ncontinue = true\n"
        ));
    }
    route
}

impl Default for ConfigOptions {
    fn default() -> Self {
        ConfigOptions {
            accounts: vec!["020-1001"],
            budget: "5000.00",
            max_retries: 0,
            timeout: "2s",
            route: FAST_ROUTE.to_string(),
            extra: String::new(),
        }
    }
}

/// Writes a config that polls the simulator every second and evaluates every second.
pub fn write_config(sim: SocketAddr, o: ConfigOptions) -> TestConfig {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("api-key"), sim::DEFAULT_API_KEY).expect("write key");
    std::fs::write(dir.path().join("hook-secret"), WEBHOOK_SECRET).expect("write secret");
    let listen = free_addr();
    let accounts = o
        .accounts
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        r#"
[server]
listen = "{listen}"

[store.sqlite]
path = "state/spendwatch.db"

[evaluation]
interval = "1s"

[[sources]]
[sources.rackspace]
name = "rs"
username = "{user}"
api_key = {{ file = "api-key" }}
accounts = [{accounts}]
interval = "1s"
identity_url = "http://{sim}/v2.0/"
billing_url = "http://{sim}/v2/"
page_size = 2
timeout = "{timeout}"
max_retries = {retries}

[[rules]]
[rules.budget]
name = "budget"
source = "rs"
accounts = ["020-1001"]
amount = "{budget}"
currency = "USD"
levels = [{{ percent = 100, severity = "critical" }}]
labels = {{ team = "payments" }}

[[receivers]]
[receivers.webhook]
name = "hook"
url = "http://{sim}/_sim/webhook"
secret = {{ file = "hook-secret" }}
{route}
{extra}
"#,
        user = sim::DEFAULT_USERNAME,
        budget = o.budget,
        timeout = o.timeout,
        retries = o.max_retries,
        route = o.route,
        extra = o.extra,
    );
    let path = dir.path().join("spendwatch.toml");
    std::fs::write(&path, text).expect("write config");
    TestConfig { dir, path, listen }
}

/// The real binary running `run`; killed (SIGKILL) on drop.
pub struct Daemon {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Daemon {
    pub async fn start(config: &TestConfig) -> Daemon {
        Self::start_with_env(config, &[]).await
    }

    pub async fn start_with_env(config: &TestConfig, env: &[(&str, &str)]) -> Daemon {
        let log = config
            .dir
            .path()
            .join(format!("daemon-{}.log", rand_suffix()));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config.path)
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                env.iter()
                    .find(|(k, _)| *k == "RUST_LOG")
                    .map_or("info", |(_, v)| *v),
            )
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn spendwatch run");
        let daemon = Daemon {
            child,
            base: format!("http://{}", config.listen),
            log,
        };
        let url = format!("{}/readyz", daemon.base);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match reqwest::get(&url).await {
                Ok(r) if r.status().is_success() => return daemon,
                _ if Instant::now() > deadline => {
                    panic!(
                        "daemon not ready after 20s; its log:\n{}",
                        daemon.log_text()
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// Waits for a metric sample to satisfy `pred`.
    pub async fn wait_metric(
        &self,
        what: &str,
        name_and_labels: &[&str],
        pred: impl Fn(f64) -> bool,
    ) -> f64 {
        eventually(what, Duration::from_secs(30), || async {
            let text = self.metrics().await;
            metric(&text, name_and_labels).filter(|v| pred(*v))
        })
        .await
    }

    /// Waits for the first successful poll.
    pub async fn wait_first_poll(&self) {
        self.wait_metric(
            "first poll",
            &["spendwatch_polls_total", "outcome=\"success\""],
            |v| v >= 1.0,
        )
        .await;
    }

    /// Waits until the sum of a counter has grown by `n` from now: "n more polls/evaluations".
    pub async fn wait_for_more(&self, what: &str, parts: &[&str], n: f64) {
        let before = metric_sum(&self.metrics().await, parts);
        eventually(what, Duration::from_secs(30), || async {
            (metric_sum(&self.metrics().await, parts) >= before + n).then_some(())
        })
        .await;
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The value of the first sample whose line starts with `parts[0]` and contains every
/// other part (label matchers such as `outcome="success"`).
pub fn metric(text: &str, parts: &[&str]) -> Option<f64> {
    let (name, labels) = parts.split_first()?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|l| labels.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Sum over all samples of a metric family matching the label parts.
pub fn metric_sum(text: &str, parts: &[&str]) -> f64 {
    let Some((name, labels)) = parts.split_first() else {
        return 0.0;
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub async fn post_json(url: &str, body: serde_json::Value) {
    let r = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert!(r.status().is_success(), "POST {url}: {}", r.status());
}

/// Adds a one-time charge (negative: a credit) to a simulated account.
pub async fn adjust(sim: SocketAddr, ran: &str, amount: &str) {
    post_json(
        &format!("http://{sim}/_sim/accounts/{ran}/adjustments"),
        serde_json::json!({"amount": amount, "offering": "CLOUD_SERVERS"}),
    )
    .await;
}

pub fn store_path(config: &TestConfig) -> PathBuf {
    config.dir.path().join("state/spendwatch.db")
}

pub fn run_cli(args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).envs(env.iter().copied());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd.output().expect("run spendwatch")
}

/// A child process killed (SIGKILL) and reaped on drop, with its output in a file.
pub struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("log file");
        let err = file.try_clone().expect("log file");
        let child = cmd
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Proc { child, log }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Panics with the log if the process already exited.
    pub fn assert_running(&mut self, what: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{what} exited ({status}); its log:\n{}", self.log_tail());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
