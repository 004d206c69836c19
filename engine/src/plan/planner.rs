//! The [`Planner`]: walks a query file's statements in order and builds the [`Plan`], keeping every
//! error with its place in the file.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::DFSchema;
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{self as sql, ExprWithAlias, SelectItem, SetExpr};

use super::names::{location_of, normalize};
use super::windows::{WindowCall, rewrite_window_calls};
use super::{
    Input, Output, Plan, PlannedQuery, PlannedSink, PlannedSource, PlannedTable, diagnose, lower,
};
use crate::connector::ConnectorRegistry;
use crate::error::{Diagnostics, Location, SqlError};
use crate::options::Options;
use crate::sql::ast::{CreateView, Insert, Select, Statement};
use crate::time::{Millis, counts_months, interval_millis};

/// The name of the implicit sink of bare `SELECT`s.
pub const STDOUT_SINK: &str = "stdout";

/// Plans a query file's text; `file` is the name errors are reported under.
pub async fn plan_script(
    file: &str,
    sql: &str,
    registry: &ConnectorRegistry,
) -> Result<Plan, Diagnostics> {
    Planner::new(file, registry).plan(sql).await
}

/// Reads and plans a query file.
pub async fn plan_file(
    path: &std::path::Path,
    registry: &ConnectorRegistry,
) -> Result<Plan, Diagnostics> {
    let file = path.display().to_string();
    let sql = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics::new(
            file.clone(),
            vec![SqlError::new(
                Location::new(1, 1),
                format!("cannot read the file: {e}"),
            )],
        )
    })?;
    plan_script(&file, &sql, registry).await
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Plans one query file.
pub struct Planner<'a> {
    pub(super) file: String,
    pub(super) registry: &'a ConnectorRegistry,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    overrides: BTreeMap<String, Options>,
    pub(super) ctx: SessionContext,
    pub(super) sources: Vec<PlannedSource>,
    pub(super) sinks: Vec<PlannedSink>,
    pub(super) tables: Vec<PlannedTable>,
    queries: Vec<PlannedQuery>,
    pub(super) window_calls: HashMap<String, WindowCall>,
    pub(super) match_calls: HashMap<String, super::match_recognize::MatchCall>,
    /// `late_sink` options, resolved once every sink is defined: (source, sink name, place).
    pub(super) pending_late_sinks: Vec<(usize, String, Location)>,
    /// A file of definitions only (a service's catalog) is not "nothing to run".
    definitions_only: bool,
    /// What statements from this line on may reach (a rule after a service's catalog).
    pub(super) restriction: Option<(crate::options::Restriction, u64)>,
}

impl<'a> Planner<'a> {
    pub fn new(file: &str, registry: &'a ConnectorRegistry) -> Self {
        Self {
            file: file.to_string(),
            registry,
            env: &process_env,
            overrides: BTreeMap::new(),
            ctx: session(),
            sources: Vec::new(),
            sinks: Vec::new(),
            tables: Vec::new(),
            queries: Vec::new(),
            window_calls: HashMap::new(),
            match_calls: HashMap::new(),
            pending_late_sinks: Vec::new(),
            definitions_only: false,
            restriction: None,
        }
    }

    /// Statements from line `from_line` on may reach only the environment variables and the
    /// directories `restriction` allows; the ones before (a service's own catalog) anything.
    pub fn restrict(mut self, restriction: crate::options::Restriction, from_line: u64) -> Self {
        self.restriction = Some((restriction, from_line));
        self
    }

    /// Expands `${VAR}` in the options of a statement at `location`, refusing what its
    /// restriction does not allow: variables before they are expanded, files after.
    pub(super) fn expand_options(
        &self,
        options: &mut Options,
        location: Location,
    ) -> Result<(), SqlError> {
        let restriction = match &self.restriction {
            Some((restriction, from)) if location.line >= *from => Some(restriction),
            _ => None,
        };
        if let Some(r) = restriction {
            options.check_env(r)?;
        }
        options.expand(self.env)?;
        if let Some(r) = restriction {
            let base = std::env::current_dir().unwrap_or_default();
            options.check_paths(r, &base)?;
        }
        Ok(())
    }

    /// Checks a file of definitions only (sources, sinks, tables): its plan runs nothing.
    pub fn definitions_only(mut self) -> Self {
        self.definitions_only = true;
        self
    }

    /// Where `${VAR}` in option values is looked up (the process environment by default).
    pub fn with_env(mut self, env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        self.env = env;
        self
    }

    /// Replaces the `WITH (...)` options of source `name`: `eddy replay` reads a recorded file in
    /// place of the broker, the demo points sources at its embedded broker.
    pub fn override_source(mut self, name: &str, options: Options) -> Self {
        self.overrides.insert(name.to_lowercase(), options);
        self
    }

