//! Reads a topic as a member of a consumer group: the group's coordinator assigns the partitions.
//! A checkpoint records, per partition, the offset of the next message to read; offsets are
//! committed to the group only once a completed checkpoint covers them (at once, without
//! checkpoints). When partitions are assigned (at start, and after every rebalance), each starts
//! at the offset this source has read to, else the checkpoint's, else the group's committed offset
//! (else `start`): a restarted Eddy goes on exactly after what its checkpoint covers, even if it
//! was killed before the commit.
//!
//! Each partition is a split of the source for its watermark: the watermark follows the partition
//! furthest behind, so a partition read after another (a backlog is fetched partition by
//! partition) is not late. A partition read to its end holds the watermark back no more until it
//! has messages again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use eddy_engine::{ConnectorError, OptionError, Source, SourceContext, SourceSpec};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::config::KafkaSourceConfig;
use super::{Repeats, client_config};
use crate::checkpoints::Covered;
use crate::format::{self, DecodeOptions};
use crate::messages::{Message, MessageRows, Origins, origin_column};

pub struct KafkaSource {
    name: String,
    config: KafkaSourceConfig,
    client: rdkafka::ClientConfig,
    rows: MessageRows,
}

/// Per partition, the offset of the next message to read: what a checkpoint records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Offsets {
    partitions: BTreeMap<i32, i64>,
}

/// A message taken from the broker, before decoding.
struct Taken {
    key: Vec<u8>,
    payload: Vec<u8>,
    partition: i32,
    offset: i64,
    timestamp: i64,
}

/// The consumer's context: places partitions at the offsets read to when they are assigned.
struct Placement {
    source: String,
    topic: String,
    read_to: Arc<Mutex<Offsets>>,
    /// Partitions assigned (`true`) and revoked, for the watermark's splits.
    assignments: tokio::sync::mpsc::UnboundedSender<(i32, bool)>,
    repeats: Repeats,
}

impl ClientContext for Placement {
    /// librdkafka reports each partition read to its end (which the source handles as it reads)
    /// and the brokers going away (which it rides out, reconnecting) as errors: the first is
    /// not one, the second a warning.
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_)) {
            return;
        }
        let text = format!("{error}: {reason}");
        if self.repeats.first(&text) {
            warn!(source = %self.source, "{text}");
        } else {
            debug!(source = %self.source, "{text}");
        }
    }
}

impl ConsumerContext for Placement {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let read_to = self
                    .read_to
                    .lock()
                    .map(|o| o.partitions.clone())
                    .unwrap_or_default();
                let mut placed = Vec::new();
                for (partition, offset) in read_to {
                    if tpl.find_partition(&self.topic, partition).is_some()
                        && tpl
                            .set_partition_offset(&self.topic, partition, Offset::Offset(offset))
                            .is_ok()
                    {
                        placed.push(format!("{partition}@{offset}"));
                    }
                }
                info!(
                    source = %self.source,
                    "assigned {} partitions of {}{}",
                    tpl.count(),
                    self.topic,
                    if placed.is_empty() {
                        String::new()
                    } else {
                        format!(", resuming at {}", placed.join(", "))
                    }
                );
                if let Err(e) = consumer.assign(tpl) {
                    warn!(source = %self.source, "cannot take the assigned partitions: {e}");
                }
                for e in tpl.elements() {
                    let _ = self.assignments.send((e.partition(), true));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                debug!(source = %self.source, "partitions revoked");
                for e in tpl.elements() {
                    let _ = self.assignments.send((e.partition(), false));
                }
                let _ = consumer.unassign();
            }
            other => {
                warn!(source = %self.source, "rebalancing failed: {other:?}");
                let _ = consumer.unassign();
            }
        }
    }
}

