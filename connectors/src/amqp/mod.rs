//! AMQP 0.9.1 (RabbitMQ, lapin): a source consuming a queue (optionally declared and bound to an
//! exchange) and a sink publishing persistent messages to an exchange with publisher confirms.
//!
//! - `config`: the `WITH` options; `consume`: the connection, made again after a loss, that hands
//!   deliveries on; `source`: the source, through the ingest log with `--state-dir`; `sink`.

pub mod config;
mod consume;
mod sink;
mod source;

use eddy_engine::{ConnectorError, OptionError};
use lapin::{Connection, ConnectionProperties, ExchangeKind};

pub use sink::AmqpSink;
pub use source::AmqpSource;

/// The broker's address with the password hidden, for logs and plans.
fn shown_address(url: &str) -> String {
    match url.parse::<lapin::uri::AMQPUri>() {
        Ok(u) => format!(
            "{}://{}:{}{}",
            match u.scheme {
                lapin::uri::AMQPScheme::AMQP => "amqp",
                lapin::uri::AMQPScheme::AMQPS => "amqps",
            },
            u.authority.host,
            u.authority.port,
            if u.vhost == "/" {
                String::new()
            } else {
                format!("/{}", u.vhost)
            }
        ),
        Err(_) => "amqp://?".into(),
    }
}

fn check_url(url: &str) -> Result<(), OptionError> {
    url.parse::<lapin::uri::AMQPUri>().map(|_| ()).map_err(|e| {
        OptionError::invalid(
            "url",
            format!("not an AMQP URL ({e}); amqp://user:password@host:5672/%2f"),
        )
    })
}

fn exchange_kind(kind: &str) -> Result<ExchangeKind, OptionError> {
    match kind.to_ascii_lowercase().as_str() {
        "direct" => Ok(ExchangeKind::Direct),
        "topic" => Ok(ExchangeKind::Topic),
        "fanout" => Ok(ExchangeKind::Fanout),
        "headers" => Ok(ExchangeKind::Headers),
        other => Err(OptionError::invalid(
            "exchange_type",
            format!("'{other}': one of direct, topic, fanout, headers"),
        )),
    }
}

/// Connects as `name` (the connection name RabbitMQ's management shows).
async fn connect(url: &str, name: &str) -> Result<Connection, ConnectorError> {
    let properties =
        ConnectionProperties::default().with_connection_name(format!("eddy {name}").into());
    Connection::connect(url, properties).await.map_err(|e| {
        ConnectorError::retryable(format!("cannot connect to {}: {e}", shown_address(url)))
    })
}
