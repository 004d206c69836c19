//! Reading an ingest log from an offset, segment after segment, up to an offset known to be on
//! disk. Records are read into one buffer per call, so a batch of them decodes without a copy
//! each.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::{LogError, Record, body_record, checksum, read_header, segment_path, segments};

pub struct LogReader {
    dir: PathBuf,
    file: BufReader<File>,
    /// The offset of the next record.
    position: u64,
}

/// Records read by one [`LogReader::read`], in one buffer.
#[derive(Default)]
pub struct ReadRecords {
    bytes: Vec<u8>,
    bodies: Vec<Range<usize>>,
    /// The offset after the last record read.
    pub end: u64,
}

impl ReadRecords {
    pub fn len(&self) -> usize {
        self.bodies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Record<'_>> {
        // Checked when read: every body parses.
        self.bodies
            .iter()
            .filter_map(|r| body_record(&self.bytes[r.clone()]))
    }
}

impl LogReader {
    /// A reader at `offset`, which must be a record's start in a segment still kept.
    pub fn open(dir: &Path, offset: u64) -> Result<Self, LogError> {
        let starts = segments(dir)?;
        let Some(&start) = starts.iter().rev().find(|&&s| s <= offset) else {
            return Err(LogError::NotKept {
                dir: dir.to_path_buf(),
                offset,
                first: starts.first().copied().unwrap_or(0),
                end: 0,
            });
        };
        let path = segment_path(dir, start);
        let mut file = File::open(&path).map_err(|e| LogError::io(&path, "cannot open", e))?;
        let len = file
            .metadata()
            .map_err(|e| LogError::io(&path, "cannot read", e))?
            .len();
        if offset - start > len {
            return Err(LogError::NotKept {
                dir: dir.to_path_buf(),
                offset,
                first: starts[0],
                end: start + len,
            });
        }
        file.seek(SeekFrom::Start(offset - start))
            .map_err(|e| LogError::io(&path, "cannot read", e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            file: BufReader::with_capacity(1 << 16, file),
            position: offset,
        })
    }

    /// The offset of the next record.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Reads up to `max` records, none beyond `upto` (an offset the writer has synced).
    pub fn read(&mut self, upto: u64, max: usize) -> Result<ReadRecords, LogError> {
        let mut out = ReadRecords::default();
        while self.position < upto && out.bodies.len() < max {
            let header = read_header(&mut self.file).map_err(|e| self.error(e))?;
            let Some((len, sum)) = header else {
                // The end of a segment: the next one starts here.
                let path = segment_path(&self.dir, self.position);
                let file = File::open(&path).map_err(|e| LogError::io(&path, "cannot open", e))?;
                self.file = BufReader::with_capacity(1 << 16, file);
                continue;
            };
            let at = out.bytes.len();
            out.bytes.resize(at + len, 0);
            self.file
                .read_exact(&mut out.bytes[at..])
                .map_err(|e| self.error(e))?;
            if checksum(&out.bytes[at..]) != sum || body_record(&out.bytes[at..]).is_none() {
                return Err(LogError::Damaged {
                    path: self.dir.clone(),
                    offset: self.position,
                });
            }
            out.bodies.push(at..at + len);
            self.position += (super::HEADER + len) as u64;
        }
        out.end = self.position;
        Ok(out)
    }

    fn error(&self, e: std::io::Error) -> LogError {
        LogError::io(&self.dir, "cannot read the ingest log in", e)
    }
}
