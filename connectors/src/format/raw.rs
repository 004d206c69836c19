//! Raw records: the record is one value, a number or a string (`81.5`, `open`), of one column
//! (`value_column`, or the only column declared). The other declared columns come from elsewhere
//! (a topic's levels, the topic itself) or stay NULL, but for a TIMESTAMP column, which gets the
//! time the record arrived: a raw reading carries no time of its own.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use eddy_engine::OptionError;

use super::values::parse_texts;
use super::{Decoded, batch_of, reject_non_finite, split_bad_rows, within_size};

pub struct RawDecoder {
    schema: SchemaRef,
    /// The column the value fills.
    value: usize,
    max_records: usize,
    max_record_bytes: usize,
}

impl RawDecoder {
    /// A decoder into rows of `schema`, the value going to `value_column` (by default the only
    /// column that is not a TIMESTAMP).
    pub fn new(
        schema: SchemaRef,
        value_column: Option<&str>,
        max_records: usize,
        max_record_bytes: usize,
    ) -> Result<Self, OptionError> {
        let value = match value_column {
            Some(name) => schema.index_of(name).map_err(|_| {
                OptionError::invalid(
                    "value_column",
                    format!("the source declares no column '{name}'"),
                )
            })?,
            None => {
                let candidates: Vec<usize> = (0..schema.fields().len())
                    .filter(|&i| !is_time(schema.field(i).data_type()))
                    .collect();
                match candidates.as_slice() {
                    [one] => *one,
                    _ => {
                        let names: Vec<&str> = candidates
                            .iter()
                            .map(|&i| schema.field(i).name().as_str())
                            .collect();
                        return Err(OptionError::invalid(
                            "value_column",
                            format!(
                                "format = 'raw' fills one column from each message; name it with value_column (the candidates are {})",
                                if names.is_empty() {
                                    "none".to_string()
                                } else {
                                    names.join(", ")
                                }
                            ),
                        ));
                    }
                }
            }
        };
        Ok(Self {
            schema,
            value,
            max_records,
            max_record_bytes,
        })
    }

    pub fn max_records(&self) -> usize {
        self.max_records
    }

    /// Decodes up to `max_records` records; a TIMESTAMP column other than the value's gets
    /// `received` (or the clock, for records read from a file).
    pub fn decode(
        &mut self,
        records: &[&[u8]],
        received: Option<&[i64]>,
    ) -> Result<Decoded, ArrowError> {
        let limit = self.max_record_bytes;
        let d = within_size(records, limit, |small| {
            // `within_size` passes the records in order; received times follow the same subset.
            let times: Vec<i64> = match received {
                Some(all) if all.len() == records.len() => records
                    .iter()
                    .zip(all)
                    .filter(|(r, _)| r.len() <= limit)
                    .map(|(_, t)| *t)
                    .collect(),
                _ => vec![now_millis(); small.len()],
            };
            self.decode_small(small, &times)
        })?;
        reject_non_finite(d)
    }

    fn decode_small(&self, records: &[&[u8]], times: &[i64]) -> Result<Decoded, ArrowError> {
        let mut bad: Vec<Option<String>> = vec![None; records.len()];
        let texts: Vec<Option<&str>> = records
            .iter()
            .enumerate()
            .map(|(i, r)| match std::str::from_utf8(r) {
                Ok(t) => Some(t),
                Err(_) => {
                    bad[i] = Some("the message is not UTF-8 text".into());
                    None
                }
            })
            .collect();
        let field = self.schema.field(self.value);
        let (values, errors) = parse_texts(&texts, field.data_type(), field.name());
        for (b, e) in bad.iter_mut().zip(errors) {
            if b.is_none() {
                *b = e;
            }
        }
        let columns: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if i == self.value {
                    Arc::clone(&values)
                } else if let DataType::Timestamp(TimeUnit::Millisecond, tz) = f.data_type() {
                    Arc::new(
                        TimestampMillisecondArray::from(times.to_vec())
                            .with_timezone_opt(tz.clone()),
                    ) as ArrayRef
                } else {
                    arrow::array::new_null_array(f.data_type(), records.len())
                }
            })
            .collect();
        let batch = batch_of(&self.schema, columns, records.len())?;
        split_bad_rows(batch, (0..records.len()).collect(), bad, Vec::new())
    }
}

fn is_time(t: &DataType) -> bool {
    matches!(t, DataType::Timestamp(_, _))
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Encodes each row's one value as a line (strings as they are, times RFC 3339).
pub fn encode_rows(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    if batch.num_columns() != 1 {
        return Err(ArrowError::InvalidArgumentError(format!(
            "format = 'raw' writes one value per row, and these rows have {} columns",
            batch.num_columns()
        )));
    }
    let batch = super::json::utc_timestamps(batch)?;
    let options = arrow::util::display::FormatOptions::default()
        .with_null("")
        .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.3fZ"));
    let formatter =
        arrow::util::display::ArrayFormatter::try_new(batch.column(0).as_ref(), &options)?;
    let mut out = Vec::with_capacity(batch.num_rows() * 16);
    for row in 0..batch.num_rows() {
        out.extend_from_slice(formatter.value(row).to_string().as_bytes());
        out.push(b'\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::values_of;
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn each_message_is_the_value_and_the_time_is_its_arrival() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, true),
            Field::new("temp", DataType::Float64, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]));
        assert!(
            RawDecoder::new(Arc::clone(&schema), None, 10, 1 << 20)
                .err()
                .is_some_and(|e| e.to_string().contains("device_id, temp")),
            "two columns could take the value"
        );
        let mut d = RawDecoder::new(schema, Some("temp"), 10, 1 << 20).expect("decoder");
        let out = d
            .decode(&[b"81.5", b" 20 \n", b"hot"], Some(&[1_000, 2_000, 3_000]))
            .expect("decoded");
        let batch = out.batch.expect("rows");
        assert_eq!(values_of(&batch, "temp"), ["81.5", "20.0"]);
        assert_eq!(
            values_of(&batch, "ts"),
            ["1970-01-01T00:00:01", "1970-01-01T00:00:02"]
        );
        assert_eq!(values_of(&batch, "device_id"), ["null", "null"]);
        assert_eq!(out.rejected.len(), 1);
        assert!(out.rejected[0].1.contains("'hot' is not a Float64"));
        let text = String::from_utf8(
            encode_rows(&batch.project(&[1]).expect("one column")).expect("encoded"),
        )
        .expect("utf-8");
        assert_eq!(text, "81.5\n20.0\n");
    }
}
