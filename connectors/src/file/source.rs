//! Replays a file of records, one per line (JSON, CSV with or without a header line, or raw
//! values): decodes it batch by batch and ends at the end of the file, so every open window fires. Bad lines go to the dead letters with `path:line` as their origin. Each batch
//! is handed on with the position after its last line (byte offset and line number), which a
//! checkpoint records and a restored source seeks back to.

use async_trait::async_trait;
use eddy_engine::{ConnectorError, OptionError, Source, SourceContext, SourceSpec};
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::config::FileSourceConfig;
use crate::format::{self, DecodeOptions, Format, RecordDecoder};

/// Bytes read from the file at a time.
const CHUNK: usize = 1 << 20;

pub struct FileSource {
    config: FileSourceConfig,
    decoder: RecordDecoder,
}

impl FileSource {
    pub fn create(spec: &SourceSpec) -> Result<Box<dyn Source>, OptionError> {
        let (options, paths) = format::take_column_paths(spec.options, spec.schema);
        let config: FileSourceConfig = options.deserialize()?;
        if config.batch_size == 0 {
            return Err(OptionError::invalid("batch_size", "must be at least 1"));
        }
        let decoder = RecordDecoder::new(
            std::sync::Arc::clone(spec.schema),
            &DecodeOptions {
                format: config.format,
                delimiter: config.delimiter,
                header: config.format == Format::Csv && config.header,
                value_column: config.value_column.clone(),
                paths,
                max_records: config.batch_size,
                max_record_bytes: config.max_record_bytes,
            },
        )?;
        Ok(Box::new(Self { config, decoder }))
    }

    /// A CSV file's header line: read first, wherever the run resumes. Returns where the data
    /// starts (after the header) when the file is read from its beginning.
    async fn read_header(&mut self, shown: &str) -> Result<Option<Position>, ConnectorError> {
        use tokio::io::AsyncBufReadExt;
        let file = tokio::fs::File::open(&self.config.path)
            .await
            .map_err(|e| ConnectorError::fatal(format!("cannot open {shown}: {e}")))?;
        let mut line = Vec::new();
        let n = tokio::io::BufReader::new(file)
            .take(self.config.max_record_bytes as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| ConnectorError::fatal(format!("cannot read {shown}: {e}")))?;
        if n == 0 {
            return Ok(None);
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        self.decoder
            .header(text)
            .map_err(|e| ConnectorError::fatal(format!("{shown}:1: {e}")))?;
        Ok(Some(Position {
            offset: n as u64,
            line: 1,
        }))
    }
}

#[async_trait]
impl Source for FileSource {
    fn describe(&self) -> String {
        let header = if self.decoder.wants_header() {
            " with a header line"
        } else {
            ""
        };
        format!(
            "{} ({} lines{header}, replayed to the end)",
            self.config.path.display(),
            self.config.format.describe()
        )
    }

    async fn run(mut self: Box<Self>, ctx: &mut SourceContext) -> Result<(), ConnectorError> {
        let path = self.config.path.clone();
        let shown = path.display().to_string();
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| ConnectorError::fatal(format!("cannot open {shown}: {e}")))?;
        if let Ok(meta) = file.metadata().await {
            ctx.metrics()
                .bytes_total
                .store(meta.len(), Ordering::Relaxed);
        }
        let mut lines = LineCounter::default();
        // Where the bytes read so far end in the file.
        let mut read_to = 0u64;
        let data_starts = if self.decoder.wants_header() {
            self.read_header(&shown).await?
        } else {
            None
        };
        if let (Some(at), None) = (data_starts, ctx.resume_from()) {
            file.seek(std::io::SeekFrom::Start(at.offset))
                .await
                .map_err(|e| ConnectorError::fatal(format!("cannot seek in {shown}: {e}")))?;
            read_to = at.offset;
            lines.next = at.line;
        }
        if let Some(resume) = ctx.resume_from() {
            let at = Position::from_json(resume).ok_or_else(|| {
                ConnectorError::fatal(format!(
                    "{shown}: the checkpoint's position {resume} is not a file position"
                ))
            })?;
            file.seek(std::io::SeekFrom::Start(at.offset))
                .await
                .map_err(|e| ConnectorError::fatal(format!("cannot seek in {shown}: {e}")))?;
            read_to = at.offset;
            lines.next = at.line;
            ctx.metrics().bytes_read.store(at.offset, Ordering::Relaxed);
            tracing::info!(source = %ctx.name(), "resuming {shown} at line {} (byte {})", at.line + 1, at.offset);
        }
        let mut buffer: Vec<u8> = Vec::with_capacity(2 * CHUNK);
        let mut eof = false;
        while !eof {
            if ctx.shutdown().is_cancelled() {
                return Ok(());
            }
            let start = buffer.len();
            buffer.resize(start + CHUNK, 0);
            let n = file
                .read(&mut buffer[start..])
                .await
                .map_err(|e| ConnectorError::fatal(format!("cannot read {shown}: {e}")))?;
            buffer.truncate(start + n);
            read_to += n as u64;
            ctx.metrics()
                .bytes_read
                .fetch_add(n as u64, Ordering::Relaxed);
            eof = n == 0;
            // Decode complete lines; keep a partial last line for the next chunk.
            let complete = if eof {
                buffer.len()
            } else {
                match buffer.iter().rposition(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    None if buffer.len() > self.config.max_record_bytes => {
                        // A line too long to hold: dead-letter its start, skip to its end.
                        read_to += self
                            .skip_long_line(&mut buffer, &mut file, &mut lines, &shown, ctx)
                            .await?;
                        let at = Position {
                            offset: read_to - buffer.len() as u64,
                            line: lines.next,
                        };
                        ctx.flush_from(at.to_json()).await?;
                        continue;
                    }
                    None => continue,
                }
            };
            let base = read_to - buffer.len() as u64;
            self.decode_lines(&buffer[..complete], base, &mut lines, &shown, ctx)
                .await?;
            buffer.drain(..complete);
        }
        ctx.flush().await
    }
}

