//! The end-to-end harness: generates readings as a JSON-lines file, replays it through
//! `eddy run` with each benchmark query, and prints events/s and peak memory; then times DuckDB's
//! batch answer to the same queries over the same file and prints the ratio.
//!
//!     cargo build --release --workspace --bins
//!     cargo run --release -p eddy-benches --bin e2e -- --events 2000000 --devices 1000

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use eddy_benches::{TUMBLE, WORKLOADS, query_file, readings, write_json_lines};
use serde_json::Value;

#[derive(Parser)]
#[command(about = "Replays generated readings through `eddy run` and reports throughput")]
struct Args {
    /// Readings to generate.
    #[arg(long, default_value_t = 2_000_000)]
    events: usize,
    /// Distinct devices.
    #[arg(long, default_value_t = 1_000)]
    devices: u32,
    /// Runs of each query; the best is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The eddy binary (default: `eddy` next to this harness, in the same target directory).
    #[arg(long)]
    eddy: Option<PathBuf>,
    /// Where the input file, query files and outputs go.
    #[arg(long, default_value = "target/e2e")]
    dir: PathBuf,
    /// Skip DuckDB's reference timing.
    #[arg(long)]
    no_duckdb: bool,
    /// Take checkpoints this often (`eddy run --state-dir ... --checkpoint-interval`), into a
    /// state directory emptied before each run; reports the last checkpoint's time and size.
    #[arg(long, value_name = "DURATION")]
    checkpoint_interval: Option<String>,
    /// Only the workloads whose name contains this (`tumble`, `over`, `pattern`).
    #[arg(long)]
    only: Option<String>,
}

/// What one `eddy run --stats` reported.
struct Run {
    seconds: f64,
    events: u64,
    rows_out: u64,
    late: u64,
    peak_rss_bytes: u64,
    checkpoints: u64,
    last_checkpoint_ms: u64,
    last_checkpoint_bytes: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let eddy = eddy_benches::eddy_binary(args.eddy.as_deref())?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    let input = dir.join(format!("readings-{}-{}.jsonl", args.events, args.devices));
    if !input.exists() {
        generate(&input, args.events, args.devices)?;
    }
    let size = std::fs::metadata(&input)?.len();
    println!(
        "input: {} ({} readings, {} devices, {:.0} MB)",
        input.display(),
        args.events,
        args.devices,
        size as f64 / 1e6
    );
    println!("machine: {}", machine());

    let mut eddy_seconds = Vec::new();
    for workload in WORKLOADS {
        if args
            .only
            .as_ref()
            .is_some_and(|only| !workload.name.contains(only.as_str()))
        {
            continue;
        }
        let slug = workload.name.replace([' ', '/'], "_");
        let query = dir.join(format!("{slug}.sql"));
        let output = dir.join(format!("{slug}.out.jsonl"));
        std::fs::write(
            &query,
            query_file(
                &workload,
                &input.to_string_lossy(),
                &output.to_string_lossy(),
            ),
        )?;
        let mut best: Option<Run> = None;
        for _ in 0..args.runs.max(1) {
            let state = args
                .checkpoint_interval
                .as_ref()
                .map(|every| (dir.join(format!("{slug}.state")), every.as_str()));
            let run = run_eddy(
                &eddy,
                &query,
                state.as_ref().map(|(d, e)| (d.as_path(), *e)),
            )?;
            if run.events != args.events as u64 || run.late != 0 {
                bail!(
                    "{}: eddy read {} readings ({} late), expected {} on time",
                    workload.name,
                    run.events,
                    run.late,
                    args.events
                );
            }
            if best.as_ref().is_none_or(|b| run.seconds < b.seconds) {
                best = Some(run);
            }
        }
        let best = best.context("no run")?;
        let checkpoints = if args.checkpoint_interval.is_some() {
            format!(
                "  {} checkpoints, the last {} ms, {} KB",
                best.checkpoints,
                best.last_checkpoint_ms,
                best.last_checkpoint_bytes / 1_000
            )
        } else {
            String::new()
        };
        println!(
            "eddy   {:<14} {:>7.3} s  {:>6.2} M events/s  peak RSS {:>5} MB  {} alerts{checkpoints}",
            workload.name,
            best.seconds,
            args.events as f64 / best.seconds / 1e6,
            best.peak_rss_bytes / 1_000_000,
            best.rows_out
        );
        eddy_seconds.push((workload.name, best.seconds, best.rows_out));
    }
    if let Some(&(_, tumble, _)) = eddy_seconds.iter().find(|(n, _, _)| *n == TUMBLE.name) {
        for (name, seconds, _) in eddy_seconds.iter().filter(|(n, _, _)| *n != TUMBLE.name) {
            println!("{name} / tumble time: {:.2}x", seconds / tumble);
        }
    }

