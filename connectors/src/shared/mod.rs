//! Sources shared by the rules of a service: rules whose plans declare the same MQTT, AMQP or
//! JetStream source (the same name, columns and options, as a catalog source is for every rule
//! that reads it) read it through one connection and one decoding of each message, a
//! [`hub::Hub`] fed as [`feed`] says. Each rule reads at its own pace and checkpoints its own
//! offset in the hub's ingest log: a new rule joins where the hub is, a resumed or restarted one
//! goes on from its checkpoint's offset (reading the log itself until it reaches what the hub
//! has decoded), and a slow or stopped rule holds back no other (only the log grows, up to the
//! source's `max_log_bytes`).
//!
//! [`registry`] gives the connectors with these sources, and the [`SharedSources`] that keep the
//! hubs, under a directory of their own (each hub's ingest log in `DIR/NAME-HASH`).

mod exclusive;
pub mod feed;
pub mod hub;
mod subscriber;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use eddy_engine::connector::{ConnectorRegistry, SourceSpec};
use eddy_engine::{ConnectorError, OptionError, Source};

use crate::amqp::AmqpSource;
use crate::mqtt::MqttSource;
use feed::{Running, Shareable};
use hub::Hub;

/// The hubs of a service, by source.
pub struct SharedSources {
    dir: PathBuf,
    hubs: tokio::sync::Mutex<Hubs>,
    /// The sources that only one rule at a time may read, being read.
    exclusive: exclusive::Readers,
}

impl SharedSources {
    /// Hubs whose ingest logs go under `dir`.
    pub fn new(dir: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            dir,
            hubs: tokio::sync::Mutex::new(Hubs::default()),
            exclusive: exclusive::Readers::default(),
        })
    }

    /// The hub of source `key`, started with `source` (decoding from `at`) if it is not running.
    /// A source read by `consumer` is read by one hub at a time: a hub of another definition
    /// reading it gives way if no rule reads through it, otherwise the source is refused.
    async fn hub(
        &self,
        key: &str,
        consumer: Option<&str>,
        name: &str,
        source: Box<dyn Shareable>,
        at: Option<u64>,
    ) -> Result<Arc<Hub>, ConnectorError> {
        let mut hubs = self.hubs.lock().await;
        if let Some((hub, _)) = hubs.running.get(key)
            && !hub.failed()
        {
            return Ok(Arc::clone(hub));
        }
        hubs.stop(key).await;
        if let Some(consumer) = consumer {
            if let Some(other) = hubs.consumers.get(consumer).cloned() {
                let read = hubs
                    .running
                    .get(&other)
                    .is_some_and(|(hub, _)| hub.readers() > 0);
                if read {
                    return Err(ConnectorError::fatal(format!(
                        "source {name} reads {consumer}, which another rule reads through a source declared otherwise: the broker would split its messages between the two; declare the source alike in both rules (or in the catalog), or give each a {} of its own",
                        if consumer.starts_with("amqp") {
                            "queue"
                        } else {
                            "consumer"
                        }
                    )));
                }
                hubs.stop(&other).await;
            }
            hubs.consumers.insert(consumer.to_string(), key.to_string());
        }
        let (hub, task) = source.start_hub(name, &self.dir.join(key), at)?;
        hubs.running
            .insert(key.to_string(), (Arc::clone(&hub), task));
        Ok(hub)
    }

    /// How many connections are open (one per source some rule has read since the start).
    pub async fn connections(&self) -> usize {
        self.hubs.lock().await.running.len()
    }

    /// Lets go of the positions held for the rule whose state is under `dir` (it was deleted).
    pub async fn release(&self, dir: &std::path::Path) {
        let prefix = format!("{}/", dir.display());
        for (hub, _) in self.hubs.lock().await.running.values() {
            hub.release(&prefix);
        }
    }

    /// Closes every connection (after the rules that read them have stopped).
    pub async fn stop(&self) {
        let mut hubs = self.hubs.lock().await;
        let keys: Vec<String> = hubs.running.keys().cloned().collect();
        for key in keys {
            hubs.stop(&key).await;
        }
    }
}

