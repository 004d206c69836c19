//! Session windows: `GROUP BY key, window_start, window_end` over `SESSION(source, ts, gap)`.
//!
//! A key's session holds readings at most `gap` apart (two readings exactly `gap` apart are one
//! session, as in Flink, whose session windows `[t, t + gap)` merge when they touch); it starts
//! at its first reading and ends `gap` after its last one. Rows wait until the watermark passes
//! them and are then taken in event-time order per key, so a late-arriving row that bridges two
//! sessions is already in place: sessions never need merging. A session fires once, when the
//! watermark passes its end; then no row of it can come any more.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::compute::filter;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::RowConverter;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;

use super::Operator;
use super::accumulators::AggregateCall;
use super::partitioned::Partitioned;
use super::time_buffer::EventTimeBuffer;
use super::window_aggregate::OutputColumn;
use crate::checkpoint::{
    StateReader, StateWriter, expect_rows, expect_types, key_bytes, key_bytes_column,
    scalars_column,
};
use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::time::Millis;

struct Session {
    /// The key as the row converter encodes it, and as values.
    key_bytes: Box<[u8]>,
    key: Vec<ScalarValue>,
    start: Millis,
    /// The last reading's time plus the gap.
    end: Millis,
    accumulators: Vec<Box<dyn Accumulator>>,
}

pub struct SessionAggregate {
    gap: Millis,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    calls: Vec<AggregateCall>,
    layout: Vec<OutputColumn>,
    /// Output schema, with the event-time column last.
    schema: SchemaRef,
    buffer: EventTimeBuffer,
    /// The open session of each key.
    open: HashMap<Box<[u8]>, u64>,
    sessions: HashMap<u64, Session>,
    next_id: u64,
    /// Open sessions by end, to fire them in order.
    ends: BTreeSet<(Millis, u64)>,
    converter: Option<RowConverter>,
}

impl SessionAggregate {
    pub fn new(
        gap: Millis,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        calls: Vec<AggregateCall>,
        layout: Vec<OutputColumn>,
        input: SchemaRef,
        schema: SchemaRef,
    ) -> Self {
        Self {
            gap,
            keys,
            calls,
            layout,
            schema,
            buffer: EventTimeBuffer::new(input),
            open: HashMap::new(),
            sessions: HashMap::new(),
            next_id: 0,
            ends: BTreeSet::new(),
            converter: None,
        }
    }

    /// Open sessions, and rows buffered until the watermark passes them.
    pub fn state_size(&self) -> (usize, usize) {
        (self.sessions.len(), self.buffer.rows())
    }

    /// Adds rows older than the watermark to their keys' sessions, in time order. Sessions a row
    /// cannot join (it is more than `gap` after their last reading) fire first.
    fn add(&mut self, batch: RecordBatch, closed: &mut Vec<Session>) -> Result<()> {
        let n = batch.num_rows();
        let keys: Vec<ArrayRef> = self
            .keys
            .iter()
            .map(|k| Ok(k.evaluate(&batch)?.into_array(n)?))
            .collect::<Result<_>>()?;
        let sorted = Partitioned::sort(&batch, keys, &mut self.converter)?;
        let keys = &sorted.keys;
        let times = &sorted.times;
        let batch = &sorted.batch;
        let inputs = self
            .calls
            .iter()
            .map(|c| c.inputs(batch))
            .collect::<Result<Vec<_>>>()?;
        let masks = self
            .calls
            .iter()
            .map(|c| c.filter_mask(batch))
            .collect::<Result<Vec<_>>>()?;
        let key_at = |i: usize| sorted.key(i);

        let mut i = 0;
        while i < n {
            // The run of rows of one key that fall into one session.
            let key = key_at(i);
            let mut j = i + 1;
            while j < n && key_at(j) == key && times[j] - times[j - 1] <= self.gap {
                j += 1;
            }
            let current = self.open.get(key).copied();
            let joins = current
                .and_then(|id| self.sessions.get(&id))
                .is_some_and(|s| times[i] <= s.end);
            if !joins
                && let Some(id) = current
                && let Some(s) = self.sessions.remove(&id)
            {
                self.open.remove(key);
                self.ends.remove(&(s.end, id));
                closed.push(s);
            }
            let id = match self.open.get(key) {
                Some(&id) => id,
                None => {
                    let id = self.next_id;
                    self.next_id += 1;
                    let session = Session {
                        key_bytes: Box::from(key),
                        key: keys
                            .iter()
                            .map(|k| ScalarValue::try_from_array(k, i))
                            .collect::<datafusion::error::Result<_>>()?,
                        start: times[i],
                        end: times[i],
                        accumulators: self
                            .calls
                            .iter()
                            .map(|c| Ok(c.expr.create_accumulator()?))
                            .collect::<Result<_>>()?,
                    };
                    self.open.insert(Box::from(key), id);
                    self.sessions.insert(id, session);
                    id
                }
            };
            let session = self
                .sessions
                .get_mut(&id)
                .ok_or_else(|| EngineError::Internal("session vanished".into()))?;
            for ((acc, args), mask) in session.accumulators.iter_mut().zip(&inputs).zip(&masks) {
                let mut slices: Vec<ArrayRef> = args.iter().map(|a| a.slice(i, j - i)).collect();
                if let Some(mask) = mask {
                    let m = mask.slice(i, j - i);
                    slices = slices
                        .iter()
                        .map(|a| Ok(filter(a, &m)?))
                        .collect::<Result<_>>()?;
                }
                acc.update_batch(&slices)?;
            }
            let old_end = session.end;
            session.end = times[j - 1] + self.gap;
            let new_end = session.end;
            self.ends.remove(&(old_end, id));
            self.ends.insert((new_end, id));
            i = j;
        }
        Ok(())
    }

