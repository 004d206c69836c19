//! `eddy`: run, check and replay query files; `eddy demo` runs everything on an embedded broker.
//!
//! # Layout
//! - `main.rs`: the command line (clap) and the run loop shared by `run`, `replay` and `demo`.
//! - [`status`]: the live one-line status on stderr and the final summary.
//! - [`demo`]: embedded broker, simulated sensors, alert printer.

mod demo;
mod serve;
mod status;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use eddy_engine::{Options, Planner};
use tokio_util::sync::CancellationToken;
use tracing::info;

#[derive(Parser)]
#[command(
    name = "eddy",
    version,
    about = "Windowed SQL over IoT readings: MQTT in, alerts out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the queries of a file until Ctrl-C, or until every source has ended (file replays).
    Run {
        file: PathBuf,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Parse and type-check a query file and print its streaming plan.
    Check { file: PathBuf },
    /// Run a query file over recorded JSON lines instead of its sources' own connectors.
    Replay {
        file: PathBuf,
        /// SOURCE=PATH: read source SOURCE from the JSON-lines file PATH (repeatable).
        #[arg(long = "input", value_name = "SOURCE=PATH", required = true)]
        inputs: Vec<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// An embedded MQTT broker, simulated sensors and the example queries; alerts on stdout.
    Demo(demo::DemoArgs),
    /// Run rules registered, replaced, paused and deleted over an HTTP API, until Ctrl-C.
    Serve(serve::ServeArgs),
}

#[derive(clap::Args, Clone)]
struct OutputArgs {
    /// No live status line on stderr.
    #[arg(long)]
    quiet: bool,
    /// Print a JSON summary (events, rows out, rate, peak memory) on stderr at the end.
    #[arg(long)]
    stats: bool,
    /// Most rows, groups and keys one query may hold in state (windows, sessions, joins,
    /// patterns); a query that needs more stops with an error instead of exhausting memory.
    #[arg(long, default_value_t = 10_000_000)]
    max_state_rows: usize,
    /// Most memory one query's state may take (window groups and accumulators, OVER frames,
    /// session and join rows, pattern partitions, rows waiting for the watermark), as its
    /// operators estimate it (every 10 s, and sooner when its rows of state double): 512MiB, 2GB. A query that needs more stops with an
    /// error instead of exhausting memory.
    #[arg(long, value_name = "SIZE", default_value = "4GiB", value_parser = eddy_engine::options::parse_bytes)]
    max_state_bytes: usize,
    /// Release the state a query keeps per key (OVER frames, MATCH_RECOGNIZE partitions with
    /// their PREV history and partial matches) for keys without a reading for this long in event
    /// time: 1h, 30min. A key that comes back starts afresh. Without it those keys are kept.
    #[arg(long, value_name = "DURATION", value_parser = eddy_engine::options::parse_duration)]
    key_idle_timeout: Option<std::time::Duration>,
    /// Take checkpoints into this directory, and resume from the newest one there at start
    /// (the state of every window, session, join and pattern, and each source's position).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// How often checkpoints are taken (with --state-dir): 10s, 500ms, 1min.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = eddy_engine::options::parse_duration)]
    checkpoint_interval: std::time::Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("EDDY_LOG").unwrap_or_else(|_| {
        EnvFilter::new("info,rumqttd=off,rumqttc=warn,async_nats=warn,lapin=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .compact()
        .init();
}

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Check { file } => check(&file).await,
        Command::Run { file, output } => run(&file, &[], output).await,
        Command::Replay {
            file,
            inputs,
            output,
        } => {
            let mut overrides = Vec::new();
            for input in &inputs {
                let (source, path) = input
                    .split_once('=')
                    .with_context(|| format!("--input {input}: expected SOURCE=PATH"))?;
                overrides.push((source.to_string(), path.to_string()));
            }
            run(&file, &overrides, output).await
        }
        Command::Demo(args) => demo::run(args).await,
        Command::Serve(args) => serve::run(args).await,
    }
}

fn read_query_file(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

async fn check(file: &Path) -> Result<ExitCode> {
    let sql = read_query_file(file)?;
    let registry = eddy_connectors::registry();
    match Planner::new(&file.display().to_string(), &registry)
        .plan(&sql)
        .await
    {
        Ok(plan) => {
            // A closed stdout (`eddy check f.sql | head`) is the reader's choice, not an error.
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            match write!(out, "{plan}").and_then(|()| out.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(e).context("cannot write the plan")
                }
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Plans `file`, with `replay` sources read from files, and runs it to the end or to Ctrl-C.
async fn run(file: &Path, replay: &[(String, String)], output: OutputArgs) -> Result<ExitCode> {
    let sql = read_query_file(file)?;
    let registry = eddy_connectors::registry();
    let mut planner = Planner::new(&file.display().to_string(), &registry);
    for (source, path) in replay {
        let options = Options::from_pairs([("connector", "file"), ("path", path.as_str())]);
        planner = planner.override_source(source, options);
    }
    let mut plan = match planner.plan(&sql).await {
        Ok(plan) => plan,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(ExitCode::FAILURE);
        }
    };
    plan.limits.max_state_rows = output.max_state_rows;
    plan.limits.max_state_bytes = output.max_state_bytes;
    plan.limits.key_idle_timeout = output.key_idle_timeout.map(|d| d.as_millis() as i64);
    let checkpoints = output
        .state_dir
        .as_ref()
        .map(|dir| eddy_engine::runtime::CheckpointConfig {
            dir: dir.clone(),
            interval: output.checkpoint_interval,
        });
    let shutdown = CancellationToken::new();
    stop_on_signals(shutdown.clone(), checkpoints.is_some());
    let engine = match eddy_engine::start(plan, &shutdown, checkpoints) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let status = status::Status::start(engine.metrics(), output.quiet);
    let result = engine.wait().await;
    status.finish(output.stats);
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Ctrl-C or SIGTERM stops the sources, then everything drains (and a last checkpoint is taken);
/// a second Ctrl-C exits at once.
fn stop_on_signals(shutdown: CancellationToken, checkpoints: bool) {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let terminated = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminated => {}
        }
        if checkpoints {
            info!(
                "stopping: sources stop, a last checkpoint is taken, sinks flush (Ctrl-C again to exit at once)"
            );
        } else {
            info!(
                "stopping: sources stop, queries drain, sinks flush (Ctrl-C again to exit at once)"
            );
        }
        shutdown.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
}
