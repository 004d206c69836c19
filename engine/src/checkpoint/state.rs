//! How operators write their state into a checkpoint and read it back.
//!
//! A query's state is a sequence of parts, each an Arrow record batch: operators write their parts
//! in a fixed order and read them back in the same order (rows they hold as batches, small
//! structured values as one-row JSON batches). The parts are stored together in one file:
//!
//! ```text
//! "EDDYSTATE" (9 bytes) | format version (u32 LE) | part count (u32 LE)
//! then per part: length (u64 LE) | an Arrow IPC stream holding the part's one batch
//! ```

use std::collections::VecDeque;
use std::io::Cursor;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::ScalarValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{EngineError, Result};

const MAGIC: &[u8; 9] = b"EDDYSTATE";
/// The version of the state files; a checkpoint of another version is refused.
pub const STATE_FORMAT: u32 = 2;

/// Collects the state of a query's operators.
#[derive(Default)]
pub struct StateWriter {
    parts: Vec<RecordBatch>,
}

impl StateWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows the operator holds, as they are.
    pub fn batch(&mut self, batch: RecordBatch) {
        self.parts.push(batch);
    }

    /// Named columns of equal length, as one part.
    pub fn columns(&mut self, columns: Vec<(&str, ArrayRef)>) -> Result<()> {
        self.parts.push(RecordBatch::try_from_iter(columns)?);
        Ok(())
    }

    /// A small structured value (counters, watermarks, positions), as one row of JSON.
    pub fn json<T: Serialize>(&mut self, value: &T) -> Result<()> {
        let text = serde_json::to_string(value)
            .map_err(|e| EngineError::Checkpoint(format!("cannot encode state: {e}")))?;
        let schema = Arc::new(Schema::new(vec![Field::new("json", DataType::Utf8, false)]));
        let column = Arc::new(StringArray::from(vec![text]));
        self.parts.push(RecordBatch::try_new(schema, vec![column])?);
        Ok(())
    }

    /// The bytes of the state file.
    pub fn encode(self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&STATE_FORMAT.to_le_bytes());
        out.extend_from_slice(&(self.parts.len() as u32).to_le_bytes());
        for part in &self.parts {
            let mut bytes = Vec::new();
            let mut w = StreamWriter::try_new(&mut bytes, &part.schema())?;
            w.write(part)?;
            w.finish()?;
            drop(w);
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }
}

/// Hands the parts of a state file back, in the order they were written.
pub struct StateReader {
    parts: VecDeque<RecordBatch>,
}

impl StateReader {
    /// Reads a state file; a file that is not one, of another version, or cut short is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |why: &str| EngineError::Checkpoint(why.to_string());
        let header = MAGIC.len() + 8;
        if bytes.len() < header || &bytes[..MAGIC.len()] != MAGIC {
            return Err(bad("not an Eddy state file"));
        }
        let word = |at: usize| -> Result<u32> {
            let b: [u8; 4] = bytes[at..at + 4].try_into().map_err(|_| bad("cut short"))?;
            Ok(u32::from_le_bytes(b))
        };
        let version = word(MAGIC.len())?;
        if version != STATE_FORMAT {
            return Err(EngineError::Checkpoint(format!(
                "state format {version}, this eddy reads format {STATE_FORMAT}"
            )));
        }
        let count = word(MAGIC.len() + 4)? as usize;
        let mut at = header;
        let mut parts = VecDeque::with_capacity(count.min(1 << 16));
        for i in 0..count {
            let len: [u8; 8] = bytes
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad("cut short"))?;
            let len = u64::from_le_bytes(len) as usize;
            at += 8;
            let part = bytes
                .get(at..at.saturating_add(len))
                .ok_or_else(|| bad("cut short"))?;
            at += len;
            let mut reader = StreamReader::try_new(Cursor::new(part), None).map_err(|e| {
                EngineError::Checkpoint(format!("part {} of the state is damaged: {e}", i + 1))
            })?;
            let batch = reader
                .next()
                .ok_or_else(|| EngineError::Checkpoint(format!("part {} is empty", i + 1)))?
                .map_err(|e| {
                    EngineError::Checkpoint(format!("part {} of the state is damaged: {e}", i + 1))
                })?;
            parts.push_back(batch);
        }
        if at != bytes.len() {
            return Err(bad("bytes after the last part"));
        }
        Ok(Self { parts })
    }

    /// The next part, which must be rows.
    pub fn batch(&mut self) -> Result<RecordBatch> {
        self.parts.pop_front().ok_or_else(|| {
            EngineError::Checkpoint("the state ends before every operator has read its own".into())
        })
    }

    /// The next part, which must be a value written by [`StateWriter::json`].
    pub fn json<T: DeserializeOwned>(&mut self) -> Result<T> {
        let part = self.batch()?;
        let text = part
            .column_by_name("json")
            .and_then(|c| c.as_string_opt::<i32>())
            .filter(|c| c.len() == 1)
            .ok_or_else(|| {
                EngineError::Checkpoint("expected a JSON part of the state, found rows".into())
            })?;
        serde_json::from_str(text.value(0))
            .map_err(|e| EngineError::Checkpoint(format!("a part of the state does not fit: {e}")))
    }

    /// Every part has been read: a state with parts left over belongs to another plan.
    pub fn finish(self) -> Result<()> {
        if self.parts.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Checkpoint(format!(
                "{} parts of the state left over after every operator read its own",
                self.parts.len()
            )))
        }
    }
}

