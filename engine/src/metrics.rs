//! Counters shared between the running tasks and whoever shows progress (the status line).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use crate::time::Millis;

const NO_WATERMARK: i64 = i64::MIN;

/// Checkpoints taken and how long and large the last one was.
#[derive(Debug, Default)]
pub struct CheckpointMetrics {
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    pub last_millis: AtomicU64,
    pub last_bytes: AtomicU64,
}

/// One source's counters.
#[derive(Debug)]
pub struct SourceMetrics {
    pub name: String,
    /// Rows decoded (on time and late).
    pub events: AtomicU64,
    /// Rows dropped because they were older than the watermark.
    pub late: AtomicU64,
    /// Records that could not be decoded (sent to the dead-letter sink if one is set).
    pub dead_letters: AtomicU64,
    /// Bytes read so far, and the total when known (a file's size), for progress.
    pub bytes_read: AtomicU64,
    pub bytes_total: AtomicU64,
    /// Connections to the source's server made again after it went away.
    pub reconnects: AtomicU64,
    watermark: AtomicI64,
}

impl SourceMetrics {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            events: AtomicU64::new(0),
            late: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            watermark: AtomicI64::new(NO_WATERMARK),
        }
    }

    pub fn watermark(&self) -> Option<Millis> {
        let w = self.watermark.load(Ordering::Relaxed);
        (w != NO_WATERMARK).then_some(w)
    }

    pub(crate) fn set_watermark(&self, w: Millis) {
        self.watermark.store(w, Ordering::Relaxed);
    }
}

/// `512 KiB`, `38.2 MiB`, `1.25 GiB`: sizes as logs and the status line show them.
pub fn show_bytes(n: u64) -> String {
    match n {
        0..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.2} GiB", n as f64 / 1_073_741_824.0),
    }
}

/// One sink's counters.
#[derive(Debug)]
pub struct SinkMetrics {
    pub name: String,
    pub rows: AtomicU64,
    pub errors: AtomicU64,
    /// Alerts its `throttle` held back.
    pub suppressed: Arc<AtomicU64>,
}

impl SinkMetrics {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            rows: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            suppressed: Arc::default(),
        }
    }
}

/// One query's counters.
#[derive(Debug)]
pub struct QueryMetrics {
    pub label: String,
    /// Batches that failed to evaluate (each is logged with its error).
    pub errors: AtomicU64,
    /// The most memory its state took when measured (see `--max-state-bytes`).
    pub peak_state_bytes: AtomicU64,
}

/// Every counter of a running engine.
#[derive(Debug)]
pub struct EngineMetrics {
    pub started: Instant,
    pub sources: Vec<Arc<SourceMetrics>>,
    pub sinks: Vec<Arc<SinkMetrics>>,
    pub queries: Vec<Arc<QueryMetrics>>,
    pub checkpoints: Arc<CheckpointMetrics>,
}

/// Totals at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub events: u64,
    pub late: u64,
    pub dead_letters: u64,
    pub rows_out: u64,
    pub errors: u64,
    pub bytes_read: u64,
    pub bytes_total: u64,
    /// The smallest watermark over the sources that have one.
    pub watermark: Option<Millis>,
}

impl EngineMetrics {
    pub fn totals(&self) -> Totals {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut t = Totals::default();
        for s in &self.sources {
            t.events += load(&s.events);
            t.late += load(&s.late);
            t.dead_letters += load(&s.dead_letters);
            t.bytes_read += load(&s.bytes_read);
            t.bytes_total += load(&s.bytes_total);
            if let Some(w) = s.watermark() {
                t.watermark = Some(t.watermark.map_or(w, |m: Millis| m.min(w)));
            }
        }
        for s in &self.sinks {
            t.rows_out += load(&s.rows);
            t.errors += load(&s.errors);
        }
        for q in &self.queries {
            t.errors += load(&q.errors);
        }
        t
    }
}
