//! Writing what a broker sends into the ingest log and acknowledging it once synced, for any
//! broker: the source's connection queues each message as an [`Entry`] (or, for a redelivery of
//! a message already logged, only its acknowledgement), and [`write_log`] appends what is queued,
//! syncs it in one group, publishes the offset synced for the source to read up to, then hands
//! the group's acknowledgements to the broker's [`Acknowledge`]. It waits, if need be, only for
//! the broker's client to take the acknowledgements, never for the source.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{LogAppender, LogError};
use crate::checkpoints::Covered;

/// A message to append.
#[derive(Debug)]
pub struct Entry<T> {
    /// What the record keeps as its id (the MQTT source: the packet id and the QoS).
    pub id: u32,
    /// When it arrived, in milliseconds since the epoch.
    pub received: i64,
    /// Where it was published: a topic, a routing key.
    pub origin: Bytes,
    pub payload: Bytes,
    /// What acknowledges it once it is synced; `None` when nothing need be acknowledged.
    pub ack: Option<T>,
}

/// What a source's connection queues for the log writer.
#[derive(Debug)]
pub enum ToLog<T> {
    Append(Entry<T>),
    /// A redelivery of a message already in the log: acknowledged after the next sync (the
    /// original may be in the group being written), not appended again.
    AckOnly(T),
}

/// How a broker is told that messages are safe: the acknowledgements of one synced group, in the
/// order the messages came.
pub trait Acknowledge: Send + 'static {
    type Token: Send + 'static;

    /// `Err` when the connection they belong to is gone: the broker sends the messages again.
    fn acknowledge(
        &mut self,
        tokens: Vec<Self::Token>,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// How much of the log no completed checkpoint covers yet, against the most it may hold
/// (`max_log_bytes`): past it, acknowledgements wait, and the broker stops sending once its
/// in-flight window is full.
pub struct Backlog {
    /// The offset the newest completed checkpoint covers the log up to.
    checkpointed: AtomicU64,
    limit: u64,
    /// Wakes the writer when a checkpoint moves `checkpointed`.
    moved: Notify,
}

impl Backlog {
    pub fn new(checkpointed: u64, limit: u64) -> Self {
        Self {
            checkpointed: AtomicU64::new(checkpointed),
            limit,
            moved: Notify::new(),
        }
    }

    pub fn checkpointed(&self, offset: u64) {
        self.checkpointed.store(offset, Ordering::Relaxed);
        self.moved.notify_one();
    }

    fn full(&self, end: u64) -> bool {
        end.saturating_sub(self.checkpointed.load(Ordering::Relaxed)) > self.limit
    }
}

/// Appends what is queued, in groups synced at once; publishes the synced offset on `synced`;
/// acknowledges each group. Returns when the queue closes or `stop` is cancelled (after
/// acknowledging every group synced), or with the error that stopped it (a message not synced is
/// not acknowledged: the broker keeps it).
pub async fn write_log<A: Acknowledge>(
    mut appender: LogAppender,
    mut queue: mpsc::UnboundedReceiver<ToLog<A::Token>>,
    mut acknowledger: A,
    synced: watch::Sender<u64>,
    backlog: Arc<Backlog>,
    stop: CancellationToken,
) -> Result<(), LogError> {
    let mut group = Vec::new();
    let mut acks: Vec<A::Token> = Vec::new();
    let mut held_back = false;
    loop {
        if group.is_empty() {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                n = queue.recv_many(&mut group, 4096) => if n == 0 { return Ok(()) },
            }
        }
        // Whatever else has arrived meanwhile joins the group.
        while let Ok(more) = queue.try_recv() {
            group.push(more);
        }
        let batch = std::mem::take(&mut group);
        tracing::trace!("ingest log: a group of {} messages", batch.len());
        let (back, result) = tokio::task::spawn_blocking(move || {
            let mut tokens = Vec::with_capacity(batch.len());
            for m in batch {
                match m {
                    ToLog::Append(e) => {
                        appender.push(e.id, e.received, &e.origin, &e.payload);
                        tokens.extend(e.ack);
                    }
                    ToLog::AckOnly(token) => tokens.push(token),
                }
            }
            let result = appender.commit().map(|end| (end, tokens));
            (appender, result)
        })
        .await
        .map_err(|e| LogError::Io {
            what: "the ingest log's writer failed",
            path: Default::default(),
            source: std::io::Error::other(e.to_string()),
        })?;
        appender = back;
        let (end, tokens) = result?;
        synced.send_replace(end);
        acks.extend(tokens);
        // Past the limit, the acknowledgements wait for a checkpoint to cover more of the log.
        while backlog.full(end) {
            if !held_back {
                warn!(
                    "the ingest log holds more than max_log_bytes that no checkpoint covers: messages are no longer acknowledged, so the broker holds the rest"
                );
                held_back = true;
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = backlog.moved.notified() => {}
                closed = queue.recv_many(&mut group, 4096) => if closed == 0 { return Ok(()) },
            }
            // Messages that arrive meanwhile are kept for the next group.
        }
        if held_back {
            debug!("checkpoints caught up with the ingest log: acknowledging again");
            held_back = false;
        }
        if acks.is_empty() {
            continue;
        }
        if let Err(e) = acknowledger.acknowledge(std::mem::take(&mut acks)).await {
            // The connection has stopped: the broker sends the messages again.
            debug!("cannot acknowledge: {e}");
            return Ok(());
        }
    }
}

/// Which checkpoint covers the log up to which offset, so that the segments behind a completed
/// checkpoint can go, and the backlog shrinks.
pub struct Truncation {
    dir: PathBuf,
    pub covered: Covered<u64>,
    backlog: Arc<Backlog>,
}

impl Truncation {
    pub fn new(dir: PathBuf, covered: Covered<u64>, backlog: Arc<Backlog>) -> Self {
        Self {
            dir,
            covered,
            backlog,
        }
    }

    /// Checkpoint `done` has completed: the log up to what it covers is no longer needed.
    pub fn completed(&mut self, done: u64) -> Result<(), LogError> {
        if let Some(offset) = self.covered.completed(done) {
            self.backlog.checkpointed(offset);
            super::remove_before(&self.dir, offset)?;
        }
        Ok(())
    }
}
