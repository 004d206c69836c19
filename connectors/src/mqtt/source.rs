//! Subscribes to a topic filter and decodes each message (one JSON object) into a row; rows are
//! handed on every `batch_size` messages or `linger`, whichever comes first. The message's topic
//! fills the `topic` column when the source declares one, so a device id can come from the topic.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use async_trait::async_trait;
use eddy_engine::{ConnectorError, OptionError, Source, SourceContext, SourceSpec};
use rumqttc::{AsyncClient, Event, Packet, Publish, QoS, SubscribeReasonCode};
use tracing::{debug, info, warn};

use super::config::MqttSourceConfig;
use super::connection::{Backoff, Connection, ConnectionOptions, qos};
use crate::format::json::JsonDecoder;

pub struct MqttSource {
    config: MqttSourceConfig,
    connection: Connection,
    qos: QoS,
    schema: SchemaRef,
    /// Index of the column that receives the topic.
    topic_column: Option<usize>,
    decoder: JsonDecoder,
}

impl MqttSource {
    pub fn create(spec: &SourceSpec) -> Result<Box<dyn Source>, OptionError> {
        let config: MqttSourceConfig = spec.options.deserialize()?;
        let connection = Connection::new(ConnectionOptions {
            url: &config.url,
            client_id: config.client_id.as_deref(),
            username: config.username.as_deref(),
            password: config.password.as_deref(),
            password_env: config.password_env.as_deref(),
            ca_file: config.ca_file.as_deref(),
            keep_alive: config.keep_alive,
            clean_session: config.clean_session,
            name: spec.name,
        })?;
        if !rumqttc::valid_filter(&config.topic) {
            return Err(OptionError::invalid(
                "topic",
                format!(
                    "'{}' is not a valid topic filter ('#' only at the end, '+' a whole level)",
                    config.topic
                ),
            ));
        }
        if config.batch_size == 0 {
            return Err(OptionError::invalid("batch_size", "must be at least 1"));
        }
        let topic_column = match &config.topic_column {
            Some(name) => Some(spec.schema.index_of(name).map_err(|_| {
                OptionError::invalid(
                    "topic_column",
                    format!("the source declares no column '{name}'"),
                )
            })?),
            None => spec.schema.index_of("topic").ok(),
        };
        if let Some(i) = topic_column
            && spec.schema.field(i).data_type() != &DataType::Utf8
        {
            return Err(OptionError::invalid(
                "topic_column",
                format!(
                    "column '{}' receives the topic, so it must be TEXT",
                    spec.schema.field(i).name()
                ),
            ));
        }
        let payload_fields: Vec<_> = spec
            .schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != topic_column)
            .map(|(_, f)| Arc::clone(f))
            .collect();
        let decoder = JsonDecoder::new(Arc::new(Schema::new(payload_fields)), config.batch_size)
            .map(|d| d.with_max_record_bytes(config.max_record_bytes))
            .map_err(|e| OptionError::Other(e.to_string()))?;
        Ok(Box::new(Self {
            qos: qos(config.qos)?,
            config,
            connection,
            schema: Arc::clone(spec.schema),
            topic_column,
            decoder,
        }))
    }

    /// Decodes the pending messages and hands the rows on; bad messages become dead letters.
    /// With acknowledgements after checkpoints, the messages then wait in `acks` for the
    /// checkpoint that covers them.
    async fn hand_on(
        &mut self,
        pending: &mut Vec<Publish>,
        acks: &mut Option<Acks>,
        ctx: &mut SourceContext,
    ) -> Result<(), ConnectorError> {
        // With acknowledgements after checkpoints, a checkpoint taken after these rows records
        // the messages it covers that may still be unacknowledged: a restarted instance drops
        // their redeliveries (see [`Acks::redelivered`]).
        let ids: Vec<MessageId> = match acks {
            Some(_) => pending.iter().map(message_id).collect(),
            None => Vec::new(),
        };
        let position = acks.as_ref().map(|a| a.position(&ids));
        self.decode_and_send(pending, position, ctx).await?;
        match acks {
            Some(acks) if !pending.is_empty() => {
                // Sent before the next barrier at the latest: the checkpoint after the last
                // barrier sent covers them.
                let covered_by = ctx.last_barrier().await + 1;
                acks.waiting.extend(
                    ids.into_iter()
                        .zip(pending.drain(..))
                        .map(|(id, p)| (covered_by, id, p)),
                );
                acks.ask_if_full(ctx);
            }
            _ => pending.clear(),
        }
        Ok(())
    }

    async fn decode_and_send(
        &mut self,
        pending: &[Publish],
        position: Option<serde_json::Value>,
        ctx: &mut SourceContext,
    ) -> Result<(), ConnectorError> {
        if pending.is_empty() {
            return match position {
                Some(p) => ctx.flush_from(p).await,
                None => ctx.flush().await,
            };
        }
        let records: Vec<&[u8]> = pending.iter().map(|p| p.payload.as_ref()).collect();
        let decoded = self
            .decoder
            .decode(&records)
            .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        for (i, why) in &decoded.rejected {
            ctx.dead_letter(&pending[*i].topic, &pending[*i].payload, why);
        }
        let batch = match (decoded.batch, self.topic_column) {
            (Some(b), Some(at)) => {
                let topics: StringArray = decoded
                    .accepted
                    .iter()
                    .map(|&i| Some(pending[i].topic.as_str()))
                    .collect();
                let mut columns: Vec<ArrayRef> = b.columns().to_vec();
                columns.insert(at, Arc::new(topics));
                Some(
                    RecordBatch::try_new(Arc::clone(&self.schema), columns)
                        .map_err(|e| ConnectorError::fatal(e.to_string()))?,
                )
            }
            (b, _) => b,
        };
        match (batch, position) {
            (Some(b), position) => ctx.send_from(b, position).await,
            (None, Some(p)) => ctx.flush_from(p).await,
            (None, None) => ctx.flush().await,
        }
    }
}

