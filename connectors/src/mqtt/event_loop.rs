//! The connection to the broker as the source sees it, whatever the protocol: rumqttc's event
//! loop (MQTT 3.1.1 or 5) is polled in a task of its own that never waits for the source (an
//! event loop not polled sends no keep-alive and takes no acknowledgement), the messages it
//! receives and the changes of state it reports are handed over in one shape, and the client
//! sends acknowledgements and subscriptions.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5;
use tokio::sync::mpsc;

use super::connection::Connection;
use crate::backoff::Backoff;

/// Requests (acknowledgements, subscriptions) queued for the event loop. The event loop drains
/// them as it is polled; a sender waits when they are this many.
const REQUESTS: usize = 1024;

/// Which version of MQTT the source speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V311,
    V5,
}

/// A message as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: Bytes,
    pub payload: Bytes,
    pub pkid: u16,
    /// Sent before: the broker sends a QoS 1 message again, with the same packet id and this flag,
    /// when it has not had its acknowledgement (MQTT 3.1.1 section 4.4, MQTT 5 section 4.4).
    pub dup: bool,
    /// QoS 1: the broker waits for an acknowledgement.
    pub needs_ack: bool,
    /// When it arrived, in milliseconds since the epoch.
    pub received: i64,
}

impl Received {
    /// The topic as text (MQTT topics are UTF-8).
    pub fn topic_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.topic)
    }
}

/// What the event loop reports besides messages.
#[derive(Debug)]
pub enum Status {
    /// Connected (again); `session_present`: the broker kept the session (subscriptions and the
    /// messages it had not had acknowledged).
    Connected {
        session_present: bool,
    },
    Subscribed,
    /// The broker refused the subscription.
    Refused,
    /// The connection failed; the next attempt comes after the delay.
    Failed(String, Duration),
}

