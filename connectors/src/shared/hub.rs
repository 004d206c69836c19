//! A hub: what one connection to a source has received, decoded once and kept for a while, for
//! every reader of the source. The connection's side writes what arrives to the source's ingest
//! log and decodes what is synced there in batches, each published with the offsets of the log it
//! spans. A reader at an offset where a published batch starts takes that batch; a reader
//! elsewhere (behind the batches still kept, or at an offset that is not a batch's start after a
//! restart) reads the log itself up to the next batch's start, and then goes on with the batches.
//! No reader waits for another: the batches are kept in a bounded ring, and one that falls out of
//! it reads the log.
//!
//! The log behind what every reader's completed checkpoints cover is removed, and past
//! `max_log_bytes` that they do not cover the connection stops acknowledging (the broker holds
//! the rest), as a source with a log of its own does.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use arrow::array::RecordBatch;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Batches kept for readers at most; a reader further behind reads the log itself.
const RING_BATCHES: usize = 1024;
/// Bytes of batches kept for readers at most.
const RING_BYTES: usize = 64 << 20;

/// A message the decoding rejected.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub origin: String,
    pub payload: Vec<u8>,
    pub reason: String,
}

/// The rows of the messages in the log from `start` to `end`.
#[derive(Debug)]
pub struct Decoded {
    pub start: u64,
    pub end: u64,
    pub batch: Option<RecordBatch>,
    pub rejected: Vec<Rejected>,
}

/// What a reader at some offset does next.
pub enum Next {
    /// Hands on this batch: it starts at the reader's offset.
    Take(std::sync::Arc<Decoded>),
    /// Reads the log itself from its offset up to this one (a batch's start, or the end of what
    /// is decoded).
    Read(u64),
    /// Nothing beyond its offset is decoded yet.
    Wait,
    /// The connection has failed, for this reason.
    Failed(String),
}

struct State {
    ring: VecDeque<std::sync::Arc<Decoded>>,
    ring_bytes: usize,
    /// The offset after the last batch published.
    decoded: u64,
    /// The offset of the oldest record the log keeps.
    first: u64,
    /// Each reader's offset that its completed checkpoints cover.
    readers: BTreeMap<u64, u64>,
    next_reader: u64,
    failed: Option<String>,
}

/// One source's connection, shared by its readers.
pub struct Hub {
    /// The source's name, for logs.
    pub name: String,
    /// Where its ingest log is.
    pub log_dir: PathBuf,
    state: Mutex<State>,
    /// The offset after the last batch published, as it moves (and when the hub fails).
    published: watch::Sender<u64>,
    /// The offset every reader's completed checkpoints cover: the log before it can go.
    floor: watch::Sender<u64>,
    /// Reconnections of the connection so far.
    pub reconnects: AtomicU64,
    /// Stops the connection.
    pub stop: CancellationToken,
}

