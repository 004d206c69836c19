//! Options of the AMQP 0.9.1 (RabbitMQ) connector: every field documented, unknown options
//! refused.

#![deny(missing_docs)]

use std::time::Duration;

use eddy_engine::options::{bytes, duration};
use serde::Deserialize;

use crate::format::Format;

/// `CREATE SOURCE ... WITH (connector = 'amqp', ...)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSourceConfig {
    /// `amqp://user:password@host:5672/vhost` (`%2f` is the default vhost `/`), or `amqps://`.
    pub url: String,
    /// The queue to consume.
    pub queue: String,
    /// An exchange to bind the queue to (declared, durable, with `exchange_type`).
    pub exchange: Option<String>,
    /// `direct`, `topic` (the default), `fanout` or `headers`.
    #[serde(default = "default_exchange_type")]
    pub exchange_type: String,
    /// The binding's key: a routing key (direct) or a pattern (topic: `*` one word, `#` any
    /// number); `#` by default.
    pub binding_key: Option<String>,
    /// `true` (the default): declare the queue (durable) and, with `exchange`, the exchange and
    /// the binding; `false`: they must exist.
    #[serde(default = "default_true")]
    pub declare: bool,
    /// Most messages the broker sends before it has their acknowledgements.
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// How each message is decoded: `json`, `csv` or `raw` (as for MQTT).
    #[serde(default)]
    pub format: Format,
    /// CSV: the field separator (`,`).
    pub delimiter: Option<char>,
    /// Raw: the column each message's value fills; a TIMESTAMP column gets the arrival time.
    pub value_column: Option<String>,
    /// The declared column that receives each message's routing key (`routing_key` by default,
    /// if declared).
    pub routing_key_column: Option<String>,
    /// Most messages decoded into one batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest wait before a partial batch is handed on.
    #[serde(default = "default_linger", deserialize_with = "duration")]
    pub linger: Duration,
    /// Messages longer than this go to the dead letters unread.
    #[serde(default = "crate::file::config::default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// With `--state-dir`, messages go through the source's ingest log: past this many bytes of
    /// it that no completed checkpoint covers, the source stops acknowledging, and the broker
    /// stops sending once `prefetch` messages wait.
    #[serde(default = "default_max_log_bytes", deserialize_with = "bytes")]
    pub max_log_bytes: usize,
}

/// `CREATE SINK ... WITH (connector = 'amqp', ...)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSinkConfig {
    /// `amqp://user:password@host:5672/vhost`, or `amqps://`.
    pub url: String,
    /// The exchange alerts are published to; `''` is the default exchange, which routes to the
    /// queue named by the routing key.
    pub exchange: String,
    /// `direct`, `topic` (the default), `fanout` or `headers`: the exchange's type when
    /// `declare = 'true'`.
    #[serde(default = "default_exchange_type")]
    pub exchange_type: String,
    /// `true`: declare the exchange (durable); `false` (the default): it must exist.
    #[serde(default)]
    pub declare: bool,
    /// Routing key of each alert; `{column}` is replaced by the row's value, with `.` in a value
    /// replaced by `_` (`alerts.{severity}.{device_id}`).
    #[serde(default)]
    pub routing_key: String,
    /// Columns also sent as message headers, separated by `,` (for headers exchanges).
    pub header_columns: Option<String>,
    /// `true` (the default): persistent messages (delivery mode 2), kept by a durable queue
    /// across a broker restart.
    #[serde(default = "default_true")]
    pub persistent: bool,
    /// How each row is encoded: `json`, `csv` (one line) or `raw` (one value).
    #[serde(default)]
    pub format: Format,
    /// Raw: the column published (by default the rows' only column).
    pub value_column: Option<String>,
    /// The longest a write waits for the broker's confirmations before it is tried again.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
}

fn default_exchange_type() -> String {
    "topic".into()
}

fn default_true() -> bool {
    true
}

fn default_prefetch() -> u16 {
    1000
}

fn default_batch_size() -> usize {
    4096
}

fn default_linger() -> Duration {
    Duration::from_millis(20)
}

fn default_max_log_bytes() -> usize {
    1 << 30
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
