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
    /// How long after the reading that released them (by moving the watermark past a window's
    /// end, a session's gap, a pattern's last row) alerts were handed to the sink.
    pub alert_latency: Arc<LatencyHistogram>,
}

impl SinkMetrics {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            rows: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            suppressed: Arc::default(),
            alert_latency: Arc::default(),
        }
    }
}

/// The upper bounds, in seconds, of [`LatencyHistogram`]'s buckets (a last one holds the rest).
pub const LATENCY_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Durations counted in buckets, as a Prometheus histogram shows them.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// How many fell in each bucket (not cumulative); the last one is beyond every bound.
    counts: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, d: std::time::Duration) {
        let seconds = d.as_secs_f64();
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// How many were at most each bound (cumulative, as Prometheus's `le` buckets), the count of
    /// all, and their sum in seconds.
    pub fn cumulative(&self) -> (Vec<u64>, u64, f64) {
        let mut total = 0;
        let mut at_most = Vec::with_capacity(LATENCY_BOUNDS.len());
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            if i < LATENCY_BOUNDS.len() {
                at_most.push(total);
            }
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (at_most, total, sum)
    }
}

/// When the readings that moved the sources' watermarks arrived: a source notes each watermark
/// it sends with the arrival of the rows that moved it there, and a query whose output a
/// watermark released looks up how long ago that was. The newest few are kept.
#[derive(Debug, Default)]
pub struct WatermarkArrivals {
    recent: std::sync::Mutex<std::collections::VecDeque<(Millis, Instant)>>,
}

/// Watermarks whose arrival is remembered.
const ARRIVALS_KEPT: usize = 4096;

impl WatermarkArrivals {
    pub(crate) fn sent(&self, watermark: Millis, arrival: Instant) {
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == ARRIVALS_KEPT {
                recent.pop_front();
            }
            recent.push_back((watermark, arrival));
        }
    }

    /// When the rows arrived that first moved a source's watermark to `watermark` (a query over
    /// several sources gets the least of theirs, which is one of them), or else past it.
    pub(crate) fn arrival_of(&self, watermark: Millis) -> Option<Instant> {
        let recent = self.recent.lock().ok()?;
        recent
            .iter()
            .find(|(w, _)| *w == watermark)
            .or_else(|| recent.iter().find(|(w, _)| *w > watermark))
            .map(|(_, at)| *at)
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
