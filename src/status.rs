//! The live status line on stderr (events in, rate, rows out, late, dead letters, watermark lag or
//! file progress), redrawn about once a second; and the summary at the end.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_engine::metrics::{EngineMetrics, Totals};
use tokio::task::JoinHandle;

pub struct Status {
    metrics: Arc<EngineMetrics>,
    line: Option<JoinHandle<()>>,
}

impl Status {
    /// Starts the status line, unless `quiet` or stderr is not a terminal.
    pub fn start(metrics: Arc<EngineMetrics>, quiet: bool) -> Self {
        let line = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                let mut last = (Instant::now(), 0u64);
                loop {
                    tick.tick().await;
                    let totals = metrics.totals();
                    let now = Instant::now();
                    let rate = (totals.events - last.1) as f64
                        / now.duration_since(last.0).as_secs_f64().max(1e-3);
                    last = (now, totals.events);
                    eprint!("\r\x1b[2K{}", line(&totals, rate));
                    let _ = std::io::stderr().flush();
                }
            })
        });
        Self { metrics, line }
    }

    /// Stops the line; prints the summary (and, with `json`, the figures as one JSON object).
    pub fn finish(self, json: bool) {
        if let Some(h) = &self.line {
            h.abort();
            eprint!("\r\x1b[2K");
        }
        let totals = self.metrics.totals();
        let elapsed = self.metrics.started.elapsed().as_secs_f64();
        let rate = totals.events as f64 / elapsed.max(1e-9);
        if self.line.is_some() {
            eprintln!("done in {elapsed:.1}s: {}", line(&totals, rate));
        }
        if json {
            use std::sync::atomic::Ordering::Relaxed;
            let c = &self.metrics.checkpoints;
            let state: serde_json::Map<String, serde_json::Value> = self
                .metrics
                .queries
                .iter()
                .map(|q| (q.label.clone(), q.peak_state_bytes.load(Relaxed).into()))
                .collect();
            eprintln!(
                "{}",
                serde_json::json!({
                    "events": totals.events,
                    "rows_out": totals.rows_out,
                    "late": totals.late,
                    "dead_letters": totals.dead_letters,
                    "errors": totals.errors,
                    "elapsed_s": elapsed,
                    "events_per_s": rate,
                    "peak_rss_bytes": peak_rss_bytes(),
                    "peak_state_bytes": state,
                    "checkpoints": c.completed.load(Relaxed),
                    "checkpoints_failed": c.failed.load(Relaxed),
                    "last_checkpoint_ms": c.last_millis.load(Relaxed),
                    "last_checkpoint_bytes": c.last_bytes.load(Relaxed),
                    "reconnects": self.metrics.sources.iter().map(|s| s.reconnects.load(Relaxed)).sum::<u64>(),
                })
            );
        }
    }
}

fn line(t: &Totals, rate: f64) -> String {
    let mut s = format!(
        "events {} ({}/s) | alerts {} | late {} | dead letters {}",
        count(t.events),
        count(rate as u64),
        count(t.rows_out),
        count(t.late),
        count(t.dead_letters)
    );
    if t.errors > 0 {
        s.push_str(&format!(" | errors {}", count(t.errors)));
    }
    if t.bytes_total > 0 {
        s.push_str(&format!(
            " | read {:.0}% of {}",
            100.0 * t.bytes_read as f64 / t.bytes_total as f64,
            eddy_engine::metrics::show_bytes(t.bytes_total)
        ));
    } else if let Some(w) = t.watermark {
        let now = chrono::Utc::now().timestamp_millis();
        s.push_str(&format!(
            " | watermark lag {:.1}s",
            (now - w) as f64 / 1000.0
        ));
    }
    s
}

/// 1234567 as `1.2M`.
fn count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// The most memory the process has held (VmHWM), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
