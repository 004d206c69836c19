//! # Eddy's connectors
//!
//! Sources and sinks for the engine's [`Source`](eddy_engine::Source) and
//! [`Sink`](eddy_engine::Sink) traits, and the formats they read and write.
//!
//! # Layout
//! - [`mqtt`]: MQTT source and sink (rumqttc), topic templates, the embedded broker (rumqttd).
//! - [`file`]: JSON-lines file source (a replay that ends) and sink.
//! - [`stdout`]: standard-output sink, JSON or readable text.
//! - [`webhook`]: alerts to an HTTP endpoint, signed, with idempotency keys.
//! - [`amqp`]: RabbitMQ queues in (through the ingest log), alerts to exchanges with confirms.
//! - [`kafka`]: Kafka topics in (a consumer group, offsets after checkpoints), alerts out through an
//!   idempotent producer.
//! - [`nats`]: NATS subjects and JetStream streams in, alerts published to subjects.
//! - [`postgres`]: alerts inserted into PostgreSQL (upserts on `alert_id`), reference tables.
//! - [`format`]: JSON decoding into Arrow batches with per-record errors, and encoding of rows.
//! - [`backoff`]: the waits between attempts to reach a service.
//! - [`part_written`]: where a sink's failed write stopped, for its retry.
//! - [`ingest_log`]: the log a source writes what it receives to before acknowledging it.
//! - [`shared`]: MQTT sources read by many rules of a service through one connection and one
//!   decoding of each message.
//! - [`messages`]: a broker's messages into rows; [`template`]: topics, subjects and routing keys
//!   made from a row's columns.
//!
//! Each connector folder has `config.rs` (its `WITH` options, one documented field each, unknown
//! options refused), then `source.rs` and/or `sink.rs`.

#![deny(clippy::clone_on_ref_ptr)]

pub mod amqp;
pub mod backoff;
pub mod checkpoints;
pub mod file;
pub mod format;
pub mod ingest_log;
pub mod kafka;
pub mod messages;
pub mod mqtt;
pub mod nats;
pub mod part_written;
pub mod postgres;
pub mod shared;
pub mod stdout;
mod tasks;
pub mod template;

/// Makes ring the process's TLS provider, once: the connectors' TLS stacks (rumqttc, reqwest,
/// async-nats, lapin) share rustls, which cannot pick a provider by itself when more than one is
/// built in. Called before any TLS connection is made; a provider installed already is kept.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
pub mod webhook;

use eddy_engine::ConnectorRegistry;

/// Every connector, by the name used in `connector = '...'`.
pub fn registry() -> ConnectorRegistry {
    install_tls_provider();
    let mut r = ConnectorRegistry::new();
    r.register_source("amqp", amqp::AmqpSource::create);
    r.register_source("file", file::FileSource::create);
    r.register_source("kafka", kafka::KafkaSource::create);
    r.register_source("mqtt", mqtt::MqttSource::create);
    r.register_source("nats", nats::NatsSource::create);
    r.register_sink("amqp", amqp::AmqpSink::create);
    r.register_sink("file", file::FileSink::create);
    r.register_sink("kafka", kafka::KafkaSink::create);
    r.register_sink("mqtt", mqtt::MqttSink::create);
    r.register_sink("nats", nats::NatsSink::create);
    r.register_sink("stdout", stdout::StdoutSink::create);
    r.register_sink("webhook", webhook::WebhookSink::create);
    r.register_sink("postgres", postgres::PostgresSink::create);
    r.register_table("postgres", postgres::PostgresTable::create);
    r.register_table("file", file::FileTable::create);
    r
}
