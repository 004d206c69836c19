//! The runtime: one task per source, per query and per sink, wired with bounded channels so a
//! slow sink slows its source down instead of filling memory.

mod barriers;
mod fanout;
mod message;
mod metrics;
mod source_context;

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

pub use barriers::{CheckpointConfig, CheckpointMetrics};
pub use fanout::{Fanout, Subscriber, Tagged};
pub use message::{Message, SinkInput};
pub use metrics::{EngineMetrics, QueryMetrics, SinkMetrics, SourceMetrics, Totals};
pub(crate) use source_context::now_millis;
pub use source_context::{DEAD_LETTER_SCHEMA, EventTime, SourceContext};

use crate::checkpoint::{CheckpointStore, SourceCheckpoint, StateWriter};
use crate::connector::{ConnectorError, Sink};
use crate::error::{EngineError, Result};
use crate::ops::without_event_time;
use crate::plan::{Input, Output, Plan, PlannedQuery};
use barriers::{Ack, Checkpointing, Coordinator, Expected};

/// Batches or watermarks in flight between a source and each query reading it.
const SOURCE_CHANNEL: usize = 16;
/// Result batches in flight between the queries and a sink.
const SINK_CHANNEL: usize = 64;

/// A started engine: its tasks run on the tokio runtime until the sources end or `shutdown` fires.
pub struct RunningEngine {
    metrics: Arc<EngineMetrics>,
    tasks: JoinSet<Result<()>>,
    /// The checkpoint coordinator, and the token that tells it every other task has stopped.
    coordinator: Option<(tokio::task::JoinHandle<Result<()>>, CancellationToken)>,
}

