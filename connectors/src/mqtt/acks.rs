//! At-least-once ingest through the source's ingest log: every message received goes to the log,
//! and a QoS 1 message is acknowledged to the broker once the group it was written in is synced,
//! whatever the checkpoints do. The broker's in-flight window (Mosquitto sends 20 unacknowledged
//! messages to an MQTT 3.1.1 client; an MQTT 5 client sets its own Receive Maximum) then limits
//! only how many messages wait for one sync, not how many wait for a checkpoint.
//!
//! Three parts that never wait for each other in a circle:
//! - the event loop's task hands each message to [`LogIntake`], which never waits: it recognizes
//!   the broker's redeliveries of messages already in the log and queues the rest for the writer;
//! - [`write_log`] appends what is queued, syncs it in one group, publishes the offset synced for
//!   the source to read up to, then acknowledges the group (waiting, if need be, for the event
//!   loop to drain its request queue: it always does, as it waits for nobody);
//! - the source reads the log up to the synced offset and hands rows on at its own pace.

use eddy_engine::hash::{fnv1a, fnv1a_of};
use tokio::sync::mpsc;
use tracing::debug;

use super::event_loop::{Client, Intake, Received};
use crate::ingest_log::Record;
use crate::ingest_log::intake::{Acknowledge, Entry, ToLog};

/// How a message is told from others when the broker sends it again: its packet id, and a hash
/// of its topic and payload (a packet id is reused once its message is acknowledged).
pub fn message_hash(topic: &[u8], payload: &[u8]) -> u64 {
    // Never 0, which marks "no message under this packet id".
    fnv1a(fnv1a_of(topic), payload).max(1)
}

/// The hash of the newest message in the log under each packet id. A broker sends a message it
/// has not had acknowledged again with the same packet id and the DUP flag, and uses the id for
/// nothing else until it has the acknowledgement: a DUP message whose id holds its hash is the
/// one already logged.
pub struct Redeliveries {
    newest: Vec<u64>,
}

impl Default for Redeliveries {
    fn default() -> Self {
        Self {
            newest: vec![0; 1 << 16],
        }
    }
}

/// The id a record of an MQTT message keeps in the log: its packet id, and whether it needs an
/// acknowledgement.
pub fn record_id(m: &Received) -> u32 {
    u32::from(m.pkid) | (u32::from(m.needs_ack) << 16)
}

impl Redeliveries {
    /// Notes a message read back from the log when it is opened.
    pub fn note_record(&mut self, r: Record<'_>) {
        if r.id >> 16 & 1 == 1 {
            self.newest[(r.id & 0xffff) as usize] = message_hash(r.origin, r.payload);
        }
    }

    /// `true` if `m` is the broker sending again a message already logged; otherwise notes it.
    fn seen(&mut self, m: &Received) -> bool {
        if !m.needs_ack {
            return false;
        }
        let hash = message_hash(&m.topic, &m.payload);
        let slot = &mut self.newest[m.pkid as usize];
        if m.dup && *slot == hash {
            return true;
        }
        *slot = hash;
        false
    }
}

/// The event loop's side: queues messages for the writer, never waiting.
pub struct LogIntake {
    pub redeliveries: Redeliveries,
    pub to_log: mpsc::UnboundedSender<ToLog<u16>>,
}

impl Intake for LogIntake {
    async fn take(&mut self, m: Received) -> bool {
        let queued = if self.redeliveries.seen(&m) {
            debug!(
                "message {} on {} sent again is in the ingest log already: acknowledged, not taken twice",
                m.pkid,
                m.topic_str()
            );
            ToLog::AckOnly(m.pkid)
        } else {
            ToLog::Append(Entry {
                id: record_id(&m),
                received: m.received,
                ack: m.needs_ack.then_some(m.pkid),
                origin: m.topic,
                payload: m.payload,
            })
        };
        // Once the writer has stopped (the source is stopping), what arrives is not taken and
        // not acknowledged: the broker sends it again. The event loop goes on, so that the
        // acknowledgements and the DISCONNECT already queued go out.
        let _ = self.to_log.send(queued);
        true
    }

    fn new_session(&mut self) {
        // The broker forgot what it had sent: no redeliveries, and packet ids start again.
        self.redeliveries = Redeliveries::default();
    }
}

/// Acknowledges QoS 1 messages by packet id through the event loop's request queue.
pub struct MqttAcks(pub Client);

impl Acknowledge for MqttAcks {
    type Token = u16;

    async fn acknowledge(&mut self, pkids: Vec<u16>) -> Result<(), String> {
        for pkid in pkids {
            self.0.ack(pkid).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(pkid: u16, payload: &str, dup: bool) -> Received {
        Received {
            topic: Bytes::from_static(b"plant/reading"),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            pkid,
            dup,
            needs_ack: true,
            received: 0,
        }
    }

    #[test]
    fn a_redelivery_of_a_logged_message_is_recognized_and_other_messages_are_not() {
        let mut r = Redeliveries::default();
        assert!(!r.seen(&message(7, r#"{"temp":1}"#, false)));
        // Sent again: same packet id, same content, DUP.
        assert!(r.seen(&message(7, r#"{"temp":1}"#, true)));
        // Same packet id, other content: a new message after the first was acknowledged.
        assert!(!r.seen(&message(7, r#"{"temp":2}"#, true)));
        // Same content without DUP: a new message that happens to repeat a reading.
        assert!(!r.seen(&message(7, r#"{"temp":2}"#, false)));
        // A message the log never had, sent again: taken.
        assert!(!r.seen(&message(8, r#"{"temp":3}"#, true)));
    }

    #[test]
    fn redeliveries_are_recognized_from_the_records_of_a_reopened_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let opened = crate::ingest_log::open(dir.path(), |_| {}).expect("log");
        let mut appender = opened.appender;
        let m = message(9, r#"{"temp":4}"#, false);
        appender.push(record_id(&m), m.received, &m.topic, &m.payload);
        let qos0 = Received {
            needs_ack: false,
            ..message(10, "x", false)
        };
        appender.push(record_id(&qos0), qos0.received, &qos0.topic, &qos0.payload);
        appender.commit().expect("synced");
        let mut r = Redeliveries::default();
        crate::ingest_log::open(dir.path(), |rec| r.note_record(rec)).expect("reopened");
        assert!(r.seen(&message(9, r#"{"temp":4}"#, true)));
        assert!(!r.seen(&message(10, "x", true)));
    }
}
