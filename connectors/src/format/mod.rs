//! Formats: how records (a file's lines, a broker's messages) become Arrow rows of the declared
//! columns, and rows become records.
//!
//! - [`json`]: one JSON object per record, fields by name or by a JSON path (`$.payload.temp`);
//! - [`csv`]: one CSV line per record, in a header's order or the declared one;
//! - [`raw`]: the record is one value (a number or a string) of one column.
//!
//! Every decoder rejects, with the reason, what it cannot read, record by record: one bad record
//! never costs the others. Records over `max_record_bytes` and NaN or infinite numbers are
//! rejected whatever the format.

pub mod csv;
pub mod json;
pub mod raw;
pub(crate) mod values;

use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use eddy_engine::{OptionError, Options};
use serde::Deserialize;

pub use csv::CsvDecoder;
pub use json::JsonDecoder;
pub use raw::RawDecoder;

/// The `format` option of sources and sinks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per message or per line.
    #[default]
    Json,
    /// One CSV line per message or per line.
    Csv,
    /// The message or line is one value: a number or a string.
    Raw,
}

impl Format {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::Csv => "CSV",
            Self::Raw => "raw values",
        }
    }
}

/// What a decoder made of a group of records.
#[derive(Debug, Default)]
pub struct Decoded {
    /// One row per accepted record, in order.
    pub batch: Option<RecordBatch>,
    /// Indices of the records that became rows (all of them when `rejected` is empty).
    pub accepted: Vec<usize>,
    /// Records that could not be read, with the reason.
    pub rejected: Vec<(usize, String)>,
}

/// How a source's records are read: its format options.
#[derive(Debug, Clone, Default)]
pub struct DecodeOptions {
    pub format: Format,
    /// CSV: the field separator.
    pub delimiter: Option<char>,
    /// CSV: the first line names the columns (files).
    pub header: bool,
    /// Raw: the column the value goes to.
    pub value_column: Option<String>,
    /// JSON: the declared columns read through a path, with the path.
    pub paths: Vec<(String, String)>,
    pub max_records: usize,
    pub max_record_bytes: usize,
}

impl DecodeOptions {
    /// The options of a source of messages (one record each): no header line, at most
    /// `batch_size` records decoded at once.
    pub fn messages(
        format: Format,
        delimiter: Option<char>,
        value_column: Option<String>,
        paths: Vec<(String, String)>,
        batch_size: usize,
        max_record_bytes: usize,
    ) -> Self {
        Self {
            format,
            delimiter,
            header: false,
            value_column,
            paths,
            max_records: batch_size,
            max_record_bytes,
        }
    }
}

/// A decoder of one of the formats.
pub enum RecordDecoder {
    Json(JsonDecoder),
    Csv(CsvDecoder),
    Raw(RawDecoder),
}

impl RecordDecoder {
    /// A decoder into rows of `schema`; options that do not fit the format are errors naming them.
    pub fn new(schema: SchemaRef, o: &DecodeOptions) -> Result<Self, OptionError> {
        if o.format != Format::Csv && o.delimiter.is_some() {
            return Err(OptionError::invalid(
                "delimiter",
                "only CSV has a delimiter",
            ));
        }
        if o.format != Format::Raw && o.value_column.is_some() {
            return Err(OptionError::invalid(
                "value_column",
                "only format = 'raw' fills one column from the whole record",
            ));
        }
        if o.format != Format::Json && !o.paths.is_empty() {
            return Err(OptionError::invalid(
                &o.paths[0].0,
                "JSON paths read JSON records; this source's format is not json",
            ));
        }
        let decoder = match o.format {
            Format::Json => Self::Json(
                JsonDecoder::new(schema, o.max_records)
                    .and_then(|d| d.with_paths(&o.paths))
                    .map_err(|e| OptionError::Other(e.to_string()))?
                    .with_max_record_bytes(o.max_record_bytes),
            ),
            Format::Csv => Self::Csv(CsvDecoder::new(
                schema,
                o.delimiter.unwrap_or(','),
                o.header,
                o.max_records,
                o.max_record_bytes,
            )?),
            Format::Raw => Self::Raw(RawDecoder::new(
                schema,
                o.value_column.as_deref(),
                o.max_records,
                o.max_record_bytes,
            )?),
        };
        Ok(decoder)
    }

    /// Decodes up to `max_records` records; `received` is when each arrived (raw records fill
    /// a timestamp column with it), `None` for records read from a file.
    pub fn decode(
        &mut self,
        records: &[&[u8]],
        received: Option<&[i64]>,
    ) -> Result<Decoded, ArrowError> {
        match self {
            Self::Json(d) => d.decode(records),
            Self::Csv(d) => d.decode(records),
            Self::Raw(d) => d.decode(records, received),
        }
    }

