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
mod project;
mod scan;
mod session_rows;
mod session_window;
mod throttle;
mod time_buffer;
mod union;
mod window_aggregate;
mod window_functions;
mod window_join;
mod window_rank;
mod window_rows;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::TimestampMillisecondType;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::row::{RowConverter, SortField};

pub use accumulators::AggregateCall;
pub use filter::Filter;
pub use interval_join::{IntervalJoin, JoinInput};
pub use lookup_join::{LookupJoin, TableRead, TableSnapshot};
pub use match_recognize::{EmptyMatches, MatchRows};
pub use match_recognize::{MatchRecognize, MatchSpec, Nav, NavKind, pattern};
pub use over_window::{Following, Frame, OverCall, OverWindow};
pub use project::Project;
pub use scan::{ScanColumn, ScanTime, SourceScan, WindowColumns};
pub use session_rows::{SessionColumn, SessionRows};
pub use session_window::SessionAggregate;
pub use throttle::Throttle;
pub use union::Union;
pub use window_aggregate::{GroupingSets, OutputColumn, WindowAggregate, WindowKind};
pub use window_functions::WindowFunction;
pub use window_join::{WindowJoin, WindowJoinInput, WindowJoinType};
pub use window_rank::{RankOrder, WindowRank};
pub use window_rows::WindowRows;

use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{EngineError, Result};
use crate::message::Message;
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

    /// Whether the operator writes anything into checkpoints. One that writes nothing (a filter,
    /// a projection) may change from one version of a query to the next without the others
    /// losing their state: see [`Pipeline::state_shape`].
    fn keeps_state(&self) -> bool {
        true
    }

    /// Writes what the operator holds into a checkpoint (stateless operators write nothing).
    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()>;

    /// Takes back what [`Self::snapshot`] wrote, into an operator that has seen no input yet.
    fn restore(&mut self, state: &mut StateReader) -> Result<()>;
}

/// Where the streams of several inputs meet: a union, a join of two streams. It takes each message
/// with the index of the input it came from, and keeps whatever it needs per input (watermarks,
/// rows of each side). A new stream-stream operator (a window join, an outer join) is one more
/// implementation.
pub trait MultiInputOperator: Send {
    /// One line for the plan `eddy check` prints.
    fn describe(&self) -> String;

    /// One message of input `input`; what follows from it lands in `out`.
    fn process(&mut self, input: usize, message: Message, out: &mut Vec<Message>) -> Result<()>;

    /// Rows, groups or keys held: see [`Operator::state_rows`].
    fn state_rows(&self) -> usize {
        0
    }

    /// Memory held: see [`Operator::state_bytes`].
    fn state_bytes(&self) -> usize {
        0
    }

    /// Writes what the operator holds into a checkpoint.
    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()>;

    /// Takes back what [`Self::snapshot`] wrote, into an operator that has seen no input yet.
    fn restore(&mut self, state: &mut StateReader) -> Result<()>;
}

/// A query's operators, run in the query's task: one branch of operators per input (a plain query
/// has one input), then, with several inputs, the [`MultiInputOperator`] where they meet, then the
/// operators after it.
pub struct Pipeline {
    branches: Vec<Vec<Box<dyn Operator>>>,
    meet: Option<Box<dyn MultiInputOperator>>,
    operators: Vec<Box<dyn Operator>>,
}

impl Pipeline {
    /// A pipeline over one input.
    pub fn new(operators: Vec<Box<dyn Operator>>) -> Self {
        Self {
            branches: vec![Vec::new()],
            meet: None,
            operators,
        }
    }

    /// A pipeline over several inputs: `branches[i]` processes what input `i` sends, `meet` takes
    /// what the branches send, and `operators` what it sends.
    pub fn meeting(
        branches: Vec<Vec<Box<dyn Operator>>>,
        meet: Box<dyn MultiInputOperator>,
        operators: Vec<Box<dyn Operator>>,
    ) -> Self {
        Self {
            branches,
            meet: Some(meet),
            operators,
        }
    }

    /// Adds `operator` after every other: what the pipeline emits goes through it.
    pub fn push_last(&mut self, operator: Box<dyn Operator>) {
        self.operators.push(operator);
    }

