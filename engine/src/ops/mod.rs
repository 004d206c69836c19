//! Operators: what a continuous query does to the batches that flow through it.
//!
//! Inside a pipeline every batch carries its rows' event time as its last column, named
//! [`EVENT_TIME_COLUMN`] (milliseconds): the expressions of the query address the columns before
//! it, row-level operators keep it aligned with the rows, and window operators read it.

mod accumulators;
mod filter;
mod interval_join;
mod lookup_join;
mod match_recognize;
mod over_window;
mod partitioned;
pub mod pattern;
mod project;
mod scan;
mod session_window;
mod time_buffer;
mod window_aggregate;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::TimestampMillisecondType;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::row::{RowConverter, SortField};

pub use accumulators::AggregateCall;
pub use filter::Filter;
pub use interval_join::IntervalJoin;
pub use lookup_join::{LookupJoin, TableRead, TableSnapshot};
pub use match_recognize::{MatchRecognize, MatchSpec, Nav, NavKind};
pub use over_window::{Frame, OverCall, OverWindow};
pub use project::Project;
pub use scan::{ScanColumn, ScanTime, SourceScan, WindowColumns};
pub use session_window::SessionAggregate;
pub use window_aggregate::{OutputColumn, WindowAggregate, WindowKind, show_duration};

use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{EngineError, Result};
use crate::runtime::Message;
use crate::time::{END_OF_TIME, Millis};

/// The hidden last column of every batch inside a pipeline.
pub const EVENT_TIME_COLUMN: &str = "_timestamp";

/// One step of a query.
pub trait Operator: Send {
    /// One line for the plan `eddy check` prints.
    fn describe(&self) -> String;

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Vec<Message>) -> Result<()>;

    /// Rows, groups or keys the operator holds (0 for stateless ones): what a long stream must not
    /// make grow without bound.
    fn state_rows(&self) -> usize {
        0
    }

    /// Memory the operator's state takes, in bytes, as Arrow and DataFusion count it (buffers,
    /// accumulators, keys): an estimate that walks the state, so the query asks now and then
    /// (`eddy run --max-state-bytes`).
    fn state_bytes(&self) -> usize {
        0
    }

    /// The watermark passed `watermark`; stateful operators emit what it completes.
    fn process_watermark(&mut self, watermark: Millis, out: &mut Vec<Message>) -> Result<()> {
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    /// Releases what the operator keeps for keys that have had no row since `before` (event
    /// time): `eddy run --key-idle-timeout`. A key that comes back afterwards starts afresh. State
    /// the watermark releases by itself (windows, sessions, join sides) is not touched.
    fn release_keys_idle_since(&mut self, _before: Millis) {}

    /// Writes what the operator holds into a checkpoint (stateless operators write nothing).
    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()>;

    /// Takes back what [`Self::snapshot`] wrote, into an operator that has seen no input yet.
    fn restore(&mut self, state: &mut StateReader) -> Result<()>;
}

/// A query's operators, run in the query's task: one branch of operators per input (a plain query
/// has one input; `UNION ALL` has several), then the operators after the inputs meet. The merged
/// stream's watermark is the smallest of the inputs' watermarks, and it ends when every input has.
pub struct Pipeline {
    branches: Vec<Branch>,
    operators: Vec<Box<dyn Operator>>,
    /// The schema batches take where the branches meet, when there are several.
    merged: Option<SchemaRef>,
    /// Where two branches meet in an interval join instead of a union.
    join: Option<IntervalJoin>,
}

struct Branch {
    operators: Vec<Box<dyn Operator>>,
    watermark: Option<Millis>,
    ended: bool,
}

impl Pipeline {
    /// A pipeline over one input.
    pub fn new(operators: Vec<Box<dyn Operator>>) -> Self {
        Self::with_branches(vec![Vec::new()], operators, None)
    }

    /// A pipeline over several inputs: `branches[i]` processes what input `i` sends, and its
    /// batches are given the schema `merged` before `operators` see them.
    pub fn with_branches(
        branches: Vec<Vec<Box<dyn Operator>>>,
        operators: Vec<Box<dyn Operator>>,
        merged: Option<SchemaRef>,
    ) -> Self {
        Self {
            branches: branches
                .into_iter()
                .map(|operators| Branch {
                    operators,
                    watermark: None,
                    ended: false,
                })
                .collect(),
            operators,
            merged,
            join: None,
        }
    }

    /// A pipeline whose two inputs meet in `join`.
    pub fn joined(
        left: Vec<Box<dyn Operator>>,
        right: Vec<Box<dyn Operator>>,
        join: IntervalJoin,
        operators: Vec<Box<dyn Operator>>,
    ) -> Self {
        let mut p = Self::with_branches(vec![left, right], operators, None);
        p.join = Some(join);
        p
    }

