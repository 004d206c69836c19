//! Windowed `GROUP BY` over `TUMBLE` and `HOP`.
//!
//! Rows go into panes, slices of gcd(size, slide) aligned to the epoch: each row touches exactly one
//! pane, whatever the window's size and slide. A tumbling window is a single pane and is evaluated
//! directly. For a hopping window, a pane is sealed into its accumulators' intermediate state once
//! the watermark passes its end, and each window is merged from the states of its panes when the
//! watermark passes the window's end. Every window fires exactly once; rows of a window are emitted
//! together, with `window_end - 1ms` as their event time.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, RecordBatch, TimestampMillisecondArray, UInt32Array, UInt64Array,
    new_null_array,
};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;

use super::accumulators::{AggregateCall, KeyGroups};
use super::{Operator, event_times};
use crate::checkpoint::{StateReader, StateWriter, expect_types};
use crate::error::Result;
use crate::message::Message;
use crate::time::{Millis, align_at, gcd, show_duration};

/// The windows of a window aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumble {
        size: Millis,
    },
    Hop {
        size: Millis,
        slide: Millis,
    },
    /// Windows that grow by `step` from the start of each `size` period to its end, each firing
    /// at its end: `[p, p + step)`, `[p, p + 2 step)`, ... `[p, p + size)`.
    Cumulate {
        step: Millis,
        size: Millis,
    },
    /// Readings of a key at most `gap` apart; see [`super::SessionAggregate`].
    Session {
        gap: Millis,
    },
}

impl WindowKind {
    pub fn size(&self) -> Millis {
        match *self {
            Self::Tumble { size } | Self::Hop { size, .. } | Self::Cumulate { size, .. } => size,
            Self::Session { gap } => gap,
        }
    }

    /// The length of a pane: every window is a whole number of panes.
    pub fn pane(&self) -> Millis {
        match *self {
            Self::Tumble { size } => size,
            Self::Hop { size, slide } => gcd(size, slide),
            Self::Cumulate { step, .. } => step,
            Self::Session { gap } => gap,
        }
    }

    /// True when a row's window is known only once rows are aggregated (a row is in several
    /// HOP or CUMULATE windows; a session's bounds depend on the rows around it).
    pub fn assigned_by_aggregate(&self) -> bool {
        !matches!(self, Self::Tumble { .. })
    }
}

/// Where each output column of a window aggregate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputColumn {
    Key(usize),
    WindowStart,
    WindowEnd,
    /// `window_end - 1ms`, Flink's `window_time`.
    WindowTime,
    Aggregate(usize),
}

/// Accumulators of one pane (or of one tumbling window) that still takes rows.
struct OpenPane {
    groups: KeyGroups,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
}

/// A pane the watermark has passed: its keys and its accumulators' intermediate states.
struct SealedPane {
    keys: Vec<ArrayRef>,
    states: Vec<Vec<ArrayRef>>,
    groups: usize,
}

pub struct WindowAggregate {
    kind: WindowKind,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    key_schema: SchemaRef,
    calls: Vec<AggregateCall>,
    layout: Vec<OutputColumn>,
    /// Output schema, with the event-time column last.
    schema: SchemaRef,
    open: BTreeMap<Millis, OpenPane>,
    sealed: BTreeMap<Millis, SealedPane>,
    last_fired: Option<Millis>,
    /// Where windows start, from the epoch: Flink's window offset (0 by default).
    offset: Millis,
    /// `GROUPING SETS`, `ROLLUP`, `CUBE`: rows are added once per set (see [`GroupingSets`]).
    grouping_sets: Option<GroupingSets>,
    group_indices: Vec<usize>,
}

/// The sets of a `GROUP BY ... GROUPING SETS (...)`: each set groups by some of the keys, the
/// others null. The last key is the set's grouping id (DataFusion's `__grouping_id`: a bit per
/// grouping expression, set where the expression is left out), which keeps the sets' groups apart
/// when their keys are equal.
#[derive(Debug, Clone)]
pub struct GroupingSets {
    /// Per set: whether each key (the grouping id left out) is in it, and the set's id.
    pub sets: Vec<(Vec<bool>, u64)>,
    /// The grouping id's type.
    pub id_type: DataType,
}

