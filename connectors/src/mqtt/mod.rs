//! MQTT with rumqttc (v3.1.1): a source that subscribes to a topic filter and a sink that publishes
//! each row to a topic made from a template; both reconnect with backoff. [`EmbeddedBroker`] runs
//! rumqttd in-process for the demo and the tests.

mod broker;
pub mod config;
mod connection;
mod sink;
mod source;
mod topic;

pub use broker::EmbeddedBroker;
pub use connection::{Backoff, BrokerAddress};
pub use sink::MqttSink;
pub use source::MqttSource;
pub use topic::TopicTemplate;
