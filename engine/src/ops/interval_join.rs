//! Interval joins of two streams: `a JOIN b ON a.device_id = b.device_id AND b.ts BETWEEN a.ts AND
//! a.ts + INTERVAL '1' MINUTE`. Each side keeps its rows by key; a new row is matched at once with
//! the other side's rows whose time is in its bound, and a side's rows are released as soon as the
//! other side's watermark says no row they could match can still come. A joined row's event time is
//! the later of its two rows'; the join's watermark is the smaller of the two sides'.
//!
//! `LEFT`, `RIGHT` and `FULL` joins give a row of an outer side that matched nothing when it is
//! released, with NULLs for the other side's columns and its own event time; their watermark stays
//! behind by the bound, so those rows are never late downstream.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, TimestampMillisecondArray, new_null_array,
};
use datafusion::arrow::compute::{filter_record_batch, interleave};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::RowConverter;
use datafusion::physical_expr::PhysicalExpr;

use super::{MultiInputOperator, event_times};
use crate::checkpoint::{StateReader, StateWriter, expect_rows, expect_schema};
use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::time::{END_OF_TIME, Millis};

/// A stored row: its time, its batch and its index there, and whether it has matched a row.
type Stored = (Millis, Arc<RecordBatch>, u32, bool);

/// One input of a join: the key expressions over its rows, and the schema of its rows.
pub struct JoinInput {
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    pub schema: SchemaRef,
}

struct Side {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    rows: HashMap<Box<[u8]>, Vec<Stored>>,
    stored: usize,
    watermark: Option<Millis>,
    ended: bool,
}

pub struct IntervalJoin {
    sides: [Side; 2],
    /// `right time - left time` of a joined pair lies in `[lower, upper]`.
    lower: Millis,
    upper: Millis,
    /// The whole ON condition but the key equalities, over the joined columns.
    filter: Option<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    converter: Option<RowConverter>,
    emitted_watermark: Option<Millis>,
    /// The watermark at the last release of stored rows.
    released_at: Millis,
    /// Whether the rows of each side that match nothing are given too, padded with NULLs (LEFT,
    /// RIGHT, FULL OUTER).
    outer: [bool; 2],
}

impl IntervalJoin {
    pub fn new(
        left: JoinInput,
        right: JoinInput,
        lower: Millis,
        upper: Millis,
        filter: Option<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    ) -> Self {
        let side = |input: JoinInput| Side {
            keys: input.keys,
            schema: input.schema,
            rows: HashMap::new(),
            stored: 0,
            watermark: None,
            ended: false,
        };
        Self {
            sides: [side(left), side(right)],
            lower,
            upper,
            filter,
            schema,
            converter: None,
            emitted_watermark: None,
            released_at: Millis::MIN,
            outer: [false; 2],
        }
    }

    /// Gives the unmatched rows of the left and/or right side too (an outer join).
    pub fn outer(mut self, left: bool, right: bool) -> Self {
        self.outer = [left, right];
        self
    }

    /// How far the join's watermark stays behind its inputs': an unmatched row of an outer side
    /// leaves only when the other side's watermark has passed its bound, with its own time.
    fn watermark_of(&self, left: Millis, right: Millis) -> Millis {
        let mut now = left.min(right);
        if self.outer[0] && right != END_OF_TIME {
            now = now.min(right.saturating_sub(self.upper.max(0)));
        }
        if self.outer[1] && left != END_OF_TIME {
            now = now.min(left.saturating_add(self.lower.min(0)));
        }
        now
    }

    /// Releases rows no future row can match (the unmatched rows of an outer side leave then),
    /// and emits the join's watermark when it moved.
    fn advance(&mut self, out: &mut Vec<Message>) -> Result<()> {
        let (Some(left), Some(right)) = (self.sides[0].watermark, self.sides[1].watermark) else {
            return Ok(());
        };
        let now = left.min(right);
        // Releasing walks every stored row: do it when the watermark has moved by a tenth of the
        // bound's width (or a second), not at every batch; an outer join's watermark waits for
        // its unmatched rows, so it releases at every step.
        let step = if self.outer.contains(&true) {
            0
        } else {
            ((self.upper - self.lower) / 10).max(1_000)
        };
        if now == END_OF_TIME || now.saturating_sub(self.released_at) >= step {
            self.released_at = now;
            // A left row at t matches right rows in [t + lower, t + upper]; right rows older than
            // the right watermark will not come, so it is done once t + upper < right watermark.
            let (lower, upper) = (self.lower, self.upper);
            let [l, r] = self.outer;
            let done = release(&mut self.sides[0], l, |t| t.saturating_add(upper) < right);
            self.emit_unmatched(0, done, out)?;
            let done = release(&mut self.sides[1], r, |t| t.saturating_sub(lower) < left);
            self.emit_unmatched(1, done, out)?;
        }
        let now = self.watermark_of(left, right);
        if self.emitted_watermark.is_none_or(|w| now > w) {
            self.emitted_watermark = Some(now);
            out.push(Message::Watermark(now));
        }
        Ok(())
    }

