//! Rows held until the watermark passes them, so an operator can take them in event-time order.

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;

use super::event_times;
use crate::checkpoint::{StateReader, StateWriter, expect_schema};
use crate::error::Result;
use crate::time::{END_OF_TIME, Millis};

/// Batches waiting for the watermark, each with its oldest and newest event time, so that taking
/// the ready rows touches only the batches that hold some (input arrives roughly in time order).
pub struct EventTimeBuffer {
    /// The schema of the rows held (a pipeline batch's, with the event time last).
    schema: SchemaRef,
    batches: Vec<(RecordBatch, Millis, Millis)>,
    rows: usize,
}

impl EventTimeBuffer {
    pub fn new(schema: SchemaRef) -> Self {
        Self {
            schema,
            batches: Vec::new(),
            rows: 0,
        }
    }

    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        let times = event_times(&batch)?;
        let (min, max) = times
            .iter()
            .fold((Millis::MAX, Millis::MIN), |(lo, hi), &t| {
                (lo.min(t), hi.max(t))
            });
        self.rows += batch.num_rows();
        self.batches.push((batch, min, max));
        Ok(())
    }

    /// Writes the held batches into a checkpoint.
    pub fn snapshot(&self, state: &mut StateWriter) -> Result<()> {
        state.json(&self.batches.len())?;
        for (b, _, _) in &self.batches {
            state.batch(b.clone());
        }
        Ok(())
    }

    /// Takes back what [`Self::snapshot`] wrote.
    pub fn restore(&mut self, state: &mut StateReader) -> Result<()> {
        let n: usize = state.json()?;
        for _ in 0..n {
            let batch = state.batch()?;
            expect_schema(&batch, &self.schema, "rows waiting for the watermark")?;
            self.push(batch)?;
        }
        Ok(())
    }

    /// The schema of the rows held.
    pub fn schema(&self) -> &datafusion::arrow::datatypes::Schema {
        &self.schema
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Memory of the batches held.
    pub fn bytes(&self) -> usize {
        self.batches
            .iter()
            .map(|(b, _, _)| b.get_array_memory_size())
            .sum()
    }

    /// Removes and returns the rows older than `watermark` (all of them at the end of time).
    pub fn take_ready(&mut self, watermark: Millis) -> Result<Option<RecordBatch>> {
        let Some(schema) = self.batches.first().map(|(b, _, _)| b.schema()) else {
            return Ok(None);
        };
        let mut ready = Vec::new();
        let mut waiting = Vec::with_capacity(self.batches.len());
        for (batch, min, max) in self.batches.drain(..) {
            if watermark == END_OF_TIME || max < watermark {
                ready.push(batch);
            } else if min >= watermark {
                waiting.push((batch, min, max));
            } else {
                let times = event_times(&batch)?;
                let now: BooleanArray = times.iter().map(|&t| Some(t < watermark)).collect();
                let later: BooleanArray = times.iter().map(|&t| Some(t >= watermark)).collect();
                let (lo, hi) = times
                    .iter()
                    .filter(|&&t| t >= watermark)
                    .fold((Millis::MAX, Millis::MIN), |(lo, hi), &t| {
                        (lo.min(t), hi.max(t))
                    });
                ready.push(filter_record_batch(&batch, &now)?);
                waiting.push((filter_record_batch(&batch, &later)?, lo, hi));
            }
        }
        self.batches = waiting;
        self.rows = self.batches.iter().map(|(b, _, _)| b.num_rows()).sum();
        if ready.iter().all(|b| b.num_rows() == 0) {
            return Ok(None);
        }
        Ok(Some(concat_batches(&schema, &ready)?))
    }
}
