//! Appending to an ingest log: records gather in a buffer and go to disk in one write and one
//! `fdatasync` per group; a segment that has grown past [`SEGMENT_BYTES`] is closed and the next
//! one begun.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{HEADER, LogError, SEGMENT_BYTES, checksum, segment_path};

pub struct LogAppender {
    dir: PathBuf,
    file: File,
    /// The offset the open segment starts at.
    segment_start: u64,
    /// The offset after the last record written (synced or not).
    end: u64,
    buffer: Vec<u8>,
    segment_bytes: u64,
}

impl LogAppender {
    pub(super) fn open(dir: &Path, segment_start: u64, end: u64) -> Result<Self, LogError> {
        let path = segment_path(dir, segment_start);
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| LogError::io(&path, "cannot open", e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
            segment_start,
            end,
            buffer: Vec::with_capacity(1 << 16),
            segment_bytes: SEGMENT_BYTES,
        })
    }

    /// Segments of `bytes` instead of [`SEGMENT_BYTES`] (tests).
    pub fn with_segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes.max(1);
        self
    }

    /// Adds a record to the group being gathered; returns the offset after it (where it ends
    /// once [`Self::commit`] has returned). An origin longer than 65,535 bytes is cut there.
    pub fn push(&mut self, id: u32, received: i64, origin: &[u8], payload: &[u8]) -> u64 {
        let origin = &origin[..origin.len().min(u16::MAX as usize)];
        let len = 4 + 8 + 2 + origin.len() + payload.len();
        let at = self.buffer.len();
        self.buffer.extend_from_slice(&(len as u32).to_le_bytes());
        self.buffer.extend_from_slice(&[0; 4]);
        self.buffer.extend_from_slice(&id.to_le_bytes());
        self.buffer.extend_from_slice(&received.to_le_bytes());
        self.buffer
            .extend_from_slice(&(origin.len() as u16).to_le_bytes());
        self.buffer.extend_from_slice(origin);
        self.buffer.extend_from_slice(payload);
        let sum = checksum(&self.buffer[at + HEADER..]);
        self.buffer[at + 4..at + HEADER].copy_from_slice(&sum.to_le_bytes());
        self.end + self.buffer.len() as u64
    }

    /// Writes the gathered group and syncs it; returns the offset after the last record, all of
    /// which is now on disk.
    pub fn commit(&mut self) -> Result<u64, LogError> {
        if self.buffer.is_empty() {
            return Ok(self.end);
        }
        let path = segment_path(&self.dir, self.segment_start);
        self.file
            .write_all(&self.buffer)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| LogError::io(&path, "cannot write", e))?;
        self.end += self.buffer.len() as u64;
        self.buffer.clear();
        if self.end - self.segment_start >= self.segment_bytes {
            self.roll()?;
        }
        Ok(self.end)
    }

    /// The offset after the last record committed.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Begins the next segment at the current end.
    fn roll(&mut self) -> Result<(), LogError> {
        let path = segment_path(&self.dir, self.end);
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| LogError::io(&path, "cannot create", e))?;
        sync_dir(&self.dir)?;
        self.segment_start = self.end;
        Ok(())
    }
}

/// Makes a file created or removed in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io(dir, "cannot sync", e))
}