    /// The released rows of side `input` that matched nothing, padded with NULLs for the other
    /// side's columns, when that side is outer.
    fn emit_unmatched(
        &self,
        input: usize,
        released: Vec<Stored>,
        out: &mut Vec<Message>,
    ) -> Result<()> {
        if !self.outer[input] {
            return Ok(());
        }
        if let Some(rows) = super::gather_rows(released.iter().map(|(_, b, row, _)| (b, *row)))? {
            out.push(Message::Batch(self.padded(input, &rows)?));
        }
        Ok(())
    }

    /// Rows of side `input` (with their event time) beside NULLs for the other side's columns.
    fn padded(&self, input: usize, rows: &RecordBatch) -> Result<RecordBatch> {
        let n = rows.num_rows();
        let other = &self.sides[1 - input].schema;
        let nulls: Vec<ArrayRef> = other.fields()[..other.fields().len() - 1]
            .iter()
            .map(|f| new_null_array(f.data_type(), n))
            .collect();
        let own = rows.columns()[..rows.num_columns() - 1].to_vec();
        let mut columns = if input == 0 {
            [own, nulls].concat()
        } else {
            [nulls, own].concat()
        };
        columns.push(Arc::clone(rows.column(rows.num_columns() - 1)));
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// The key columns of `batch` on side `input`, and their row format.
    fn keys_of(
        &mut self,
        input: usize,
        batch: &RecordBatch,
    ) -> Result<(Vec<ArrayRef>, datafusion::arrow::row::Rows)> {
        let n = batch.num_rows();
        let keys = self.sides[input]
            .keys
            .iter()
            .map(|k| Ok(k.evaluate(batch)?.into_array(n)?))
            .collect::<Result<Vec<_>>>()?;
        let converted = super::row_converter(&mut self.converter, &keys)?.convert_columns(&keys)?;
        Ok((keys, converted))
    }

    /// Stores the rows of `batch` on side `input` without matching them.
    fn store(&mut self, input: usize, batch: RecordBatch, matched: &[bool]) -> Result<()> {
        let (keys, converted) = self.keys_of(input, &batch)?;
        let times = event_times(&batch)?.to_vec();
        self.store_rows(input, &keys, &converted, &times, &Arc::new(batch), matched);
        Ok(())
    }

    /// Keeps the rows of `batch` (but those with a NULL key: they match nothing) by key.
    fn store_rows(
        &mut self,
        input: usize,
        keys: &[ArrayRef],
        converted: &datafusion::arrow::row::Rows,
        times: &[Millis],
        batch: &Arc<RecordBatch>,
        matched: &[bool],
    ) {
        let side = &mut self.sides[input];
        for (i, &t) in times.iter().enumerate() {
            if keys.iter().any(|k| k.is_null(i)) {
                continue;
            }
            side.rows
                .entry(converted.row(i).data().into())
                .or_default()
                .push((t, Arc::clone(batch), i as u32, matched[i]));
            side.stored += 1;
        }
    }

    fn add(&mut self, input: usize, batch: RecordBatch, out: &mut Vec<Message>) -> Result<()> {
        let (keys, converted) = self.keys_of(input, &batch)?;
        let times = event_times(&batch)?.to_vec();
        let batch = Arc::new(batch);
        let other = &self.sides[1 - input];
        // Pairs of (this row, stored row of the other side) in bound, and where the stored row
        // is in its key's list.
        let mut pairs: Vec<(u32, &Stored)> = Vec::new();
        let mut positions: Vec<usize> = Vec::new();
        for (i, &t) in times.iter().enumerate() {
            if keys.iter().any(|k| k.is_null(i)) {
                continue;
            }
            let Some(candidates) = other.rows.get(converted.row(i).data()) else {
                continue;
            };
            for (at, c) in candidates.iter().enumerate() {
                let diff = if input == 0 { c.0 - t } else { t - c.0 };
                if diff >= self.lower && diff <= self.upper {
                    pairs.push((i as u32, c));
                    positions.push(at);
                }
            }
        }
        let mut matched = vec![false; times.len()];
        if !pairs.is_empty() {
            let (joined, kept) = self.joined(input, &batch, &times, &pairs)?;
            if joined.num_rows() > 0 {
                out.push(Message::Batch(joined));
            }
            // Which rows found a partner: this batch's now, the stored ones' for later.
            let hits: Vec<(u32, usize)> = pairs
                .iter()
                .zip(&positions)
                .enumerate()
                .filter(|(p, _)| kept.as_ref().is_none_or(|k| k.value(*p)))
                .map(|(_, ((i, _), at))| (*i, *at))
                .collect();
            let other = &mut self.sides[1 - input];
            for (i, at) in hits {
                matched[i as usize] = true;
                if let Some(stored) = other
                    .rows
                    .get_mut(converted.row(i as usize).data())
                    .and_then(|rows| rows.get_mut(at))
                {
                    stored.3 = true;
                }
            }
        }
        // A row with a NULL key matches nothing, ever: an outer side gives it at once.
        if self.outer[input] {
            let null_keyed: Vec<u32> = (0..times.len())
                .filter(|&i| keys.iter().any(|k| k.is_null(i)))
                .map(|i| i as u32)
                .collect();
            if !null_keyed.is_empty() {
                let rows = datafusion::arrow::compute::take_record_batch(
                    &batch,
                    &datafusion::arrow::array::UInt32Array::from(null_keyed),
                )?;
                out.push(Message::Batch(self.padded(input, &rows)?));
            }
        }
        self.store_rows(input, &keys, &converted, &times, &batch, &matched);
        Ok(())
    }

    /// The joined rows of `pairs`, left columns first, then the rest of the ON condition applied.
    fn joined(
        &self,
        input: usize,
        batch: &Arc<RecordBatch>,
        times: &[Millis],
        pairs: &[(u32, &Stored)],
    ) -> Result<(RecordBatch, Option<BooleanArray>)> {
        // Sources of rows for `interleave`: this batch first, then each distinct stored batch.
        let mut sources: Vec<&RecordBatch> = vec![batch.as_ref()];
        let mut source_of: HashMap<*const RecordBatch, usize> = HashMap::new();
        let mut other_idx = Vec::with_capacity(pairs.len());
        for (_, (_, b, row, _)) in pairs {
            let key = Arc::as_ptr(b);
            let s = *source_of.entry(key).or_insert_with(|| {
                sources.push(b.as_ref());
                sources.len() - 1
            });
            other_idx.push((s, *row as usize));
        }
        let this_idx: Vec<(usize, usize)> = pairs.iter().map(|(i, _)| (0, *i as usize)).collect();
        let this_visible = batch.num_columns() - 1;
        let other_visible = sources
            .get(1)
            .map_or(0, |b| b.num_columns().saturating_sub(1));
        let gather = |column: usize, idx: &[(usize, usize)], from_this: bool| -> Result<ArrayRef> {
            let arrays: Vec<&dyn Array> = if from_this {
                vec![batch.column(column).as_ref()]
            } else {
                sources[1..]
                    .iter()
                    .map(|b| b.column(column).as_ref())
                    .collect()
            };
            let idx: Vec<(usize, usize)> = if from_this {
                idx.to_vec()
            } else {
                idx.iter().map(|(s, r)| (s - 1, *r)).collect()
            };
            Ok(interleave(&arrays, &idx)?)
        };
        let this_cols = (0..this_visible)
            .map(|c| gather(c, &this_idx, true))
            .collect::<Result<Vec<_>>>()?;
        let other_cols = (0..other_visible)
            .map(|c| gather(c, &other_idx, false))
            .collect::<Result<Vec<_>>>()?;
        let mut columns = if input == 0 {
            [this_cols, other_cols].concat()
        } else {
            [other_cols, this_cols].concat()
        };
        let time: TimestampMillisecondArray = pairs
            .iter()
            .map(|(i, (t, _, _, _))| Some(times[*i as usize].max(*t)))
            .collect();
        columns.push(Arc::new(time));
        let joined = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        let Some(f) = &self.filter else {
            return Ok((joined, None));
        };
        let keep = f.evaluate(&joined)?.into_array(joined.num_rows())?;
        let keep = keep
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| EngineError::Internal("a join condition is not boolean".into()))?;
        let keep = if keep.null_count() > 0 {
            datafusion::arrow::compute::prep_null_mask_filter(keep)
        } else {
            keep.clone()
        };
        Ok((filter_record_batch(&joined, &keep)?, Some(keep)))
    }
}

