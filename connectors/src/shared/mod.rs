//! Sources shared by the rules of a service: rules whose plans declare the same MQTT source (the
//! same name, columns and options, as a catalog source is for every rule that reads it) read it
//! through one connection and one decoding of each message, a [`hub::Hub`]. Each rule reads at
//! its own pace and checkpoints its own offset in the hub's ingest log: a new rule joins where
//! the hub is, a resumed or restarted one goes on from its checkpoint's offset (reading the log
//! itself until it reaches what the hub has decoded), and a slow or stopped rule holds back no
//! other (only the log grows, up to the source's `max_log_bytes`).
//!
//! [`registry`] gives the connectors with this `mqtt` source, and the [`SharedSources`] that
//! keep the hubs, under a directory of their own (each hub's ingest log in `DIR/NAME-HASH`).

mod exclusive;
pub mod hub;
mod subscriber;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use eddy_engine::connector::{ConnectorRegistry, SourceSpec};
use eddy_engine::{ConnectorError, OptionError, Source};
use tokio::task::JoinHandle;

use crate::mqtt::MqttSource;
use hub::Hub;

/// A hub, and the task that feeds it (ends once its connection has closed).
type Running = (Arc<Hub>, JoinHandle<()>);

/// The hubs of a service, by source.
pub struct SharedSources {
    dir: PathBuf,
    hubs: tokio::sync::Mutex<HashMap<String, Running>>,
    /// The sources that only one rule at a time may read, being read.
    exclusive: exclusive::Readers,
}

impl SharedSources {
    /// Hubs whose ingest logs go under `dir`.
    pub fn new(dir: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            dir,
            hubs: tokio::sync::Mutex::new(HashMap::new()),
            exclusive: exclusive::Readers::default(),
        })
    }

    /// The hub of source `key`, started with `source` (decoding from `at`) if it is not running.
    async fn hub(
        &self,
        key: &str,
        name: &str,
        source: Box<MqttSource>,
        at: Option<u64>,
    ) -> Result<Arc<Hub>, ConnectorError> {
        let mut hubs = self.hubs.lock().await;
        if let Some((hub, _)) = hubs.get(key)
            && !hub.failed()
        {
            return Ok(Arc::clone(hub));
        }
        if let Some((hub, task)) = hubs.remove(key) {
            // A failed hub has stopped feeding; its connection closes before another opens.
            hub.stop.cancel();
            let _ = task.await;
        }
        let (hub, task) = source.start_hub(name, &self.dir.join(key), at)?;
        hubs.insert(key.to_string(), (Arc::clone(&hub), task));
        Ok(hub)
    }

    /// How many connections are open (one per source some rule has read since the start).
    pub async fn connections(&self) -> usize {
        self.hubs.lock().await.len()
    }

    /// Closes every connection (after the rules that read them have stopped).
    pub async fn stop(&self) {
        let hubs: Vec<_> = self.hubs.lock().await.drain().collect();
        for (_, (hub, task)) in hubs {
            hub.stop.cancel();
            let _ = task.await;
        }
    }
}

/// What makes a connector's source.
type Create = fn(&SourceSpec) -> Result<Box<dyn Source>, OptionError>;

/// The connectors of [`crate::registry`], with MQTT sources shared through `shared`, and the
/// sources whose broker splits messages between consumers (an AMQP queue, a JetStream durable
/// consumer, a Kafka consumer group) read by one rule at a time.
pub fn registry(shared: &Arc<SharedSources>) -> ConnectorRegistry {
    let mut r = crate::registry();
    let to_mqtt = Arc::clone(shared);
    r.register_source("mqtt", move |spec| {
        Ok(Box::new(subscriber::SharedSubscriber::new(
            spec,
            Arc::clone(&to_mqtt),
        )?) as Box<dyn Source>)
    });
    let kinds: [(&str, Create); 3] = [
        ("amqp", crate::amqp::AmqpSource::create),
        ("kafka", crate::kafka::KafkaSource::create),
        ("nats", crate::nats::NatsSource::create),
    ];
    for (kind, create) in kinds {
        let readers = shared.exclusive.clone();
        r.register_source(kind, move |spec| {
            let source = create(spec)?;
            // A plain NATS subscription hands every message to every subscriber.
            if kind == "nats" && spec.options.get("jetstream") == Some("false") {
                return Ok(source);
            }
            Ok(Box::new(exclusive::Exclusive::new(
                kind,
                exclusive::consumer(kind, spec),
                source,
                readers.clone(),
            )) as Box<dyn Source>)
        });
    }
    r
}

/// What tells a source from another: its name, then a hash of its columns and options (a rule
/// that declares a source of the same name differently reads it through a connection of its
/// own).
fn key(spec: &SourceSpec) -> String {
    let mut text = format!("{:?}", spec.schema.fields());
    let mut options: Vec<(&str, &str)> = spec
        .options
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    options.sort();
    for (k, v) in options {
        text.push_str(&format!("\0{k}\0{v}"));
    }
    format!(
        "{}-{:016x}",
        spec.name,
        eddy_engine::hash::fnv1a_of(text.as_bytes())
    )
}

impl subscriber::SharedSubscriber {
    fn new(spec: &SourceSpec, shared: Arc<SharedSources>) -> Result<Self, OptionError> {
        Ok(Self {
            key: key(spec),
            for_hub: Some(Box::new(MqttSource::new(spec)?)),
            own: MqttSource::new(spec)?,
            shared,
        })
    }
}