/// Starts every source, query and sink of `plan`. Cancelling `shutdown` stops the sources; the
/// queries and sinks then drain and stop (open windows do not fire: they are incomplete). With
/// `checkpoints`, the engine first resumes from the newest checkpoint in the state directory, if
/// there is one, and takes a checkpoint every interval and a last one when `shutdown` fires.
pub fn start(
    plan: Plan,
    shutdown: CancellationToken,
    checkpoints: Option<CheckpointConfig>,
) -> Result<RunningEngine> {
    let fingerprint = plan.fingerprint();
    let Plan {
        sources,
        sinks,
        tables,
        mut queries,
        limits,
    } = plan;
    let mut tasks = JoinSet::new();

    // Resume: every query's state and every source's position, read whole before anything runs.
    let store = match &checkpoints {
        Some(c) => Some(Arc::new(CheckpointStore::open(&c.dir)?)),
        None => None,
    };
    let mut resumed_sources: Vec<Option<SourceCheckpoint>> = vec![None; sources.len()];
    let restoring = Instant::now();
    if let Some(store) = &store
        && let Some(loaded) = store.load_latest(&fingerprint)?
    {
        let id = loaded.manifest.id;
        for (index, mut state) in loaded.queries {
            let query = queries.get_mut(index).ok_or_else(|| {
                EngineError::Checkpoint(format!(
                    "checkpoint {id} has state of a query {index} the file does not have"
                ))
            })?;
            // State that passed the checksum but does not fit the operators (it should not
            // happen) is an error, not a crash.
            let restored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                query.pipeline.restore(&mut state)
            }))
            .unwrap_or_else(|_| {
                Err(EngineError::Checkpoint(
                    "its state does not fit the query's operators".into(),
                ))
            });
            restored.and_then(|()| state.finish()).map_err(|e| {
                EngineError::Checkpoint(format!(
                    "cannot restore query {} from {}: {}",
                    query.label,
                    store.dir().display(),
                    e
                ))
            })?;
        }
        for state in loaded.manifest.sources {
            if let Some(i) = sources.iter().position(|s| s.name == state.name) {
                resumed_sources[i] = Some(state);
            }
        }
        info!(
            "resumed from checkpoint {id} ({}): {} bytes of state read and restored in {} ms",
            store.dir().display(),
            loaded.bytes,
            restoring.elapsed().as_millis()
        );
    }
    let (requests_tx, requests) = watch::channel(barriers::Request::default());
    let (completed_tx, completed) = watch::channel(0u64);
    let (acks_tx, acks_rx) = mpsc::unbounded_channel();
    let wanted = Arc::new(tokio::sync::Notify::new());
    let checkpointing = store.as_ref().map(|store| Checkpointing {
        store: Arc::clone(store),
        requests,
        completed,
        acks: acks_tx,
        wanted: Arc::clone(&wanted),
    });

    // Reference tables load before any source starts, so no row misses its lookup.
    let (tables_left, tables_loaded) = tokio::sync::watch::channel(tables.len());
    let tables_left = Arc::new(tables_left);
    for t in tables {
        tasks.spawn(load_table(t, Arc::clone(&tables_left), shutdown.clone()));
    }

    // A query runs if it writes to a sink or feeds a view that runs; views come before their
    // readers, so one pass from the end decides.
    let mut live = vec![false; queries.len()];
    for q in (0..queries.len()).rev() {
        live[q] = matches!(queries[q].output, Output::Sink(_))
            || queries
                .iter()
                .zip(&live)
                .any(|(r, &l)| l && r.inputs.contains(&Input::View(q)));
    }
    // A source runs if a live query reads it.
    let started: Vec<bool> = (0..sources.len())
        .map(|i| {
            queries
                .iter()
                .zip(&live)
                .any(|(q, &l)| l && q.inputs.contains(&Input::Source(i)))
        })
        .collect();
    // Who writes to each sink: the queries that insert into it and the sources whose late rows
    // go there. A sink flushes for a checkpoint when it has the barrier from all of them.
    let mut writers = vec![0usize; sinks.len()];
    for (q, query) in queries.iter().enumerate() {
        if let (true, Output::Sink(k)) = (live[q], &query.output) {
            writers[*k] += 1;
        }
    }
    for (s, source) in sources.iter().enumerate() {
        if let (true, Some(k)) = (started[s], source.late_sink) {
            writers[k] += 1;
        }
    }
    let mut expected = Expected {
        sources: started.iter().filter(|&&s| s).count(),
        queries: live.iter().filter(|&&l| l).count(),
        sinks: writers.iter().filter(|&&w| w > 0).count(),
    };

    // Sinks first: queries need their senders.
    let mut sink_senders = Vec::new();
    let mut sink_metrics = Vec::new();
    let alert_ids: Vec<bool> = sinks.iter().map(|s| s.alert_id).collect();
    for (s, w) in sinks.into_iter().zip(&writers) {
        let (tx, rx) = mpsc::channel::<SinkInput>(SINK_CHANNEL);
        let m = Arc::new(SinkMetrics {
            name: s.name.clone(),
            rows: Default::default(),
            errors: Default::default(),
        });
        sink_senders.push(tx);
        sink_metrics.push(Arc::clone(&m));
        let failed = FailedRows {
            retry: s.retry,
            dead_letter: s.dead_letter,
        };
        let barriers = checkpointing.as_ref().map(|c| (*w, c.acks.clone()));
        tasks.spawn(run_sink(s.name, s.sink, rx, m, failed, barriers));
    }

    // Channels: each live query has one, and every stream it reads sends to it.
    let mut source_outputs = vec![Fanout::default(); sources.len()];
    let mut view_outputs = vec![Fanout::default(); queries.len()];
    let mut receivers = Vec::new();
    for (q, query) in queries.iter().enumerate() {
        if !live[q] {
            info!(query = %query.label, "view not read by any query; not started");
            receivers.push(None);
            continue;
        }
        let (tx, rx) = mpsc::channel(SOURCE_CHANNEL);
        for (input, stream) in query.inputs.iter().enumerate() {
            let subscriber = Subscriber {
                tx: tx.clone(),
                input,
            };
            match *stream {
                Input::Source(i) => source_outputs[i].push(subscriber),
                Input::View(v) => view_outputs[v].push(subscriber),
            }
        }
        receivers.push(Some(rx));
    }
    let mut query_metrics = Vec::new();
    for (index, ((q, rx), views)) in queries
        .into_iter()
        .zip(receivers)
        .zip(view_outputs)
        .enumerate()
    {
        let Some(rx) = rx else { continue };
        let m = Arc::new(QueryMetrics {
            label: q.label.clone(),
            errors: Default::default(),
        });
        query_metrics.push(Arc::clone(&m));
        let to = match q.output {
            Output::Sink(k) => Emit::Sink(
                sink_senders[k].clone(),
                alert_ids[k].then(|| AlertIds::new(&q.label)),
            ),
            Output::View(_) => Emit::View(views),
        };
        let task = QueryTask {
            index,
            metrics: m,
            max_state_rows: limits.max_state_rows,
            key_idle_timeout: limits.key_idle_timeout,
            checkpointing: checkpointing.clone(),
        };
        tasks.spawn(run_query(q, rx, to, task));
    }
    let mut source_metrics = Vec::new();
    let source_names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    for (index, ((s, outputs), resumed)) in sources
        .into_iter()
        .zip(source_outputs)
        .zip(resumed_sources)
        .enumerate()
    {
        let m = Arc::new(SourceMetrics::new(&s.name));
        source_metrics.push(Arc::clone(&m));
        if outputs.is_empty() {
            info!(source = %s.name, "not read by any query; not started");
            continue;
        }
        let dead_letter_tx = s.dead_letter.map(|sink| {
            let (tx, rx) = mpsc::channel(SINK_CHANNEL);
            let dm = Arc::new(SinkMetrics {
                name: format!("{} dead letters", s.name),
                rows: Default::default(),
                errors: Default::default(),
            });
            let barriers = checkpointing.as_ref().map(|c| (1, c.acks.clone()));
            expected.sinks += usize::from(barriers.is_some());
            tasks.spawn(run_sink(
                format!("{}.dead_letter", s.name),
                sink,
                rx,
                dm,
                FailedRows::default(),
                barriers,
            ));
            tx
        });
        let mut ctx = SourceContext::new(
            &s.name,
            Arc::clone(&s.schema),
            s.event_time.clone(),
            outputs,
            Arc::clone(&m),
            dead_letter_tx,
            shutdown.child_token(),
        )
        .with_late_rows(s.late_sink.map(|k| sink_senders[k].clone()))
        .with_max_future(s.max_future);
        if let Some(state) = &resumed {
            ctx = ctx.restored(state);
        }
        if let Some(c) = &checkpointing {
            ctx = ctx.with_checkpoints(c.completed.clone(), Arc::clone(&c.wanted));
        }
        let connector = s.connector;
        let name = s.name;
        let ended = shutdown.child_token();
        // Cancelled when the connector has stopped reading, whatever the reason.
        let stopped = CancellationToken::new();
        // Cancelled when the input has ended (or failed): no barrier can follow.
        let finished = CancellationToken::new();
        if let Some(idle) = s.idle_timeout {
            tasks.spawn(idle_clock(
                ctx.emitter(),
                idle,
                Arc::clone(&m),
                ended.clone(),
            ));
        }
        if let Some(c) = &checkpointing {
            tasks.spawn(inject_barriers(
                index,
                ctx.emitter(),
                c.clone(),
                stopped.clone(),
                finished.clone(),
            ));
        }
        let acks = checkpointing.as_ref().map(|c| c.acks.clone());
        let mut tables_loaded = tables_loaded.clone();
        tasks.spawn(async move {
            let _stopped = stopped.drop_guard();
            tokio::select! {
                loaded = tables_loaded.wait_for(|left| *left == 0) => {
                    if loaded.is_err() {
                        ended.cancel();
                        finished.cancel();
                        return Ok(());
                    }
                }
                _ = ctx.shutdown().cancelled() => {
                    ended.cancel();
                    return Ok(());
                }
            }
            let result = connector.run(&mut ctx).await;
            ended.cancel();
            match result {
                Ok(()) if !ctx.shutdown().is_cancelled() => {
                    info!(source = %name, "input ended");
                    if let Some(acks) = &acks {
                        let _ = acks.send(Ack::SourceEnded { name: name.clone() });
                    }
                    ctx.finish().await;
                    finished.cancel();
                    Ok(())
                }
                Ok(()) => {
                    let _ = ctx.flush().await;
                    Ok(())
                }
                Err(e) => {
                    let _ = ctx.flush().await;
                    finished.cancel();
                    if let Some(acks) = &acks {
                        let _ = acks.send(Ack::SourceEnded { name: name.clone() });
                    }
                    error!(source = %name, "stopped: {e}");
                    Err(EngineError::Connector(ConnectorError {
                        message: format!("source {name}: {}", e.message),
                        retryable: e.retryable,
                    }))
                }
            }
        });
    }

    drop(sink_senders);

    let checkpoint_metrics = Arc::new(CheckpointMetrics::default());
    let coordinator = match (checkpoints, store) {
        (Some(config), Some(store)) => {
            let done = CancellationToken::new();
            let c = Coordinator {
                config,
                store,
                plan: fingerprint,
                source_names,
                expected,
                requests: requests_tx,
                completed: completed_tx,
                acks: acks_rx,
                wanted,
                metrics: Arc::clone(&checkpoint_metrics),
                shutdown: shutdown.clone(),
                done: done.clone(),
            };
            Some((tokio::spawn(c.run()), done))
        }
        _ => None,
    };

    Ok(RunningEngine {
        metrics: Arc::new(EngineMetrics {
            started: Instant::now(),
            sources: source_metrics,
            sinks: sink_metrics,
            queries: query_metrics,
            checkpoints: checkpoint_metrics,
        }),
        tasks,
        coordinator,
    })
}