    /// The operators of each branch, then the operators after the branches meet.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let several = self.branches.len() > 1;
        for (i, b) in self.branches.iter().enumerate() {
            for op in &b.operators {
                if several {
                    lines.push(format!("[input {}] {}", i + 1, op.describe()));
                } else {
                    lines.push(op.describe());
                }
            }
        }
        match (&self.join, several) {
            (Some(j), _) => lines.push(j.describe()),
            (None, true) => lines.push(format!(
                "union of {} inputs (watermark: the smallest of theirs)",
                self.branches.len()
            )),
            (None, false) => {}
        }
        lines.extend(self.operators.iter().map(|op| op.describe()));
        lines
    }

    pub fn inputs(&self) -> usize {
        self.branches.len()
    }

    /// Rows, groups and keys held by every operator of the pipeline.
    pub fn state_rows(&self) -> usize {
        let join = self.join.as_ref().map_or(0, |j| {
            let (l, r) = j.state_size();
            l + r
        });
        self.branches
            .iter()
            .flat_map(|b| &b.operators)
            .chain(&self.operators)
            .map(|op| op.state_rows())
            .sum::<usize>()
            + join
    }

    /// Memory held by every operator of the pipeline: see [`Operator::state_bytes`].
    pub fn state_bytes(&self) -> usize {
        self.branches
            .iter()
            .flat_map(|b| &b.operators)
            .chain(&self.operators)
            .map(|op| op.state_bytes())
            .sum::<usize>()
            + self.join.as_ref().map_or(0, IntervalJoin::state_bytes)
    }

    /// Runs one message of input `input` through the pipeline; what comes out lands in `out`.
    pub fn push(&mut self, input: usize, message: Message, out: &mut Vec<Message>) -> Result<()> {
        let several = self.branches.len() > 1;
        let branch = self
            .branches
            .get_mut(input)
            .ok_or_else(|| EngineError::Internal(format!("no input {input} in the pipeline")))?;
        let from_branch = run(&mut branch.operators, vec![message])?;
        if !several {
            let result = run(&mut self.operators, from_branch)?;
            out.extend(result);
            return Ok(());
        }
        let mut merged = Vec::with_capacity(from_branch.len());
        if let Some(join) = &mut self.join {
            for m in from_branch {
                join.process(input, m, &mut merged)?;
            }
            let result = run(&mut self.operators, merged)?;
            out.extend(result);
            return Ok(());
        }
        for m in from_branch {
            match m {
                Message::Batch(b) => {
                    let b = match &self.merged {
                        Some(schema) => {
                            RecordBatch::try_new(Arc::clone(schema), b.columns().to_vec())?
                        }
                        None => b,
                    };
                    merged.push(Message::Batch(b));
                }
                Message::Watermark(w) => {
                    let before = self.watermark();
                    let branch = &mut self.branches[input];
                    branch.watermark = Some(branch.watermark.map_or(w, |old| old.max(w)));
                    if let Some(now) = self.watermark()
                        && before.is_none_or(|b| now > b)
                    {
                        merged.push(Message::Watermark(now));
                    }
                }
                Message::Barrier(_) => {
                    return Err(EngineError::Internal(
                        "a barrier inside a pipeline: the query task takes them".into(),
                    ));
                }
                Message::End => {
                    self.branches[input].ended = true;
                    if self.branches.iter().all(|b| b.ended) {
                        merged.push(Message::End);
                    } else if let Some(now) = self.watermark() {
                        merged.push(Message::Watermark(now));
                    }
                }
            }
        }
        let result = run(&mut self.operators, merged)?;
        out.extend(result);
        Ok(())
    }

    /// See [`Operator::release_keys_idle_since`].
    pub fn release_keys_idle_since(&mut self, before: Millis) {
        for op in self
            .branches
            .iter_mut()
            .flat_map(|b| &mut b.operators)
            .chain(&mut self.operators)
        {
            op.release_keys_idle_since(before);
        }
    }

    /// Writes the state of every operator, in pipeline order, and of the branches' watermarks.
    pub fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        let branches: Vec<(Option<Millis>, bool)> = self
            .branches
            .iter()
            .map(|b| (b.watermark, b.ended))
            .collect();
        state.json(&branches)?;
        for b in &mut self.branches {
            for op in &mut b.operators {
                op.snapshot(state)?;
            }
        }
        if let Some(j) = &mut self.join {
            j.snapshot(state)?;
        }
        for op in &mut self.operators {
            op.snapshot(state)?;
        }
        Ok(())
    }

    /// Takes back what [`Self::snapshot`] wrote, into a pipeline just planned.
    pub fn restore(&mut self, state: &mut StateReader) -> Result<()> {
        let branches: Vec<(Option<Millis>, bool)> = state.json()?;
        if branches.len() != self.branches.len() {
            return Err(EngineError::Checkpoint(format!(
                "the state has {} inputs, the query {}",
                branches.len(),
                self.branches.len()
            )));
        }
        for (b, (watermark, ended)) in self.branches.iter_mut().zip(branches) {
            b.watermark = watermark;
            b.ended = ended;
            for op in &mut b.operators {
                op.restore(state)?;
            }
        }
        if let Some(j) = &mut self.join {
            j.restore(state)?;
        }
        for op in &mut self.operators {
            op.restore(state)?;
        }
        Ok(())
    }

    /// The smallest watermark of the inputs still running; `None` until each has sent one.
    fn watermark(&self) -> Option<Millis> {
        self.branches
            .iter()
            .filter(|b| !b.ended)
            .map(|b| b.watermark)
            .try_fold(END_OF_TIME, |lo, w| w.map(|w| lo.min(w)))
    }
}