impl MultiInputOperator for IntervalJoin {
    fn describe(&self) -> String {
        let keys: Vec<String> = self.sides[0].keys.iter().map(|k| k.to_string()).collect();
        format!(
            "interval join on [{}], right time - left time in [{}, {}], then the rest of ON; rows released as the watermarks pass",
            keys.join(", "),
            signed(self.lower),
            signed(self.upper),
        )
    }

    /// Rows held on both sides.
    fn state_rows(&self) -> usize {
        self.sides.iter().map(|s| s.stored).sum()
    }

    /// Memory of the rows held on both sides (a stored row keeps its whole batch).
    fn state_bytes(&self) -> usize {
        let maps: usize = self
            .sides
            .iter()
            .map(|s| {
                super::map_bytes(&s.rows)
                    + s.rows
                        .iter()
                        .map(|(k, v)| k.len() + v.capacity() * size_of::<Stored>())
                        .sum::<usize>()
            })
            .sum();
        let batches = super::shared_batches_bytes(
            self.sides
                .iter()
                .flat_map(|s| s.rows.values().flatten().map(|(_, b, _, _)| b)),
        );
        maps + batches
    }

    fn process(&mut self, input: usize, message: Message, out: &mut Vec<Message>) -> Result<()> {
        match message {
            Message::Batch(b) if b.num_rows() > 0 => self.add(input, b, out),
            Message::Batch(_) => Ok(()),
            Message::Watermark(w) => {
                let side = &mut self.sides[input];
                side.watermark = Some(side.watermark.map_or(w, |old| old.max(w)));
                self.advance(out)
            }
            Message::Barrier(_) => Err(EngineError::Internal(
                "a barrier inside a join: the query task takes them".into(),
            )),
            Message::End => {
                self.sides[input].ended = true;
                self.sides[input].watermark = Some(END_OF_TIME);
                self.advance(out)?;
                if self.sides.iter().all(|s| s.ended) {
                    out.push(Message::End);
                }
                Ok(())
            }
        }
    }

