//! Options of the NATS connector: every field documented, unknown options refused.

#![deny(missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use eddy_engine::options::{bytes, duration};
use serde::Deserialize;

use crate::format::Format;

/// `CREATE SOURCE ... WITH (connector = 'nats', ...)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSourceConfig {
    /// `nats://host[:port]` (4222 by default) or `tls://host[:port]`; several separated by `,`.
    pub url: String,
    /// The subject to read: a filter of the stream's subjects with JetStream (the whole stream
    /// by default), the subject subscribed to without (`*` and `>` wildcards allowed).
    pub subject: Option<String>,
    /// `true` (the default): read a JetStream stream through a durable consumer, acknowledged once
    /// a completed checkpoint covers the messages; `false`: a plain subscription, at most once.
    #[serde(default = "default_true")]
    pub jetstream: bool,
    /// JetStream: the stream to read (it must exist).
    pub stream: Option<String>,
    /// JetStream: the durable consumer's name; `eddy-<source>` by default.
    pub durable: Option<String>,
    /// JetStream: where a consumer that has acknowledged nothing and has no checkpoint starts,
    /// `all` (the stream's first message, the default) or `new` (messages stored from now on).
    #[serde(default = "default_deliver")]
    pub deliver: String,
    /// JetStream: how long the server waits for a message's acknowledgement before sending it
    /// again. Acknowledgements follow checkpoints, so this is longer than the checkpoint interval.
    #[serde(default = "default_ack_wait", deserialize_with = "duration")]
    pub ack_wait: Duration,
    /// JetStream under `eddy serve`, where the rules reading the source share one consumer that
    /// writes what it pulls to the source's ingest log and acknowledges it once synced there:
    /// past this many bytes of the log that the rules' completed checkpoints do not cover, it
    /// stops acknowledging (the server keeps the rest).
    #[serde(default = "default_max_log_bytes", deserialize_with = "bytes")]
    pub max_log_bytes: usize,
    /// Without JetStream: a queue group, so that several Eddy processes share the messages.
    pub queue: Option<String>,
    /// The user name the server authenticates (or in the URL).
    pub username: Option<String>,
    /// The password; prefer `password_env` or `${VAR}`.
    pub password: Option<String>,
    /// Name of an environment variable that holds the password.
    pub password_env: Option<String>,
    /// Name of an environment variable that holds an authentication token.
    pub token_env: Option<String>,
    /// PEM file of the CA that signed the server's certificate (TLS).
    pub ca_file: Option<PathBuf>,
    /// How each message is decoded: `json`, `csv` or `raw` (as for MQTT).
    #[serde(default)]
    pub format: Format,
    /// CSV: the field separator (`,`).
    pub delimiter: Option<char>,
    /// Raw: the column each message's value fills; a TIMESTAMP column gets the time the message
    /// was stored in the stream (JetStream) or received (core NATS).
    pub value_column: Option<String>,
    /// The declared column that receives each message's subject (`subject` by default, if
    /// declared).
    pub subject_column: Option<String>,
    /// Most messages decoded into one batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest wait before a partial batch is handed on.
    #[serde(default = "default_linger", deserialize_with = "duration")]
    pub linger: Duration,
    /// Messages longer than this go to the dead letters unread.
    #[serde(default = "crate::file::config::default_max_record_bytes")]
    pub max_record_bytes: usize,
}

/// `CREATE SINK ... WITH (connector = 'nats', ...)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// `nats://host[:port]` or `tls://host[:port]`; several separated by `,`.
    pub url: String,
    /// Subject of each row; `{column}` is replaced by the row's value (`alerts.{device_id}`).
    pub subject: String,
    /// `true`: publish to a JetStream stream and wait for the server's acknowledgement of each
    /// alert (the stream must take the subject); with an `alert_id` column it is sent as
    /// `Nats-Msg-Id`, so the stream drops an alert sent again within its duplicate window.
    #[serde(default)]
    pub jetstream: bool,
    /// The user name the server authenticates (or in the URL).
    pub username: Option<String>,
    /// The password; prefer `password_env` or `${VAR}`.
    pub password: Option<String>,
    /// Name of an environment variable that holds the password.
    pub password_env: Option<String>,
    /// Name of an environment variable that holds an authentication token.
    pub token_env: Option<String>,
    /// PEM file of the CA that signed the server's certificate (TLS).
    pub ca_file: Option<PathBuf>,
    /// How each row is encoded: `json`, `csv` (one line) or `raw` (one value).
    #[serde(default)]
    pub format: Format,
    /// Raw: the column published (by default the rows' only column).
    pub value_column: Option<String>,
    /// The longest a write waits for the server (JetStream acknowledgements, or the flush of a
    /// plain publish) before it is tried again.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
}

fn default_true() -> bool {
    true
}

fn default_deliver() -> String {
    "all".into()
}

fn default_max_log_bytes() -> usize {
    1 << 30
}

fn default_ack_wait() -> Duration {
    Duration::from_secs(120)
}

fn default_batch_size() -> usize {
    4096
}

fn default_linger() -> Duration {
    Duration::from_millis(20)
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