/// Runs messages through operators one after the other.
fn run(operators: &mut [Box<dyn Operator>], messages: Vec<Message>) -> Result<Vec<Message>> {
    let mut current = messages;
    for op in operators {
        let mut next = Vec::with_capacity(current.len());
        for m in current {
            match m {
                Message::Batch(b) if b.num_rows() == 0 => {}
                Message::Batch(b) => op.process_batch(b, &mut next)?,
                Message::Watermark(w) => op.process_watermark(w, &mut next)?,
                Message::End => {
                    op.process_watermark(END_OF_TIME, &mut next)?;
                    next.push(Message::End);
                }
                Message::Barrier(n) => next.push(Message::Barrier(n)),
            }
        }
        current = next;
    }
    Ok(current)
}

/// The field of the hidden event-time column.
pub fn event_time_field() -> Field {
    Field::new(
        EVENT_TIME_COLUMN,
        DataType::Timestamp(TimeUnit::Millisecond, None),
        false,
    )
}

/// `visible` plus the hidden event-time column: the schema of batches inside a pipeline.
pub fn with_event_time(visible: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = visible
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(event_time_field());
    Arc::new(Schema::new(fields))
}

/// The event times of a pipeline batch.
pub fn event_times(batch: &RecordBatch) -> Result<&[Millis]> {
    let last = batch
        .columns()
        .last()
        .ok_or_else(|| EngineError::Internal("a pipeline batch without columns".into()))?;
    last.as_primitive_opt::<TimestampMillisecondType>()
        .map(|a| a.values().as_ref())
        .ok_or_else(|| EngineError::Internal("a pipeline batch without event time".into()))
}

/// The row converter kept in `slot` (comparable bytes for maps keyed by several columns),
/// created on first use for the types of `like`.
pub(crate) fn row_converter<'a>(
    slot: &'a mut Option<RowConverter>,
    like: &[ArrayRef],
) -> Result<&'a RowConverter> {
    if let Some(c) = slot {
        return Ok(c);
    }
    let fields = like
        .iter()
        .map(|c| SortField::new(c.data_type().clone()))
        .collect();
    Ok(slot.insert(RowConverter::new(fields)?))
}

/// Bytes of the distinct batches among `batches` (rows held by reference keep their whole batch).
fn shared_batches_bytes<'a>(batches: impl Iterator<Item = &'a Arc<RecordBatch>>) -> usize {
    let mut seen = std::collections::HashSet::new();
    batches
        .filter(|b| seen.insert(Arc::as_ptr(b)))
        .map(|b| b.get_array_memory_size())
        .sum()
}

/// Bytes of a map's own table: its keys and values as laid out, not what they point to.
fn map_bytes<K, V>(map: &std::collections::HashMap<K, V>) -> usize {
    map.capacity() * (size_of::<K>() + size_of::<V>() + 1)
}

/// Drops the hidden event-time column: what sinks receive.
pub fn without_event_time(batch: &RecordBatch) -> Result<RecordBatch> {
    let n = batch.num_columns().saturating_sub(1);
    Ok(batch.project(&(0..n).collect::<Vec<_>>())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watermarks(out: &[Message]) -> Vec<Millis> {
        out.iter()
            .filter_map(|m| match m {
                Message::Watermark(w) => Some(*w),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn merged_inputs_follow_the_slowest_watermark_and_end_together() {
        let mut p = Pipeline::with_branches(vec![Vec::new(), Vec::new()], Vec::new(), None);
        let mut out = Vec::new();
        p.push(0, Message::Watermark(100), &mut out).unwrap();
        assert!(
            watermarks(&out).is_empty(),
            "input 1 has sent no watermark yet"
        );
        p.push(1, Message::Watermark(50), &mut out).unwrap();
        assert_eq!(watermarks(&out), [50]);
        p.push(1, Message::Watermark(150), &mut out).unwrap();
        assert_eq!(watermarks(&out), [50, 100]);
        p.push(0, Message::End, &mut out).unwrap();
        assert_eq!(
            watermarks(&out).last(),
            Some(&150),
            "an ended input holds nothing back"
        );
        assert!(!out.iter().any(|m| matches!(m, Message::End)));
        p.push(1, Message::End, &mut out).unwrap();
        assert!(matches!(out.last(), Some(Message::End)));
    }
}
