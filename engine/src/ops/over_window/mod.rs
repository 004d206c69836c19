//! Moving aggregates: `avg(temp) OVER (PARTITION BY device_id ORDER BY ts ROWS BETWEEN 9 PRECEDING
//! AND CURRENT ROW)`, one output row per input row.
//!
//! Rows wait in a buffer until the watermark passes them, so each key sees its rows in event-time
//! order whatever order they arrived in. Each key keeps, per aggregate, a DataFusion accumulator
//! and the rows of its current frame: a new row is added with `update_batch`, the rows that fall
//! out of the frame are removed with `retract_batch` (DataFusion's sliding accumulators, as its
//! own bounded window execution uses), so the cost per row does not grow with the frame.
//!
//! Frames that end after the current row (`... AND 2 FOLLOWING`, `LEAD`) are computed in
//! [`ahead`]: a row waits there until the end of its frame has arrived.

mod ahead;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::RowConverter;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use datafusion::arrow::array::{Int64Array, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Int64Type, UInt32Type};

use super::Operator;
use super::partitioned::Partitioned;
use super::time_buffer::EventTimeBuffer;
use crate::checkpoint::{
    StateReader, StateWriter, expect_rows, expect_types, key_bytes, key_bytes_column,
    primitive_column, scalars_column, unfit,
};
use crate::error::Result;
use crate::message::Message;
use crate::time::{END_OF_TIME, Millis};

/// Which rows before the current one an aggregate sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// `ROWS BETWEEN n PRECEDING AND CURRENT ROW`; `None` is `UNBOUNDED PRECEDING`.
    Rows(Option<u64>),
    /// `RANGE BETWEEN INTERVAL ... PRECEDING AND CURRENT ROW` (milliseconds of event time), rows
    /// with the same time as the current one included; `None` is `UNBOUNDED PRECEDING`.
    Range(Option<Millis>),
}

impl Frame {
    fn bounded(&self) -> bool {
        matches!(self, Frame::Rows(Some(_)) | Frame::Range(Some(_)))
    }

    fn describe(&self) -> String {
        match self {
            Frame::Rows(Some(n)) => format!("ROWS {n} PRECEDING"),
            Frame::Rows(None) | Frame::Range(None) => "UNBOUNDED PRECEDING".into(),
            Frame::Range(Some(ms)) => {
                format!("RANGE {} PRECEDING", crate::time::show_duration(*ms))
            }
        }
    }
}

/// Where a frame ends, after the current row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Following {
    /// `CURRENT ROW`.
    #[default]
    None,
    /// `n FOLLOWING` in a ROWS frame: a row's result is known once `n` more rows of its key are.
    Rows(u64),
    /// `INTERVAL ... FOLLOWING` in a RANGE frame: known once the watermark passes its time plus
    /// this.
    Range(Millis),
}

/// One `aggregate(...) OVER (...)` of the operator.
pub struct OverCall {
    pub expr: Arc<AggregateFunctionExpr>,
    /// The rows before the current one the frame holds. With rows that follow, a ROWS frame is
    /// written here with the following rows added (`2 PRECEDING AND 1 FOLLOWING` slides as `3
    /// PRECEDING` ending at the frame's last row); a RANGE frame as written.
    pub frame: Frame,
    pub following: Following,
    /// A ROWS frame that ends `n PRECEDING` (`EXCLUDE CURRENT ROW` is `1`): a row enters the
    /// frame, as written in `frame`, `n` rows later; 0 for frames ending at the current row.
    pub ends_before: u64,
}

impl OverCall {
    /// An accumulator that can slide when the frame is bounded; fails when the aggregate cannot
    /// retract rows (checked when the query is planned).
    pub fn new_accumulator(&self) -> datafusion::error::Result<Box<dyn Accumulator>> {
        if !self.frame.bounded() {
            return self.expr.create_accumulator();
        }
        let acc = self.expr.create_sliding_accumulator()?;
        if !acc.supports_retract_batch() {
            return Err(datafusion::error::DataFusionError::NotImplemented(format!(
                "{} cannot remove rows from its frame; use it with UNBOUNDED PRECEDING",
                self.expr.name()
            )));
        }
        Ok(acc)
    }
}

