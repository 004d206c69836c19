//! `MATCH_RECOGNIZE` on a stream: rows wait until the watermark passes them, then each partition's
//! rows run, in event-time order, through that partition's [`Matcher`]. Conditions are evaluated
//! a batch at a time by DataFusion (with `PREV` values as extra columns); each match's measures
//! are computed from the rows it mapped, and evaluated by DataFusion over all matches at once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMillisecondArray,
};
use datafusion::arrow::compute::{cast, interleave_record_batch, take};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::row::RowConverter;
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;
use tracing::warn;

use super::partitioned::Partitioned;
use super::pattern::{
    Conditions, Match, Matcher, MatcherLimits, MatcherState, Program, SkipTo, Step,
};
use super::time_buffer::EventTimeBuffer;
use super::{Operator, event_times};
use crate::checkpoint::{StateReader, StateWriter, key_bytes, key_bytes_column, scalars_column};
use crate::error::{EngineError, Result};
use crate::runtime::Message;
use crate::time::{END_OF_TIME, Millis};

/// What a measure reads of a match.
#[derive(Debug, Clone)]
pub enum NavKind {
    First,
    Last,
    Aggregate(Arc<datafusion::physical_expr::aggregate::AggregateFunctionExpr>),
    CountRows,
    MatchNumber,
    Classifier,
}

#[derive(Debug, Clone)]
pub struct Nav {
    pub kind: NavKind,
    pub var: Option<usize>,
    pub column: Option<usize>,
    pub data_type: datafusion::arrow::datatypes::DataType,
}

/// Everything the operator needs of a planned `MATCH_RECOGNIZE`.
#[derive(Clone)]
pub struct MatchSpec {
    pub vars: Vec<String>,
    pub program: Arc<Program>,
    pub partition: Vec<usize>,
    pub prev: Vec<(usize, u32)>,
    pub defines: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// What conditions read of the partial match, and which of them each variable's reads.
    pub ctx: Vec<Nav>,
    pub define_ctx: Vec<Vec<usize>>,
    pub navs: Vec<Nav>,
    /// Over the partition columns, then one column per nav.
    pub measure_schema: SchemaRef,
    pub measures: Vec<Arc<dyn PhysicalExpr>>,
    pub skip: SkipTo,
    pub within: Option<Millis>,
    /// Output schema: partition columns, measures, then the event time.
    pub schema: SchemaRef,
    /// Partial matches alive at once per partition.
    pub max_partial_matches: usize,
}

struct KeyState {
    matcher: Matcher,
    /// The rows still needed, from sequence number `first`: their batch and index.
    rows: VecDeque<(Arc<RecordBatch>, u32)>,
    first: u64,
    /// The last values of the columns `PREV` reads, newest last.
    history: Vec<VecDeque<ScalarValue>>,
    key: Vec<ScalarValue>,
    matches: i64,
    warned: bool,
    /// Rows and partial matches held, as last counted into [`MatchRecognize::held`].
    counted: usize,
    /// The event time of the partition's newest row.
    last_time: Millis,
}

pub struct MatchRecognize {
    spec: MatchSpec,
    buffer: EventTimeBuffer,
    keys: HashMap<Box<[u8]>, KeyState>,
    converter: Option<RowConverter>,
    /// How many values back `PREV` reads, per column of `prev_columns`.
    prev_columns: Vec<(usize, u32)>,
    /// Variables whose rows some condition reads.
    read: Vec<bool>,
    /// Rows and partial matches all partitions hold: counted as they change, so that asking
    /// costs nothing however many partitions there are.
    held: usize,
}