    pub(super) fn source_options(&self, name: &str, declared: Options) -> Options {
        self.overrides.get(name).cloned().unwrap_or(declared)
    }

    /// Plans every statement; all problems found are returned together.
    pub async fn plan(mut self, sql: &str) -> Result<Plan, Diagnostics> {
        let statements =
            crate::sql::parse(sql).map_err(|e| Diagnostics::new(self.file.clone(), vec![e]))?;
        let mut errors: Vec<SqlError> = Vec::new();
        // Names whose definition failed: errors about them being unknown later only repeat it.
        let mut failed: Vec<String> = Vec::new();
        for statement in statements {
            let defines = match &statement {
                Statement::CreateSource(s) => Some(normalize(&s.name)),
                Statement::CreateSink(s) => Some(normalize(&s.name)),
                Statement::CreateView(v) => Some(normalize(&v.name)),
                Statement::CreateTable(t) => Some(normalize(&t.name)),
                Statement::Insert(_) | Statement::Select(_) => None,
            };
            let result = match statement {
                Statement::CreateSource(s) => self.create_source(*s),
                Statement::CreateSink(s) => self.create_sink(s),
                Statement::CreateView(v) => self.create_view(v).await,
                Statement::CreateTable(t) => self.create_table(*t),
                Statement::Insert(i) => self.insert(i).await,
                Statement::Select(s) => self.select(s).await,
            };
            if let Err(e) = result {
                let repeats = failed.iter().any(|name| {
                    e.message.starts_with(&format!("unknown source '{name}'"))
                        || e.message.starts_with(&format!("unknown table '{name}'"))
                        || e.message.starts_with(&format!("unknown sink '{name}'"))
                });
                if !repeats {
                    errors.push(e);
                }
                failed.extend(defines);
            }
        }
        if errors.is_empty()
            && !self.definitions_only
            && !self
                .queries
                .iter()
                .any(|q| matches!(q.output, Output::Sink(_)))
        {
            errors.push(SqlError::new(
                Location::new(1, 1),
                "nothing to run: the file has no INSERT INTO ... SELECT or SELECT",
            ));
        }
        for name in self.overrides.keys() {
            if self.source_index(name).is_none() {
                errors.push(SqlError::new(
                    Location::new(1, 1),
                    format!(
                        "source '{name}' (given on the command line) is not defined in the file"
                    ),
                ));
            }
        }
        for (source, sink, location) in std::mem::take(&mut self.pending_late_sinks) {
            match self.sink_index(&sink) {
                Some(k) => self.sources[source].late_sink = Some(k),
                None => {
                    let defined: Vec<&str> = self.sinks.iter().map(|s| s.name.as_str()).collect();
                    errors.push(SqlError::new(
                        location,
                        format!(
                            "late_sink: unknown sink '{sink}'; defined: {}",
                            defined.join(", ")
                        ),
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(Diagnostics::new(self.file, errors));
        }
        Ok(Plan {
            sources: self.sources,
            sinks: self.sinks,
            tables: self.tables,
            queries: self.queries,
            limits: super::Limits::default(),
        })
    }

    pub(super) fn source_index(&self, name: &str) -> Option<usize> {
        self.sources.iter().position(|s| s.name == name)
    }

    /// The query of view `name`.
    pub(super) fn view_index(&self, name: &str) -> Option<usize> {
        self.queries
            .iter()
            .position(|q| matches!(&q.output, Output::View(v) if v == name))
    }

    /// The source or view called `name`.
    pub(super) fn input_named(&self, name: &str) -> Option<Input> {
        self.source_index(name)
            .map(Input::Source)
            .or_else(|| self.view_index(name).map(Input::View))
    }

    /// The columns of an input, without event time.
    pub(super) fn input_schema(&self, input: Input) -> &SchemaRef {
        match input {
            Input::Source(i) => &self.sources[i].schema,
            Input::View(q) => &self.queries[q].schema,
        }
    }

    pub(super) fn input_name(&self, input: Input) -> &str {
        match input {
            Input::Source(i) => &self.sources[i].name,
            Input::View(q) => match &self.queries[q].output {
                Output::View(name) => name,
                Output::Sink(_) => "",
            },
        }
    }

    pub(super) fn table_index(&self, name: &str) -> Option<usize> {
        self.tables.iter().position(|t| t.name == name)
    }

    pub(super) fn sink_index(&self, name: &str) -> Option<usize> {
        self.sinks.iter().position(|s| s.name == name)
    }

    /// For errors about an unknown source `name`: a guess, and the sources and views there are.
    pub(super) fn source_names(&self, name: &str) -> String {
        let mut names: Vec<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
        names.extend(self.queries.iter().filter_map(|q| match &q.output {
            Output::View(v) => Some(v.as_str()),
            Output::Sink(_) => None,
        }));
        if names.is_empty() {
            return "no source is defined yet".to_string();
        }
        let guess = diagnose::closest(name, &names)
            .map(|g| format!("did you mean '{g}'? "))
            .unwrap_or_default();
        format!("{guess}defined: {}", names.join(", "))
    }

    /// Makes `name` known to DataFusion as an (always empty) table of `schema`.
    pub(super) fn register_table(
        &self,
        name: &str,
        schema: SchemaRef,
        location: Location,
    ) -> Result<(), SqlError> {
        let table = MemTable::try_new(schema, vec![vec![]])
            .map_err(|e| SqlError::new(location, e.to_string()))?;
        self.ctx
            .register_table(name, Arc::new(table))
            .map_err(|e| SqlError::new(location, e.to_string()))?;
        Ok(())
    }

    /// The length of an interval expression such as `INTERVAL '10' SECOND`, in milliseconds.
    pub(super) fn interval_millis(&self, expr: &sql::Expr) -> Result<Millis, SqlError> {
        let location = location_of(expr);
        let err = |m: String| SqlError::new(location, m);
        let state = self.ctx.state();
        let logical = state
            .create_logical_expr_from_sql_expr(
                ExprWithAlias {
                    expr: expr.clone(),
                    alias: None,
                },
                &DFSchema::empty(),
            )
            .map_err(|e| {
                err(format!(
                    "expected an interval such as INTERVAL '10' SECOND: {}",
                    diagnose::message(&e)
                ))
            })?;
        let simplifier = ExprSimplifier::new(SimplifyContext::builder().build());
        let value = simplifier
            .simplify(logical)
            .map_err(|e| err(diagnose::message(&e)))?;
        let not_interval = || {
            err(format!(
                "expected an interval such as INTERVAL '10' SECOND, found {expr}"
            ))
        };
        match value {
            Expr::Literal(v, _) if counts_months(&v) => Err(err(
                "months and years have no fixed length; give the interval in days or less".into(),
            )),
            Expr::Literal(v, _) => interval_millis(&v).ok_or_else(not_interval),
            _ => Err(not_interval()),
        }
    }

    async fn insert(&mut self, insert: Insert) -> Result<(), SqlError> {
        let name = normalize(&insert.sink);
        let sink = self.sink_index(&name).ok_or_else(|| {
            let defined: Vec<&str> = self.sinks.iter().map(|s| s.name.as_str()).collect();
            let hint = if defined.is_empty() {
                format!("no sink is defined yet; add CREATE SINK {name} WITH (connector = 'stdout') before this statement")
            } else {
                let guess = diagnose::closest(&name, &defined)
                    .map(|g| format!("did you mean '{g}'? "))
                    .unwrap_or_default();
                format!("{guess}defined: {}", defined.join(", "))
            };
            SqlError::new(Location::from(&insert.sink), format!("unknown sink '{name}'; {hint}"))
        })?;
        self.plan_query(&insert.query, Output::Sink(sink), insert.location)
            .await
    }

    async fn create_view(&mut self, view: CreateView) -> Result<(), SqlError> {
        let name = normalize(&view.name);
        let location = Location::from(&view.name);
        if self.input_named(&name).is_some() || self.sink_index(&name).is_some() {
            return Err(SqlError::new(
                location,
                format!("'{name}' is already defined; a view needs a name of its own"),
            ));
        }
        self.plan_query(&view.query, Output::View(name.clone()), view.location)
            .await?;
        let schema = Arc::clone(&self.queries[self.queries.len() - 1].schema);
        self.register_table(&name, schema, location)
    }

    async fn select(&mut self, select: Select) -> Result<(), SqlError> {
        let sink = match self.sink_index(STDOUT_SINK) {
            Some(i) => i,
            None => {
                let options = Options::default();
                let spec = crate::connector::SinkSpec {
                    name: STDOUT_SINK,
                    options: &options,
                };
                let sink = self
                    .registry
                    .create_sink("stdout", &spec)
                    .ok_or_else(|| {
                        SqlError::new(
                            select.location,
                            "no stdout connector to print a bare SELECT",
                        )
                    })?
                    .map_err(|e| SqlError::new(select.location, e.to_string()))?;
                self.sinks.push(PlannedSink {
                    name: STDOUT_SINK.to_string(),
                    connector_name: "stdout".to_string(),
                    sink,
                    retry: super::Retry::default(),
                    dead_letter: None,
                    alert_id: false,
                    throttle: None,
                    suppressed: Default::default(),
                });
                self.sinks.len() - 1
            }
        };
        self.plan_query(&select.query, Output::Sink(sink), select.location)
            .await
    }

    async fn plan_query(
        &mut self,
        query: &sql::Query,
        output: Output,
        location: Location,
    ) -> Result<(), SqlError> {
        let mut query = query.clone();
        rewrite_window_calls(&mut query, self)?;
        name_select_items(&mut query);
        let state = self.ctx.state();
        let statement =
            DFStatement::Statement(Box::new(sql::Statement::Query(Box::new(query.clone()))));
        let logical = state
            .statement_to_plan(statement)
            .await
            .map_err(|e| diagnose::locate(&e, &query, location, self))?;
        let optimized = state
            .optimize(&logical)
            .map_err(|e| diagnose::locate(&e, &query, location, self))?;
        let lowered = lower::lower_query(
            &optimized,
            self,
            &query,
            lower::Anchors::of(&query, location),
        )?;
        let schema = Arc::new(optimized.schema().as_arrow().clone());
        let mut pipeline = lowered.pipeline;
        if let Output::Sink(sink) = output {
            self.sinks[sink].sink.check_schema(&schema).map_err(|m| {
                SqlError::new(location, format!("sink '{}': {m}", self.sinks[sink].name))
            })?;
            if let Some(throttling) = &self.sinks[sink].throttle {
                pipeline.push_last(self.throttle(sink, throttling, &schema, location)?);
            }
        }
        self.queries.push(PlannedQuery {
            label: format!("{}:{}", self.file, location.line),
            inputs: lowered.inputs,
            output,
            pipeline,
            schema,
        });
        Ok(())
    }
}

impl Planner<'_> {
    /// The throttle of sink `sink` over a query's rows of `schema`: its key columns found (by
    /// default the TEXT ones), its time the rows' event time.
    fn throttle(
        &self,
        sink: usize,
        throttling: &super::Throttling,
        schema: &Schema,
        location: Location,
    ) -> Result<Box<dyn crate::ops::Operator>, SqlError> {
        let names: Vec<String> = match &throttling.key {
            Some(names) => names.clone(),
            None => schema
                .fields()
                .iter()
                .filter(|f| matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8))
                .map(|f| f.name().clone())
                .collect(),
        };
        if names.is_empty() {
            return Err(SqlError::new(
                throttling.location,
                format!(
                    "throttle of sink '{}': the query's rows have no TEXT column to take as the key; name the key with throttle_key",
                    self.sinks[sink].name
                ),
            ));
        }
        let mut keys = Vec::with_capacity(names.len());
        for name in &names {
            let i = schema.index_of(name).map_err(|_| {
                let columns: Vec<&str> =
                    schema.fields().iter().map(|f| f.name().as_str()).collect();
                SqlError::new(
                    location,
                    format!(
                        "throttle_key of sink '{}' names '{name}', but the query's columns are: {}",
                        self.sinks[sink].name,
                        columns.join(", ")
                    ),
                )
            })?;
            keys.push(i);
        }
        Ok(Box::new(crate::ops::Throttle::new(
            throttling.interval,
            keys,
            names,
            Arc::clone(&self.sinks[sink].suppressed),
        )))
    }
}

/// The schema of a window call's table: the source's columns, then `window_start`, `window_end`
/// and `window_time` (the window's last millisecond, `window_end - 1ms`, as Flink's).
/// The columns a window table function adds to its input's, in order.
pub const WINDOW_COLUMNS: [&str; 3] = ["window_start", "window_end", "window_time"];

pub(super) fn window_table_schema(source: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = source.fields().iter().map(|f| f.as_ref().clone()).collect();
    for name in WINDOW_COLUMNS {
        fields.push(Field::new(
            name,
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ));
    }
    Arc::new(Schema::new(fields))
}

/// Names each computed output column after its SQL text (`avg(temp)`), as a user reads it, rather
/// than DataFusion's qualified `avg(readings.temp)`.
fn name_select_items(query: &mut sql::Query) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    for item in &mut select.projection {
        if let SelectItem::UnnamedExpr(expr) = item
            && !matches!(
                expr,
                sql::Expr::Identifier(_) | sql::Expr::CompoundIdentifier(_)
            )
        {
            let alias = sql::Ident::with_quote('"', expr.to_string());
            *item = SelectItem::ExprWithAlias {
                expr: expr.clone(),
                alias,
            };
        }
    }
}

/// A DataFusion session for planning only: spans on, and no rewrite the streaming walk cannot
/// follow (single `DISTINCT` aggregates stay aggregates instead of becoming two GROUP BYs).
fn session() -> SessionContext {
    let mut config = SessionConfig::new();
    config.options_mut().sql_parser.collect_spans = true;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    let rules = state
        .optimizers()
        .iter()
        .filter(|r| r.name() != "single_distinct_aggregation_to_group_by")
        .cloned()
        .collect();
    let state = SessionStateBuilder::new_from_existing(state)
        .with_optimizer_rules(rules)
        .build();
    SessionContext::new_with_state(state)
}