/// Sends requests to the event loop.
#[derive(Clone)]
pub enum Client {
    V311(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

/// rumqttc's event loop of either protocol. With MQTT 5, each message's user properties of the
/// names in `user_properties` are kept after its topic (see [`with_user_properties`]).
pub enum EventLoop {
    V311(Box<rumqttc::EventLoop>),
    V5 {
        events: Box<v5::EventLoop>,
        user_properties: Vec<String>,
    },
}

/// What one poll gave.
enum Polled {
    Message(Received),
    Status(Status),
    /// The client's DISCONNECT has gone out, after every request queued before it.
    Disconnected,
    Nothing,
}

/// A client and its event loop (not connected until polled). `manual_acks`: messages are
/// acknowledged by [`Client::ack`], not on receipt; `receive_maximum`: with MQTT 5, how many
/// unacknowledged QoS 1 messages the broker may send at once; `user_properties`: with MQTT 5,
/// the names of the user properties kept after each message's topic.
pub fn client(
    connection: &Connection,
    protocol: Protocol,
    manual_acks: bool,
    receive_maximum: u16,
    user_properties: Vec<String>,
) -> Result<(Client, EventLoop), String> {
    match protocol {
        Protocol::V311 => {
            let mut options = connection.mqtt_options()?;
            options.set_manual_acks(manual_acks);
            let (client, events) = rumqttc::AsyncClient::new(options, REQUESTS);
            Ok((Client::V311(client), EventLoop::V311(Box::new(events))))
        }
        Protocol::V5 => {
            let mut options = connection.mqtt5_options()?;
            options.set_manual_acks(manual_acks);
            options.set_receive_maximum(Some(receive_maximum.max(1)));
            let (client, events) = v5::AsyncClient::new(options, REQUESTS);
            let events = EventLoop::V5 {
                events: Box::new(events),
                user_properties,
            };
            Ok((Client::V5(client), events))
        }
    }
}

impl Client {
    /// Acknowledges QoS 1 message `pkid`; waits while the event loop's request queue is full.
    pub async fn ack(&self, pkid: u16) -> Result<(), String> {
        match self {
            Self::V311(c) => {
                let mut p = rumqttc::Publish::new("", rumqttc::QoS::AtLeastOnce, Vec::new());
                p.pkid = pkid;
                c.ack(&p).await.map_err(|e| e.to_string())
            }
            Self::V5(c) => {
                let mut p = v5::mqttbytes::v5::Publish::new(
                    "",
                    v5::mqttbytes::QoS::AtLeastOnce,
                    Vec::new(),
                    None,
                );
                p.pkid = pkid;
                c.ack(&p).await.map_err(|e| e.to_string())
            }
        }
    }

    pub async fn subscribe(&self, filter: &str, at_least_once: bool) -> Result<(), String> {
        match self {
            Self::V311(c) => {
                let qos = if at_least_once {
                    rumqttc::QoS::AtLeastOnce
                } else {
                    rumqttc::QoS::AtMostOnce
                };
                c.subscribe(filter, qos).await.map_err(|e| e.to_string())
            }
            Self::V5(c) => {
                let qos = if at_least_once {
                    v5::mqttbytes::QoS::AtLeastOnce
                } else {
                    v5::mqttbytes::QoS::AtMostOnce
                };
                c.subscribe(filter, qos).await.map_err(|e| e.to_string())
            }
        }
    }

    /// Queues a DISCONNECT behind the requests already queued.
    pub async fn disconnect(&self) {
        match self {
            Self::V311(c) => drop(c.disconnect().await),
            Self::V5(c) => drop(c.disconnect().await),
        }
    }
}

impl EventLoop {
    async fn poll(&mut self) -> Result<Polled, String> {
        match self {
            Self::V311(events) => {
                use rumqttc::{Event, Packet};
                match events.poll().await.map_err(|e| e.to_string())? {
                    Event::Incoming(Packet::Publish(p)) => Ok(Polled::Message(Received {
                        needs_ack: p.qos != rumqttc::QoS::AtMostOnce,
                        topic: Bytes::from(p.topic),
                        payload: p.payload,
                        pkid: p.pkid,
                        dup: p.dup,
                        received: eddy_engine::time::now_millis(),
                    })),
                    Event::Incoming(Packet::ConnAck(c)) => Ok(Polled::Status(Status::Connected {
                        session_present: c.session_present,
                    })),
                    Event::Incoming(Packet::SubAck(ack)) => {
                        let refused = ack
                            .return_codes
                            .iter()
                            .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure));
                        Ok(Polled::Status(subscribed(refused)))
                    }
                    Event::Outgoing(rumqttc::Outgoing::Disconnect) => Ok(Polled::Disconnected),
                    _ => Ok(Polled::Nothing),
                }
            }
            Self::V5 {
                events,
                user_properties,
            } => {
                use v5::Event;
                use v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
                match events.poll().await.map_err(|e| e.to_string())? {
                    Event::Incoming(Packet::Publish(p)) => Ok(Polled::Message(Received {
                        needs_ack: p.qos != v5::mqttbytes::QoS::AtMostOnce,
                        topic: match &p.properties {
                            Some(properties) if !user_properties.is_empty() => {
                                with_user_properties(
                                    &p.topic,
                                    &properties.user_properties,
                                    user_properties,
                                )
                            }
                            _ => p.topic,
                        },
                        payload: p.payload,
                        pkid: p.pkid,
                        dup: p.dup,
                        received: eddy_engine::time::now_millis(),
                    })),
                    Event::Incoming(Packet::ConnAck(c)) => Ok(Polled::Status(Status::Connected {
                        session_present: c.session_present,
                    })),
                    Event::Incoming(Packet::SubAck(ack)) => {
                        let refused = ack
                            .return_codes
                            .iter()
                            .any(|c| !matches!(c, SubscribeReasonCode::Success(_)));
                        Ok(Polled::Status(subscribed(refused)))
                    }
                    Event::Outgoing(rumqttc::Outgoing::Disconnect) => Ok(Polled::Disconnected),
                    _ => Ok(Polled::Nothing),
                }
            }
        }
    }
}

