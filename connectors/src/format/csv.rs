//! CSV records: one line per record, fields in the order of a header line (files) or in the
//! declared order (messages). Fields are split by arrow-csv and read into each column's type;
//! an empty field is NULL, a field that does not read as its type rejects its record.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use eddy_engine::OptionError;

use super::values::parse_texts;
use super::{Decoded, batch_of, reject_non_finite, split_bad_rows, within_size};

pub struct CsvDecoder {
    /// The declared columns.
    schema: SchemaRef,
    delimiter: u8,
    /// For each field of a record, the declared column it fills (`None`: not declared, skipped);
    /// `None` until the header line is read, when there is one.
    fields: Option<Vec<Option<usize>>>,
    max_records: usize,
    max_record_bytes: usize,
}

impl CsvDecoder {
    pub fn new(
        schema: SchemaRef,
        delimiter: char,
        header: bool,
        max_records: usize,
        max_record_bytes: usize,
    ) -> Result<Self, OptionError> {
        let delimiter = u8::try_from(delimiter)
            .ok()
            .filter(u8::is_ascii)
            .ok_or_else(|| OptionError::invalid("delimiter", "must be one ASCII character"))?;
        let fields = (!header).then(|| (0..schema.fields().len()).map(Some).collect());
        Ok(Self {
            schema,
            delimiter,
            fields,
            max_records,
            max_record_bytes,
        })
    }

    pub fn max_records(&self) -> usize {
        self.max_records
    }

    pub fn wants_header(&self) -> bool {
        self.fields.is_none()
    }

    /// Reads the header line: each name goes to the declared column of that name (names not
    /// declared are skipped; declared columns the header lacks stay NULL).
    pub fn header(&mut self, line: &[u8]) -> Result<(), String> {
        let names = self
            .split(&[line])
            .map_err(|e| format!("the header line: {e}"))?;
        let row = names
            .first()
            .ok_or_else(|| "the header line is empty".to_string())?;
        self.fields = Some(
            row.iter()
                .map(|name| {
                    let name = name.as_deref().unwrap_or_default().trim();
                    self.schema.index_of(name).ok()
                })
                .collect(),
        );
        Ok(())
    }

    /// Decodes up to `max_records` records.
    pub fn decode(&mut self, records: &[&[u8]]) -> Result<Decoded, ArrowError> {
        let limit = self.max_record_bytes;
        reject_non_finite(within_size(records, limit, |r| self.decode_small(r))?)
    }

    fn decode_small(&mut self, records: &[&[u8]]) -> Result<Decoded, ArrowError> {
        // Split all at once; when that fails, record by record, to know which ones are bad.
        let (rows, indices, rejected) = match self.split(records) {
            Ok(rows) => (rows, (0..records.len()).collect(), Vec::new()),
            Err(_) => {
                let mut rows = Vec::new();
                let mut indices = Vec::new();
                let mut rejected = Vec::new();
                for (i, r) in records.iter().enumerate() {
                    match self.split(&[r]) {
                        Ok(mut one) if one.len() == 1 => {
                            rows.push(one.remove(0));
                            indices.push(i);
                        }
                        Ok(_) => rejected.push((i, "not one CSV line".to_string())),
                        Err(e) => rejected.push((i, e)),
                    }
                }
                (rows, indices, rejected)
            }
        };
        let fields = self.fields.clone().unwrap_or_default();
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        let mut bad: Vec<Option<String>> = vec![None; rows.len()];
        for (c, field) in self.schema.fields().iter().enumerate() {
            let at = fields.iter().position(|f| *f == Some(c));
            let texts: Vec<Option<&str>> = rows
                .iter()
                .map(|row| at.and_then(|a| row.get(a)).and_then(|v| v.as_deref()))
                .collect();
            let (array, errors) = parse_texts(&texts, field.data_type(), field.name());
            for (b, e) in bad.iter_mut().zip(errors) {
                if b.is_none() {
                    *b = e;
                }
            }
            for (b, (row, v)) in bad.iter_mut().zip(texts.iter().enumerate()) {
                if b.is_none() && v.is_none() && !field.is_nullable() {
                    *b = Some(format!(
                        "missing or empty value for required field '{}' (record {})",
                        field.name(),
                        row + 1
                    ));
                }
            }
            columns.push(array);
        }
        let batch = batch_of(&self.schema, columns, rows.len())?;
        split_bad_rows(batch, indices, bad, rejected)
    }