impl Hub {
    /// A hub whose log in `log_dir` keeps records from `first`, decoding from `start`.
    pub fn new(name: &str, log_dir: &Path, first: u64, start: u64) -> Self {
        Self {
            name: name.to_string(),
            log_dir: log_dir.to_path_buf(),
            state: Mutex::new(State {
                ring: VecDeque::new(),
                ring_bytes: 0,
                decoded: start,
                first,
                readers: BTreeMap::new(),
                next_reader: 0,
                failed: None,
            }),
            published: watch::channel(start).0,
            floor: watch::channel(start).0,
            reconnects: AtomicU64::new(0),
            stop: CancellationToken::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves nothing half-updated that readers could trip
        // over: each update is one assignment or push.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the rows of the log from `decoded.start` (the end of the last batch) to
    /// `decoded.end`.
    pub fn publish(&self, decoded: Decoded) {
        let end = decoded.end;
        let bytes = decoded
            .batch
            .as_ref()
            .map_or(0, RecordBatch::get_array_memory_size);
        {
            let mut s = self.state();
            s.decoded = end;
            s.ring.push_back(std::sync::Arc::new(decoded));
            s.ring_bytes += bytes;
            while s.ring.len() > RING_BATCHES || (s.ring_bytes > RING_BYTES && s.ring.len() > 1) {
                if let Some(old) = s.ring.pop_front() {
                    s.ring_bytes -= old
                        .batch
                        .as_ref()
                        .map_or(0, RecordBatch::get_array_memory_size);
                }
            }
        }
        self.published.send_replace(end);
    }

    /// The connection has failed: every reader stops with `reason`.
    pub fn fail(&self, reason: String) {
        self.state().failed = Some(reason);
        self.published.send_modify(|_| {});
    }

    pub fn failed(&self) -> bool {
        self.state().failed.is_some()
    }

    /// The log keeps records from `first` only.
    pub fn truncated(&self, first: u64) {
        self.state().first = first;
    }

    /// Changes of the offset every reader's checkpoints cover.
    pub fn floor(&self) -> watch::Receiver<u64> {
        self.floor.subscribe()
    }

    /// Changes of what is published.
    pub fn published(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// A new reader, at `at` (its checkpoint's offset) or, without one, where decoding is now:
    /// its id and its offset (moved up to the oldest record kept if the log before `at` has
    /// gone, with how many bytes were skipped).
    pub fn join(&self, at: Option<u64>) -> (u64, u64, u64) {
        let mut s = self.state();
        let wanted = at.unwrap_or(s.decoded);
        let from = wanted.max(s.first);
        let id = s.next_reader;
        s.next_reader += 1;
        s.readers.insert(id, from);
        drop(s);
        self.move_floor();
        (id, from, from - wanted)
    }

    /// Reader `id` has gone.
    pub fn leave(&self, id: u64) {
        self.state().readers.remove(&id);
        self.move_floor();
    }

    /// Reader `id`'s completed checkpoints cover the log up to `offset`.
    pub fn covered(&self, id: u64, offset: u64) {
        if let Some(at) = self.state().readers.get_mut(&id) {
            *at = offset;
        }
        self.move_floor();
    }

    fn move_floor(&self) {
        let floor = {
            let s = self.state();
            // Without readers, what is decoded is no longer needed by anyone.
            s.readers.values().copied().min().unwrap_or(s.decoded)
        };
        self.floor.send_if_modified(|f| {
            let moved = *f != floor;
            *f = floor;
            moved
        });
    }

    /// What a reader at offset `at` does next.
    pub fn next(&self, at: u64) -> Next {
        let s = self.state();
        if let Some(reason) = &s.failed {
            return Next::Failed(reason.clone());
        }
        if at >= s.decoded {
            return Next::Wait;
        }
        let i = s.ring.partition_point(|d| d.start < at);
        match s.ring.get(i) {
            Some(d) if d.start == at => Next::Take(std::sync::Arc::clone(d)),
            Some(d) => Next::Read(d.start),
            None => Next::Read(s.decoded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(start: u64, end: u64) -> Decoded {
        Decoded {
            start,
            end,
            batch: None,
            rejected: Vec::new(),
        }
    }

    #[test]
    fn a_reader_takes_the_batch_at_its_offset_and_reads_the_log_up_to_the_next_one_elsewhere() {
        let hub = Hub::new("readings", Path::new("/nonexistent"), 0, 100);
        let (a, at, skipped) = hub.join(None);
        assert_eq!((at, skipped), (100, 0));
        assert!(matches!(hub.next(100), Next::Wait));
        hub.publish(decoded(100, 150));
        hub.publish(decoded(150, 220));
        assert!(matches!(hub.next(100), Next::Take(d) if d.end == 150));
        assert!(matches!(hub.next(150), Next::Take(d) if d.end == 220));
        // Behind what the ring keeps, or inside a batch: the log, up to the next batch.
        assert!(matches!(hub.next(40), Next::Read(100)));
        assert!(matches!(hub.next(120), Next::Read(150)));
        assert!(matches!(hub.next(160), Next::Read(220)));
        assert!(matches!(hub.next(220), Next::Wait));

        // The floor is the lowest offset readers' checkpoints cover.
        let (b, at_b, _) = hub.join(Some(40));
        assert_eq!(at_b, 40);
        assert_eq!(*hub.floor().borrow(), 40);
        hub.covered(b, 180);
        assert_eq!(*hub.floor().borrow(), 100);
        hub.covered(a, 200);
        assert_eq!(*hub.floor().borrow(), 180);
        hub.leave(b);
        assert_eq!(*hub.floor().borrow(), 200);
        hub.leave(a);
        assert_eq!(*hub.floor().borrow(), 220);

        // A checkpoint's offset whose log has gone: from the oldest record kept.
        hub.truncated(150);
        let (_, at_c, skipped) = hub.join(Some(40));
        assert_eq!((at_c, skipped), (150, 110));

        hub.fail("the broker refused the subscription".into());
        assert!(matches!(hub.next(150), Next::Failed(r) if r.contains("refused")));
    }

    #[test]
    fn the_ring_keeps_a_bounded_number_of_batches() {
        let hub = Hub::new("readings", Path::new("/nonexistent"), 0, 0);
        for i in 0..(RING_BATCHES as u64 + 10) {
            hub.publish(decoded(i * 10, i * 10 + 10));
        }
        // The oldest batches have gone: a reader there reads the log up to the oldest kept.
        assert!(matches!(hub.next(0), Next::Read(100)));
        assert!(matches!(hub.next(100), Next::Take(_)));
    }
}
