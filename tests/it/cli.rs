//! The CLI's edges: `check` names every bad field, secrets never print from any command,
//! every example config is valid, `poll-once` reports what it saw, and the demo shows an
//! alert fire and resolve.

use std::path::Path;

use crate::support::*;

const SECRET_VALUE: &str = "sk-live-9f8e7d6c5b4a-do-not-print";

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_names_every_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[[sources]]
[sources.rackspace]
name = "rs"
username = "u"
api_key = { env = "SPENDWATCH_IT_KEY" }
accounts = ["020-1"]
interval = "5 parsecs"

[[rules]]
[rules.budget]
name = "b"
amount = "lots"
currency = "USD"
levels = [{ percent = 80 }]
"#,
    )
    .unwrap();
    let out = run_cli(
        &["check", "--config", path.to_str().unwrap()],
        &[("SPENDWATCH_IT_KEY", SECRET_VALUE)],
        None,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("sources[0].rackspace.interval: invalid duration \"5 parsecs\""),
        "{stderr}"
    );
    assert!(stderr.contains("rules[0].budget.amount"), "{stderr}");
    assert!(!stderr.contains("panicked"));
    assert!(!(stdout + &stderr).contains(SECRET_VALUE));
}

#[test]
fn check_reports_unknown_fields_and_missing_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[[receivers]]
[receivers.webhook]
name = "hook"
url = "http://127.0.0.1:1/hook"
secret = { env = "SPENDWATCH_IT_SURELY_UNSET" }
"#,
    )
    .unwrap();
    let out = run_cli(&["check", "--config", path.to_str().unwrap()], &[], None);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("receivers[0].webhook.secret: environment variable SPENDWATCH_IT_SURELY_UNSET is not set"), "{stderr}");

    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:9\"\ncolour = \"blue\"\n",
    )
    .unwrap();
    let out = run_cli(&["check", "--config", path.to_str().unwrap()], &[], None);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("server.colour") && stderr.contains("unknown field"),
        "{stderr}"
    );
}

#[test]
fn inline_secret_is_refused_without_printing_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inline.toml");
    std::fs::write(
        &path,
        format!(
            "[[sources]]\n[sources.rackspace]\nname = \"rs\"\nusername = \"u\"\napi_key = \"{SECRET_VALUE}\"\naccounts = [\"020-1\"]\n"
        ),
    )
    .unwrap();
    let out = run_cli(&["check", "--config", path.to_str().unwrap()], &[], None);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("sources[0].rackspace.api_key"), "{stderr}");
    assert!(!(stdout + &stderr).contains(SECRET_VALUE), "{stderr}");
}

#[test]
fn every_example_config_is_valid() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    let slack_webhook_url = format!("https://hooks.slack.com/services/T0/B0/{SECRET_VALUE}");
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let out = run_cli(
            &["check", "--config", path.to_str().unwrap()],
            &[
                ("RACKSPACE_API_KEY", SECRET_VALUE),
                ("SPENDWATCH_WEBHOOK_SECRET", SECRET_VALUE),
                ("THREESCALE_ACCESS_TOKEN", SECRET_VALUE),
                ("SAKURA_ACCESS_TOKEN", SECRET_VALUE),
                ("SAKURA_ACCESS_TOKEN_SECRET", SECRET_VALUE),
                ("RACKNAP_API_KEY", SECRET_VALUE),
                ("SLACK_BOT_TOKEN", SECRET_VALUE),
                ("SLACK_WEBHOOK_URL", slack_webhook_url.as_str()),
                ("SPENDWATCH_API_TOKEN", SECRET_VALUE),
            ],
            None,
        );
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{}: {stdout}{stderr}", path.display());
        assert!(stdout.starts_with("config ok:"), "{stdout}");
        assert!(!(stdout + &stderr).contains(SECRET_VALUE));
        checked += 1;
    }
    assert!(
        checked >= 2,
        "examples/ holds the per-source and full configs"
    );
}

