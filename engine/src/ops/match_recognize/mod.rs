//! `MATCH_RECOGNIZE` on a stream: rows wait until the watermark passes them, then each partition's
//! rows run, in event-time order, through that partition's [`Matcher`]. Conditions are evaluated
//! a batch at a time by DataFusion (with `PREV` values as extra columns); each match's measures
//! are computed from the rows it mapped, and evaluated by DataFusion over all matches at once.
//!
//! - this module: the operator; `spec`: what planning hands it ([`MatchSpec`]);
//! - `define`: DEFINE conditions; `measures`: MEASURES of each match (`navigation_reference`:
//!   their navigation checked against the standard's definitions);
//! - `partition`: a partition's rows, history and matcher, and their checkpoints;
//! - [`pattern`]: the pattern compiled to a program and the matcher (a VM of threads) that runs it.

mod define;
mod measures;
#[cfg(test)]
mod navigation_reference;
mod partition;
pub mod pattern;
mod spec;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::row::RowConverter;
use datafusion::common::ScalarValue;
use tracing::warn;

use super::Operator;
use super::partitioned::Partitioned;
use super::time_buffer::EventTimeBuffer;
use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::time::{END_OF_TIME, Millis};
use define::RowConditions;
use measures::{Found, emit, measure, unmatched};
use partition::{KeyState, output_hold, release_rows};
use pattern::{Match, SkipTo};
pub use spec::{EmptyMatches, MatchRows, MatchSpec, Nav, NavKind};

pub struct MatchRecognize {
    spec: MatchSpec,
    buffer: EventTimeBuffer,
    keys: HashMap<Box<[u8]>, KeyState>,
    converter: Option<RowConverter>,
    /// How many values back `PREV` reads, per column of `prev_columns`.
    prev_columns: Vec<(usize, u32)>,
    /// Variables whose rows some condition reads.
    read: Vec<bool>,
    /// Rows before a match (or a partial match) that navigation may read (`PREV(FIRST(A.x), 2)`).
    keep_back: u64,
    /// Rows after a match that its measures read (`NEXT(LAST(A.x))`): the match waits for them.
    look_ahead: u64,
    /// The watermark last passed on.
    emitted: Millis,
    /// Rows and partial matches all partitions hold: counted as they change, so that asking
    /// costs nothing however many partitions there are.
    held: usize,
}

impl MatchRecognize {
    pub fn new(spec: MatchSpec) -> Self {
        let mut prev_columns: Vec<(usize, u32)> = Vec::new();
        for &(c, n) in &spec.prev {
            match prev_columns.iter_mut().find(|(x, _)| *x == c) {
                Some(p) => p.1 = p.1.max(n),
                None => prev_columns.push((c, n)),
            }
        }
        let mut read = vec![false; spec.vars.len()];
        for (v, uses) in spec.define_ctx.iter().enumerate() {
            for &c in uses {
                for (x, r) in read.iter_mut().enumerate() {
                    *r |= spec.ctx[c].reads(x);
                }
            }
            // A variable's own earlier rows are read when its condition aggregates over them.
            if !uses.is_empty() && spec.ctx.iter().any(|n| n.var.is_some() && n.reads(v)) {
                read[v] = true;
            }
        }
        let keep_back = spec
            .navs
            .iter()
            .chain(&spec.ctx)
            .map(Nav::reads_back)
            .max()
            .unwrap_or(0);
        let look_ahead = spec.navs.iter().map(Nav::reads_ahead).max().unwrap_or(0);
        Self {
            keep_back,
            look_ahead,
            emitted: Millis::MIN,
            buffer: EventTimeBuffer::new(Arc::clone(&spec.input)),
            spec,
            keys: HashMap::new(),
            converter: None,
            prev_columns,
            read,
            held: 0,
        }
    }

