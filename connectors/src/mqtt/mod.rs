//! MQTT with rumqttc: a source that subscribes to a topic filter (MQTT 3.1.1 or 5) and a sink that
//! publishes each row to a topic made from a template; both reconnect with backoff.
//! [`EmbeddedBroker`] runs rumqttd in-process for the demo and the tests.
//!
//! - `config`: the `WITH` options; `connection`: broker address, credentials, TLS;
//! - `event_loop`: rumqttc's event loop in a task of its own, both protocols in one shape;
//! - `source`: the source (messages become rows in [`crate::messages`], the topic's levels
//!   through `topic_pattern`); `acks`: at-least-once ingest through the source's ingest log;
//! - `sink`: the sink (topics from [`crate::template`]); `broker`: the embedded broker.

mod acks;
mod broker;
pub mod config;
mod connection;
mod event_loop;
mod hub;
mod sink;
mod source;
pub(crate) mod topic_pattern;

pub use broker::EmbeddedBroker;
pub use connection::BrokerAddress;
#[cfg(test)]
pub(crate) use event_loop::with_user_properties;
pub use sink::MqttSink;
pub use source::MqttSource;