    pub fn max_records(&self) -> usize {
        match self {
            Self::Json(d) => d.max_records(),
            Self::Csv(d) => d.max_records(),
            Self::Raw(d) => d.max_records(),
        }
    }

    /// A CSV decoder that still waits for the header line naming the columns.
    pub fn wants_header(&self) -> bool {
        matches!(self, Self::Csv(d) if d.wants_header())
    }

    /// Takes the header line of a CSV file.
    pub fn header(&mut self, line: &[u8]) -> Result<(), String> {
        match self {
            Self::Csv(d) => d.header(line),
            _ => Ok(()),
        }
    }
}

/// Options of the form `column = '$.path.to.field'` name a JSON path for a declared column: they
/// are taken out of `options` (what is left goes to the connector's config), with the paths.
pub fn take_column_paths(
    options: &Options,
    columns: &arrow::datatypes::Schema,
) -> (Options, Vec<(String, String)>) {
    let mut rest = options.clone();
    let mut paths = Vec::new();
    for field in columns.fields() {
        if let Some(path) = options.get(field.name())
            && path.starts_with("$.")
        {
            rest.take(field.name());
            paths.push((field.name().clone(), path.to_string()));
        }
    }
    (rest, paths)
}

/// Moves records over `limit` bytes to the rejected ones, decoding the rest with `decode`.
fn within_size(
    records: &[&[u8]],
    limit: usize,
    decode: impl FnOnce(&[&[u8]]) -> Result<Decoded, ArrowError>,
) -> Result<Decoded, ArrowError> {
    if records.iter().all(|r| r.len() <= limit) {
        return decode(records);
    }
    let (small, big): (Vec<usize>, Vec<usize>) =
        (0..records.len()).partition(|&i| records[i].len() <= limit);
    let subset: Vec<&[u8]> = small.iter().map(|&i| records[i]).collect();
    let mut d = decode(&subset)?;
    d.accepted = d.accepted.iter().map(|&i| small[i]).collect();
    d.rejected = d
        .rejected
        .into_iter()
        .map(|(i, why)| (small[i], why))
        .chain(big.into_iter().map(|i| {
            (
                i,
                format!(
                    "record of {} bytes is longer than max_record_bytes ({limit})",
                    records[i].len()
                ),
            )
        }))
        .collect();
    d.rejected.sort_by_key(|(i, _)| *i);
    Ok(d)
}