/// A found match, with what its measures need.
struct Found {
    key: Vec<ScalarValue>,
    navs: Vec<ScalarValue>,
    time: Millis,
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
                match spec.ctx[c].var {
                    Some(x) => read[x] = true,
                    None => read.iter_mut().for_each(|r| *r = true),
                }
            }
            // A variable's own earlier rows are read when its condition aggregates over them.
            if !uses.is_empty() && spec.ctx.iter().any(|n| n.var == Some(v)) {
                read[v] = true;
            }
        }
        Self {
            spec,
            buffer: EventTimeBuffer::default(),
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
                for m in matches.drain(..) {
                    found.push(measure(&self.spec, state, &m)?);
                }
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
            release_rows(state, &mut self.held);
        }
        Ok(())
    }

    /// Lets every partition know the watermark (WITHIN) or the end of input.
    fn advance(&mut self, watermark: Millis, found: &mut Vec<Found>) -> Result<()> {
        if watermark != END_OF_TIME && self.spec.within.is_none() {
            return Ok(());
        }
        let mut matches = Vec::new();
        for state in self.keys.values_mut() {
            if state.matcher.is_idle() {
                continue;
            }
            if watermark == END_OF_TIME {
                state.matcher.finish(&mut matches);
            } else {
                state.matcher.advance(watermark, &mut matches);
            }
            for m in matches.drain(..) {
                found.push(measure(&self.spec, state, &m)?);
            }
            release_rows(state, &mut self.held);
        }
        Ok(())
    }

    fn emit(&self, found: Vec<Found>) -> Result<RecordBatch> {
        let n = found.len();
        let p = self.spec.partition.len();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(p + self.spec.navs.len());
        for k in 0..p {
            columns.push(ScalarValue::iter_to_array(
                found.iter().map(|f| f.key[k].clone()),
            )?);
        }
        for (j, nav) in self.spec.navs.iter().enumerate() {
            let a = ScalarValue::iter_to_array(found.iter().map(|f| f.navs[j].clone()))?;
            columns.push(if a.data_type() == &nav.data_type {
                a
            } else {
                cast(&a, &nav.data_type)?
            });
        }
        let inputs = RecordBatch::try_new(Arc::clone(&self.spec.measure_schema), columns)?;
        let mut out: Vec<ArrayRef> = inputs.columns()[..p].to_vec();
        for (m, field) in self
            .spec
            .measures
            .iter()
            .zip(self.spec.schema.fields().iter().skip(p))
        {
            let a = m.evaluate(&inputs)?.into_array(n)?;
            out.push(if a.data_type() == field.data_type() {
                a
            } else {
                cast(&a, field.data_type())?
            });
        }
        out.push(Arc::new(TimestampMillisecondArray::from(
            found.iter().map(|f| f.time).collect::<Vec<_>>(),
        )));
        Ok(RecordBatch::try_new(Arc::clone(&self.spec.schema), out)?)
    }
}

/// The conditions of one row: those that read only the row are looked up; those that read the
/// partial match are evaluated by DataFusion for all candidates of a variable at once, with the
/// values they read of each candidate's rows as extra columns.
struct RowConditions<'a> {
    spec: &'a MatchSpec,
    holds: &'a [Option<BooleanArray>],
    augmented: &'a RecordBatch,
    /// The row's index in `augmented`, and its sequence number in the partition.
    row: usize,
    rows: &'a VecDeque<(Arc<RecordBatch>, u32)>,
    first: u64,
    current: u64,
    error: Option<EngineError>,
}

impl RowConditions<'_> {
    fn value(&self, seq: u64, column: usize) -> Result<ScalarValue> {
        let (b, r) = stored_row(self.rows, self.first, seq)?;
        Ok(ScalarValue::try_from_array(b.column(column), r)?)
    }

    /// What `nav` reads of a partial match whose rows are `path`, the current row being
    /// mapped to `var` (it counts as one of `var`'s rows, and as a row of the match).
    fn context(&self, nav: &Nav, var: usize, path: Option<&Arc<Step>>) -> Result<ScalarValue> {
        let mut seqs: Vec<u64> = Step::iter(path)
            .filter(|s| nav.var.is_none_or(|v| v == s.var))
            .map(|s| s.row)
            .collect();
        seqs.reverse();
        if nav.var.is_none_or(|v| v == var) {
            seqs.push(self.current);
        }
        match &nav.kind {
            NavKind::MatchNumber | NavKind::Classifier => {
                Ok(ScalarValue::try_from(&nav.data_type)?)
            }
            _ => over_rows(nav, &seqs, |s, c| self.value(s, c)),
        }
    }

    /// Evaluates `var`'s condition for candidates with these paths.
    fn evaluate(&self, var: usize, paths: &[Option<&Arc<Step>>]) -> Result<Vec<bool>> {
        let Some(expr) = &self.spec.defines[var] else {
            return Ok(vec![true; paths.len()]);
        };
        let k = paths.len();
        let rows = datafusion::arrow::array::UInt32Array::from(vec![self.row as u32; k]);
        let mut columns: Vec<ArrayRef> = self
            .augmented
            .columns()
            .iter()
            .map(|c| Ok(take(c, &rows, None)?))
            .collect::<Result<_>>()?;
        let mut fields: Vec<_> = self.augmented.schema().fields().to_vec();
        for (c, nav) in self.spec.ctx.iter().enumerate() {
            let array = if self.spec.define_ctx[var].contains(&c) {
                let values = paths
                    .iter()
                    .map(|p| self.context(nav, var, *p))
                    .collect::<Result<Vec<_>>>()?;
                let a = ScalarValue::iter_to_array(values)?;
                if a.data_type() == &nav.data_type {
                    a
                } else {
                    cast(&a, &nav.data_type)?
                }
            } else {
                datafusion::arrow::array::new_null_array(&nav.data_type, k)
            };
            fields.push(Arc::new(datafusion::arrow::datatypes::Field::new(
                format!("__ctx{c}"),
                nav.data_type.clone(),
                true,
            )));
            columns.push(array);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        let result = expr.evaluate(&batch)?.into_array(k)?;
        let result = result.as_boolean();
        Ok((0..k)
            .map(|i| result.is_valid(i) && result.value(i))
            .collect())
    }
}

