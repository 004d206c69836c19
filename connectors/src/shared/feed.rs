//! A source's connection feeding a [`Hub`], for any broker whose messages go through an ingest
//! log: what arrives is written to the hub's log and acknowledged once synced there, what is
//! synced is decoded once, in batches, and published to the hub, and the log behind what every
//! reader's checkpoints cover is removed as they complete. Each broker's source says how it opens
//! the log, connects, acknowledges and reports its state ([`Feeds`]).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use eddy_engine::{ConnectorError, Source};
use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::hub::{Decoded, Hub, Rejected};
use crate::ingest_log::intake::{self, Acknowledge, Backlog, ToLog};
use crate::ingest_log::read_back::log_error;
use crate::ingest_log::{self as log, LogError, LogReader, OpenedLog};
use crate::messages::{Message, MessageRows};
use crate::tasks::join_within;

/// The longest a stopping hub waits for the writer to acknowledge what it has synced.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// A connection, as [`Feeds::connect`] opens it.
pub struct Connected<A, S> {
    /// What acknowledges synced messages to the broker.
    pub acks: A,
    /// The connection's changes of state.
    pub status: mpsc::UnboundedReceiver<S>,
    /// Closes the connection (after the writer's last acknowledgements went out).
    pub close: BoxFuture<'static, ()>,
}

/// The token that acknowledges a message of source `F`.
pub type TokenOf<F> = <<F as Feeds>::Acks as Acknowledge>::Token;

/// A source whose connection can feed a hub.
pub trait Feeds: Send + Sized + 'static {
    /// What the connection reports.
    type Status: Send + 'static;
    type Acks: Acknowledge;
    /// What the records already in the log tell the connection (to recognize messages the broker
    /// sends again).
    type Seen: Send + 'static;

    /// Opens the ingest log in `dir`, noting the records it keeps.
    fn open_log(&mut self, dir: &Path) -> Result<(OpenedLog, Self::Seen), ConnectorError>;

    /// Connects; what arrives is queued on `to_log`.
    fn connect(
        &mut self,
        seen: Self::Seen,
        to_log: mpsc::UnboundedSender<ToLog<TokenOf<Self>>>,
    ) -> Result<Connected<Self::Acks, Self::Status>, ConnectorError>;

    /// Logs a change of the connection's state for source `name`, counting reconnects on
    /// `reconnects`; an error fails the hub.
    fn on_status(
        &mut self,
        status: Self::Status,
        name: &str,
        reconnects: &AtomicU64,
    ) -> Result<(), ConnectorError>;

    /// How its messages become rows.
    fn rows(&mut self) -> &mut MessageRows;

    /// Messages per batch at most.
    fn batch_size(&self) -> usize;

    /// How long a partly filled batch waits.
    fn linger(&self) -> Duration;

    /// The most the log may hold beyond what every reader's checkpoints cover.
    fn max_log_bytes(&self) -> u64;
}

/// A hub, and the task that feeds it (ends once its connection has closed).
pub type Running = (Arc<Hub>, JoinHandle<()>);

/// What a rule's side of a shared source needs of the source, whatever its broker.
pub trait Shareable: Source {
    fn rows(&mut self) -> &mut MessageRows;
    fn batch_size(&self) -> usize;
    fn linger(&self) -> Duration;

    /// Connects and starts feeding a hub whose ingest log is in `log_dir`, decoding from `start`
    /// (the offset the first reader's checkpoint recorded; the log's end without one). The hub
    /// runs until its `stop` is cancelled or the connection fails (then every reader fails).
    fn start_hub(
        self: Box<Self>,
        name: &str,
        log_dir: &Path,
        start: Option<u64>,
    ) -> Result<Running, ConnectorError>;
}

impl<F: Feeds + Source> Shareable for F {
    fn rows(&mut self) -> &mut MessageRows {
        Feeds::rows(self)
    }

    fn batch_size(&self) -> usize {
        Feeds::batch_size(self)
    }

    fn linger(&self) -> Duration {
        Feeds::linger(self)
    }

    fn start_hub(
        self: Box<Self>,
        name: &str,
        log_dir: &Path,
        start: Option<u64>,
    ) -> Result<Running, ConnectorError> {
        start_feeding(self, name, log_dir, start)
    }
}