    /// Each side's stored rows (key by key, in the order they came) and watermark.
    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        let sides: Vec<(Option<Millis>, bool, usize)> = self
            .sides
            .iter()
            .map(|s| (s.watermark, s.ended, s.stored))
            .collect();
        state.json(&(&sides, self.emitted_watermark, self.released_at))?;
        for side in &self.sides {
            if side.stored == 0 {
                continue;
            }
            let stored = side.rows.values().flatten();
            let matched: Vec<bool> = stored.clone().map(|s| s.3).collect();
            if let Some(rows) = super::gather_rows(stored.map(|(_, b, row, _)| (b, *row)))? {
                state.batch(rows);
            }
            // Which rows matched: only an outer side's rows need it (and an inner join's
            // checkpoints keep the layout they had).
            if self.outer.contains(&true) {
                state.json(&matched)?;
            }
        }
        Ok(())
    }

    /// Takes back what [`Self::snapshot`] wrote.
    fn restore(&mut self, state: &mut StateReader) -> Result<()> {
        type Sides = (Vec<(Option<Millis>, bool, usize)>, Option<Millis>, Millis);
        let (sides, emitted, released_at): Sides = state.json()?;
        if sides.len() != 2 {
            return Err(EngineError::Checkpoint(
                "a join's state without two sides".into(),
            ));
        }
        self.emitted_watermark = emitted;
        self.released_at = released_at;
        for (input, (watermark, ended, stored)) in sides.into_iter().enumerate() {
            self.sides[input].watermark = watermark;
            self.sides[input].ended = ended;
            if stored > 0 {
                let batch = state.batch()?;
                let what = [
                    "the rows of a join's left side",
                    "the rows of a join's right side",
                ][input];
                expect_schema(&batch, &self.sides[input].schema, what)?;
                expect_rows(&batch, stored, what)?;
                let matched: Vec<bool> = if self.outer.contains(&true) {
                    state.json()?
                } else {
                    vec![false; stored]
                };
                if matched.len() != stored {
                    return Err(EngineError::Checkpoint(format!(
                        "{what}: {} match flags for {stored} rows",
                        matched.len()
                    )));
                }
                self.store(input, batch, &matched)?;
            }
        }
        Ok(())
    }
}

/// Removes the rows of `side` that are `done`; returns those that never matched when `unmatched`
/// (an outer side gives them), in time order, then by key: the same order whatever order the
/// map holds its keys in.
fn release(side: &mut Side, unmatched: bool, done: impl Fn(Millis) -> bool) -> Vec<Stored> {
    let mut released = 0;
    let mut kept: Vec<(Box<[u8]>, Stored)> = Vec::new();
    side.rows.retain(|key, rows| {
        let before = rows.len();
        if unmatched {
            kept.extend(
                rows.extract_if(.., |r| done(r.0))
                    .filter(|r| !r.3)
                    .map(|r| (key.clone(), r)),
            );
        } else {
            rows.retain(|(t, _, _, _)| !done(*t));
        }
        released += before - rows.len();
        !rows.is_empty()
    });
    side.stored -= released;
    kept.sort_by(|a, b| (a.1.0, &a.0).cmp(&(b.1.0, &b.0)));
    kept.into_iter().map(|(_, r)| r).collect()
}

fn signed(ms: Millis) -> String {
    if ms < 0 {
        format!("-{}", crate::time::show_duration(-ms))
    } else {
        crate::time::show_duration(ms)
    }
}
