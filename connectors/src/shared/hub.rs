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
//! the rest), as a source with a log of its own does. A reader that stops (a paused rule, or a
//! service going down) leaves its position held, under the name of the rule's state: the log
//! from there is kept for it, up to `max_log_bytes` behind the running readers, so that it
//! goes on where it stopped; the held positions are kept in the log's directory across restarts.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use arrow::array::RecordBatch;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

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

/// How far the log may go: acknowledgements wait past `max_log_bytes` beyond `acks`, and the log
/// before `removal` is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Floor {
    /// The offset every running reader's completed checkpoints cover.
    pub acks: u64,
    /// The lowest offset a running reader or a held position needs.
    pub removal: u64,
}

/// A reader's completed checkpoints cover the log up to `covered`; `holder` names the rule's
/// state it checkpoints into (its position is held there when it stops).
struct Reader {
    covered: u64,
    holder: Option<String>,
}

/// The file, in the log's directory, that keeps the held positions.
const HELD_FILE: &str = "held.json";

struct State {
    ring: VecDeque<std::sync::Arc<Decoded>>,
    ring_bytes: usize,
    /// The offset after the last batch published.
    decoded: u64,
    /// The offset of the oldest record the log keeps.
    first: u64,
    readers: BTreeMap<u64, Reader>,
    next_reader: u64,
    /// The positions of readers that stopped, by holder.
    held: BTreeMap<String, u64>,
    /// How far behind the running readers a held position keeps the log at most.
    hold_limit: u64,
    failed: Option<String>,
}

impl State {
    fn floor(&self) -> Floor {
        // Without readers, what is decoded is no longer needed by a running one.
        let acks = self
            .readers
            .values()
            .map(|r| r.covered)
            .min()
            .unwrap_or(self.decoded);
        let held = self.held.values().copied().min().unwrap_or(acks);
        Floor {
            acks,
            removal: held.min(acks).max(acks.saturating_sub(self.hold_limit)),
        }
    }
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
    /// What every reader's completed checkpoints cover, and what the log must keep.
    floor: watch::Sender<Floor>,
    /// Reconnections of the connection so far.
    pub reconnects: AtomicU64,
    /// Stops the connection.
    pub stop: CancellationToken,
}

/// The held positions kept in `log_dir` (none when there are none, or they cannot be read).
fn read_held(log_dir: &Path) -> BTreeMap<String, u64> {
    let path = log_dir.join(HELD_FILE);
    match std::fs::read(&path) {
        Ok(json) => serde_json::from_slice(&json).unwrap_or_else(|e| {
            warn!(
                "{} is not a map of held positions ({e}): holding none",
                path.display()
            );
            BTreeMap::new()
        }),
        Err(_) => BTreeMap::new(),
    }
}

/// Writes `bytes` to a temporary file beside `path`, synced, then renamed over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("new");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