/// `check`, `poll-once` (text and JSON) and `run` at debug level, plus a scrape of
/// `/metrics`: the API key and webhook secret appear in none of their output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_any_output() {
    let (_sim, sim_addr) = start_sim().await;
    let config = write_config(sim_addr, ConfigOptions::default());
    // Point the config's secrets at the environment, holding values we can grep for.
    let text_cfg = std::fs::read_to_string(&config.path)
        .unwrap()
        .replace(
            "api_key = { file = \"api-key\" }",
            "api_key = { env = \"SPENDWATCH_IT_API_KEY\" }",
        )
        .replace(
            "secret = { file = \"hook-secret\" }",
            "secret = { env = \"SPENDWATCH_IT_HOOK\" }",
        );
    std::fs::write(&config.path, text_cfg).unwrap();
    let hook_secret = "whsec-0a1b2c3d4e5f-do-not-print";
    // The simulator only accepts its own key, so the daemon authenticates with it.
    let env = [
        ("SPENDWATCH_IT_API_KEY", spendwatch::sim::DEFAULT_API_KEY),
        ("SPENDWATCH_IT_HOOK", hook_secret),
        ("RUST_LOG", "debug"),
    ];
    let cfg = config.path.to_str().unwrap();
    let mut outputs = Vec::new();
    for args in [
        vec!["check", "--config", cfg],
        vec!["poll-once", "--config", cfg],
        vec!["poll-once", "--json", "--config", cfg],
    ] {
        let out = run_cli(&args, &env, None);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
        outputs.push(stdout + &stderr);
    }
    assert!(
        outputs[1].contains("rs 020-1001: 7 observation(s)"),
        "{}",
        outputs[1]
    );
    let json_stdout = String::from_utf8_lossy(
        &run_cli(&["poll-once", "--json", "--config", cfg], &env, None).stdout,
    )
    .into_owned();
    let json: serde_json::Value =
        serde_json::from_str(&json_stdout).expect("poll-once --json prints JSON on stdout");
    assert_eq!(json[0]["ok"], true);
    assert_eq!(json[0]["observations"].as_array().unwrap().len(), 7);

    let mut daemon = Daemon::start_with_env(&config, &env).await;
    daemon
        .wait_metric(
            "a poll",
            &["spendwatch_polls_total", "outcome=\"success\""],
            |v| v >= 1.0,
        )
        .await;
    outputs.push(daemon.metrics().await);
    daemon.kill();
    outputs.push(daemon.log_text());
    for out in &outputs {
        assert!(
            !out.contains(spendwatch::sim::DEFAULT_API_KEY),
            "API key leaked: {out}"
        );
        assert!(!out.contains(hook_secret), "webhook secret leaked: {out}");
    }
}

