//! Window joins: two inputs that carry window columns (the rows of window table functions, or
//! window aggregates) joined on `window_start`, `window_end` and keys, as Flink's window join:
//! `L [LEFT | RIGHT | FULL] JOIN R ON L.window_start = R.window_start AND L.window_end =
//! R.window_end AND L.k = R.k`, and the semi and anti joins of `IN` / `EXISTS` / `NOT IN` /
//! `NOT EXISTS`.
//!
//! Each side's rows are held by their window's end until both sides' watermarks pass it: then
//! no row of that window can come on either side, and the window's rows are joined at once, the
//! rows of an outer side that matched nothing padded with NULLs. Joined rows have the window's
//! last millisecond (`window_time`) as their event time; the join's watermark is the smaller of
//! the two sides'.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMillisecondArray, UInt32Array,
    new_null_array,
};
use datafusion::arrow::compute::{concat_batches, prep_null_mask_filter, take, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, Rows};
use datafusion::physical_expr::PhysicalExpr;

use super::MultiInputOperator;
use super::window_rows::split_by_window_end;
use crate::checkpoint::{StateReader, StateWriter, expect_schema};
use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::time::{END_OF_TIME, Millis};

/// Which rows a window join gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowJoinType {
    Inner,
    Left,
    Right,
    Full,
    /// The left rows with a match (`IN`, `EXISTS`), left columns only.
    LeftSemi,
    /// The left rows without one (`NOT IN`, `NOT EXISTS`).
    LeftAnti,
    RightSemi,
    RightAnti,
}

impl WindowJoinType {
    /// Whether unmatched rows of side `input` are given too (padded with NULLs).
    fn keeps_unmatched(self, input: usize) -> bool {
        matches!(
            (self, input),
            (Self::Left | Self::Full, 0) | (Self::Right | Self::Full, 1)
        )
    }
}

/// One input of a window join.
pub struct WindowJoinInput {
    /// The key expressions over its rows (the window bounds among them).
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The `window_start`, `window_end` and (when read) `window_time` columns.
    pub start: usize,
    pub end: usize,
    pub time: Option<usize>,
    /// The schema of its rows, the event time last.
    pub schema: SchemaRef,
}

struct Side {
    input: WindowJoinInput,
    /// Rows by the end of their window.
    windows: BTreeMap<Millis, Vec<RecordBatch>>,
    rows: usize,
    watermark: Option<Millis>,
    ended: bool,
}

pub struct WindowJoin {
    sides: [Side; 2],
    join_type: WindowJoinType,
    /// The ON condition but the key equalities, over the left and right columns side by side
    /// (and the event time).
    filter: Option<Arc<dyn PhysicalExpr>>,
    /// Left then right columns and the event time: what `filter` reads.
    pairs: SchemaRef,
    schema: SchemaRef,
    converter: Option<RowConverter>,
    emitted_watermark: Option<Millis>,
    /// `NOT IN`'s anti join: a NULL key makes the comparison unknown, and the row is left out.
    null_aware: bool,
}

impl WindowJoin {
    pub fn new(
        left: WindowJoinInput,
        right: WindowJoinInput,
        join_type: WindowJoinType,
        filter: Option<Arc<dyn PhysicalExpr>>,
        pairs: SchemaRef,
        schema: SchemaRef,
    ) -> Self {
        let side = |input| Side {
            input,
            windows: BTreeMap::new(),
            rows: 0,
            watermark: None,
            ended: false,
        };
        Self {
            sides: [side(left), side(right)],
            join_type,
            filter,
            pairs,
            schema,
            converter: None,
            emitted_watermark: None,
            null_aware: false,
        }
    }

    /// `NOT IN`'s semantics for a left anti join.
    pub fn null_aware(mut self, null_aware: bool) -> Self {
        self.null_aware = null_aware;
        self
    }

    fn hold(&mut self, input: usize, end: Millis, batch: RecordBatch) {
        let side = &mut self.sides[input];
        side.rows += batch.num_rows();
        side.windows.entry(end).or_default().push(batch);
    }

