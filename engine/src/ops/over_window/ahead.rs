//! OVER frames that end after the current row: `ROWS BETWEEN 2 PRECEDING AND 2 FOLLOWING`,
//! `RANGE BETWEEN INTERVAL '1' MINUTE PRECEDING AND INTERVAL '1' MINUTE FOLLOWING`, and `LEAD`.
//!
//! A row's result is known once the end of its frame has arrived: for a ROWS frame when the `n`th
//! row after it of its key has been taken (or the input has ended: the frame is cut at the last
//! row), for a RANGE frame when the watermark passes its time plus the interval. Until then the
//! row waits in its key's `pending` rows with the results known so far, and leaves with all of
//! them, keeping its own event time. The operator's watermark stays at the oldest waiting row,
//! so rows that leave late are not late downstream: a key that falls silent holds back windows
//! after a ROWS frame with FOLLOWING until its next rows (a RANGE frame waits a bounded time).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::common::ScalarValue;

use super::{
    CallState, Following, Frame, KeyState, OverCall, OverWindow, retract_front, trim_frame,
};
use crate::checkpoint::{StateReader, StateWriter, expect_rows, expect_schema, unfit};
use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::ops::partitioned::Partitioned;
use crate::time::{END_OF_TIME, Millis};

/// A row waiting for the end of its frames.
pub(super) struct Pending {
    time: Millis,
    batch: Arc<RecordBatch>,
    row: u32,
    /// Each call's result, once known.
    results: Vec<Option<ScalarValue>>,
}

impl OverWindow {
    /// Takes the rows the watermark has passed, gives each key's rows whose frames are complete,
    /// and the watermark, held at the oldest row still waiting.
    pub(super) fn process_watermark_ahead(
        &mut self,
        watermark: Millis,
        out: &mut Vec<Message>,
    ) -> Result<()> {
        if let Some(ready) = self.buffer.take_ready(watermark)? {
            self.take(ready)?;
        }
        // RANGE frames whose end the watermark has passed; every frame at the end of the input.
        for key in &self.waiting {
            let Some(state) = self.keys.get_mut(key) else {
                continue;
            };
            for (c, call) in self.calls.iter().enumerate() {
                let cs = &mut state.calls[c];
                match call.following {
                    _ if watermark == END_OF_TIME => finish(call, cs, &mut state.pending, c)?,
                    Following::Range(f) => {
                        resolve_range(call, cs, &mut state.pending, c, 0, |t| {
                            t.saturating_add(f) < watermark
                        })?
                    }
                    Following::Rows(_) | Following::None => {}
                }
            }
        }
        if let Some(batch) = self.complete()? {
            out.push(Message::Batch(batch));
        }
        self.release_idle_keys(watermark);
        let held = self
            .waiting
            .iter()
            .filter_map(|k| self.keys.get(k))
            .filter_map(|k| k.pending.front().map(|p| p.time))
            .min();
        let now = held.map_or(watermark, |t| t.min(watermark));
        if self.emitted_watermark.is_none_or(|w| now > w) {
            self.emitted_watermark = Some(now);
            out.push(Message::Watermark(now));
        }
        Ok(())
    }

