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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use eddy_engine::hash::{fnv1a, fnv1a_of};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::event_loop::{Client, Intake, Received};
use crate::ingest_log::{LogAppender, LogError, Record};

/// What the event loop's task queues for the log writer.
#[derive(Debug)]
pub enum ToLog {
    /// A message to append (and to acknowledge once synced, if it needs it).
    Append(Received),
    /// A redelivery of a message already in the log: acknowledged after the next sync (the
    /// original may be in the group being written), not appended again.
    AckOnly(u16),
}

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
    pub to_log: mpsc::UnboundedSender<ToLog>,
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
            ToLog::Append(m)
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

/// How much of the log no completed checkpoint covers yet, against the most it may hold
/// (`max_log_bytes`): past it, acknowledgements wait, and the broker stops sending once its
/// in-flight window is full.
pub struct Backlog {
    /// The offset the newest completed checkpoint covers the log up to.
    checkpointed: AtomicU64,
    limit: u64,
    /// Wakes the writer when a checkpoint moves `checkpointed`.
    moved: Notify,
}

impl Backlog {
    pub fn new(checkpointed: u64, limit: u64) -> Self {
        Self {
            checkpointed: AtomicU64::new(checkpointed),
            limit,
            moved: Notify::new(),
        }
    }

    pub fn checkpointed(&self, offset: u64) {
        self.checkpointed.store(offset, Ordering::Relaxed);
        self.moved.notify_one();
    }

    fn full(&self, end: u64) -> bool {
        end.saturating_sub(self.checkpointed.load(Ordering::Relaxed)) > self.limit
    }
}

/// Appends what the event loop queues, in groups synced at once; publishes the synced offset
/// on `synced`; acknowledges each group's QoS 1 messages. Returns when the queue closes or `stop`
/// is cancelled (after acknowledging every group synced), or with the error that stopped it (a
/// message not synced is not acknowledged: the broker keeps it).
pub async fn write_log(
    mut appender: LogAppender,
    mut queue: mpsc::UnboundedReceiver<ToLog>,
    client: Client,
    synced: watch::Sender<u64>,
    backlog: Arc<Backlog>,
    stop: CancellationToken,
) -> Result<(), LogError> {
    let mut group = Vec::new();
    let mut acks: Vec<u16> = Vec::new();
    let mut held_back = false;
    loop {
        if group.is_empty() {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                n = queue.recv_many(&mut group, 4096) => if n == 0 { return Ok(()) },
            }
        }
        // Whatever else has arrived meanwhile joins the group.
        while let Ok(more) = queue.try_recv() {
            group.push(more);
        }
        let batch = std::mem::take(&mut group);
        tracing::trace!("ingest log: a group of {} messages", batch.len());
        let (back, result) = tokio::task::spawn_blocking(move || {
            let mut ids = Vec::with_capacity(batch.len());
            for m in &batch {
                match m {
                    ToLog::Append(m) => {
                        appender.push(record_id(m), m.received, &m.topic, &m.payload);
                        if m.needs_ack {
                            ids.push(m.pkid);
                        }
                    }
                    ToLog::AckOnly(pkid) => ids.push(*pkid),
                }
            }
            let result = appender.commit().map(|end| (end, ids));
            (appender, result)
        })
        .await
        .map_err(|e| LogError::Io {
            what: "the ingest log's writer failed",
            path: Default::default(),
            source: std::io::Error::other(e.to_string()),
        })?;
        appender = back;
        let (end, ids) = result?;
        synced.send_replace(end);
        acks.extend(ids);
        // Past the limit, the acknowledgements wait for a checkpoint to cover more of the log.
        while backlog.full(end) {
            if !held_back {
                warn!(
                    "the ingest log holds more than max_log_bytes that no checkpoint covers: messages are no longer acknowledged, so the broker holds the rest"
                );
                held_back = true;
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = backlog.moved.notified() => {}
                closed = queue.recv_many(&mut group, 4096) => if closed == 0 { return Ok(()) },
            }
            // Messages that arrive meanwhile are kept for the next group.
        }
        if held_back {
            debug!("checkpoints caught up with the ingest log: acknowledging again");
            held_back = false;
        }
        for pkid in acks.drain(..) {
            if let Err(e) = client.ack(pkid).await {
                // The event loop has stopped: the broker sends the message again.
                debug!("cannot acknowledge message {pkid}: {e}");
                return Ok(());
            }
        }
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