/// A part of the state that does not fit what reads it: `what` names the part.
pub fn unfit(what: &str, why: impl std::fmt::Display) -> EngineError {
    EngineError::Checkpoint(format!("{what} does not fit the query: {why}"))
}

/// Checks that `batch` has the columns of `schema`: as many, of the same types.
pub fn expect_schema(batch: &RecordBatch, schema: &Schema, what: &str) -> Result<()> {
    expect_types(
        batch.columns(),
        schema.fields().iter().map(|f| f.data_type()),
        what,
    )
}

/// Checks that `columns` are as many as `types` and of those types (the state of an accumulator
/// against its state fields, key columns against the key schema).
pub fn expect_types<'a>(
    columns: &[ArrayRef],
    types: impl ExactSizeIterator<Item = &'a DataType>,
    what: &str,
) -> Result<()> {
    if columns.len() != types.len() {
        return Err(unfit(
            what,
            format!("{} columns where {} are read", columns.len(), types.len()),
        ));
    }
    for (i, (c, t)) in columns.iter().zip(types).enumerate() {
        if !c.data_type().equals_datatype(t) {
            return Err(unfit(
                what,
                format!("column {} is {}, not {t}", i + 1, c.data_type()),
            ));
        }
    }
    Ok(())
}

/// Checks that `batch` has `rows` rows.
pub fn expect_rows(batch: &RecordBatch, rows: usize, what: &str) -> Result<()> {
    if batch.num_rows() != rows {
        return Err(unfit(
            what,
            format!("{} rows where {rows} are read", batch.num_rows()),
        ));
    }
    Ok(())
}

/// Column `i` of `batch`, which must be of primitive type `T`.
pub fn primitive_column<'a, T: datafusion::arrow::datatypes::ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    i: usize,
    what: &str,
) -> Result<&'a datafusion::arrow::array::PrimitiveArray<T>> {
    batch
        .columns()
        .get(i)
        .and_then(|c| c.as_primitive_opt::<T>())
        .ok_or_else(|| unfit(what, format!("column {} is not {}", i + 1, T::DATA_TYPE)))
}

/// Values of one type as a column; `None` when there are none (an empty column has no type).
pub fn scalars_column(values: Vec<ScalarValue>) -> Result<Option<ArrayRef>> {
    if values.is_empty() {
        return Ok(None);
    }
    Ok(Some(ScalarValue::iter_to_array(values)?))
}

/// Keys in the row format (comparable bytes) as a column.
pub fn key_bytes_column<'a>(keys: impl Iterator<Item = &'a [u8]>) -> ArrayRef {
    Arc::new(keys.map(Some).collect::<BinaryArray>())
}

/// The first column of `batch` read back as the key bytes [`key_bytes_column`] wrote.
pub fn key_bytes(batch: &RecordBatch, what: &str) -> Result<Vec<Box<[u8]>>> {
    let keys = batch
        .columns()
        .first()
        .and_then(|c| c.as_binary_opt::<i32>())
        .ok_or_else(|| unfit(what, "its first column is not the keys"))?;
    Ok(keys
        .iter()
        .map(|k| Box::from(k.unwrap_or_default()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    #[test]
    fn parts_come_back_in_order_and_damage_is_an_error() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let rows =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let mut w = StateWriter::new();
        w.batch(rows.clone());
        w.json(&(7u64, "seven")).unwrap();
        let bytes = w.encode().unwrap();

        let mut r = StateReader::decode(&bytes).unwrap();
        assert_eq!(r.batch().unwrap(), rows);
        assert_eq!(r.json::<(u64, String)>().unwrap(), (7, "seven".to_string()));
        r.finish().unwrap();

        for cut in [0, 5, 20, bytes.len() - 1] {
            assert!(StateReader::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut other = bytes.clone();
        other[9] = STATE_FORMAT as u8 + 1;
        let e = StateReader::decode(&other).err().unwrap().to_string();
        assert!(
            e.contains(&format!("state format {}", STATE_FORMAT + 1)),
            "{e}"
        );
        let mut r = StateReader::decode(&bytes).unwrap();
        assert!(r.json::<u64>().is_err(), "rows read as JSON");
    }
}
