//! Writes each row as one message to a topic, keyed by a column if asked, through an idempotent
//! producer (`enable.idempotence`: acknowledged by all in-sync replicas, no duplicates from the
//! producer's own retries, order kept per partition). A write hands every alert to the producer,
//! then waits for every delivery to be confirmed, so what a checkpoint covers is in the topic; a
//! write that fails resumes, when tried again, at its first alert not confirmed, through a new
//! producer.

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use eddy_engine::{ConnectorError, OptionError, Sink, SinkSpec};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaRespErr;

use super::config::KafkaSinkConfig;
use super::{Repeats, SinkClient, client_config};
use crate::format::RecordEncoder;
use crate::part_written::PartWritten;

pub struct KafkaSink {
    name: String,
    config: KafkaSinkConfig,
    client: rdkafka::ClientConfig,
    encoder: RecordEncoder,
    producer: Option<FutureProducer<SinkClient>>,
    /// The brokers have said the topic exists (Eddy does not create topics).
    topic_found: bool,
    /// Where a failed write stopped, for its retry.
    part_written: PartWritten,
}

impl KafkaSink {
    pub fn create(spec: &SinkSpec) -> Result<Box<dyn Sink>, OptionError> {
        let config: KafkaSinkConfig = spec.options.deserialize()?;
        if config.topic.is_empty() {
            return Err(OptionError::invalid("topic", "give the topic alerts go to"));
        }
        let mut client = client_config(&config.bootstrap_servers, config.properties.as_deref())?;
        client
            .set("client.id", format!("eddy-{}", spec.name))
            .set("enable.idempotence", "true")
            .set("linger.ms", config.linger.as_millis().to_string())
            .set("message.timeout.ms", config.timeout.as_millis().to_string());
        let encoder = RecordEncoder::new(config.format, config.value_column.clone())?;
        Ok(Box::new(Self {
            name: spec.name.to_string(),
            config,
            client,
            encoder,
            producer: None,
            topic_found: false,
            part_written: PartWritten::default(),
        }))
    }

    /// The producer, made on the first write (so `eddy check` never connects).
    fn producer(&mut self) -> Result<FutureProducer<SinkClient>, ConnectorError> {
        if let Some(p) = &self.producer {
            return Ok(p.clone());
        }
        let producer: FutureProducer<SinkClient> = self
            .client
            .create_with_context(SinkClient {
                sink: self.name.clone(),
                repeats: Repeats::default(),
            })
            .map_err(|e| ConnectorError::fatal(format!("cannot make a Kafka producer: {e}")))?;
        self.producer = Some(producer.clone());
        Ok(producer)
    }

    /// The key of every row, when `key` names a column.
    fn keys(&self, batch: &RecordBatch) -> Result<Option<Vec<String>>, ConnectorError> {
        let Some(name) = &self.config.key else {
            return Ok(None);
        };
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| ConnectorError::fatal(format!("the key column '{name}' is missing")))?;
        let f = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())
            .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        Ok(Some(
            (0..batch.num_rows())
                .map(|i| f.value(i).to_string())
                .collect(),
        ))
    }
}

#[async_trait]
impl Sink for KafkaSink {
    fn describe(&self) -> String {
        format!(
            "{} topic {}{} ({})",
            self.config.bootstrap_servers,
            self.config.topic,
            self.config
                .key
                .as_deref()
                .map(|k| format!(" key {k}"))
                .unwrap_or_default(),
            self.encoder.format().describe()
        )
    }

    fn check_schema(&self, schema: &Schema) -> Result<(), String> {
        if let Some(k) = &self.config.key
            && schema.column_with_name(k).is_none()
        {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(format!(
                "key names '{k}', but the query's columns are: {}",
                names.join(", ")
            ));
        }
        self.encoder.check(schema)
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        let rows = batch.num_rows();
        let from = self.part_written.resume(&batch);
        let producer = self.producer()?;
        if !self.topic_found {
            self.topic_found =
                topic_exists(&producer, &self.config.topic, self.config.timeout).await?;
        }
        let payloads = self
            .encoder
            .each(&batch)
            .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        let keys = self.keys(&batch)?;
        let mut deliveries = Vec::with_capacity(rows - from);
        for row in from..rows {
            let mut record: FutureRecord<'_, str, [u8]> =
                FutureRecord::to(&self.config.topic).payload(payloads[row].as_slice());
            if let Some(keys) = &keys {
                record = record.key(keys[row].as_str());
            }
            match producer.send_result(record) {
                Ok(d) => deliveries.push((row, d)),
                Err((e, _)) => {
                    // The producer's queue is full or it refused the record: what was handed
                    // over is awaited, the rest resent by the retry.
                    let mut resume = row;
                    for (r, d) in deliveries {
                        if !matches!(d.await, Ok(Ok(_))) {
                            resume = resume.min(r);
                        }
                    }
                    self.part_written.failed(&batch, resume);
                    self.producer = None;
                    return Err(ConnectorError::retryable(format!(
                        "cannot hand an alert to the Kafka producer: {e}"
                    )));
                }
            }
        }
        // One deadline for the whole write: librdkafka fails what it cannot deliver within
        // `message.timeout.ms`, and a second more covers its report.
        let deadline = tokio::time::Instant::now() + self.config.timeout + Duration::from_secs(1);
        let mut failed: Option<(usize, String)> = None;
        for (row, d) in deliveries {
            let why = match tokio::time::timeout_at(deadline, d).await {
                Ok(Ok(Ok(_))) => continue,
                Ok(Ok(Err((e, _)))) => e.to_string(),
                Ok(Err(_)) => "the producer went away".to_string(),
                Err(_) => format!("no confirmation within {:?}", self.config.timeout),
            };
            if failed.is_none() {
                failed = Some((row, why));
            }
        }
        match failed {
            None => Ok(()),
            Some((row, why)) => {
                self.part_written.failed(&batch, row);
                // The retry goes through a new producer: an idempotent producer whose broker lost
                // or refused its state (a restarted broker, a fenced producer id) fails every
                // later delivery too.
                self.producer = None;
                Err(ConnectorError::retryable(format!(
                    "topic {} did not take an alert: {why}",
                    self.config.topic
                )))
            }
        }
    }
}

/// Asks the brokers whether `topic` exists: a producer would otherwise wait for a topic that never
/// comes until its messages time out, and say only that. `Ok(false)` when the brokers cannot be
/// asked now (the write goes on, and waits for them as long as its timeout allows).
async fn topic_exists(
    producer: &FutureProducer<SinkClient>,
    topic: &str,
    timeout: Duration,
) -> Result<bool, ConnectorError> {
    let producer = producer.clone();
    let name = topic.to_string();
    let metadata =
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(Some(&name), timeout))
            .await
            .map_err(|e| ConnectorError::fatal(e.to_string()))?;
    let Ok(metadata) = metadata else {
        return Ok(false);
    };
    match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(true),
        Some(t) if t.error() != Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {
            Ok(false)
        }
        _ => Err(ConnectorError::fatal(format!(
            "topic {topic} does not exist on the brokers (Eddy does not create topics): create it, \
             or name one that exists"
        ))),
    }
}