/// A key's state for one call: the accumulator over the current frame and the frame's rows.
struct CallState {
    acc: Box<dyn Accumulator>,
    /// The rows in the frame (their time and argument values); empty for unbounded frames.
    rows: VecDeque<(Millis, Vec<ScalarValue>)>,
    /// How many of the key's waiting rows (the last ones) this call has no result for yet.
    unresolved: usize,
    /// The newest rows (time and argument values), not yet in a frame that ends before the
    /// current row.
    delayed: VecDeque<(Millis, Vec<ScalarValue>)>,
}

struct KeyState {
    calls: Vec<CallState>,
    last: Millis,
    /// Rows waiting for the end of their frames (frames with FOLLOWING only), oldest first.
    pending: VecDeque<ahead::Pending>,
}

pub struct OverWindow {
    partition: Vec<Arc<dyn PhysicalExpr>>,
    calls: Vec<OverCall>,
    /// Output schema: the input's columns, one column per call, then the event time.
    schema: SchemaRef,
    buffer: EventTimeBuffer,
    keys: HashMap<Box<[u8]>, KeyState>,
    converter: Option<RowConverter>,
    /// The longest RANGE frame, if every frame is a bounded RANGE: keys idle longer are released.
    release_after: Option<Millis>,
    last_sweep: Millis,
    /// Whether a frame ends after the current row: rows then wait in their keys' `pending`.
    lookahead: bool,
    /// The keys with waiting rows.
    waiting: std::collections::HashSet<Box<[u8]>>,
    /// The watermark given on (held back by the rows waiting).
    emitted_watermark: Option<Millis>,
}

impl OverWindow {
    /// `input` is the schema of the rows the operator takes, `schema` of those it gives.
    pub fn new(
        partition: Vec<Arc<dyn PhysicalExpr>>,
        calls: Vec<OverCall>,
        input: SchemaRef,
        schema: SchemaRef,
    ) -> Self {
        let release_after = calls
            .iter()
            .map(|c| match (c.frame, c.following) {
                (Frame::Range(Some(ms)), Following::None) => Some(ms),
                (Frame::Range(Some(ms)), Following::Range(f)) => Some(ms.saturating_add(f)),
                _ => None,
            })
            .try_fold(0, |hi: Millis, ms| ms.map(|ms| hi.max(ms)));
        let lookahead = calls.iter().any(|c| c.following != Following::None);
        Self {
            partition,
            calls,
            schema,
            buffer: EventTimeBuffer::new(input),
            keys: HashMap::new(),
            converter: None,
            release_after,
            last_sweep: Millis::MIN,
            lookahead,
            waiting: std::collections::HashSet::new(),
            emitted_watermark: None,
        }
    }

