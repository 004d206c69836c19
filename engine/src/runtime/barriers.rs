//! Taking checkpoints while the engine runs.
//!
//! Every `interval` the coordinator asks each source for barrier `n`. A source sends the barrier
//! downstream between two batches, under the lock its batches go out under, and reports its
//! position and watermark with it. A query that has the barrier on all of its inputs (holding
//! back what arrives behind it on the inputs that are ahead) writes its operators' state and
//! passes the barrier on; a sink that has it from all of its writers flushes. When every source,
//! query and sink has answered, the coordinator writes the manifest and the checkpoint is
//! complete: everything before the barriers is in it or delivered.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::checkpoint::{
    CheckpointStore, EDDY_VERSION, Manifest, QueryCheckpoint, STATE_FORMAT, SourceCheckpoint,
};
use crate::error::Result;
use crate::metrics::CheckpointMetrics;

/// Where and how often checkpoints are taken.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// The state directory.
    pub dir: PathBuf,
    pub interval: Duration,
}

/// A checkpoint asked of the sources: its id, and whether it is the last one before the engine
/// stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Request {
    pub id: u64,
    pub last: bool,
}

/// What the parts of a checkpoint report to the coordinator.
#[derive(Debug)]
pub enum Ack {
    Source {
        index: usize,
        id: u64,
        state: SourceCheckpoint,
    },
    Query {
        id: u64,
        state: QueryCheckpoint,
    },
    Sink {
        id: u64,
    },
    /// A part could not take its share of checkpoint `id`.
    Failed {
        id: u64,
        reason: String,
    },
    /// A source's input ended: its queries end too, so no later checkpoint can complete.
    SourceEnded {
        name: String,
    },
}

/// What the tasks of a running engine share to take part in checkpoints.
#[derive(Clone)]
pub struct Checkpointing {
    pub store: Arc<CheckpointStore>,
    pub requests: watch::Receiver<Request>,
    /// Completed checkpoint ids: sources that acknowledge their input (MQTT) wait for them.
    pub completed: watch::Receiver<u64>,
    pub acks: mpsc::UnboundedSender<Ack>,
    /// Sources ask for a checkpoint before the interval is up (MQTT: too many messages wait for
    /// their acknowledgement).
    pub wanted: Arc<tokio::sync::Notify>,
}

/// How many answers a checkpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub sources: usize,
    pub queries: usize,
    pub sinks: usize,
}

/// How long the parts of a checkpoint have to answer before it is abandoned.
fn answer_timeout(interval: Duration) -> Duration {
    (interval * 6).max(Duration::from_secs(60))
}

pub struct Coordinator {
    pub config: CheckpointConfig,
    pub store: Arc<CheckpointStore>,
    pub plan: String,
    pub source_names: Vec<String>,
    pub expected: Expected,
    pub requests: watch::Sender<Request>,
    pub completed: watch::Sender<u64>,
    pub acks: mpsc::UnboundedReceiver<Ack>,
    pub wanted: Arc<tokio::sync::Notify>,
    pub metrics: Arc<CheckpointMetrics>,
    /// Cancelled when the engine is asked to stop: one last checkpoint is taken.
    pub shutdown: CancellationToken,
    /// Cancelled when every task but the coordinator has stopped.
    pub done: CancellationToken,
}

impl Coordinator {
    /// Takes a checkpoint every interval until a source ends or the engine stops (after one last
    /// checkpoint).
    pub async fn run(mut self) -> Result<()> {
        let mut next = self.store.next_id()?;
        let mut ended = false;
        let wanted = Arc::clone(&self.wanted);
        loop {
            let last = tokio::select! {
                _ = tokio::time::sleep(self.config.interval) => false,
                _ = wanted.notified() => false,
                _ = self.shutdown.cancelled() => true,
                _ = self.done.cancelled() => return Ok(()),
                ack = self.acks.recv() => {
                    if let Some(Ack::SourceEnded { name }) = ack {
                        self.source_ended(&name, &mut ended);
                    }
                    continue;
                }
            };
            if ended {
                if last {
                    return Ok(());
                }
                continue;
            }
            let id = next;
            next += 1;
            let outcome = self.take(id, last).await;
            match outcome {
                Ok(Some(ended_source)) => {
                    self.store.abandon(id);
                    self.source_ended(&ended_source, &mut ended);
                }
                Ok(None) => {}
                Err(reason) => {
                    self.store.abandon(id);
                    self.metrics.failed.fetch_add(1, Ordering::Relaxed);
                    warn!("checkpoint {id} abandoned: {reason}");
                }
            }
            if last {
                return Ok(());
            }
        }
    }

