//! Writes rows as JSON lines to a file.

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use eddy_engine::{ConnectorError, OptionError, Sink, SinkSpec};
use tokio::io::AsyncWriteExt;

use super::config::{FileSinkConfig, WriteMode};
use crate::format::json::encode_rows;

pub struct FileSink {
    config: FileSinkConfig,
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
}

impl FileSink {
    pub fn create(spec: &SinkSpec) -> Result<Box<dyn Sink>, OptionError> {
        let config: FileSinkConfig = spec.options.deserialize()?;
        Ok(Box::new(Self { config, file: None }))
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
            let f = options.open(path).await.map_err(|e| {
                ConnectorError::retryable(format!("cannot open {}: {e}", path.display()))
            })?;
            self.file = Some(tokio::io::BufWriter::with_capacity(1 << 16, f));
        }
        self.file
            .as_mut()
            .ok_or_else(|| ConnectorError::fatal("file not open"))
    }
}

#[async_trait]
impl Sink for FileSink {
    fn describe(&self) -> String {
        let mode = match self.config.mode {
            WriteMode::Append => "appended",
            WriteMode::Truncate => "truncated at start",
        };
        format!("{} (JSON lines, {mode})", self.config.path.display())
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        let bytes = encode_rows(&batch).map_err(|e| ConnectorError::fatal(e.to_string()))?;
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
