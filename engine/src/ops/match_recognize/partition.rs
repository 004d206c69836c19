//! A partition's state: its matcher, the rows its partial and undecided matches may still read,
//! its `PREV` history and counters; and how all partitions go into a checkpoint and come back.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;

use super::MatchRecognize;
use super::pattern::{Match, Matcher, MatcherLimits, MatcherState};
use crate::checkpoint::{
    StateReader, StateWriter, expect_rows, expect_schema, expect_types, key_bytes,
    key_bytes_column, scalars_column, unfit,
};
use crate::error::{EngineError, Result};
use crate::ops::event_times;
use crate::time::Millis;

pub(super) struct KeyState {
    pub(super) matcher: Matcher,
    /// The rows still needed, from sequence number `first`: their batch and index.
    pub(super) rows: VecDeque<(Arc<RecordBatch>, u32)>,
    pub(super) first: u64,
    /// The last values of the columns `PREV` reads, newest last.
    pub(super) history: Vec<VecDeque<ScalarValue>>,
    pub(super) key: Vec<ScalarValue>,
    pub(super) matches: i64,
    pub(super) warned: bool,
    /// Rows and partial matches held, as last counted into [`MatchRecognize::held`].
    pub(super) counted: usize,
    /// The event time of the partition's newest row.
    pub(super) last_time: Millis,
    /// Matches decided whose measures read rows after them (`NEXT`) that have not come yet.
    pub(super) pending: VecDeque<Match>,
    /// WITH UNMATCHED ROWS: rows before this are output (in a match or unmatched) ...
    pub(super) classified: u64,
    /// ... and rows before this are in a match reported.
    pub(super) covered_until: u64,
}

/// The stored row of sequence number `seq`.
pub(super) fn stored_row(
    rows: &VecDeque<(Arc<RecordBatch>, u32)>,
    first: u64,
    seq: u64,
) -> Result<(&RecordBatch, usize)> {
    let i = seq
        .checked_sub(first)
        .ok_or_else(|| EngineError::Internal(format!("row {seq} was released too early")))?;
    let (b, r) = rows
        .get(i as usize)
        .ok_or_else(|| EngineError::Internal(format!("row {seq} is not held")))?;
    Ok((b.as_ref(), *r as usize))
}

/// Drops the rows no partial, undecided or pending match can still read (nor `PREV` up to
/// `keep_back` rows before them), nor rows to be output as unmatched, and brings the count of what the partitions hold (`held`) up to
/// date.
pub(super) fn release_rows(
    state: &mut KeyState,
    held: &mut usize,
    keep_back: u64,
    with_unmatched: bool,
) {
    let mut oldest = state.matcher.oldest_needed();
    if with_unmatched {
        // Rows not yet output as unmatched.
        oldest = oldest.min(state.classified);
    }
    let keep_from = state
        .pending
        .front()
        .map_or(oldest, |m| m.start.min(oldest))
        .saturating_sub(keep_back);
    while state.first < keep_from && !state.rows.is_empty() {
        state.rows.pop_front();
        state.first += 1;
    }
    let now = state.rows.len() + state.matcher.partial_matches() + state.pending.len();
    *held = *held + now - state.counted;
    state.counted = now;
}

/// The earliest event time of an output row the partition may still give: with `all_rows`, of
/// the oldest row a partial, undecided or pending match (or, `with_unmatched`, the unmatched rows)
/// may output; otherwise of the last row of an undecided or pending match (matches still to be
/// found end at rows to come). The operator's watermark waits for it, so that what it outputs
/// late is not late for the operators after it.
pub(super) fn output_hold(
    state: &KeyState,
    all_rows: bool,
    with_unmatched: bool,
) -> Option<Millis> {
    let seq = if all_rows {
        let mut seq = state.matcher.oldest_needed();
        if let Some(m) = state.pending.front() {
            seq = seq.min(m.start);
        }
        if with_unmatched {
            seq = seq.min(state.classified);
        }
        seq
    } else {
        state
            .matcher
            .undecided()
            .chain(&state.pending)
            .map(|m| m.rows.last().map_or(m.start, |r| r.0))
            .min()?
    };
    if seq >= state.matcher.next_row() {
        return None;
    }
    let (b, r) = row_at(state, seq).ok()?;
    event_times(b).ok().and_then(|t| t.get(r).copied())
}