    fn process(&mut self, batch: RecordBatch, found: &mut Vec<Found>) -> Result<()> {
        let n = batch.num_rows();
        let time_column = batch.num_columns() - 1;
        let keys: Vec<ArrayRef> = self
            .spec
            .partition
            .iter()
            .map(|&c| Arc::clone(batch.column(c)))
            .collect();
        let sorted = Partitioned::sort(&batch, keys, &mut self.converter)?;
        let batch = Arc::new(sorted.batch.clone());
        let keys = &sorted.keys;
        let times = &sorted.times;
        let key_at = |i: usize| sorted.key(i);
        // Runs of rows of one key.
        let runs = sorted.runs();
        for &(s, _) in &runs {
            if !self.keys.contains_key(key_at(s)) {
                let state = self.new_partition(
                    keys.iter()
                        .map(|k| ScalarValue::try_from_array(k, s))
                        .collect::<datafusion::error::Result<_>>()?,
                );
                self.keys.insert(key_at(s).into(), state);
            }
        }

        // The conditions, over the rows and their PREV values.
        let mut columns: Vec<ArrayRef> = batch.columns()[..time_column].to_vec();
        let mut fields: Vec<_> = batch.schema().fields()[..time_column].to_vec();
        for &(c, back) in &self.spec.prev {
            let h = self
                .prev_columns
                .iter()
                .position(|(x, _)| *x == c)
                .ok_or_else(|| EngineError::Internal("PREV column not tracked".into()))?;
            let null = ScalarValue::try_from(batch.column(c).data_type())?;
            let mut values = Vec::with_capacity(n);
            for &(s, e) in &runs {
                let history = &self.keys[key_at(s)].history[h];
                for i in s..e {
                    let back = back as usize;
                    let v = if i - s >= back {
                        ScalarValue::try_from_array(batch.column(c), i - back)?
                    } else {
                        let from_end = back - (i - s);
                        history
                            .len()
                            .checked_sub(from_end)
                            .map_or_else(|| null.clone(), |k| history[k].clone())
                    };
                    values.push(v);
                }
            }
            let array = if values.is_empty() {
                datafusion::arrow::array::new_empty_array(batch.column(c).data_type())
            } else {
                ScalarValue::iter_to_array(values)?
            };
            fields.push(Arc::new(datafusion::arrow::datatypes::Field::new(
                format!("__prev{back}_{c}"),
                batch.column(c).data_type().clone(),
                true,
            )));
            columns.push(array);
        }
        let augmented = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        // Conditions that read only the row (and PREV) are evaluated for the whole batch.
        let holds: Vec<Option<BooleanArray>> = self
            .spec
            .defines
            .iter()
            .zip(&self.spec.define_ctx)
            .map(|(d, uses)| match d {
                Some(e) if uses.is_empty() => {
                    let a = e.evaluate(&augmented)?.into_array(n)?;
                    Ok(Some(a.as_boolean().clone()))
                }
                _ => Ok(None),
            })
            .collect::<Result<_>>()?;

        let mut matches = Vec::new();
        for &(s, e) in &runs {
            let key: Box<[u8]> = key_at(s).into();
            let state = self
                .keys
                .get_mut(&key)
                .ok_or_else(|| EngineError::Internal("partition vanished".into()))?;
            state.last_time = state.last_time.max(times[e - 1]);
            for (i, &time) in times.iter().enumerate().take(e).skip(s) {
                state.rows.push_back((Arc::clone(&batch), i as u32));
                let KeyState {
                    matcher,
                    rows,
                    first,
                    ..
                } = &mut *state;
                let current = matcher.next_row();
                let mut conditions = RowConditions {
                    spec: &self.spec,
                    holds: &holds,
                    augmented: &augmented,
                    row: i,
                    rows,
                    first: *first,
                    current,
                    error: None,
                };
                matcher.push(time, &mut conditions, &mut matches);
                if let Some(e) = conditions.error {
                    return Err(e);
                }
                if matcher.failed.take().is_some() {
                    return Err(skip_failed(&self.spec));
                }
                state.pending.extend(matches.drain(..));
                measure_ready(&self.spec, state, self.look_ahead, false, found)?;
            }
            for (h, &(c, back)) in self.prev_columns.iter().enumerate() {
                let history = &mut state.history[h];
                for i in s..e {
                    history.push_back(ScalarValue::try_from_array(batch.column(c), i)?);
                    if history.len() > back as usize {
                        history.pop_front();
                    }
                }
            }
            if state.matcher.dropped > 0 && !state.warned {
                state.warned = true;
                warn!(
                    "MATCH_RECOGNIZE: a partition reached {} partial matches; the oldest are dropped",
                    self.spec.max_partial_matches
                );
            }
            release_rows(
                state,
                &mut self.held,
                self.keep_back,
                self.spec.with_unmatched_rows(),
            );
        }
        Ok(())
    }