/// Moves rows with a NaN or infinite floating-point value to the rejected records: a sensor that
/// sends `NaN` must not turn every average it touches into NaN.
fn reject_non_finite(mut d: Decoded) -> Result<Decoded, ArrowError> {
    let Some(batch) = &d.batch else {
        return Ok(d);
    };
    let mut bad: Vec<Option<String>> = vec![None; batch.num_rows()];
    let mut any = false;
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let mut check = |row: usize, v: f64| {
            if !v.is_finite() && bad[row].is_none() {
                bad[row] = Some(format!("{} is {v} (not a finite number)", f.name()));
                any = true;
            }
        };
        match f.data_type() {
            DataType::Float64 => {
                let a = c.as_any().downcast_ref::<arrow::array::Float64Array>();
                // The common case, every value finite, is one pass over the values.
                if let Some(a) = a.filter(|a| a.values().iter().any(|v| !v.is_finite())) {
                    for (row, v) in a.iter().enumerate() {
                        if let Some(v) = v {
                            check(row, v);
                        }
                    }
                }
            }
            DataType::Float32 => {
                let a = c.as_any().downcast_ref::<arrow::array::Float32Array>();
                if let Some(a) = a.filter(|a| a.values().iter().any(|v| !v.is_finite())) {
                    for (row, v) in a.iter().enumerate() {
                        if let Some(v) = v {
                            check(row, v as f64);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if !any {
        return Ok(d);
    }
    let keep: arrow::array::BooleanArray = bad.iter().map(|b| Some(b.is_none())).collect();
    let kept = arrow::compute::filter_record_batch(batch, &keep)?;
    let mut accepted = Vec::with_capacity(kept.num_rows());
    for (row, why) in bad.into_iter().enumerate() {
        match why {
            None => accepted.push(d.accepted[row]),
            Some(why) => d.rejected.push((d.accepted[row], why)),
        }
    }
    d.rejected.sort_by_key(|(i, _)| *i);
    d.accepted = accepted;
    d.batch = (kept.num_rows() > 0).then_some(kept);
    Ok(d)
}

/// Keeps the rows of `batch` whose entry in `bad` is `None`; the others become rejected records
/// (`batch` holds one row per record of `records`, which are indices into the caller's records).
fn split_bad_rows(
    batch: RecordBatch,
    records: Vec<usize>,
    bad: Vec<Option<String>>,
    mut rejected: Vec<(usize, String)>,
) -> Result<Decoded, ArrowError> {
    if bad.iter().all(Option::is_none) {
        return Ok(Decoded {
            batch: (batch.num_rows() > 0).then_some(batch),
            accepted: records,
            rejected,
        });
    }
    let keep: arrow::array::BooleanArray = bad.iter().map(|b| Some(b.is_none())).collect();
    let kept = arrow::compute::filter_record_batch(&batch, &keep)?;
    let mut accepted = Vec::with_capacity(kept.num_rows());
    for (record, why) in records.into_iter().zip(bad) {
        match why {
            None => accepted.push(record),
            Some(why) => rejected.push((record, why)),
        }
    }
    rejected.sort_by_key(|(i, _)| *i);
    Ok(Decoded {
        batch: (kept.num_rows() > 0).then_some(kept),
        accepted,
        rejected,
    })
}

/// Rows of `schema` from columns, or an empty batch with its row count when there are none.
fn batch_of(
    schema: &SchemaRef,
    columns: Vec<arrow::array::ArrayRef>,
    rows: usize,
) -> Result<RecordBatch, ArrowError> {
    RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
}

/// How a sink writes rows: in its format, each row a record (a message) or a line (a file).
/// Raw writes one value per row: the `value_column`, or the only column.
#[derive(Debug, Clone)]
pub struct RecordEncoder {
    format: Format,
    value_column: Option<String>,
}

impl RecordEncoder {
    pub fn new(format: Format, value_column: Option<String>) -> Result<Self, OptionError> {
        if format != Format::Raw && value_column.is_some() {
            return Err(OptionError::invalid(
                "value_column",
                "only format = 'raw' writes one column",
            ));
        }
        Ok(Self {
            format,
            value_column,
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether rows of `schema` can be written: raw needs its one column.
    pub fn check(&self, schema: &arrow::datatypes::Schema) -> Result<(), String> {
        self.value_index(schema).map(|_| ())
    }

    fn value_index(&self, schema: &arrow::datatypes::Schema) -> Result<Option<usize>, String> {
        if self.format != Format::Raw {
            return Ok(None);
        }
        match &self.value_column {
            Some(name) => schema
                .index_of(name)
                .map(Some)
                .map_err(|_| format!("value_column: the rows have no column '{name}'")),
            None if schema.fields().len() == 1 => Ok(Some(0)),
            None => {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                Err(format!(
                    "format = 'raw' writes one value per row: name it with value_column (the rows have {})",
                    names.join(", ")
                ))
            }
        }
    }

    /// The rows as lines: JSON objects, CSV lines (no header), or raw values.
    pub fn lines(&self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
        match self.format {
            Format::Json => json::encode_rows(batch),
            Format::Csv => csv::encode_rows(batch),
            Format::Raw => {
                let index = self
                    .value_index(&batch.schema())
                    .map_err(ArrowError::InvalidArgumentError)?
                    .unwrap_or(0);
                raw::encode_rows(&batch.project(&[index])?)
            }
        }
    }

    /// Each row as one record.
    pub fn each(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, ArrowError> {
        let lines = self.lines(batch)?;
        let mut records: Vec<Vec<u8>> = lines.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        // The text after the last line end is empty.
        records.truncate(batch.num_rows());
        Ok(records)
    }
}

/// Whether a column's nulls all come from its records, not from a decoding failure: a helper for
/// tests of the decoders.
#[cfg(test)]
fn values_of(batch: &RecordBatch, column: &str) -> Vec<String> {
    use arrow::util::display::array_value_to_string;
    let c = batch.column_by_name(column).expect("the column");
    (0..c.len())
        .map(|i| {
            if c.is_null(i) {
                "null".to_string()
            } else {
                array_value_to_string(c, i).expect("a value")
            }
        })
        .collect()
}

/// The `alert_id` of every row, when the rows have that column as text.
pub fn alert_ids(batch: &RecordBatch) -> Option<Vec<Option<String>>> {
    let column = batch.column_by_name("alert_id")?;
    if column.data_type() != &DataType::Utf8 {
        return None;
    }
    let ids = arrow::array::AsArray::as_string::<i32>(column.as_ref());
    Some(
        (0..ids.len())
            .map(|i| ids.is_valid(i).then(|| ids.value(i).to_string()))
            .collect(),
    )
}
