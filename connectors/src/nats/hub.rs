//! A JetStream source's durable consumer feeding a shared source's hub: one consumer pulls the
//! stream, each message is written to the hub's ingest log and acknowledged once synced there
//! (the consumer acknowledges all: one acknowledgement, of the newest, per synced group). The log's
//! records keep the low 32 bits of each message's stream sequence: a restarted hub goes on after
//! the newest message logged (its full sequence told from the consumer's acknowledgement floor,
//! which is never more than the log behind), so a message synced but not yet acknowledged when
//! the service stopped is not taken twice.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::{self, stream::Stream as JetStream};
use bytes::Bytes;
use eddy_engine::ConnectorError;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Server;
use super::config::NatsSourceConfig;
use super::source::{NatsSource, deliver_policy, durable_consumer, durable_name, note_event};
use crate::backoff::Backoff;
use crate::ingest_log::intake::{Acknowledge, Entry, ToLog};
use crate::ingest_log::read_back::log_error;
use crate::ingest_log::{self as log, OpenedLog};
use crate::messages::MessageRows;
use crate::shared::feed::{Connected, Feeds};
use crate::tasks::cancel_and_join;

/// The longest a stopping hub waits for the consumer's task.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// What the consumer's task reports.
pub enum Status {
    Event(async_nats::Event),
    /// Reading the stream through the durable consumer.
    Reading {
        stream: String,
        durable: String,
    },
    /// Cannot connect, or the consumer failed; tried again after the delay.
    Retrying(String, Duration),
    /// The stream is missing or the server refused: trying again would not help.
    Refused(String),
}

/// Acknowledges a synced group with its newest message (the consumer acknowledges all).
pub struct JetStreamAcks;

impl Acknowledge for JetStreamAcks {
    type Token = jetstream::Message;

    async fn acknowledge(&mut self, messages: Vec<jetstream::Message>) -> Result<(), String> {
        // A lost acknowledgement is made good by the next group's, or the server sends the
        // messages again after the ack wait and they are recognized: not a reason to stop.
        if let Some(newest) = messages.last()
            && let Err(e) = newest.ack().await
        {
            debug!("cannot acknowledge up to a message: {e}");
        }
        Ok(())
    }
}

impl Feeds for NatsSource {
    type Status = Status;
    type Acks = JetStreamAcks;
    /// The low 32 bits of the newest message logged.
    type Seen = Option<u32>;

    fn open_log(&mut self, dir: &Path) -> Result<(OpenedLog, Option<u32>), ConnectorError> {
        let mut newest = None;
        let opened = log::open(dir, |r| newest = Some(r.id)).map_err(log_error)?;
        Ok((opened, newest))
    }

    fn connect(
        &mut self,
        newest: Option<u32>,
        to_log: mpsc::UnboundedSender<ToLog<jetstream::Message>>,
    ) -> Result<Connected<JetStreamAcks, Status>, ConnectorError> {
        let (status_tx, status) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let pulling = Pulling {
            source: self.name.clone(),
            config: self.config.clone(),
            server: self.server.clone(),
            to_log,
            status: status_tx,
            stop: stop.clone(),
        };
        let task = tokio::spawn(pulling.run(newest));
        Ok(Connected {
            acks: JetStreamAcks,
            status,
            close: cancel_and_join(stop, task, STOP_WAIT),
        })
    }

    fn on_status(
        &mut self,
        status: Status,
        name: &str,
        reconnects: &AtomicU64,
    ) -> Result<(), ConnectorError> {
        match status {
            Status::Event(e) => note_event(
                e,
                name,
                &self.server.address(),
                &mut self.connection_lost,
                reconnects,
            ),
            Status::Reading { stream, durable } => {
                info!(source = %name, "reading stream {stream} through consumer {durable}, shared by the rules that read it");
            }
            Status::Retrying(e, delay) => warn!(source = %name, "{e}; retrying in {delay:.1?}"),
            Status::Refused(e) => return Err(ConnectorError::fatal(e)),
        }
        Ok(())
    }

    fn rows(&mut self) -> &mut MessageRows {
        &mut self.rows
    }

    fn batch_size(&self) -> usize {
        self.config.batch_size
    }

    fn linger(&self) -> Duration {
        self.config.linger
    }

    fn max_log_bytes(&self) -> u64 {
        self.config.max_log_bytes as u64
    }
}

/// The consumer's task: connects, pulls and queues each message for the log's writer.
struct Pulling {
    source: String,
    config: NatsSourceConfig,
    server: Server,
    to_log: mpsc::UnboundedSender<ToLog<jetstream::Message>>,
    status: mpsc::UnboundedSender<Status>,
    stop: CancellationToken,
}

/// The full stream sequence whose low 32 bits are `low`, at or after `floor` (and less than
/// 2^32 after it).
fn sequence_from(floor: u64, low: u32) -> u64 {
    floor + u64::from(low.wrapping_sub(floor as u32))
}