impl Conditions for RowConditions<'_> {
    fn eval(&mut self, candidates: &[(usize, Option<&Arc<Step>>)]) -> Vec<bool> {
        let mut out: Vec<bool> = candidates
            .iter()
            .map(|(v, _)| {
                self.holds[*v]
                    .as_ref()
                    .is_none_or(|h| h.is_valid(self.row) && h.value(self.row))
            })
            .collect();
        for v in 0..self.spec.vars.len() {
            if self.spec.define_ctx[v].is_empty() {
                continue;
            }
            let mine: Vec<usize> = (0..candidates.len())
                .filter(|&i| candidates[i].0 == v)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let paths: Vec<Option<&Arc<Step>>> = mine.iter().map(|&i| candidates[i].1).collect();
            match self.evaluate(v, &paths) {
                Ok(fits) => {
                    for (&i, f) in mine.iter().zip(fits) {
                        out[i] = f;
                    }
                }
                Err(e) => {
                    for &i in &mine {
                        out[i] = false;
                    }
                    self.error.get_or_insert(e);
                }
            }
        }
        out
    }
}

/// The stored row of sequence number `seq`.
fn stored_row(
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

/// Drops the rows no partial match or undecided match can still read, and brings the count of
/// what the partitions hold (`held`) up to date.
fn release_rows(state: &mut KeyState, held: &mut usize) {
    let keep_from = state.matcher.oldest_needed();
    while state.first < keep_from && !state.rows.is_empty() {
        state.rows.pop_front();
        state.first += 1;
    }
    let now = state.rows.len() + state.matcher.partial_matches();
    *held = *held + now - state.counted;
    state.counted = now;
}

/// The row of sequence number `seq`.
fn row_at(state: &KeyState, seq: u64) -> Result<(&RecordBatch, usize)> {
    stored_row(&state.rows, state.first, seq)
}

/// What `nav` reads of the rows `seqs` (in order): the first or last row's value, their count, or
/// an aggregate over them. `value_at(seq, column)` reads a stored row.
fn over_rows(
    nav: &Nav,
    seqs: &[u64],
    value_at: impl Fn(u64, usize) -> Result<ScalarValue>,
) -> Result<ScalarValue> {
    Ok(match &nav.kind {
        NavKind::First | NavKind::Last => {
            let seq = if matches!(nav.kind, NavKind::First) {
                seqs.first()
            } else {
                seqs.last()
            };
            match (seq, nav.column) {
                (Some(&s), Some(c)) => value_at(s, c)?,
                _ => ScalarValue::try_from(&nav.data_type)?,
            }
        }
        NavKind::CountRows => ScalarValue::Int64(Some(seqs.len() as i64)),
        NavKind::Aggregate(agg) => {
            let c = nav
                .column
                .ok_or_else(|| EngineError::Internal("aggregate without column".into()))?;
            let mut acc = agg.create_accumulator()?;
            if !seqs.is_empty() {
                let values = seqs
                    .iter()
                    .map(|&s| value_at(s, c))
                    .collect::<Result<Vec<_>>>()?;
                acc.update_batch(&[ScalarValue::iter_to_array(values)?])?;
            }
            acc.evaluate()?
        }
        NavKind::MatchNumber | NavKind::Classifier => ScalarValue::try_from(&nav.data_type)?,
    })
}

/// The values a match's measures read.
fn measure(spec: &MatchSpec, state: &mut KeyState, m: &Match) -> Result<Found> {
    state.matches += 1;
    let mut navs = Vec::with_capacity(spec.navs.len());
    for nav in &spec.navs {
        let rows: Vec<u64> = m
            .rows
            .iter()
            .filter(|(_, v)| nav.var.is_none_or(|x| x == *v))
            .map(|(r, _)| *r)
            .collect();
        let value_at = |seq: u64, column: usize| -> Result<ScalarValue> {
            let (b, r) = row_at(state, seq)?;
            Ok(ScalarValue::try_from_array(b.column(column), r)?)
        };
        let v = match &nav.kind {
            NavKind::MatchNumber => ScalarValue::Int64(Some(state.matches)),
            NavKind::Classifier => match m.rows.last() {
                Some((_, v)) => ScalarValue::Utf8(Some(spec.vars[*v].to_uppercase())),
                None => ScalarValue::Utf8(None),
            },
            _ => over_rows(nav, &rows, value_at)?,
        };
        navs.push(v);
    }
    let time_seq = m.rows.last().map_or(m.start, |r| r.0);
    let (b, r) = row_at(state, time_seq)?;
    let time = event_times(b)?[r];
    Ok(Found {
        key: state.key.clone(),
        navs,
        time,
    })
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
}

impl MatchRecognize {
    fn new_partition(&self, key: Vec<ScalarValue>) -> KeyState {
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
        }
    }
}