    /// A key seen for the first time: empty frames, fresh accumulators.
    fn new_key(&self, last: Millis) -> Result<KeyState> {
        let calls = self
            .calls
            .iter()
            .map(|c| {
                Ok(CallState {
                    acc: c.new_accumulator()?,
                    rows: VecDeque::new(),
                    unresolved: 0,
                    delayed: VecDeque::new(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(KeyState {
            calls,
            last,
            pending: VecDeque::new(),
        })
    }

    /// Keys held, and rows buffered until the watermark passes them.
    pub fn state_size(&self) -> (usize, usize) {
        (self.keys.len(), self.buffer.rows())
    }

    /// Computes every call for `batch` (rows all older than the watermark), in key and time order.
    fn evaluate(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let keys: Vec<ArrayRef> = self
            .partition
            .iter()
            .map(|k| Ok(k.evaluate(&batch)?.into_array(n)?))
            .collect::<Result<_>>()?;
        let time_column = batch.num_columns() - 1;
        let sorted = Partitioned::sort(&batch, keys, &mut self.converter)?;
        let batch = sorted.batch.clone();
        let times = sorted.times.clone();
        let args: Vec<Vec<ArrayRef>> = self
            .calls
            .iter()
            .map(|c| {
                c.expr
                    .expressions()
                    .iter()
                    .map(|e| Ok(e.evaluate(&batch)?.into_array(n)?))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        let mut results: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(n); self.calls.len()];

        for (start, end) in sorted.runs() {
            let key = sorted.key(start);
            let state = match self.keys.get_mut(key) {
                Some(s) => s,
                None => {
                    let fresh = self.new_key(Millis::MIN)?;
                    self.keys.entry(key.into()).or_insert(fresh)
                }
            };
            state.last = times[end - 1];
            for (c, call) in self.calls.iter().enumerate() {
                if call.ends_before > 0 {
                    slide_behind(
                        call,
                        &mut state.calls[c],
                        &args[c],
                        &times,
                        start..end,
                        &mut results[c],
                    )?;
                    continue;
                }
                slide(
                    call.frame,
                    &mut state.calls[c],
                    &args[c],
                    &times,
                    start..end,
                    &mut results[c],
                )?;
            }
        }

        let mut columns: Vec<ArrayRef> = batch.columns()[..time_column].to_vec();
        for (values, field) in results
            .into_iter()
            .zip(self.schema.fields().iter().skip(time_column))
        {
            let array = if values.is_empty() {
                datafusion::arrow::array::new_empty_array(field.data_type())
            } else {
                ScalarValue::iter_to_array(values)?
            };
            columns.push(array);
        }
        columns.push(Arc::clone(batch.column(time_column)));
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// Releases the keys whose every frame has emptied: no row of theirs can be in a frame again
    /// until a new one arrives.
    fn release_idle_keys(&mut self, watermark: Millis) {
        let Some(range) = self.release_after else {
            return;
        };
        if watermark == END_OF_TIME || watermark.saturating_sub(self.last_sweep) < range {
            return;
        }
        self.last_sweep = watermark;
        self.keys
            .retain(|_, k| !k.pending.is_empty() || k.last.saturating_add(range) >= watermark);
    }
}

/// Runs one key's rows `range` (in time order) through one call: each row enters the frame,
/// rows that leave it are retracted, and the aggregate over the frame is the row's result. A
/// RANGE frame holds every row with the current row's time (its peers) too.
fn slide(
    frame: Frame,
    state: &mut CallState,
    args: &[ArrayRef],
    times: &[Millis],
    range: std::ops::Range<usize>,
    results: &mut Vec<ScalarValue>,
) -> Result<()> {
    let values_at = |i: usize| -> Result<Vec<ScalarValue>> {
        args.iter()
            .map(|a| Ok(ScalarValue::try_from_array(a, i)?))
            .collect()
    };
    let slice = |from: usize, len: usize| -> Vec<ArrayRef> {
        args.iter().map(|a| a.slice(from, len)).collect()
    };
    let mut i = range.start;
    while i < range.end {
        // The rows entering the frame together: one row, or a RANGE frame's peers.
        let mut j = i + 1;
        if matches!(frame, Frame::Range(_)) {
            while j < range.end && times[j] == times[i] {
                j += 1;
            }
        }
        state.acc.update_batch(&slice(i, j - i))?;
        if frame.bounded() {
            for (r, &t) in times.iter().enumerate().take(j).skip(i) {
                state.rows.push_back((t, values_at(r)?));
            }
        }
        trim_frame(frame, state, times[i])?;
        let value = state.acc.evaluate()?;
        for _ in i..j {
            results.push(value.clone());
        }
        i = j;
    }
    Ok(())
}

/// [`slide`] for a ROWS frame ending `n PRECEDING`: each row waits `n` rows before it enters the
/// frame, and a row's result is the frame's once the row `n` before it has entered (an empty
/// frame's before that).
fn slide_behind(
    call: &OverCall,
    state: &mut CallState,
    args: &[ArrayRef],
    times: &[Millis],
    range: std::ops::Range<usize>,
    results: &mut Vec<ScalarValue>,
) -> Result<()> {
    for (i, &t) in times.iter().enumerate().take(range.end).skip(range.start) {
        let values = args
            .iter()
            .map(|a| Ok(ScalarValue::try_from_array(a, i)?))
            .collect::<Result<Vec<_>>>()?;
        state.delayed.push_back((t, values));
        if state.delayed.len() as u64 > call.ends_before
            && let Some((t, values)) = state.delayed.pop_front()
        {
            let arrays = values
                .iter()
                .map(|v| Ok(v.to_array()?))
                .collect::<Result<Vec<_>>>()?;
            state.acc.update_batch(&arrays)?;
            if call.frame.bounded() {
                state.rows.push_back((t, values));
                trim_frame(call.frame, state, t)?;
            }
        }
        results.push(state.acc.evaluate()?);
    }
    Ok(())
}

/// The rows waiting to enter the frames of one call ending before the current row, key by key
/// (`delayed`, in the order of the keys), as a count and one batch: key index, time, arguments.
fn snapshot_delayed<'a>(
    state: &mut StateWriter,
    delayed: impl Iterator<Item = &'a VecDeque<(Millis, Vec<ScalarValue>)>>,
) -> Result<()> {
    let mut columns: Vec<(String, Vec<ScalarValue>)> = Vec::new();
    let (mut key_index, mut times) = (Vec::new(), Vec::new());
    for (i, rows) in delayed.enumerate() {
        for (t, args) in rows {
            key_index.push(i as u32);
            times.push(*t);
            for (j, v) in args.iter().enumerate() {
                push_value(&mut columns, j, "arg", v.clone());
            }
        }
    }
    write_key_rows(state, key_index, times, columns)
}

/// Rows of keys' state as a checkpoint part: their count, then (when there are any) one batch of
/// the key index, the time and the value columns.
fn write_key_rows(
    state: &mut StateWriter,
    key_index: Vec<u32>,
    times: Vec<Millis>,
    columns: Vec<(String, Vec<ScalarValue>)>,
) -> Result<()> {
    state.json(&key_index.len())?;
    if key_index.is_empty() {
        return Ok(());
    }
    let mut batch: Vec<(String, ArrayRef)> = vec![
        ("key".into(), Arc::new(UInt32Array::from(key_index))),
        ("time".into(), Arc::new(Int64Array::from(times))),
    ];
    for (name, values) in columns {
        if let Some(a) = scalars_column(values)? {
            batch.push((name, a));
        }
    }
    state.batch(RecordBatch::try_from_iter(batch)?);
    Ok(())
}

/// Takes back what [`snapshot_delayed`] wrote into each key's `delayed` rows.
fn restore_delayed<'a>(
    state: &mut StateReader,
    types: &[DataType],
    delayed: impl Iterator<Item = &'a mut VecDeque<(Millis, Vec<ScalarValue>)>>,
) -> Result<()> {
    let rows: usize = state.json()?;
    if rows == 0 {
        return Ok(());
    }
    let what = "the rows waiting to enter an OVER frame";
    let part = state.batch()?;
    let key_index = primitive_column::<UInt32Type>(&part, 0, what)?;
    let times = primitive_column::<Int64Type>(&part, 1, what)?;
    expect_rows(&part, rows, what)?;
    let values = &part.columns()[2..];
    expect_types(values, types.iter(), what)?;
    let mut delayed: Vec<&mut VecDeque<(Millis, Vec<ScalarValue>)>> = delayed.collect();
    for r in 0..rows {
        let args = values
            .iter()
            .map(|a| Ok(ScalarValue::try_from_array(a, r)?))
            .collect::<Result<Vec<_>>>()?;
        delayed
            .get_mut(key_index.value(r) as usize)
            .ok_or_else(|| unfit(what, "a row of no key"))?
            .push_back((times.value(r), args));
    }
    Ok(())
}

/// Appends `v` to the `j`th column named `prefix j`.
fn push_value(
    columns: &mut Vec<(String, Vec<ScalarValue>)>,
    j: usize,
    prefix: &str,
    v: ScalarValue,
) {
    if columns.len() <= j {
        columns.push((format!("{prefix} {j}"), Vec::new()));
    }
    columns[j].1.push(v);
}

/// Retracts the rows that have left a bounded frame ending at a row of time `time`: beyond its
/// `n + 1` rows, or older than `time` minus its RANGE.
fn trim_frame(frame: Frame, state: &mut CallState, time: Millis) -> Result<()> {
    match frame {
        Frame::Rows(Some(n)) => {
            while state.rows.len() as u64 > n + 1 {
                retract_front(state)?;
            }
        }
        Frame::Range(Some(ms)) => {
            let from = time.saturating_sub(ms);
            while state.rows.front().is_some_and(|(t, _)| *t < from) {
                retract_front(state)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn retract_front(state: &mut CallState) -> Result<()> {
    if let Some((_, values)) = state.rows.pop_front() {
        let arrays = values
            .iter()
            .map(|v| Ok(v.to_array()?))
            .collect::<Result<Vec<_>>>()?;
        state.acc.retract_batch(&arrays)?;
    }
    Ok(())
}

impl Operator for OverWindow {
    fn release_keys_idle_since(&mut self, before: Millis) {
        // A key with rows waiting for their frames keeps them (and its state) until they leave.
        self.keys
            .retain(|_, k| !k.pending.is_empty() || k.last >= before);
    }

    /// Per key: its bytes and last time; per call, the rows of each key's bounded frame (an
    /// accumulator over them is rebuilt on restore) or the state of its unbounded accumulator.
    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.buffer.snapshot(state)?;
        // The map is not changed in between, so each pass visits the keys in the same order.
        state.json(&(self.last_sweep, self.keys.len()))?;
        if self.keys.is_empty() {
            if self.lookahead {
                self.snapshot_pending(state)?;
            }
            return Ok(());
        }
        let last = Int64Array::from_iter_values(self.keys.values().map(|k| k.last));
        state.columns(vec![
            (
                "key",
                key_bytes_column(self.keys.keys().map(|k| k.as_ref())),
            ),
            ("last", Arc::new(last)),
        ])?;
        for (c, call) in self.calls.iter().enumerate() {
            let mut columns: Vec<(String, Vec<ScalarValue>)> = Vec::new();
            let mut key_index = Vec::new();
            let mut times = Vec::new();
            for (i, key) in self.keys.values_mut().enumerate() {
                let cs = &mut key.calls[c];
                if call.frame.bounded() {
                    for (t, args) in &cs.rows {
                        key_index.push(i as u32);
                        times.push(*t);
                        for (j, v) in args.iter().enumerate() {
                            push_value(&mut columns, j, "arg", v.clone());
                        }
                    }
                    continue;
                }
                key_index.push(i as u32);
                times.push(0);
                for (j, v) in cs.acc.state()?.into_iter().enumerate() {
                    push_value(&mut columns, j, "state", v);
                }
            }
            write_key_rows(state, key_index, times, columns)?;
            if call.ends_before > 0 {
                snapshot_delayed(state, self.keys.values().map(|k| &k.calls[c].delayed))?;
            }
        }
        if self.lookahead {
            self.snapshot_pending(state)?;
        }
        Ok(())
    }

    fn restore(&mut self, state: &mut StateReader) -> Result<()> {
        self.buffer.restore(state)?;
        let (last_sweep, n): (Millis, usize) = state.json()?;
        self.last_sweep = last_sweep;
        if n == 0 {
            if self.lookahead {
                self.restore_pending(state, &[], &mut [])?;
            }
            return Ok(());
        }
        let keys_part = state.batch()?;
        let what = "the keys of an OVER window";
        let keys = key_bytes(&keys_part, what)?;
        let last = primitive_column::<Int64Type>(&keys_part, 1, what)?;
        expect_rows(&keys_part, n, what)?;
        let mut restored: Vec<KeyState> = Vec::with_capacity(keys.len());
        for i in 0..keys.len() {
            restored.push(self.new_key(last.value(i))?);
        }
        for (c, call) in self.calls.iter().enumerate() {
            let rows: usize = state.json()?;
            if rows > 0 {
                let part = state.batch()?;
                let what = "the frames of an OVER window";
                let key_index = primitive_column::<UInt32Type>(&part, 0, what)?;
                let times = primitive_column::<Int64Type>(&part, 1, what)?;
                expect_rows(&part, rows, what)?;
                let values = &part.columns()[2..];
                // A bounded frame keeps its rows' arguments, an unbounded one its accumulator's state.
                let types: Vec<DataType> = if call.frame.bounded() {
                    call.expr
                        .expressions()
                        .iter()
                        .map(|e| e.data_type(self.buffer.schema()))
                        .collect::<datafusion::error::Result<_>>()?
                } else {
                    call.expr
                        .state_fields()?
                        .iter()
                        .map(|f| f.data_type().clone())
                        .collect()
                };
                expect_types(values, types.iter(), what)?;
                // Rows of one key are together: each run updates (or merges into) its accumulator.
                let mut s = 0;
                while s < part.num_rows() {
                    let k = key_index.value(s);
                    let mut e = s + 1;
                    while e < part.num_rows() && key_index.value(e) == k {
                        e += 1;
                    }
                    let cs = restored
                        .get_mut(k as usize)
                        .map(|r| &mut r.calls[c])
                        .ok_or_else(|| unfit(what, "a frame of no key"))?;
                    let slice: Vec<ArrayRef> = values.iter().map(|a| a.slice(s, e - s)).collect();
                    if call.frame.bounded() {
                        cs.acc.update_batch(&slice)?;
                        for r in s..e {
                            let args = values
                                .iter()
                                .map(|a| Ok(ScalarValue::try_from_array(a, r)?))
                                .collect::<Result<Vec<_>>>()?;
                            cs.rows.push_back((times.value(r), args));
                        }
                    } else {
                        cs.acc.merge_batch(&slice)?;
                    }
                    s = e;
                }
            }
            if call.ends_before > 0 {
                let types = call
                    .expr
                    .expressions()
                    .iter()
                    .map(|e| e.data_type(self.buffer.schema()))
                    .collect::<datafusion::error::Result<Vec<_>>>()?;
                restore_delayed(
                    state,
                    &types,
                    restored.iter_mut().map(|k| &mut k.calls[c].delayed),
                )?;
            }
        }
        if self.lookahead {
            self.restore_pending(state, &keys, &mut restored)?;
        }
        self.keys = keys.into_iter().zip(restored).collect();
        Ok(())
    }

    fn state_rows(&self) -> usize {
        let (keys, buffered) = self.state_size();
        keys + buffered + self.pending_rows()
    }

    fn state_bytes(&self) -> usize {
        let keys: usize = self
            .keys
            .iter()
            .map(|(bytes, k)| {
                let calls: usize = k
                    .calls
                    .iter()
                    .map(|c| {
                        // The rows of a frame hold values of the same types: each is taken to
                        // be the size of the oldest, so the walk is one step a key.
                        let row = c
                            .rows
                            .front()
                            .map_or(0, |(_, values)| ScalarValue::size_of_vec(values));
                        c.acc.size()
                            + c.rows.capacity() * size_of::<(Millis, Vec<ScalarValue>)>()
                            + c.rows.len() * row
                    })
                    .sum();
                bytes.len() + k.calls.capacity() * size_of::<CallState>() + calls
            })
            .sum();
        super::map_bytes(&self.keys) + keys + self.buffer.bytes()
    }

    fn describe(&self) -> String {
        let keys: Vec<String> = self.partition.iter().map(|k| k.to_string()).collect();
        let calls: Vec<String> = self
            .calls
            .iter()
            .map(|c| {
                let args: Vec<String> =
                    c.expr.expressions().iter().map(|a| a.to_string()).collect();
                let following = match c.following {
                    Following::None if c.ends_before > 0 => {
                        format!(" to {} PRECEDING", c.ends_before)
                    }
                    Following::None => String::new(),
                    Following::Rows(n) => format!(" to {n} FOLLOWING (written with them)"),
                    Following::Range(ms) => {
                        format!(" to {} FOLLOWING", crate::time::show_duration(ms))
                    }
                };
                format!(
                    "{}({}) {}{following}",
                    c.expr.fun().name(),
                    args.join(", "),
                    c.frame.describe()
                )
            })
            .collect();
        format!(
            "over window, partition [{}], in event-time order once the watermark passes each row: {}",
            keys.join(", "),
            calls.join(", ")
        )
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Vec<Message>) -> Result<()> {
        self.buffer.push(batch)
    }

    fn process_watermark(&mut self, watermark: Millis, out: &mut Vec<Message>) -> Result<()> {
        if self.lookahead {
            return self.process_watermark_ahead(watermark, out);
        }
        if let Some(ready) = self.buffer.take_ready(watermark)? {
            out.push(Message::Batch(self.evaluate(ready)?));
        }
        self.release_idle_keys(watermark);
        out.push(Message::Watermark(watermark));
        Ok(())
    }
}
