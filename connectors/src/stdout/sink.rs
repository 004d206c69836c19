//! Writes each batch to standard output: JSON lines, or `sink  key=value` text lines.

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use eddy_engine::{ConnectorError, OptionError, Sink, SinkSpec};
use tokio::io::AsyncWriteExt;

use super::config::{StdoutFormat, StdoutSinkConfig};
use crate::format::json::encode_rows;

pub struct StdoutSink {
    name: String,
    config: StdoutSinkConfig,
    out: tokio::io::Stdout,
}

impl StdoutSink {
    pub fn create(spec: &SinkSpec) -> Result<Box<dyn Sink>, OptionError> {
        Ok(Box::new(Self {
            name: spec.name.to_string(),
            config: spec.options.deserialize()?,
            out: tokio::io::stdout(),
        }))
    }
}

/// Rows as `name  key=value key=value` lines, timestamps in RFC 3339.
pub fn text_lines(name: &str, batch: &RecordBatch) -> Result<String, arrow::error::ArrowError> {
    let options = FormatOptions::default()
        .with_null("null")
        .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.3fZ"));
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    let schema = batch.schema();
    let mut out = String::new();
    for row in 0..batch.num_rows() {
        out.push_str(name);
        for (f, field) in formatters.iter().zip(schema.fields()) {
            out.push_str("  ");
            out.push_str(field.name());
            out.push('=');
            out.push_str(&f.value(row).to_string());
        }
        out.push('\n');
    }
    Ok(out)
}

#[async_trait]
impl Sink for StdoutSink {
    fn describe(&self) -> String {
        match self.config.format {
            StdoutFormat::Json => "standard output (JSON lines)".into(),
            StdoutFormat::Text => "standard output (text lines)".into(),
        }
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        let bytes = match self.config.format {
            StdoutFormat::Json => encode_rows(&batch),
            StdoutFormat::Text => text_lines(&self.name, &batch).map(String::into_bytes),
        }
        .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        self.out
            .write_all(&bytes)
            .await
            .map_err(|e| ConnectorError::fatal(format!("cannot write to standard output: {e}")))
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        self.out
            .flush()
            .await
            .map_err(|e| ConnectorError::fatal(format!("cannot write to standard output: {e}")))
    }
}
