//! Lookup joins: each row of a stream meets the rows of a reference table with the same key
//! (`JOIN limits l ON r.device_id = l.device_id`), as the table is at that moment. The table is
//! reloaded now and then; a join sees each load whole, and indexes it once per load.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, filter_record_batch, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::RowConverter;
use datafusion::physical_expr::PhysicalExpr;

use super::Operator;
use crate::error::{EngineError, Result};
use crate::message::Message;

/// The current rows of a reference table, replaced as a whole at each load.
#[derive(Default)]
pub struct TableSnapshot {
    current: RwLock<Option<(u64, RecordBatch)>>,
}

impl TableSnapshot {
    /// Makes `rows` the table's contents.
    pub fn replace(&self, rows: RecordBatch) {
        if let Ok(mut current) = self.current.write() {
            let version = current.as_ref().map_or(1, |(v, _)| v + 1);
            *current = Some((version, rows));
        }
    }

    /// The contents and their version (which changes at every load), once loaded.
    pub fn current(&self) -> Option<(u64, RecordBatch)> {
        self.current.read().ok().and_then(|c| c.clone())
    }
}

/// How a lookup join reads its table: the columns the query uses, and the predicates on them.
pub struct TableRead {
    pub name: String,
    pub snapshot: Arc<TableSnapshot>,
    pub projection: Vec<usize>,
    /// Over the projected columns.
    pub filters: Vec<Arc<dyn PhysicalExpr>>,
    /// The join keys, over the projected columns.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
}

/// One load of the table, indexed by key.
struct Indexed {
    version: u64,
    rows: RecordBatch,
    by_key: HashMap<Box<[u8]>, Vec<u32>>,
}

pub struct LookupJoin {
    table: TableRead,
    /// The join keys over the stream's columns.
    stream_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The stream is the left input of the join (its columns come first).
    stream_first: bool,
    /// Stream rows without a match are kept, with NULL table columns (a LEFT join).
    keep_unmatched: bool,
    /// The rest of the ON condition, over the joined columns.
    filter: Option<Arc<dyn PhysicalExpr>>,
    /// Output schema, with the event-time column last.
    schema: SchemaRef,
    indexed: Option<Indexed>,
    converter: Option<RowConverter>,
}

impl LookupJoin {
    pub fn new(
        table: TableRead,
        stream_keys: Vec<Arc<dyn PhysicalExpr>>,
        stream_first: bool,
        keep_unmatched: bool,
        filter: Option<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    ) -> Self {
        Self {
            table,
            stream_keys,
            stream_first,
            keep_unmatched,
            filter,
            schema,
            indexed: None,
            converter: None,
        }
    }

