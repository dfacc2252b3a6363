//! A real Alertmanager (Debian's `prometheus-alertmanager`, installed by `.ci/run`) on
//! 127.0.0.1: the alert `spendwatch run` pushes appears in its `/api/v2/alerts` with the
//! rule's labels and annotations, is re-sent with a later `endsAt` while it fires, and leaves
//! the active alerts as soon as it resolves.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use crate::support::*;

/// Debian's name first, then upstream's.
const BINARIES: [&str; 2] = ["prometheus-alertmanager", "alertmanager"];
/// Short, so the test sees a re-send; firing alerts stay valid for 4 of them (20 s).
const RESEND_INTERVAL: Duration = Duration::from_secs(5);

const CONFIG: &str = r#"
route:
  receiver: blackhole
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: blackhole
"#;

fn alertmanager_binary() -> PathBuf {
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    BINARIES
        .iter()
        .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
        .chain([PathBuf::from("/usr/bin/prometheus-alertmanager")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no Alertmanager binary ({}) in PATH or /usr/bin: this test needs a real one. \
                 Install Debian's package: apt-get install -y prometheus-alertmanager (.ci/run does)",
                BINARIES.join(" or ")
            )
        })
}

/// A real Alertmanager with its own config and storage; killed on drop.
pub(crate) struct RealAlertmanager {
    child: Child,
    pub(crate) base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl RealAlertmanager {
    pub(crate) async fn start() -> Self {
        init();
        let binary = alertmanager_binary();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, CONFIG).expect("write alertmanager.yml");
        let log = dir.path().join("alertmanager.log");
        let addr = free_addr();
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            // No gossip: a single, isolated instance.
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let mut am = RealAlertmanager {
            child,
            base: format!("http://{addr}"),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = am.child.try_wait() {
                panic!(
                    "Alertmanager exited with {status}; its log:\n{}",
                    am.log_text()
                );
            }
            match reqwest::get(format!("{}/-/ready", am.base)).await {
                Ok(r) if r.status().is_success() => return am,
                _ if Instant::now() > deadline => {
                    panic!(
                        "Alertmanager not ready after 20s; its log:\n{}",
                        am.log_text()
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Active alerts (`GET /api/v2/alerts` leaves out those whose `endsAt` has passed).
    pub(crate) async fn alerts(&self) -> Vec<serde_json::Value> {
        let response = reqwest::get(format!("{}/api/v2/alerts", self.base))
            .await
            .expect("GET /api/v2/alerts");
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.expect("alerts JSON")
    }

    async fn budget_alert(&self) -> Option<serde_json::Value> {
        self.alerts()
            .await
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "budget")
    }
}

impl Drop for RealAlertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ends_at(alert: &serde_json::Value) -> Timestamp {
    alert["endsAt"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("endsAt in {alert}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_a_real_alertmanager_are_resent_while_firing_and_leave_when_resolved() {
    let am = RealAlertmanager::start().await;
    let (_sim, sim_addr) = start_sim().await;
    let config = write_config(
        sim_addr,
        ConfigOptions {
            extra: format!(
                r#"
[[receivers]]
[receivers.alertmanager]
name = "am"
urls = ["{}"]
timeout = "2s"
resend_interval = "{}s"
"#,
                am.base,
                RESEND_INTERVAL.as_secs()
            ),
            route: fast_route_to(&["hook", "am"]),
            ..ConfigOptions::default()
        },
    );
    let daemon = Daemon::start(&config).await;
    daemon.wait_first_poll().await;
    assert!(am.alerts().await.is_empty(), "nothing fires under budget");

    // Overspend: the alert shows up in Alertmanager with the rule's labels and annotations.
    adjust(sim_addr, "020-1001", "6000.00").await;
    let alert = eventually(
        "the budget alert in Alertmanager",
        Duration::from_secs(30),
        || am.budget_alert(),
    )
    .await;
    let labels = &alert["labels"];
    for (name, value) in [
        ("alertname", "budget"),
        ("account", "020-1001"),
        ("severity", "critical"),
        ("team", "payments"),
        ("source", "rs"),
        ("currency", "USD"),
        ("level", "100"),
    ] {
        assert_eq!(labels[name], value, "label {name} in {alert}");
    }
    let annotations = &alert["annotations"];
    assert!(
        annotations["summary"]
            .as_str()
            .is_some_and(|s| s.contains("$5,000.00 budget")),
        "{alert}"
    );
    assert_eq!(annotations["threshold"], "5000", "{alert}");
    let value: f64 = annotations["value"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("value annotation in {alert}"));
    assert!(value > 6000.0, "{value}");
    assert_eq!(alert["status"]["state"], "active", "{alert}");
    assert_eq!(alert["receivers"][0]["name"], "blackhole", "{alert}");
    // Valid for four re-send intervals, not forever.
    let validity = ends_at(&alert).duration_since(Timestamp::now());
    let four = SignedDuration::try_from(RESEND_INTERVAL * 4).unwrap();
    assert!(
        validity > SignedDuration::ZERO && validity <= four + SignedDuration::from_secs(2),
        "endsAt {validity:?} ahead, expected up to {four:?}"
    );

    // Re-sent while firing: endsAt moves on.
    let first_ends = ends_at(&alert);
    let refreshed = eventually(
        "a re-send with a later endsAt",
        Duration::from_secs(30),
        || async { am.budget_alert().await.filter(|a| ends_at(a) > first_ends) },
    )
    .await;
    daemon
        .wait_metric(
            "a counted re-send",
            &[
                "spendwatch_alertmanager_resends_total",
                "receiver=\"am\"",
                "outcome=\"delivered\"",
            ],
            |v| v >= 1.0,
        )
        .await;

    // Credit it back: the resolution ends the alert in Alertmanager at once, well before the
    // endsAt it had while firing (so this is not Alertmanager expiring it by itself).
    let valid_until = ends_at(&refreshed);
    adjust(sim_addr, "020-1001", "-6000.00").await;
    eventually(
        "the alert to leave Alertmanager's active alerts",
        Duration::from_secs(30),
        || async { am.budget_alert().await.is_none().then_some(()) },
    )
    .await;
    let gone = Timestamp::now();
    assert!(
        gone < valid_until,
        "resolved at {gone}, before the firing copy's endsAt {valid_until}"
    );

    // One firing and one resolved notification went through the outbox to Alertmanager.
    daemon
        .wait_metric(
            "two deliveries to am",
            &[
                "spendwatch_notifications_total",
                "receiver=\"am\"",
                "outcome=\"delivered\"",
            ],
            |v| v == 2.0,
        )
        .await;
    let text = daemon.metrics().await;
    let requests = ["spendwatch_alertmanager_requests_total", "receiver=\"am\""];
    let accepted = metric_sum(&text, &[requests[0], requests[1], "outcome=\"accepted\""]);
    assert!(
        accepted >= 3.0,
        "firing, at least one re-send, resolved:\n{text}"
    );
    assert_eq!(
        metric_sum(&text, &requests),
        accepted,
        "every request accepted:\n{text}"
    );
    // Nothing fires again after the resolution (a late re-send would reopen it).
    daemon
        .wait_for_more(
            "a few more evaluations",
            &["spendwatch_rule_evaluations_total"],
            3.0,
        )
        .await;
    assert!(am.budget_alert().await.is_none(), "{:?}", am.alerts().await);
}
