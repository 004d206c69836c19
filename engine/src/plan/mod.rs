//! Planning: from a query file's statements to a [`Plan`] of sources, sinks and queries, each query
//! a pipeline of operators. DataFusion binds names, types and functions; the walk in `lower` turns
//! its optimized logical plan into streaming operators.

mod diagnose;
mod lower;
mod match_recognize;
mod names;
mod planner;
mod statements;
mod windows;

use std::fmt;

use datafusion::arrow::datatypes::SchemaRef;

pub use planner::{Planner, plan_file, plan_script};

use crate::connector::{Sink, Source};
use crate::ops::Pipeline;
use crate::time::EventTime;

/// Everything `eddy run` starts.
pub struct Plan {
    pub sources: Vec<PlannedSource>,
    pub sinks: Vec<PlannedSink>,
    pub tables: Vec<PlannedTable>,
    pub queries: Vec<PlannedQuery>,
    pub limits: Limits,
}

/// Limits that keep a running engine within its means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most rows, groups and keys one query may hold in state.
    pub max_state_rows: usize,
    /// Most memory one query's state may take, in bytes, as its operators estimate it.
    pub max_state_bytes: usize,
    /// Keys without a row for this long (event time) are released by the operators that would
    /// otherwise keep them (OVER frames, MATCH_RECOGNIZE partitions); `None` keeps them.
    pub key_idle_timeout: Option<crate::time::Millis>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_state_rows: 10_000_000,
            max_state_bytes: 4 << 30,
            key_idle_timeout: None,
        }
    }
}

/// A reference table: loaded before the sources start, reloaded every `refresh`; the lookup joins
/// reading it see each new load as a whole.
pub struct PlannedTable {
    pub name: String,
    pub connector_name: String,
    pub schema: SchemaRef,
    pub table: std::sync::Arc<dyn crate::connector::Table>,
    pub refresh: Option<std::time::Duration>,
    pub snapshot: std::sync::Arc<crate::ops::TableSnapshot>,
}

pub struct PlannedSource {
    pub name: String,
    pub connector_name: String,
    pub schema: SchemaRef,
    pub event_time: Option<EventTime>,
    pub connector: Box<dyn Source>,
    pub dead_letter: Option<Box<dyn Sink>>,
    /// After this long without rows, the watermark advances with the clock.
    pub idle_timeout: Option<std::time::Duration>,
    /// The sink late rows go to, with the watermark they missed.
    pub late_sink: Option<usize>,
    /// Rows whose event time is further ahead of the clock than this are dead letters.
    pub max_future: Option<std::time::Duration>,
}

pub struct PlannedSink {
    pub name: String,
    pub connector_name: String,
    pub sink: Box<dyn Sink>,
    /// How failed writes are retried.
    pub retry: Retry,
    /// Where rows go that could not be written after the retries, with the reason.
    pub dead_letter: Option<Box<dyn Sink>>,
    /// Add an `alert_id` column: the same alert always gets the same id.
    pub alert_id: bool,
    /// `throttle`: at most one alert per key per interval.
    pub throttle: Option<Throttling>,
    /// Alerts the throttle held back, counted by each query's throttle.
    pub suppressed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// A sink's `throttle = '1 minute'` and `throttle_key = 'device_id'`.
#[derive(Debug, Clone)]
pub struct Throttling {
    pub interval: crate::time::Millis,
    /// The key columns named; by default the TEXT columns of the rows the sink receives.
    pub key: Option<Vec<String>>,
    pub location: crate::error::Location,
}

/// Retries of a failed write: `attempts` more tries, waiting `first`, then twice as long each
/// time up to `max` (with jitter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub first: std::time::Duration,
    pub max: std::time::Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 5,
            first: std::time::Duration::from_millis(100),
            max: std::time::Duration::from_secs(30),
        }
    }
}

/// What a query reads: a source, or the rows of a view (an earlier query of the plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Source(usize),
    /// The index of the view's query in [`Plan::queries`].
    View(usize),
}

/// Where a query's rows go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Sink(usize),
    /// A view: the queries that read it receive its rows (with their event time) and watermarks.
    View(String),
}