    /// Fires the sessions that end before `watermark`: a reading at a session's end (exactly
    /// `gap` after its last one) still joins it, and rows are taken once older than the watermark.
    fn fire(&mut self, watermark: Millis, closed: &mut Vec<Session>) {
        while let Some(first) = self.ends.first() {
            if first.0 >= watermark {
                break;
            }
            let Some((_, id)) = self.ends.pop_first() else {
                break;
            };
            if let Some(s) = self.sessions.remove(&id) {
                self.open.remove(&s.key_bytes);
                closed.push(s);
            }
        }
    }

    /// The output rows of closed sessions.
    fn emit(&self, mut sessions: Vec<Session>) -> Result<RecordBatch> {
        let n = sessions.len();
        let mut aggregates: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(n); self.calls.len()];
        for s in &mut sessions {
            for (a, acc) in aggregates.iter_mut().zip(&mut s.accumulators) {
                a.push(acc.evaluate()?);
            }
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.layout.len() + 1);
        for (c, field) in self.layout.iter().zip(self.schema.fields()) {
            columns.push(match *c {
                OutputColumn::Key(k) => {
                    ScalarValue::iter_to_array(sessions.iter().map(|s| s.key[k].clone()))?
                }
                OutputColumn::WindowStart => Arc::new(TimestampMillisecondArray::from(
                    sessions.iter().map(|s| s.start).collect::<Vec<_>>(),
                )),
                OutputColumn::WindowEnd => Arc::new(TimestampMillisecondArray::from(
                    sessions.iter().map(|s| s.end).collect::<Vec<_>>(),
                )),
                OutputColumn::WindowTime => Arc::new(TimestampMillisecondArray::from(
                    sessions.iter().map(|s| s.end - 1).collect::<Vec<_>>(),
                )),
                OutputColumn::Aggregate(j) => {
                    let values = std::mem::take(&mut aggregates[j]);
                    let array = ScalarValue::iter_to_array(values)?;
                    if array.data_type() != field.data_type() {
                        datafusion::arrow::compute::cast(&array, field.data_type())?
                    } else {
                        array
                    }
                }
            });
        }
        columns.push(Arc::new(TimestampMillisecondArray::from(
            sessions.iter().map(|s| s.end - 1).collect::<Vec<_>>(),
        )));
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

impl Operator for SessionAggregate {
    /// Each open session: its key (bytes and values), start, end, and its accumulators' state.
    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.buffer.snapshot(state)?;
        let ids: Vec<u64> = self.ends.iter().map(|&(_, id)| id).collect();
        let bounds: Vec<(u64, Millis, Millis)> = ids
            .iter()
            .filter_map(|id| self.sessions.get(id).map(|s| (*id, s.start, s.end)))
            .collect();
        state.json(&(self.next_id, &bounds))?;
        if bounds.is_empty() {
            return Ok(());
        }
        let sessions: Vec<&mut Session> = {
            let mut by_id: HashMap<u64, &mut Session> =
                self.sessions.iter_mut().map(|(id, s)| (*id, s)).collect();
            bounds
                .iter()
                .filter_map(|(id, _, _)| by_id.remove(id))
                .collect()
        };
        let mut columns: Vec<(String, ArrayRef)> = vec![(
            "key".into(),
            key_bytes_column(sessions.iter().map(|s| s.key_bytes.as_ref())),
        )];
        for k in 0..self.keys.len() {
            let values = sessions.iter().map(|s| s.key[k].clone()).collect();
            if let Some(a) = scalars_column(values)? {
                columns.push((format!("key {k}"), a));
            }
        }
        let mut states: Vec<Vec<Vec<ScalarValue>>> = vec![Vec::new(); self.calls.len()];
        for s in sessions {
            for (c, acc) in s.accumulators.iter_mut().enumerate() {
                for (j, v) in acc.state()?.into_iter().enumerate() {
                    if states[c].len() <= j {
                        states[c].push(Vec::new());
                    }
                    states[c][j].push(v);
                }
            }
        }
        for (c, call_states) in states.into_iter().enumerate() {
            for (j, values) in call_states.into_iter().enumerate() {
                if let Some(a) = scalars_column(values)? {
                    columns.push((format!("state {c}.{j}"), a));
                }
            }
        }
        state.batch(RecordBatch::try_from_iter(columns)?);
        Ok(())
    }