impl WindowAggregate {
    pub fn new(
        kind: WindowKind,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        key_schema: SchemaRef,
        calls: Vec<AggregateCall>,
        layout: Vec<OutputColumn>,
        schema: SchemaRef,
    ) -> Self {
        Self {
            kind,
            keys,
            key_schema,
            calls,
            layout,
            schema,
            open: BTreeMap::new(),
            sealed: BTreeMap::new(),
            last_fired: None,
            offset: 0,
            grouping_sets: None,
            group_indices: Vec::new(),
        }
    }

    /// Groups by each of `sets` in turn; the key schema's last field is the grouping id.
    pub fn with_grouping_sets(mut self, sets: GroupingSets) -> Self {
        self.grouping_sets = Some(sets);
        self
    }

    /// The keys of each grouping set for rows whose keys are `keys` (just `keys` without sets).
    fn key_sets(&self, keys: Vec<ArrayRef>, rows: usize) -> Result<Vec<Vec<ArrayRef>>> {
        let Some(grouping) = &self.grouping_sets else {
            return Ok(vec![keys]);
        };
        grouping
            .sets
            .iter()
            .map(|(present, id)| {
                let mut set: Vec<ArrayRef> = keys
                    .iter()
                    .zip(present)
                    .map(|(k, &p)| {
                        if p {
                            Arc::clone(k)
                        } else {
                            new_null_array(k.data_type(), rows)
                        }
                    })
                    .collect();
                let id: ArrayRef = Arc::new(UInt64Array::from_value(*id, rows));
                set.push(cast(&id, &grouping.id_type)?);
                Ok(set)
            })
            .collect()
    }

    /// Panes and windows held, and the bytes of their keys (for tests of bounded state).
    pub fn state_size(&self) -> (usize, usize) {
        let bytes = self.open.values().map(|p| p.groups.size()).sum::<usize>()
            + self
                .sealed
                .values()
                .flat_map(|p| p.keys.iter().chain(p.states.iter().flatten()))
                .map(|a| a.get_array_memory_size())
                .sum::<usize>();
        (self.open.len() + self.sealed.len(), bytes)
    }

