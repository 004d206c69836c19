//! Consumes a queue and decodes each message into a row, the routing key in the `routing_key`
//! column when the source declares one. With `--state-dir`, deliveries go through the source's
//! ingest log, as an MQTT source's QoS 1 messages do: each is acknowledged once the log is synced
//! (one `basic.ack` with `multiple` per group), the source reads the log back, a checkpoint
//! records the offset read to, and a restarted source reads again from there. The prefetch then
//! bounds only what waits for one sync, not what waits for a checkpoint. A message the broker
//! sends again (marked redelivered: its connection was lost before the acknowledgement arrived)
//! whose routing key and payload match one of the newest messages logged is acknowledged and not
//! taken twice. Without `--state-dir`, each batch is acknowledged once handed on.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use eddy_engine::hash::{fnv1a, fnv1a_of};
use eddy_engine::{ConnectorError, OptionError, Source, SourceContext, SourceSpec};
use lapin::options::BasicAckOptions;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::config::AmqpSourceConfig;
use super::consume::{self, CurrentChannel, Delivered, Status, Token, Topology};
use super::{check_url, exchange_kind, shown_address};
use crate::format::{self, DecodeOptions};
use crate::ingest_log::intake::{Acknowledge, Entry, ToLog};
use crate::ingest_log::read_back::{OpenLog, ReadsBack, ingest_log_dir, log_error};
use crate::ingest_log::{self, OpenedLog};
use crate::messages::{Message, MessageRows, Origins, origin_column};
use crate::shared::feed::{Connected, Feeds};
use crate::tasks::{cancel_and_join, join_within};

pub struct AmqpSource {
    name: String,
    config: AmqpSourceConfig,
    topology: Topology,
    rows: MessageRows,
}

