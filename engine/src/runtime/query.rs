//! A query's task: its pipeline over the messages of its inputs, barrier alignment and its share
//! of checkpoints, the release of idle keys, and where its rows go (a sink, with alert ids, or
//! the readers of a view).

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::record_batch::RecordBatch;

use tokio::sync::mpsc;
use tracing::{debug, error};

use super::barriers::{Ack, Checkpointing};
use crate::checkpoint::StateWriter;
use crate::error::{EngineError, Result};
use crate::fanout::{Fanout, Tagged};
use crate::hash::{fnv1a, fnv1a_of};
use crate::message::{Message, SinkInput};
use crate::metrics::QueryMetrics;
use crate::ops::Pipeline;
use crate::ops::without_event_time;
use crate::plan::{Limits, PlannedQuery};

/// Deterministic alert ids: a hash of the query and of the row's values, so that the same alert
/// (same query, key, window or match, same values) computed twice carries the same id and a
/// consumer can drop the second.
pub(super) struct AlertIds {
    query: u64,
    converter: Option<datafusion::arrow::row::RowConverter>,
}

impl AlertIds {
    pub(super) fn new(label: &str) -> Self {
        Self {
            query: fnv1a_of(label.as_bytes()),
            converter: None,
        }
    }

    fn add(&mut self, rows: &RecordBatch) -> Result<RecordBatch> {
        let encoded = crate::ops::row_converter(&mut self.converter, rows.columns())?
            .convert_columns(rows.columns())?;
        let ids: datafusion::arrow::array::StringArray = (0..rows.num_rows())
            .map(|i| Some(format!("{:016x}", fnv1a(self.query, encoded.row(i).data()))))
            .collect();
        let mut fields: Vec<_> = rows.schema().fields().to_vec();
        fields.push(Arc::new(datafusion::arrow::datatypes::Field::new(
            "alert_id",
            datafusion::arrow::datatypes::DataType::Utf8,
            false,
        )));
        let mut columns = rows.columns().to_vec();
        columns.push(Arc::new(ids));
        Ok(RecordBatch::try_new(
            Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
            columns,
        )?)
    }
}

/// Where a query's output goes.
pub(super) enum Emit {
    /// Rows to a sink, without their event time, with an `alert_id` if the sink asks.
    Sink(mpsc::Sender<SinkInput>, Option<AlertIds>),
    /// Rows, watermarks and the end to the queries reading a view.
    View(Fanout),
}

/// What a query task needs besides its query and channels.
pub(super) struct QueryTask {
    pub(super) index: usize,
    pub(super) metrics: Arc<QueryMetrics>,
    pub(super) limits: Limits,
    pub(super) checkpointing: Option<Checkpointing>,
    /// For a query that writes to a sink: where the arrival of the rows behind each watermark
    /// is, and the sink's histogram of how long alerts a watermark released took.
    pub(super) alert_latency: Option<(
        Arc<crate::metrics::WatermarkArrivals>,
        Arc<crate::metrics::LatencyHistogram>,
    )>,
}

/// Most rows in one batch a query sends to its sink.
const SINK_BATCH_ROWS: usize = 4096;

/// How often a query measures the memory its state takes (a walk over its keys)...
const MEASURE_STATE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// ... sooner once its rows of state have doubled since the last measure (from this many rows
/// on), so that a burst of new keys is caught at once and the walks cost O(1) a row...
const MEASURE_STATE_FROM_ROWS: usize = 4096;
/// ... and as often as this while its rows, at the last measure's bytes a row, pass the limit.
const MEASURE_NEAR_LIMIT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The limits on a query's state. Rows are checked on every message (operators keep their counts
/// as they go, so asking costs no walk over the keys); bytes are measured by a walk over the
/// state now and then, and estimated in between from the rows.
struct StateLimits {
    limits: Limits,
    /// [`MEASURE_STATE_EVERY`] and [`MEASURE_NEAR_LIMIT_EVERY`].
    every: std::time::Duration,
    near_limit_every: std::time::Duration,
    measured: Instant,
    /// Rows of state at the last measure, and the bytes a row took then.
    measured_rows: usize,
    bytes_per_row: f64,
}

