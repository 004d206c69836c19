//! JSON with arrow-json: [`JsonDecoder`] turns records (lines, messages) into batches of a declared
//! schema and tells which records were bad and why; [`encode_rows`] writes rows as JSON objects.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow_json::reader::Decoder;
use arrow_json::{LineDelimitedWriter, ReaderBuilder, WriterBuilder};

/// What [`JsonDecoder::decode`] made of a group of records.
#[derive(Debug, Default)]
pub struct Decoded {
    /// One row per accepted record, in order.
    pub batch: Option<RecordBatch>,
    /// Indices of the records that became rows (all of them when `rejected` is empty).
    pub accepted: Vec<usize>,
    /// Records that are not a JSON object of the schema, with the reason.
    pub rejected: Vec<(usize, String)>,
}

/// Decodes records, each one JSON object, into batches of a schema. A group of records is decoded
/// in one go; only when that fails is each record tried alone, so one bad record costs a little
/// and never poisons the others (arrow-json's decoder must be rebuilt after any error).
pub struct JsonDecoder {
    schema: SchemaRef,
    max_records: usize,
    decoder: Decoder,
    /// Records longer than this are rejected unread.
    max_record_bytes: usize,
}

/// The default of the `max_record_bytes` option of sources.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

impl JsonDecoder {
    /// A decoder for groups of up to `max_records` records.
    pub fn new(schema: SchemaRef, max_records: usize) -> Result<Self, ArrowError> {
        let decoder = builder(&schema, max_records).build_decoder()?;
        Ok(Self {
            schema,
            max_records,
            decoder,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        })
    }

    /// Rejects records longer than `bytes`.
    pub fn with_max_record_bytes(mut self, bytes: usize) -> Self {
        self.max_record_bytes = bytes;
        self
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn max_records(&self) -> usize {
        self.max_records
    }

    /// Decodes up to `max_records` records.
    ///
    /// Besides records that are not JSON objects of the schema, records longer than the size limit
    /// and rows with a NaN or infinite number are rejected, with the reason: a sensor that sends
    /// `"NaN"` must not turn every average it touches into NaN.
    pub fn decode(&mut self, records: &[&[u8]]) -> Result<Decoded, ArrowError> {
        let limit = self.max_record_bytes;
        if records.iter().any(|r| r.len() > limit) {
            let (small, big): (Vec<usize>, Vec<usize>) =
                (0..records.len()).partition(|&i| records[i].len() <= limit);
            let subset: Vec<&[u8]> = small.iter().map(|&i| records[i]).collect();
            let mut d = self.decode(&subset)?;
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
            return Ok(d);
        }
        let decoded = match self.decode_all(records.iter().copied()) {
            Ok(batch) => Decoded {
                batch,
                accepted: (0..records.len()).collect(),
                rejected: Vec::new(),
            },
            Err(_) => {
                self.decoder = builder(&self.schema, self.max_records).build_decoder()?;
                self.decode_one_by_one(records)?
            }
        };
        reject_non_finite(decoded)
    }

    fn decode_all<'r>(
        &mut self,
        records: impl Iterator<Item = &'r [u8]>,
    ) -> Result<Option<RecordBatch>, String> {
        for record in records {
            let before = self.decoder.len();
            let consumed = self
                .decoder
                .decode(record)
                .map_err(|e| reason(&e, &self.schema))?;
            if consumed < record.len() || self.decoder.has_partial_record() {
                return Err("not a single JSON object".into());
            }
            if self.decoder.len() != before + 1 {
                return Err("not a single JSON object".into());
            }
        }
        self.decoder.flush().map_err(|e| reason(&e, &self.schema))
    }

    fn decode_one_by_one(&mut self, records: &[&[u8]]) -> Result<Decoded, ArrowError> {
        let mut accepted = Vec::with_capacity(records.len());
        let mut rejected = Vec::new();
        for (i, record) in records.iter().enumerate() {
            match check_record(&self.schema, record) {
                Ok(()) => accepted.push(i),
                Err(why) => rejected.push((i, why)),
            }
        }
        let batch = match self.decode_all(accepted.iter().map(|&i| records[i])) {
            Ok(batch) => batch,
            Err(why) => {
                // Each record decoded alone but not together: reject them all rather than guess.
                self.decoder = builder(&self.schema, self.max_records).build_decoder()?;
                rejected.extend(accepted.drain(..).map(|i| (i, why.clone())));
                rejected.sort_by_key(|(i, _)| *i);
                None
            }
        };
        Ok(Decoded {
            batch,
            accepted,
            rejected,
        })
    }
}

