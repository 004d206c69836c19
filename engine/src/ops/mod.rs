//! Operators: what a continuous query does to the batches that flow through it.
//!
//! Inside a pipeline every batch carries its rows' event time as its last column, named
//! [`EVENT_TIME_COLUMN`] (milliseconds): the expressions of the query address the columns before
//! it, row-level operators keep it aligned with the rows, and window operators read it.

mod accumulators;
mod filter;
mod project;
mod scan;
mod window_aggregate;

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::TimestampMillisecondType;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub use accumulators::AggregateCall;
pub use filter::Filter;
pub use project::Project;
pub use scan::{ScanColumn, SourceScan, WindowColumns};
pub use window_aggregate::{OutputColumn, WindowAggregate, WindowKind, show_duration};

use crate::error::{EngineError, Result};
use crate::runtime::Message;
use crate::time::{END_OF_TIME, Millis};

/// The hidden last column of every batch inside a pipeline.
pub const EVENT_TIME_COLUMN: &str = "_timestamp";

/// One step of a query.
pub trait Operator: Send {
    /// One line for the plan `eddy check` prints.
    fn describe(&self) -> String;

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Vec<Message>) -> Result<()>;

    /// The watermark passed `watermark`; stateful operators emit what it completes.
    fn process_watermark(&mut self, watermark: Millis, out: &mut Vec<Message>) -> Result<()> {
        out.push(Message::Watermark(watermark));
        Ok(())
    }
}

/// A query's operators, run one after the other in the query's task.
pub struct Pipeline {
    operators: Vec<Box<dyn Operator>>,
}

impl Pipeline {
    pub fn new(operators: Vec<Box<dyn Operator>>) -> Self {
        Self { operators }
    }

    pub fn operators(&self) -> &[Box<dyn Operator>] {
        &self.operators
    }

    /// Runs one message through every operator; what comes out of the last one lands in `out`.
    pub fn push(&mut self, message: Message, out: &mut Vec<Message>) -> Result<()> {
        let mut current = vec![message];
        for op in &mut self.operators {
            let mut next = Vec::with_capacity(current.len());
            for m in current {
                match m {
                    Message::Batch(b) if b.num_rows() == 0 => {}
                    Message::Batch(b) => op.process_batch(b, &mut next)?,
                    Message::Watermark(w) => op.process_watermark(w, &mut next)?,
                    Message::End => {
                        op.process_watermark(END_OF_TIME, &mut next)?;
                        next.push(Message::End);
                    }
                }
            }
            current = next;
        }
        out.extend(current);
        Ok(())
    }
}

/// The field of the hidden event-time column.
pub fn event_time_field() -> Field {
    Field::new(
        EVENT_TIME_COLUMN,
        DataType::Timestamp(TimeUnit::Millisecond, None),
        false,
    )
}

/// `visible` plus the hidden event-time column: the schema of batches inside a pipeline.
pub fn with_event_time(visible: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = visible
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(event_time_field());
    Arc::new(Schema::new(fields))
}

/// The event times of a pipeline batch.
pub fn event_times(batch: &RecordBatch) -> Result<&[Millis]> {
    let last = batch
        .columns()
        .last()
        .ok_or_else(|| EngineError::Internal("a pipeline batch without columns".into()))?;
    last.as_primitive_opt::<TimestampMillisecondType>()
        .map(|a| a.values().as_ref())
        .ok_or_else(|| EngineError::Internal("a pipeline batch without event time".into()))
}

/// Drops the hidden event-time column: what sinks receive.
pub fn without_event_time(batch: &RecordBatch) -> Result<RecordBatch> {
    let n = batch.num_columns().saturating_sub(1);
    Ok(batch.project(&(0..n).collect::<Vec<_>>())?)
}