impl KafkaSource {
    pub fn create(spec: &SourceSpec) -> Result<Box<dyn Source>, OptionError> {
        let (options, paths) = format::take_column_paths(spec.options, spec.schema);
        let config: KafkaSourceConfig = options.deserialize()?;
        let mut client = client_config(&config.bootstrap_servers, config.properties.as_deref())?;
        let start = match config.start.to_ascii_lowercase().as_str() {
            "earliest" => "earliest",
            "latest" => "latest",
            other => {
                return Err(OptionError::invalid(
                    "start",
                    format!("'{other}': 'earliest' or 'latest'"),
                ));
            }
        };
        if config.topic.is_empty() {
            return Err(OptionError::invalid("topic", "give the topic to read"));
        }
        if config.batch_size == 0 {
            return Err(OptionError::invalid("batch_size", "must be at least 1"));
        }
        let group = config
            .group_id
            .clone()
            .unwrap_or_else(|| format!("eddy-{}", spec.name));
        client
            .set("group.id", &group)
            .set("client.id", format!("eddy-{}", spec.name))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", start);
        if let Some(id) = &config.instance_id {
            client.set("group.instance.id", id);
        }
        let key_column = origin_column(spec.schema, "key", config.key_column.as_deref())?;
        let decode = DecodeOptions::messages(
            config.format,
            config.delimiter,
            config.value_column.clone(),
            paths,
            config.batch_size,
            config.max_record_bytes,
        );
        let origins = Origins {
            name: "key",
            column: key_column,
            ..Default::default()
        };
        let rows = MessageRows::new(spec.schema, origins, &decode)?;
        Ok(Box::new(Self {
            name: spec.name.to_string(),
            config,
            client,
            rows,
        }))
    }

    fn group(&self) -> String {
        self.client.get("group.id").unwrap_or_default().to_string()
    }

    /// Decodes `taken` and hands it on, partition by partition (each a split of the watermark);
    /// the source is at `read_to` after each partition's messages.
    async fn hand_on(
        &mut self,
        taken: &[Taken],
        read_to: &mut Offsets,
        ctx: &mut SourceContext,
    ) -> Result<(), ConnectorError> {
        let mut partitions: Vec<i32> = taken.iter().map(|t| t.partition).collect();
        partitions.sort_unstable();
        partitions.dedup();
        for partition in partitions {
            let of: Vec<&Taken> = taken.iter().filter(|t| t.partition == partition).collect();
            let messages: Vec<Message> = of
                .iter()
                .map(|t| Message {
                    topic: &t.key,
                    payload: &t.payload,
                    received: t.timestamp,
                })
                .collect();
            let topic = &self.config.topic;
            let batch = self.rows.decode(&messages, ctx, |i| {
                format!("{topic}/{partition}@{}", of[i].offset)
            })?;
            if let Some(last) = of.last() {
                read_to.partitions.insert(partition, last.offset + 1);
            }
            let position = serde_json::to_value(&*read_to)
                .map_err(|e| ConnectorError::fatal(e.to_string()))?;
            match batch {
                Some(b) => ctx.send_split(b, partition as u32, Some(position)).await?,
                None => ctx.flush_from(position).await?,
            }
        }
        Ok(())
    }
}

/// Partitions read to their end, each retired from the watermark once it has been silent for
/// the timeout: a partition that caught up with its producers for a moment would otherwise let
/// the others move the watermark past the messages it is about to get.
struct IdlePartitions {
    timeout: Duration,
    /// Since when each partition at its end has been there; `None` once retired.
    at_end: BTreeMap<i32, Option<Instant>>,
}

impl IdlePartitions {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            at_end: BTreeMap::new(),
        }
    }

    fn at_end(&mut self, partition: i32) {
        self.at_end
            .entry(partition)
            .or_insert_with(|| Some(Instant::now()));
    }

    fn message(&mut self, partition: i32) {
        self.at_end.remove(&partition);
    }

    /// The partitions silent at their end for the timeout, not retired before.
    fn silent(&mut self) -> Vec<i32> {
        let now = Instant::now();
        let mut silent = Vec::new();
        for (partition, since) in &mut self.at_end {
            if since.is_some_and(|t| now.duration_since(t) >= self.timeout) {
                *since = None;
                silent.push(*partition);
            }
        }
        silent
    }
}

/// Commits `offsets` (the next message to read, per partition) to the group.
fn commit(source: &str, consumer: &StreamConsumer<Placement>, topic: &str, offsets: &Offsets) {
    let mut tpl = TopicPartitionList::new();
    for (&partition, &offset) in &offsets.partitions {
        if let Err(e) = tpl.add_partition_offset(topic, partition, Offset::Offset(offset)) {
            warn!(source = %source, "offset {offset} of partition {partition}: {e}");
        }
    }
    if tpl.count() == 0 {
        return;
    }
    // A commit that fails is made good by the next one; a restart resumes from the checkpoint.
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        debug!(source = %source, "cannot commit offsets: {e}");
    }
}

