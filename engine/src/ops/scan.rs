//! The first step of every query: picks the columns the query reads from a source's batch, adds
//! the window columns of a `TUMBLE`/`HOP` call, and attaches the event time.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, RecordBatch, TimestampMillisecondArray, new_null_array,
};
use datafusion::arrow::compute::kernels::arity::unary;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampMillisecondType};

use super::Operator;
use crate::error::{EngineError, Result};
use crate::runtime::Message;
use crate::time::{Millis, align};

/// An output column of a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanColumn {
    Source(usize),
    WindowStart,
    WindowEnd,
}

/// How the window columns of a scan get their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowColumns {
    /// A tumbling window: each row is in exactly one window, so the columns are computed.
    Tumble { size: Millis },
    /// A hopping window: a row is in several windows; the window aggregate that follows fills
    /// the columns, the scan leaves them null.
    Placeholder,
}

pub struct SourceScan {
    source: String,
    columns: Vec<ScanColumn>,
    /// The event-time column of the source; `None` takes the arrival time (processing time).
    event_time: Option<usize>,
    window: Option<WindowColumns>,
    /// Output schema, with the event-time column last.
    schema: SchemaRef,
}

impl SourceScan {
    pub fn new(
        source: &str,
        columns: Vec<ScanColumn>,
        event_time: Option<usize>,
        window: Option<WindowColumns>,
        schema: SchemaRef,
    ) -> Self {
        Self {
            source: source.to_string(),
            columns,
            event_time,
            window,
            schema,
        }
    }
}

impl Operator for SourceScan {
    fn describe(&self) -> String {
        let names: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .take(self.columns.len())
            .map(|f| f.name().as_str())
            .collect();
        format!("scan {} [{}]", self.source, names.join(", "))
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Vec<Message>) -> Result<()> {
        let n = batch.num_rows();
        let time: ArrayRef = match self.event_time {
            Some(i) => Arc::clone(batch.column(i)),
            None => Arc::new(TimestampMillisecondArray::from_value(
                crate::runtime::now_millis(),
                n,
            )),
        };
        let (start, end): (Option<ArrayRef>, Option<ArrayRef>) = match self.window {
            None => (None, None),
            Some(WindowColumns::Tumble { size }) => {
                let t = time
                    .as_primitive_opt::<TimestampMillisecondType>()
                    .ok_or_else(|| EngineError::Internal("event time is not in ms".into()))?;
                let start: TimestampMillisecondArray = unary(t, |t| align(t, size));
                let end: TimestampMillisecondArray = unary(&start, |s| s + size);
                (Some(Arc::new(start)), Some(Arc::new(end)))
            }
            Some(WindowColumns::Placeholder) => {
                let null = new_null_array(&DataType::Timestamp(TimeUnit::Millisecond, None), n);
                (Some(Arc::clone(&null)), Some(null))
            }
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.columns.len() + 1);
        for c in &self.columns {
            columns.push(match c {
                ScanColumn::Source(i) => Arc::clone(batch.column(*i)),
                ScanColumn::WindowStart => start.clone().ok_or_else(no_window)?,
                ScanColumn::WindowEnd => end.clone().ok_or_else(no_window)?,
            });
        }
        columns.push(time);
        out.push(Message::Batch(RecordBatch::try_new(
            Arc::clone(&self.schema),
            columns,
        )?));
        Ok(())
    }
}

fn no_window() -> EngineError {
    EngineError::Internal("window column read from a scan without a window".into())
}
