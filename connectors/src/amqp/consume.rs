//! The source's connection: connects, declares what it is asked to, consumes the queue, and hands
//! each delivery on; after a loss it connects again with backoff. Deliveries carry the number of
//! the connection they came on: an acknowledgement is sent only on that connection's channel (a
//! delivery tag means nothing on another; the broker sent the message again after the loss).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ErrorKind, ExchangeKind};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::connect;
use crate::backoff::Backoff;

/// A delivery's place: the connection it came on, and its tag there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub connection: u64,
    pub tag: u64,
}

/// One message from the queue.
pub struct Delivered {
    pub routing_key: Bytes,
    pub payload: Bytes,
    pub token: Token,
    /// The broker sent it before, on a connection that was lost before it was acknowledged.
    pub redelivered: bool,
    /// When it arrived, in milliseconds since the epoch.
    pub received: i64,
}

/// Changes of the connection's state.
pub enum Status {
    Connected {
        reconnected: bool,
    },
    /// Lost or not made; tried again after the delay.
    Failed(String, Duration),
    /// The broker refused what was asked (a queue missing, access refused, a declaration that
    /// does not match the existing one): trying again would not help.
    Refused(String),
}

/// What the source consumes and declares.
#[derive(Debug, Clone)]
pub struct Topology {
    pub queue: String,
    /// Exchange, its type, binding key.
    pub exchange: Option<(String, ExchangeKind, String)>,
    pub declare: bool,
    pub prefetch: u16,
}

/// The channel acknowledgements go through, with its connection's number; `None` while there is
/// no connection.
pub type CurrentChannel = Option<(u64, Channel)>;

/// Runs until `stop` is cancelled or the broker refuses the topology.
pub async fn run(
    url: String,
    name: String,
    topology: Topology,
    mut deliver: impl FnMut(Delivered) + Send,
    status: mpsc::UnboundedSender<Status>,
    channel: watch::Sender<CurrentChannel>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::default();
    let mut number = 0u64;
    loop {
        number += 1;
        let opened = tokio::select! {
            _ = stop.cancelled() => return,
            opened = open(&url, &name, &topology) => opened,
        };
        let failure = match opened {
            Ok((connection, ch, mut consumer)) => {
                channel.send_replace(Some((number, ch)));
                let _ = status.send(Status::Connected {
                    reconnected: number > 1,
                });
                backoff.reset();
                let failure = loop {
                    tokio::select! {
                        _ = stop.cancelled() => {
                            channel.send_replace(None);
                            let _ = connection.close(200, "stopping".into()).await;
                            return;
                        }
                        d = consumer.next() => match d {
                            Some(Ok(d)) => deliver(Delivered {
                                routing_key: Bytes::copy_from_slice(d.routing_key.as_str().as_bytes()),
                                payload: Bytes::from(d.data),
                                token: Token { connection: number, tag: d.delivery_tag },
                                redelivered: d.redelivered,
                                received: eddy_engine::time::now_millis(),
                            }),
                            Some(Err(e)) => break e.to_string(),
                            None => break "the broker cancelled the consumer".to_string(),
                        }
                    }
                };
                channel.send_replace(None);
                failure
            }
            Err(Opening::Refused(why)) => {
                let _ = status.send(Status::Refused(why));
                return;
            }
            Err(Opening::Failed(why)) => why,
        };
        let delay = backoff.next_delay();
        let _ = status.send(Status::Failed(failure, delay));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

enum Opening {
    Failed(String),
    Refused(String),
}

async fn open(
    url: &str,
    name: &str,
    t: &Topology,
) -> Result<(Connection, Channel, lapin::Consumer), Opening> {
    let connection = connect(url, name)
        .await
        .map_err(|e| Opening::Failed(e.message))?;
    let refused = |what: String| {
        move |e: lapin::Error| match e.kind() {
            ErrorKind::ProtocolError(_) => Opening::Refused(format!("{what}: {e}")),
            _ => Opening::Failed(format!("{what}: {e}")),
        }
    };
    let channel = connection
        .create_channel()
        .await
        .map_err(refused("cannot open a channel".into()))?;
    channel
        .basic_qos(t.prefetch, BasicQosOptions::default())
        .await
        .map_err(refused("cannot set the prefetch".into()))?;
    let queue_options = QueueDeclareOptions {
        durable: true,
        passive: !t.declare,
        ..Default::default()
    };
    channel
        .queue_declare(
            t.queue.as_str().into(),
            queue_options,
            FieldTable::default(),
        )
        .await
        .map_err(refused(format!("queue {}", t.queue)))?;
    if let Some((exchange, kind, key)) = &t.exchange {
        let options = ExchangeDeclareOptions {
            durable: true,
            passive: !t.declare,
            ..Default::default()
        };
        channel
            .exchange_declare(
                exchange.as_str().into(),
                kind.clone(),
                options,
                FieldTable::default(),
            )
            .await
            .map_err(refused(format!("exchange {exchange}")))?;
        if t.declare {
            channel
                .queue_bind(
                    t.queue.as_str().into(),
                    exchange.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(refused(format!("binding {} to {exchange}", t.queue)))?;
        }
    }
    let consumer = channel
        .basic_consume(
            t.queue.as_str().into(),
            format!("eddy-{name}").as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(refused(format!("cannot consume {}", t.queue)))?;
    Ok((connection, channel, consumer))
}