impl StateLimits {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            every: MEASURE_STATE_EVERY,
            near_limit_every: MEASURE_NEAR_LIMIT_EVERY,
            measured: Instant::now(),
            measured_rows: 0,
            bytes_per_row: 0.0,
        }
    }

    fn check(&mut self, label: &str, pipeline: &Pipeline, metrics: &QueryMetrics) -> Result<()> {
        let rows = pipeline.state_rows();
        if rows > self.limits.max_state_rows {
            return Err(EngineError::Limit(format!(
                "query {label} holds {rows} rows of state, more than the limit of {} (--max-state-rows): too many distinct keys or open windows; raise the limit, shorten the windows or filter the keys",
                self.limits.max_state_rows
            )));
        }
        let since = self.measured.elapsed();
        let near_limit = rows as f64 * self.bytes_per_row > self.limits.max_state_bytes as f64;
        let due = since >= self.every
            || rows >= MEASURE_STATE_FROM_ROWS.max(2 * self.measured_rows)
            || (near_limit && since >= self.near_limit_every);
        if !due {
            return Ok(());
        }
        let started = Instant::now();
        let bytes = pipeline.state_bytes();
        self.measured = Instant::now();
        self.measured_rows = rows;
        self.bytes_per_row = bytes as f64 / rows.max(1) as f64;
        debug!(
            query = %label,
            "state: {rows} rows, {} (measured in {:.1} ms)",
            crate::metrics::show_bytes(bytes as u64),
            (self.measured - started).as_secs_f64() * 1e3
        );
        metrics
            .peak_state_bytes
            .fetch_max(bytes as u64, std::sync::atomic::Ordering::Relaxed);
        if bytes > self.limits.max_state_bytes {
            return Err(EngineError::Limit(format!(
                "query {label} holds {} of state, more than the limit of {} (--max-state-bytes): too many distinct keys, open windows or rows waiting; raise the limit, shorten the windows or frames, or filter the keys",
                crate::metrics::show_bytes(bytes as u64),
                crate::metrics::show_bytes(self.limits.max_state_bytes as u64)
            )));
        }
        Ok(())
    }
}

/// When to release idle keys (`--key-idle-timeout`): the query's watermark (the smallest of its
/// inputs') minus the timeout, swept each time the watermark has moved a tenth of the timeout.
struct IdleKeys {
    timeout: Option<crate::time::Millis>,
    watermarks: Vec<Option<crate::time::Millis>>,
    ended: Vec<bool>,
    swept: crate::time::Millis,
}

impl IdleKeys {
    fn new(inputs: usize, timeout: Option<crate::time::Millis>) -> Self {
        Self {
            timeout,
            watermarks: vec![None; inputs],
            ended: vec![false; inputs],
            swept: crate::time::Millis::MIN,
        }
    }

    fn ended(&mut self, input: usize) {
        self.ended[input] = true;
    }

    /// Input `input` reached watermark `w`: the time keys must have had a row since, when a sweep
    /// is due.
    fn watermark(&mut self, input: usize, w: crate::time::Millis) -> Option<crate::time::Millis> {
        let timeout = self.timeout?;
        self.watermarks[input] = Some(w);
        let now = self
            .watermarks
            .iter()
            .zip(&self.ended)
            .filter(|(_, e)| !**e)
            .map(|(w, _)| *w)
            .try_fold(crate::time::END_OF_TIME, |lo, w| w.map(|w| lo.min(w)))?;
        if now.saturating_sub(self.swept) < (timeout / 10).max(1) {
            return None;
        }
        self.swept = now;
        Some(now.saturating_sub(timeout))
    }
}

/// Barrier alignment: which inputs have delivered the barrier being aligned, and what arrived on
/// them behind it (held back until the barrier has arrived on every input).
struct Alignment {
    barrier: Option<u64>,
    arrived: Vec<bool>,
    ended: Vec<bool>,
    held: Vec<std::collections::VecDeque<Message>>,
}

