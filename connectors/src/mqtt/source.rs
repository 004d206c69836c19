//! Subscribes to a topic filter and decodes each message (one JSON object) into a row. The
//! message's topic fills the `topic` column when the source declares one, so a device id can come
//! from the topic.
//!
//! Two ways in. Without checkpoints, or at QoS 0, messages go from the event loop straight to the
//! decoder, in batches of `batch_size` or every `linger`. With checkpoints (`--state-dir`) and
//! QoS 1 they go through the source's ingest log (see [`super::acks`]): each is acknowledged once
//! it is synced there, and the source reads the log back, so a restarted source reads again from
//! the offset its checkpoint recorded.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use eddy_engine::{ConnectorError, OptionError, Source, SourceContext, SourceSpec};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::acks::{LogIntake, MqttAcks, Redeliveries};
use super::config::MqttSourceConfig;
use super::connection::{Connection, ConnectionOptions, qos};
use super::event_loop::{self, Client, Protocol, Received, Status};
use super::topic_pattern::TopicPattern;
use crate::format::{self, DecodeOptions};
use crate::ingest_log::read_back::{OpenLog, ReadsBack, ingest_log_dir};
use crate::messages::{self as rows, Message, MessageRows, Origins};

pub struct MqttSource {
    pub(crate) config: MqttSourceConfig,
    pub(super) connection: Connection,
    protocol: Protocol,
    at_least_once: bool,
    /// The filter subscribed to.
    pub(super) topic: String,
    pub(crate) rows: MessageRows,
    /// The MQTT 5 user properties that fill columns.
    user_properties: Vec<String>,
    /// A connection has been made: the next is a reconnect.
    connected_before: bool,
}

impl MqttSource {
    pub fn create(spec: &SourceSpec) -> Result<Box<dyn Source>, OptionError> {
        Ok(Box::new(Self::new(spec)?))
    }

