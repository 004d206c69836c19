//! Options of the MQTT connector: every field documented (the README's option table follows
//! these comments), unknown options refused.

#![deny(missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use eddy_engine::OptionError;
use eddy_engine::options::{bytes, duration, optional_duration};
use serde::Deserialize;

use super::event_loop::Protocol;
use crate::format::Format;

/// `CREATE SOURCE ... WITH (connector = 'mqtt', ...)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    /// `mqtt://host[:port]` or `mqtts://host[:port]` (TLS); user and password may be in the URL.
    pub url: String,
    /// Topic filter to subscribe to; `+` and `#` wildcards allowed. By default the filter of
    /// `topic_pattern`.
    pub topic: Option<String>,
    /// `sensors/{device_id}/{metric}`: declared columns filled from each message's topic levels
    /// (`+` matches a level not kept, a trailing `#` the levels after).
    pub topic_pattern: Option<String>,
    /// A shared subscription's group (`$share/<group>/<filter>`): the broker hands each message to
    /// one of the clients subscribed in the group, so several Eddy processes split a topic's load.
    /// A `topic` that starts with `$share/` says the same.
    pub share_group: Option<String>,
    /// Quality of service of the subscription: 0 (at most once) or 1 (at least once).
    #[serde(default)]
    pub qos: u8,
    /// Client identifier; by default `eddy-<source>-<random>`.
    pub client_id: Option<String>,
    /// The user name the broker authenticates (or in the URL).
    pub username: Option<String>,
    /// The password; prefer `password_env` or `${VAR}` so it stays out of the file.
    pub password: Option<String>,
    /// Name of an environment variable that holds the password.
    pub password_env: Option<String>,
    /// PEM file of the CA that signed the broker's certificate (mqtts); the system's CAs by default.
    pub ca_file: Option<PathBuf>,
    /// PEM file of a client certificate, for a broker that authenticates clients by certificate
    /// (mqtts; Mosquitto's `require_certificate true`); with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub key_file: Option<PathBuf>,
    /// How each message is decoded: `json` (one object; a column may name a JSON path,
    /// `temp = '$.payload.temp'`), `csv` (one line, fields in the declared order) or `raw` (the
    /// message is one value).
    #[serde(default)]
    pub format: Format,
    /// CSV: the field separator (`,`).
    pub delimiter: Option<char>,
    /// Raw: the column each message's value fills (by default the only column that is neither a
    /// TIMESTAMP nor filled from the topic); a TIMESTAMP column gets the message's arrival time.
    pub value_column: Option<String>,
    /// The declared column that receives each message's topic (`topic` by default, if declared).
    pub topic_column: Option<String>,
    /// MQTT 5: `'site, line'` fills the declared columns `site` and `line` from each message's
    /// user properties of those names (NULL when a message has none; the last value when it has
    /// several).
    pub user_properties: Option<String>,
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
    /// `v3.1.1` (the default) or `v5`. With MQTT 5 the source sets how many unacknowledged
    /// QoS 1 messages the broker may send it at once (`receive_maximum`); an MQTT 3.1.1 client
    /// gets the broker's window (Mosquitto: `max_inflight_messages`, 20).
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// MQTT 5's Receive Maximum: most QoS 1 messages the broker sends before it has their
    /// acknowledgements.
    #[serde(default = "default_receive_maximum")]
    pub receive_maximum: u16,
    /// With `--state-dir` and `qos = 1`, messages go through the source's ingest log: past this
    /// many bytes of it that no completed checkpoint covers (a sink holds the queries back), the
    /// source stops acknowledging, and the broker stops sending once its window is full.
    #[serde(default = "default_max_log_bytes", deserialize_with = "bytes")]
    pub max_log_bytes: usize,
}

impl MqttSourceConfig {
    /// The `protocol` option read.
    pub fn protocol(&self) -> Result<Protocol, OptionError> {
        protocol(&self.protocol)
    }

