//! The source's side of an ingest log, for any broker: the log opened where the restored
//! checkpoint left it, its writer started, and the loop that reads back what the writer has
//! synced and hands it on, while checkpoints complete (the log behind them removed) and the
//! connection reports its changes of state. A checkpoint records the offset in the log of the
//! first message not yet handed on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eddy_engine::{ConnectorError, SourceContext};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::intake::{self, Acknowledge, Backlog, ToLog, Truncation};
use super::{LogError, LogReader, Record};
use crate::checkpoints::Covered;
use crate::messages::{Message, MessageRows};
use crate::tasks::join_within;

/// The longest a stopping source waits for the writer to acknowledge what it has synced: a
/// broker that does not answer does not hold the engine's shutdown.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// Where a source reading through its ingest log is: what a checkpoint records.
#[derive(Debug, Serialize, Deserialize)]
struct LogPosition {
    /// The offset in the ingest log of the first message not yet handed on.
    log: u64,
}

/// A source that reads its messages back from its ingest log.
pub trait ReadsBack {
    /// What its connection reports.
    type Status;

    /// How its messages become rows.
    fn rows(&mut self) -> &mut MessageRows;

    /// Logs a change of the connection's state; an error stops the source.
    fn on_status(
        &mut self,
        status: Self::Status,
        ctx: &SourceContext,
    ) -> Result<(), ConnectorError>;
}

/// The ingest log in `dir`, opened for a source of `kind` (`MQTT`, `AMQP`, named in errors):
/// `recent` sees the newest records (to recognize messages the broker sends again).
pub struct OpenLog {
    dir: PathBuf,
    opened: super::OpenedLog,
    reader: LogReader,
    from: u64,
}

impl OpenLog {
    /// Opens the log and a reader at the offset the restored checkpoint recorded (the log's
    /// beginning without one).
    pub fn open(
        dir: PathBuf,
        kind: &str,
        ctx: &SourceContext,
        recent: impl FnMut(Record<'_>),
    ) -> Result<Self, ConnectorError> {
        let opened = super::open(&dir, recent).map_err(log_error)?;
        let from = match ctx.resume_from() {
            Some(p) => {
                serde_json::from_value::<LogPosition>(p.clone())
                    .map_err(|_| {
                        ConnectorError::fatal(format!(
                            "the checkpoint's position {p} is not a position in an {kind} source's ingest log"
                        ))
                    })?
                    .log
            }
            None => opened.first,
        };
        if from > opened.end {
            return Err(log_error(LogError::NotKept {
                dir,
                offset: from,
                first: opened.first,
                end: opened.end,
            }));
        }
        let reader = LogReader::open(&dir, from).map_err(log_error)?;
        if opened.end > from {
            info!(source = %ctx.name(), "{} bytes of the ingest log not yet in a checkpoint: read again", opened.end - from);
        }
        Ok(Self {
            dir,
            opened,
            reader,
            from,
        })
    }

    /// Starts the writer, which appends what `queue` brings, syncs it and acknowledges it with
    /// `acks`; past `max_log_bytes` that no completed checkpoint covers it stops acknowledging.
    pub fn start<A: Acknowledge>(
        self,
        queue: mpsc::UnboundedReceiver<ToLog<A::Token>>,
        acks: A,
        max_log_bytes: u64,
        ctx: &SourceContext,
    ) -> LogRun {
        let (synced_tx, synced) = watch::channel(self.opened.end);
        let backlog = Arc::new(Backlog::new(self.from, max_log_bytes));
        let writer_stop = CancellationToken::new();
        let writer = tokio::spawn(intake::write_log(
            self.opened.appender,
            queue,
            acks,
            synced_tx,
            Arc::clone(&backlog),
            writer_stop.clone(),
        ));
        LogRun {
            reader: self.reader,
            synced,
            writer,
            writer_stop,
            truncation: Truncation::new(self.dir, Covered::new(ctx), backlog),
        }
    }
}

/// An ingest log being written and read back.
pub struct LogRun {
    reader: LogReader,
    synced: watch::Receiver<u64>,
    writer: JoinHandle<Result<(), LogError>>,
    writer_stop: CancellationToken,
    truncation: Truncation,
}

impl LogRun {
    /// Hands on what the writer has synced, in batches of at most `batch_size` messages, until
    /// the engine shuts down; every `linger` the source flushes (so that a checkpoint barrier
    /// passes when nothing arrives).
    pub async fn read_back<S: ReadsBack>(
        &mut self,
        source: &mut S,
        status: &mut mpsc::UnboundedReceiver<S::Status>,
        batch_size: usize,
        linger: Duration,
        ctx: &mut SourceContext,
    ) -> Result<(), ConnectorError> {
        let mut flush = tokio::time::interval(linger);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = ctx.shutdown().clone();
        loop {
            // Everything synced is handed on before waiting again.
            loop {
                let upto = *self.synced.borrow_and_update();
                if self.reader.position() >= upto || shutdown.is_cancelled() {
                    break;
                }
                let records = self.reader.read(upto, batch_size).map_err(log_error)?;
                let position = serde_json::to_value(LogPosition { log: records.end })
                    .map_err(|e| ConnectorError::fatal(e.to_string()))?;
                let messages: Vec<Message> = records.iter().map(Message::from).collect();
                source
                    .rows()
                    .hand_on(&messages, Some(position), ctx)
                    .await?;
                self.truncation
                    .covered
                    .handed_on(ctx.last_barrier().await + 1, records.end);
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                Some(s) = status.recv() => source.on_status(s, ctx)?,
                done = self.truncation.covered.next_completed() => {
                    self.truncation.completed(done).map_err(log_error)?;
                }
                changed = self.synced.changed() => {
                    if changed.is_err() {
                        // The writer stopped: it says why.
                        return match (&mut self.writer).await {
                            Ok(Err(e)) => Err(log_error(e)),
                            _ => Err(ConnectorError::fatal("the ingest log's writer stopped")),
                        };
                    }
                }
                _ = flush.tick() => ctx.flush().await?,
            }
        }
    }

    /// Stops the writer once it has acknowledged what it synced. Messages synced but not handed
    /// on stay in the log (the next run reads them again); what arrived but is not synced is the
    /// broker's to send again.
    pub async fn stop(mut self) {
        self.writer_stop.cancel();
        join_within(&mut self.writer, STOP_WAIT).await;
    }
}

pub fn log_error(e: LogError) -> ConnectorError {
    ConnectorError::fatal(e.to_string())
}

/// The directory of a source's ingest log under its durable directory.
pub fn ingest_log_dir(durable: &Path) -> PathBuf {
    durable.join("ingest-log")
}