#[async_trait]
impl Source for KafkaSource {
    fn describe(&self) -> String {
        format!(
            "{} topic {} group {} ({})",
            self.config.bootstrap_servers,
            self.config.topic,
            self.group(),
            self.rows.describe()
        )
    }

    async fn run(mut self: Box<Self>, ctx: &mut SourceContext) -> Result<(), ConnectorError> {
        let resumed: Offsets = match ctx.resume_from() {
            Some(p) => serde_json::from_value(p.clone()).map_err(|_| {
                ConnectorError::fatal(format!(
                    "the checkpoint's position {p} is not a position in a Kafka topic"
                ))
            })?,
            None => Offsets::default(),
        };
        let read_to = Arc::new(Mutex::new(resumed.clone()));
        let (assignments_tx, mut assignments) = tokio::sync::mpsc::unbounded_channel();
        let placement = Placement {
            source: self.name.clone(),
            topic: self.config.topic.clone(),
            read_to: Arc::clone(&read_to),
            assignments: assignments_tx,
            repeats: Repeats::default(),
        };
        let consumer: StreamConsumer<Placement> = self
            .client
            .create_with_context(placement)
            .map_err(|e| ConnectorError::fatal(format!("cannot make a Kafka consumer: {e}")))?;
        consumer.subscribe(&[&self.config.topic]).map_err(|e| {
            ConnectorError::fatal(format!("cannot subscribe to {}: {e}", self.config.topic))
        })?;
        info!(source = %self.name, "joining group {} for topic {}", self.group(), self.config.topic);
        let topic = self.config.topic.clone();
        let mut position = resumed;
        let mut covered: Covered<Offsets> = Covered::new(ctx);
        let mut pending: Vec<Taken> = Vec::with_capacity(self.config.batch_size);
        // Partitions read to their end, and since when; retired once silent long enough.
        let mut idle = IdlePartitions::new(self.config.partition_idle_timeout);
        let mut linger = tokio::time::interval(self.config.linger);
        linger.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = ctx.shutdown().clone();
        loop {
            let hand_on = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                done = covered.next_completed() => {
                    if let Some(offsets) = covered.completed(done) {
                        commit(&self.name, &consumer, &topic, &offsets);
                    }
                    false
                }
                Some((partition, assigned)) = assignments.recv() => {
                    if assigned {
                        ctx.add_split(partition as u32).await;
                    } else {
                        ctx.retire_split(partition as u32).await?;
                    }
                    false
                }
                message = consumer.recv() => {
                    match message {
                        Err(KafkaError::PartitionEOF(partition)) => idle.at_end(partition),
                        Ok(m) => {
                            idle.message(m.partition());
                            pending.push(Taken {
                                key: m.key().map(<[u8]>::to_vec).unwrap_or_default(),
                                payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                                partition: m.partition(),
                                offset: m.offset(),
                                timestamp: m
                                    .timestamp()
                                    .to_millis()
                                    .unwrap_or_else(eddy_engine::time::now_millis),
                            });
                        }
                        Err(e) => warn!(source = %self.name, "reading {topic}: {e}"),
                    }
                    pending.len() >= self.config.batch_size
                }
                _ = linger.tick() => true,
            };
            let retire = if hand_on { idle.silent() } else { Vec::new() };
            if (hand_on || !retire.is_empty()) && !pending.is_empty() {
                let taken = std::mem::take(&mut pending);
                self.hand_on(&taken, &mut position, ctx).await?;
                if let Ok(mut r) = read_to.lock() {
                    *r = position.clone();
                }
                if covered.checkpointed() {
                    covered.handed_on(ctx.last_barrier().await + 1, position.clone());
                } else {
                    commit(&self.name, &consumer, &topic, &position);
                }
            }
            // What was pending went first: then the silent partitions hold the watermark back
            // no more.
            for partition in retire {
                ctx.retire_split(partition as u32).await?;
            }
        }
        if !pending.is_empty() {
            let taken = std::mem::take(&mut pending);
            self.hand_on(&taken, &mut position, ctx).await?;
            if !covered.checkpointed() {
                commit(&self.name, &consumer, &topic, &position);
            }
        }
        Ok(())
    }
}