pub struct PlannedQuery {
    /// `file:line`, where the query starts.
    pub label: String,
    /// Input `i` feeds branch `i` of the pipeline.
    pub inputs: Vec<Input>,
    pub output: Output,
    pub pipeline: Pipeline,
    /// The columns of the rows the query emits.
    pub schema: SchemaRef,
}

impl Plan {
    fn input_name(&self, input: Input) -> &str {
        match input {
            Input::Source(i) => &self.sources[i].name,
            Input::View(q) => match &self.queries[q].output {
                Output::View(name) => name,
                Output::Sink(_) => "?",
            },
        }
    }
}

impl Plan {
    /// What a checkpoint must have been taken for to be restored into this plan: the sources'
    /// names, columns and event time, and each query's inputs, output and the operators that
    /// keep state ([`crate::ops::Pipeline::state_shape`]). Connector settings (a file path, a
    /// broker) may change between runs, and so may what keeps no state (a `WHERE` condition, the
    /// columns selected); a window, an aggregate, a pattern may not.
    pub fn fingerprint(&self) -> String {
        let mut text = String::new();
        for s in &self.sources {
            text.push_str(&format!(
                "source {} {:?} {:?}\n",
                s.name, s.schema, s.event_time
            ));
        }
        for q in &self.queries {
            text.push_str(&format!(
                "query {:?} -> {:?}\n{}\n",
                q.inputs,
                q.output,
                q.pipeline.state_shape().join("\n"),
            ));
        }
        format!("{:016x}", crate::hash::fnv1a_of(text.as_bytes()))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.sources {
            write!(
                f,
                "source {} ({}): {}",
                s.name,
                s.connector_name,
                s.connector.describe()
            )?;
            match &s.event_time {
                Some(et) => writeln!(
                    f,
                    "; event time {}, watermark {} - {}",
                    et.column,
                    et.column,
                    crate::time::show_duration(et.bound)
                )?,
                None => writeln!(f, "; no event time (arrival time is used)")?,
            }
            let columns: Vec<String> = s
                .schema
                .fields()
                .iter()
                .map(|c| format!("{} {}", c.name(), c.data_type()))
                .collect();
            writeln!(f, "  columns: {}", columns.join(", "))?;
            if let Some(d) = &s.dead_letter {
                writeln!(f, "  dead letters: {}", d.describe())?;
            }
            if let Some(k) = s.late_sink {
                writeln!(f, "  late rows to sink {}", self.sinks[k].name)?;
            }
            if let Some(idle) = s.idle_timeout {
                writeln!(
                    f,
                    "  idle after {}: the watermark then advances with the clock",
                    crate::time::show_duration(idle.as_millis() as i64)
                )?;
            }
        }
        for t in &self.tables {
            write!(
                f,
                "table {} ({}): {}",
                t.name,
                t.connector_name,
                t.table.describe()
            )?;
            match t.refresh {
                Some(r) => writeln!(
                    f,
                    "; reloaded every {}",
                    crate::time::show_duration(r.as_millis() as i64)
                )?,
                None => writeln!(f, "; loaded once")?,
            }
        }
        for s in &self.sinks {
            writeln!(
                f,
                "sink {} ({}): {}",
                s.name,
                s.connector_name,
                s.sink.describe()
            )?;
        }
        for q in &self.queries {
            let inputs: Vec<&str> = q.inputs.iter().map(|i| self.input_name(*i)).collect();
            let output = match &q.output {
                Output::Sink(k) => self.sinks[*k].name.as_str(),
                Output::View(name) => name.as_str(),
            };
            let kind = match q.output {
                Output::Sink(_) => "query",
                Output::View(_) => "view",
            };
            writeln!(f, "{kind} {}: {} -> {output}", q.label, inputs.join(" + "))?;
            for line in q.pipeline.describe() {
                writeln!(f, "  {line}")?;
            }
            let columns: Vec<String> = q
                .schema
                .fields()
                .iter()
                .map(|c| format!("{} {}", c.name(), c.data_type()))
                .collect();
            writeln!(f, "  emit [{}] to {output}", columns.join(", "))?;
        }
        Ok(())
    }
}