/// Moves rows with a NaN or infinite floating-point value to the rejected records.
fn reject_non_finite(mut d: Decoded) -> Result<Decoded, ArrowError> {
    let Some(batch) = &d.batch else {
        return Ok(d);
    };
    // The common case, no non-finite value anywhere, is one pass over the values.
    let suspicious = batch.columns().iter().any(|c| {
        if let Some(a) = c.as_any().downcast_ref::<arrow::array::Float64Array>() {
            a.values().iter().any(|v| !v.is_finite())
        } else if let Some(a) = c.as_any().downcast_ref::<arrow::array::Float32Array>() {
            a.values().iter().any(|v| !v.is_finite())
        } else {
            false
        }
    });
    if !suspicious {
        return Ok(d);
    }
    let mut bad: Vec<Option<String>> = vec![None; batch.num_rows()];
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let check = |row: usize, v: f64, bad: &mut Vec<Option<String>>| {
            if !v.is_finite() && bad[row].is_none() {
                bad[row] = Some(format!("{} is {v} (not a finite number)", f.name()));
            }
        };
        match f.data_type() {
            DataType::Float64 => {
                let a = c.as_any().downcast_ref::<arrow::array::Float64Array>();
                for (row, v) in a.into_iter().flatten().enumerate() {
                    if let Some(v) = v {
                        check(row, v, &mut bad);
                    }
                }
            }
            DataType::Float32 => {
                let a = c.as_any().downcast_ref::<arrow::array::Float32Array>();
                for (row, v) in a.into_iter().flatten().enumerate() {
                    if let Some(v) = v {
                        check(row, v as f64, &mut bad);
                    }
                }
            }
            _ => {}
        }
    }
    if bad.iter().all(Option::is_none) {
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

fn builder(schema: &SchemaRef, batch_size: usize) -> ReaderBuilder {
    ReaderBuilder::new(Arc::clone(schema))
        .with_batch_size(batch_size.max(1))
        .with_coerce_primitive(true)
}

/// Decodes one record alone: `Ok` if it is exactly one JSON object that fits the schema.
fn check_record(schema: &SchemaRef, record: &[u8]) -> Result<(), String> {
    if record.iter().all(u8::is_ascii_whitespace) {
        return Err("empty record".into());
    }
    let mut d = builder(schema, 1)
        .build_decoder()
        .map_err(|e| e.to_string())?;
    let consumed = d.decode(record).map_err(|e| reason(&e, schema))?;
    if d.has_partial_record() {
        return Err("truncated JSON: the record ends inside a value".into());
    }
    if consumed < record.len() && !record[consumed..].iter().all(u8::is_ascii_whitespace) {
        return Err("more than one JSON value in one record".into());
    }
    d.flush().map_err(|e| reason(&e, schema))?;
    Ok(())
}

/// arrow-json's message, made readable (it says nothing of which record: the caller knows).
fn reason(e: &ArrowError, schema: &Schema) -> String {
    let text = match e {
        ArrowError::JsonError(m) => m.clone(),
        other => other.to_string(),
    };
    if text.contains("non-nullable") || text.contains("unmasked nulls") {
        let missing: Vec<&str> = schema
            .fields()
            .iter()
            .filter(|f| !f.is_nullable() && text.contains(&format!("\"{}\"", f.name())))
            .map(|f| f.name().as_str())
            .collect();
        if let [name] = missing.as_slice() {
            return format!("missing or null value for required field '{name}'");
        }
    }
    text
}

/// Encodes rows as JSON objects, one per line: keys are the column names, timestamps RFC 3339 in
/// UTC with milliseconds (`2026-01-01T00:00:10.000Z`), nulls written out.
pub fn encode_rows(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let batch = utc_timestamps(batch)?;
    let mut out = Vec::with_capacity(batch.num_rows() * 96);
    {
        let mut writer: LineDelimitedWriter<&mut Vec<u8>> = WriterBuilder::new()
            .with_explicit_nulls(true)
            .with_timestamp_format("%Y-%m-%dT%H:%M:%S%.3fZ".to_string())
            .build(&mut out);
        writer.write(&batch)?;
        writer.finish()?;
    }
    Ok(out)
}

/// The JSON lines of [`encode_rows`], one slice per row.
pub fn rows(encoded: &[u8]) -> impl Iterator<Item = &[u8]> {
    encoded.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

/// Timestamps with a time zone hold UTC instants: drop the zone so they print as UTC with `Z`.
fn utc_timestamps(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Timestamp(_, Some(_))))
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        match f.data_type() {
            DataType::Timestamp(unit, Some(_)) => {
                let naive = DataType::Timestamp(*unit, None);
                let data = c
                    .to_data()
                    .into_builder()
                    .data_type(naive.clone())
                    .build()?;
                columns.push(arrow::array::make_array(data));
                fields.push(Field::new(f.name(), naive, f.is_nullable()));
            }
            _ => {
                columns.push(Arc::clone(c));
                fields.push(f.as_ref().clone());
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Float64Array, TimestampMillisecondArray};
    use arrow::datatypes::{Float64Type, TimeUnit, TimestampMillisecondType};

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
    fn good_records_decode_in_one_go() {
        let mut d = JsonDecoder::new(schema(), 16).unwrap();
        let records: Vec<&[u8]> = vec![
            br#"{"device_id":"a","temp":20.5,"ts":"2026-01-01T00:00:01.000Z"}"#,
            br#"{"device_id":7,"temp":21,"ts":1767225602000}"#,
        ];
        let out = d.decode(&records).unwrap();
        assert!(out.rejected.is_empty());
        let b = out.batch.unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.column(0).as_string::<i32>().value(1), "7");
        assert_eq!(b.column(1).as_primitive::<Float64Type>().value(1), 21.0);
        let ts = b.column(2).as_primitive::<TimestampMillisecondType>();
        assert_eq!(ts.value(0), 1_767_225_601_000);
        assert_eq!(ts.value(1), 1_767_225_602_000);
    }

    #[test]
    fn bad_records_are_rejected_with_a_reason_and_the_rest_kept() {
        let mut d = JsonDecoder::new(schema(), 16).unwrap();
        let records: Vec<&[u8]> = vec![
            br#"{"device_id":"a","temp":1,"ts":1000}"#,
            br#"{"device_id":"b","temp":,"ts":1000}"#,
            br#"{"device_id":"c","temp":"hot","ts":1000}"#,
            br#"{"device_id":"d","temp":2}"#,
            br#"{"device_id":"e","temp":3,"ts":"yesterday"}"#,
            br#"{"device_id":"f","temp":4,"ts":2000"#,
            br#"{"device_id":"g","temp":5,"ts":3000}"#,
            b"",
            br#"{"device_id":"h","temp":6,"ts":3000} {"device_id":"i"}"#,
        ];
        let out = d.decode(&records).unwrap();
        assert_eq!(out.accepted, vec![0, 6]);
        let b = out.batch.unwrap();
        assert_eq!(b.column(0).as_string::<i32>().value(1), "g");
        let reasons: Vec<(usize, &str)> =
            out.rejected.iter().map(|(i, r)| (*i, r.as_str())).collect();
        assert_eq!(reasons.len(), 7, "{reasons:?}");
        assert!(reasons[0].1.contains("unexpected ','"), "{reasons:?}");
        assert!(
            reasons[1].1.contains("failed to parse \"hot\" as Float64"),
            "{reasons:?}"
        );
        assert_eq!(
            reasons[2].1,
            "missing or null value for required field 'ts'"
        );
        assert!(reasons[3].1.contains("yesterday"), "{reasons:?}");
        assert!(reasons[4].1.starts_with("truncated JSON"), "{reasons:?}");
        assert_eq!(reasons[5].1, "empty record");
        assert_eq!(reasons[6].1, "more than one JSON value in one record");
        // The decoder is usable again after errors.
        let out = d
            .decode(&[br#"{"device_id":"z","temp":1,"ts":1}"#])
            .unwrap();
        assert_eq!(out.batch.unwrap().num_rows(), 1);
    }

    #[test]
    fn rows_encode_with_utc_millisecond_timestamps_and_nulls() {
        let s = Arc::new(Schema::new(vec![
            Field::new(
                "window_end",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("avg_temp", DataType::Float64, true),
        ]));
        let b = RecordBatch::try_new(
            s,
            vec![
                Arc::new(TimestampMillisecondArray::from(vec![
                    1_767_225_610_000,
                    1_767_225_610_123,
                ])),
                Arc::new(Float64Array::from(vec![Some(81.25), None])),
            ],
        )
        .unwrap();
        let text = String::from_utf8(encode_rows(&b).unwrap()).unwrap();
        assert_eq!(
            text,
            "{\"window_end\":\"2026-01-01T00:00:10.000Z\",\"avg_temp\":81.25}\n{\"window_end\":\"2026-01-01T00:00:10.123Z\",\"avg_temp\":null}\n"
        );
        assert_eq!(rows(text.as_bytes()).count(), 2);
    }
}