/// The row of sequence number `seq`.
pub(super) fn row_at(state: &KeyState, seq: u64) -> Result<(&RecordBatch, usize)> {
    stored_row(&state.rows, state.first, seq)
}

/// What a checkpoint keeps of a partition besides its key and rows.
#[derive(serde::Serialize, serde::Deserialize)]
struct PartitionState {
    #[serde(default)]
    last_time: Millis,
    first: u64,
    matches: i64,
    warned: bool,
    rows: usize,
    history: Vec<usize>,
    matcher: MatcherState,
    /// Matches waiting for the rows their `NEXT` reads.
    #[serde(default)]
    pending: Vec<Match>,
    #[serde(default)]
    classified: u64,
    #[serde(default)]
    covered_until: u64,
}

impl MatchRecognize {
    pub(super) fn new_partition(&self, key: Vec<ScalarValue>) -> KeyState {
        KeyState {
            matcher: Matcher::reading(
                Arc::clone(&self.spec.program),
                self.spec.skip,
                MatcherLimits {
                    max_threads: self.spec.max_partial_matches,
                    within: self.spec.within,
                },
                self.read.clone(),
            ),
            rows: VecDeque::new(),
            first: 0,
            history: vec![VecDeque::new(); self.prev_columns.len()],
            key,
            matches: 0,
            warned: false,
            counted: 0,
            last_time: Millis::MIN,
            pending: VecDeque::new(),
            classified: 0,
            covered_until: 0,
        }
    }

    /// Per partition: its key, the rows still needed, the PREV history, the matcher's partial
    /// matches and counters.
    pub(super) fn snapshot_partitions(&mut self, state: &mut StateWriter) -> Result<()> {
        let parts: Vec<(&Box<[u8]>, &KeyState)> = self.keys.iter().collect();
        let meta: Vec<PartitionState> = parts
            .iter()
            .map(|(_, k)| PartitionState {
                last_time: k.last_time,
                first: k.first,
                matches: k.matches,
                warned: k.warned,
                rows: k.rows.len(),
                history: k.history.iter().map(VecDeque::len).collect(),
                matcher: k.matcher.state(),
                pending: k.pending.iter().cloned().collect(),
                classified: k.classified,
                covered_until: k.covered_until,
            })
            .collect();
        state.json(&meta)?;
        if parts.is_empty() {
            return Ok(());
        }
        let mut columns: Vec<(String, ArrayRef)> = vec![(
            "key".into(),
            key_bytes_column(parts.iter().map(|(b, _)| b.as_ref())),
        )];
        for k in 0..self.spec.partition.len() {
            if let Some(a) = scalars_column(parts.iter().map(|(_, p)| p.key[k].clone()).collect())?
            {
                columns.push((format!("key {k}"), a));
            }
        }
        state.batch(RecordBatch::try_from_iter(columns)?);
        let mut batches: Vec<&RecordBatch> = Vec::new();
        let mut index_of: HashMap<*const RecordBatch, usize> = HashMap::new();
        let mut rows = Vec::new();
        for (_, p) in &parts {
            for (b, r) in &p.rows {
                let i = *index_of.entry(Arc::as_ptr(b)).or_insert_with(|| {
                    batches.push(b.as_ref());
                    batches.len() - 1
                });
                rows.push((i, *r as usize));
            }
        }
        if !rows.is_empty() {
            state.batch(interleave_record_batch(&batches, &rows)?);
        }
        for h in 0..self.prev_columns.len() {
            let values: Vec<ScalarValue> = parts
                .iter()
                .flat_map(|(_, p)| p.history[h].iter().cloned())
                .collect();
            if let Some(a) = scalars_column(values)? {
                state.columns(vec![("value", a)])?;
            }
        }
        Ok(())
    }