/// The longest a stopping source waits for its last acknowledgements.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl AmqpSource {
    pub fn create(spec: &SourceSpec) -> Result<Box<dyn Source>, OptionError> {
        Ok(Box::new(Self::new(spec)?))
    }

    /// The source `spec` declares.
    pub fn new(spec: &SourceSpec) -> Result<Self, OptionError> {
        let (options, paths) = format::take_column_paths(spec.options, spec.schema);
        let config: AmqpSourceConfig = options.deserialize()?;
        check_url(&config.url)?;
        if config.queue.is_empty() {
            return Err(OptionError::invalid("queue", "give the queue to consume"));
        }
        let kind = exchange_kind(&config.exchange_type)?;
        if config.exchange.is_none() && config.binding_key.is_some() {
            return Err(OptionError::invalid(
                "binding_key",
                "binds the queue to an exchange: give the exchange too",
            ));
        }
        if config.prefetch == 0 {
            return Err(OptionError::invalid("prefetch", "must be at least 1"));
        }
        if config.batch_size == 0 {
            return Err(OptionError::invalid("batch_size", "must be at least 1"));
        }
        let topology = Topology {
            queue: config.queue.clone(),
            exchange: config.exchange.clone().map(|e| {
                let key = config.binding_key.clone().unwrap_or_else(|| "#".into());
                (e, kind, key)
            }),
            declare: config.declare,
            prefetch: config.prefetch,
        };
        let routing_key_column = origin_column(
            spec.schema,
            "routing_key",
            config.routing_key_column.as_deref(),
        )?;
        let decode = DecodeOptions::messages(
            config.format,
            config.delimiter,
            config.value_column.clone(),
            paths,
            config.batch_size,
            config.max_record_bytes,
        );
        let origins = Origins {
            name: "routing key",
            column: routing_key_column,
            ..Default::default()
        };
        let rows = MessageRows::new(spec.schema, origins, &decode)?;
        Ok(Self {
            name: spec.name.to_string(),
            config,
            topology,
            rows,
        })
    }

    /// The connection's task: deliveries to `deliver`, its changes of state, the current channel.
    fn consume(
        &self,
        deliver: impl FnMut(Delivered) + Send + 'static,
        stop: CancellationToken,
    ) -> (
        tokio::task::JoinHandle<()>,
        mpsc::UnboundedReceiver<Status>,
        watch::Receiver<CurrentChannel>,
    ) {
        let (status_tx, status) = mpsc::unbounded_channel();
        let (channel_tx, channel) = watch::channel(None);
        let task = tokio::spawn(consume::run(
            self.config.url.clone(),
            self.name.clone(),
            self.topology.clone(),
            deliver,
            status_tx,
            channel_tx,
            stop,
        ));
        (task, status, channel)
    }

    /// Logs a change of the connection's state and counts reconnects; fails when the broker
    /// refused the topology.
    fn note_status(&self, status: Status, ctx: &SourceContext) -> Result<(), ConnectorError> {
        self.note_status_of(status, ctx.name(), &ctx.metrics().reconnects)
    }

    /// [`Self::note_status`] for source `name`, whose reconnects `reconnects` counts.
    fn note_status_of(
        &self,
        status: Status,
        name: &str,
        reconnects: &AtomicU64,
    ) -> Result<(), ConnectorError> {
        let address = shown_address(&self.config.url);
        match status {
            Status::Connected { reconnected: true } => {
                let n = reconnects.fetch_add(1, Ordering::Relaxed) + 1;
                info!(source = %name, "reconnected to {address} ({n} reconnects so far)");
            }
            Status::Connected { reconnected: false } => {
                info!(source = %name, "consuming queue {} at {address}", self.config.queue);
            }
            Status::Failed(e, delay) => {
                warn!(source = %name, "{e}; connecting again in {delay:.1?}");
            }
            Status::Refused(e) => {
                return Err(ConnectorError::fatal(format!(
                    "the broker at {address} refused: {e}"
                )));
            }
        }
        Ok(())
    }

    /// Remembers as many of the newest messages as can be sent again.
    fn recent_messages(&self) -> RecentMessages {
        RecentMessages::new(usize::from(self.config.prefetch) * 4)
    }

    /// Without a state directory: each batch acknowledged once handed on.
    async fn run_direct(&mut self, ctx: &mut SourceContext) -> Result<(), ConnectorError> {
        let (tx, mut deliveries) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let (mut task, mut status, channel) = self.consume(
            move |d| {
                let _ = tx.send(d);
            },
            stop.clone(),
        );
        let mut pending: Vec<Delivered> = Vec::with_capacity(self.config.batch_size);
        let mut linger = tokio::time::interval(self.config.linger);
        linger.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = ctx.shutdown().clone();
        let result = loop {
            let full = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ok(()),
                Some(s) = status.recv() => {
                    if let Err(e) = self.note_status(s, ctx) {
                        break Err(e);
                    }
                    false
                }
                Some(d) = deliveries.recv() => {
                    pending.push(d);
                    pending.len() >= self.config.batch_size
                }
                _ = linger.tick() => true,
            };
            if full
                && !pending.is_empty()
                && let Err(e) = self.hand_on_direct(&mut pending, &channel, ctx).await
            {
                break Err(e);
            }
        };
        if result.is_ok() && !pending.is_empty() {
            self.hand_on_direct(&mut pending, &channel, ctx).await?;
        }
        stop.cancel();
        join_within(&mut task, STOP_WAIT).await;
        result
    }

    async fn hand_on_direct(
        &mut self,
        pending: &mut Vec<Delivered>,
        channel: &watch::Receiver<CurrentChannel>,
        ctx: &mut SourceContext,
    ) -> Result<(), ConnectorError> {
        let taken = std::mem::take(pending);
        let messages: Vec<Message> = taken
            .iter()
            .map(|d| Message {
                topic: &d.routing_key,
                payload: &d.payload,
                received: d.received,
            })
            .collect();
        self.rows.hand_on(&messages, None, ctx).await?;
        let tokens = taken.iter().map(|d| d.token).collect();
        let _ = AmqpAcks(channel.clone()).acknowledge(tokens).await;
        Ok(())
    }

    /// Deliveries through the ingest log in `dir` (see the module's comment).
    async fn run_logged(
        &mut self,
        ctx: &mut SourceContext,
        dir: PathBuf,
    ) -> Result<(), ConnectorError> {
        let mut recent = self.recent_messages();
        let log = OpenLog::open(dir, "AMQP", ctx, |r| {
            recent.note(message_hash(r.origin, r.payload))
        })?;
        let (to_log, queue) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let deliver = to_log_deliveries(self.name.clone(), recent, to_log);
        let (mut task, mut status, channel) = self.consume(deliver, stop.clone());
        let mut run = log.start(
            queue,
            AmqpAcks(channel),
            self.config.max_log_bytes as u64,
            ctx,
        );
        let (batch_size, linger) = (self.config.batch_size, self.config.linger);
        let result = run
            .read_back(self, &mut status, batch_size, linger, ctx)
            .await;
        // The writer acknowledges what it has synced, then the connection closes; what arrived
        // but is not synced is the broker's to send again.
        run.stop().await;
        stop.cancel();
        join_within(&mut task, STOP_WAIT).await;
        result
    }
}

/// Queues each delivery for the ingest log's writer; a delivery the broker sends again that
/// `recent` shows is in the log already is only acknowledged.
fn to_log_deliveries(
    source: String,
    mut recent: RecentMessages,
    to_log: mpsc::UnboundedSender<ToLog<Token>>,
) -> impl FnMut(Delivered) + Send + 'static {
    move |d: Delivered| {
        let hash = message_hash(&d.routing_key, &d.payload);
        let queued = if d.redelivered && recent.contains(hash) {
            debug!(source = %source, "a message sent again is in the ingest log already: acknowledged, not taken twice");
            ToLog::AckOnly(d.token)
        } else {
            recent.note(hash);
            ToLog::Append(Entry {
                id: 0,
                received: d.received,
                origin: d.routing_key,
                payload: d.payload,
                ack: Some(d.token),
            })
        };
        // Once the writer has stopped, what arrives is not acknowledged: the broker sends it
        // again.
        let _ = to_log.send(queued);
    }
}

