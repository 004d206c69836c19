//! Interval joins of two streams: `a JOIN b ON a.device_id = b.device_id AND b.ts BETWEEN a.ts AND
//! a.ts + INTERVAL '1' MINUTE`. Each side keeps its rows by key; a new row is matched at once with
//! the other side's rows whose time is in its bound, and a side's rows are released as soon as the
//! other side's watermark says no row they could match can still come. A joined row's event time is
//! the later of its two rows'; the join's watermark is the smaller of the two sides'.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, TimestampMillisecondArray,
};
use datafusion::arrow::compute::{filter_record_batch, interleave, interleave_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::RowConverter;
use datafusion::physical_expr::PhysicalExpr;

use super::{MultiInputOperator, event_times};
use crate::checkpoint::{StateReader, StateWriter, expect_rows, expect_schema};
use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::time::{END_OF_TIME, Millis};

/// A stored row: its time, its batch and its index there.
type Stored = (Millis, Arc<RecordBatch>, u32);

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
        }
    }

    /// Emits the smaller watermark when it moved, and releases rows no future row can match.
    fn advance(&mut self, out: &mut Vec<Message>) {
        let (Some(left), Some(right)) = (self.sides[0].watermark, self.sides[1].watermark) else {
            return;
        };
        let now = left.min(right);
        if self.emitted_watermark.is_none_or(|w| now > w) {
            self.emitted_watermark = Some(now);
            out.push(Message::Watermark(now));
        }
        // Releasing walks every stored row: do it when the watermark has moved by a tenth of the
        // bound's width (or a second), not at every batch.
        let step = ((self.upper - self.lower) / 10).max(1_000);
        if now != END_OF_TIME && now.saturating_sub(self.released_at) < step {
            return;
        }
        self.released_at = now;
        // A left row at t matches right rows in [t + lower, t + upper]; right rows older than the
        // right watermark will not come, so it is done once t + upper < right watermark.
        let (lower, upper) = (self.lower, self.upper);
        release(&mut self.sides[0], |t| t.saturating_add(upper) < right);
        release(&mut self.sides[1], |t| t.saturating_sub(lower) < left);
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
    fn store(&mut self, input: usize, batch: RecordBatch) -> Result<()> {
        let (keys, converted) = self.keys_of(input, &batch)?;
        let times = event_times(&batch)?.to_vec();
        self.store_rows(input, &keys, &converted, &times, &Arc::new(batch));
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
    ) {
        let side = &mut self.sides[input];
        for (i, &t) in times.iter().enumerate() {
            if keys.iter().any(|k| k.is_null(i)) {
                continue;
            }
            side.rows
                .entry(converted.row(i).data().into())
                .or_default()
                .push((t, Arc::clone(batch), i as u32));
            side.stored += 1;
        }
    }

    fn add(&mut self, input: usize, batch: RecordBatch, out: &mut Vec<Message>) -> Result<()> {
        let (keys, converted) = self.keys_of(input, &batch)?;
        let times = event_times(&batch)?.to_vec();
        let batch = Arc::new(batch);
        let other = &self.sides[1 - input];
        // Pairs of (this row, stored row of the other side) in bound.
        let mut pairs: Vec<(u32, &Stored)> = Vec::new();
        for (i, &t) in times.iter().enumerate() {
            if keys.iter().any(|k| k.is_null(i)) {
                continue;
            }
            let Some(candidates) = other.rows.get(converted.row(i).data()) else {
                continue;
            };
            for c in candidates {
                let diff = if input == 0 { c.0 - t } else { t - c.0 };
                if diff >= self.lower && diff <= self.upper {
                    pairs.push((i as u32, c));
                }
            }
        }
        if !pairs.is_empty() {
            let joined = self.joined(input, &batch, &times, &pairs)?;
            if joined.num_rows() > 0 {
                out.push(Message::Batch(joined));
            }
        }
        self.store_rows(input, &keys, &converted, &times, &batch);
        Ok(())
    }

    /// The joined rows of `pairs`, left columns first, then the rest of the ON condition applied.
    fn joined(
        &self,
        input: usize,
        batch: &Arc<RecordBatch>,
        times: &[Millis],
        pairs: &[(u32, &Stored)],
    ) -> Result<RecordBatch> {
        // Sources of rows for `interleave`: this batch first, then each distinct stored batch.
        let mut sources: Vec<&RecordBatch> = vec![batch.as_ref()];
        let mut source_of: HashMap<*const RecordBatch, usize> = HashMap::new();
        let mut other_idx = Vec::with_capacity(pairs.len());
        for (_, (_, b, row)) in pairs {
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
            .map(|(i, (t, _, _))| Some(times[*i as usize].max(*t)))
            .collect();
        columns.push(Arc::new(time));
        let joined = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        let Some(f) = &self.filter else {
            return Ok(joined);
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
        Ok(filter_record_batch(&joined, &keep)?)
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
                .flat_map(|s| s.rows.values().flatten().map(|(_, b, _)| b)),
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
                self.advance(out);
                Ok(())
            }
            Message::Barrier(_) => Err(EngineError::Internal(
                "a barrier inside a join: the query task takes them".into(),
            )),
            Message::End => {
                self.sides[input].ended = true;
                self.sides[input].watermark = Some(END_OF_TIME);
                self.advance(out);
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
            let mut batches: Vec<&RecordBatch> = Vec::new();
            let mut index_of: HashMap<*const RecordBatch, usize> = HashMap::new();
            let mut rows = Vec::with_capacity(side.stored);
            for stored in side.rows.values().flatten() {
                let b = *index_of.entry(Arc::as_ptr(&stored.1)).or_insert_with(|| {
                    batches.push(stored.1.as_ref());
                    batches.len() - 1
                });
                rows.push((b, stored.2 as usize));
            }
            state.batch(interleave_record_batch(&batches, &rows)?);
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
                self.store(input, batch)?;
            }
        }
        Ok(())
    }
}

fn release(side: &mut Side, done: impl Fn(Millis) -> bool) {
    let mut released = 0;
    side.rows.retain(|_, rows| {
        let before = rows.len();
        rows.retain(|(t, _, _)| !done(*t));
        released += before - rows.len();
        !rows.is_empty()
    });
    side.stored -= released;
}

fn signed(ms: Millis) -> String {
    if ms < 0 {
        format!("-{}", crate::time::show_duration(-ms))
    } else {
        crate::time::show_duration(ms)
    }
}
