//! Options of the MQTT connector.

use std::path::PathBuf;
use std::time::Duration;

use eddy_engine::options::duration;
use serde::Deserialize;

use crate::format::Format;

/// `CREATE SOURCE ... WITH (connector = 'mqtt', ...)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    /// `mqtt://host[:port]` or `mqtts://host[:port]` (TLS); user and password may be in the URL.
    pub url: String,
    /// Topic filter to subscribe to; `+` and `#` wildcards allowed.
    pub topic: String,
    /// Quality of service of the subscription: 0 (at most once) or 1 (at least once).
    #[serde(default)]
    pub qos: u8,
    /// Client identifier; by default `eddy-<source>-<random>`.
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// The password; prefer `password_env` or `${VAR}` so it stays out of the file.
    pub password: Option<String>,
    /// Name of an environment variable that holds the password.
    pub password_env: Option<String>,
    /// PEM file of the CA that signed the broker's certificate (mqtts); the system's CAs by default.
    pub ca_file: Option<PathBuf>,
    /// How each message is decoded.
    #[serde(default)]
    pub format: Format,
    /// The declared column that receives each message's topic (`topic` by default, if declared).
    pub topic_column: Option<String>,
    /// Most messages decoded into one batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest wait before a partial batch is handed on.
    #[serde(default = "default_linger", deserialize_with = "duration")]
    pub linger: Duration,
    /// MQTT keep-alive interval.
    #[serde(default = "default_keep_alive", deserialize_with = "duration")]
    pub keep_alive: Duration,
    /// Messages longer than this go to the dead letters unread.
    #[serde(default = "crate::file::config::default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// `false` asks the broker to keep the session (the subscription, and QoS 1 messages that
    /// arrive while Eddy is away) under `client_id`.
    #[serde(default = "default_true")]
    pub clean_session: bool,
    /// With checkpoints (`--state-dir`) and `qos = 1`: messages handed on but not yet acknowledged
    /// (they wait for a checkpoint) before the source asks for a checkpoint at once. Set it to the
    /// broker's in-flight window: the broker sends no more until some are acknowledged.
    #[serde(default = "default_max_unacked")]
    pub max_unacked: usize,
}

fn default_true() -> bool {
    true
}

/// Mosquitto's default `max_inflight_messages`.
fn default_max_unacked() -> usize {
    20
}

/// `CREATE SINK ... WITH (connector = 'mqtt', ...)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSinkConfig {
    /// `mqtt://host[:port]` or `mqtts://host[:port]`.
    pub url: String,
    /// Topic of each row; `{column}` is replaced by the row's value of that column.
    pub topic: String,
    /// 0 (at most once) or 1 (at least once: each publish is acknowledged by the broker).
    #[serde(default)]
    pub qos: u8,
    /// Publish with the retain flag, so a new subscriber gets the last alert of each topic.
    #[serde(default)]
    pub retain: bool,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub format: Format,
    #[serde(default = "default_keep_alive", deserialize_with = "duration")]
    pub keep_alive: Duration,
    /// Longest wait at the end of a run for the broker to take every row.
    #[serde(default = "default_flush_timeout", deserialize_with = "duration")]
    pub flush_timeout: Duration,
}

fn default_batch_size() -> usize {
    4096
}

fn default_linger() -> Duration {
    Duration::from_millis(20)
}

fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}

fn default_flush_timeout() -> Duration {
    Duration::from_secs(30)
}