    fn new_accumulators(&self) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
        self.calls
            .iter()
            .map(AggregateCall::new_accumulator)
            .collect()
    }

    /// Adds the rows of `batch`, grouped by `keys`, to their panes.
    fn add_rows(&mut self, batch: &RecordBatch, keys: &[ArrayRef]) -> Result<()> {
        let rows = batch.num_rows();
        let inputs = self
            .calls
            .iter()
            .map(|c| c.inputs(batch))
            .collect::<Result<Vec<_>>>()?;
        let filters = self
            .calls
            .iter()
            .map(|c| c.filter_mask(batch))
            .collect::<Result<Vec<_>>>()?;
        let times = event_times(batch)?;
        let pane = self.kind.pane();
        let (min, max) = times
            .iter()
            .fold((Millis::MAX, Millis::MIN), |(lo, hi), &t| {
                (lo.min(t), hi.max(t))
            });
        let offset = self.offset;
        if align_at(min, pane, offset) == align_at(max, pane, offset) {
            return self.update(align_at(min, pane, offset), keys, &inputs, &filters, rows);
        }
        // Rows of several panes (out-of-order input, or a batch across a pane boundary).
        let mut by_pane: BTreeMap<Millis, Vec<u32>> = BTreeMap::new();
        for (i, &t) in times.iter().enumerate() {
            by_pane
                .entry(align_at(t, pane, offset))
                .or_default()
                .push(i as u32);
        }
        for (start, indices) in by_pane {
            let indices = UInt32Array::from(indices);
            let n = indices.len();
            let pick = |a: &ArrayRef| Ok(take(a.as_ref(), &indices, None)?);
            let keys = keys.iter().map(pick).collect::<Result<Vec<_>>>()?;
            let inputs = inputs
                .iter()
                .map(|v| v.iter().map(pick).collect::<Result<Vec<_>>>())
                .collect::<Result<Vec<_>>>()?;
            let filters = filters
                .iter()
                .map(|f| match f {
                    Some(f) => Ok(Some(
                        datafusion::arrow::array::AsArray::as_boolean(
                            take(f, &indices, None)?.as_ref(),
                        )
                        .clone(),
                    )),
                    None => Ok(None),
                })
                .collect::<Result<Vec<_>>>()?;
            self.update(start, &keys, &inputs, &filters, n)?;
        }
        Ok(())
    }

    /// Adds rows (all in the pane starting at `pane_start`) to that pane.
    fn update(
        &mut self,
        pane_start: Millis,
        keys: &[ArrayRef],
        inputs: &[Vec<ArrayRef>],
        filters: &[Option<BooleanArray>],
        rows: usize,
    ) -> Result<()> {
        let pane = match self.open.entry(pane_start) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => v.insert(OpenPane {
                groups: KeyGroups::new(&self.key_schema)?,
                accumulators: self
                    .calls
                    .iter()
                    .map(AggregateCall::new_accumulator)
                    .collect::<Result<_>>()?,
            }),
        };
        pane.groups.intern(keys, rows, &mut self.group_indices)?;
        let total = pane.groups.len();
        for ((acc, values), filter) in pane.accumulators.iter_mut().zip(inputs).zip(filters) {
            acc.update_batch(values, &self.group_indices, filter.as_ref(), total)?;
        }
        Ok(())
    }

    fn output(
        &self,
        keys: &[ArrayRef],
        aggregates: &[ArrayRef],
        rows: usize,
        start: Millis,
        end: Millis,
    ) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.layout.len() + 1);
        for c in &self.layout {
            columns.push(match *c {
                OutputColumn::Key(i) => Arc::clone(&keys[i]),
                OutputColumn::WindowStart => {
                    Arc::new(TimestampMillisecondArray::from_value(start, rows))
                }
                OutputColumn::WindowEnd => {
                    Arc::new(TimestampMillisecondArray::from_value(end, rows))
                }
                OutputColumn::WindowTime => {
                    Arc::new(TimestampMillisecondArray::from_value(end - 1, rows))
                }
                OutputColumn::Aggregate(j) => Arc::clone(&aggregates[j]),
            });
        }
        columns.push(Arc::new(TimestampMillisecondArray::from_value(
            end - 1,
            rows,
        )));
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    fn fire_pane(
        &self,
        mut pane: OpenPane,
        start: Millis,
        end: Millis,
    ) -> Result<Option<RecordBatch>> {
        let rows = pane.groups.len();
        if rows == 0 {
            return Ok(None);
        }
        let keys = pane.groups.emit()?;
        let aggregates = pane
            .accumulators
            .iter_mut()
            .map(|a| a.evaluate(EmitTo::All))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        self.output(&keys, &aggregates, rows, start, end).map(Some)
    }

    /// Merges the sealed panes of `[start, end)` into one window and evaluates it.
    fn fire_window(&mut self, start: Millis, end: Millis) -> Result<Option<RecordBatch>> {
        let mut groups = KeyGroups::new(&self.key_schema)?;
        let mut accumulators = self.new_accumulators()?;
        for pane in self.sealed.range(start..end).map(|(_, p)| p) {
            groups.intern(&pane.keys, pane.groups, &mut self.group_indices)?;
            let total = groups.len();
            for (acc, state) in accumulators.iter_mut().zip(&pane.states) {
                acc.merge_batch(state, &self.group_indices, total)?;
            }
        }
        let rows = groups.len();
        if rows == 0 {
            return Ok(None);
        }
        let keys = groups.emit()?;
        let aggregates = accumulators
            .iter_mut()
            .map(|a| a.evaluate(EmitTo::All))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        self.output(&keys, &aggregates, rows, start, end).map(Some)
    }

    /// Windows that start at `offset` (and every slide or size from it) rather than at the epoch.
    pub fn with_offset(mut self, offset: Millis) -> Self {
        self.offset = offset;
        self
    }

    /// Seals the open panes that end at or before `watermark`: no row of theirs can come any more.
    fn seal_panes_before(&mut self, watermark: Millis) -> Result<()> {
        let pane = self.kind.pane();
        while let Some(entry) = self.open.first_entry() {
            let start = *entry.key();
            if start.saturating_add(pane) > watermark {
                break;
            }
            let sealed = Self::seal(entry.remove())?;
            self.sealed.insert(start, sealed);
        }
        Ok(())
    }

    fn seal(mut pane: OpenPane) -> Result<SealedPane> {
        let groups = pane.groups.len();
        let keys = pane.groups.emit()?;
        let states = pane
            .accumulators
            .iter_mut()
            .map(|a| a.state(EmitTo::All))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        Ok(SealedPane {
            keys,
            states,
            groups,
        })
    }
}

