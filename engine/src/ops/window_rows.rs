//! The rows of a window table function (`TUMBLE`, `HOP`, `CUMULATE` read without aggregating),
//! held until the watermark passes their window's end and then handed on window by window: each
//! window's rows together in one batch, with the window's last millisecond (`window_time`) as
//! their event time. What ranks or joins a window's rows (window Top-N, deduplication, window
//! joins) sees every row of the window at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, TimestampMillisecondArray, UInt32Array,
};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{SchemaRef, TimestampMillisecondType};

use super::Operator;
use crate::checkpoint::{StateReader, StateWriter, expect_schema};
use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::time::Millis;

pub struct WindowRows {
    /// The `window_end` column.
    end: usize,
    /// The rows' schema, with the event time last.
    schema: SchemaRef,
    /// Rows by the end of their window.
    windows: BTreeMap<Millis, Vec<RecordBatch>>,
    rows: usize,
}

impl WindowRows {
    pub fn new(end: usize, schema: SchemaRef) -> Self {
        Self {
            end,
            schema,
            windows: BTreeMap::new(),
            rows: 0,
        }
    }

    fn hold(&mut self, end: Millis, batch: RecordBatch) {
        self.rows += batch.num_rows();
        self.windows.entry(end).or_default().push(batch);
    }

    /// The rows of the window ending at `end`, with `end - 1ms` as their event time.
    fn release(&self, end: Millis, batches: Vec<RecordBatch>) -> Result<RecordBatch> {
        let batch = concat_batches(&self.schema, &batches)?;
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        if let Some(time) = columns.last_mut() {
            *time = Arc::new(TimestampMillisecondArray::from_value(
                end - 1,
                batch.num_rows(),
            ));
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// The rows of `batch` by the end of their window (column `end`), in the order of the ends: the
/// batch itself when all its rows are of one window.
pub(super) fn split_by_window_end(
    batch: RecordBatch,
    end: usize,
) -> Result<Vec<(Millis, RecordBatch)>> {
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let ends = batch
        .column(end)
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or_else(|| EngineError::Internal("window_end is not a timestamp".into()))?;
    if ends.null_count() > 0 {
        return Err(EngineError::Internal("a row without its window".into()));
    }
    let values = ends.values();
    let first = values[0];
    if values.iter().all(|&e| e == first) {
        return Ok(vec![(first, batch)]);
    }
    let mut by_end: BTreeMap<Millis, Vec<u32>> = BTreeMap::new();
    for (i, &e) in values.iter().enumerate() {
        by_end.entry(e).or_default().push(i as u32);
    }
    by_end
        .into_iter()
        .map(|(end, rows)| Ok((end, take_record_batch(&batch, &UInt32Array::from(rows))?)))
        .collect()
}

impl Operator for WindowRows {
    fn describe(&self) -> String {
        "window rows (each window's rows held until the watermark passes its end)".to_string()
    }

    fn state_rows(&self) -> usize {
        self.rows
    }

    fn state_bytes(&self) -> usize {
        self.windows
            .values()
            .flatten()
            .map(RecordBatch::get_array_memory_size)
            .sum()
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Vec<Message>) -> Result<()> {
        for (end, rows) in split_by_window_end(batch, self.end)? {
            self.hold(end, rows);
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Millis, out: &mut Vec<Message>) -> Result<()> {
        while let Some(entry) = self.windows.first_entry() {
            let end = *entry.key();
            if end > watermark {
                break;
            }
            let batches = entry.remove();
            self.rows -= batches.iter().map(RecordBatch::num_rows).sum::<usize>();
            out.push(Message::Batch(self.release(end, batches)?));
        }
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        let held: Vec<(Millis, usize)> = self.windows.iter().map(|(e, b)| (*e, b.len())).collect();
        state.json(&held)?;
        for batch in self.windows.values().flatten() {
            state.batch(batch.clone());
        }
        Ok(())
    }

    fn restore(&mut self, state: &mut StateReader) -> Result<()> {
        let held: Vec<(Millis, usize)> = state.json()?;
        for (end, n) in held {
            for _ in 0..n {
                let batch = state.batch()?;
                expect_schema(
                    &batch,
                    &self.schema,
                    "window rows waiting for their window's end",
                )?;
                self.hold(end, batch);
            }
        }
        Ok(())
    }
}
