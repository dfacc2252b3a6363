//! The binary's edge: each subcommand as a function returning an exit code. Only here
//! (and in `main.rs`) is `anyhow` used.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::sync::watch;

use crate::config::Config;
use crate::demo;
use crate::metrics::Metrics;
use crate::model::{Clock, Observation};
use crate::runtime::{RunOptions, Runtime};
use crate::sim::{self, Sim};
use crate::soak::{LogCounts, SoakOptions};
use crate::sources::{self, poll_target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr; `RUST_LOG` overrides `default_filter`.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    init_logging_with(format, default_filter, None);
}

/// As [`init_logging`], and `counts` tallies every WARN and ERROR event whatever the filter.
pub fn init_logging_with(format: LogFormat, default_filter: &str, counts: Option<LogCounts>) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
    };
    let counts = counts.map(|c| c.with_filter(tracing_subscriber::filter::LevelFilter::WARN));
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(counts)
        .try_init();
}

/// Installs the one TLS crypto provider (ring) before any client is built.
pub fn install_crypto_provider() {
    crate::ensure_crypto_provider();
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|errors| {
        eprintln!("spendwatch: invalid configuration {errors}");
        ExitCode::from(2)
    })
}

pub fn check(path: &Path) -> anyhow::Result<ExitCode> {
    match load_config(path) {
        Ok(config) => {
            emit(&format!("{}\n", config.summary()))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(code) => Ok(code),
    }
}

/// Writes command output to stdout; a reader that went away (`| head`) is not an error.
pub fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// A future that completes on Ctrl-C or SIGTERM.
async fn termination() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

pub async fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(listen = %listener.local_addr()?, store = %config.store.describe(), "spendwatch running.");
    let runtime = Runtime::open(config, Clock::System).context("opening the store")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        termination().await;
        tracing::info!("Shutting down.");
        let _ = stop_tx.send(true);
    });
    runtime
        .run(listener, stop_rx, None, RunOptions::default())
        .await?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct PolledJson<'a> {
    source: &'a str,
    account: &'a str,
    request_id: &'a str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_kind: Option<&'static str>,
    observations: &'a [Observation],
}