/// The running hubs, by source key, and which hub reads each consumer.
#[derive(Default)]
struct Hubs {
    running: HashMap<String, Running>,
    consumers: HashMap<String, String>,
}

impl Hubs {
    /// Stops the hub of `key`, if any: its connection closes before another opens.
    async fn stop(&mut self, key: &str) {
        if let Some((hub, task)) = self.running.remove(key) {
            hub.stop.cancel();
            let _ = task.await;
        }
        self.consumers.retain(|_, k| k != key);
    }
}

/// What makes a connector's source.
type Create = fn(&SourceSpec) -> Result<Box<dyn Source>, OptionError>;

/// The connectors of [`crate::registry`], with MQTT and AMQP sources shared through `shared`,
/// and the other sources whose broker splits messages between consumers (a JetStream durable
/// consumer, a Kafka consumer group) read by one rule at a time.
pub fn registry(shared: &Arc<SharedSources>) -> ConnectorRegistry {
    let mut r = crate::registry();
    let to_mqtt = Arc::clone(shared);
    r.register_source("mqtt", move |spec| {
        let source =
            |spec: &SourceSpec| MqttSource::new(spec).map(|s| Box::new(s) as Box<dyn Shareable>);
        Ok(Box::new(subscriber::SharedSubscriber::new(
            spec,
            None,
            source,
            Arc::clone(&to_mqtt),
        )?) as Box<dyn Source>)
    });
    let to_amqp = Arc::clone(shared);
    r.register_source("amqp", move |spec| {
        let source =
            |spec: &SourceSpec| AmqpSource::new(spec).map(|s| Box::new(s) as Box<dyn Shareable>);
        Ok(Box::new(subscriber::SharedSubscriber::new(
            spec,
            Some(exclusive::consumer("amqp", spec)),
            source,
            Arc::clone(&to_amqp),
        )?) as Box<dyn Source>)
    });
    let to_nats = Arc::clone(shared);
    let readers = shared.exclusive.clone();
    r.register_source("nats", move |spec| {
        if spec.options.get("jetstream") == Some("false") {
            let source = crate::nats::NatsSource::create(spec)?;
            // A plain subscription hands every message to every subscriber, but a queue group
            // splits them between its members.
            if spec.options.get("queue").is_none() {
                return Ok(source);
            }
            return Ok(Box::new(exclusive::Exclusive::new(
                "nats",
                exclusive::consumer("nats", spec),
                source,
                readers.clone(),
            )) as Box<dyn Source>);
        }
        let source = |spec: &SourceSpec| {
            crate::nats::NatsSource::new(spec).map(|s| Box::new(s) as Box<dyn Shareable>)
        };
        Ok(Box::new(subscriber::SharedSubscriber::new(
            spec,
            Some(exclusive::consumer("nats", spec)),
            source,
            Arc::clone(&to_nats),
        )?) as Box<dyn Source>)
    });
    let kinds: [(&str, Create); 1] = [("kafka", crate::kafka::KafkaSource::create)];
    for (kind, create) in kinds {
        let readers = shared.exclusive.clone();
        r.register_source(kind, move |spec| {
            let source = create(spec)?;
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
    /// The rule's side of the source `spec` declares, which `source` makes.
    fn new(
        spec: &SourceSpec,
        consumer: Option<String>,
        source: impl Fn(&SourceSpec) -> Result<Box<dyn Shareable>, OptionError>,
        shared: Arc<SharedSources>,
    ) -> Result<Self, OptionError> {
        Ok(Self {
            key: key(spec),
            consumer,
            for_hub: Some(source(spec)?),
            own: source(spec)?,
            shared,
        })
    }
}
