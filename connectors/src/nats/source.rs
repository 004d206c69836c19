//! Reads a JetStream stream through a durable pull consumer that acknowledges all messages up to
//! one at once (`AckPolicy::All`); a message is acknowledged once a completed checkpoint covers it
//! (at once, without checkpoints). A checkpoint records the stream sequence of the last message
//! handed on, and a restarted source goes on from the message after it: the consumer is made
//! again to start there, so nothing waits for the ack wait to run out and arrive behind the
//! watermark. A message the server sends again (its ack wait ran out before a checkpoint covered
//! it) is not taken twice. With `jetstream = 'false'`, a plain subscription: at most once.

use std::sync::atomic::Ordering;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, stream::Stream as JetStream};
use async_trait::async_trait;
use eddy_engine::{ConnectorError, OptionError, Source, SourceContext, SourceSpec};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Server;
use super::config::NatsSourceConfig;
use crate::backoff::Backoff;
use crate::checkpoints::Covered;
use crate::format::{self, DecodeOptions};
use crate::messages::{Message, MessageRows, Origins, origin_column};

pub struct NatsSource {
    pub(super) name: String,
    pub(super) config: NatsSourceConfig,
    pub(super) server: Server,
    pub(super) rows: MessageRows,
    /// The connection was lost: the next one is a reconnect.
    pub(super) connection_lost: bool,
}

/// Where a JetStream source is: what a checkpoint records.
#[derive(Debug, Serialize, Deserialize)]
struct StreamPosition {
    /// The stream sequence of the last message handed on.
    stream_sequence: u64,
}

/// A message taken from the server, before decoding.
struct Taken {
    subject: async_nats::Subject,
    payload: bytes::Bytes,
    received: i64,
    /// JetStream: its stream sequence and the message (what acknowledges it, and every one before).
    acked_by: Option<(u64, jetstream::Message)>,
}

impl NatsSource {
    pub fn create(spec: &SourceSpec) -> Result<Box<dyn Source>, OptionError> {
        Ok(Box::new(Self::new(spec)?))
    }

    /// The source `spec` declares.
    pub fn new(spec: &SourceSpec) -> Result<Self, OptionError> {
        let (options, paths) = format::take_column_paths(spec.options, spec.schema);
        let config: NatsSourceConfig = options.deserialize()?;
        let server = Server::new(
            &config.url,
            config.username.as_deref(),
            config.password.as_deref(),
            config.password_env.as_deref(),
            config.token_env.as_deref(),
            config.ca_file.as_deref(),
        )?;
        if config.jetstream {
            if config.stream.is_none() {
                return Err(OptionError::invalid(
                    "stream",
                    "a JetStream source reads a stream: give its name (or jetstream = 'false' for a plain subscription)",
                ));
            }
            if config.queue.is_some() {
                return Err(OptionError::invalid(
                    "queue",
                    "queue groups are for plain subscriptions (jetstream = 'false'); JetStream consumers are shared by their durable name",
                ));
            }
            deliver_policy(&config.deliver)?;
        } else {
            if config.subject.is_none() {
                return Err(OptionError::invalid(
                    "subject",
                    "give the subject to subscribe to ('sensors.>')",
                ));
            }
            for option in ["stream", "durable"] {
                let given = match option {
                    "stream" => config.stream.is_some(),
                    _ => config.durable.is_some(),
                };
                if given {
                    return Err(OptionError::invalid(
                        option,
                        "is a JetStream option, and this source has jetstream = 'false'",
                    ));
                }
            }
        }
        if let Some(s) = &config.subject
            && (s.is_empty() || s.contains([' ', '\t', '\r', '\n']))
        {
            return Err(OptionError::invalid(
                "subject",
                format!("'{s}' is not a NATS subject"),
            ));
        }
        if config.batch_size == 0 {
            return Err(OptionError::invalid("batch_size", "must be at least 1"));
        }
        let subject_column =
            origin_column(spec.schema, "subject", config.subject_column.as_deref())?;
        let decode = DecodeOptions::messages(
            config.format,
            config.delimiter,
            config.value_column.clone(),
            paths,
            config.batch_size,
            config.max_record_bytes,
        );
        let origins = Origins {
            name: "subject",
            column: subject_column,
            ..Default::default()
        };
        let rows = MessageRows::new(spec.schema, origins, &decode)?;
        Ok(Self {
            name: spec.name.to_string(),
            config,
            server,
            rows,
            connection_lost: false,
        })
    }

    pub(super) fn durable(&self) -> String {
        durable_name(&self.name, &self.config)
    }