    if args.no_duckdb {
        return Ok(());
    }
    for threads in [1, 2] {
        match duckdb(&input, threads) {
            Ok(reference) => {
                for (name, seconds, rows) in &eddy_seconds {
                    let Some(d) = reference.get(name) else {
                        continue;
                    };
                    let (ds, drows) = (d["seconds"].as_f64(), d["rows"].as_u64());
                    let (Some(ds), Some(drows)) = (ds, drows) else {
                        bail!("DuckDB's answer for {name} is not understood: {d}");
                    };
                    let check = if drows == *rows {
                        "same alerts".to_string()
                    } else {
                        format!("DIFFERENT: DuckDB {drows} rows, eddy {rows}")
                    };
                    println!(
                        "duckdb {name:<14} {ds:>7.3} s  {:>6.2} M events/s  ({threads} thread{}) \
                         eddy/duckdb time {:.2}x, {check}",
                        args.events as f64 / ds / 1e6,
                        if threads == 1 { "" } else { "s" },
                        seconds / ds,
                    );
                }
            }
            Err(e) => {
                println!("duckdb: not timed ({e:#})");
                break;
            }
        }
    }
    Ok(())
}

fn generate(path: &Path, events: usize, devices: u32) -> Result<()> {
    let started = Instant::now();
    let tmp = path.with_extension("tmp");
    let file = std::fs::File::create(&tmp)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    write_json_lines(&readings(events, devices), &mut out)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    eprintln!(
        "generated {} in {:.1}s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs `eddy run` over `query`; with `state`, checkpoints into a fresh state directory.
fn run_eddy(eddy: &Path, query: &Path, state: Option<(&Path, &str)>) -> Result<Run> {
    let mut command = Command::new(eddy);
    command.args(["run", "--quiet", "--stats"]).arg(query);
    if let Some((dir, every)) = state {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        command
            .arg("--state-dir")
            .arg(dir)
            .args(["--checkpoint-interval", every]);
    }
    let started = Instant::now();
    let out = command
        .env("EDDY_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {}", eddy.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "eddy run {} failed ({}):\n{stderr}",
            query.display(),
            out.status
        );
    }
    let stats: Value = stderr
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("eddy printed no statistics:\n{stderr}"))?;
    let field = |name: &str| {
        stats[name]
            .as_u64()
            .with_context(|| format!("no {name} in {stats}"))
    };
    Ok(Run {
        seconds,
        events: field("events")?,
        rows_out: field("rows_out")?,
        late: field("late")?,
        peak_rss_bytes: field("peak_rss_bytes")?,
        checkpoints: field("checkpoints")?,
        last_checkpoint_ms: field("last_checkpoint_ms")?,
        last_checkpoint_bytes: field("last_checkpoint_bytes")?,
    })
}

/// DuckDB's timings, from benches/duckdb_reference.py.
fn duckdb(input: &Path, threads: usize) -> Result<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("duckdb_reference.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(input)
        .args(["--threads", &threads.to_string()])
        .output()
        .context("python3 is not installed")?;
    if !out.status.success() {
        bail!(
            "{} failed (pip install duckdb?): {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// CPU model and count, for the report.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cpus} CPUs, {}", std::env::consts::OS)
}
