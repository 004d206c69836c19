//! Publishes each row as one JSON message to the topic its template gives. Connects on the first
//! row (so `eddy check` never connects); reconnects with backoff; `flush` waits until the broker has
//! taken every row (QoS 1: acknowledged; QoS 0: written to the connection).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use async_trait::async_trait;
use eddy_engine::{ConnectorError, OptionError, Sink, SinkSpec};
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Outgoing, Packet, QoS};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::config::MqttSinkConfig;
use super::connection::{Backoff, Connection, ConnectionOptions, qos};
use crate::format::RecordEncoder;
use crate::template::Template;

pub struct MqttSink {
    name: String,
    config: MqttSinkConfig,
    connection: Connection,
    qos: QoS,
    template: Template,
    encoder: RecordEncoder,
    client: Option<(AsyncClient, Arc<Delivery>)>,
}

/// Rows handed to the client, and rows the broker has taken.
#[derive(Default)]
struct Delivery {
    requested: AtomicU64,
    done: AtomicU64,
    progress: Notify,
}

impl MqttSink {
    pub fn create(spec: &SinkSpec) -> Result<Box<dyn Sink>, OptionError> {
        let config: MqttSinkConfig = spec.options.deserialize()?;
        let connection = Connection::new(ConnectionOptions {
            url: &config.url,
            client_id: config.client_id.as_deref(),
            username: config.username.as_deref(),
            password: config.password.as_deref(),
            password_env: config.password_env.as_deref(),
            ca_file: config.ca_file.as_deref(),
            cert_file: config.cert_file.as_deref(),
            key_file: config.key_file.as_deref(),
            keep_alive: config.keep_alive,
            clean_session: true,
            name: spec.name,
        })?;
        let template =
            Template::topic(&config.topic).map_err(|m| OptionError::invalid("topic", m))?;
        let encoder = RecordEncoder::new(config.format, config.value_column.clone())?;
        Ok(Box::new(Self {
            name: spec.name.to_string(),
            qos: qos(config.qos)?,
            encoder,
            config,
            connection,
            template,
            client: None,
        }))
    }

    fn client(&mut self) -> Result<(AsyncClient, Arc<Delivery>), ConnectorError> {
        if let Some((c, d)) = &self.client {
            return Ok((c.clone(), Arc::clone(d)));
        }
        let options = self
            .connection
            .mqtt_options()
            .map_err(ConnectorError::fatal)?;
        let (client, events) = AsyncClient::new(options, 1024);
        let delivery = Arc::new(Delivery::default());
        tokio::spawn(drive(
            events,
            self.name.clone(),
            self.connection.address.to_string(),
            self.qos,
            Arc::clone(&delivery),
        ));
        self.client = Some((client.clone(), Arc::clone(&delivery)));
        Ok((client, delivery))
    }
}

/// Polls the connection: reconnects with backoff and counts what the broker has taken.
async fn drive(
    mut events: EventLoop,
    sink: String,
    address: String,
    qos: QoS,
    delivery: Arc<Delivery>,
) {
    let mut backoff = Backoff::default();
    loop {
        let taken = match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                info!(sink = %sink, "connected to {address}");
                backoff.reset();
                false
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) => qos == QoS::AtMostOnce,
            Ok(Event::Incoming(Packet::PubAck(_))) => qos == QoS::AtLeastOnce,
            Ok(_) => false,
            Err(ConnectionError::RequestsDone) => return,
            Err(e) => {
                let delay = backoff.next_delay();
                warn!(sink = %sink, "cannot reach the broker at {address}: {e}; retrying in {delay:.1?}");
                tokio::time::sleep(delay).await;
                false
            }
        };
        if taken {
            delivery.done.fetch_add(1, Ordering::Relaxed);
            delivery.progress.notify_waiters();
        }
    }
}

#[async_trait]
impl Sink for MqttSink {
    fn describe(&self) -> String {
        format!(
            "{} topic {} qos {}{} ({})",
            self.connection.address,
            self.template,
            self.config.qos,
            if self.config.retain { " retained" } else { "" },
            self.encoder.format().describe()
        )
    }

    fn check_schema(&self, schema: &Schema) -> Result<(), String> {
        self.template.check(schema)?;
        self.encoder.check(schema)
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        let (client, delivery) = self.client()?;
        let topics = self
            .template
            .render(&batch)
            .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        let payloads = self
            .encoder
            .each(&batch)
            .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        for (topic, payload) in topics.into_iter().zip(payloads) {
            client
                .publish(topic, self.qos, self.config.retain, payload)
                .await
                .map_err(|e| ConnectorError::fatal(format!("cannot publish: {e}")))?;
            delivery.requested.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        let Some((_, delivery)) = &self.client else {
            return Ok(());
        };
        let deadline = Instant::now() + self.config.flush_timeout;
        loop {
            let progress = delivery.progress.notified();
            let requested = delivery.requested.load(Ordering::Relaxed);
            let done = delivery.done.load(Ordering::Relaxed);
            if done >= requested {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ConnectorError::retryable(format!(
                    "{} rows not confirmed by the broker at {} after {:?}",
                    requested - done,
                    self.connection.address,
                    self.config.flush_timeout
                )));
            }
            let _ = tokio::time::timeout(left.min(std::time::Duration::from_millis(200)), progress)
                .await;
        }
    }
}