/// A topic followed by the user properties whose names are `wanted`, each as `\0name\0value`:
/// what the source's ingest log keeps as the message's origin, and
/// [`crate::messages::split_origin`] takes apart. MQTT forbids the null character in topics and
/// in properties' names and values (MQTT 5 section 1.5.4), so the first one ends the topic.
pub fn with_user_properties(
    topic: &[u8],
    properties: &[(String, String)],
    wanted: &[String],
) -> Bytes {
    let kept: Vec<&(String, String)> = properties
        .iter()
        .filter(|(name, _)| wanted.contains(name))
        .collect();
    let mut origin = Vec::with_capacity(
        topic.len()
            + kept
                .iter()
                .map(|(n, v)| n.len() + v.len() + 2)
                .sum::<usize>(),
    );
    origin.extend_from_slice(topic);
    for (name, value) in kept {
        origin.push(0);
        origin.extend_from_slice(name.as_bytes());
        origin.push(0);
        origin.extend_from_slice(value.as_bytes());
    }
    Bytes::from(origin)
}

fn subscribed(refused: bool) -> Status {
    if refused {
        Status::Refused
    } else {
        Status::Subscribed
    }
}

/// Where the event loop hands received messages.
pub trait Intake: Send + 'static {
    /// Takes a message; `false` when nobody takes messages any more (the source has stopped).
    fn take(&mut self, message: Received) -> impl Future<Output = bool> + Send;
    /// The broker did not keep the session: what it had not had acknowledged is gone.
    fn new_session(&mut self) {}
}

/// Messages handed to the source over a bounded channel: a source that cannot keep up stops the
/// polling, and the broker holds (QoS 1) or drops (QoS 0) what follows.
impl Intake for mpsc::Sender<Received> {
    async fn take(&mut self, message: Received) -> bool {
        self.send(message).await.is_ok()
    }
}

/// Polls the event loop until the source stops listening or the broker has closed the connection
/// after the client's DISCONNECT:
/// subscribes to `filter` on every connection, hands messages to `intake` and changes of state to
/// `status`, and waits with backoff (and jitter) between failed connection attempts.
pub async fn run(
    mut events: EventLoop,
    client: Client,
    filter: String,
    at_least_once: bool,
    mut intake: impl Intake,
    status: mpsc::UnboundedSender<Status>,
) {
    let mut backoff = Backoff::default();
    let mut disconnecting = false;
    loop {
        match events.poll().await {
            Ok(Polled::Message(m)) => {
                if !intake.take(m).await {
                    return;
                }
            }
            Ok(Polled::Status(s)) => {
                if let Status::Connected { session_present } = s {
                    backoff.reset();
                    if !session_present {
                        intake.new_session();
                    }
                    // Through the request queue, which this task drains: from a task of its own.
                    let (client, filter, status) = (client.clone(), filter.clone(), status.clone());
                    tokio::spawn(async move {
                        if let Err(e) = client.subscribe(&filter, at_least_once).await {
                            let _ = status.send(Status::Failed(
                                format!("cannot subscribe to {filter}: {e}"),
                                Duration::ZERO,
                            ));
                        }
                    });
                }
                if status.send(s).is_err() {
                    return;
                }
            }
            // The broker closes the connection once it has read the DISCONNECT, and so every
            // acknowledgement sent before it: only then is the session's state settled (a client
            // that connects under the same id at once would otherwise take over a session whose
            // last acknowledgements the broker never read).
            Ok(Polled::Disconnected) => disconnecting = true,
            Err(_) if disconnecting => return,
            Ok(Polled::Nothing) => {}
            Err(e) => {
                let delay = backoff.next_delay();
                if status.send(Status::Failed(e, delay)).is_err() {
                    return;
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}