fn start_feeding<F: Feeds>(
    mut source: Box<F>,
    name: &str,
    log_dir: &Path,
    start: Option<u64>,
) -> Result<Running, ConnectorError> {
    let (opened, seen) = source.open_log(log_dir)?;
    let start = start.unwrap_or(opened.end).max(opened.first);
    if start > opened.end {
        return Err(log_error(LogError::NotKept {
            dir: log_dir.to_path_buf(),
            offset: start,
            first: opened.first,
            end: opened.end,
        }));
    }
    let reader = LogReader::open(log_dir, start).map_err(log_error)?;
    let hub = Arc::new(Hub::new(
        name,
        log_dir,
        opened.first,
        start,
        source.max_log_bytes(),
    ));
    let (to_log, queue) = mpsc::unbounded_channel();
    let connected = source.connect(seen, to_log)?;
    let (synced_tx, synced) = watch::channel(opened.end);
    let backlog = Arc::new(Backlog::new(start, source.max_log_bytes()));
    let writer_stop = CancellationToken::new();
    let writer = tokio::spawn(intake::write_log(
        opened.appender,
        queue,
        connected.acks,
        synced_tx,
        Arc::clone(&backlog),
        writer_stop.clone(),
    ));
    let feeding = Feeding {
        source,
        hub: Arc::clone(&hub),
        reader,
        synced,
        backlog,
        status: connected.status,
    };
    let close = connected.close;
    let task = tokio::spawn(async move {
        let name = feeding.hub.name.clone();
        feeding.run().await;
        // The writer acknowledges what it has synced, then the connection closes after those
        // acknowledgements.
        writer_stop.cancel();
        let mut writer = writer;
        join_within(&mut writer, STOP_WAIT).await;
        close.await;
        info!(source = %name, "shared connection closed");
    });
    Ok((hub, task))
}

struct Feeding<F: Feeds> {
    source: Box<F>,
    hub: Arc<Hub>,
    reader: LogReader,
    synced: watch::Receiver<u64>,
    backlog: Arc<Backlog>,
    status: mpsc::UnboundedReceiver<F::Status>,
}

impl<F: Feeds> Feeding<F> {
    /// Decodes what is synced and publishes it until stopped; a failure fails the hub.
    async fn run(mut self) {
        if let Err(e) = self.feed().await {
            warn!(source = %self.hub.name, "the shared connection failed: {e}");
            self.hub.fail(e.to_string());
        }
    }

    async fn feed(&mut self) -> Result<(), ConnectorError> {
        let mut floor = self.hub.floor();
        let stop = self.hub.stop.clone();
        loop {
            loop {
                let upto = *self.synced.borrow_and_update();
                if self.reader.position() >= upto || stop.is_cancelled() {
                    break;
                }
                self.decode_upto(upto)?;
            }
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                Some(s) = self.status.recv() => {
                    self.source.on_status(s, &self.hub.name, &self.hub.reconnects)?;
                }
                moved = floor.changed() => {
                    if moved.is_ok() {
                        let offset = *floor.borrow_and_update();
                        self.backlog.checkpointed(offset.acks);
                        let first = log::remove_before(&self.hub.log_dir, offset.removal)
                            .map_err(log_error)?;
                        self.hub.truncated(first);
                    }
                }
                changed = self.synced.changed() => {
                    if changed.is_err() {
                        return Err(ConnectorError::fatal("the ingest log's writer stopped"));
                    }
                }
            }
        }
    }

    /// Decodes one batch of what is synced, up to `upto`, and publishes it.
    fn decode_upto(&mut self, upto: u64) -> Result<(), ConnectorError> {
        let start = self.reader.position();
        let records = self
            .reader
            .read(upto, self.source.batch_size())
            .map_err(log_error)?;
        let messages: Vec<Message> = records.iter().map(Message::from).collect();
        let rows = self.source.rows();
        let decoded = rows
            .rows(&messages)
            .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        let rejected = decoded
            .rejected
            .into_iter()
            .map(|(i, reason)| Rejected {
                origin: rows.origin_text(messages[i].topic),
                payload: messages[i].payload.to_vec(),
                reason,
            })
            .collect();
        self.hub.publish(Decoded {
            start,
            end: records.end,
            batch: decoded.batch,
            rejected,
        });
        Ok(())
    }
}
