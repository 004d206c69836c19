//! The first step of every query: picks the columns the query reads from a source's batch, adds
//! the window columns of a `TUMBLE`/`HOP` call, and attaches the event time.

use std::sync::Arc;

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMillisecondArray, new_null_array,
};
use datafusion::arrow::compute::kernels::arity::unary;
use datafusion::arrow::compute::{filter_record_batch, take};
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
    /// `window_end - 1ms`.
    WindowTime,
}

/// How the window columns of a scan get their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowColumns {
    /// A tumbling window: each row is in exactly one window, so the columns are computed.
    /// Windows of `size` starting at `offset` (and every `size` from it).
    Tumble { size: Millis, offset: Millis },
    /// The rows of a `HOP` table function read without aggregating them: each row once per
    /// window it is in (`size / slide` of them), in the order of their starts.
    Hop {
        size: Millis,
        slide: Millis,
        offset: Millis,
    },
    /// The rows of a `CUMULATE` table function read without aggregating them: each row once per
    /// window of its period that ends after it.
    Cumulate {
        step: Millis,
        size: Millis,
        offset: Millis,
    },
    /// A hopping, cumulating or session window aggregated later: a row is in several windows (or
    /// its session is not known yet); the aggregate fills the columns, the scan leaves them null.
    Placeholder,
}

impl WindowColumns {
    /// The windows `[start, end)` of a row at `t`, in the order of their starts (then ends).
    fn windows_of(&self, t: Millis, mut each: impl FnMut(Millis, Millis)) {
        match *self {
            Self::Tumble { size, offset } => {
                let start = align_at(t, size, offset);
                each(start, start + size);
            }
            Self::Hop {
                size,
                slide,
                offset,
            } => {
                let last = align_at(t, slide, offset);
                let mut start = last;
                while start - slide + size > t {
                    start -= slide;
                }
                while start <= last {
                    each(start, start + size);
                    start += slide;
                }
            }
            Self::Cumulate { step, size, offset } => {
                let period = align_at(t, size, offset);
                let mut end = align_at(t, step, offset) + step;
                while end <= period + size {
                    each(period, end);
                    end += step;
                }
            }
            Self::Placeholder => {}
        }
    }
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
        let mut time: ArrayRef = match self.event_time {
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
        let (start, end, last): (Option<ArrayRef>, Option<ArrayRef>, Option<ArrayRef>) =
            match self.window {
                None => (None, None, None),
                Some(WindowColumns::Placeholder) => {
                    let null = new_null_array(&DataType::Timestamp(TimeUnit::Millisecond, None), n);
                    (Some(Arc::clone(&null)), Some(Arc::clone(&null)), Some(null))
                }
                Some(WindowColumns::Tumble { size, offset }) => {
                    let t = time
                        .as_primitive_opt::<TimestampMillisecondType>()
                        .ok_or_else(|| EngineError::Internal("event time is not in ms".into()))?;
                    let start: TimestampMillisecondArray = unary(t, |t| align_at(t, size, offset));
                    let end: TimestampMillisecondArray = unary(&start, |s| s + size);
                    let last: TimestampMillisecondArray = unary(&start, |s| s + size - 1);
                    (
                        Some(Arc::new(start)),
                        Some(Arc::new(end)),
                        Some(Arc::new(last)),
                    )
                }
                Some(windows) => {
                    let t = time
                        .as_primitive_opt::<TimestampMillisecondType>()
                        .ok_or_else(|| EngineError::Internal("event time is not in ms".into()))?;
                    let mut rows = Vec::with_capacity(n);
                    let mut starts = Vec::with_capacity(n);
                    let mut ends = Vec::with_capacity(n);
                    for (i, t) in t.values().iter().enumerate() {
                        windows.windows_of(*t, |s, e| {
                            rows.push(i as u32);
                            starts.push(s);
                            ends.push(e);
                        });
                    }
                    if rows.len() != n {
                        // Each row once per window: the rows repeated, in window order.
                        let indices = UInt32Array::from(rows);
                        batch = RecordBatch::try_new(
                            batch.schema(),
                            batch
                                .columns()
                                .iter()
                                .map(|c| take(c, &indices, None))
                                .collect::<std::result::Result<_, _>>()?,
                        )?;
                        time = take(&time, &indices, None)?;
                    }
                    let last: Vec<Millis> = ends.iter().map(|e| e - 1).collect();
                    (
                        Some(Arc::new(TimestampMillisecondArray::from(starts))),
                        Some(Arc::new(TimestampMillisecondArray::from(ends))),
                        Some(Arc::new(TimestampMillisecondArray::from(last))),
                    )
                }
            };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.columns.len() + 1);
        for c in &self.columns {
            columns.push(match c {
                ScanColumn::Source(i) => Arc::clone(batch.column(*i)),
                ScanColumn::WindowStart => start.clone().ok_or_else(no_window)?,
                ScanColumn::WindowEnd => end.clone().ok_or_else(no_window)?,
                ScanColumn::WindowTime => last.clone().ok_or_else(no_window)?,
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
