//! JSON with arrow-json: [`JsonDecoder`] turns records (lines, messages) into batches of a declared
//! schema and tells which records were bad and why; [`encode_rows`] writes rows as JSON objects.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow_json::reader::Decoder;
use arrow_json::{LineDelimitedWriter, ReaderBuilder, WriterBuilder};

use super::{Decoded, reject_non_finite, within_size};

/// Decodes records, each one JSON object, into batches of a schema. A group of records is decoded
/// in one go; only when that fails is each record tried alone, so one bad record costs a little
/// and never poisons the others (arrow-json's decoder must be rebuilt after any error).
pub struct JsonDecoder {
    /// What arrow-json decodes: the declared columns, or with JSON paths the nesting they read.
    schema: SchemaRef,
    max_records: usize,
    decoder: Decoder,
    /// Records longer than this are rejected unread.
    max_record_bytes: usize,
    /// Declared columns read through paths, when some are.
    paths: Option<Paths>,
}

/// The declared columns, and for each the chain of field names that leads to it from a record's
/// top level (one name for a column read by its own name).
struct Paths {
    declared: SchemaRef,
    chains: Vec<Vec<String>>,
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
            paths: None,
        })
    }

    /// Reads the columns of `paths` (column, `$.a.b`) from nested objects instead of by name.
    pub fn with_paths(mut self, paths: &[(String, String)]) -> Result<Self, ArrowError> {
        if paths.is_empty() {
            return Ok(self);
        }
        let declared = Arc::clone(&self.schema);
        let mut chains = Vec::with_capacity(declared.fields().len());
        for field in declared.fields() {
            let chain = match paths.iter().find(|(c, _)| c == field.name()) {
                Some((column, path)) => parse_path(path).map_err(|why| {
                    ArrowError::InvalidArgumentError(format!("option '{column}': {why}"))
                })?,
                None => vec![field.name().clone()],
            };
            chains.push(chain);
        }
        self.schema = Arc::new(Schema::new(nested_fields(&declared, &chains)?));
        self.decoder = builder(&self.schema, self.max_records).build_decoder()?;
        self.paths = Some(Paths { declared, chains });
        Ok(self)
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
        let mut decoded = within_size(records, limit, |r| self.decode_small(r))?;
        if let Some(paths) = &self.paths {
            decoded = paths.project(decoded)?;
        }
        reject_non_finite(decoded)
    }

    fn decode_small(&mut self, records: &[&[u8]]) -> Result<Decoded, ArrowError> {
        match self.decode_all(records.iter().copied()) {
            Ok(batch) => Ok(Decoded {
                batch,
                accepted: (0..records.len()).collect(),
                rejected: Vec::new(),
            }),
            Err(_) => {
                self.decoder = builder(&self.schema, self.max_records).build_decoder()?;
                self.decode_one_by_one(records)
            }
        }
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

/// `$.payload.temp` as the chain of names `payload`, `temp`.
fn parse_path(path: &str) -> Result<Vec<String>, String> {
    let rest = path
        .strip_prefix("$.")
        .ok_or_else(|| format!("'{path}' is not a JSON path such as '$.payload.temp'"))?;
    let names: Vec<String> = rest.split('.').map(str::to_string).collect();
    if let Some(bad) = names
        .iter()
        .find(|n| n.is_empty() || n.contains(['[', ']', '*', '\'', '"']))
    {
        return Err(format!(
            "'{path}': '{bad}' is not a field name (paths go through objects by name: '$.a.b'; arrays and wildcards are not read)"
        ));
    }
    Ok(names)
}

/// The fields arrow-json decodes so that every chain leads to a value of its column's type:
/// objects along the way become structs.
fn nested_fields(declared: &Schema, chains: &[Vec<String>]) -> Result<Vec<Field>, ArrowError> {
    enum Node {
        Leaf(Field),
        Object(Vec<(String, Node)>),
    }
    fn insert(
        nodes: &mut Vec<(String, Node)>,
        chain: &[String],
        leaf: Field,
    ) -> Result<(), String> {
        let (name, rest) = chain.split_first().ok_or("an empty path")?;
        let at = match nodes.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                let node = if rest.is_empty() {
                    Node::Leaf(leaf.clone())
                } else {
                    Node::Object(Vec::new())
                };
                nodes.push((name.clone(), node));
                if rest.is_empty() {
                    return Ok(());
                }
                nodes.len() - 1
            }
        };
        match (&mut nodes[at].1, rest.is_empty()) {
            (Node::Object(children), false) => insert(children, rest, leaf),
            _ => Err(format!("'{name}' is read both as a value and as an object")),
        }
    }
    fn fields(nodes: Vec<(String, Node)>) -> Vec<Field> {
        nodes
            .into_iter()
            .map(|(name, node)| match node {
                Node::Leaf(f) => f.with_name(name),
                Node::Object(children) => {
                    Field::new(name, DataType::Struct(Fields::from(fields(children))), true)
                }
            })
            .collect()
    }
    let mut nodes = Vec::new();
    for (field, chain) in declared.fields().iter().zip(chains) {
        // A value inside an object may be missing while its column is NOT NULL: checked after.
        let leaf = field
            .as_ref()
            .clone()
            .with_nullable(chain.len() > 1 || field.is_nullable());
        insert(&mut nodes, chain, leaf).map_err(|why| {
            ArrowError::InvalidArgumentError(format!("column {}: {why}", field.name()))
        })?;
    }
    Ok(fields(nodes))
}