impl WindowAggregate {
    /// A sealed pane as one batch: a group number, the key columns, then each accumulator's
    /// state columns.
    fn pane_batch(&self, pane: &SealedPane) -> Result<RecordBatch> {
        let mut columns: Vec<(String, ArrayRef)> = vec![(
            "group".into(),
            Arc::new(UInt32Array::from_iter_values(0..pane.groups as u32)),
        )];
        for (f, k) in self.key_schema.fields().iter().zip(&pane.keys) {
            columns.push((format!("key {}", f.name()), Arc::clone(k)));
        }
        for (i, state) in pane.states.iter().enumerate() {
            for (j, a) in state.iter().enumerate() {
                columns.push((format!("state {i}.{j}"), Arc::clone(a)));
            }
        }
        Ok(RecordBatch::try_from_iter(columns)?)
    }

    /// A pane back from [`Self::pane_batch`], checked against the keys and aggregates.
    fn pane_from_batch(&self, batch: &RecordBatch) -> Result<SealedPane> {
        let what = "a window pane";
        let mut types = vec![DataType::UInt32];
        types.extend(
            self.key_schema
                .fields()
                .iter()
                .map(|f| f.data_type().clone()),
        );
        let mut widths = Vec::with_capacity(self.calls.len());
        for c in &self.calls {
            let fields = c.expr.state_fields()?;
            widths.push(fields.len());
            types.extend(fields.iter().map(|f| f.data_type().clone()));
        }
        expect_types(batch.columns(), types.iter(), what)?;
        let k = self.key_schema.fields().len();
        let mut at = 1 + k;
        let mut states = Vec::with_capacity(self.calls.len());
        for n in widths {
            states.push(batch.columns()[at..at + n].to_vec());
            at += n;
        }
        Ok(SealedPane {
            keys: batch.columns()[1..1 + k].to_vec(),
            states,
            groups: batch.num_rows(),
        })
    }

    /// An open pane rebuilt from its sealed state, to take more rows.
    fn reopen(&mut self, pane: &SealedPane) -> Result<OpenPane> {
        let mut groups = KeyGroups::new(&self.key_schema)?;
        let mut accumulators = self.new_accumulators()?;
        groups.intern(&pane.keys, pane.groups, &mut self.group_indices)?;
        let total = groups.len();
        for (acc, state) in accumulators.iter_mut().zip(&pane.states) {
            acc.merge_batch(state, &self.group_indices, total)?;
        }
        Ok(OpenPane {
            groups,
            accumulators,
        })
    }
}

