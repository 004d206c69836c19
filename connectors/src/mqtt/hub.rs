//! An MQTT source's connection as a [`Hub`] for many readers: one client subscribed to the topic,
//! each message written to the hub's ingest log and acknowledged once synced there (QoS 1), what
//! is synced decoded once, in batches, and published to the hub. The log behind what every
//! reader's checkpoints cover is removed as they complete.

use std::path::Path;
use std::sync::Arc;

use eddy_engine::ConnectorError;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::acks::{LogIntake, MqttAcks, Redeliveries};
use super::event_loop::Status;
use super::source::MqttSource;
use crate::ingest_log::intake::{self, Backlog};
use crate::ingest_log::{self as log, LogError, LogReader};
use crate::messages::Message;
use crate::shared::hub::{self, Decoded, Hub, Rejected};

impl MqttSource {
    /// Connects and starts feeding a hub whose ingest log is in `log_dir`, decoding from `start`
    /// (the offset the first reader's checkpoint recorded; the log's end without one). The hub
    /// runs until its `stop` is cancelled or the connection fails (then every reader fails).
    pub fn start_hub(
        self: Box<Self>,
        name: &str,
        log_dir: &Path,
        start: Option<u64>,
    ) -> Result<(Arc<Hub>, tokio::task::JoinHandle<()>), ConnectorError> {
        let mut redeliveries = Redeliveries::default();
        let opened = log::open(log_dir, |r| redeliveries.note_record(r)).map_err(log_error)?;
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
        let hub = Arc::new(Hub::new(name, log_dir, opened.first, start));
        let (to_log, queue) = mpsc::unbounded_channel();
        let (client, stop, status) = self.connect(
            true,
            LogIntake {
                redeliveries,
                to_log,
            },
        )?;
        let (synced_tx, synced) = watch::channel(opened.end);
        let backlog = Arc::new(Backlog::new(start, self.config.max_log_bytes as u64));
        let writer_stop = CancellationToken::new();
        let writer = tokio::spawn(intake::write_log(
            opened.appender,
            queue,
            MqttAcks(client),
            synced_tx,
            Arc::clone(&backlog),
            writer_stop.clone(),
        ));
        let feeding = Feeding {
            source: self,
            hub: Arc::clone(&hub),
            reader,
            synced,
            backlog,
            status,
        };
        let task = tokio::spawn(async move {
            let result = feeding.run().await;
            // The writer acknowledges what it has synced, then the connection closes after
            // those acknowledgements.
            writer_stop.cancel();
            let mut writer = writer;
            let mut stop = stop;
            if tokio::time::timeout(std::time::Duration::from_secs(2), &mut writer)
                .await
                .is_err()
            {
                writer.abort();
            }
            stop.disconnect().await;
            info!(source = %name_of(&result), "shared connection closed");
        });
        Ok((hub, task))
    }
}

fn name_of(result: &Result<String, String>) -> &str {
    match result {
        Ok(n) | Err(n) => n,
    }
}

struct Feeding {
    source: Box<MqttSource>,
    hub: Arc<Hub>,
    reader: LogReader,
    synced: watch::Receiver<u64>,
    backlog: Arc<Backlog>,
    status: mpsc::UnboundedReceiver<Status>,
}

impl Feeding {
    /// Decodes what is synced and publishes it until stopped; a failure fails the hub. Returns
    /// the source's name, for the log.
    async fn run(mut self) -> Result<String, String> {
        let name = self.hub.name.clone();
        match self.feed().await {
            Ok(()) => Ok(name),
            Err(e) => {
                warn!(source = %name, "the shared connection failed: {e}");
                self.hub.fail(e.to_string());
                Err(name)
            }
        }
    }

    async fn feed(&mut self) -> Result<(), ConnectorError> {
        let mut floor = self.hub.floor();
        let stop = self.hub.stop.clone();
        let mut connected_before = false;
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
                Some(s) = self.status.recv() => self.note(s, &mut connected_before)?,
                moved = floor.changed() => {
                    if moved.is_ok() {
                        let offset = *floor.borrow_and_update();
                        self.backlog.checkpointed(offset);
                        let first = log::remove_before(&self.hub.log_dir, offset).map_err(log_error)?;
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
            .read(upto, self.source.config.batch_size)
            .map_err(log_error)?;
        let messages: Vec<Message> = records.iter().map(Message::from).collect();
        let rows = self
            .source
            .rows
            .rows(&messages)
            .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        let rejected = rows
            .rejected
            .into_iter()
            .map(|(i, reason)| Rejected {
                origin: self.source.rows.origin_text(messages[i].topic),
                payload: messages[i].payload.to_vec(),
                reason,
            })
            .collect();
        self.hub.publish(Decoded {
            start,
            end: records.end,
            batch: rows.batch,
            rejected,
        });
        Ok(())
    }

    fn note(&mut self, status: Status, connected_before: &mut bool) -> Result<(), ConnectorError> {
        let (name, address, topic) = (
            &self.hub.name,
            &self.source.connection.address,
            &self.source.topic,
        );
        match status {
            Status::Connected { .. } if *connected_before => {
                let n = hub::reconnected(&self.hub);
                info!(source = %name, "reconnected to {address} ({n} reconnects so far)");
            }
            Status::Connected { .. } => {
                info!(source = %name, "connected to {address} (shared by the rules that read it)");
                *connected_before = true;
            }
            Status::Subscribed => info!(source = %name, "subscribed to {topic}"),
            Status::Refused => {
                return Err(ConnectorError::fatal(format!(
                    "the broker at {address} refused the subscription to {topic}"
                )));
            }
            Status::Failed(e, delay) => {
                warn!(source = %name, "cannot reach the broker at {address}: {e}; retrying in {delay:.1?}");
            }
        }
        Ok(())
    }
}

fn log_error(e: LogError) -> ConnectorError {
    ConnectorError::fatal(e.to_string())
}
