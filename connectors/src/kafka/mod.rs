//! Kafka (rdkafka, librdkafka): a source reading a topic as a member of a consumer group, its
//! offsets committed once a checkpoint covers them and restored from the checkpoint, and a sink
//! with an idempotent producer whose deliveries are confirmed before a checkpoint completes.
//! Azure Event Hubs speaks this protocol too (`properties` gives the SASL settings).

pub mod config;
mod sink;
mod source;

use eddy_engine::OptionError;
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, ClientContext};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

pub use sink::KafkaSink;
pub use source::KafkaSource;

/// A sink's client: librdkafka's global errors (brokers gone, which it rides out by connecting
/// again) logged as warnings that name the sink.
pub(crate) struct SinkClient {
    pub sink: String,
    pub repeats: Repeats,
}

impl ClientContext for SinkClient {
    fn error(&self, error: KafkaError, reason: &str) {
        let text = format!("{error}: {reason}");
        if self.repeats.first(&text) {
            warn!(sink = %self.sink, "{text}");
        } else {
            debug!(sink = %self.sink, "{text}");
        }
    }
}

/// librdkafka reports a broker that is away again and again, once per connection it tries: the
/// same error is worth a warning once a minute.
#[derive(Default)]
pub(crate) struct Repeats {
    last: Mutex<Option<(String, Instant)>>,
}

impl Repeats {
    /// `true` unless `text` was said in the last minute.
    pub fn first(&self, text: &str) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return true;
        };
        let now = Instant::now();
        if let Some((said, at)) = &*last
            && said == text
            && now.duration_since(*at) < Duration::from_secs(60)
        {
            return false;
        }
        *last = Some((text.to_string(), now));
        true
    }
}

/// `bootstrap.servers` and the `properties` option (`name=value; ...`) as librdkafka settings.
fn client_config(
    bootstrap_servers: &str,
    properties: Option<&str>,
) -> Result<ClientConfig, OptionError> {
    if bootstrap_servers.trim().is_empty() {
        return Err(OptionError::invalid(
            "bootstrap_servers",
            "give the brokers: 'host:9092'",
        ));
    }
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap_servers.trim());
    for setting in properties.unwrap_or_default().split(';') {
        let setting = setting.trim();
        if setting.is_empty() {
            continue;
        }
        let (name, value) = setting.split_once('=').ok_or_else(|| {
            OptionError::invalid(
                "properties",
                format!("'{setting}' is not name=value (settings are separated by ';')"),
            )
        })?;
        config.set(name.trim(), value.trim());
    }
    Ok(config)
}