pub async fn poll_once(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let metrics = Metrics::new();
    let mut all_ok = true;
    let mut json_out = Vec::new();
    let mut out = String::new();
    for settings in &config.sources {
        let source = sources::build(settings)?;
        for target in source.targets() {
            let polled =
                poll_target(source.as_ref(), &target, jiff::Timestamp::now(), &metrics).await;
            let (observations, error) = match &polled.result {
                Ok(o) => (o.as_slice(), None),
                Err(e) => (&[][..], Some(e)),
            };
            all_ok &= error.is_none();
            if json {
                json_out.push(serde_json::to_value(PolledJson {
                    source: &polled.source,
                    account: &polled.target,
                    request_id: &polled.request_id,
                    ok: error.is_none(),
                    error: error.map(|e| e.message.clone()),
                    error_kind: error.map(|e| e.kind.as_str()),
                    observations,
                })?);
                continue;
            }
            match error {
                Some(e) => writeln!(
                    out,
                    "{} {}: FAILED ({}) {} [request {}]",
                    polled.source, polled.target, e.kind, e.message, polled.request_id
                )?,
                None => {
                    writeln!(
                        out,
                        "{} {}: {} observation(s) in {:.2}s [request {}]",
                        polled.source,
                        polled.target,
                        observations.len(),
                        polled.seconds,
                        polled.request_id
                    )?;
                    for o in observations {
                        let period = o
                            .period
                            .map(|p| format!(" period {}..{}", p.start, p.end))
                            .unwrap_or_default();
                        writeln!(
                            out,
                            "  {:<70} {:>14} {} ({}) at {}{period}",
                            o.key.to_string(),
                            o.value,
                            o.unit,
                            o.kind.as_str(),
                            o.at,
                        )?;
                    }
                }
            }
        }
    }
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&json_out)?)?;
    }
    emit(&out)?;
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub async fn sim(
    listen: SocketAddr,
    speed: Option<f64>,
    accounts: usize,
) -> anyhow::Result<ExitCode> {
    let clock = match speed {
        Some(s) => Clock::simulated(demo::month_start(jiff::Timestamp::now())?, s),
        None => Clock::System,
    };
    let mut world = sim::world::demo_world();
    world.extend(sim::world::rackspace_fleet(accounts));
    let sim = Sim::new(clock, world);
    let (addr, _handle) = sim
        .start(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    println!("simulator listening on http://{addr}");
    println!("  rackspace identity: http://{addr}/v2.0/  billing: http://{addr}/v2/");
    println!(
        "  credentials: username {:?}, API key {:?}",
        sim::DEFAULT_USERNAME,
        sim::DEFAULT_API_KEY
    );
    if accounts > 0 {
        println!(
            "  generated rackspace accounts: {accounts} ({} to {})",
            sim::world::fleet_account_id(0),
            sim::world::fleet_account_id(accounts - 1)
        );
    }
    println!(
        "  accounts: {}",
        sim::world::demo_world()
            .iter()
            .map(|a| format!("{} ({:?}, {})", a.id, a.api, a.currency))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  prometheus query_range: http://{addr}/api/v1/query_range (query naming `requests`)"
    );
    println!("  webhook receiver: http://{addr}/_sim/webhook");
    println!(
        "  slack web API: http://{addr}/slack/api (bot token {:?}, channel {:?}); incoming webhook: http://{addr}/slack/services/{}",
        sim::slack::DEFAULT_BOT_TOKEN,
        sim::slack::DEFAULT_CHANNEL,
        sim::slack::DEFAULT_WEBHOOK
    );
    termination().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn demo(
    listen: SocketAddr,
    duration: Option<Duration>,
    speed: f64,
    keep: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    demo::run(listen, duration, speed, keep, termination()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Exit 0 when every check passed, 1 when one failed.
pub async fn soak(options: SoakOptions, logs: LogCounts) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(options.days >= 1, "--days must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&options.fault_rate),
        "--fault-rate is a probability between 0 and 1"
    );
    let passed = crate::soak::run(options, logs, termination()).await?;
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[allow(clippy::too_many_arguments)]
pub fn backtest(
    path: &Path,
    from_store: bool,
    inputs: &[PathBuf],
    output: Option<&Path>,
    from: Option<jiff::Timestamp>,
    to: Option<jiff::Timestamp>,
    step: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let temp = tempfile::tempdir().context("creating a temp dir")?;
    let store = if from_store {
        match &config.store {
            crate::config::StoreSettings::Sqlite { path } => {
                crate::backtest::copy_store(path, temp.path())?
            }
            crate::config::StoreSettings::Postgres { .. } => {
                anyhow::bail!(
                    "backtest --from-store reads a SQLite store; this config uses PostgreSQL; \
                     give the history as CSV with --input"
                )
            }
        }
    } else {
        crate::backtest::store_from_inputs(inputs, temp.path())?
    };
    let report = crate::backtest::run(&config, &store, from, to, step)?;
    let mut out = String::new();
    writeln!(
        out,
        "backtest {} .. {}, every {}: {} evaluations",
        report.from,
        report.to,
        humantime::format_duration(Duration::from_secs_f64(report.step_seconds)),
        report.evaluations
    )?;
    for e in &report.events {
        writeln!(
            out,
            "{}  {:<8} {:<8} {} {}\n                      {}",
            e.at.strftime("%Y-%m-%d %H:%M UTC"),
            e.change,
            e.severity,
            e.rule,
            e.account,
            e.summary
        )?;
    }
    writeln!(out, "\nper rule:")?;
    for (rule, s) in &report.rules {
        writeln!(
            out,
            "  {rule}: {} fired, {} resolved, {} still firing, {} firing in total",
            s.fired,
            s.resolved,
            s.still_firing,
            humantime::format_duration(Duration::from_secs(
                s.firing_seconds.max(0) as u64 / 60 * 60
            ))
        )?;
    }
    if let Some(path) = output {
        crate::backtest::write_output(&report, path)?;
        writeln!(out, "alert changes written to {}", path.display())?;
    }
    emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

pub fn detect(
    detector: &str,
    params: &[(String, String)],
    input: &Path,
    output: Option<&Path>,
    threshold: f64,
    direction: crate::config::rules::Direction,
) -> anyhow::Result<ExitCode> {
    let samples = crate::detect::read_series(input)?;
    let mut buffer = Vec::new();
    let alerts = crate::detect::run(
        detector,
        params,
        threshold,
        direction,
        &samples,
        &mut buffer,
    )?;
    match output {
        Some(path) => {
            std::fs::write(path, &buffer).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "{} points, {alerts} alerting; written to {}",
                samples.len(),
                path.display()
            );
        }
        None => emit(&String::from_utf8_lossy(&buffer))?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn bench(options: crate::bench::BenchOptions) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        options.accounts > 0 && options.days >= 8,
        "bench needs at least 1 account and 8 days (the rules learn 7)"
    );
    let days = options.days;
    let report = crate::bench::run(&options, &|day| eprint!("\rgenerated day {day}/{days}"))?;
    eprintln!();
    emit(&report.table(&options))?;
    Ok(ExitCode::SUCCESS)
}

/// `bench --openmetrics` / `--prometheus-rules`: the same world and unit-cost rule, for
/// Prometheus.
pub fn bench_export(
    options: &crate::bench::BenchOptions,
    openmetrics: Option<&Path>,
    rules: Option<&Path>,
    rule_interval: Duration,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    anyhow::ensure!(options.accounts > 0, "bench needs at least 1 account");
    if let Some(path) = openmetrics {
        let end = options.world_end()?;
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        let exported = crate::bench::openmetrics::write_world(options, end, &mut out)
            .and_then(|e| out.flush().map(|()| e))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "{} series, {} samples ending {end} written to {}",
            exported.series,
            exported.samples,
            path.display()
        );
    }
    if let Some(path) = rules {
        let interval = format!("{}s", rule_interval.as_secs().max(1));
        std::fs::write(path, crate::bench::openmetrics::rule_file(&interval))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("unit-cost rule group written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the suite as CSV files (`timestamp,value`) and `labels.csv`, for `detect --input`.
pub fn export_suite(seed: u64, dir: &Path) -> anyhow::Result<ExitCode> {
    let files = crate::eval::detectors::suite::export(seed, dir)
        .with_context(|| format!("writing the suite to {}", dir.display()))?;
    eprintln!("{} files written to {}", files.len(), dir.display());
    Ok(ExitCode::SUCCESS)
}

pub fn detect_suite(seed: u64, threshold: f64) -> anyhow::Result<ExitCode> {
    let table = crate::eval::detectors::suite::table(seed, threshold);
    emit(&format!(
        "scenario suite, seed {seed}, alert at score >= {threshold}\n{table}"
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// `spendwatch silence ...`: what to do on the daemon.
#[derive(Debug, Clone)]
pub enum SilenceCommand {
    Add {
        matchers: Vec<String>,
        duration: Duration,
        comment: String,
        author: Option<String>,
        start: Option<jiff::Timestamp>,
    },
    List {
        json: bool,
        all: bool,
    },
    Expire {
        ids: Vec<String>,
    },
}

/// Where the daemon's API is: `--url`, else the `server.listen` of `--config` (read without
/// resolving any secret), else the default listen address.
fn api_base(url: Option<&str>, config: Option<&Path>) -> anyhow::Result<String> {
    if let Some(u) = url {
        return Ok(u.trim_end_matches('/').to_string());
    }
    let listen = match config {
        None => crate::config::DEFAULT_LISTEN.to_string(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let raw = crate::config::parse_raw(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            raw.server
                .listen
                .unwrap_or_else(|| crate::config::DEFAULT_LISTEN.to_string())
        }
    };
    let mut addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("server.listen {listen:?} is not an address"))?;
    // A daemon listening on every interface is reached on loopback.
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::IpAddr::from([127, 0, 0, 1]));
    }
    Ok(format!("http://{addr}"))
}

pub const API_TOKEN_ENV: &str = "SPENDWATCH_API_TOKEN";

/// Sends one API request and returns the `data` of a success, or the server's error.
async fn api_call(
    request: reqwest::RequestBuilder,
    what: &str,
) -> anyhow::Result<serde_json::Value> {
    let request = match std::env::var(API_TOKEN_ENV) {
        Ok(token) if !token.trim().is_empty() => request.bearer_auth(token.trim()),
        _ => request,
    };
    let response = request
        .send()
        .await
        .with_context(|| format!("{what}: cannot reach spendwatch"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .with_context(|| format!("{what}: spendwatch answered {status} without a JSON body"))?;
    if status.is_success() {
        return Ok(body["data"].clone());
    }
    let message = body["error"].as_str().unwrap_or("no error message");
    let hint =
        if status == reqwest::StatusCode::UNAUTHORIZED && std::env::var(API_TOKEN_ENV).is_err() {
            format!(" (set {API_TOKEN_ENV} to the daemon's [api] token)")
        } else {
            String::new()
        };
    anyhow::bail!("{what}: {status}: {message}{hint}")
}

pub async fn silence(
    url: Option<&str>,
    config: Option<&Path>,
    command: SilenceCommand,
) -> anyhow::Result<ExitCode> {
    let base = api_base(url, config)?;
    crate::ensure_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .context("building the HTTP client")?;
    match command {
        SilenceCommand::Add {
            matchers,
            duration,
            comment,
            author,
            start,
        } => {
            let starts = start.unwrap_or_else(jiff::Timestamp::now);
            let ends = starts
                .checked_add(jiff::SignedDuration::try_from(duration)?)
                .context("--duration is too long")?;
            let author = author
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "spendwatch-cli".to_string());
            let body = serde_json::json!({
                "matchers": matchers,
                "startsAt": starts.to_string(),
                "endsAt": ends.to_string(),
                "createdBy": author,
                "comment": comment,
            });
            let data = api_call(
                http.post(format!("{base}/api/v1/silences")).json(&body),
                "adding the silence",
            )
            .await?;
            emit(&format!("{}\n", data["silenceID"].as_str().unwrap_or("")))?;
        }
        SilenceCommand::List { json, all } => {
            let data = api_call(
                http.get(format!("{base}/api/v1/silences")),
                "listing silences",
            )
            .await?;
            let silences: Vec<&serde_json::Value> = data["silences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| all || s["status"]["state"] != "expired")
                .collect();
            if json {
                emit(&format!("{}\n", serde_json::to_string_pretty(&silences)?))?;
            } else {
                emit(&silence_table(&silences))?;
            }
        }
        SilenceCommand::Expire { ids } => {
            for id in ids {
                api_call(
                    http.delete(format!("{base}/api/v1/silences/{id}")),
                    &format!("expiring silence {id}"),
                )
                .await?;
                emit(&format!("expired {id}\n"))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn silence_table(silences: &[&serde_json::Value]) -> String {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let mut rows = vec![[
        "ID".to_string(),
        "STATE".to_string(),
        "ENDS".to_string(),
        "CREATED BY".to_string(),
        "MATCHERS".to_string(),
        "COMMENT".to_string(),
    ]];
    for s in silences {
        let matchers: Vec<String> = s["matchers"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| {
                        serde_json::from_value::<crate::alerting::silence::MatcherJson>(m.clone())
                            .ok()
                    })
                    .filter_map(|m| m.to_matcher().ok())
                    .map(|m| m.to_string())
                    .collect()
            })
            .unwrap_or_default();
        rows.push([
            text(&s["id"]),
            text(&s["status"]["state"]),
            text(&s["endsAt"]),
            text(&s["createdBy"]),
            matchers.join(" "),
            text(&s["comment"]),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}
