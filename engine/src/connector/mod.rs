//! The traits connectors implement, [`Source`], [`Sink`] and [`Table`], the
//! [`ConnectorRegistry`] that builds them from `WITH (connector = '...', ...)`, and the
//! [`SourceContext`] a running source hands its rows to.

mod source_context;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

pub use crate::error::ConnectorError;
use crate::options::{OptionError, Options};
pub use source_context::{DEAD_LETTER_SCHEMA, SourceContext, late_row_schema};
pub(crate) use source_context::{Emitter, rows_as_text};

/// Where readings come from. A source decodes what it reads into batches of the declared schema
/// and hands them to [`SourceContext::send`]; bad records go to [`SourceContext::dead_letter`].
#[async_trait]
pub trait Source: Send {
    /// One line for the plan `eddy check` prints: what is read, from where.
    fn describe(&self) -> String;

    /// Reads until the input ends (returns `Ok`) or `ctx.shutdown()` is cancelled.
    async fn run(self: Box<Self>, ctx: &mut SourceContext) -> Result<(), ConnectorError>;
}

/// Where result rows go.
#[async_trait]
pub trait Sink: Send {
    /// One line for the plan `eddy check` prints: where rows go.
    fn describe(&self) -> String;

    /// Checks at planning time that rows of `schema` can be written (a topic template's columns
    /// exist, ...). The message is shown at the `INSERT INTO` that writes such rows.
    fn check_schema(&self, _schema: &Schema) -> Result<(), String> {
        Ok(())
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError>;

    /// Makes everything written so far durable or delivered; called when the sink has caught up
    /// with its input and once more at the end.
    async fn flush(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// What a source factory is given: the source's name, declared schema and connector options
/// (the engine's own options, such as `connector` and `dead_letter`, already taken out).
pub struct SourceSpec<'a> {
    pub name: &'a str,
    pub schema: &'a SchemaRef,
    pub options: &'a Options,
}

/// What a sink factory is given.
pub struct SinkSpec<'a> {
    pub name: &'a str,
    pub options: &'a Options,
}

/// Reference data for lookup joins: read whole, and read again every `refresh`.
#[async_trait]
pub trait Table: Send + Sync {
    /// One line for the plan `eddy check` prints.
    fn describe(&self) -> String;

    /// All rows of the table, in the declared schema.
    async fn load(&self) -> Result<RecordBatch, ConnectorError>;
}

/// What a table connector is built from.
pub struct TableSpec<'a> {
    pub name: &'a str,
    pub schema: &'a SchemaRef,
    pub options: &'a Options,
}

type TableFactory = Arc<dyn Fn(&TableSpec) -> Result<Box<dyn Table>, OptionError> + Send + Sync>;
type SourceFactory = Arc<dyn Fn(&SourceSpec) -> Result<Box<dyn Source>, OptionError> + Send + Sync>;
type SinkFactory = Arc<dyn Fn(&SinkSpec) -> Result<Box<dyn Sink>, OptionError> + Send + Sync>;

/// Connectors by name, as written in `connector = '...'`.
#[derive(Default, Clone)]
pub struct ConnectorRegistry {
    sources: BTreeMap<String, SourceFactory>,
    sinks: BTreeMap<String, SinkFactory>,
    tables: BTreeMap<String, TableFactory>,
}

impl ConnectorRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register_source(
        &mut self,
        name: &str,
        factory: impl Fn(&SourceSpec) -> Result<Box<dyn Source>, OptionError> + Send + Sync + 'static,
    ) {
        self.sources.insert(name.to_string(), Arc::new(factory));
    }

    pub fn register_sink(
        &mut self,
        name: &str,
        factory: impl Fn(&SinkSpec) -> Result<Box<dyn Sink>, OptionError> + Send + Sync + 'static,
    ) {
        self.sinks.insert(name.to_string(), Arc::new(factory));
    }

    pub fn register_table(
        &mut self,
        name: &str,
        factory: impl Fn(&TableSpec) -> Result<Box<dyn Table>, OptionError> + Send + Sync + 'static,
    ) {
        self.tables.insert(name.to_string(), Arc::new(factory));
    }

    pub fn table_connectors(&self) -> Vec<&str> {
        self.tables.keys().map(String::as_str).collect()
    }

    /// Builds a table; `None` if no connector has that name.
    pub fn create_table(
        &self,
        connector: &str,
        spec: &TableSpec,
    ) -> Option<Result<Box<dyn Table>, OptionError>> {
        self.tables.get(connector).map(|f| f(spec))
    }

    pub fn source_connectors(&self) -> Vec<&str> {
        self.sources.keys().map(String::as_str).collect()
    }

    pub fn sink_connectors(&self) -> Vec<&str> {
        self.sinks.keys().map(String::as_str).collect()
    }

    /// Builds a source; `None` if no connector has that name.
    pub fn create_source(
        &self,
        connector: &str,
        spec: &SourceSpec,
    ) -> Option<Result<Box<dyn Source>, OptionError>> {
        self.sources.get(connector).map(|f| f(spec))
    }

    /// Builds a sink; `None` if no connector has that name.
    pub fn create_sink(
        &self,
        connector: &str,
        spec: &SinkSpec,
    ) -> Option<Result<Box<dyn Sink>, OptionError>> {
        self.sinks.get(connector).map(|f| f(spec))
    }
}