impl Operator for MatchRecognize {
    /// Per partition: its key, the rows still needed, the PREV history, the matcher's partial
    /// matches and counters.
    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.buffer.snapshot(state)?;
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

    fn restore(&mut self, state: &mut StateReader) -> Result<()> {
        self.buffer.restore(state)?;
        let meta: Vec<PartitionState> = state.json()?;
        if meta.is_empty() {
            return Ok(());
        }
        let unfit = || EngineError::Checkpoint("the MATCH_RECOGNIZE state does not fit".into());
        let keys_part = state.batch()?;
        let keys = key_bytes(keys_part.column(0))?;
        if keys.len() != meta.len() || keys_part.num_columns() != 1 + self.spec.partition.len() {
            return Err(unfit());
        }
        let total_rows: usize = meta.iter().map(|m| m.rows).sum();
        let rows = if total_rows > 0 {
            Some(Arc::new(state.batch()?))
        } else {
            None
        };
        let mut history = Vec::with_capacity(self.prev_columns.len());
        for h in 0..self.prev_columns.len() {
            let total: usize = meta
                .iter()
                .map(|m| m.history.get(h).copied().unwrap_or(0))
                .sum();
            history.push(if total > 0 {
                Some(Arc::clone(state.batch()?.column(0)))
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
            p.warned = m.warned;
            p.matcher.restore(m.matcher);
            if m.rows > 0 {
                let batch = rows.as_ref().ok_or_else(unfit)?;
                for _ in 0..m.rows {
                    p.rows.push_back((Arc::clone(batch), row_at));
                    row_at += 1;
                }
            }
            for (h, n) in m.history.into_iter().enumerate() {
                let column = history.get(h).and_then(Option::as_ref).filter(|_| n > 0);
                for _ in 0..n {
                    let c = column.ok_or_else(unfit)?;
                    p.history[h].push_back(ScalarValue::try_from_array(c, history_at[h])?);
                    history_at[h] += 1;
                }
            }
            release_rows(&mut p, &mut self.held);
            self.keys.insert(bytes, p);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "match_recognize over [{}], variables {}, {} partial matches at most per partition{}; rows in event-time order once the watermark passes them",
            self.spec
                .partition
                .iter()
                .map(|c| format!("#{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.spec.vars.join(", ").to_uppercase(),
            self.spec.max_partial_matches,
            self.spec
                .within
                .map(|w| format!(", within {}", super::show_duration(w)))
                .unwrap_or_default()
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
            let keep = k.matcher.has_undecided_match() || k.last_time >= before;
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
            out.push(Message::Batch(self.emit(found)?));
        }
        out.push(Message::Watermark(watermark));
        Ok(())
    }
}
