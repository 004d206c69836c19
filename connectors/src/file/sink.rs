//! Writes rows as JSON lines to a file.

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use eddy_engine::{ConnectorError, OptionError, Sink, SinkSpec};
use tokio::io::AsyncWriteExt;

use super::config::{FileSinkConfig, WriteMode};
use crate::format::RecordEncoder;

pub struct FileSink {
    config: FileSinkConfig,
    encoder: RecordEncoder,
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
}

impl FileSink {
    pub fn create(spec: &SinkSpec) -> Result<Box<dyn Sink>, OptionError> {
        let config: FileSinkConfig = spec.options.deserialize()?;
        let encoder = RecordEncoder::new(config.format, config.value_column.clone())?;
        Ok(Box::new(Self {
            config,
            encoder,
            file: None,
        }))
    }

    /// Opens the file on the first write, so planning (`eddy check`) never touches it.
    async fn file(&mut self) -> Result<&mut tokio::io::BufWriter<tokio::fs::File>, ConnectorError> {
        if self.file.is_none() {
            let path = &self.config.path;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(dir).await.map_err(|e| {
                    ConnectorError::fatal(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let mut options = tokio::fs::OpenOptions::new();
            options.create(true);
            match self.config.mode {
                WriteMode::Append => options.append(true),
                WriteMode::Truncate => options.write(true).truncate(true),
            };
            let mut f = options.open(path).await.map_err(|e| {
                ConnectorError::retryable(format!("cannot open {}: {e}", path.display()))
            })?;
            if self.config.mode == WriteMode::Append && ends_in_a_torn_line(path).await {
                // A run killed in the middle of a line: the next alert starts a line of its own.
                f.write_all(b"\n").await.map_err(|e| {
                    ConnectorError::retryable(format!("cannot write {}: {e}", path.display()))
                })?;
            }
            self.file = Some(tokio::io::BufWriter::with_capacity(1 << 16, f));
        }
        self.file
            .as_mut()
            .ok_or_else(|| ConnectorError::fatal("file not open"))
    }
}

/// The file is a regular one whose last byte is not a line end.
async fn ends_in_a_torn_line(path: &std::path::Path) -> bool {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return false;
    };
    let regular_and_not_empty = f.metadata().await.is_ok_and(|m| m.is_file() && m.len() > 0);
    let mut last = [0u8; 1];
    regular_and_not_empty
        && f.seek(std::io::SeekFrom::End(-1)).await.is_ok()
        && f.read_exact(&mut last).await.is_ok()
        && last[0] != b'\n'
}

#[async_trait]
impl Sink for FileSink {
    fn describe(&self) -> String {
        let mode = match self.config.mode {
            WriteMode::Append => "appended",
            WriteMode::Truncate => "truncated at start",
        };
        format!(
            "{} ({} lines, {mode})",
            self.config.path.display(),
            self.encoder.format().describe()
        )
    }

    fn check_schema(&self, schema: &arrow::datatypes::Schema) -> Result<(), String> {
        self.encoder.check(schema)
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        let bytes = self
            .encoder
            .lines(&batch)
            .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        let path = self.config.path.display().to_string();
        let written = self.file().await?.write_all(&bytes).await;
        written.map_err(|e| {
            // Open the file again on the next try.
            self.file = None;
            ConnectorError::retryable(format!("cannot write {path}: {e}"))
        })
    }

    /// Also creates the file when nothing was written: an empty result is still a result.
    async fn flush(&mut self) -> Result<(), ConnectorError> {
        let path = self.config.path.display().to_string();
        let flushed = self.file().await?.flush().await;
        flushed.map_err(|e| {
            self.file = None;
            ConnectorError::retryable(format!("cannot write {path}: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[tokio::test]
    async fn appending_after_a_torn_line_starts_a_line_of_its_own() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("alerts.jsonl");
        // What a run killed in the middle of a write leaves.
        std::fs::write(&path, "{\"n\":1}\n{\"n\":").expect("written");
        let options = eddy_engine::Options::from_pairs([("path", path.to_str().expect("utf-8"))]);
        let mut sink = FileSink::create(&SinkSpec {
            name: "alerts",
            options: &options,
        })
        .expect("sink");
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![2]))]).expect("batch");
        sink.write(batch).await.expect("written");
        sink.flush().await.expect("flushed");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "{\"n\":1}\n{\"n\":\n{\"n\":2}\n");
    }
}
