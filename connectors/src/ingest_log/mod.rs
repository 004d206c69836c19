//! A source's ingest log: the messages a source has received, appended to segment files in the
//! state directory and synced in groups, so that a message can be acknowledged to its broker as
//! soon as it is on disk instead of when a checkpoint covers it. A checkpoint records an offset
//! into the log; a restarted source reads the log from there, and segments wholly behind a
//! completed checkpoint are removed.
//!
//! On disk: `DIR/00000000000000000000.log`, one file per segment, named after the offset (in
//! bytes, counted from the log's beginning) of its first record. A record is its body's length
//! (u32, little endian), the low 32 bits of the body's FNV-1a hash, then the body: an id (u32;
//! the MQTT source keeps the packet id and QoS there), when the record was received (i64,
//! milliseconds since the epoch), the origin's length (u16) and bytes (a topic), then the payload. A record cut short by a crash at the end of the newest segment is
//! cut off when the log is opened; a damaged record anywhere else is an error naming the file.

pub mod intake;
pub mod read_back;
mod reader;
mod writer;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use reader::{LogReader, ReadRecords};
pub use writer::LogAppender;

/// A segment is closed and a new one begun once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 32 << 20;

const HEADER: usize = 8;

/// One record as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub id: u32,
    /// When the record was received, in milliseconds since the epoch.
    pub received: i64,
    pub origin: &'a [u8],
    pub payload: &'a [u8],
}

/// What opening a log found.
pub struct OpenedLog {
    pub appender: LogAppender,
    /// The offset of the oldest record kept.
    pub first: u64,
    /// The offset after the last record: where the next one goes.
    pub end: u64,
}

/// Opens (creating it if needed) the log in `dir`: cuts off a record left half-written at the end
/// and shows `recent` every record of the two newest segments, oldest first (what a source needs
/// to recognize messages its broker sends again).
pub fn open(dir: &Path, mut recent: impl FnMut(Record<'_>)) -> Result<OpenedLog, LogError> {
    std::fs::create_dir_all(dir).map_err(|e| LogError::io(dir, "cannot create", e))?;
    let mut segments = segments(dir)?;
    if segments.is_empty() {
        let path = segment_path(dir, 0);
        std::fs::File::create(&path).map_err(|e| LogError::io(&path, "cannot create", e))?;
        writer::sync_dir(dir)?;
        segments.push(0);
    }
    let first = segments[0];
    let newest = segments.len() - 1;
    let mut end = 0;
    for (i, &start) in segments.iter().enumerate().skip(newest.saturating_sub(1)) {
        let path = segment_path(dir, start);
        let bytes = std::fs::read(&path).map_err(|e| LogError::io(&path, "cannot read", e))?;
        let mut at = 0;
        while let Some((record, len)) = parse(&bytes[at..]) {
            recent(record);
            at += len;
        }
        if at < bytes.len() {
            if i != newest {
                return Err(LogError::Damaged {
                    path,
                    offset: start + at as u64,
                });
            }
            // A crash cut the last group short: what follows was never acknowledged.
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| LogError::io(&path, "cannot open", e))?;
            file.set_len(at as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| LogError::io(&path, "cannot cut off the torn end of", e))?;
            tracing::warn!(
                "ingest log {}: {} bytes of a record cut short by a crash removed",
                path.display(),
                bytes.len() - at
            );
        }
        end = start + at as u64;
    }
    let appender = LogAppender::open(dir, segments[newest], end)?;
    Ok(OpenedLog {
        appender,
        first,
        end,
    })
}

/// Removes the segments that hold only records before `offset`, keeping the two newest whatever
/// their offsets. Returns the offset of the oldest record kept.
pub fn remove_before(dir: &Path, offset: u64) -> Result<u64, LogError> {
    let segments = segments(dir)?;
    let keep_from = segments.len().saturating_sub(2);
    let mut first = segments.first().copied().unwrap_or(0);
    for (i, pair) in segments.windows(2).enumerate() {
        let [start, next] = [pair[0], pair[1]];
        if i >= keep_from || next > offset {
            break;
        }
        let path = segment_path(dir, start);
        std::fs::remove_file(&path).map_err(|e| LogError::io(&path, "cannot remove", e))?;
        first = next;
    }
    Ok(first)
}

/// The offsets the segments in `dir` start at, oldest first.
fn segments(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut starts = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| LogError::io(dir, "cannot read", e))?;
    for entry in entries {
        let name = entry
            .map_err(|e| LogError::io(dir, "cannot read", e))?
            .file_name();
        let name = name.to_string_lossy();
        if let Some(start) = name
            .strip_suffix(".log")
            .and_then(|n| n.parse::<u64>().ok())
        {
            starts.push(start);
        }
    }
    starts.sort_unstable();
    Ok(starts)
}

fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("{start:020}.log"))
}

/// The record at the start of `bytes` and its length on disk; `None` if it is cut short or does
/// not match its checksum.
fn parse(bytes: &[u8]) -> Option<(Record<'_>, usize)> {
    let header = bytes.get(..HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let sum = u32::from_le_bytes(header[4..].try_into().ok()?);
    let body = bytes.get(HEADER..HEADER + len)?;
    if checksum(body) != sum {
        return None;
    }
    Some((body_record(body)?, HEADER + len))
}

fn body_record(body: &[u8]) -> Option<Record<'_>> {
    let id = u32::from_le_bytes(body.get(..4)?.try_into().ok()?);
    let received = i64::from_le_bytes(body.get(4..12)?.try_into().ok()?);
    let origin_len = u16::from_le_bytes(body.get(12..14)?.try_into().ok()?) as usize;
    let origin = body.get(14..14 + origin_len)?;
    let payload = body.get(14 + origin_len..)?;
    Some(Record {
        id,
        received,
        origin,
        payload,
    })
}

fn checksum(body: &[u8]) -> u32 {
    eddy_engine::hash::fnv1a_of(body) as u32
}

/// Reads one record's header from `from`: its body's length and checksum; `None` at the end.
fn read_header(from: &mut impl Read) -> std::io::Result<Option<(usize, u32)>> {
    let mut header = [0u8; HEADER];
    let mut filled = 0;
    while filled < HEADER {
        match from.read(&mut header[filled..])? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => filled += n,
        }
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let sum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    Ok(Some((len, sum)))
}

/// What went wrong with a log, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ingest log {} is damaged at offset {offset}", path.display())]
    Damaged { path: PathBuf, offset: u64 },
    #[error(
        "ingest log {}: offset {offset} is not kept (the log holds {first}..{end}); it was removed or replaced since the checkpoint",
        dir.display()
    )]
    NotKept {
        dir: PathBuf,
        offset: u64,
        first: u64,
        end: u64,
    },
}

impl LogError {
    fn io(path: &Path, what: &'static str, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests;