impl Alignment {
    fn new(inputs: usize) -> Self {
        Self {
            barrier: None,
            arrived: vec![false; inputs],
            ended: vec![false; inputs],
            held: vec![Default::default(); inputs],
        }
    }

    /// Every input still running has delivered the barrier.
    fn complete(&self) -> bool {
        self.barrier.is_some() && self.arrived.iter().zip(&self.ended).all(|(&a, &e)| a || e)
    }
}

pub(super) async fn run_query(
    mut query: PlannedQuery,
    mut input: mpsc::Receiver<Tagged>,
    mut to: Emit,
    task: QueryTask,
) -> Result<()> {
    let mut out = Vec::new();
    let mut align = Alignment::new(query.inputs.len());
    let mut idle_keys = IdleKeys::new(query.inputs.len(), task.limits.key_idle_timeout);
    let mut state_limits = StateLimits::new(task.limits);
    // Messages released after an alignment, taken before the channel.
    let mut ready: std::collections::VecDeque<Tagged> = Default::default();
    loop {
        let (i, message) = match ready.pop_front() {
            Some(m) => m,
            None => match input.recv().await {
                Some(m) => m,
                None => break,
            },
        };
        if align.arrived.get(i).copied().unwrap_or(false) {
            align.held[i].push_back(message);
            continue;
        }
        let message = match message {
            Message::Barrier(id) => {
                match align.barrier {
                    // Left over from a checkpoint that was abandoned: not waited for.
                    Some(current) if id < current => continue,
                    // A newer checkpoint: the one being aligned was abandoned (its barrier will
                    // not come on every input); what the inputs held back for it goes on.
                    Some(current) if id > current => release_held(&mut align, &mut ready),
                    _ => {}
                }
                align.barrier = Some(id);
                align.arrived[i] = true;
                if align.complete() {
                    checkpoint_query(&mut query, id, &task, &mut to).await?;
                    release_held(&mut align, &mut ready);
                }
                continue;
            }
            m => m,
        };
        match message {
            Message::End => {
                align.ended[i] = true;
                idle_keys.ended(i);
            }
            Message::Watermark(w) => {
                if let Some(before) = idle_keys.watermark(i, w) {
                    query.pipeline.release_keys_idle_since(before);
                }
            }
            _ => {}
        }
        if let Err(e) = state_limits.check(&query.label, &query.pipeline, &task.metrics) {
            error!(query = %query.label, "{e}");
            return Err(e);
        }
        let released_by = match message {
            Message::Watermark(w) => Some(w),
            _ => None,
        };
        if let Err(e) = query.pipeline.push(i, message, &mut out) {
            task.metrics
                .errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            error!(query = %query.label, "a batch failed and was skipped: {e}");
        }
        // Alerts a watermark released: timed from the arrival of the rows that moved it, once
        // they are handed to the sink.
        let released = match (released_by, &task.alert_latency) {
            (Some(w), Some((arrivals, latency)))
                if out
                    .iter()
                    .any(|m| matches!(m, Message::Batch(b) if b.num_rows() > 0)) =>
            {
                arrivals.arrival_of(w).map(|at| (at, latency))
            }
            _ => None,
        };
        let mut end = false;
        for m in out.drain(..) {
            end |= matches!(m, Message::End);
            if !emit(&mut to, m).await? {
                return Err(EngineError::Stopped(format!(
                    "query {}: what reads its rows has stopped",
                    query.label
                )));
            }
        }
        if let Some((arrived, latency)) = released {
            latency.observe(arrived.elapsed());
        }
        if end {
            break;
        }
        // An input that ended may complete an alignment the others were waiting in.
        if let Some(id) = align.barrier
            && align.complete()
        {
            checkpoint_query(&mut query, id, &task, &mut to).await?;
            release_held(&mut align, &mut ready);
        }
    }
    Ok(())
}

