//! The rows of `SESSION(...)` read without aggregating (`SELECT * FROM TABLE(SESSION(...))`):
//! every row with the bounds of the session it falls in.
//!
//! Sessions are found as the session aggregate finds them (readings at most `gap` apart, per
//! partition key, over all rows without one): rows wait until the watermark passes them, are
//! taken in event-time order per key, and are held with their session until the watermark passes
//! its end. Then the session's rows leave together, each with `window_start`, `window_end` and
//! `window_time` (`window_end - 1ms`, also their event time), as Flink's session table function
//! gives them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::RowConverter;

use super::Operator;
use super::partitioned::Partitioned;
use super::time_buffer::EventTimeBuffer;
use crate::checkpoint::{
    StateReader, StateWriter, expect_rows, expect_schema, key_bytes, key_bytes_column,
};
use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::time::Millis;

/// Which window column a column of the rows is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionColumn {
    Value,
    Start,
    End,
    Time,
}

struct Session {
    key_bytes: Box<[u8]>,
    start: Millis,
    /// The last reading's time plus the gap.
    end: Millis,
    rows: Vec<RecordBatch>,
}

pub struct SessionRows {
    gap: Millis,
    /// The partition key columns of the input.
    keys: Vec<usize>,
    /// What each output column (before the event time) is; the input has these columns, then
    /// any key columns the query does not read, then the event time.
    columns: Vec<SessionColumn>,
    schema: SchemaRef,
    buffer: EventTimeBuffer,
    /// The open session of each key.
    open: HashMap<Box<[u8]>, u64>,
    sessions: HashMap<u64, Session>,
    next_id: u64,
    /// Open sessions by end, to close them in order.
    ends: BTreeSet<(Millis, u64)>,
    converter: Option<RowConverter>,
    rows: usize,
}

impl SessionRows {
    /// `input` is the scan's schema (`columns`, then key columns the query does not read, then
    /// the event time); `schema` the output's (`columns`, then the event time).
    pub fn new(
        gap: Millis,
        keys: Vec<usize>,
        columns: Vec<SessionColumn>,
        input: SchemaRef,
        schema: SchemaRef,
    ) -> Self {
        Self {
            gap,
            keys,
            columns,
            schema,
            buffer: EventTimeBuffer::new(input),
            open: HashMap::new(),
            sessions: HashMap::new(),
            next_id: 0,
            ends: BTreeSet::new(),
            converter: None,
            rows: 0,
        }
    }

    /// Adds rows older than the watermark to their keys' sessions, in time order. Sessions a row
    /// cannot join (it is more than `gap` after their last reading) close first.
    fn add(&mut self, batch: RecordBatch, closed: &mut Vec<Session>) -> Result<()> {
        let keys: Vec<ArrayRef> = self
            .keys
            .iter()
            .map(|&k| Arc::clone(batch.column(k)))
            .collect();
        let sorted = Partitioned::sort(&batch, keys, &mut self.converter)?;
        let times = &sorted.times;
        let n = sorted.batch.num_rows();
        let mut i = 0;
        while i < n {
            // The run of rows of one key that fall into one session.
            let key = sorted.key(i);
            let mut j = i + 1;
            while j < n && sorted.key(j) == key && times[j] - times[j - 1] <= self.gap {
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
                    self.open.insert(Box::from(key), id);
                    self.sessions.insert(
                        id,
                        Session {
                            key_bytes: Box::from(key),
                            start: times[i],
                            end: times[i],
                            rows: Vec::new(),
                        },
                    );
                    id
                }
            };
            let session = self
                .sessions
                .get_mut(&id)
                .ok_or_else(|| EngineError::Internal("session vanished".into()))?;
            session.rows.push(sorted.batch.slice(i, j - i));
            self.rows += j - i;
            let old_end = session.end;
            session.end = times[j - 1] + self.gap;
            self.ends.remove(&(old_end, id));
            self.ends.insert((session.end, id));
            i = j;
        }
        Ok(())
    }

    /// Closes the sessions that end before `watermark` (a reading exactly at a session's end
    /// still joins it, and rows are taken once older than the watermark).
    fn fire(&mut self, watermark: Millis, closed: &mut Vec<Session>) {
        while let Some(&(end, id)) = self.ends.first() {
            if end >= watermark {
                break;
            }
            self.ends.pop_first();
            if let Some(s) = self.sessions.remove(&id) {
                self.open.remove(&s.key_bytes);
                closed.push(s);
            }
        }
    }

    /// The rows of closed sessions, each with its session's bounds.
    fn emit(&mut self, mut sessions: Vec<Session>) -> Result<RecordBatch> {
        sessions.sort_by_key(|s| (s.end, s.start));
        let mut out = Vec::new();
        for s in sessions {
            for rows in s.rows {
                let n = rows.num_rows();
                self.rows -= n;
                let at = |t: Millis| -> ArrayRef {
                    Arc::new(TimestampMillisecondArray::from_value(t, n))
                };
                let mut columns: Vec<ArrayRef> = self
                    .columns
                    .iter()
                    .zip(rows.columns())
                    .map(|(c, column)| match c {
                        SessionColumn::Value => Arc::clone(column),
                        SessionColumn::Start => at(s.start),
                        SessionColumn::End => at(s.end),
                        SessionColumn::Time => at(s.end - 1),
                    })
                    .collect();
                columns.push(at(s.end - 1));
                out.push(RecordBatch::try_new(Arc::clone(&self.schema), columns)?);
            }
        }
        Ok(concat_batches(&self.schema, &out)?)
    }

    /// The open sessions in the order of `ends`.
    fn open_sessions(&self) -> Vec<(u64, &Session)> {
        self.ends
            .iter()
            .filter_map(|&(_, id)| self.sessions.get(&id).map(|s| (id, s)))
            .collect()
    }
}