    /// Holds the rows of `batch` by the end of their window.
    fn add(&mut self, input: usize, batch: RecordBatch) -> Result<()> {
        for (end, rows) in split_by_window_end(batch, self.sides[input].input.end)? {
            self.hold(input, end, rows);
        }
        Ok(())
    }

    /// Joins every window both watermarks have passed, then emits the smaller watermark.
    fn advance(&mut self, out: &mut Vec<Message>) -> Result<()> {
        let (Some(left), Some(right)) = (self.sides[0].watermark, self.sides[1].watermark) else {
            return Ok(());
        };
        let now = left.min(right);
        loop {
            let next = [0, 1]
                .iter()
                .filter_map(|&s| self.sides[s].windows.keys().next().copied())
                .min();
            let Some(end) = next.filter(|&e| e <= now) else {
                break;
            };
            let [l, r] = [0, 1].map(|s| {
                let side = &mut self.sides[s];
                let batches = side.windows.remove(&end).unwrap_or_default();
                side.rows -= batches.iter().map(RecordBatch::num_rows).sum::<usize>();
                batches
            });
            let joined = self.join_window(end, l, r)?;
            if joined.num_rows() > 0 {
                out.push(Message::Batch(joined));
            }
        }
        if self.emitted_watermark.is_none_or(|w| now > w) {
            self.emitted_watermark = Some(now);
            out.push(Message::Watermark(now));
        }
        Ok(())
    }

    /// The key columns of `batch` on side `input`, in the row format.
    fn keys_of(&mut self, input: usize, batch: &RecordBatch) -> Result<(Vec<ArrayRef>, Rows)> {
        let n = batch.num_rows();
        let keys = self.sides[input]
            .input
            .keys
            .iter()
            .map(|k| Ok(k.evaluate(batch)?.into_array(n)?))
            .collect::<Result<Vec<_>>>()?;
        let rows = super::row_converter(&mut self.converter, &keys)?.convert_columns(&keys)?;
        Ok((keys, rows))
    }