/// Sends one message of a query's output on; false when nothing reads it any more.
async fn emit(to: &mut Emit, m: Message) -> Result<bool> {
    Ok(match (to, m) {
        (Emit::Sink(sink, ids), Message::Batch(b)) => {
            let mut rows = without_event_time(&b)?;
            if let Some(ids) = ids {
                rows = ids.add(&rows)?;
            }
            // A window firing for every key is one batch of them all: sent in slices, so that
            // what waits in the sink's channel is bounded in rows, not only in batches.
            for start in (0..rows.num_rows()).step_by(SINK_BATCH_ROWS) {
                let len = SINK_BATCH_ROWS.min(rows.num_rows() - start);
                if sink
                    .send(SinkInput::Rows(rows.slice(start, len)))
                    .await
                    .is_err()
                {
                    return Ok(false);
                }
            }
            true
        }
        (Emit::Sink(sink, _), Message::Barrier(id)) => {
            sink.send(SinkInput::Barrier(id)).await.is_ok()
        }
        (Emit::Sink(..), _) => true,
        (Emit::View(readers), m) => readers.send(m).await,
    })
}

/// The barrier is in from every input: takes the query's state, passes the barrier on, and goes
/// on; the state is encoded and written (then the coordinator told) off the query's task.
async fn checkpoint_query(
    query: &mut PlannedQuery,
    id: u64,
    task: &QueryTask,
    to: &mut Emit,
) -> Result<()> {
    let Some(c) = &task.checkpointing else {
        return Ok(());
    };
    let mut state = StateWriter::new();
    let pause = Instant::now();
    let taken = query.pipeline.snapshot(&mut state);
    tracing::debug!(query = %query.label, "state for checkpoint {id} taken in {} ms", pause.elapsed().as_millis());
    let (index, label, store, acks) = (
        task.index,
        query.label.clone(),
        Arc::clone(&c.store),
        c.acks.clone(),
    );
    let label_of_file = label.clone();
    let pending = c.store.pending_dir(id);
    tokio::spawn(async move {
        let written = match taken {
            Ok(()) => tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let bytes = state.encode()?;
                let encoded = started.elapsed();
                let written = store.write_query(id, index, &label_of_file, &bytes);
                debug!(
                    "checkpoint {id}, query {index}: {} bytes encoded in {} ms, written in {} ms",
                    bytes.len(),
                    encoded.as_millis(),
                    (started.elapsed() - encoded).as_millis()
                );
                written
            })
            .await
            .unwrap_or_else(|e| Err(EngineError::Internal(format!("writing the state: {e}")))),
            Err(e) => Err(e),
        };
        let ack = match written {
            Ok(state) => Ack::Query { id, state },
            // The coordinator gave the checkpoint up meanwhile (a source's input ended) and
            // removed its directory: nothing is wrong with this query.
            Err(e) if !pending.exists() => {
                debug!(query = %label, "checkpoint {id} was given up before its state was written: {e}");
                Ack::Failed {
                    id,
                    reason: format!("query {label}: {e}"),
                }
            }
            Err(e) => {
                error!(query = %label, "cannot write its state into checkpoint {id}: {e}");
                Ack::Failed {
                    id,
                    reason: format!("query {label}: {e}"),
                }
            }
        };
        let _ = acks.send(ack);
    });
    emit(to, Message::Barrier(id)).await?;
    Ok(())
}