impl Feeds for AmqpSource {
    type Status = Status;
    type Acks = AmqpAcks;
    type Seen = RecentMessages;

    fn open_log(&mut self, dir: &Path) -> Result<(OpenedLog, RecentMessages), ConnectorError> {
        let mut recent = self.recent_messages();
        let opened = ingest_log::open(dir, |r| recent.note(message_hash(r.origin, r.payload)))
            .map_err(log_error)?;
        Ok((opened, recent))
    }

    fn connect(
        &mut self,
        recent: RecentMessages,
        to_log: mpsc::UnboundedSender<ToLog<Token>>,
    ) -> Result<Connected<AmqpAcks, Status>, ConnectorError> {
        let stop = CancellationToken::new();
        let deliver = to_log_deliveries(self.name.clone(), recent, to_log);
        let (task, status, channel) = self.consume(deliver, stop.clone());
        Ok(Connected {
            acks: AmqpAcks(channel),
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
        self.note_status_of(status, name, reconnects)
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

/// Acknowledges a group with one `basic.ack` (`multiple`) of its newest delivery on the current
/// connection; deliveries of a connection since lost are the broker's to send again.
pub struct AmqpAcks(watch::Receiver<CurrentChannel>);

impl Acknowledge for AmqpAcks {
    type Token = Token;

    async fn acknowledge(&mut self, tokens: Vec<Token>) -> Result<(), String> {
        let current = self.0.borrow().clone();
        let Some((connection, channel)) = current else {
            return Ok(());
        };
        let Some(newest) = tokens
            .iter()
            .filter(|t| t.connection == connection)
            .map(|t| t.tag)
            .max()
        else {
            return Ok(());
        };
        if let Err(e) = channel
            .basic_ack(newest, BasicAckOptions { multiple: true })
            .await
        {
            // The connection is going: its deliveries come again and are recognized.
            debug!("cannot acknowledge up to delivery {newest}: {e}");
        }
        Ok(())
    }
}

fn message_hash(routing_key: &[u8], payload: &[u8]) -> u64 {
    fnv1a(fnv1a_of(routing_key), payload)
}

/// Hashes of the newest messages logged: a redelivered message is one of the messages the broker
/// had sent and not had acknowledged, at most `prefetch` of them, all among the newest logged.
pub struct RecentMessages {
    order: VecDeque<u64>,
    counts: HashMap<u64, u32>,
    capacity: usize,
}

impl RecentMessages {
    fn new(capacity: usize) -> Self {
        Self {
            order: VecDeque::with_capacity(capacity),
            counts: HashMap::with_capacity(capacity),
            capacity,
        }
    }

    fn note(&mut self, hash: u64) {
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
            && let Some(n) = self.counts.get_mut(&old)
        {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&old);
            }
        }
        self.order.push_back(hash);
        *self.counts.entry(hash).or_default() += 1;
    }

    fn contains(&self, hash: u64) -> bool {
        self.counts.contains_key(&hash)
    }
}

impl ReadsBack for AmqpSource {
    type Status = Status;

    fn rows(&mut self) -> &mut MessageRows {
        &mut self.rows
    }

    fn on_status(&mut self, status: Status, ctx: &SourceContext) -> Result<(), ConnectorError> {
        self.note_status(status, ctx)
    }
}

#[async_trait]
impl Source for AmqpSource {
    fn describe(&self) -> String {
        let bound = match &self.topology.exchange {
            Some((e, _, key)) => format!(
                " bound to {} exchange {e} by '{key}'",
                self.config.exchange_type
            ),
            None => String::new(),
        };
        format!(
            "{} queue {}{bound} prefetch {} ({})",
            shown_address(&self.config.url),
            self.config.queue,
            self.config.prefetch,
            self.rows.describe()
        )
    }

    async fn run(mut self: Box<Self>, ctx: &mut SourceContext) -> Result<(), ConnectorError> {
        match ctx.durable_dir() {
            Some(dir) => {
                let dir = ingest_log_dir(dir);
                self.run_logged(ctx, dir).await
            }
            None => self.run_direct(ctx).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_messages_are_remembered() {
        let mut r = RecentMessages::new(2);
        r.note(1);
        r.note(2);
        r.note(2);
        assert!(!r.contains(1));
        assert!(r.contains(2));
        r.note(3);
        assert!(r.contains(2) && r.contains(3));
        r.note(4);
        assert!(!r.contains(2));
    }
}
