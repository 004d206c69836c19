//! An MQTT source's connection feeding a shared source's hub: one client subscribed to the topic,
//! each message written to the hub's ingest log and acknowledged once synced there (QoS 1).

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use eddy_engine::ConnectorError;
use tokio::sync::mpsc;

use super::acks::{LogIntake, MqttAcks, Redeliveries};
use super::event_loop::Status;
use super::source::MqttSource;
use crate::ingest_log::intake::ToLog;
use crate::ingest_log::read_back::log_error;
use crate::ingest_log::{self as log, OpenedLog};
use crate::messages::MessageRows;
use crate::shared::feed::{Connected, Feeds};

impl Feeds for MqttSource {
    type Status = Status;
    type Acks = MqttAcks;
    type Seen = Redeliveries;

    fn open_log(&mut self, dir: &Path) -> Result<(OpenedLog, Redeliveries), ConnectorError> {
        let mut redeliveries = Redeliveries::default();
        let opened = log::open(dir, |r| redeliveries.note_record(r)).map_err(log_error)?;
        Ok((opened, redeliveries))
    }

    fn connect(
        &mut self,
        redeliveries: Redeliveries,
        to_log: mpsc::UnboundedSender<ToLog<u16>>,
    ) -> Result<Connected<MqttAcks, Status>, ConnectorError> {
        let intake = LogIntake {
            redeliveries,
            to_log,
        };
        let (client, mut stop, status) = MqttSource::connect(self, true, intake)?;
        Ok(Connected {
            acks: MqttAcks(client),
            status,
            close: Box::pin(async move { stop.disconnect().await }),
        })
    }

    fn on_status(
        &mut self,
        status: Status,
        name: &str,
        reconnects: &AtomicU64,
    ) -> Result<(), ConnectorError> {
        self.note_status_of(status, name, reconnects).map(drop)
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