    fn restore(&mut self, state: &mut StateReader) -> Result<()> {
        self.buffer.restore(state)?;
        let (next_id, bounds): (u64, Vec<(u64, Millis, Millis)>) = state.json()?;
        self.next_id = next_id;
        if bounds.is_empty() {
            return Ok(());
        }
        let part = state.batch()?;
        let what = "the open sessions";
        let keys = key_bytes(&part, what)?;
        expect_rows(&part, bounds.len(), what)?;
        // The key bytes, the key columns, then each aggregate's state.
        let mut types = vec![DataType::Binary];
        for k in &self.keys {
            types.push(k.data_type(self.buffer.schema())?);
        }
        for c in &self.calls {
            types.extend(c.expr.state_fields()?.iter().map(|f| f.data_type().clone()));
        }
        expect_types(part.columns(), types.iter(), what)?;
        let nk = self.keys.len();
        let key_columns = &part.columns()[1..1 + nk];
        let mut at = 1 + nk;
        let mut call_columns = Vec::with_capacity(self.calls.len());
        for c in &self.calls {
            let n = c.expr.state_fields()?.len();
            call_columns.push(&part.columns()[at..at + n]);
            at += n;
        }
        for (row, ((id, start, end), key_bytes)) in bounds.into_iter().zip(keys).enumerate() {
            let key = key_columns
                .iter()
                .map(|k| ScalarValue::try_from_array(k, row))
                .collect::<datafusion::error::Result<_>>()?;
            let mut accumulators = Vec::with_capacity(self.calls.len());
            for (c, columns) in self.calls.iter().zip(&call_columns) {
                let mut acc = c.expr.create_accumulator()?;
                let slice: Vec<ArrayRef> = columns.iter().map(|a| a.slice(row, 1)).collect();
                acc.merge_batch(&slice)?;
                accumulators.push(acc);
            }
            self.open.insert(key_bytes.clone(), id);
            self.ends.insert((end, id));
            self.sessions.insert(
                id,
                Session {
                    key_bytes,
                    key,
                    start,
                    end,
                    accumulators,
                },
            );
        }
        Ok(())
    }

    fn state_rows(&self) -> usize {
        let (open, buffered) = self.state_size();
        open + buffered
    }

    fn state_bytes(&self) -> usize {
        let sessions: usize = self
            .sessions
            .values()
            .map(|s| {
                // The key's bytes twice: in the session and in the map of open sessions.
                2 * s.key_bytes.len()
                    + ScalarValue::size_of_vec(&s.key)
                    + s.accumulators.iter().map(|a| a.size()).sum::<usize>()
            })
            .sum();
        super::map_bytes(&self.open)
            + super::map_bytes(&self.sessions)
            + self.ends.len() * size_of::<(Millis, u64)>()
            + sessions
            + self.buffer.bytes()
    }

    fn describe(&self) -> String {
        let keys: Vec<String> = self.keys.iter().map(|k| k.to_string()).collect();
        let calls: Vec<&str> = self.calls.iter().map(AggregateCall::name).collect();
        format!(
            "session aggregate, gap {}, keys [{}], aggregates [{}], fires when the watermark passes window_end (last reading + gap)",
            crate::time::show_duration(self.gap),
            keys.join(", "),
            calls.join(", ")
        )
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Vec<Message>) -> Result<()> {
        self.buffer.push(batch)
    }

    fn process_watermark(&mut self, watermark: Millis, out: &mut Vec<Message>) -> Result<()> {
        let mut closed = Vec::new();
        if let Some(ready) = self.buffer.take_ready(watermark)? {
            self.add(ready, &mut closed)?;
        }
        self.fire(watermark, &mut closed);
        if !closed.is_empty() {
            out.push(Message::Batch(self.emit(closed)?));
        }
        out.push(Message::Watermark(watermark));
        Ok(())
    }
}