    /// Connects, trying again with backoff until the server answers or the engine stops.
    // `&mut self` here and below: `&self` would need the decoder to be `Sync` across the awaits.
    async fn connect(
        &mut self,
        ctx: &SourceContext,
    ) -> Result<
        Option<(
            async_nats::Client,
            mpsc::UnboundedReceiver<async_nats::Event>,
        )>,
        ConnectorError,
    > {
        let mut backoff = Backoff::default();
        loop {
            let (events_tx, events) = mpsc::unbounded_channel();
            match self.server.connect(&self.name, events_tx).await {
                Ok(client) => {
                    info!(source = %self.name, "connected to {}", self.server.address());
                    return Ok(Some((client, events)));
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    warn!(source = %self.name, "{e}; retrying in {delay:.1?}");
                    tokio::select! {
                        _ = ctx.shutdown().cancelled() => return Ok(None),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Decodes `taken` into one batch and hands it on; bad messages become dead letters.
    async fn hand_on(
        &mut self,
        taken: &[Taken],
        position: Option<serde_json::Value>,
        ctx: &mut SourceContext,
    ) -> Result<(), ConnectorError> {
        let messages: Vec<Message> = taken
            .iter()
            .map(|t| Message {
                topic: t.subject.as_bytes(),
                payload: &t.payload,
                received: t.received,
            })
            .collect();
        self.rows.hand_on(&messages, position, ctx).await
    }

    /// A plain subscription: messages handed on as they come, never acknowledged.
    async fn run_core(&mut self, ctx: &mut SourceContext) -> Result<(), ConnectorError> {
        let Some((client, mut events)) = self.connect(ctx).await? else {
            return Ok(());
        };
        let subject = self.config.subject.clone().unwrap_or_default();
        let subscribed = match &self.config.queue {
            Some(q) => client.queue_subscribe(subject.clone(), q.clone()).await,
            None => client.subscribe(subject.clone()).await,
        };
        let mut subscriber = subscribed
            .map_err(|e| ConnectorError::fatal(format!("cannot subscribe to {subject}: {e}")))?;
        // The server has the subscription once it answers a round trip: messages published from
        // then on are delivered (core NATS keeps nothing for a subscription not yet made).
        client.flush().await.map_err(|e| {
            ConnectorError::retryable(format!("cannot subscribe to {subject}: {e}"))
        })?;
        info!(source = %self.name, "subscribed to {subject}");
        let mut pending: Vec<Taken> = Vec::with_capacity(self.config.batch_size);
        let mut linger = tokio::time::interval(self.config.linger);
        linger.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = ctx.shutdown().clone();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(e) = events.recv() => self.on_event(e, ctx),
                message = subscriber.next() => match message {
                    None => {
                        return Err(ConnectorError::fatal(format!(
                            "the subscription to {subject} was closed"
                        )));
                    }
                    Some(m) => {
                        pending.push(Taken {
                            subject: m.subject,
                            payload: m.payload,
                            received: eddy_engine::time::now_millis(),
                            acked_by: None,
                        });
                        if pending.len() >= self.config.batch_size {
                            let batch = std::mem::take(&mut pending);
                            self.hand_on(&batch, None, ctx).await?;
                        }
                    }
                },
                _ = linger.tick() => {
                    let batch = std::mem::take(&mut pending);
                    self.hand_on(&batch, None, ctx).await?;
                }
            }
        }
        let batch = std::mem::take(&mut pending);
        self.hand_on(&batch, None, ctx).await?;
        let _ = subscriber.unsubscribe().await;
        Ok(())
    }

    /// The durable consumer, made again to start at `start` (see the module's comment).
    async fn consumer(
        &mut self,
        stream: &JetStream,
        start: DeliverPolicy,
    ) -> Result<PullConsumer, ConnectorError> {
        durable_consumer(&self.name, &self.config, stream, start).await
    }

    /// Where the consumer starts: after the checkpoint's position, else after what the durable
    /// consumer acknowledged, else as `deliver` says.
    async fn start(
        &mut self,
        stream: &JetStream,
        ctx: &SourceContext,
    ) -> Result<DeliverPolicy, ConnectorError> {
        if let Some(p) = ctx.resume_from() {
            let position: StreamPosition = serde_json::from_value(p.clone()).map_err(|_| {
                ConnectorError::fatal(format!(
                    "the checkpoint's position {p} is not a position in a JetStream stream"
                ))
            })?;
            return Ok(DeliverPolicy::ByStartSequence {
                start_sequence: position.stream_sequence + 1,
            });
        }
        let durable = self.durable();
        if let Ok(mut consumer) = stream.get_consumer::<pull::Config>(&durable).await
            && let Ok(info) = consumer.info().await
            && info.ack_floor.stream_sequence > 0
        {
            return Ok(DeliverPolicy::ByStartSequence {
                start_sequence: info.ack_floor.stream_sequence + 1,
            });
        }
        deliver_policy(&self.config.deliver).map_err(|e| ConnectorError::fatal(e.to_string()))
    }

    /// A JetStream stream through the durable consumer.
    async fn run_jetstream(&mut self, ctx: &mut SourceContext) -> Result<(), ConnectorError> {
        let Some((client, mut events)) = self.connect(ctx).await? else {
            return Ok(());
        };
        let context = jetstream::new(client);
        let stream_name = self.config.stream.clone().unwrap_or_default();
        let stream = context.get_stream(&stream_name).await.map_err(|e| {
            ConnectorError::fatal(format!(
                "cannot read the JetStream stream {stream_name} at {}: {e} (create it with `nats stream add`)",
                self.server.address()
            ))
        })?;
        let start = self.start(&stream, ctx).await?;
        if let DeliverPolicy::ByStartSequence { start_sequence } = start {
            let mut s = stream.clone();
            if let Ok(info) = s.info().await
                && info.state.first_sequence > start_sequence
            {
                warn!(
                    source = %self.name,
                    "the stream {stream_name} no longer holds messages {start_sequence} to {}: its limits removed them before Eddy read them",
                    info.state.first_sequence - 1
                );
            }
        }
        let mut consumer = self.consumer(&stream, start).await?;
        let mut messages = consumer.messages().await.map_err(|e| {
            ConnectorError::retryable(format!("cannot pull from {stream_name}: {e}"))
        })?;
        info!(source = %self.name, "reading stream {stream_name} through consumer {}", self.durable());

        // The stream sequence of the last message handed on: one sent again is not taken twice.
        let mut last = match start {
            DeliverPolicy::ByStartSequence { start_sequence } => start_sequence - 1,
            _ => 0,
        };
        let mut covered: Covered<jetstream::Message> = Covered::new(ctx);
        let mut pending: Vec<Taken> = Vec::with_capacity(self.config.batch_size);
        let mut linger = tokio::time::interval(self.config.linger);
        linger.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = ctx.shutdown().clone();
        loop {
            let hand_on = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(e) = events.recv() => {
                    self.on_event(e, ctx);
                    false
                }
                done = covered.next_completed() => {
                    if let Some(m) = covered.completed(done) {
                        acknowledge(&self.name, &m).await;
                    }
                    false
                }
                message = messages.next() => match message {
                    Some(Ok(m)) => {
                        let sequence = m.info().map(|i| (i.stream_sequence, i.published.unix_timestamp_nanos()));
                        match sequence {
                            Ok((sequence, _)) if sequence <= last => {
                                debug!(source = %self.name, "message {sequence} sent again: taken already");
                            }
                            Ok((sequence, published)) => {
                                last = sequence;
                                pending.push(Taken {
                                    subject: m.message.subject.clone(),
                                    payload: m.message.payload.clone(),
                                    received: (published / 1_000_000) as i64,
                                    acked_by: Some((sequence, m)),
                                });
                            }
                            Err(e) => warn!(source = %self.name, "a message without JetStream metadata: {e}"),
                        }
                        pending.len() >= self.config.batch_size
                    }
                    Some(Err(e)) => {
                        warn!(source = %self.name, "pulling from {stream_name}: {e}");
                        if matches!(e.kind(), pull::MessagesErrorKind::ConsumerDeleted) {
                            consumer = self.consumer(&stream, DeliverPolicy::ByStartSequence { start_sequence: last + 1 }).await?;
                            messages = consumer.messages().await.map_err(|e| {
                                ConnectorError::retryable(format!("cannot pull from {stream_name}: {e}"))
                            })?;
                        }
                        false
                    }
                    None => {
                        return Err(ConnectorError::retryable(format!(
                            "the consumer of {stream_name} stopped"
                        )));
                    }
                },
                _ = linger.tick() => true,
            };
            if hand_on && !pending.is_empty() {
                self.hand_on_jetstream(&mut pending, &mut covered, ctx)
                    .await?;
            }
        }
        if !pending.is_empty() {
            self.hand_on_jetstream(&mut pending, &mut covered, ctx)
                .await?;
        }
        Ok(())
    }

    async fn hand_on_jetstream(
        &mut self,
        pending: &mut Vec<Taken>,
        covered: &mut Covered<jetstream::Message>,
        ctx: &mut SourceContext,
    ) -> Result<(), ConnectorError> {
        let batch = std::mem::take(pending);
        let Some((sequence, newest)) = batch.last().and_then(|t| t.acked_by.clone()) else {
            return Ok(());
        };
        let position = serde_json::to_value(StreamPosition {
            stream_sequence: sequence,
        })
        .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        self.hand_on(&batch, Some(position), ctx).await?;
        if covered.checkpointed() {
            covered.handed_on(ctx.last_barrier().await + 1, newest);
        } else {
            acknowledge(&self.name, &newest).await;
        }
        Ok(())
    }

    fn on_event(&mut self, event: async_nats::Event, ctx: &SourceContext) {
        note_event(
            event,
            &self.name,
            &self.server.address(),
            &mut self.connection_lost,
            &ctx.metrics().reconnects,
        );
    }
}

/// The durable consumer's name: `durable`, by default `eddy-SOURCE`.
pub(super) fn durable_name(source: &str, config: &NatsSourceConfig) -> String {
    config
        .durable
        .clone()
        .unwrap_or_else(|| format!("eddy-{source}"))
}

/// Source `source`'s durable consumer of `stream`, made again to start at `start`.
pub(super) async fn durable_consumer(
    source: &str,
    config: &NatsSourceConfig,
    stream: &JetStream,
    start: DeliverPolicy,
) -> Result<PullConsumer, ConnectorError> {
    let durable = durable_name(source, config);
    if let Err(e) = stream.delete_consumer(&durable).await {
        debug!(source = %source, "no consumer {durable} to replace: {e}");
    }
    let config = pull::Config {
        durable_name: Some(durable.clone()),
        deliver_policy: start,
        ack_policy: AckPolicy::All,
        ack_wait: config.ack_wait,
        // Acknowledgements wait for checkpoints: the pulls, not this, bound what is in flight.
        max_ack_pending: -1,
        filter_subject: config.subject.clone().unwrap_or_default(),
        ..Default::default()
    };
    stream.create_consumer(config).await.map_err(|e| {
        ConnectorError::retryable(format!("cannot create the consumer {durable}: {e}"))
    })
}

/// Notes a change of source `source`'s connection to `address`, counting reconnects on
/// `reconnects`; `lost` says whether the connection was lost (the next one is a reconnect).
pub(super) fn note_event(
    event: async_nats::Event,
    source: &str,
    address: &str,
    lost: &mut bool,
    reconnects: &std::sync::atomic::AtomicU64,
) {
    match event {
        // The client reports its first connection too: only one after a loss is a reconnect.
        async_nats::Event::Connected if *lost => {
            *lost = false;
            let n = reconnects.fetch_add(1, Ordering::Relaxed) + 1;
            info!(source = %source, "reconnected to {address} ({n} reconnects so far)");
        }
        async_nats::Event::Disconnected => {
            *lost = true;
            warn!(source = %source, "disconnected from {address}; reconnecting");
        }
        other => debug!(source = %source, "NATS: {other}"),
    }
}

/// Acknowledges `message` and, the consumer acknowledging all, every message before it. A lost
/// acknowledgement is not an error: the server sends the messages again, and they are skipped.
async fn acknowledge(source: &str, message: &jetstream::Message) {
    if let Err(e) = message.ack().await {
        warn!(source = %source, "cannot acknowledge up to a message: {e}");
    }
}

pub(super) fn deliver_policy(deliver: &str) -> Result<DeliverPolicy, OptionError> {
    match deliver.to_ascii_lowercase().as_str() {
        "all" => Ok(DeliverPolicy::All),
        "new" => Ok(DeliverPolicy::New),
        other => Err(OptionError::invalid(
            "deliver",
            format!(
                "'{other}': a new consumer starts at 'all' (the stream's first message) or 'new'"
            ),
        )),
    }
}

#[async_trait]
impl Source for NatsSource {
    fn describe(&self) -> String {
        let what = if self.config.jetstream {
            format!(
                "stream {} consumer {}{}",
                self.config.stream.as_deref().unwrap_or_default(),
                self.durable(),
                self.config
                    .subject
                    .as_deref()
                    .map(|s| format!(" subject {s}"))
                    .unwrap_or_default()
            )
        } else {
            format!(
                "subject {}{}",
                self.config.subject.as_deref().unwrap_or_default(),
                self.config
                    .queue
                    .as_deref()
                    .map(|q| format!(" queue {q}"))
                    .unwrap_or_default()
            )
        };
        format!(
            "{} {what} ({})",
            self.server.address(),
            self.rows.describe()
        )
    }

    async fn run(mut self: Box<Self>, ctx: &mut SourceContext) -> Result<(), ConnectorError> {
        if self.config.jetstream {
            self.run_jetstream(ctx).await
        } else {
            self.run_core(ctx).await
        }
    }
}