    fn source_ended(&self, name: &str, ended: &mut bool) {
        if !*ended {
            info!(source = %name, "input ended: no more checkpoints (the last one stays)");
        }
        *ended = true;
    }

    /// Takes checkpoint `id`. `Ok(Some(source))` when a source ended meanwhile.
    async fn take(&mut self, id: u64, last: bool) -> std::result::Result<Option<String>, String> {
        let started = Instant::now();
        self.store.begin(id).map_err(|e| e.to_string())?;
        if self.requests.send(Request { id, last }).is_err() {
            return Err("no source is running".into());
        }
        let Expected {
            sources,
            queries,
            sinks,
        } = self.expected;
        let mut source_states: BTreeMap<usize, SourceCheckpoint> = BTreeMap::new();
        let mut query_files: BTreeMap<usize, QueryCheckpoint> = BTreeMap::new();
        let mut sinks_done = 0;
        let deadline = tokio::time::sleep(answer_timeout(self.config.interval));
        tokio::pin!(deadline);
        while source_states.len() < sources || query_files.len() < queries || sinks_done < sinks {
            let ack = tokio::select! {
                ack = self.acks.recv() => ack,
                _ = &mut deadline => {
                    return Err(format!(
                        "not every part answered within {:?} ({} of {sources} sources, {} of {queries} queries, {sinks_done} of {sinks} sinks)",
                        answer_timeout(self.config.interval),
                        source_states.len(),
                        query_files.len()
                    ));
                }
                _ = self.done.cancelled(), if !last => return Err("the engine stopped".into()),
            };
            match ack {
                None => return Err("the engine stopped".into()),
                Some(Ack::Source {
                    index,
                    id: a,
                    state,
                }) if a == id => {
                    source_states.insert(index, state);
                }
                Some(Ack::Query { id: a, state }) if a == id => {
                    query_files.insert(state.index, state);
                }
                Some(Ack::Sink { id: a }) if a == id => sinks_done += 1,
                Some(Ack::Failed { id: a, reason }) if a == id => return Err(reason),
                Some(Ack::SourceEnded { name }) => return Ok(Some(name)),
                Some(_) => {} // an answer to an abandoned checkpoint
            }
        }
        let manifest = Manifest {
            format: STATE_FORMAT,
            eddy: EDDY_VERSION.into(),
            id,
            plan: self.plan.clone(),
            taken_at: crate::time::now_millis(),
            sources: self
                .source_names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    source_states
                        .remove(&i)
                        .unwrap_or_else(|| SourceCheckpoint {
                            name: name.clone(),
                            position: None,
                            max_seen: None,
                            watermark: None,
                        })
                })
                .collect(),
            queries: query_files.into_values().collect(),
        };
        let pending = self.store.pending_dir(id);
        let bytes = dir_bytes(&pending);
        let dir = self.store.commit(&manifest).map_err(|e| e.to_string())?;
        let _ = self.completed.send(id);
        let took = started.elapsed();
        let m = &self.metrics;
        m.completed.fetch_add(1, Ordering::Relaxed);
        m.last_millis
            .store(took.as_millis() as u64, Ordering::Relaxed);
        m.last_bytes.store(bytes, Ordering::Relaxed);
        info!(
            "checkpoint {id} complete{}: {} in {} ms ({})",
            if last {
                " (the last before stopping)"
            } else {
                ""
            },
            crate::metrics::show_bytes(bytes),
            took.as_millis(),
            dir.display()
        );
        Ok(None)
    }
}

/// Bytes of the files in a directory.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