    /// The user properties named by `user_properties`, which need MQTT 5.
    pub fn user_properties(&self) -> Result<Vec<String>, OptionError> {
        let Some(list) = &self.user_properties else {
            return Ok(Vec::new());
        };
        if self.protocol()? != Protocol::V5 {
            return Err(OptionError::invalid(
                "user_properties",
                "user properties are MQTT 5's: set protocol = 'v5'",
            ));
        }
        let names: Vec<String> = list
            .split(',')
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            return Err(OptionError::invalid(
                "user_properties",
                "name the columns the user properties fill: 'site, line'",
            ));
        }
        Ok(names)
    }
}

/// `protocol` read: `v3.1.1` or `v5`.
fn protocol(text: &str) -> Result<Protocol, OptionError> {
    match text.to_ascii_lowercase().as_str() {
        "v3.1.1" | "3.1.1" | "v3" | "3" => Ok(Protocol::V311),
        "v5" | "5" | "5.0" => Ok(Protocol::V5),
        other => Err(OptionError::invalid(
            "protocol",
            format!("'{other}' is not an MQTT version Eddy speaks; use 'v3.1.1' or 'v5'"),
        )),
    }
}

fn default_true() -> bool {
    true
}

fn default_protocol() -> String {
    "v3.1.1".into()
}

/// Enough for tens of thousands of messages a second over a sync of several milliseconds, and a
/// bound on what the broker can push at once.
fn default_receive_maximum() -> u16 {
    1000
}

fn default_max_log_bytes() -> usize {
    1 << 30
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
    /// Client identifier; by default `eddy-<sink>-<random>`.
    pub client_id: Option<String>,
    /// The user name the broker authenticates (or in the URL).
    pub username: Option<String>,
    /// The password; prefer `password_env` or `${VAR}` so it stays out of the file.
    pub password: Option<String>,
    /// Name of an environment variable that holds the password.
    pub password_env: Option<String>,
    /// PEM file of the CA that signed the broker's certificate (mqtts); the system's CAs by default.
    pub ca_file: Option<PathBuf>,
    /// PEM file of a client certificate, for a broker that authenticates clients by certificate
    /// (mqtts; Mosquitto's `require_certificate true`); with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub key_file: Option<PathBuf>,
    /// How each row is encoded: `json`, `csv` (one line) or `raw` (one value).
    #[serde(default)]
    pub format: Format,
    /// Raw: the column published (by default the rows' only column).
    pub value_column: Option<String>,
    /// `v3.1.1` (the default) or `v5`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// MQTT 5: how long the broker keeps each alert for a subscriber that is away (or, retained,
    /// for the next one), `'10m'`; after that it is dropped undelivered. Kept forever by default.
    #[serde(default, deserialize_with = "optional_duration")]
    pub message_expiry: Option<Duration>,
    /// MQTT keep-alive interval.
    #[serde(default = "default_keep_alive", deserialize_with = "duration")]
    pub keep_alive: Duration,
    /// Longest wait at the end of a run for the broker to take every row.
    #[serde(default = "default_flush_timeout", deserialize_with = "duration")]
    pub flush_timeout: Duration,
}

impl MqttSinkConfig {
    /// The `protocol` option read.
    pub fn protocol(&self) -> Result<Protocol, OptionError> {
        protocol(&self.protocol)
    }

    /// `message_expiry` in whole seconds (as MQTT 5 sends it), which needs MQTT 5.
    pub fn message_expiry(&self) -> Result<Option<u32>, OptionError> {
        let Some(expiry) = self.message_expiry else {
            return Ok(None);
        };
        if self.protocol()? != Protocol::V5 {
            return Err(OptionError::invalid(
                "message_expiry",
                "message expiry is MQTT 5's: set protocol = 'v5'",
            ));
        }
        let seconds = expiry.as_secs_f64().ceil();
        if seconds < 1.0 || seconds > f64::from(u32::MAX) {
            return Err(OptionError::invalid(
                "message_expiry",
                format!(
                    "{expiry:?} is not between one second and {} seconds",
                    u32::MAX
                ),
            ));
        }
        Ok(Some(seconds as u32))
    }
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