    /// Re-indexes the table when a new load is there.
    fn refresh(&mut self, key_types: &[ArrayRef]) -> Result<()> {
        let Some((version, rows)) = self.table.snapshot.current() else {
            return Err(EngineError::Internal(format!(
                "table {} is not loaded",
                self.table.name
            )));
        };
        if self.indexed.as_ref().is_some_and(|i| i.version == version) {
            return Ok(());
        }
        let mut rows = rows.project(&self.table.projection)?;
        for f in &self.table.filters {
            let keep = f.evaluate(&rows)?.into_array(rows.num_rows())?;
            let keep = keep
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| EngineError::Internal("a table filter is not boolean".into()))?;
            rows = filter_record_batch(&rows, keep)?;
        }
        let n = rows.num_rows();
        let keys = self
            .table
            .keys
            .iter()
            .zip(key_types)
            .map(|(k, like)| {
                let a = k.evaluate(&rows)?.into_array(n)?;
                Ok(cast(&a, like.data_type())?)
            })
            .collect::<Result<Vec<_>>>()?;
        let converted =
            super::row_converter(&mut self.converter, key_types)?.convert_columns(&keys)?;
        let mut by_key: HashMap<Box<[u8]>, Vec<u32>> = HashMap::with_capacity(n);
        for j in 0..n {
            if keys.iter().any(|k| k.is_null(j)) {
                continue;
            }
            by_key
                .entry(converted.row(j).data().into())
                .or_default()
                .push(j as u32);
        }
        self.indexed = Some(Indexed {
            version,
            rows,
            by_key,
        });
        Ok(())
    }

    /// The joined rows for pairs of (stream row, table row or none).
    fn joined(
        &self,
        stream: &RecordBatch,
        table: &RecordBatch,
        stream_rows: &UInt32Array,
        table_rows: &UInt32Array,
    ) -> Result<RecordBatch> {
        let visible = stream.num_columns() - 1;
        let pick =
            |a: &ArrayRef, idx: &UInt32Array| -> Result<ArrayRef> { Ok(take(a, idx, None)?) };
        let stream_cols = stream.columns()[..visible]
            .iter()
            .map(|a| pick(a, stream_rows))
            .collect::<Result<Vec<_>>>()?;
        let table_cols = table
            .columns()
            .iter()
            .map(|a| pick(a, table_rows))
            .collect::<Result<Vec<_>>>()?;
        let mut columns = if self.stream_first {
            [stream_cols, table_cols].concat()
        } else {
            [table_cols, stream_cols].concat()
        };
        columns.push(pick(stream.column(visible), stream_rows)?);
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

impl Operator for LookupJoin {
    fn keeps_state(&self) -> bool {
        false
    }

    fn snapshot(&mut self, _state: &mut crate::checkpoint::StateWriter) -> Result<()> {
        Ok(())
    }

    fn restore(&mut self, _state: &mut crate::checkpoint::StateReader) -> Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        let keys: Vec<String> = self.stream_keys.iter().map(|k| k.to_string()).collect();
        format!(
            "lookup join with table {} on [{}]{}{}",
            self.table.name,
            keys.join(", "),
            if self.keep_unmatched {
                ", unmatched rows kept"
            } else {
                ""
            },
            self.filter
                .as_ref()
                .map(|f| format!(", where {f}"))
                .unwrap_or_default()
        )
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Vec<Message>) -> Result<()> {
        let n = batch.num_rows();
        let keys = self
            .stream_keys
            .iter()
            .map(|k| Ok(k.evaluate(&batch)?.into_array(n)?))
            .collect::<Result<Vec<_>>>()?;
        self.refresh(&keys)?;
        let converted = super::row_converter(&mut self.converter, &keys)?.convert_columns(&keys)?;
        let indexed = self
            .indexed
            .as_ref()
            .ok_or_else(|| EngineError::Internal("table not indexed".into()))?;
        let mut stream_rows = Vec::with_capacity(n);
        let mut table_rows = Vec::with_capacity(n);
        for i in 0..n {
            if keys.iter().any(|k| k.is_null(i)) {
                continue;
            }
            if let Some(matches) = indexed.by_key.get(converted.row(i).data()) {
                for &j in matches {
                    stream_rows.push(i as u32);
                    table_rows.push(j);
                }
            }
        }
        let stream_idx = UInt32Array::from(stream_rows);
        let table_idx = UInt32Array::from(table_rows);
        let mut joined = self.joined(&batch, &indexed.rows, &stream_idx, &table_idx)?;
        if let Some(f) = &self.filter {
            let keep = f.evaluate(&joined)?.into_array(joined.num_rows())?;
            let keep = keep
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| EngineError::Internal("a join filter is not boolean".into()))?;
            // NULL (an unknown comparison) does not join.
            let keep = if keep.null_count() > 0 {
                datafusion::arrow::compute::prep_null_mask_filter(keep)
            } else {
                keep.clone()
            };
            let kept_stream: Vec<u32> = stream_idx
                .values()
                .iter()
                .zip(keep.values().iter())
                .filter(|(_, k)| *k)
                .map(|(i, _)| *i)
                .collect();
            joined = filter_record_batch(&joined, &keep)?;
            if self.keep_unmatched {
                let mut matched = vec![false; n];
                for i in kept_stream {
                    matched[i as usize] = true;
                }
                out.push(Message::Batch(joined));
                joined = self.unmatched(&batch, &indexed.rows, &matched)?;
            }
        } else if self.keep_unmatched {
            let mut matched = vec![false; n];
            for &i in stream_idx.values().iter() {
                matched[i as usize] = true;
            }
            out.push(Message::Batch(joined));
            joined = self.unmatched(&batch, &indexed.rows, &matched)?;
        }
        out.push(Message::Batch(joined));
        Ok(())
    }
}

impl LookupJoin {
    /// Stream rows that met no table row, with NULL table columns.
    fn unmatched(
        &self,
        stream: &RecordBatch,
        table: &RecordBatch,
        matched: &[bool],
    ) -> Result<RecordBatch> {
        let rows: Vec<u32> = (0..stream.num_rows() as u32)
            .filter(|&i| !matched[i as usize])
            .collect();
        let none = UInt32Array::from(vec![None::<u32>; rows.len()]);
        self.joined(stream, table, &UInt32Array::from(rows), &none)
    }
}