    pub(super) fn restore_partitions(&mut self, state: &mut StateReader) -> Result<()> {
        let meta: Vec<PartitionState> = state.json()?;
        if meta.is_empty() {
            return Ok(());
        }
        let input = &self.spec.input;
        let what = "the partitions of a MATCH_RECOGNIZE";
        let keys_part = state.batch()?;
        let keys = key_bytes(&keys_part, what)?;
        expect_rows(&keys_part, meta.len(), what)?;
        let mut key_types = vec![DataType::Binary];
        key_types.extend(
            self.spec
                .partition
                .iter()
                .map(|&c| input.field(c).data_type().clone()),
        );
        expect_types(keys_part.columns(), key_types.iter(), what)?;
        let total_rows: usize = meta.iter().map(|m| m.rows).sum();
        let rows = if total_rows > 0 {
            let batch = state.batch()?;
            let what = "the rows a MATCH_RECOGNIZE holds";
            expect_schema(&batch, input, what)?;
            expect_rows(&batch, total_rows, what)?;
            Some(Arc::new(batch))
        } else {
            None
        };
        if meta
            .iter()
            .any(|m| m.history.len() != self.prev_columns.len())
        {
            return Err(unfit(what, "PREV histories of other columns"));
        }
        let mut history = Vec::with_capacity(self.prev_columns.len());
        for (h, &(c, _)) in self.prev_columns.iter().enumerate() {
            let total: usize = meta.iter().map(|m| m.history[h]).sum();
            history.push(if total > 0 {
                let part = state.batch()?;
                let what = "the PREV history of a MATCH_RECOGNIZE";
                expect_types(
                    part.columns(),
                    [input.field(c).data_type()].into_iter(),
                    what,
                )?;
                expect_rows(&part, total, what)?;
                Some(Arc::clone(part.column(0)))
            } else {
                None
            });
        }
        let mut row_at = 0u32;
        let mut history_at = vec![0usize; self.prev_columns.len()];
        for (i, (m, bytes)) in meta.into_iter().zip(keys).enumerate() {
            let key = keys_part.columns()[1..]
                .iter()
                .map(|k| ScalarValue::try_from_array(k, i))
                .collect::<datafusion::error::Result<_>>()?;
            let mut p = self.new_partition(key);
            p.first = m.first;
            p.last_time = m.last_time;
            p.matches = m.matches;
            p.classified = m.classified.max(m.first);
            p.covered_until = m.covered_until;
            p.warned = m.warned;
            p.matcher
                .restore(m.matcher)
                .map_err(|why| unfit(what, why))?;
            let vars = self.spec.vars.len();
            for pending in m.pending {
                if pending.rows.iter().any(|&(_, v)| v >= vars) {
                    return Err(unfit(
                        what,
                        "a pending match maps a row to an unknown variable",
                    ));
                }
                p.pending.push_back(pending);
            }
            if m.rows > 0 {
                let batch = rows
                    .as_ref()
                    .ok_or_else(|| unfit(what, "rows of a partition missing"))?;
                for _ in 0..m.rows {
                    p.rows.push_back((Arc::clone(batch), row_at));
                    row_at += 1;
                }
            }
            for (h, n) in m.history.into_iter().enumerate() {
                let column = history.get(h).and_then(Option::as_ref).filter(|_| n > 0);
                for _ in 0..n {
                    let c = column.ok_or_else(|| unfit(what, "a PREV history missing"))?;
                    p.history[h].push_back(ScalarValue::try_from_array(c, history_at[h])?);
                    history_at[h] += 1;
                }
            }
            release_rows(
                &mut p,
                &mut self.held,
                self.keep_back,
                self.spec.with_unmatched_rows(),
            );
            self.keys.insert(bytes, p);
        }
        Ok(())
    }
}
