//! MQTT with rumqttc: a source that subscribes to a topic filter (MQTT 3.1.1 or 5) and a sink that
//! publishes each row to a topic made from a template; both reconnect with backoff.
//! [`EmbeddedBroker`] runs rumqttd in-process for the demo and the tests.
//!
//! - `config`: the `WITH` options; `connection`: broker address, credentials, TLS, backoff;
//! - `event_loop`: rumqttc's event loop in a task of its own, both protocols in one shape;
//! - `source`: the source; `rows`: messages into rows (the payload's format, the topic's levels
//!   through `topic_pattern`); `acks`: at-least-once ingest through the source's ingest log;
//! - `sink`, `topic`: the sink and its topic templates; `broker`: the embedded broker.

mod acks;
mod broker;
pub mod config;
mod connection;
mod event_loop;
mod rows;
mod sink;
mod source;
mod topic;
mod topic_pattern;

pub use broker::EmbeddedBroker;
pub use connection::{Backoff, BrokerAddress};
pub use sink::MqttSink;
pub use source::MqttSource;
pub use topic::TopicTemplate;