    /// Adds rows older than the watermark to their keys, in key and time order, resolving what
    /// they complete.
    fn take(&mut self, batch: RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        let keys: Vec<ArrayRef> = self
            .partition
            .iter()
            .map(|k| Ok(k.evaluate(&batch)?.into_array(n)?))
            .collect::<Result<_>>()?;
        let sorted = Partitioned::sort(&batch, keys, &mut self.converter)?;
        let shared = Arc::new(sorted.batch.clone());
        let times = &sorted.times;
        let args: Vec<Vec<ArrayRef>> = self
            .calls
            .iter()
            .map(|c| {
                c.expr
                    .expressions()
                    .iter()
                    .map(|e| Ok(e.evaluate(&sorted.batch)?.into_array(n)?))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        for (start, end) in sorted.runs() {
            let key = sorted.key(start);
            if !self.keys.contains_key(key) {
                let fresh = self.new_key(Millis::MIN)?;
                self.keys.insert(key.into(), fresh);
            }
            let Some(state) = self.keys.get_mut(key) else {
                continue;
            };
            state.last = times[end - 1];
            for (r, &time) in times.iter().enumerate().take(end).skip(start) {
                state.pending.push_back(Pending {
                    time,
                    batch: Arc::clone(&shared),
                    row: r as u32,
                    results: vec![None; self.calls.len()],
                });
            }
            let KeyState { calls, pending, .. } = state;
            for (c, call) in self.calls.iter().enumerate() {
                slide_ahead(call, &mut calls[c], pending, c, &args[c], times, start..end)?;
            }
            self.waiting.insert(key.into());
        }
        Ok(())
    }

    /// The waiting rows every call has a result for: by key (in the order of the keys' bytes, as
    /// rows without FOLLOWING leave), each key's oldest first.
    fn complete(&mut self) -> Result<Option<RecordBatch>> {
        let mut by_key: Vec<(Box<[u8]>, Vec<Pending>)> = Vec::new();
        self.waiting.retain(|key| {
            let Some(state) = self.keys.get_mut(key) else {
                return false;
            };
            let mut rows = Vec::new();
            while state
                .pending
                .front()
                .is_some_and(|p| p.results.iter().all(Option::is_some))
            {
                rows.extend(state.pending.pop_front());
            }
            if !rows.is_empty() {
                by_key.push((key.clone(), rows));
            }
            !state.pending.is_empty()
        });
        by_key.sort_by(|a, b| a.0.cmp(&b.0));
        let mut done: Vec<Pending> = by_key.into_iter().flat_map(|(_, rows)| rows).collect();
        if done.is_empty() {
            return Ok(None);
        }
        let rows = interleave_rows(&done)?;
        let time_column = rows.num_columns() - 1;
        let mut columns: Vec<ArrayRef> = rows.columns()[..time_column].to_vec();
        for (c, field) in self.schema.fields().iter().skip(time_column).enumerate() {
            if c == self.calls.len() {
                break;
            }
            let values = done
                .iter_mut()
                .map(|p| p.results[c].take().unwrap_or(ScalarValue::Null));
            let array = ScalarValue::iter_to_array(values)?;
            columns.push(if array.data_type() != field.data_type() {
                datafusion::arrow::compute::cast(&array, field.data_type())?
            } else {
                array
            });
        }
        columns.push(Arc::clone(rows.column(time_column)));
        Ok(Some(RecordBatch::try_new(
            Arc::clone(&self.schema),
            columns,
        )?))
    }

    /// The waiting rows of each key (in the order of `self.keys`), the watermark given on, and
    /// the results known for them.
    pub(super) fn snapshot_pending(&self, state: &mut StateWriter) -> Result<()> {
        let counts: Vec<usize> = self.keys.values().map(|k| k.pending.len()).collect();
        state.json(&(self.emitted_watermark, &counts))?;
        let rows: Vec<&Pending> = self.keys.values().flat_map(|k| &k.pending).collect();
        if rows.is_empty() {
            return Ok(());
        }
        state.batch(interleave_rows(rows.iter().copied())?);
        for c in 0..self.calls.len() {
            let known: Vec<bool> = rows.iter().map(|p| p.results[c].is_some()).collect();
            state.json(&known)?;
            let values: Vec<ScalarValue> =
                rows.iter().filter_map(|p| p.results[c].clone()).collect();
            if let Some(column) = crate::checkpoint::scalars_column(values)? {
                state.columns(vec![("result", column)])?;
            }
        }
        Ok(())
    }

    /// Takes back what [`Self::snapshot_pending`] wrote into `restored`, the keys in order.
    pub(super) fn restore_pending(
        &mut self,
        state: &mut StateReader,
        keys: &[Box<[u8]>],
        restored: &mut [KeyState],
    ) -> Result<()> {
        let what = "the rows of an OVER window waiting for their frames";
        let (emitted, counts): (Option<Millis>, Vec<usize>) = state.json()?;
        self.emitted_watermark = emitted;
        if counts.len() != restored.len() {
            return Err(unfit(what, "not one count per key"));
        }
        let total: usize = counts.iter().sum();
        if total == 0 {
            return Ok(());
        }
        let batch = state.batch()?;
        expect_schema(&batch, &Arc::new(self.buffer.schema().clone()), what)?;
        expect_rows(&batch, total, what)?;
        let times = crate::ops::event_times(&batch)?.to_vec();
        let batch = Arc::new(batch);
        let mut results: Vec<Vec<Option<ScalarValue>>> =
            vec![Vec::with_capacity(self.calls.len()); total];
        for _ in 0..self.calls.len() {
            let known: Vec<bool> = state.json()?;
            if known.len() != total {
                return Err(unfit(what, "not one result flag per row"));
            }
            let n = known.iter().filter(|k| **k).count();
            let column = if n > 0 {
                let part = state.batch()?;
                expect_rows(&part, n, what)?;
                Some(Arc::clone(part.column(0)))
            } else {
                None
            };
            let mut next = 0;
            for (r, k) in known.into_iter().enumerate() {
                let value = match (&column, k) {
                    (Some(a), true) => {
                        next += 1;
                        Some(ScalarValue::try_from_array(a, next - 1)?)
                    }
                    _ => None,
                };
                results[r].push(value);
            }
        }
        let mut row = 0;
        for ((key, count), state) in keys.iter().zip(counts).zip(restored.iter_mut()) {
            for _ in 0..count {
                state.pending.push_back(Pending {
                    time: times[row],
                    batch: Arc::clone(&batch),
                    row: row as u32,
                    results: std::mem::take(&mut results[row]),
                });
                row += 1;
            }
            // A call's unresolved rows are the last ones of its key.
            for (c, cs) in state.calls.iter_mut().enumerate() {
                cs.unresolved = state
                    .pending
                    .iter()
                    .filter(|p| p.results[c].is_none())
                    .count();
            }
            if count > 0 {
                self.waiting.insert(key.clone());
            }
        }
        Ok(())
    }

    /// Rows waiting for their frames (for the state size).
    pub(super) fn pending_rows(&self) -> usize {
        self.keys.values().map(|k| k.pending.len()).sum()
    }
}

/// The input rows of `rows`, in order, as one batch.
fn interleave_rows<'a>(rows: impl IntoIterator<Item = &'a Pending>) -> Result<RecordBatch> {
    crate::ops::gather_rows(rows.into_iter().map(|p| (&p.batch, p.row)))?
        .ok_or_else(|| EngineError::Internal("no rows to gather".into()))
}

/// Runs one key's new rows `range` (in time order, the last of `pending`) through one call:
/// each row enters the frame, and the rows whose frame is complete get their result. While the
/// run goes on, its rows not entered yet are the last of `pending` (the `tail`).
fn slide_ahead(
    call: &OverCall,
    state: &mut CallState,
    pending: &mut VecDeque<Pending>,
    c: usize,
    args: &[ArrayRef],
    times: &[Millis],
    range: Range<usize>,
) -> Result<()> {
    let slice = |from: usize, len: usize| -> Vec<ArrayRef> {
        args.iter().map(|a| a.slice(from, len)).collect()
    };
    let mut i = range.start;
    while i < range.end {
        // The rows entering the frame together: one row, or a RANGE frame's peers.
        let mut j = i + 1;
        if matches!(call.frame, Frame::Range(_)) {
            while j < range.end && times[j] == times[i] {
                j += 1;
            }
        }
        // Rows whose RANGE frame ends before these rows are complete now.
        if let Following::Range(f) = call.following {
            let tail = range.end - i;
            resolve_range(call, state, pending, c, tail, |t| {
                t.saturating_add(f) < times[i]
            })?;
        }
        state.acc.update_batch(&slice(i, j - i))?;
        if call.frame.bounded() {
            for (r, &t) in times.iter().enumerate().take(j).skip(i) {
                let values = args
                    .iter()
                    .map(|a| Ok(ScalarValue::try_from_array(a, r)?))
                    .collect::<Result<Vec<_>>>()?;
                state.rows.push_back((t, values));
            }
        }
        state.unresolved += j - i;
        let tail = range.end - j;
        match call.following {
            Following::None => {
                trim_frame(call.frame, state, times[i])?;
                let value = state.acc.evaluate()?;
                while state.unresolved > 0 {
                    resolve_next(state, pending, c, tail, value.clone())?;
                }
            }
            Following::Rows(f) => {
                // The frame holds the newest rows, up to the end of the oldest unresolved row's.
                trim_frame(call.frame, state, times[i])?;
                if state.unresolved as u64 > f {
                    let value = state.acc.evaluate()?;
                    resolve_next(state, pending, c, tail, value)?;
                }
            }
            Following::Range(_) => {}
        }
        i = j;
    }
    Ok(())
}

/// Gives the oldest row this call has no result for its result (the rows before the last
/// `tail` ones of `pending`, which have not entered its frame yet).
fn resolve_next(
    state: &mut CallState,
    pending: &mut VecDeque<Pending>,
    c: usize,
    tail: usize,
    value: ScalarValue,
) -> Result<()> {
    let at = pending
        .len()
        .checked_sub(tail + state.unresolved)
        .ok_or_else(|| EngineError::Internal("an OVER row resolved twice".into()))?;
    let row = pending
        .get_mut(at)
        .ok_or_else(|| EngineError::Internal("an OVER row missing".into()))?;
    row.results[c] = Some(value);
    state.unresolved -= 1;
    Ok(())
}

/// Resolves, oldest first, the rows whose time is `ready`, each over the frame from its own
/// start (`time - preceding`) to the newest row taken.
fn resolve_range(
    call: &OverCall,
    state: &mut CallState,
    pending: &mut VecDeque<Pending>,
    c: usize,
    tail: usize,
    ready: impl Fn(Millis) -> bool,
) -> Result<()> {
    while state.unresolved > 0 {
        let at = pending.len().saturating_sub(tail + state.unresolved);
        let Some(time) = pending.get(at).map(|p| p.time) else {
            break;
        };
        if !ready(time) {
            break;
        }
        trim_frame(call.frame, state, time)?;
        let value = state.acc.evaluate()?;
        resolve_next(state, pending, c, tail, value)?;
    }
    Ok(())
}

/// At the end of the input: every frame ends at the last row; a ROWS frame still starts its
/// `preceding` rows before the row it is for.
fn finish(
    call: &OverCall,
    state: &mut CallState,
    pending: &mut VecDeque<Pending>,
    c: usize,
) -> Result<()> {
    match (call.following, call.frame) {
        (Following::Rows(f), Frame::Rows(n)) => {
            while state.unresolved > 0 {
                if let Some(n) = n {
                    let preceding = n.saturating_sub(f) as usize;
                    while state.rows.len() > preceding + state.unresolved {
                        retract_front(state)?;
                    }
                }
                let value = state.acc.evaluate()?;
                resolve_next(state, pending, c, 0, value)?;
            }
            Ok(())
        }
        _ => resolve_range(call, state, pending, c, 0, |_| true),
    }
}
