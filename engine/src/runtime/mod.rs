//! The runtime: one task per source, per query and per sink, wired with bounded channels so a
//! slow sink slows its source down instead of filling memory.
//!
//! - this module: starting a plan (resuming from a checkpoint), the source tasks, table loaders,
//!   idle clocks and barrier injection;
//! - `query`: a query's task; `sink`: a sink's task; `barriers`: the checkpoint coordinator;
//! - `source_context`: what a source hands its rows to; `fanout`, `message`, `metrics`.

mod barriers;
mod fanout;
mod message;
mod metrics;
mod query;
mod sink;
mod source_context;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

pub use barriers::{CheckpointConfig, CheckpointMetrics};
pub use fanout::{Fanout, Subscriber, Tagged};
pub use message::{Message, SinkInput};
pub use metrics::{EngineMetrics, QueryMetrics, SinkMetrics, SourceMetrics, Totals, show_bytes};
pub(crate) use source_context::now_millis;
pub use source_context::{DEAD_LETTER_SCHEMA, EventTime, SourceContext};

use crate::checkpoint::{CheckpointStore, SourceCheckpoint};
use crate::connector::ConnectorError;
use crate::error::{EngineError, Result};
use crate::plan::{Input, Output, Plan};
use barriers::{Ack, Checkpointing, Coordinator, Expected};
use query::{AlertIds, Emit, QueryTask, run_query};
use sink::{FailedRows, run_sink};

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
    // The plan's fingerprint, which checkpoints must match, only when there are checkpoints.
    let fingerprint = checkpoints.as_ref().map(|_| plan.fingerprint());
    let Plan {
        sources,
        sinks,
        tables,
        mut queries,
        limits,
    } = plan;
    let mut tasks = JoinSet::new();

    let store = match &checkpoints {
        Some(c) => Some(Arc::new(CheckpointStore::open(&c.dir)?)),
        None => None,
    };
    let resumed_sources = match (&store, &fingerprint) {
        (Some(store), Some(fingerprint)) => resume(store, fingerprint, &mut queries, &sources)?,
        _ => vec![None; sources.len()],
    };
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
    // Sinks with writers, and the dead-letter sinks of the sources that run.
    let dead_letter_sinks = sources
        .iter()
        .zip(&started)
        .filter(|(s, started)| **started && s.dead_letter.is_some())
        .count();
    let expected = Expected {
        sources: started.iter().filter(|&&s| s).count(),
        queries: live.iter().filter(|&&l| l).count(),
        sinks: writers.iter().filter(|&&w| w > 0).count() + dead_letter_sinks,
    };

    // Sinks first: queries need their senders.
    let mut sink_senders = Vec::new();
    let mut sink_metrics = Vec::new();
    let alert_ids: Vec<bool> = sinks.iter().map(|s| s.alert_id).collect();
    for (s, w) in sinks.into_iter().zip(&writers) {
        let (tx, rx) = mpsc::channel::<SinkInput>(SINK_CHANNEL);
        let m = Arc::new(SinkMetrics::new(&s.name));
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
            peak_state_bytes: Default::default(),
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
            limits,
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
            let dm = Arc::new(SinkMetrics::new(&format!("{} dead letters", s.name)));
            let barriers = checkpointing.as_ref().map(|c| (1, c.acks.clone()));
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
        if let (Some(c), Some(config)) = (&checkpointing, &checkpoints) {
            ctx = ctx
                .with_checkpoints(c.completed.clone(), Arc::clone(&c.wanted))
                .with_durable_dir(source_dir(&config.dir, &s.name));
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
                    if ctx.unread().await {
                        return Err(EngineError::Stopped(format!(
                            "source {name}: {}",
                            e.message
                        )));
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
                plan: fingerprint.unwrap_or_default(),
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

/// Resumes from the newest checkpoint in `store`, if there is one: every query's state restored,
/// read whole and checked before anything runs; what each source records, by source index.
fn resume(
    store: &CheckpointStore,
    fingerprint: &str,
    queries: &mut [crate::plan::PlannedQuery],
    sources: &[crate::plan::PlannedSource],
) -> Result<Vec<Option<SourceCheckpoint>>> {
    let mut resumed = vec![None; sources.len()];
    let restoring = Instant::now();
    let Some(loaded) = store.load_latest(fingerprint)? else {
        return Ok(resumed);
    };
    let id = loaded.manifest.id;
    for (index, mut state) in loaded.queries {
        let query = queries.get_mut(index).ok_or_else(|| {
            EngineError::Checkpoint(format!(
                "checkpoint {id} has state of a query {index} the file does not have"
            ))
        })?;
        // State that passed the checksum but does not fit the operators (it should not happen)
        // is an error, not a crash.
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
            resumed[i] = Some(state);
        }
    }
    info!(
        "resumed from checkpoint {id} ({}): {} bytes of state read and restored in {} ms",
        store.dir().display(),
        loaded.bytes,
        restoring.elapsed().as_millis()
    );
    Ok(resumed)
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
        let mut errors = FirstError::default();
        while let Some(joined) = self.tasks.join_next().await {
            let result = joined.map_err(|e| EngineError::Internal(format!("a task failed: {e}")));
            if let Err(e) = result.and_then(|r| r) {
                errors.add(e);
            }
        }
        if let Some((coordinator, done)) = self.coordinator {
            done.cancel();
            let result = coordinator
                .await
                .map_err(|e| EngineError::Internal(format!("the checkpoints failed: {e}")));
            if let Err(e) = result.and_then(|r| r) {
                errors.add(e);
            }
        }
        errors.0.map_or(Ok(()), Err)
    }
}

/// The error a stopped engine reports: the first that says why, before any that only says a part
/// stopped because what it feeds had stopped ([`EngineError::Stopped`]).
#[derive(Default)]
struct FirstError(Option<EngineError>);

impl FirstError {
    fn add(&mut self, e: EngineError) {
        let replace = match &self.0 {
            None => true,
            Some(EngineError::Stopped(_)) => !matches!(e, EngineError::Stopped(_)),
            Some(_) => false,
        };
        if replace {
            self.0 = Some(e);
        }
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

/// The directory of a source's own files under the state directory: `DIR/sources/<name>`, the
/// name kept to letters, digits, `-` and `_`.
fn source_dir(state: &std::path::Path, name: &str) -> std::path::PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    state.join("sources").join(safe)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_that_says_why_is_reported_before_the_ones_it_caused() {
        let mut errors = FirstError::default();
        errors.add(EngineError::Stopped(
            "source readings: no query reads it".into(),
        ));
        errors.add(EngineError::Limit("query q.sql:5 holds too much".into()));
        errors.add(EngineError::Internal("later".into()));
        assert!(matches!(errors.0, Some(EngineError::Limit(_))));

        let mut only_stopped = FirstError::default();
        only_stopped.add(EngineError::Stopped("first".into()));
        only_stopped.add(EngineError::Stopped("second".into()));
        assert_eq!(only_stopped.0.map(|e| e.to_string()), Some("first".into()));
    }
}