#[async_trait]
impl Source for MqttSource {
    fn describe(&self) -> String {
        let topic_column = self
            .topic_column
            .map(|i| format!(", topic -> column {}", self.schema.field(i).name()))
            .unwrap_or_default();
        format!(
            "{} topic {} qos {} (JSON messages{topic_column})",
            self.connection.address, self.config.topic, self.config.qos
        )
    }

    async fn run(mut self: Box<Self>, ctx: &mut SourceContext) -> Result<(), ConnectorError> {
        let mut options = self
            .connection
            .mqtt_options()
            .map_err(ConnectorError::fatal)?;
        // With checkpoints and QoS 1, a message is acknowledged only once a checkpoint covers
        // it: the broker redelivers what a crashed instance had not made durable.
        let mut acks = match ctx.completed_checkpoints() {
            Some(completed) if self.qos != QoS::AtMostOnce => Some(Acks {
                completed,
                waiting: std::collections::VecDeque::new(),
                max: self.config.max_unacked.max(1),
                asked: false,
                restored: restored_unacked(ctx)?,
            }),
            _ => None,
        };
        options.set_manual_acks(acks.is_some());
        let (client, events) = AsyncClient::new(options, 64);
        let address = self.connection.address.to_string();
        let topic = self.config.topic.clone();
        let mut pending: Vec<Publish> = Vec::with_capacity(self.config.batch_size);
        let mut linger = tokio::time::interval(self.config.linger);
        linger.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = ctx.shutdown().clone();
        // rumqttc's event loop must not be dropped in the middle of a poll (a connection being
        // made would be lost): it runs in a task of its own, and hands its events over.
        let (polled_tx, mut polled) = tokio::sync::mpsc::channel(1024);
        let poller = tokio::spawn(poll_events(events, polled_tx));
        let mut connected_before = false;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(done) = completed_checkpoint(&mut acks) => {
                    if let Some(acks) = &mut acks {
                        acks.acknowledge(done, &client).await;
                        // Still full: the checkpoint began before these arrived.
                        acks.ask_if_full(ctx);
                    }
                }
                event = polled.recv() => match event {
                    None => break,
                    Some(Polled::Event(Event::Incoming(Packet::Publish(p)))) => {
                        if let Some(acks) = &mut acks
                            && acks.redelivered(&p, &pending, &client).await
                        {
                            continue;
                        }
                        pending.push(p);
                        if pending.len() >= self.config.batch_size {
                            self.hand_on(&mut pending, &mut acks, ctx).await?;
                        }
                    }
                    Some(Polled::Event(Event::Incoming(Packet::ConnAck(connack)))) => {
                        // Without the old session the broker forgot the messages waiting for an
                        // acknowledgement, and their packet ids will be given to new ones.
                        if let Some(acks) = &mut acks
                            && !connack.session_present
                        {
                            acks.waiting.clear();
                            acks.restored.clear();
                        }
                        if connected_before {
                            let n = ctx.metrics().reconnects.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                            info!(source = %ctx.name(), "reconnected to {address} ({n} reconnects so far)");
                        } else {
                            info!(source = %ctx.name(), "connected to {address}");
                        }
                        connected_before = true;
                        client.try_subscribe(topic.clone(), self.qos).map_err(|e| {
                            ConnectorError::fatal(format!("cannot subscribe to {topic}: {e}"))
                        })?;
                    }
                    Some(Polled::Event(Event::Incoming(Packet::SubAck(ack)))) => {
                        if ack.return_codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure)) {
                            poller.abort();
                            return Err(ConnectorError::fatal(format!(
                                "the broker at {address} refused the subscription to {topic}"
                            )));
                        }
                        info!(source = %ctx.name(), "subscribed to {topic}");
                    }
                    Some(Polled::Event(_)) => {}
                    Some(Polled::Failed(e, delay)) => {
                        self.hand_on(&mut pending, &mut acks, ctx).await?;
                        warn!(source = %ctx.name(), "cannot reach the broker at {address}: {e}; retrying in {delay:.1?}");
                    }
                },
                _ = linger.tick() => self.hand_on(&mut pending, &mut acks, ctx).await?,
            }
        }
        self.hand_on(&mut pending, &mut acks, ctx).await?;
        // Messages handed on but not covered by a checkpoint stay unacknowledged: the broker
        // sends them again to the next session, which resumes from the last checkpoint.
        poller.abort();
        let _ = client.try_disconnect();
        Ok(())
    }
}

