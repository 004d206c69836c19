//! `eddy serve`: rules registered, replaced, paused and deleted at runtime over an HTTP API,
//! kept in a state directory and back in the state they had after a restart.
//!
//! - `catalog`: the rules and the audit trail on disk;
//! - `rules`: each rule's engine, and the changes to them;
//! - `api`: the HTTP routes; `auth`: bearer tokens; `metrics`: `/metrics` in Prometheus's text
//!   format.

mod api;
pub mod auth;
mod catalog;
mod metrics;
pub mod rules;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use rules::{Access, Rules};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// A file of CREATE SOURCE / CREATE SINK / CREATE TABLE statements every rule may use.
    catalog: Option<PathBuf>,
    /// Where the API listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Where rules, their versions, their checkpoints and the audit trail are kept (by default
    /// the platform's data directory, e.g. ~/.local/share/eddy).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// A file of `name:token` lines; every request but /health needs one of the tokens (also
    /// EDDY_TOKENS_FILE, or one token in EDDY_TOKEN).
    #[arg(long)]
    tokens_file: Option<PathBuf>,
    /// An environment variable rules sent over the API may read (`${NAME}`, `password_env`);
    /// repeatable. The catalog file may read any.
    #[arg(long = "allow-env", value_name = "NAME")]
    allow_env: Vec<String>,
    /// A directory under which rules sent over the API may read and write files (file sources
    /// and sinks, dead letters, certificates); repeatable. Without it they may use none.
    #[arg(long = "allow-path", value_name = "DIR")]
    allow_path: Vec<PathBuf>,
    /// How often each rule takes a checkpoint.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = eddy_engine::options::parse_duration)]
    checkpoint_interval: std::time::Duration,
}

pub async fn run(args: ServeArgs) -> Result<ExitCode> {
    let tokens_file = args
        .tokens_file
        .or_else(|| std::env::var_os("EDDY_TOKENS_FILE").map(PathBuf::from));
    let tokens = auth::Tokens::load(tokens_file.as_deref(), std::env::var("EDDY_TOKEN").ok())?;
    if tokens.is_empty() {
        if !args.http.ip().is_loopback() {
            bail!(
                "without tokens the API listens on loopback only: give --tokens-file (or EDDY_TOKEN) to listen on {}",
                args.http
            );
        }
        warn!("no tokens: the API is open to anyone on this machine, and listens on loopback only");
    }
    let state_dir = match args.state_dir {
        Some(d) => d,
        None => default_state_dir()?,
    };
    let catalog = match &args.catalog {
        Some(path) => Some((
            path.display().to_string(),
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )),
        None => None,
    };
    let mut restriction = eddy_engine::options::Restriction {
        env: args.allow_env,
        paths: Vec::new(),
    };
    for dir in &args.allow_path {
        restriction.paths.push(
            std::fs::canonicalize(dir)
                .with_context(|| format!("--allow-path {}", dir.display()))?,
        );
    }
    let rules = Rules::start(
        state_dir.clone(),
        catalog,
        Access::process(restriction),
        args.checkpoint_interval,
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("cannot listen on {}", args.http))?;
    info!(
        "listening on http://{} (state in {})",
        listener.local_addr()?,
        state_dir.display()
    );
    let shutdown = CancellationToken::new();
    stop_on_signals(shutdown.clone());
    serve_api(listener, Arc::clone(&rules), tokens, shutdown).await?;
    info!("stopping every rule (each takes a last checkpoint)");
    rules.stop_all().await;
    Ok(ExitCode::SUCCESS)
}

/// Serves the API on `listener` until `shutdown` is cancelled.
pub async fn serve_api(
    listener: tokio::net::TcpListener,
    rules: Arc<Rules>,
    tokens: auth::Tokens,
    shutdown: CancellationToken,
) -> Result<()> {
    let app = api::router(api::Api {
        rules,
        tokens: Arc::new(tokens),
        shutdown: shutdown.clone(),
        unauthorized: Arc::default(),
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("the API stopped")
}

/// The platform's data directory: `$XDG_DATA_HOME/eddy`, else `~/.local/share/eddy`.
fn default_state_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("eddy"));
    }
    let home = std::env::var_os("HOME").context("no HOME: give --state-dir")?;
    Ok(PathBuf::from(home).join(".local/share/eddy"))
}

fn stop_on_signals(shutdown: CancellationToken) {
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
        info!("stopping: the API closes, then every rule stops (Ctrl-C again to exit at once)");
        shutdown.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
}