/// After an alignment: what the inputs held back goes first, in each input's order.
fn release_held(align: &mut Alignment, ready: &mut std::collections::VecDeque<Tagged>) {
    align.barrier = None;
    let mut released: Vec<Tagged> = Vec::new();
    for (i, held) in align.held.iter_mut().enumerate() {
        released.extend(held.drain(..).map(|m| (i, m)));
    }
    align.arrived.iter_mut().for_each(|a| *a = false);
    for m in released.into_iter().rev() {
        ready.push_front(m);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::checkpoint::StateReader;
    use crate::ops::Operator;

    /// An operator that holds the rows and bytes it is told to.
    struct Holds(Arc<(AtomicUsize, AtomicUsize)>);

    impl Operator for Holds {
        fn describe(&self) -> String {
            "holds".into()
        }
        fn process_batch(&mut self, _: RecordBatch, _: &mut Vec<Message>) -> Result<()> {
            Ok(())
        }
        fn state_rows(&self) -> usize {
            self.0.0.load(Ordering::Relaxed)
        }
        fn state_bytes(&self) -> usize {
            self.0.1.load(Ordering::Relaxed)
        }
        fn snapshot(&mut self, _: &mut StateWriter) -> Result<()> {
            Ok(())
        }
        fn restore(&mut self, _: &mut StateReader) -> Result<()> {
            Ok(())
        }
    }

    /// A pipeline whose state is set by the returned closure, limits of 1,000,000 bytes measured
    /// on their own schedule (`every`, `near_limit_every`), and the query's metrics.
    fn setup(
        every: Duration,
        near_limit_every: Duration,
    ) -> (Pipeline, impl Fn(usize, usize), StateLimits, QueryMetrics) {
        let held = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let pipeline = Pipeline::new(vec![Box::new(Holds(Arc::clone(&held)))]);
        let set = move |rows: usize, bytes: usize| {
            held.0.store(rows, Ordering::Relaxed);
            held.1.store(bytes, Ordering::Relaxed);
        };
        let limits = StateLimits {
            every,
            near_limit_every,
            ..StateLimits::new(Limits {
                max_state_bytes: 1_000_000,
                ..Limits::default()
            })
        };
        let metrics = QueryMetrics {
            label: "q".into(),
            errors: Default::default(),
            peak_state_bytes: Default::default(),
        };
        (pipeline, set, limits, metrics)
    }

    fn peak(m: &QueryMetrics) -> u64 {
        m.peak_state_bytes.load(Ordering::Relaxed)
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn bytes_are_measured_when_the_rows_of_state_double() {
        let (p, set, mut limits, m) = setup(HOUR, HOUR);
        set(100, 2_000_000);
        limits
            .check("q", &p, &m)
            .expect("not measured below 4096 rows");
        assert_eq!(peak(&m), 0);
        set(4_096, 500_000);
        limits.check("q", &p, &m).expect("under the limit");
        assert_eq!(peak(&m), 500_000);
        // 8,000 rows at the 122 bytes a row of the last measure: under the limit, not measured.
        set(8_000, 2_000_000);
        limits.check("q", &p, &m).expect("not measured");
        assert_eq!(peak(&m), 500_000);
        set(8_192, 2_000_000);
        let e = limits
            .check("q", &p, &m)
            .expect_err("measured: past the limit");
        assert!(
            e.to_string().contains(
                "holds 1.9 MiB of state, more than the limit of 976.6 KiB (--max-state-bytes)"
            ),
            "{e}"
        );
    }

    #[test]
    fn rows_whose_estimate_passes_the_limit_are_measured() {
        let (p, set, mut limits, m) = setup(HOUR, Duration::ZERO);
        set(4_096, 900_000);
        limits.check("q", &p, &m).expect("under the limit");
        // Estimated at 1,010,000 bytes: measured, and found under the limit.
        set(4_600, 950_000);
        limits.check("q", &p, &m).expect("under the limit");
        assert_eq!(peak(&m), 950_000);
        // Estimated at the new bytes a row (950,000): not measured.
        set(4_600, 1_100_000);
        limits.check("q", &p, &m).expect("not measured");
        assert_eq!(peak(&m), 950_000);
        // Estimated at 1,032,000 bytes: measured, and found past the limit.
        set(5_000, 1_100_000);
        let e = limits
            .check("q", &p, &m)
            .expect_err("estimated past: measured");
        assert!(e.to_string().contains("(--max-state-bytes)"), "{e}");
    }

    #[test]
    fn bytes_are_measured_every_interval_whatever_the_rows() {
        let (p, set, mut limits, m) = setup(Duration::ZERO, HOUR);
        set(10, 2_000_000);
        assert!(limits.check("q", &p, &m).is_err());
    }

    #[test]
    fn rows_past_their_limit_stop_the_query_at_once() {
        let (p, set, mut limits, m) = setup(HOUR, HOUR);
        limits.limits.max_state_rows = 1_000;
        set(1_001, 0);
        let e = limits.check("q", &p, &m).expect_err("past the row limit");
        assert!(e.to_string().contains("holds 1001 rows of state"), "{e}");
    }
}