/// Messages handed on and waiting for the checkpoint that covers them to be acknowledged.
struct Acks {
    completed: tokio::sync::watch::Receiver<u64>,
    /// Each message with the id of the first checkpoint that covers it, oldest first.
    waiting: std::collections::VecDeque<(u64, MessageId, Publish)>,
    /// `max_unacked`: this many waiting, a checkpoint is asked for.
    max: usize,
    /// A checkpoint has been asked for and none has completed since.
    asked: bool,
    /// Messages the restored checkpoint covers that may not have been acknowledged before the
    /// last instance stopped: the broker sends them again.
    restored: std::collections::HashSet<MessageId>,
}

/// A message as a broker sends it again: an unacknowledged QoS 1 message goes out again with
/// its packet id and the DUP flag (MQTT 3.1.1, 4.4); the topic and payload are hashed in.
type MessageId = (u16, u64);

fn message_id(p: &Publish) -> MessageId {
    let hash = eddy_engine::runtime::fnv1a(0xcbf2_9ce4_8422_2325, p.topic.as_bytes());
    (p.pkid, eddy_engine::runtime::fnv1a(hash, &p.payload))
}

/// The messages a restored checkpoint records as covered but perhaps unacknowledged.
fn restored_unacked(
    ctx: &SourceContext,
) -> Result<std::collections::HashSet<MessageId>, ConnectorError> {
    ctx.resume_from()
        .map_or_else(|| Ok(Default::default()), unacked_in)
}

/// The `unacked` list of an MQTT source's checkpoint position (see [`Acks::position`]).
fn unacked_in(
    position: &serde_json::Value,
) -> Result<std::collections::HashSet<MessageId>, ConnectorError> {
    let ids: Vec<MessageId> = position
        .get("unacked")
        .cloned()
        .and_then(|u| serde_json::from_value(u).ok())
        .ok_or_else(|| {
            ConnectorError::fatal(format!(
                "the checkpoint's position {position} is not an MQTT position"
            ))
        })?;
    Ok(ids.into_iter().collect())
}

impl Acks {
    /// The broker's in-flight window is full, or soon: asks for a checkpoint (once until one
    /// completes), which lets the broker go on.
    fn ask_if_full(&mut self, ctx: &SourceContext) {
        if self.waiting.len() >= self.max && !self.asked {
            self.asked = true;
            ctx.request_checkpoint();
        }
    }

    /// What a checkpoint taken after the messages `pending` (their ids) are handed on records:
    /// every message it covers that may not be acknowledged yet.
    fn position(&self, pending: &[MessageId]) -> serde_json::Value {
        let unacked: Vec<MessageId> = self
            .restored
            .iter()
            .chain(self.waiting.iter().map(|(_, id, _)| id))
            .chain(pending)
            .copied()
            .collect();
        serde_json::json!({ "unacked": unacked })
    }

    /// `p` is a message sent again that was already taken: one the restored checkpoint covers
    /// (acknowledged now, its rows are in the restored state) or one this instance has handed on
    /// and not acknowledged yet (after a reconnect; acknowledged with its checkpoint).
    async fn redelivered(
        &mut self,
        p: &Publish,
        pending: &[Publish],
        client: &AsyncClient,
    ) -> bool {
        if !p.dup {
            // A broker resends what was in flight first, then goes on with new messages: the
            // restored ones not sent again by now had been acknowledged.
            if !self.restored.is_empty() {
                self.restored.clear();
            }
            return false;
        }
        let id = message_id(p);
        if self.restored.remove(&id) {
            debug!(
                "message {} on {} sent again is in the restored checkpoint: acknowledged, not taken again",
                p.pkid, p.topic
            );
            if let Err(e) = client.ack(p).await {
                warn!("cannot acknowledge a message: {e}; the broker will send it again");
            }
            return true;
        }
        let taken = self.waiting.iter().any(|(_, w, _)| *w == id)
            || pending.iter().any(|w| message_id(w) == id);
        if taken {
            debug!(
                "message {} on {} sent again was taken already: not taken twice",
                p.pkid, p.topic
            );
        }
        taken
    }