    /// The source `spec` declares.
    pub fn new(spec: &SourceSpec) -> Result<Self, OptionError> {
        let (options, paths) = format::take_column_paths(spec.options, spec.schema);
        let config: MqttSourceConfig = options.deserialize()?;
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
            clean_session: config.clean_session,
            name: spec.name,
        })?;
        let pattern = config
            .topic_pattern
            .as_deref()
            .map(TopicPattern::parse)
            .transpose()
            .map_err(|m| OptionError::invalid("topic_pattern", m))?;
        let topic = match (&config.topic, &pattern) {
            (Some(t), _) => t.clone(),
            (None, Some(p)) => p.filter(),
            (None, None) => {
                return Err(OptionError::invalid(
                    "topic",
                    "give the topic filter to subscribe to (or a topic_pattern)",
                ));
            }
        };
        if !rumqttc::valid_filter(&topic) {
            return Err(OptionError::invalid(
                "topic",
                format!(
                    "'{topic}' is not a valid topic filter ('#' only at the end, '+' a whole level)"
                ),
            ));
        }
        let topic = match &config.share_group {
            Some(g) if g.is_empty() || g.contains(['/', '+', '#']) => {
                return Err(OptionError::invalid(
                    "share_group",
                    format!("'{g}' is not a group name (no '/', '+' or '#')"),
                ));
            }
            Some(_) if topic.starts_with("$share/") => {
                return Err(OptionError::invalid(
                    "share_group",
                    "the topic is a shared subscription already",
                ));
            }
            Some(g) => format!("$share/{g}/{topic}"),
            None => topic,
        };
        if config.batch_size == 0 {
            return Err(OptionError::invalid("batch_size", "must be at least 1"));
        }
        let protocol = config.protocol()?;
        if config.receive_maximum == 0 {
            return Err(OptionError::invalid(
                "receive_maximum",
                "must be at least 1",
            ));
        }
        let topic_column = rows::topic_column(spec.schema, config.topic_column.as_deref())?;
        let decode = DecodeOptions::messages(
            config.format,
            config.delimiter,
            config.value_column.clone(),
            paths,
            config.batch_size,
            config.max_record_bytes,
        );
        let user_properties = config.user_properties()?;
        let origins = Origins {
            name: "topic",
            column: topic_column,
            pattern: pattern
                .zip(config.topic_pattern.clone())
                .map(|(p, t)| (t, p)),
            properties: user_properties.clone(),
        };
        let rows = MessageRows::new(spec.schema, origins, &decode)?;
        Ok(Self {
            at_least_once: qos(config.qos)? != rumqttc::QoS::AtMostOnce,
            protocol,
            config,
            connection,
            topic,
            rows,
            user_properties,
            connected_before: false,
        })
    }

    /// Messages straight from the event loop, acknowledged on receipt (QoS 1) by rumqttc.
    async fn run_direct(&mut self, ctx: &mut SourceContext) -> Result<(), ConnectorError> {
        let (messages_tx, mut messages) = mpsc::channel::<Received>(1024);
        let (_, mut stop, mut status) = self.connect(false, messages_tx)?;
        let mut pending: Vec<Received> = Vec::with_capacity(self.config.batch_size);
        let mut linger = tokio::time::interval(self.config.linger);
        linger.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = ctx.shutdown().clone();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(s) = status.recv() => {
                    if self.note_status(s, ctx)? {
                        self.hand_on_pending(&mut pending, ctx).await?;
                    }
                }
                message = messages.recv() => match message {
                    None => break,
                    Some(m) => {
                        pending.push(m);
                        if pending.len() >= self.config.batch_size {
                            self.hand_on_pending(&mut pending, ctx).await?;
                        }
                    }
                },
                _ = linger.tick() => self.hand_on_pending(&mut pending, ctx).await?,
            }
        }
        self.hand_on_pending(&mut pending, ctx).await?;
        // Messages that arrive from now on are not taken (acknowledged on receipt at QoS 1: what
        // is not taken by now is lost, as without a state directory a crash would lose it).
        drop(messages);
        stop.disconnect().await;
        Ok(())
    }

    async fn hand_on_pending(
        &mut self,
        pending: &mut Vec<Received>,
        ctx: &mut SourceContext,
    ) -> Result<(), ConnectorError> {
        let messages = std::mem::take(pending);
        let batch: Vec<Message> = messages
            .iter()
            .map(|m| Message {
                topic: &m.topic,
                payload: &m.payload,
                received: m.received,
            })
            .collect();
        let result = self.rows.hand_on(&batch, None, ctx).await;
        drop(batch);
        *pending = messages;
        pending.clear();
        result
    }

    /// Messages through the ingest log in `dir`: acknowledged once synced there, read back from
    /// the offset the restored checkpoint recorded (the log's beginning without one).
    async fn run_logged(
        &mut self,
        ctx: &mut SourceContext,
        dir: PathBuf,
    ) -> Result<(), ConnectorError> {
        let mut redeliveries = Redeliveries::default();
        let log = OpenLog::open(dir, "MQTT", ctx, |r| redeliveries.note_record(r))?;
        let (to_log, queue) = mpsc::unbounded_channel();
        let intake = LogIntake {
            redeliveries,
            to_log,
        };
        let (client, mut stop, mut status) = self.connect(true, intake)?;
        let mut run = log.start(
            queue,
            MqttAcks(client),
            self.config.max_log_bytes as u64,
            ctx,
        );
        let (batch_size, linger) = (self.config.batch_size, self.config.linger);
        let result = run
            .read_back(self, &mut status, batch_size, linger, ctx)
            .await;
        // The writer acknowledges what it has synced, then the connection closes after those
        // acknowledgements.
        run.stop().await;
        stop.disconnect().await;
        result
    }

    /// A client and its event loop, polled in a task of its own that hands messages to `intake`:
    /// the client, what stops the task, and the changes of state it reports.
    pub(super) fn connect(
        &self,
        manual_acks: bool,
        intake: impl event_loop::Intake,
    ) -> Result<(Client, Stop, mpsc::UnboundedReceiver<Status>), ConnectorError> {
        let (client, events) = event_loop::client(
            &self.connection,
            self.protocol,
            manual_acks,
            self.config.receive_maximum,
            self.user_properties.clone(),
        )
        .map_err(ConnectorError::fatal)?;
        let (status_tx, status) = mpsc::unbounded_channel();
        let poller = tokio::spawn(event_loop::run(
            events,
            client.clone(),
            self.topic.clone(),
            self.at_least_once,
            intake,
            status_tx,
        ));
        Ok((client.clone(), Stop::new(poller, client), status))
    }

    /// Logs a change of the connection's state and counts reconnects; fails when the broker
    /// refused the subscription. `true` when the connection failed.
    fn note_status(&mut self, status: Status, ctx: &SourceContext) -> Result<bool, ConnectorError> {
        self.note_status_of(status, ctx.name(), &ctx.metrics().reconnects)
    }

    /// [`Self::note_status`] for source `name`, whose reconnects `reconnects` counts.
    pub(super) fn note_status_of(
        &mut self,
        status: Status,
        name: &str,
        reconnects: &std::sync::atomic::AtomicU64,
    ) -> Result<bool, ConnectorError> {
        let address = &self.connection.address;
        let topic = &self.topic;
        match status {
            Status::Connected { .. } if self.connected_before => {
                let n = reconnects.fetch_add(1, Ordering::Relaxed) + 1;
                info!(source = %name, "reconnected to {address} ({n} reconnects so far)");
            }
            Status::Connected { .. } => {
                info!(source = %name, "connected to {address}");
                self.connected_before = true;
            }
            Status::Subscribed => info!(source = %name, "subscribed to {topic}"),
            Status::Refused => {
                return Err(ConnectorError::fatal(format!(
                    "the broker at {address} refused the subscription to {topic}"
                )));
            }
            Status::Failed(e, delay) => {
                warn!(source = %name, "cannot reach the broker at {address}: {e}; retrying in {delay:.1?}");
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl ReadsBack for MqttSource {
    type Status = Status;

    fn rows(&mut self) -> &mut MessageRows {
        &mut self.rows
    }

    fn on_status(&mut self, status: Status, ctx: &SourceContext) -> Result<(), ConnectorError> {
        self.note_status(status, ctx).map(drop)
    }
}

#[async_trait]
impl Source for MqttSource {
    fn describe(&self) -> String {
        let protocol = match self.protocol {
            Protocol::V311 => "",
            Protocol::V5 => " MQTT 5",
        };
        format!(
            "{}{protocol} topic {} qos {} ({})",
            self.connection.address,
            self.topic,
            self.config.qos,
            self.rows.describe()
        )
    }

    async fn run(mut self: Box<Self>, ctx: &mut SourceContext) -> Result<(), ConnectorError> {
        match ctx.durable_dir() {
            Some(dir) if self.at_least_once => {
                let dir = ingest_log_dir(dir);
                self.run_logged(ctx, dir).await
            }
            _ => self.run_direct(ctx).await,
        }
    }
}

/// The longest a stopping source waits for its last acknowledgements and its DISCONNECT to go
/// out: a broker that does not answer does not hold the engine's shutdown.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The event loop's task, stopped when the source returns, however it returns.
pub(super) struct Stop {
    poller: tokio::task::JoinHandle<()>,
    client: Client,
}

impl Stop {
    fn new(poller: tokio::task::JoinHandle<()>, client: Client) -> Self {
        Self { poller, client }
    }

    /// A clean end: a DISCONNECT after every request queued (acknowledgements), then the event
    /// loop ends; at most [`STOP_WAIT`].
    pub(super) async fn disconnect(&mut self) {
        let client = self.client.clone();
        let sent = async {
            client.disconnect().await;
            (&mut self.poller).await
        };
        let _ = tokio::time::timeout(STOP_WAIT, sent).await;
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        self.poller.abort();
    }
}
