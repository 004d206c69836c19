//! Sources that one rule at a time may read: a broker that hands each message of a Kafka consumer
//! group or a NATS queue group to one of its members would split the messages between two rules
//! reading the same source, and each rule would see part of them. The second rule to start is
//! refused, with the reason, instead of answering wrongly. (AMQP queues and JetStream consumers
//! are read once for every rule, through a hub; a Kafka source is not, because its watermark
//! follows each partition apart, which a hub's batches do not keep.)

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use eddy_engine::{ConnectorError, Source, SourceContext, SourceSpec};

/// Who the broker knows the source's reader as: the server, and the queue, consumer group or
/// durable consumer (by default named after the source), as its connector names them.
pub fn consumer(kind: &str, spec: &SourceSpec) -> String {
    let option = |k: &str| spec.options.get(k).unwrap_or_default();
    let named = |k: &str| {
        spec.options
            .get(k)
            .map_or_else(|| format!("eddy-{}", spec.name), str::to_string)
    };
    match kind {
        "amqp" => format!("amqp {} queue {}", option("url"), option("queue")),
        "kafka" => format!(
            "kafka {} group {}",
            option("bootstrap_servers"),
            named("group_id")
        ),
        _ if spec.options.get("jetstream") == Some("false") => {
            format!("nats {} queue group {}", option("url"), option("queue"))
        }
        _ => format!(
            "nats {} stream {} durable {}",
            option("url"),
            option("stream"),
            named("durable")
        ),
    }
}

/// The keys of the sources being read.
#[derive(Clone, Default)]
pub struct Readers(Arc<Mutex<HashSet<String>>>);

impl Readers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Exclusive {
    kind: &'static str,
    key: String,
    inner: Box<dyn Source>,
    readers: Readers,
}

impl Exclusive {
    pub fn new(kind: &'static str, key: String, inner: Box<dyn Source>, readers: Readers) -> Self {
        Self {
            kind,
            key,
            inner,
            readers,
        }
    }
}

/// Lets the source go when the rule's source ends, however it ends.
struct Reading {
    key: String,
    readers: Readers,
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.readers.lock().remove(&self.key);
    }
}

#[async_trait]
impl Source for Exclusive {
    fn describe(&self) -> String {
        format!("{}, read by one rule at a time", self.inner.describe())
    }

    async fn run(self: Box<Self>, ctx: &mut SourceContext) -> Result<(), ConnectorError> {
        let Self {
            kind,
            key,
            inner,
            readers,
        } = *self;
        if !readers.lock().insert(key.clone()) {
            let what = match kind {
                "kafka" => "consumer group",
                _ => "queue group",
            };
            return Err(ConnectorError::fatal(format!(
                "source {} is read by another rule already: the broker would split the {kind} {what}'s messages between the two rules; declare the source in each rule with a {what} of its own",
                ctx.name()
            )));
        }
        let _reading = Reading { key, readers };
        inner.run(ctx).await
    }
}