    /// Checkpoint `done` has completed: acknowledges every message it covers.
    async fn acknowledge(&mut self, done: u64, client: &AsyncClient) {
        self.asked = false;
        while self.waiting.front().is_some_and(|(id, _, _)| *id <= done) {
            if let Some((_, _, p)) = self.waiting.pop_front()
                && let Err(e) = client.ack(&p).await
            {
                warn!("cannot acknowledge a message: {e}; the broker will send it again");
            }
        }
    }
}

/// The id of the next completed checkpoint; never, without acknowledgements after checkpoints.
async fn completed_checkpoint(acks: &mut Option<Acks>) -> Option<u64> {
    match acks {
        Some(a) => match a.completed.changed().await {
            Ok(()) => Some(*a.completed.borrow_and_update()),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// What the event-loop task hands over.
enum Polled {
    Event(Event),
    /// The connection failed; the next attempt comes after the delay.
    Failed(String, std::time::Duration),
}

/// Polls rumqttc's event loop until the source stops listening, waiting with backoff (and
/// jitter) between failed connection attempts.
async fn poll_events(mut events: rumqttc::EventLoop, out: tokio::sync::mpsc::Sender<Polled>) {
    let mut backoff = Backoff::default();
    loop {
        match events.poll().await {
            Ok(event) => {
                if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                    backoff.reset();
                }
                if out.send(Polled::Event(event)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let delay = backoff.next_delay();
                if out
                    .send(Polled::Failed(e.to_string(), delay))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(pkid: u16, payload: &str, dup: bool) -> Publish {
        let mut p = Publish::new(
            "plant/reading",
            QoS::AtLeastOnce,
            payload.as_bytes().to_vec(),
        );
        p.pkid = pkid;
        p.dup = dup;
        p
    }

    fn acks(restored: &[&Publish], waiting: &[&Publish]) -> Acks {
        let (_, completed) = tokio::sync::watch::channel(0);
        Acks {
            completed,
            waiting: waiting
                .iter()
                .map(|&p| (1, message_id(p), p.clone()))
                .collect(),
            max: 20,
            asked: false,
            restored: restored.iter().map(|&p| message_id(p)).collect(),
        }
    }

    #[test]
    fn a_position_lists_every_message_not_known_to_be_acknowledged_and_reads_back() {
        let (a, b, c) = (
            message(1, "a", false),
            message(2, "b", false),
            message(3, "c", false),
        );
        let acks = acks(&[&a], &[&b]);
        let position = acks.position(&[message_id(&c)]);
        let read = unacked_in(&position).expect("an MQTT position");
        let expected: std::collections::HashSet<MessageId> =
            [&a, &b, &c].into_iter().map(message_id).collect();
        assert_eq!(read, expected);
        assert!(unacked_in(&serde_json::json!({"offset": 10})).is_err());
    }

    #[tokio::test]
    async fn redeliveries_of_messages_taken_are_recognized() {
        let options = rumqttc::MqttOptions::new("eddy-unit", "127.0.0.1", 1);
        // The event loop is never polled: acknowledgements queue in the client's channel.
        let (client, _events) = AsyncClient::new(options, 16);
        let restored = message(7, r#"{"temp":1}"#, false);
        let waiting = message(8, r#"{"temp":2}"#, false);
        let mut acks = acks(&[&restored], &[&waiting]);

        let again = |p: &Publish| Publish {
            dup: true,
            ..p.clone()
        };
        assert!(acks.redelivered(&again(&restored), &[], &client).await);
        assert!(acks.restored.is_empty(), "taken once only");
        assert!(acks.redelivered(&again(&waiting), &[], &client).await);
        let pending = message(9, r#"{"temp":3}"#, false);
        assert!(
            acks.redelivered(&again(&pending), std::slice::from_ref(&pending), &client)
                .await
        );
        // Same packet id, other payload: a different message.
        assert!(
            !acks
                .redelivered(&message(8, r#"{"temp":5}"#, true), &[], &client)
                .await
        );
        // Not a redelivery: taken, and the restored messages not sent again by now are forgotten.
        let mut acks = self::acks(&[&restored], &[]);
        assert!(!acks.redelivered(&waiting, &[], &client).await);
        assert!(acks.restored.is_empty());
    }
}