impl Hub {
    /// A hub whose log in `log_dir` keeps records from `first`, decoding from `start`; a held
    /// position keeps the log at most `hold_limit` bytes behind the running readers.
    pub fn new(name: &str, log_dir: &Path, first: u64, start: u64, hold_limit: u64) -> Self {
        let held = read_held(log_dir);
        let state = State {
            ring: VecDeque::new(),
            ring_bytes: 0,
            decoded: start,
            first,
            readers: BTreeMap::new(),
            next_reader: 0,
            held,
            hold_limit,
            failed: None,
        };
        let floor = state.floor();
        Self {
            name: name.to_string(),
            log_dir: log_dir.to_path_buf(),
            state: Mutex::new(state),
            published: watch::channel(start).0,
            floor: watch::channel(floor).0,
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

    /// Changes of what every reader's checkpoints cover and what the log must keep.
    pub fn floor(&self) -> watch::Receiver<Floor> {
        self.floor.subscribe()
    }

    /// Changes of what is published.
    pub fn published(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// A new reader, at `at` (its checkpoint's offset) or, without one, at the position held for
    /// `holder` or else where decoding is now: its id and its offset (moved up to the oldest
    /// record kept if the log before it has gone, with how many bytes were skipped).
    pub fn join(&self, at: Option<u64>, holder: Option<String>) -> (u64, u64, u64) {
        let mut s = self.state();
        let held = holder.as_ref().and_then(|h| s.held.remove(h));
        let wanted = at.or(held).unwrap_or(s.decoded);
        let from = wanted.max(s.first);
        let id = s.next_reader;
        s.next_reader += 1;
        s.readers.insert(
            id,
            Reader {
                covered: from,
                holder,
            },
        );
        if held.is_some() {
            self.write_held(&s);
        }
        drop(s);
        self.move_floor();
        (id, from, from - wanted)
    }

    /// Reader `id` has stopped: its position is held for its holder.
    pub fn leave(&self, id: u64) {
        let mut s = self.state();
        if let Some(Reader {
            covered,
            holder: Some(holder),
        }) = s.readers.remove(&id)
        {
            s.held.insert(holder, covered);
            self.write_held(&s);
        }
        drop(s);
        self.move_floor();
    }

    /// Positions held for holders under `prefix` (a rule's state, deleted) are let go.
    pub fn release(&self, prefix: &str) {
        let mut s = self.state();
        let before = s.held.len();
        s.held.retain(|h, _| !h.starts_with(prefix));
        if s.held.len() != before {
            self.write_held(&s);
        }
        drop(s);
        self.move_floor();
    }

    /// How many readers read through the hub now.
    pub fn readers(&self) -> usize {
        self.state().readers.len()
    }

    /// Reader `id`'s completed checkpoints cover the log up to `offset`.
    pub fn covered(&self, id: u64, offset: u64) {
        if let Some(r) = self.state().readers.get_mut(&id) {
            r.covered = offset;
        }
        self.move_floor();
    }

    fn move_floor(&self) {
        let floor = self.state().floor();
        self.floor.send_if_modified(|f| {
            let moved = *f != floor;
            *f = floor;
            moved
        });
    }

    /// Keeps the held positions in the log's directory (a failure to is logged: the positions
    /// are then held only while the service runs).
    fn write_held(&self, s: &State) {
        let path = self.log_dir.join(HELD_FILE);
        let written = serde_json::to_vec(&s.held)
            .map_err(std::io::Error::other)
            .and_then(|json| write_atomically(&path, &json));
        if let Err(e) = written {
            warn!(source = %self.name, "cannot keep the held positions in {}: {e}", path.display());
        }
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

    fn floor(acks: u64, removal: u64) -> Floor {
        Floor { acks, removal }
    }

    #[test]
    fn a_reader_takes_the_batch_at_its_offset_and_reads_the_log_up_to_the_next_one_elsewhere() {
        let hub = Hub::new("readings", Path::new("/nonexistent"), 0, 100, 1000);
        let (a, at, skipped) = hub.join(None, None);
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
        let (b, at_b, _) = hub.join(Some(40), None);
        assert_eq!(at_b, 40);
        assert_eq!(*hub.floor().borrow(), floor(40, 40));
        hub.covered(b, 180);
        assert_eq!(*hub.floor().borrow(), floor(100, 100));
        hub.covered(a, 200);
        assert_eq!(*hub.floor().borrow(), floor(180, 180));
        hub.leave(b);
        assert_eq!(*hub.floor().borrow(), floor(200, 200));
        hub.leave(a);
        assert_eq!(*hub.floor().borrow(), floor(220, 220));

        // A checkpoint's offset whose log has gone: from the oldest record kept.
        hub.truncated(150);
        let (_, at_c, skipped) = hub.join(Some(40), None);
        assert_eq!((at_c, skipped), (150, 110));

        hub.fail("the broker refused the subscription".into());
        assert!(matches!(hub.next(150), Next::Failed(r) if r.contains("refused")));
    }

    #[test]
    fn a_stopped_reader_holds_the_log_from_its_position_up_to_the_limit_across_restarts() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let hub = Hub::new("readings", dir.path(), 0, 100, 500);
        let (a, _, _) = hub.join(None, Some("rules/a".into()));
        let (b, _, _) = hub.join(None, Some("rules/b".into()));
        hub.publish(decoded(100, 300));
        hub.covered(a, 300);
        hub.covered(b, 200);
        assert_eq!(*hub.floor().borrow(), floor(200, 200));
        // b stops (paused): acknowledgements follow a alone, the log stays for b.
        hub.leave(b);
        assert_eq!(*hub.floor().borrow(), floor(300, 200));
        hub.publish(decoded(300, 900));
        hub.covered(a, 900);
        // More than the limit behind a: held no further than the limit.
        assert_eq!(*hub.floor().borrow(), floor(900, 400));

        // After a restart, b is still held, and joins again where it stopped, or as near as
        // the log still is (what was more than the limit behind has gone).
        let again = Hub::new("readings", dir.path(), 400, 900, 500);
        assert_eq!(*again.floor().borrow(), floor(900, 400));
        let (_, at, skipped) = again.join(None, Some("rules/b".into()));
        assert_eq!((at, skipped), (400, 200));

        // A deleted rule's position is let go.
        let hub = Hub::new("readings", dir.path(), 0, 900, 500);
        let (c, _, _) = hub.join(Some(600), Some("rules/c/source".into()));
        hub.leave(c);
        assert_eq!(*hub.floor().borrow(), floor(900, 600));
        hub.release("rules/c");
        assert_eq!(*hub.floor().borrow(), floor(900, 900));
        assert!(read_held(dir.path()).is_empty());
    }

    #[test]
    fn the_ring_keeps_a_bounded_number_of_batches() {
        let hub = Hub::new("readings", Path::new("/nonexistent"), 0, 0, 0);
        for i in 0..(RING_BATCHES as u64 + 10) {
            hub.publish(decoded(i * 10, i * 10 + 10));
        }
        // The oldest batches have gone: a reader there reads the log up to the oldest kept.
        assert!(matches!(hub.next(0), Next::Read(100)));
        assert!(matches!(hub.next(100), Next::Take(_)));
    }
}
