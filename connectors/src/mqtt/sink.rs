//! Publishes each row as one message to the topic its template gives, over MQTT 3.1.1 or MQTT 5
//! (which can give each message an expiry). Connects on the first row (so `eddy check` never
//! connects); reconnects with backoff; `flush` waits until the broker has taken every row (QoS 1:
//! acknowledged; QoS 0: written to the connection).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use async_trait::async_trait;
use eddy_engine::{ConnectorError, OptionError, Sink, SinkSpec};
use rumqttc::{AsyncClient, Outgoing, QoS, v5};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::config::MqttSinkConfig;
use super::connection::{Connection, ConnectionOptions, qos};
use super::event_loop::Protocol;
use crate::backoff::Backoff;
use crate::format::RecordEncoder;
use crate::template::Template;

pub struct MqttSink {
    name: String,
    config: MqttSinkConfig,
    connection: Connection,
    qos: QoS,
    protocol: Protocol,
    /// MQTT 5's message expiry interval, in seconds.
    expiry: Option<u32>,
    template: Template,
    encoder: RecordEncoder,
    client: Option<(Publisher, Arc<Delivery>)>,
}

/// The client of either protocol.
#[derive(Clone)]
enum Publisher {
    V311(AsyncClient),
    V5 {
        client: v5::AsyncClient,
        expiry: Option<u32>,
    },
}

impl Publisher {
    async fn publish(
        &self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), String> {
        let sent = match self {
            Self::V311(client) => client.publish(topic, qos, retain, payload).await,
            Self::V5 { client, expiry } => {
                let qos = match qos {
                    QoS::AtMostOnce => v5::mqttbytes::QoS::AtMostOnce,
                    QoS::AtLeastOnce => v5::mqttbytes::QoS::AtLeastOnce,
                    QoS::ExactlyOnce => v5::mqttbytes::QoS::ExactlyOnce,
                };
                let properties = v5::mqttbytes::v5::PublishProperties {
                    message_expiry_interval: *expiry,
                    ..Default::default()
                };
                let sent = client
                    .publish_with_properties(topic, qos, retain, payload, properties)
                    .await;
                return sent.map_err(|e| e.to_string());
            }
        };
        sent.map_err(|e| e.to_string())
    }
}

/// The event loop of either protocol.
enum Events {
    V311(Box<rumqttc::EventLoop>),
    V5(Box<v5::EventLoop>),
}

/// What one poll of the event loop gave.
enum Polled {
    Connected,
    /// A publish went out (QoS 0's delivery).
    Sent,
    /// The broker acknowledged a publish (QoS 1's delivery).
    Acknowledged,
    Nothing,
    /// The client is gone: nothing more to send.
    Done,
    Failed(String),
}

impl Events {
    async fn poll(&mut self) -> Polled {
        match self {
            Self::V311(events) => {
                use rumqttc::{ConnectionError, Event, Packet};
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Polled::Connected,
                    Ok(Event::Outgoing(Outgoing::Publish(_))) => Polled::Sent,
                    Ok(Event::Incoming(Packet::PubAck(_))) => Polled::Acknowledged,
                    Ok(_) => Polled::Nothing,
                    Err(ConnectionError::RequestsDone) => Polled::Done,
                    Err(e) => Polled::Failed(e.to_string()),
                }
            }
            Self::V5(events) => {
                use v5::mqttbytes::v5::Packet;
                use v5::{ConnectionError, Event};
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Polled::Connected,
                    Ok(Event::Outgoing(Outgoing::Publish(_))) => Polled::Sent,
                    Ok(Event::Incoming(Packet::PubAck(_))) => Polled::Acknowledged,
                    Ok(_) => Polled::Nothing,
                    Err(ConnectionError::RequestsDone) => Polled::Done,
                    Err(e) => Polled::Failed(e.to_string()),
                }
            }
        }
    }
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
            protocol: config.protocol()?,
            expiry: config.message_expiry()?,
            encoder,
            config,
            connection,
            template,
            client: None,
        }))
    }

    fn client(&mut self) -> Result<(Publisher, Arc<Delivery>), ConnectorError> {
        if let Some((c, d)) = &self.client {
            return Ok((c.clone(), Arc::clone(d)));
        }
        let (client, events) = match self.protocol {
            Protocol::V311 => {
                let options = self
                    .connection
                    .mqtt_options()
                    .map_err(ConnectorError::fatal)?;
                let (client, events) = AsyncClient::new(options, 1024);
                (Publisher::V311(client), Events::V311(Box::new(events)))
            }
            Protocol::V5 => {
                let options = self
                    .connection
                    .mqtt5_options()
                    .map_err(ConnectorError::fatal)?;
                let (client, events) = v5::AsyncClient::new(options, 1024);
                let publisher = Publisher::V5 {
                    client,
                    expiry: self.expiry,
                };
                (publisher, Events::V5(Box::new(events)))
            }
        };
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
    mut events: Events,
    sink: String,
    address: String,
    qos: QoS,
    delivery: Arc<Delivery>,
) {
    let mut backoff = Backoff::default();
    loop {
        let taken = match events.poll().await {
            Polled::Connected => {
                info!(sink = %sink, "connected to {address}");
                backoff.reset();
                false
            }
            Polled::Sent => qos == QoS::AtMostOnce,
            Polled::Acknowledged => qos == QoS::AtLeastOnce,
            Polled::Nothing => false,
            Polled::Done => return,
            Polled::Failed(e) => {
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
        let protocol = match self.protocol {
            Protocol::V311 => "",
            Protocol::V5 => " MQTT 5",
        };
        let expiry = match self.expiry {
            Some(s) => format!(", expiring after {s} s"),
            None => String::new(),
        };
        format!(
            "{}{protocol} topic {} qos {}{}{expiry} ({})",
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