/// Sends a source's barriers: for each checkpoint asked, under the lock the source's rows go out
/// under, so the position it reports is exactly that of the rows before the barrier. The last
/// checkpoint before stopping waits until the source has stopped reading (`stopped`), so that no
/// row follows its barrier.
async fn inject_barriers(
    index: usize,
    emitter: Arc<tokio::sync::Mutex<source_context::Emitter>>,
    mut checkpointing: Checkpointing,
    stopped: CancellationToken,
    finished: CancellationToken,
) -> Result<()> {
    loop {
        tokio::select! {
            changed = checkpointing.requests.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            _ = finished.cancelled() => return Ok(()),
        }
        let request = *checkpointing.requests.borrow_and_update();
        if request.last {
            stopped.cancelled().await;
        }
        let answer = emitter.lock().await.barrier(request.id).await;
        let ack = match answer {
            Ok(state) => Ack::Source {
                index,
                id: request.id,
                state,
            },
            Err(e) => Ack::Failed {
                id: request.id,
                reason: e.message,
            },
        };
        let _ = checkpointing.acks.send(ack);
        if request.last {
            return Ok(());
        }
    }
}

impl RunningEngine {
    pub fn metrics(&self) -> Arc<EngineMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Waits until every task has stopped; the first error, if any.
    pub async fn wait(mut self) -> Result<()> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let result = joined.map_err(|e| EngineError::Internal(format!("a task failed: {e}")));
            if let Err(e) = result.and_then(|r| r)
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        if let Some((coordinator, done)) = self.coordinator {
            done.cancel();
            let result = coordinator
                .await
                .map_err(|e| EngineError::Internal(format!("the checkpoints failed: {e}")));
            if let Err(e) = result.and_then(|r| r)
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Loads a reference table, tells the sources when it is there, and reloads it every `refresh`
/// until the engine stops. A failed reload keeps the rows of the last good one.
async fn load_table(
    table: crate::plan::PlannedTable,
    tables_left: Arc<tokio::sync::watch::Sender<usize>>,
    shutdown: CancellationToken,
) -> Result<()> {
    let first = tokio::select! {
        r = table.table.load() => r,
        _ = shutdown.cancelled() => return Ok(()),
    };
    match first {
        Ok(rows) => {
            info!(table = %table.name, "loaded {} rows", rows.num_rows());
            table.snapshot.replace(rows);
            tables_left.send_modify(|left| *left = left.saturating_sub(1));
        }
        Err(e) => {
            error!(table = %table.name, "cannot load: {e}");
            shutdown.cancel();
            return Err(EngineError::Connector(ConnectorError {
                message: format!("table {}: {}", table.name, e.message),
                retryable: e.retryable,
            }));
        }
    }
    let Some(every) = table.refresh else {
        return Ok(());
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return Ok(()),
            _ = tables_left.closed() => return Ok(()),
        }
        match table.table.load().await {
            Ok(rows) => {
                tracing::debug!(table = %table.name, "reloaded {} rows", rows.num_rows());
                table.snapshot.replace(rows);
            }
            Err(e) => {
                tracing::warn!(table = %table.name, "reload failed, keeping the rows loaded before: {e}")
            }
        }
    }
}

/// Advances a silent source's watermark with the clock, until the source ends.
async fn idle_clock(
    emitter: Arc<tokio::sync::Mutex<source_context::Emitter>>,
    idle: std::time::Duration,
    metrics: Arc<SourceMetrics>,
    ended: CancellationToken,
) -> Result<()> {
    let tick = (idle / 10).clamp(
        std::time::Duration::from_millis(10),
        std::time::Duration::from_secs(1),
    );
    loop {
        tokio::select! {
            _ = ended.cancelled() => return Ok(()),
            _ = tokio::time::sleep(tick) => {}
        }
        if emitter
            .lock()
            .await
            .idle_tick(idle, &metrics)
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}

/// Writes `batch`, trying again after retryable failures with exponential backoff and jitter.
async fn write_with_retries(
    name: &str,
    sink: &mut dyn Sink,
    batch: &RecordBatch,
    retry: crate::plan::Retry,
) -> std::result::Result<(), ConnectorError> {
    let mut delay = retry.first;
    let mut attempt = 0;
    loop {
        match sink.write(batch.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) if e.retryable && attempt < retry.attempts => {
                attempt += 1;
                // Up to a quarter more, so that many sinks failing together do not retry together.
                let jitter = delay.mul_f64(0.25 * (now_millis() % 1000) as f64 / 1000.0);
                tracing::warn!(
                    sink = %name,
                    "write failed: {e}; retry {attempt} of {} in {:?}",
                    retry.attempts,
                    delay + jitter
                );
                tokio::time::sleep(delay + jitter).await;
                delay = (delay * 2).min(retry.max);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Rows a sink could not write, as dead letters: one per row, the row as text, and why.
fn sink_dead_letters(name: &str, batch: &RecordBatch, reason: &str) -> Result<RecordBatch> {
    use datafusion::arrow::array::{StringArray, TimestampMillisecondArray};
    let payload = source_context::rows_as_text(batch)?;
    let n = batch.num_rows();
    let columns: Vec<datafusion::arrow::array::ArrayRef> = vec![
        Arc::new(StringArray::from(vec![name; n])),
        Arc::new(StringArray::from(vec![format!("sink {name}"); n])),
        Arc::new(StringArray::from(vec![reason; n])),
        Arc::new(StringArray::from(payload)),
        Arc::new(TimestampMillisecondArray::from(vec![now_millis(); n])),
    ];
    Ok(RecordBatch::try_new(
        Arc::clone(&DEAD_LETTER_SCHEMA),
        columns,
    )?)
}

/// Deterministic alert ids: a hash of the query and of the row's values, so that the same alert
/// (same query, key, window or match, same values) computed twice carries the same id and a
/// consumer can drop the second.
struct AlertIds {
    query: u64,
    converter: Option<datafusion::arrow::row::RowConverter>,
}

impl AlertIds {
    fn new(label: &str) -> Self {
        Self {
            query: fnv1a(0xcbf2_9ce4_8422_2325, label.as_bytes()),
            converter: None,
        }
    }

    fn add(&mut self, rows: &RecordBatch) -> Result<RecordBatch> {
        use datafusion::arrow::row::{RowConverter, SortField};
        if self.converter.is_none() {
            let fields = rows
                .schema()
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect();
            self.converter = Some(RowConverter::new(fields)?);
        }
        let converter = self
            .converter
            .as_ref()
            .ok_or_else(|| EngineError::Internal("no row converter".into()))?;
        let encoded = converter.convert_columns(rows.columns())?;
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

/// FNV-1a, 64 bits: stable across runs and versions, unlike the standard library's hasher.
pub(crate) fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Where a query's output goes.
enum Emit {
    /// Rows to a sink, without their event time, with an `alert_id` if the sink asks.
    Sink(mpsc::Sender<SinkInput>, Option<AlertIds>),
    /// Rows, watermarks and the end to the queries reading a view.
    View(Fanout),
}

/// What a query task needs besides its query and channels.
struct QueryTask {
    index: usize,
    metrics: Arc<QueryMetrics>,
    max_state_rows: usize,
    key_idle_timeout: Option<crate::time::Millis>,
    checkpointing: Option<Checkpointing>,
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

async fn run_query(
    mut query: PlannedQuery,
    mut input: mpsc::Receiver<Tagged>,
    mut to: Emit,
    task: QueryTask,
) -> Result<()> {
    let mut out = Vec::new();
    let mut messages = 0u64;
    let mut align = Alignment::new(query.inputs.len());
    let mut idle_keys = IdleKeys::new(query.inputs.len(), task.key_idle_timeout);
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
        messages += 1;
        // Counting state walks the keys of some operators: every 16 messages is enough.
        if messages.is_multiple_of(16) {
            let held = query.pipeline.state_rows();
            if held > task.max_state_rows {
                let e = EngineError::Limit(format!(
                    "query {} holds {held} rows of state, more than the limit of {} (--max-state-rows): too many distinct keys or open windows; raise the limit, shorten the windows or filter the keys",
                    query.label, task.max_state_rows
                ));
                error!(query = %query.label, "{e}");
                return Err(e);
            }
        }
        if let Err(e) = query.pipeline.push(i, message, &mut out) {
            task.metrics
                .errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            error!(query = %query.label, "a batch failed and was skipped: {e}");
        }
        let mut end = false;
        for m in out.drain(..) {
            end |= matches!(m, Message::End);
            if !emit(&mut to, m).await? {
                return Err(EngineError::Internal(format!(
                    "query {}: what reads its rows has stopped",
                    query.label
                )));
            }
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
            sink.send(SinkInput::Rows(rows)).await.is_ok()
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
    tokio::spawn(async move {
        let written = match taken {
            Ok(()) => tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let bytes = state.encode()?;
                let encoded = started.elapsed();
                let written = store.write_query(id, index, &label_of_file, &bytes);
                tracing::debug!(
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

/// What a sink does with a write that fails: retry, then dead-letter.
#[derive(Default)]
struct FailedRows {
    retry: crate::plan::Retry,
    dead_letter: Option<Box<dyn Sink>>,
}

async fn run_sink(
    name: String,
    mut sink: Box<dyn Sink>,
    mut input: mpsc::Receiver<SinkInput>,
    metrics: Arc<SinkMetrics>,
    mut failed: FailedRows,
    barriers: Option<(usize, mpsc::UnboundedSender<Ack>)>,
) -> Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    // Barriers received per checkpoint, until every writer's is in.
    let mut arrived: std::collections::BTreeMap<u64, usize> = Default::default();
    while let Some(item) = input.recv().await {
        let batch = match item {
            SinkInput::Rows(b) => b,
            SinkInput::Barrier(id) => {
                let Some((writers, acks)) = &barriers else {
                    continue;
                };
                let n = arrived.entry(id).or_default();
                *n += 1;
                if *n < *writers {
                    continue;
                }
                arrived.remove(&id);
                // Older checkpoints whose barriers never all came are abandoned.
                arrived.retain(|&other, _| other > id);
                let ack = match sink.flush().await {
                    Ok(()) => Ack::Sink { id },
                    Err(e) => Ack::Failed {
                        id,
                        reason: format!("sink {name}: flush failed: {e}"),
                    },
                };
                let _ = acks.send(ack);
                continue;
            }
        };
        let rows = batch.num_rows() as u64;
        // While a write is retried the channel fills up, and the queries and sources wait.
        match write_with_retries(&name, sink.as_mut(), &batch, failed.retry).await {
            Ok(()) => {
                metrics.rows.fetch_add(rows, Relaxed);
            }
            Err(e) => {
                metrics.errors.fetch_add(1, Relaxed);
                match &mut failed.dead_letter {
                    Some(dl) => {
                        let letters = sink_dead_letters(&name, &batch, &e.message)?;
                        if let Err(e2) = dl.write(letters).await.and(dl.flush().await) {
                            error!(sink = %name, "{rows} rows lost: {e}; and the dead-letter file failed too: {e2}");
                        } else {
                            error!(sink = %name, "{rows} rows to the dead letters: {e}");
                        }
                    }
                    None => error!(sink = %name, "{rows} rows not written: {e}"),
                }
            }
        }
        if input.is_empty()
            && let Err(e) = sink.flush().await
        {
            metrics.errors.fetch_add(1, Relaxed);
            error!(sink = %name, "flush failed: {e}");
        }
    }
    sink.flush().await.map_err(|e| {
        EngineError::Connector(ConnectorError {
            message: format!("sink {name}: {}", e.message),
            retryable: e.retryable,
        })
    })
}