impl Operator for SessionRows {
    fn describe(&self) -> String {
        format!(
            "session rows, gap {}, {} (each session's rows held until the watermark passes its end)",
            crate::time::show_duration(self.gap),
            if self.keys.is_empty() {
                "over all rows".to_string()
            } else {
                format!("partitioned by {} column(s)", self.keys.len())
            }
        )
    }

    fn state_rows(&self) -> usize {
        self.rows + self.buffer.rows()
    }

    fn state_bytes(&self) -> usize {
        let sessions: usize = self
            .sessions
            .values()
            .map(|s| {
                2 * s.key_bytes.len()
                    + s.rows
                        .iter()
                        .map(RecordBatch::get_array_memory_size)
                        .sum::<usize>()
            })
            .sum();
        super::map_bytes(&self.open)
            + super::map_bytes(&self.sessions)
            + self.ends.len() * size_of::<(Millis, u64)>()
            + sessions
            + self.buffer.bytes()
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

    /// The rows waiting for the watermark; each open session's bounds and the number of its
    /// batches, the sessions' keys, then their rows.
    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.buffer.snapshot(state)?;
        let open = self.open_sessions();
        let bounds: Vec<(u64, Millis, Millis, usize)> = open
            .iter()
            .map(|(id, s)| (*id, s.start, s.end, s.rows.len()))
            .collect();
        state.json(&(self.next_id, &bounds))?;
        if open.is_empty() {
            return Ok(());
        }
        let keys = key_bytes_column(open.iter().map(|(_, s)| s.key_bytes.as_ref()));
        state.batch(RecordBatch::try_from_iter([("key", keys)])?);
        for (_, s) in &open {
            for rows in &s.rows {
                state.batch(rows.clone());
            }
        }
        Ok(())
    }

    fn restore(&mut self, state: &mut StateReader) -> Result<()> {
        self.buffer.restore(state)?;
        type Bounds = Vec<(u64, Millis, Millis, usize)>;
        let (next_id, bounds): (u64, Bounds) = state.json()?;
        self.next_id = next_id;
        if bounds.is_empty() {
            return Ok(());
        }
        let what = "the open sessions";
        let part = state.batch()?;
        expect_rows(&part, bounds.len(), what)?;
        let keys = key_bytes(&part, what)?;
        let input = Arc::new(self.buffer.schema().clone());
        for ((id, start, end, batches), key_bytes) in bounds.into_iter().zip(keys) {
            let mut rows = Vec::with_capacity(batches);
            for _ in 0..batches {
                let batch = state.batch()?;
                expect_schema(&batch, &input, "the rows of an open session")?;
                self.rows += batch.num_rows();
                rows.push(batch);
            }
            self.open.insert(key_bytes.clone(), id);
            self.ends.insert((end, id));
            self.sessions.insert(
                id,
                Session {
                    key_bytes,
                    start,
                    end,
                    rows,
                },
            );
        }
        Ok(())
    }
}