    /// The fields of each record, split by arrow-csv; an error when a record does not have the
    /// number of fields the header (or the declaration) gives.
    fn split(&self, records: &[&[u8]]) -> Result<Vec<Vec<Option<String>>>, String> {
        let width = self
            .fields
            .as_ref()
            .map_or_else(|| count_fields(records, self.delimiter), Vec::len);
        let schema = Arc::new(Schema::new(
            (0..width.max(1))
                .map(|i| Field::new(format!("f{i}"), DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let mut decoder = arrow_csv::ReaderBuilder::new(schema)
            .with_header(false)
            .with_delimiter(self.delimiter)
            .with_batch_size(records.len().max(1))
            .build_decoder();
        for r in records {
            decoder.decode(r).map_err(|e| e.to_string())?;
            decoder.decode(b"\n").map_err(|e| e.to_string())?;
        }
        let batch: Option<RecordBatch> = decoder.flush().map_err(|e| e.to_string())?;
        let Some(batch) = batch else {
            return Ok(Vec::new());
        };
        if batch.num_rows() != records.len() {
            return Err(format!(
                "{} records gave {} CSV lines",
                records.len(),
                batch.num_rows()
            ));
        }
        let columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| c.as_string::<i32>())
            .collect();
        Ok((0..batch.num_rows())
            .map(|row| {
                columns
                    .iter()
                    .map(|c| (!c.is_null(row)).then(|| c.value(row).to_string()))
                    .collect()
            })
            .collect())
    }
}

/// The number of fields of the first record (for a header line).
fn count_fields(records: &[&[u8]], delimiter: u8) -> usize {
    records
        .first()
        .map_or(1, |r| r.iter().filter(|&&b| b == delimiter).count() + 1)
}

/// Encodes rows as CSV lines without a header, times RFC 3339 in UTC with milliseconds.
pub fn encode_rows(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let batch = super::json::utc_timestamps(batch)?;
    let mut out = Vec::with_capacity(batch.num_rows() * 64);
    {
        let mut writer = arrow_csv::WriterBuilder::new()
            .with_header(false)
            .with_timestamp_format("%Y-%m-%dT%H:%M:%S%.3fZ".to_string())
            .build(&mut out);
        writer.write(&batch)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::values_of;
    use arrow::datatypes::TimeUnit;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, true),
            Field::new("temp", DataType::Float64, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]))
    }

    #[test]
    fn lines_in_declared_order_with_bad_ones_named() {
        let mut d = CsvDecoder::new(schema(), ',', false, 100, 1 << 20).expect("decoder");
        let out = d
            .decode(&[
                b"m1,81.5,2026-01-01T00:00:00Z",
                b"m2,hot,1767225600000",
                b"\"m,3\",,1767225601000",
                b"m4,20",
                b"m5,NaN,1767225601000",
            ])
            .expect("decoded");
        let batch = out.batch.expect("rows");
        assert_eq!(out.accepted, [0, 2]);
        assert_eq!(values_of(&batch, "device_id"), ["m1", "m,3"]);
        assert_eq!(values_of(&batch, "temp"), ["81.5", "null"]);
        let reasons: Vec<&str> = out.rejected.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(
            out.rejected.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            [1, 3, 4]
        );
        assert!(reasons[0].contains("'hot' is not a Float64"), "{reasons:?}");
        assert!(reasons[2].contains("not a finite number"), "{reasons:?}");
    }

    #[test]
    fn a_header_gives_the_order_and_unknown_fields_are_skipped() {
        let mut d = CsvDecoder::new(schema(), ';', true, 100, 1 << 20).expect("decoder");
        assert!(d.wants_header());
        d.header(b"ts;site;temp;device_id").expect("header");
        let out = d
            .decode(&[b"1767225600000;north;21.5;m1"])
            .expect("decoded");
        let batch = out.batch.expect("rows");
        assert_eq!(values_of(&batch, "device_id"), ["m1"]);
        assert_eq!(values_of(&batch, "temp"), ["21.5"]);
        assert_eq!(values_of(&batch, "ts"), ["2026-01-01T00:00:00"]);
    }

    #[test]
    fn rows_encode_as_csv_lines() {
        let mut d = CsvDecoder::new(schema(), ',', false, 10, 1 << 20).expect("decoder");
        let batch = d
            .decode(&[b"m1,81.5,1767225600000"])
            .expect("decoded")
            .batch
            .expect("rows");
        let text = String::from_utf8(encode_rows(&batch).expect("encoded")).expect("utf-8");
        assert_eq!(text, "m1,81.5,2026-01-01T00:00:00.000Z\n");
    }
}