impl Paths {
    /// The declared columns out of the decoded (nested) rows. A value is NULL where any object
    /// on its path is missing; a row missing a value its column requires is rejected.
    fn project(&self, mut decoded: Decoded) -> Result<Decoded, ArrowError> {
        let Some(batch) = decoded.batch.take() else {
            return Ok(decoded);
        };
        let mut columns = Vec::with_capacity(self.chains.len());
        let mut bad: Vec<Option<String>> = vec![None; batch.num_rows()];
        for (field, chain) in self.declared.fields().iter().zip(&self.chains) {
            let mut array: ArrayRef = Arc::clone(
                batch
                    .column_by_name(&chain[0])
                    .ok_or_else(|| ArrowError::SchemaError(format!("no field {}", chain[0])))?,
            );
            for name in &chain[1..] {
                let parent = array.as_struct();
                let child = parent
                    .column_by_name(name)
                    .ok_or_else(|| ArrowError::SchemaError(format!("no field {name}")))?;
                let nulls = arrow::buffer::NullBuffer::union(
                    parent.nulls(),
                    child.logical_nulls().as_ref(),
                );
                array =
                    arrow::array::make_array(child.to_data().into_builder().nulls(nulls).build()?);
            }
            if !field.is_nullable() {
                for (row, b) in bad.iter_mut().enumerate() {
                    if b.is_none() && array.is_null(row) {
                        *b = Some(format!(
                            "missing or null value for required field '{}' (at $.{})",
                            field.name(),
                            chain.join(".")
                        ));
                    }
                }
            }
            columns.push(array);
        }
        // Checked against the declared (required) columns once the bad rows are out.
        let relaxed = Arc::new(Schema::new(
            self.declared
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let all = super::batch_of(&relaxed, columns, batch.num_rows())?;
        let mut out = super::split_bad_rows(
            all,
            std::mem::take(&mut decoded.accepted),
            bad,
            std::mem::take(&mut decoded.rejected),
        )?;
        if let Some(b) = out.batch.take() {
            out.batch = Some(super::batch_of(
                &self.declared,
                b.columns().to_vec(),
                b.num_rows(),
            )?);
        }
        Ok(out)
    }
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
pub(crate) fn utc_timestamps(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
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

    #[test]
    fn columns_named_by_a_json_path_come_from_nested_objects() {
        let paths = vec![
            ("temp".to_string(), "$.payload.temp".to_string()),
            ("ts".to_string(), "$.payload.meta.time".to_string()),
        ];
        let mut d = JsonDecoder::new(schema(), 10)
            .and_then(|d| d.with_paths(&paths))
            .expect("decoder");
        let out = d
            .decode(&[
                br#"{"device_id":"m1","payload":{"temp":81.5,"meta":{"time":1767225600000}}}"#,
                br#"{"device_id":"m2","payload":{"temp":20}}"#,
                br#"{"device_id":"m3","payload":{"meta":{"time":"2026-01-01T00:00:01Z"}}}"#,
            ])
            .expect("decoded");
        let batch = out.batch.expect("rows");
        assert_eq!(out.accepted, [0, 2]);
        assert_eq!(
            out.rejected,
            [(
                1,
                "missing or null value for required field 'ts' (at $.payload.meta.time)"
                    .to_string()
            )]
        );
        assert_eq!(crate::format::values_of(&batch, "device_id"), ["m1", "m3"]);
        assert_eq!(crate::format::values_of(&batch, "temp"), ["81.5", "null"]);
        assert_eq!(
            crate::format::values_of(&batch, "ts"),
            ["2026-01-01T00:00:00", "2026-01-01T00:00:01"]
        );
        assert!(
            JsonDecoder::new(schema(), 10)
                .and_then(|d| d.with_paths(&[("temp".into(), "$.readings[0]".into())]))
                .is_err(),
            "arrays are refused"
        );
    }
}
