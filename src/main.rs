use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use spendwatch::cli::{self, LogFormat, SilenceCommand};
use spendwatch::demo::{DEFAULT_DEMO_LISTEN, DEFAULT_SPEED};
use spendwatch::soak::{LogCounts, SoakOptions};

/// mimalloc, not glibc's malloc: rules evaluated on several threads each left glibc an arena
/// of freed pages (peak RSS at 220k series 0.96 → 1.28 GB); mimalloc returns them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Spend alerting and anomaly monitor for billing APIs.
#[derive(Parser)]
#[command(name = "spendwatch", version, about)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: poll, store, evaluate, alert, serve /metrics.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file: exit 0 with a summary, or 2 with every bad field's path.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Poll each source once and print what it observed (nothing is stored).
    PollOnce {
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Replay stored or given history through the rules and show what would have fired.
    Backtest {
        #[arg(long, short)]
        config: PathBuf,
        /// Replay the history in the config's store (copied; the store is not changed).
        #[arg(long, conflicts_with = "input", required_unless_present = "input")]
        from_store: bool,
        /// CSV files: series,timestamp,value,unit[,labels,period_start,period_end].
        #[arg(long, num_args = 1..)]
        input: Vec<PathBuf>,
        /// Write the alert changes to this file (.csv, or .json for the whole report).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Start of the replay (RFC 3339); default: the oldest data.
        #[arg(long)]
        from: Option<jiff::Timestamp>,
        /// End of the replay (RFC 3339); default: an hour after the newest data.
        #[arg(long)]
        to: Option<jiff::Timestamp>,
        /// Time between evaluations; default: the config's evaluation interval.
        #[arg(long, value_parser = humantime::parse_duration)]
        step: Option<Duration>,
    },
    /// Run one anomaly detector over one series (CSV `timestamp,value`), or score every
    /// detector on the labelled scenario suite (`--suite`).
    Detect {
        /// auto (the default ensemble), robust_z, ewma, seasonal, student_t or cusum.
        #[arg(long, default_value = "auto")]
        detector: String,
        /// Detector parameters, e.g. `--param window=72`.
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, String)>,
        #[arg(long, required_unless_present = "suite")]
        input: Option<PathBuf>,
        /// Print precision, recall, delay and false alerts of every detector on the suite.
        #[arg(long, conflicts_with = "input")]
        suite: bool,
        /// Seed of the generated suite.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// With `--suite`: write the suite's series and labels as CSV files into this directory.
        #[arg(long, requires = "suite")]
        export: Option<PathBuf>,
        /// Which deviations alert: up, down or both.
        #[arg(long, value_enum, default_value = "both")]
        direction: spendwatch::config::rules::Direction,
        /// Where to write `timestamp,value,expected,lower,upper,score,alert`; default stdout.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Score at or above which a point alerts.
        #[arg(long, default_value_t = 0.999)]
        threshold: f64,
    },
    /// Run the billing-API simulator standalone.
    Sim {
        #[arg(long, default_value = "127.0.0.1:9751")]
        listen: SocketAddr,
        /// Run a simulated clock this many times faster than real time, from the start of this month.
        #[arg(long)]
        speed: Option<f64>,
        /// Also serve this many generated Rackspace accounts (`030-00000`, ...; about
        /// $1,000/day each), e.g. for several replicas sharing the polling.
        #[arg(long, default_value_t = 0)]
        accounts: usize,
    },
    /// Generate a large world into a real store and measure ingest, evaluation, /metrics and
    /// memory (see README "Performance").
    Bench {
        #[arg(long, default_value_t = 1_000)]
        accounts: usize,
        /// Line items per account.
        #[arg(long, default_value_t = 20)]
        items: usize,
        /// Days of hourly history.
        #[arg(long, default_value_t = 14)]
        days: u32,
        /// Keep the store and config in this directory instead of a temp dir.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// Measure the world a previous `--keep` run left in that directory, skipping ingest.
        #[arg(long, requires = "keep")]
        reuse: bool,
        /// Rules evaluated at once (default: `[evaluation] threads`, the machine's cores).
        #[arg(long)]
        threads: Option<usize>,
        /// The world's last hour (RFC 3339, floored to the hour); default: the current hour.
        #[arg(long)]
        end: Option<jiff::Timestamp>,
        /// Instead of measuring, write the world as OpenMetrics text to this file (for
        /// `promtool tsdb create-blocks-from openmetrics`).
        #[arg(long)]
        openmetrics: Option<PathBuf>,
        /// Instead of measuring, write the unit-cost rule as a Prometheus rule file.
        #[arg(long)]
        prometheus_rules: Option<PathBuf>,
        /// Evaluation interval of the Prometheus rule group.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
        rule_interval: Duration,
    },
    /// The whole pipeline against the built-in simulator, with a simulated clock.
    Demo {
        #[arg(long, default_value = DEFAULT_DEMO_LISTEN)]
        listen: SocketAddr,
        /// Stop after this long (real time), e.g. "90s"; default: until Ctrl-C.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Simulated seconds per real second (default: a 30-day month per minute).
        #[arg(long, default_value_t = DEFAULT_SPEED)]
        speed: f64,
        /// Keep the store and generated config in this directory instead of a temp dir.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// The demo's pipeline for many simulated weeks with faults on every source and receiver
    /// outages; checks bounded RSS, no lost notification and no panic (exit 1 if one fails).
    Soak {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Simulated days to run.
        #[arg(long, default_value_t = 90)]
        days: u32,
        /// Start the simulated clock this many days into the month (day 10 starts an incident).
        #[arg(long, default_value_t = 0)]
        start_day: u32,
        /// Most simulated seconds per real second; the clock also waits for the pipeline.
        #[arg(long, default_value_t = 1_000_000.0)]
        speed: f64,
        /// Probability of a fault on each request to each billing API.
        #[arg(long, default_value_t = 0.2)]
        fault_rate: f64,
        /// Keep the webhook receiver and Slack healthy.
        #[arg(long)]
        no_receiver_faults: bool,
        /// Seed of the fault schedules.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Simulated days of warm-up before RSS growth counts (the rules' longest history is 14).
        #[arg(long, default_value_t = 14)]
        warmup_days: u32,
        /// Largest RSS growth after warm-up that passes, MiB.
        #[arg(long, default_value_t = 20.0)]
        rss_growth_limit: f64,
        /// Keep the store and generated config in this directory instead of a temp dir.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Add, list and expire silences on a running daemon, through its HTTP API. The write
    /// commands send the token in SPENDWATCH_API_TOKEN.
    Silence {
        /// The daemon's base URL; default: http://{server.listen of --config}, else
        /// http://127.0.0.1:9750.
        #[arg(long, global = true)]
        url: Option<String>,
        /// Config file to take server.listen from (no secret in it is read).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: SilenceAction,
    },
}

#[derive(Subcommand)]
enum SilenceAction {
    /// Mute the notifications of matching alerts; prints the new silence's id.
    Add {
        /// A label matcher: name="value", name!="value", name=~"regex" or name!~"regex".
        #[arg(long = "matcher", short, required = true)]
        matchers: Vec<String>,
        /// How long, e.g. "2h".
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
        duration: Duration,
        /// Why (required).
        #[arg(long)]
        comment: String,
        /// Who; default: $USER.
        #[arg(long)]
        author: Option<String>,
        /// Start (RFC 3339); default: now.
        #[arg(long)]
        start: Option<jiff::Timestamp>,
    },
    /// List active and pending silences.
    Ls {
        /// Include expired silences.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// End silences now.
    Expire {
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("expected name=value, got {text:?}"))
}

fn main() -> ExitCode {
    let args = Cli::parse();
    cli::install_crypto_provider();
    // Commands that print their own results log only what they do not print.
    let default_filter = match args.command {
        Command::Check { .. }
        | Command::PollOnce { .. }
        | Command::Backtest { .. }
        | Command::Detect { .. } => "error",
        Command::Demo { .. } | Command::Silence { .. } => "warn",
        Command::Run { .. } | Command::Sim { .. } => "info",
        Command::Bench { .. } => "warn",
        // Faults make warnings by the thousand; they are counted in the report instead.
        Command::Soak { .. } => "error",
    };
    let log_counts = LogCounts::default();
    let counted = matches!(args.command, Command::Soak { .. }).then(|| log_counts.clone());
    cli::init_logging_with(args.log_format, default_filter, counted);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("spendwatch: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            Command::Run { config } => cli::run(&config).await,
            Command::Check { config } => cli::check(&config),
            Command::PollOnce { config, json } => cli::poll_once(&config, json).await,
            Command::Sim {
                listen,
                speed,
                accounts,
            } => cli::sim(listen, speed, accounts).await,
            Command::Bench {
                accounts,
                items,
                days,
                keep,
                reuse,
                threads,
                end,
                openmetrics,
                prometheus_rules,
                rule_interval,
            } => {
                let options = spendwatch::bench::BenchOptions {
                    accounts,
                    items,
                    days,
                    dir: keep,
                    reuse,
                    threads,
                    end,
                };
                if openmetrics.is_some() || prometheus_rules.is_some() {
                    cli::bench_export(
                        &options,
                        openmetrics.as_deref(),
                        prometheus_rules.as_deref(),
                        rule_interval,
                    )
                } else {
                    cli::bench(options)
                }
            }
            Command::Detect {
                detector,
                params,
                input,
                suite,
                seed,
                export,
                direction,
                output,
                threshold,
            } => match (suite, input, export) {
                (true, _, Some(dir)) => cli::export_suite(seed, &dir),
                (true, _, None) | (false, None, _) => cli::detect_suite(seed, threshold),
                (false, Some(input), _) => cli::detect(
                    &detector,
                    &params,
                    &input,
                    output.as_deref(),
                    threshold,
                    direction,
                ),
            },
            Command::Backtest {
                config,
                from_store,
                input,
                output,
                from,
                to,
                step,
            } => cli::backtest(
                &config,
                from_store,
                &input,
                output.as_deref(),
                from,
                to,
                step,
            ),
            Command::Demo {
                listen,
                duration,
                speed,
                keep,
            } => cli::demo(listen, duration, speed, keep).await,
            Command::Soak {
                listen,
                days,
                start_day,
                speed,
                fault_rate,
                no_receiver_faults,
                seed,
                warmup_days,
                rss_growth_limit,
                keep,
            } => {
                let options = SoakOptions {
                    listen,
                    days,
                    start_day,
                    speed,
                    fault_rate,
                    receiver_faults: !no_receiver_faults,
                    seed,
                    warmup_days,
                    rss_growth_limit_mib: rss_growth_limit,
                    keep,
                };
                cli::soak(options, log_counts).await
            }
            Command::Silence {
                url,
                config,
                action,
            } => {
                let command = match action {
                    SilenceAction::Add {
                        matchers,
                        duration,
                        comment,
                        author,
                        start,
                    } => SilenceCommand::Add {
                        matchers,
                        duration,
                        comment,
                        author,
                        start,
                    },
                    SilenceAction::Ls { all, json } => SilenceCommand::List { json, all },
                    SilenceAction::Expire { ids } => SilenceCommand::Expire { ids },
                };
                cli::silence(url.as_deref(), config.as_deref(), command).await
            }
        }
    });
    result.unwrap_or_else(|e| {
        eprintln!("spendwatch: {e:#}");
        ExitCode::from(2)
    })
}