impl Operator for WindowAggregate {
    /// Open panes are sealed to write them (their accumulators' state is taken out), then
    /// reopened from what was written.
    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        let open: Vec<Millis> = self.open.keys().copied().collect();
        let sealed: Vec<Millis> = self.sealed.keys().copied().collect();
        state.json(&(self.last_fired, &open, &sealed))?;
        for start in open {
            let Some(pane) = self.open.remove(&start) else {
                continue;
            };
            let pane = Self::seal(pane)?;
            state.batch(self.pane_batch(&pane)?);
            let reopened = self.reopen(&pane)?;
            self.open.insert(start, reopened);
        }
        for pane in self.sealed.values() {
            state.batch(self.pane_batch(pane)?);
        }
        Ok(())
    }

    fn restore(&mut self, state: &mut StateReader) -> Result<()> {
        let (last_fired, open, sealed): (Option<Millis>, Vec<Millis>, Vec<Millis>) =
            state.json()?;
        self.last_fired = last_fired;
        for start in open {
            let pane = self.pane_from_batch(&state.batch()?)?;
            let reopened = self.reopen(&pane)?;
            self.open.insert(start, reopened);
        }
        for start in sealed {
            let pane = self.pane_from_batch(&state.batch()?)?;
            self.sealed.insert(start, pane);
        }
        Ok(())
    }

    fn state_rows(&self) -> usize {
        self.open.values().map(|p| p.groups.len()).sum::<usize>()
            + self.sealed.values().map(|p| p.groups).sum::<usize>()
    }

    fn state_bytes(&self) -> usize {
        let open: usize = self
            .open
            .values()
            .map(|p| p.groups.size() + p.accumulators.iter().map(|a| a.size()).sum::<usize>())
            .sum();
        let sealed: usize = self
            .sealed
            .values()
            .flat_map(|p| p.keys.iter().chain(p.states.iter().flatten()))
            .map(|a| a.get_array_memory_size())
            .sum();
        open + sealed
    }

    fn describe(&self) -> String {
        let window = match self.kind {
            WindowKind::Tumble { size } => format!("TUMBLE size {}", show_duration(size)),
            WindowKind::Hop { size, slide } => format!(
                "HOP size {} slide {} (panes of {})",
                show_duration(size),
                show_duration(slide),
                show_duration(self.kind.pane())
            ),
            WindowKind::Cumulate { step, size } => format!(
                "CUMULATE step {} max size {}",
                show_duration(step),
                show_duration(size)
            ),
            WindowKind::Session { gap } => format!("SESSION gap {}", show_duration(gap)),
        };
        let window = if self.offset == 0 {
            window
        } else {
            format!("{window} offset {}", show_duration(self.offset))
        };
        let keys: Vec<String> = self.keys.iter().map(|k| k.to_string()).collect();
        let calls: Vec<&str> = self.calls.iter().map(AggregateCall::name).collect();
        let sets = match &self.grouping_sets {
            Some(g) => format!(" in {} grouping sets", g.sets.len()),
            None => String::new(),
        };
        format!(
            "window aggregate {window}, keys [{}]{sets}, aggregates [{}], fires when the watermark passes window_end",
            keys.join(", "),
            calls.join(", ")
        )
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Vec<Message>) -> Result<()> {
        let rows = batch.num_rows();
        let keys = self
            .keys
            .iter()
            .map(|k| Ok(k.evaluate(&batch)?.into_array(rows)?))
            .collect::<Result<Vec<_>>>()?;
        for keys in self.key_sets(keys, rows)? {
            self.add_rows(&batch, &keys)?;
        }
        Ok(())
    }
    fn process_watermark(&mut self, watermark: Millis, out: &mut Vec<Message>) -> Result<()> {
        match self.kind {
            WindowKind::Tumble { size } => {
                while let Some(entry) = self.open.first_entry() {
                    let start = *entry.key();
                    let end = start.saturating_add(size);
                    if end > watermark {
                        break;
                    }
                    let pane = entry.remove();
                    if let Some(b) = self.fire_pane(pane, start, end)? {
                        out.push(Message::Batch(b));
                    }
                }
            }
            WindowKind::Session { .. } => {
                return Err(crate::error::EngineError::Internal(
                    "a session window planned as a pane window".into(),
                ));
            }
            WindowKind::Cumulate { step, size } => {
                self.seal_panes_before(watermark)?;
                while let Some(&first) = self.sealed.keys().next() {
                    // The period of the earliest sealed pane, and its next window to fire: the
                    // first that holds that pane, or the one after the last fired.
                    let period = align_at(first, size, self.offset);
                    let mut end = align_at(first, step, self.offset).saturating_add(step);
                    if let Some(last) = self.last_fired
                        && last >= end
                    {
                        end = last.saturating_add(step);
                    }
                    let period_end = period.saturating_add(size);
                    if end > period_end {
                        self.sealed = self.sealed.split_off(&period_end);
                        continue;
                    }
                    if end > watermark {
                        break;
                    }
                    if let Some(b) = self.fire_window(period, end)? {
                        out.push(Message::Batch(b));
                    }
                    self.last_fired = Some(end);
                    if end == period_end {
                        self.sealed = self.sealed.split_off(&period_end);
                    }
                }
            }
            WindowKind::Hop { size, slide } => {
                self.seal_panes_before(watermark)?;
                while let Some(&first) = self.sealed.keys().next() {
                    // The earliest window not fired yet that holds the earliest sealed pane.
                    let mut start = align_at(first - size + slide, slide, self.offset);
                    if let Some(last) = self.last_fired {
                        start = start.max(last + slide);
                    }
                    let end = start.saturating_add(size);
                    if end > watermark {
                        break;
                    }
                    if let Some(b) = self.fire_window(start, end)? {
                        out.push(Message::Batch(b));
                    }
                    self.last_fired = Some(start);
                    // Panes before the next window's start are in no window still to fire.
                    self.sealed = self.sealed.split_off(&(start + slide));
                }
            }
        }
        out.push(Message::Watermark(watermark));
        Ok(())
    }
}
