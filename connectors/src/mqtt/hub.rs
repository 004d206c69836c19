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
use crate::ingest_log::read_back::log_error;
use crate::ingest_log::{self as log, LogError, LogReader};
use crate::messages::Message;
use crate::shared::hub::{Decoded, Hub, Rejected};

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
            let name = feeding.hub.name.clone();
            feeding.run().await;
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
            info!(source = %name, "shared connection closed");
        });
        Ok((hub, task))
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
                    self.source.note_status_of(s, &self.hub.name, &self.hub.reconnects)?;
                }
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
}