#[test]
fn demo_shows_an_alert_fire_and_resolve() {
    let _one_demo_at_a_time = demo_lock();
    let kept = tempfile::tempdir().unwrap();
    let out = run_cli(
        &[
            "demo",
            // 25 s × 150,000 ≈ 43 simulated days: two billing periods, every incident once.
            "--duration",
            "25s",
            "--speed",
            "150000",
            "--listen",
            "127.0.0.1:0",
            "--keep",
            kept.path().to_str().unwrap(),
        ],
        &[],
        None,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("metrics:   http://127.0.0.1:"), "{stdout}");
    let fired = stdout
        .lines()
        .find(|l| l.contains(" FIRING ") && l.contains("forecast >= 100%"));
    let resolved = stdout
        .lines()
        .find(|l| l.contains(" RESOLVED ") && l.contains("forecast >= 100%"));
    assert!(fired.is_some() && resolved.is_some(), "{stdout}");
    assert!(
        stdout.contains("forecast spend by"),
        "alert lines explain themselves: {stdout}"
    );
    // The traffic-relative rule on SAKURA: fires on the extra server, names it, resolves.
    let ratio = stdout
        .lines()
        .skip_while(|l| !(l.contains(" FIRING ") && l.contains("sakura-unit-cost")))
        .nth(1)
        .unwrap_or_default();
    assert!(
        ratio.contains("unit cost rose to ¥") && ratio.contains("per 1k requests"),
        "{stdout}"
    );
    assert!(
        ratio.contains("top contributors: サーバ/プラン/4Core-8GB"),
        "{ratio}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(" RESOLVED ") && l.contains("sakura-unit-cost")),
        "{stdout}"
    );
    let summary = stdout
        .lines()
        .find(|l| l.contains("webhook:"))
        .unwrap_or_default();
    let delivered: usize = summary
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(delivered >= 2, "{summary}");
    assert!(
        summary.contains(&format!("({delivered} with a valid signature)")),
        "{summary}"
    );

    // Replaying the demo's store gives the traffic-relative alert the live run gave: the
    // same rule and account, firing and resolving within a day of the live times.
    let config = kept.path().join("spendwatch.toml");
    let report_path = kept.path().join("backtest.json");
    let out = run_cli(
        &[
            "backtest",
            "--config",
            config.to_str().unwrap(),
            "--from-store",
            "--step",
            "1h",
            "--output",
            report_path.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let live_time = |change: &str| -> jiff::Timestamp {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!(" {change} ")) && l.contains("sakura-unit-cost"))
            .unwrap_or_default();
        let stamp = line.get(..16).unwrap_or_default().replace(' ', "T");
        format!("{stamp}:00Z")
            .parse()
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    let replay_time = |change: &str| -> jiff::Timestamp {
        let event = report["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["change"] == change && e["rule"] == "sakura-unit-cost")
            .unwrap_or_else(|| panic!("no {change} in the replay: {report}"));
        event["at"].as_str().unwrap().parse().unwrap()
    };
    for change in ["FIRING", "RESOLVED"] {
        let (live, replay) = (live_time(change), replay_time(change));
        let apart = live.duration_since(replay).abs();
        assert!(
            apart <= jiff::SignedDuration::from_hours(24),
            "{change}: live {live}, replay {replay}"
        );
    }
}

#[test]
fn detect_writes_a_judgement_per_point_and_names_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("series.csv");
    let mut csv = String::from("timestamp,value\n");
    for i in 0..120 {
        // An irregular hourly series with one spike; three time formats mixed.
        let t = 1_795_600_800 + i * 3600 + (i % 5) * 60;
        let v = 50.0 + (i % 7) as f64 + if i == 100 { 400.0 } else { 0.0 };
        let stamp = match i % 3 {
            0 => t.to_string(),
            1 => jiff::Timestamp::from_second(t).unwrap().to_string(),
            _ => jiff::Timestamp::from_second(t)
                .unwrap()
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string(),
        };
        csv.push_str(&format!("{stamp},{v}\n"));
    }
    std::fs::write(&input, csv).unwrap();
    let output = dir.path().join("out.csv");
    for detector in ["robust_z", "ewma", "seasonal", "student_t", "cusum"] {
        let out = run_cli(
            &[
                "detect",
                "--detector",
                detector,
                "--input",
                input.to_str().unwrap(),
                "--output",
                output.to_str().unwrap(),
            ],
            &[],
            None,
        );
        assert!(
            out.status.success(),
            "{detector}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&output).unwrap();
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows[0], "timestamp,value,expected,lower,upper,score,alert");
        assert_eq!(rows.len(), 121);
        assert!(
            rows[101].ends_with(",1"),
            "{detector} flags the spike: {}",
            rows[101]
        );
    }
    std::fs::write(
        &input,
        "timestamp,value\n2026-11-24 10:00:00,1\n2026-11-24 11:00:00,lots\n",
    )
    .unwrap();
    let out = run_cli(
        &[
            "detect",
            "--detector",
            "ewma",
            "--input",
            input.to_str().unwrap(),
        ],
        &[],
        None,
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("line 3") && stderr.contains("bad value"),
        "{stderr}"
    );
}