    /// Lets every partition know the watermark (WITHIN) or the end of input.
    fn advance(&mut self, watermark: Millis, found: &mut Vec<Found>) -> Result<()> {
        if watermark != END_OF_TIME && self.spec.within.is_none() {
            return Ok(());
        }
        let mut matches = Vec::new();
        // The rows of each partition that has some, in the order of the partitions' keys, so
        // that the output does not depend on the order of a hash map.
        let mut rows: Vec<(&[u8], Vec<Found>)> = Vec::new();
        for (key, state) in self.keys.iter_mut() {
            if state.matcher.is_idle() && state.pending.is_empty() {
                continue;
            }
            let end = watermark == END_OF_TIME;
            if end {
                state.matcher.finish(&mut matches);
            } else {
                state.matcher.advance(watermark, &mut matches);
            }
            if state.matcher.failed.take().is_some() {
                return Err(skip_failed(&self.spec));
            }
            state.pending.extend(matches.drain(..));
            // At the end, rows a match's NEXT reads will never come: they are NULL.
            let mut mine = Vec::new();
            measure_ready(&self.spec, state, self.look_ahead, end, &mut mine)?;
            release_rows(
                state,
                &mut self.held,
                self.keep_back,
                self.spec.with_unmatched_rows(),
            );
            if !mine.is_empty() {
                rows.push((key, mine));
            }
        }
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        found.extend(rows.into_iter().flat_map(|(_, f)| f));
        Ok(())
    }
}

/// The error of a match `AFTER MATCH SKIP TO FIRST/LAST var` cannot skip from, as the standard
/// has it.
fn skip_failed(spec: &MatchSpec) -> EngineError {
    let (which, v) = match spec.skip {
        SkipTo::FirstOf(v) => ("FIRST", v),
        SkipTo::LastOf(v) => ("LAST", v),
        _ => return EngineError::Internal("a skip that cannot fail failed".into()),
    };
    let var = spec.vars.get(v).map_or("?", String::as_str);
    EngineError::DataFusion(datafusion::error::DataFusionError::Execution(format!(
        "MATCH_RECOGNIZE: AFTER MATCH SKIP TO {which} {var}: a match maps no row to {var}, or only \
         its first row (matching would start there again); the SQL standard makes this an error: \
         skip to a variable every match maps after its first row"
    )))
}

/// Measures the partition's pending matches, oldest first, whose `look_ahead` rows after their
/// last row have come (all of them when `all`); with `WITH UNMATCHED ROWS`, outputs the rows no
/// match can map any more, in their place among the matches' rows.
fn measure_ready(
    spec: &MatchSpec,
    state: &mut KeyState,
    look_ahead: u64,
    all: bool,
    found: &mut Vec<Found>,
) -> Result<()> {
    let with_unmatched = spec.with_unmatched_rows();
    while let Some(m) = state.pending.front() {
        let end = m.rows.last().map_or(m.start, |r| r.0);
        if !all && end.saturating_add(look_ahead) >= state.matcher.next_row() {
            break;
        }
        let Some(m) = state.pending.pop_front() else {
            break;
        };
        if with_unmatched {
            unmatched_before(spec, state, m.start, found)?;
        }
        measure(spec, state, &m, found)?;
        // The rows of a match, and the row where an empty match was found, are matched.
        let covered = m.rows.last().map_or(m.start, |r| r.0) + 1;
        state.covered_until = state.covered_until.max(covered);
    }
    if with_unmatched {
        // No match found later can start before the oldest row the matcher still needs.
        let decided = state
            .pending
            .front()
            .map_or_else(|| state.matcher.oldest_needed(), |m| m.start);
        unmatched_before(spec, state, decided, found)?;
    }
    Ok(())
}