    /// The rows of one window, joined.
    fn join_window(
        &mut self,
        end: Millis,
        left: Vec<RecordBatch>,
        right: Vec<RecordBatch>,
    ) -> Result<RecordBatch> {
        let left = concat_batches(&self.sides[0].input.schema, &left)?;
        let right = concat_batches(&self.sides[1].input.schema, &right)?;
        let (mut li, mut ri) = (Vec::new(), Vec::new());
        // Left rows a null-aware anti join (NOT IN) leaves out: all of them when a right row of
        // the window has a NULL key (`x NOT IN (..., NULL)` is never true), else those with one.
        let mut unknown = vec![false; left.num_rows()];
        if self.null_aware && left.num_rows() > 0 {
            let (lkeys, _) = self.keys_of(0, &left)?;
            let right_null = if right.num_rows() > 0 {
                let (rkeys, _) = self.keys_of(1, &right)?;
                rkeys.iter().any(|k| k.null_count() > 0)
            } else {
                false
            };
            for (l, u) in unknown.iter_mut().enumerate() {
                *u = right_null || lkeys.iter().any(|k| k.is_null(l));
            }
        }
        if left.num_rows() > 0 && right.num_rows() > 0 {
            let (lkeys, lrows) = self.keys_of(0, &left)?;
            let (rkeys, rrows) = self.keys_of(1, &right)?;
            let mut by_key: HashMap<&[u8], Vec<u32>> = HashMap::new();
            for r in 0..right.num_rows() {
                if rkeys.iter().all(|k| k.is_valid(r)) {
                    by_key
                        .entry(rrows.row(r).data())
                        .or_default()
                        .push(r as u32);
                }
            }
            for l in 0..left.num_rows() {
                if lkeys.iter().any(|k| k.is_null(l)) {
                    continue;
                }
                for &r in by_key.get(lrows.row(l).data()).into_iter().flatten() {
                    li.push(l as u32);
                    ri.push(r);
                }
            }
        }
        let (li, ri) = (UInt32Array::from(li), UInt32Array::from(ri));
        let pairs = self.pairs(end, &left, &right, &li, &ri)?;
        // The pairs the rest of the ON condition keeps.
        let (pairs, li, ri) = match &self.filter {
            None => (pairs, li, ri),
            Some(f) => {
                let keep = f.evaluate(&pairs)?.into_array(pairs.num_rows())?;
                let keep = keep
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| {
                        EngineError::Internal("a join condition is not boolean".into())
                    })?;
                let keep = if keep.null_count() > 0 {
                    prep_null_mask_filter(keep)
                } else {
                    keep.clone()
                };
                let filter = |a: &UInt32Array| -> Result<UInt32Array> {
                    Ok(datafusion::arrow::compute::filter(a, &keep)?
                        .as_primitive::<datafusion::arrow::datatypes::UInt32Type>()
                        .clone())
                };
                (
                    datafusion::arrow::compute::filter_record_batch(&pairs, &keep)?,
                    filter(&li)?,
                    filter(&ri)?,
                )
            }
        };
        let matched = |n: usize, idx: &UInt32Array| {
            let mut m = vec![false; n];
            for i in idx.values() {
                m[*i as usize] = true;
            }
            m
        };
        let time =
            |n: usize| -> ArrayRef { Arc::new(TimestampMillisecondArray::from_value(end - 1, n)) };
        match self.join_type {
            WindowJoinType::LeftSemi | WindowJoinType::LeftAnti => {
                let mut keep = matched(left.num_rows(), &li);
                // An unknown comparison keeps a row out of both: mark it matched for the anti join.
                for (k, u) in keep.iter_mut().zip(&unknown) {
                    *k |= *u && self.join_type == WindowJoinType::LeftAnti;
                }
                let semi = self.join_type == WindowJoinType::LeftSemi;
                self.one_side(&left, &keep, semi, end)
            }
            WindowJoinType::RightSemi | WindowJoinType::RightAnti => {
                let keep = matched(right.num_rows(), &ri);
                let semi = self.join_type == WindowJoinType::RightSemi;
                self.one_side(&right, &keep, semi, end)
            }
            kind => {
                let mut parts = vec![pairs];
                for (input, rows, idx) in [(0, &left, &li), (1, &right, &ri)] {
                    if !kind.keeps_unmatched(input) {
                        continue;
                    }
                    let hit = matched(rows.num_rows(), idx);
                    let unmatched: Vec<u32> = (0..rows.num_rows() as u32)
                        .filter(|&i| !hit[i as usize])
                        .collect();
                    if unmatched.is_empty() {
                        continue;
                    }
                    let n = unmatched.len();
                    let own = take_record_batch(rows, &UInt32Array::from(unmatched))?;
                    let visible = own.columns()[..own.num_columns() - 1].to_vec();
                    let padding = self.padding(1 - input, &own, end)?;
                    let mut columns = if input == 0 {
                        [visible, padding].concat()
                    } else {
                        [padding, visible].concat()
                    };
                    columns.push(time(n));
                    parts.push(RecordBatch::try_new(Arc::clone(&self.schema), columns)?);
                }
                Ok(concat_batches(&self.schema, &parts)?)
            }
        }
    }

    /// The columns of side `input` beside rows of the other side that matched nothing: NULL, but
    /// the window's bounds, which the ON condition makes the same on both sides (Flink's outer
    /// window joins give them too).
    fn padding(&self, input: usize, other: &RecordBatch, end: Millis) -> Result<Vec<ArrayRef>> {
        let n = other.num_rows();
        let this = &self.sides[input].input;
        let start = other.column(self.sides[1 - input].input.start);
        let at = |t: Millis| -> ArrayRef { Arc::new(TimestampMillisecondArray::from_value(t, n)) };
        let fields = &this.schema.fields()[..this.schema.fields().len() - 1];
        Ok(fields
            .iter()
            .enumerate()
            .map(|(c, f)| {
                if c == this.start {
                    Arc::clone(start)
                } else if c == this.end {
                    at(end)
                } else if Some(c) == this.time {
                    at(end - 1)
                } else {
                    new_null_array(f.data_type(), n)
                }
            })
            .collect())
    }

    /// The pairs `(li[i], ri[i])`, left columns then right ones, then the window's time.
    fn pairs(
        &self,
        end: Millis,
        left: &RecordBatch,
        right: &RecordBatch,
        li: &UInt32Array,
        ri: &UInt32Array,
    ) -> Result<RecordBatch> {
        let n = li.len();
        let mut columns = Vec::with_capacity(self.pairs.fields().len());
        for (batch, idx) in [(left, li), (right, ri)] {
            for c in &batch.columns()[..batch.num_columns() - 1] {
                columns.push(take(c, idx, None)?);
            }
        }
        columns.push(Arc::new(TimestampMillisecondArray::from_value(end - 1, n)));
        let schema = match self.join_type {
            WindowJoinType::Inner
            | WindowJoinType::Left
            | WindowJoinType::Right
            | WindowJoinType::Full => &self.schema,
            _ => &self.pairs,
        };
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
    }

    /// The rows of one side that matched (`semi`) or did not, with the window's time.
    fn one_side(
        &self,
        rows: &RecordBatch,
        matched: &[bool],
        semi: bool,
        end: Millis,
    ) -> Result<RecordBatch> {
        let keep: Vec<u32> = (0..rows.num_rows() as u32)
            .filter(|&i| matched[i as usize] == semi)
            .collect();
        let n = keep.len();
        let own = take_record_batch(rows, &UInt32Array::from(keep))?;
        let mut columns = own.columns()[..own.num_columns() - 1].to_vec();
        columns.push(Arc::new(TimestampMillisecondArray::from_value(end - 1, n)));
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

impl MultiInputOperator for WindowJoin {
    fn describe(&self) -> String {
        let keys: Vec<String> = self.sides[0]
            .input
            .keys
            .iter()
            .map(|k| k.to_string())
            .collect();
        format!(
            "window join ({:?}) on [{}]{}; a window's rows joined once both watermarks pass its end",
            self.join_type,
            keys.join(", "),
            if self.filter.is_some() {
                ", then the rest of ON"
            } else {
                ""
            }
        )
    }

    fn state_rows(&self) -> usize {
        self.sides.iter().map(|s| s.rows).sum()
    }

    fn state_bytes(&self) -> usize {
        self.sides
            .iter()
            .flat_map(|s| s.windows.values().flatten())
            .map(RecordBatch::get_array_memory_size)
            .sum()
    }

    fn process(&mut self, input: usize, message: Message, out: &mut Vec<Message>) -> Result<()> {
        match message {
            Message::Batch(b) if b.num_rows() > 0 => self.add(input, b),
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

    /// Each side's watermark and held windows (their ends and batch counts), then the batches.
    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        type Held = Vec<(Millis, usize)>;
        let sides: Vec<(Option<Millis>, bool, Held)> = self
            .sides
            .iter()
            .map(|s| {
                let held = s.windows.iter().map(|(e, b)| (*e, b.len())).collect();
                (s.watermark, s.ended, held)
            })
            .collect();
        state.json(&(&sides, self.emitted_watermark))?;
        for side in &self.sides {
            for batch in side.windows.values().flatten() {
                state.batch(batch.clone());
            }
        }
        Ok(())
    }

    fn restore(&mut self, state: &mut StateReader) -> Result<()> {
        type Sides = Vec<(Option<Millis>, bool, Vec<(Millis, usize)>)>;
        let (sides, emitted): (Sides, Option<Millis>) = state.json()?;
        if sides.len() != 2 {
            return Err(EngineError::Checkpoint(
                "a window join's state without two sides".into(),
            ));
        }
        self.emitted_watermark = emitted;
        for (input, (watermark, ended, held)) in sides.into_iter().enumerate() {
            self.sides[input].watermark = watermark;
            self.sides[input].ended = ended;
            let what = [
                "the rows of a window join's left side",
                "the rows of a window join's right side",
            ][input];
            for (end, n) in held {
                for _ in 0..n {
                    let batch = state.batch()?;
                    expect_schema(&batch, &self.sides[input].input.schema, what)?;
                    self.hold(input, end, batch);
                }
            }
        }
        Ok(())
    }
}
