//! Planning: from a query file's statements to a [`Plan`] of sources, sinks and queries, each query
//! a pipeline of operators. DataFusion binds names, types and functions; the walk in [`lower`] turns
//! its optimized logical plan into streaming operators.

mod diagnose;
mod lower;
mod session;
mod statements;
mod windows;

use std::fmt;

use datafusion::arrow::datatypes::SchemaRef;

pub use session::{Planner, plan_file, plan_script};

use crate::connector::{Sink, Source};
use crate::ops::Pipeline;
use crate::runtime::EventTime;

/// Everything `eddy run` starts.
pub struct Plan {
    pub sources: Vec<PlannedSource>,
    pub sinks: Vec<PlannedSink>,
    pub queries: Vec<PlannedQuery>,
}

pub struct PlannedSource {
    pub name: String,
    pub connector_name: String,
    pub schema: SchemaRef,
    pub event_time: Option<EventTime>,
    pub connector: Box<dyn Source>,
    pub dead_letter: Option<Box<dyn Sink>>,
}

pub struct PlannedSink {
    pub name: String,
    pub connector_name: String,
    pub sink: Box<dyn Sink>,
}

pub struct PlannedQuery {
    /// `file:line`, where the query starts.
    pub label: String,
    pub source: usize,
    pub sink: usize,
    pub pipeline: Pipeline,
    /// The columns of the rows the query emits.
    pub schema: SchemaRef,
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
                    crate::ops::show_duration(et.bound)
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
            writeln!(
                f,
                "query {}: {} -> {}",
                q.label, self.sources[q.source].name, self.sinks[q.sink].name
            )?;
            for op in q.pipeline.operators() {
                writeln!(f, "  {}", op.describe())?;
            }
            let columns: Vec<String> = q
                .schema
                .fields()
                .iter()
                .map(|c| format!("{} {}", c.name(), c.data_type()))
                .collect();
            writeln!(
                f,
                "  emit [{}] to {}",
                columns.join(", "),
                self.sinks[q.sink].name
            )?;
        }
        Ok(())
    }
}