    /// The operators of each branch, then where they meet, then the operators after.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let several = self.branches.len() > 1;
        for (i, b) in self.branches.iter().enumerate() {
            for op in b {
                if several {
                    lines.push(format!("[input {}] {}", i + 1, op.describe()));
                } else {
                    lines.push(op.describe());
                }
            }
        }
        lines.extend(self.meet.as_ref().map(|m| m.describe()));
        lines.extend(self.operators.iter().map(|op| op.describe()));
        lines
    }

    /// What a checkpoint of the pipeline holds, as [`Self::describe`] shows it: the operators
    /// that keep state, in order. Two pipelines of the same shape read each other's checkpoints
    /// (each operator still checks what it reads).
    pub fn state_shape(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (i, b) in self.branches.iter().enumerate() {
            for op in b.iter().filter(|op| op.keeps_state()) {
                lines.push(format!("[input {}] {}", i + 1, op.describe()));
            }
        }
        lines.extend(self.meet.as_ref().map(|m| m.describe()));
        lines.extend(
            self.operators
                .iter()
                .filter(|op| op.keeps_state())
                .map(|op| op.describe()),
        );
        lines
    }

    pub fn inputs(&self) -> usize {
        self.branches.len()
    }

    fn each_operator(&self) -> impl Iterator<Item = &Box<dyn Operator>> {
        self.branches.iter().flatten().chain(&self.operators)
    }

    /// Rows, groups and keys held by every operator of the pipeline.
    pub fn state_rows(&self) -> usize {
        self.each_operator()
            .map(|op| op.state_rows())
            .sum::<usize>()
            + self.meet.as_ref().map_or(0, |m| m.state_rows())
    }

    /// Memory held by every operator of the pipeline: see [`Operator::state_bytes`].
    pub fn state_bytes(&self) -> usize {
        self.each_operator()
            .map(|op| op.state_bytes())
            .sum::<usize>()
            + self.meet.as_ref().map_or(0, |m| m.state_bytes())
    }

    /// Runs one message of input `input` through the pipeline; what comes out lands in `out`.
    pub fn push(&mut self, input: usize, message: Message, out: &mut Vec<Message>) -> Result<()> {
        let branch = self
            .branches
            .get_mut(input)
            .ok_or_else(|| EngineError::Internal(format!("no input {input} in the pipeline")))?;
        let from_branch = run(branch, vec![message])?;
        let merged = match &mut self.meet {
            None => from_branch,
            Some(meet) => {
                let mut merged = Vec::with_capacity(from_branch.len());
                for m in from_branch {
                    meet.process(input, m, &mut merged)?;
                }
                merged
            }
        };
        out.extend(run(&mut self.operators, merged)?);
        Ok(())
    }

    /// See [`Operator::release_keys_idle_since`].
    pub fn release_keys_idle_since(&mut self, before: Millis) {
        for op in self
            .branches
            .iter_mut()
            .flatten()
            .chain(&mut self.operators)
        {
            op.release_keys_idle_since(before);
        }
    }

    /// Writes the state of every operator, in pipeline order.
    pub fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        for op in self.branches.iter_mut().flatten() {
            op.snapshot(state)?;
        }
        if let Some(m) = &mut self.meet {
            m.snapshot(state)?;
        }
        for op in &mut self.operators {
            op.snapshot(state)?;
        }
        Ok(())
    }

    /// Takes back what [`Self::snapshot`] wrote, into a pipeline just planned.
    pub fn restore(&mut self, state: &mut StateReader) -> Result<()> {
        for op in self.branches.iter_mut().flatten() {
            op.restore(state)?;
        }
        if let Some(m) = &mut self.meet {
            m.restore(state)?;
        }
        for op in &mut self.operators {
            op.restore(state)?;
        }
        Ok(())
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
/// The rows `(batch, index)` of shared batches, in order, as one batch (a batch's rows are gathered
/// once whatever how many rows come from it). `None` without rows.
fn gather_rows<'a>(
    rows: impl IntoIterator<Item = (&'a Arc<RecordBatch>, u32)>,
) -> Result<Option<RecordBatch>> {
    let mut batches: Vec<&RecordBatch> = Vec::new();
    let mut index_of: std::collections::HashMap<*const RecordBatch, usize> =
        std::collections::HashMap::new();
    let mut at = Vec::new();
    for (batch, row) in rows {
        let b = *index_of.entry(Arc::as_ptr(batch)).or_insert_with(|| {
            batches.push(batch.as_ref());
            batches.len() - 1
        });
        at.push((b, row as usize));
    }
    if at.is_empty() {
        return Ok(None);
    }
    Ok(Some(datafusion::arrow::compute::interleave_record_batch(
        &batches, &at,
    )?))
}

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
