//! Options of the Kafka connector (librdkafka through rdkafka): every field documented, unknown
//! options refused.

#![deny(missing_docs)]

use std::time::Duration;

use eddy_engine::options::duration;
use serde::Deserialize;

use crate::format::Format;

/// `CREATE SOURCE ... WITH (connector = 'kafka', ...)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `host:port[,host:port...]` of the brokers to start from.
    pub bootstrap_servers: String,
    /// The topic to read; its partitions are assigned by the group's coordinator.
    pub topic: String,
    /// The consumer group; `eddy-<source>` by default. Offsets are committed to it once a
    /// completed checkpoint covers them.
    pub group_id: Option<String>,
    /// This process's stable name in the group (Kafka's static membership, `group.instance.id`):
    /// a restarted Eddy takes its partitions back at once, instead of after the group's session
    /// timeout (45 s by default). Each process of a group needs its own.
    pub instance_id: Option<String>,
    /// Where a group with no committed offset and no checkpoint starts: `earliest` (the default)
    /// or `latest`.
    #[serde(default = "default_start")]
    pub start: String,
    /// More librdkafka settings, `name=value` separated by `;`
    /// (`'security.protocol=SASL_SSL; sasl.mechanism=PLAIN; sasl.username=$ConnectionString'`;
    /// secrets through `${VAR}`).
    pub properties: Option<String>,
    /// How each message is decoded: `json`, `csv` or `raw` (as for MQTT).
    #[serde(default)]
    pub format: Format,
    /// CSV: the field separator (`,`).
    pub delimiter: Option<char>,
    /// Raw: the column each message's value fills; a TIMESTAMP column gets the message's
    /// timestamp.
    pub value_column: Option<String>,
    /// The declared column that receives each message's key as text (`key` by default, if
    /// declared).
    pub key_column: Option<String>,
    /// Most messages decoded into one batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest wait before a partial batch is handed on.
    #[serde(default = "default_linger", deserialize_with = "duration")]
    pub linger: Duration,
    /// A partition read to its end that stays silent this long stops holding the watermark back
    /// (the others' windows close without it); its next message makes it hold it again. A
    /// partition that has merely caught up with its producers for a moment keeps holding it, so
    /// that its next messages are not late.
    #[serde(
        default = "default_partition_idle_timeout",
        deserialize_with = "duration"
    )]
    pub partition_idle_timeout: Duration,
    /// Messages longer than this go to the dead letters unread.
    #[serde(default = "crate::file::config::default_max_record_bytes")]
    pub max_record_bytes: usize,
}

/// `CREATE SINK ... WITH (connector = 'kafka', ...)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// `host:port[,host:port...]` of the brokers to start from.
    pub bootstrap_servers: String,
    /// The topic alerts are written to.
    pub topic: String,
    /// A column whose value (as text) is each message's key, so that the alerts of one device
    /// keep their order in one partition.
    pub key: Option<String>,
    /// More librdkafka settings, `name=value` separated by `;`.
    pub properties: Option<String>,
    /// How each row is encoded: `json`, `csv` (one line) or `raw` (one value).
    #[serde(default)]
    pub format: Format,
    /// Raw: the column written (by default the rows' only column).
    pub value_column: Option<String>,
    /// How long the producer waits to fill a batch (librdkafka's `linger.ms`).
    #[serde(default = "default_producer_linger", deserialize_with = "duration")]
    pub linger: Duration,
    /// The longest a write waits for the brokers to confirm its alerts before it is tried again.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
}

fn default_start() -> String {
    "earliest".into()
}

fn default_batch_size() -> usize {
    4096
}

fn default_partition_idle_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_linger() -> Duration {
    Duration::from_millis(20)
}

fn default_producer_linger() -> Duration {
    Duration::from_millis(5)
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