/// Where the file source is: the byte after the last line handed on, and that line's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Position {
    offset: u64,
    line: u64,
}

impl Position {
    fn to_json(self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn from_json(v: &serde_json::Value) -> Option<Self> {
        serde_json::from_value(v.clone()).ok()
    }
}

/// The line number of the next line of the file.
#[derive(Default)]
struct LineCounter {
    next: u64,
}

impl FileSource {
    /// Decodes the lines of `text` (which starts at byte `base` of the file) a batch at a time.
    async fn decode_lines(
        &mut self,
        text: &[u8],
        base: u64,
        lines: &mut LineCounter,
        path: &str,
        ctx: &mut SourceContext,
    ) -> Result<(), ConnectorError> {
        let max = self.decoder.max_records();
        let mut records: Vec<&[u8]> = Vec::with_capacity(max);
        let mut numbers: Vec<u64> = Vec::with_capacity(max);
        let mut start = 0;
        while start < text.len() {
            let end = text[start..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(text.len(), |i| start + i);
            let line = &text[start..end];
            start = end + 1;
            lines.next += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            records.push(line);
            numbers.push(lines.next);
            if records.len() == max {
                let at = Position {
                    offset: base + start.min(text.len()) as u64,
                    line: lines.next,
                };
                self.decode_group(&records, &numbers, path, at, ctx).await?;
                records.clear();
                numbers.clear();
            }
        }
        if !records.is_empty() {
            let at = Position {
                offset: base + text.len() as u64,
                line: lines.next,
            };
            self.decode_group(&records, &numbers, path, at, ctx).await?;
        }
        Ok(())
    }

    /// The line in `buffer` has no end within `max_record_bytes`: its first kilobyte goes to the
    /// dead letters, and the file is read on to the end of the line.
    /// Returns the bytes it read.
    async fn skip_long_line(
        &mut self,
        buffer: &mut Vec<u8>,
        file: &mut tokio::fs::File,
        lines: &mut LineCounter,
        path: &str,
        ctx: &mut SourceContext,
    ) -> Result<u64, ConnectorError> {
        let mut read = 0u64;
        lines.next += 1;
        let start = buffer[..buffer.len().min(1024)].to_vec();
        let mut length = buffer.len();
        buffer.clear();
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = file
                .read(&mut chunk)
                .await
                .map_err(|e| ConnectorError::fatal(format!("cannot read {path}: {e}")))?;
            ctx.metrics()
                .bytes_read
                .fetch_add(n as u64, Ordering::Relaxed);
            read += n as u64;
            if n == 0 {
                break;
            }
            match chunk[..n].iter().position(|&b| b == b'\n') {
                Some(i) => {
                    length += i;
                    buffer.extend_from_slice(&chunk[i + 1..n]);
                    break;
                }
                None => length += n,
            }
        }
        ctx.dead_letter(
            &format!("{path}:{}", lines.next),
            &start,
            &format!(
                "line of {length} bytes is longer than max_record_bytes ({}); its first {} bytes are kept here",
                self.config.max_record_bytes,
                start.len()
            ),
        );
        Ok(read)
    }

    async fn decode_group(
        &mut self,
        records: &[&[u8]],
        numbers: &[u64],
        path: &str,
        at: Position,
        ctx: &mut SourceContext,
    ) -> Result<(), ConnectorError> {
        let decoded = self
            .decoder
            .decode(records, None)
            .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        for (i, why) in &decoded.rejected {
            ctx.dead_letter(&format!("{path}:{}", numbers[*i]), records[*i], why);
        }
        match decoded.batch {
            Some(batch) => ctx.send_from(batch, Some(at.to_json())).await,
            None => ctx.flush_from(at.to_json()).await,
        }
    }
}