/// Outputs the rows not yet classified before `upto` that no match covers.
fn unmatched_before(
    spec: &MatchSpec,
    state: &mut KeyState,
    upto: u64,
    found: &mut Vec<Found>,
) -> Result<()> {
    for seq in state.classified.max(state.covered_until)..upto {
        found.push(unmatched(spec, state, seq)?);
    }
    state.classified = state.classified.max(upto);
    Ok(())
}

impl Operator for MatchRecognize {
    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.buffer.snapshot(state)?;
        self.snapshot_partitions(state)
    }

    fn restore(&mut self, state: &mut StateReader) -> Result<()> {
        self.buffer.restore(state)?;
        self.restore_partitions(state)
    }

    fn describe(&self) -> String {
        format!(
            "match_recognize over [{}], variables {}, {} partial matches at most per partition{}{}; rows in event-time order once the watermark passes them",
            self.spec
                .partition
                .iter()
                .map(|c| format!("#{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.spec.vars.join(", "),
            self.spec.max_partial_matches,
            self.spec
                .within
                .map(|w| format!(", within {}", crate::time::show_duration(w)))
                .unwrap_or_default(),
            match self.spec.rows_per_match {
                MatchRows::OneRow => "",
                MatchRows::AllRows { .. } => ", all rows per match",
            }
        )
    }

    /// Rows waiting, rows and partial matches of the partitions, and the partitions themselves
    /// (each keeps its `PREV` history and match count): a flood of new keys counts.
    fn state_rows(&self) -> usize {
        self.buffer.rows() + self.held + self.keys.len()
    }

    fn state_bytes(&self) -> usize {
        let partitions: usize = self
            .keys
            .iter()
            .map(|(bytes, k)| {
                let history: usize = k
                    .history
                    .iter()
                    .map(|h| {
                        // Values of one column: each taken to be the size of the oldest.
                        let heap = h.front().map_or(0, |v| v.size() - size_of::<ScalarValue>());
                        h.capacity() * size_of::<ScalarValue>() + h.len() * heap
                    })
                    .sum();
                bytes.len()
                    + k.rows.capacity() * size_of::<(Arc<RecordBatch>, u32)>()
                    + history
                    + ScalarValue::size_of_vec(&k.key)
                    + k.matcher.bytes()
                    + k.pending
                        .iter()
                        .map(|m| size_of::<Match>() + m.rows.capacity() * size_of::<(u64, usize)>())
                        .sum::<usize>()
            })
            .sum();
        let rows = super::shared_batches_bytes(
            self.keys
                .values()
                .flat_map(|k| k.rows.iter().map(|(b, _)| b)),
        );
        super::map_bytes(&self.keys) + partitions + rows + self.buffer.bytes()
    }

    fn release_keys_idle_since(&mut self, before: Millis) {
        let held = &mut self.held;
        self.keys.retain(|_, k| {
            // Partial matches of a key gone quiet go with it; a found match still undecided
            // keeps its partition until it is decided.
            let keep =
                k.matcher.has_undecided_match() || !k.pending.is_empty() || k.last_time >= before;
            if !keep {
                *held -= k.counted;
            }
            keep
        });
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Vec<Message>) -> Result<()> {
        self.buffer.push(batch)
    }

    fn process_watermark(&mut self, watermark: Millis, out: &mut Vec<Message>) -> Result<()> {
        let mut found = Vec::new();
        if let Some(ready) = self.buffer.take_ready(watermark)? {
            self.process(ready, &mut found)?;
        }
        self.advance(watermark, &mut found)?;
        if !found.is_empty() {
            out.push(Message::Batch(emit(&self.spec, found)?));
        }
        // Held back to the earliest row still to be output, never going back.
        let all_rows = matches!(self.spec.rows_per_match, MatchRows::AllRows { .. });
        let unmatched = self.spec.with_unmatched_rows();
        let hold = self
            .keys
            .values()
            .filter_map(|k| output_hold(k, all_rows, unmatched))
            .min();
        let passed = hold
            .map_or(watermark, |h| h.min(watermark))
            .max(self.emitted);
        self.emitted = passed;
        out.push(Message::Watermark(passed));
        Ok(())
    }
}