impl Pulling {
    async fn run(self, newest: Option<u32>) {
        let mut backoff = Backoff::default();
        // The stream sequence of the newest message queued; `None` until known.
        let mut last: Option<u64> = None;
        loop {
            let failure = tokio::select! {
                _ = self.stop.cancelled() => return,
                failure = self.pull(newest, &mut last) => failure,
            };
            match failure {
                Failure::Refused(e) => {
                    let _ = self.status.send(Status::Refused(e));
                    return;
                }
                Failure::Stopped => return,
                Failure::Retry(e) => {
                    let delay = backoff.next_delay();
                    let _ = self.status.send(Status::Retrying(e, delay));
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// One connection: pulls until it fails or the log's writer has stopped.
    async fn pull(&self, newest: Option<u32>, last: &mut Option<u64>) -> Failure {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let client = match self.server.connect(&self.source, events_tx).await {
            Ok(c) => c,
            Err(e) => return Failure::Retry(e.message),
        };
        let context = jetstream::new(client);
        let stream_name = self.config.stream.clone().unwrap_or_default();
        let stream = match context.get_stream(&stream_name).await {
            Ok(s) => s,
            Err(e) => {
                return Failure::Refused(format!(
                    "cannot read the JetStream stream {stream_name} at {}: {e} (create it with `nats stream add`)",
                    self.server.address()
                ));
            }
        };
        let start = match self.start(&stream, newest, *last).await {
            Ok(s) => s,
            Err(e) => return Failure::Refused(e),
        };
        if let DeliverPolicy::ByStartSequence { start_sequence } = start {
            last.get_or_insert(start_sequence - 1);
        }
        let consumer = match durable_consumer(&self.source, &self.config, &stream, start).await {
            Ok(c) => c,
            Err(e) => return Failure::Retry(e.message),
        };
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => return Failure::Retry(format!("cannot pull from {stream_name}: {e}")),
        };
        let durable = durable_name(&self.source, &self.config);
        let _ = self.status.send(Status::Reading {
            stream: stream_name.clone(),
            durable,
        });
        loop {
            tokio::select! {
                Some(e) = events.recv() => {
                    let _ = self.status.send(Status::Event(e));
                }
                message = messages.next() => match message {
                    Some(Ok(m)) => {
                        if !self.queue(m, last) {
                            return Failure::Stopped;
                        }
                    }
                    Some(Err(e)) => {
                        if matches!(e.kind(), pull::MessagesErrorKind::ConsumerDeleted) {
                            return Failure::Retry(format!("the consumer of {stream_name} was deleted"));
                        }
                        debug!(source = %self.source, "pulling from {stream_name}: {e}");
                    }
                    None => return Failure::Retry(format!("the consumer of {stream_name} stopped")),
                },
            }
        }
    }

    /// Where the consumer starts: after the newest message queued or logged, else after what
    /// the durable consumer acknowledged, else as `deliver` says.
    async fn start(
        &self,
        stream: &JetStream,
        newest: Option<u32>,
        last: Option<u64>,
    ) -> Result<DeliverPolicy, String> {
        if let Some(last) = last {
            return Ok(DeliverPolicy::ByStartSequence {
                start_sequence: last + 1,
            });
        }
        let durable = durable_name(&self.source, &self.config);
        let floor = match stream.get_consumer::<pull::Config>(&durable).await {
            Ok(mut consumer) => consumer
                .info()
                .await
                .map_or(0, |i| i.ack_floor.stream_sequence),
            Err(_) => 0,
        };
        let after = match newest {
            Some(low) => Some(sequence_from(floor, low)),
            None if floor > 0 => Some(floor),
            None => None,
        };
        match after {
            Some(after) => Ok(DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            }),
            None => deliver_policy(&self.config.deliver).map_err(|e| e.to_string()),
        }
    }

    /// Queues `m` for the log, unless it was queued before; `false` once the writer has stopped.
    fn queue(&self, m: jetstream::Message, last: &mut Option<u64>) -> bool {
        let (sequence, published) = match m.info() {
            Ok(i) => (i.stream_sequence, i.published.unix_timestamp_nanos()),
            Err(e) => {
                warn!(source = %self.source, "a message without JetStream metadata: {e}");
                return true;
            }
        };
        if last.is_some_and(|l| sequence <= l) {
            debug!(source = %self.source, "message {sequence} sent again: taken already");
            return true;
        }
        *last = Some(sequence);
        let entry = Entry {
            id: sequence as u32,
            received: (published / 1_000_000) as i64,
            origin: Bytes::copy_from_slice(m.message.subject.as_bytes()),
            payload: m.message.payload.clone(),
            ack: Some(m),
        };
        self.to_log.send(ToLog::Append(entry)).is_ok()
    }
}

/// Why a connection ended.
enum Failure {
    Retry(String),
    Refused(String),
    /// The log's writer has stopped: the hub is stopping.
    Stopped,
}

#[cfg(test)]
mod tests {
    use super::sequence_from;

    #[test]
    fn a_sequence_is_told_from_its_low_bits_and_the_acknowledgement_floor() {
        assert_eq!(sequence_from(0, 7), 7);
        assert_eq!(sequence_from(100, 130), 130);
        assert_eq!(sequence_from(100, 100), 100);
        let floor = (5u64 << 32) + 0xffff_fff0;
        assert_eq!(sequence_from(floor, 0x10), (6u64 << 32) + 0x10);
    }
}
