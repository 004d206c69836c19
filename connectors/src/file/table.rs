//! Reference tables from files: CSV with a header line (columns matched by name) or JSON lines,
//! read whole at every load.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use eddy_engine::{ConnectorError, OptionError, Table, TableSpec};

use super::config::{FileTableConfig, TableFormat};
use crate::format::json::JsonDecoder;

pub struct FileTable {
    config: FileTableConfig,
    format: TableFormat,
    schema: SchemaRef,
}

impl FileTable {
    pub fn create(spec: &TableSpec) -> Result<Box<dyn Table>, OptionError> {
        let config: FileTableConfig = spec.options.deserialize()?;
        let format = config.format.unwrap_or_else(|| {
            match config.path.extension().and_then(|e| e.to_str()) {
                Some(e) if e.eq_ignore_ascii_case("csv") => TableFormat::Csv,
                _ => TableFormat::Json,
            }
        });
        if !config.delimiter.is_ascii() {
            return Err(OptionError::invalid(
                "delimiter",
                "must be one ASCII character",
            ));
        }
        Ok(Box::new(Self {
            config,
            format,
            schema: Arc::clone(spec.schema),
        }))
    }

    fn read_csv(&self, bytes: &[u8], shown: &str) -> Result<RecordBatch, ConnectorError> {
        let bad = |e: arrow::error::ArrowError| ConnectorError::fatal(format!("{shown}: {e}"));
        // Columns are matched by the header's names, in any order; extra columns are ignored.
        let header_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        let header: Vec<String> = String::from_utf8_lossy(header_line)
            .trim_end_matches('\r')
            .split(self.config.delimiter)
            .map(|h| h.trim().trim_matches('"').to_lowercase())
            .collect();
        let mut fields = Vec::with_capacity(header.len());
        for name in &header {
            match self.schema.field_with_name(name) {
                Ok(f) => fields.push(f.clone()),
                Err(_) => fields.push(arrow::datatypes::Field::new(
                    name,
                    arrow::datatypes::DataType::Utf8,
                    true,
                )),
            }
        }
        for f in self.schema.fields() {
            if !header.iter().any(|h| h == f.name()) {
                return Err(ConnectorError::fatal(format!(
                    "{shown}: the header has no column '{}' (it has: {})",
                    f.name(),
                    header.join(", ")
                )));
            }
        }
        let file_schema = Arc::new(Schema::new(fields));
        let reader = arrow_csv::ReaderBuilder::new(Arc::clone(&file_schema))
            .with_header(true)
            .with_delimiter(self.config.delimiter as u8)
            .build(std::io::Cursor::new(bytes))
            .map_err(bad)?;
        let mut batches = Vec::new();
        for b in reader {
            batches.push(b.map_err(bad)?);
        }
        let all = concat_batches(&file_schema, &batches).map_err(bad)?;
        let projection: Vec<usize> = self
            .schema
            .fields()
            .iter()
            .map(|f| file_schema.index_of(f.name()))
            .collect::<Result<_, _>>()
            .map_err(bad)?;
        let projected = all.project(&projection).map_err(bad)?;
        RecordBatch::try_new(Arc::clone(&self.schema), projected.columns().to_vec()).map_err(bad)
    }

    fn read_json(&self, bytes: &[u8], shown: &str) -> Result<RecordBatch, ConnectorError> {
        let lines: Vec<&[u8]> = bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .collect();
        let mut decoder = JsonDecoder::new(Arc::clone(&self.schema), lines.len().max(1))
            .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        let decoded = decoder
            .decode(&lines)
            .map_err(|e| ConnectorError::fatal(format!("{shown}: {e}")))?;
        if let Some((i, why)) = decoded.rejected.first() {
            return Err(ConnectorError::fatal(format!(
                "{shown}: line {}: {why}",
                i + 1
            )));
        }
        Ok(decoded
            .batch
            .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.schema))))
    }
}

#[async_trait]
impl Table for FileTable {
    fn describe(&self) -> String {
        let format = match self.format {
            TableFormat::Csv => "CSV",
            TableFormat::Json => "JSON lines",
        };
        format!("{} ({format})", self.config.path.display())
    }

    async fn load(&self) -> Result<RecordBatch, ConnectorError> {
        let shown = self.config.path.display().to_string();
        let bytes = tokio::fs::read(&self.config.path)
            .await
            .map_err(|e| ConnectorError::retryable(format!("cannot read {shown}: {e}")))?;
        match self.format {
            TableFormat::Csv => self.read_csv(&bytes, &shown),
            TableFormat::Json => self.read_json(&bytes, &shown),
        }
    }
}
