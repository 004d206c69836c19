//! The runtime: one task per source, per query and per sink, wired with bounded channels so a
//! slow sink slows its source down instead of filling memory.
//!
//! - this module: [`start`]: resuming from a checkpoint, wiring the channels, spawning the tasks;
//! - `topology`: which parts of a plan run and who writes to each sink (no tokio in it);
//! - `engine`: the [`RunningEngine`] handle and the task that supervises the others;
//! - `source_task`: a source's tasks; `tables`: loading reference tables;
//! - `query`: a query's task; `sink`: a sink's task; `barriers`: the checkpoint coordinator.

mod barriers;
mod engine;
mod query;
mod sink;
mod source_task;
mod tables;
mod topology;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use barriers::CheckpointConfig;
pub use engine::{EngineStatus, RunningEngine, Written};

use crate::checkpoint::{CheckpointStore, SourceCheckpoint};
use crate::error::{EngineError, Result};
use crate::fanout::{Fanout, Subscriber};
use crate::message::SinkInput;
use crate::metrics::{CheckpointMetrics, EngineMetrics, QueryMetrics, SinkMetrics, SourceMetrics};
use crate::plan::{Input, Output, Plan};
use barriers::{Checkpointing, Coordinator};
use engine::{Supervised, supervise};
use query::{AlertIds, Emit, QueryTask, run_query};
use sink::{FailedRows, run_sink};
use source_task::{SourceWiring, spawn_source};
use tables::{TablesLoading, load_table};
use topology::{QueryShape, SourceShape, topology};

/// Batches or watermarks in flight between a source and each query reading it.
const SOURCE_CHANNEL: usize = 16;
/// Result batches in flight between the queries and a sink.
const SINK_CHANNEL: usize = 64;
/// Batches written that a watcher of [`RunningEngine::written`] may fall behind by before it
/// skips some (it never holds a sink back).
const WRITTEN_CHANNEL: usize = 256;

/// Starts every source, query and sink of `plan`, under a token of its own that is a child of
/// `shutdown`: cancelling `shutdown` (or [`RunningEngine::stop`]) stops the sources; the queries
/// and sinks then drain and stop (open windows do not fire: they are incomplete). With
/// `checkpoints`, the engine first resumes from the newest checkpoint in the state directory, if
/// there is one, and takes a checkpoint every interval and a last one when it is stopped.
pub fn start(
    plan: Plan,
    shutdown: &CancellationToken,
    checkpoints: Option<CheckpointConfig>,
) -> Result<RunningEngine> {
    let token = shutdown.child_token();
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
        completed: completed.clone(),
        acks: acks_tx,
        wanted: Arc::clone(&wanted),
    });

    let shape = topology(
        &queries
            .iter()
            .map(|q| QueryShape {
                inputs: &q.inputs,
                output: &q.output,
            })
            .collect::<Vec<_>>(),
        &sources
            .iter()
            .map(|s| SourceShape {
                late_sink: s.late_sink,
                dead_letter: s.dead_letter.is_some(),
            })
            .collect::<Vec<_>>(),
        sinks.len(),
    );

    // Reference tables load before any source starts, so no row misses its lookup.
    let (loading_tx, loading) = watch::channel(TablesLoading {
        left: tables.len(),
        failed: false,
    });
    let loading_tx = Arc::new(loading_tx);
    for t in tables {
        tasks.spawn(load_table(t, Arc::clone(&loading_tx), token.clone()));
    }
    drop(loading_tx);

    let arrivals = Arc::new(crate::metrics::WatermarkArrivals::default());
    // Sinks first: queries need their senders.
    let mut sink_senders = Vec::new();
    let mut sink_metrics = Vec::new();
    let (written, _) = tokio::sync::broadcast::channel(WRITTEN_CHANNEL);
    let alert_ids: Vec<bool> = sinks.iter().map(|s| s.alert_id).collect();
    for (s, w) in sinks.into_iter().zip(&shape.writers) {
        let (tx, rx) = mpsc::channel::<SinkInput>(SINK_CHANNEL);
        let m = Arc::new(SinkMetrics {
            suppressed: Arc::clone(&s.suppressed),
            ..SinkMetrics::new(&s.name)
        });
        sink_senders.push(tx);
        sink_metrics.push(Arc::clone(&m));
        let failed = FailedRows {
            retry: s.retry,
            dead_letter: s.dead_letter,
        };
        let barriers = checkpointing.as_ref().map(|c| (*w, c.acks.clone()));
        tasks.spawn(run_sink(
            s.name,
            s.sink,
            rx,
            m,
            failed,
            barriers,
            written.clone(),
        ));
    }

    // Channels: each live query has one, and every stream it reads sends to it.
    let mut source_outputs = vec![Fanout::default(); sources.len()];
    let mut view_outputs = vec![Fanout::default(); queries.len()];
    let mut receivers = Vec::new();
    for (q, query) in queries.iter().enumerate() {
        if !shape.live[q] {
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
            alert_latency: match q.output {
                Output::Sink(k) => Some((
                    Arc::clone(&arrivals),
                    Arc::clone(&sink_metrics[k].alert_latency),
                )),
                Output::View(_) => None,
            },
        };
        tasks.spawn(run_query(q, rx, to, task));
    }

    let mut source_metrics = Vec::new();
    let source_names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    let wiring = SourceWiring {
        checkpointing: checkpointing.as_ref(),
        checkpoints: checkpoints.as_ref(),
        sinks: &sink_senders,
        tables: &loading,
        shutdown: &token,
        arrivals: &arrivals,
    };
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
        spawn_source(&mut tasks, index, s, outputs, resumed, m, &wiring);
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
                expected: shape.expected,
                requests: requests_tx,
                completed: completed_tx,
                acks: acks_rx,
                wanted: Arc::clone(&wanted),
                metrics: Arc::clone(&checkpoint_metrics),
                shutdown: token.clone(),
                done: done.clone(),
            };
            Some((tokio::spawn(c.run()), done))
        }
        _ => None,
    };

    let (status_tx, status) = watch::channel(engine::EngineStatus::Starting);
    // Running once the reference tables are loaded and the sources read.
    let mut tables_loaded = loading;
    let running = status_tx.clone();
    tasks.spawn(async move {
        let loaded = tables_loaded.wait_for(|t| t.done() || t.failed).await;
        if loaded.is_ok_and(|t| !t.failed) {
            running.send_if_modified(|s| {
                let starting = *s == engine::EngineStatus::Starting;
                if starting {
                    *s = engine::EngineStatus::Running;
                }
                starting
            });
        }
        Ok(())
    });
    let abort = CancellationToken::new();
    let supervisor = tokio::spawn(supervise(Supervised {
        tasks,
        coordinator,
        abort: abort.clone(),
        status: status_tx,
    }));

    Ok(RunningEngine {
        metrics: Arc::new(EngineMetrics {
            started: Instant::now(),
            sources: source_metrics,
            sinks: sink_metrics,
            queries: query_metrics,
            checkpoints: checkpoint_metrics,
        }),
        token,
        abort,
        status,
        completed,
        wanted: checkpointing.is_some().then_some(wanted),
        supervisor,
        written,
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
        // Every operator checks what it reads: state that passed the checksum but does not fit
        // (it should not happen) is an error naming the part, never a crash.
        let restored = query.pipeline.restore(&mut state);
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
