//! The first step of every query: picks the columns the query reads from a source's batch, adds
//! the window columns of a `TUMBLE`/`HOP` call, and attaches the event time.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMillisecondArray, new_null_array,
};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::compute::kernels::arity::unary;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampMillisecondType};

use super::Operator;
use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::time::{Millis, align_at};

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
    /// Windows of `size` starting at `offset` (and every `size` from it).
    Tumble { size: Millis, offset: Millis },
    /// A hopping window: a row is in several windows; the window aggregate that follows fills
    /// the columns, the scan leaves them null.
    Placeholder,
}

/// Where a scan takes its rows' event time from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanTime {
    /// A column of the input: a source's WATERMARK column, or the time column a window over a
    /// view names. Rows of a view older than the watermark are late and dropped.
    Column(usize),
    /// The time the batch arrives (a source without WATERMARK).
    Arrival,
    /// The event time the input carries as its last column (a view's rows).
    Carried,
}

pub struct SourceScan {
    source: String,
    columns: Vec<ScanColumn>,
    event_time: ScanTime,
    /// Drop rows whose event time is older than the watermark (set for views; a source's
    /// context drops late rows before they reach the queries).
    drop_late: bool,
    watermark: Option<Millis>,
    window: Option<WindowColumns>,
    /// Output schema, with the event-time column last.
    schema: SchemaRef,
}

impl SourceScan {
    pub fn new(
        source: &str,
        columns: Vec<ScanColumn>,
        event_time: ScanTime,
        drop_late: bool,
        window: Option<WindowColumns>,
        schema: SchemaRef,
    ) -> Self {
        Self {
            source: source.to_string(),
            columns,
            event_time,
            drop_late,
            watermark: None,
            window,
            schema,
        }
    }
}

impl Operator for SourceScan {
    fn snapshot(&mut self, state: &mut crate::checkpoint::StateWriter) -> Result<()> {
        state.json(&self.watermark)
    }

    fn restore(&mut self, state: &mut crate::checkpoint::StateReader) -> Result<()> {
        self.watermark = state.json()?;
        Ok(())
    }

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

    fn process_watermark(&mut self, watermark: Millis, out: &mut Vec<Message>) -> Result<()> {
        self.remember(watermark);
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Vec<Message>) -> Result<()> {
        let mut batch = batch;
        let mut n = batch.num_rows();
        let time: ArrayRef = match self.event_time {
            ScanTime::Column(i) => {
                if let (true, Some(w)) = (self.drop_late, self.watermark) {
                    let t = batch
                        .column(i)
                        .as_primitive_opt::<TimestampMillisecondType>()
                        .ok_or_else(|| EngineError::Internal("event time is not in ms".into()))?;
                    let on_time: BooleanArray =
                        t.iter().map(|t| Some(t.is_some_and(|t| t >= w))).collect();
                    if on_time.true_count() < n {
                        batch = filter_record_batch(&batch, &on_time)?;
                        n = batch.num_rows();
                        if n == 0 {
                            return Ok(());
                        }
                    }
                }
                Arc::clone(batch.column(i))
            }
            ScanTime::Arrival => Arc::new(TimestampMillisecondArray::from_value(
                crate::time::now_millis(),
                n,
            )),
            ScanTime::Carried => Arc::clone(
                batch
                    .columns()
                    .last()
                    .ok_or_else(|| EngineError::Internal("a view batch without columns".into()))?,
            ),
        };
        let (start, end): (Option<ArrayRef>, Option<ArrayRef>) = match self.window {
            None => (None, None),
            Some(WindowColumns::Tumble { size, offset }) => {
                let t = time
                    .as_primitive_opt::<TimestampMillisecondType>()
                    .ok_or_else(|| EngineError::Internal("event time is not in ms".into()))?;
                let start: TimestampMillisecondArray = unary(t, |t| align_at(t, size, offset));
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

impl SourceScan {
    fn remember(&mut self, watermark: Millis) {
        self.watermark = Some(self.watermark.map_or(watermark, |w| w.max(watermark)));
    }
}

fn no_window() -> EngineError {
    EngineError::Internal("window column read from a scan without a window".into())
}
