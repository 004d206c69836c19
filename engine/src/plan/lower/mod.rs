//! The walk from DataFusion's optimized logical plan to a pipeline of streaming operators:
//! `TableScan` of a source or window table → [`SourceScan`], `Filter` → [`Filter`],
//! `Projection` → [`Project`], `Aggregate` over a window → [`WindowAggregate`]. Anything else is
//! an error that names the construct: never a silent batch answer.
//!
//! - this module: the walk and its dispatch by node kind; scans, filters, projections, unions;
//! - `aggregate`: GROUP BY over windows; `over`: OVER windows; `window_rank`: window Top-N and
//!   deduplication; `join`: lookup and interval joins; `match_recognize`: the rows of a
//!   MATCH_RECOGNIZE.

mod aggregate;
mod join;
mod match_recognize;
mod over;
mod window_rank;

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::{Column, DFSchema};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
use datafusion::sql::sqlparser::ast::{self as sql, Spanned};

use super::Input;
use super::Planner;
use super::diagnose;
use super::windows::WindowCall;
use crate::error::{Location, SqlError};
use crate::ops::{
    Filter, MultiInputOperator, Operator, Pipeline, Project, ScanColumn, ScanTime, SessionColumn,
    SessionRows, SourceScan, Union, WindowColumns, WindowKind, with_event_time,
};

/// Places in a query that errors about its clauses point at.
#[derive(Debug, Clone, Copy)]
pub struct Anchors {
    pub statement: Location,
    pub group_by: Option<Location>,
    pub order_by: Option<Location>,
    pub limit: Option<Location>,
    /// The first `OVER` in the query.
    pub over: Option<Location>,
}

impl Anchors {
    pub fn of(query: &sql::Query, statement: Location) -> Self {
        let at = |span: datafusion::sql::sqlparser::tokenizer::Span| {
            (span.start.line > 0).then(|| Location::from(span.start))
        };
        let group_by = match query.body.as_ref() {
            sql::SetExpr::Select(s) => at(s.group_by.span()),
            _ => None,
        };
        Self {
            statement,
            group_by,
            order_by: query.order_by.as_ref().and_then(|o| at(o.span())),
            over: first_over(query),
            limit: query.limit_clause.as_ref().and_then(|l| at(l.span())),
        }
    }
}

/// A query as streaming operators, and the sources or views it reads.
pub struct Lowered {
    pub inputs: Vec<Input>,
    pub pipeline: Pipeline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Value,
    /// The column the rows' event time comes from.
    EventTime,
    WindowStart,
    WindowEnd,
    /// `window_time`: `window_end - 1ms`.
    WindowTime,
}

/// The operators so far, and what the columns they output are.
struct Stage {
    inputs: Vec<Input>,
    /// With several inputs (UNION ALL): the operators of each, before they meet.
    branches: Vec<Vec<Box<dyn Operator>>>,
    /// Where the branches meet, with several inputs: a union, an interval join.
    meet: Option<Box<dyn MultiInputOperator>>,
    ops: Vec<Box<dyn Operator>>,
    origins: Vec<Origin>,
    /// The window call read by the scan, until an aggregate consumes it.
    window: Option<WindowCall>,
    aggregated: bool,
}

impl Stage {
    /// Rows of HOP and SESSION get their window only when aggregated: they cannot go on to `then`
    /// (a UNION, a join) before that.
    fn require_aggregated(&self, then: &str) -> Result<(), SqlError> {
        match &self.window {
            Some(call) if call.kind.assigned_by_aggregate() => Err(SqlError::new(
                call.location,
                format!(
                    "rows of {}(...) get their window when they are aggregated: {then}",
                    call.function()
                ),
            )),
            _ => Ok(()),
        }
    }
}

pub fn lower_query(
    plan: &LogicalPlan,
    planner: &Planner,
    query: &sql::Query,
    anchors: Anchors,
) -> Result<Lowered, SqlError> {
    let mut aggregated = HashSet::new();
    aggregated_window_tables(plan, planner, false, &mut aggregated);
    let walk = Walk {
        planner,
        query,
        anchors,
        aggregated,
    };
    let stage = walk.lower(plan)?;
    if let Some(call) = &stage.window
        && call.kind.assigned_by_aggregate()
    {
        return Err(SqlError::new(
            call.location,
            match call.kind {
                WindowKind::Session { .. } => "rows of SESSION(...) get their session when they are aggregated: aggregate them with GROUP BY ..., window_start, window_end".to_string(),
                _ => format!("rows of {}(...) are in several windows each: aggregate them with GROUP BY ..., window_start, window_end", call.function()),
            },
        ));
    }
    let pipeline = match stage.meet {
        Some(meet) => Pipeline::meeting(stage.branches, meet, stage.ops),
        None => Pipeline::new(stage.ops),
    };
    Ok(Lowered {
        inputs: stage.inputs,
        pipeline,
    })
}

struct Walk<'p, 'a> {
    planner: &'p Planner<'a>,
    query: &'p sql::Query,
    anchors: Anchors,
    /// The window tables whose rows an aggregate takes (the others' rows are read as they are).
    aggregated: HashSet<String>,
}

/// Collects the window tables read by an aggregate through filters and projections only.
fn aggregated_window_tables(
    plan: &LogicalPlan,
    planner: &Planner,
    under_aggregate: bool,
    found: &mut HashSet<String>,
) {
    let under = match plan {
        LogicalPlan::TableScan(scan) => {
            let table = scan.table_name.table();
            if under_aggregate && planner.window_calls.contains_key(table) {
                found.insert(table.to_string());
            }
            return;
        }
        LogicalPlan::Aggregate(_) => true,
        LogicalPlan::Filter(_) | LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) => {
            under_aggregate
        }
        _ => false,
    };
    for input in plan.inputs() {
        aggregated_window_tables(input, planner, under, found);
    }
}

impl Walk<'_, '_> {
    fn error(&self, message: impl Into<String>) -> SqlError {
        SqlError::new(self.anchors.statement, message)
    }

    fn error_at(&self, anchor: Option<Location>, message: impl Into<String>) -> SqlError {
        SqlError::new(anchor.unwrap_or(self.anchors.statement), message)
    }

    fn physical(&self, e: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>, SqlError> {
        create_physical_expr(
            e,
            schema,
            &ExecutionProps::new(),
            &PhysicalPlanningContext::default(),
        )
        .map_err(|err| self.error(diagnose::message(&err)))
    }

    fn lower(&self, plan: &LogicalPlan) -> Result<Stage, SqlError> {
        match plan {
            LogicalPlan::TableScan(scan)
                if self.planner.match_calls.contains_key(scan.table_name.table()) =>
            {
                self.match_recognize(scan)
            }
            LogicalPlan::TableScan(scan) => self.scan(scan),
            LogicalPlan::Union(u) => self.union(u),
            LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(input))
                if matches!(input.as_ref(), LogicalPlan::Union(_)) =>
            {
                Err(self.error("UNION without ALL removes duplicates, which a stream cannot do without a window; use UNION ALL"))
            }
            LogicalPlan::SubqueryAlias(a) => self.lower(&a.input),
            LogicalPlan::Filter(f) => {
                let mut stage = self.lower(&f.input)?;
                self.check_window_use(&stage, &f.predicate, f.input.schema())?;
                let predicate = self.physical(&f.predicate, f.input.schema())?;
                stage.ops.push(Box::new(Filter::new(predicate)));
                Ok(stage)
            }
            LogicalPlan::Projection(p) => self.projection(p),
            LogicalPlan::Aggregate(a) => self.aggregate(a),
            LogicalPlan::Window(w) => self.over(w),
            LogicalPlan::Join(j) => self.lookup_join(j),
            LogicalPlan::Sort(_) => Err(self.error_at(self.anchors.order_by, unsupported(plan))),
            LogicalPlan::Limit(_) => Err(self.error_at(self.anchors.limit, unsupported(plan))),
            other => Err(self.error(unsupported(other))),
        }
    }

    /// Rows of a source, a view or a window table.
    fn scan(
        &self,
        scan: &datafusion::logical_expr::logical_plan::TableScan,
    ) -> Result<Stage, SqlError> {
        let table = scan.table_name.table();
        let (input, window) = match self.planner.window_calls.get(table) {
            Some(call) => (call.input, Some(call.clone())),
            None => (
                self.planner
                    .input_named(table)
                    .ok_or_else(|| self.error(format!("unknown source '{table}'")))?,
                None,
            ),
        };
        if scan.fetch.is_some() {
            return Err(self.error_at(
                self.anchors.limit,
                "LIMIT is not supported in a continuous query",
            ));
        }
        if !scan.filters.is_empty() {
            return Err(self.error("internal: filters were pushed into a source scan"));
        }
        let n = self.planner.input_schema(input).fields().len();
        let projection = scan
            .projection
            .clone()
            .unwrap_or_else(|| (0..scan.source.schema().fields().len()).collect());
        let columns: Vec<ScanColumn> = projection
            .iter()
            .map(|&i| match i.checked_sub(n) {
                None => ScanColumn::Source(i),
                Some(0) => ScanColumn::WindowStart,
                Some(1) => ScanColumn::WindowEnd,
                Some(_) => ScanColumn::WindowTime,
            })
            .collect();
        let time_column = match (input, &window) {
            (Input::Source(i), _) => self.planner.sources[i].event_time.as_ref().map(|e| e.index),
            (Input::View(_), Some(call)) => Some(call.time_index),
            (Input::View(_), None) => None,
        };
        let origins = columns
            .iter()
            .map(|c| match c {
                ScanColumn::Source(i) if Some(*i) == time_column => Origin::EventTime,
                ScanColumn::Source(_) => Origin::Value,
                ScanColumn::WindowStart => Origin::WindowStart,
                ScanColumn::WindowEnd => Origin::WindowEnd,
                ScanColumn::WindowTime => Origin::WindowTime,
            })
            .collect();
        // Rows of HOP and CUMULATE read without an aggregate are repeated, once per window.
        let expanded = !self.aggregated.contains(table);
        let window_columns = window.as_ref().map(|w| match w.kind {
            WindowKind::Tumble { size } => WindowColumns::Tumble {
                size,
                offset: w.offset,
            },
            WindowKind::Hop { size, slide } if expanded => WindowColumns::Hop {
                size,
                slide,
                offset: w.offset,
            },
            WindowKind::Cumulate { step, size } if expanded => WindowColumns::Cumulate {
                step,
                size,
                offset: w.offset,
            },
            WindowKind::Hop { .. } | WindowKind::Cumulate { .. } | WindowKind::Session { .. } => {
                WindowColumns::Placeholder
            }
        });
        let (time, drop_late) = match (input, &window) {
            (Input::Source(i), _) => (
                self.planner.sources[i]
                    .event_time
                    .as_ref()
                    .map_or(ScanTime::Arrival, |e| ScanTime::Column(e.index)),
                false,
            ),
            (Input::View(_), Some(call)) => (ScanTime::Column(call.time_index), true),
            (Input::View(_), None) => (ScanTime::Carried, false),
        };
        // Expanded rows have their windows: nothing is left for an aggregate to assign.
        let window = match window_columns {
            Some(WindowColumns::Hop { .. } | WindowColumns::Cumulate { .. }) => None,
            _ => window,
        };
        let schema = with_event_time(scan.projected_schema.as_arrow());
        if expanded
            && let Some(call) = &window
            && let WindowKind::Session { gap } = call.kind
        {
            return self.session_rows(scan, input, call, gap, columns, time, drop_late, origins);
        }
        let op = SourceScan::new(
            self.planner.input_name(input),
            columns,
            time,
            drop_late,
            window_columns,
            schema,
        );
        Ok(Stage {
            inputs: vec![input],
            branches: vec![Vec::new()],
            meet: None,
            ops: vec![Box::new(op)],
            origins,
            window,
            aggregated: false,
        })
    }

    /// The rows of `SESSION(...)` read without an aggregate: the scan reads the partition key
    /// columns too (the query may not), and the session rows operator gives each row its
    /// session's bounds once the session is over.
    #[allow(clippy::too_many_arguments)]
    fn session_rows(
        &self,
        scan: &datafusion::logical_expr::logical_plan::TableScan,
        input: Input,
        call: &WindowCall,
        gap: crate::time::Millis,
        mut columns: Vec<ScanColumn>,
        time: ScanTime,
        drop_late: bool,
        mut origins: Vec<Origin>,
    ) -> Result<Stage, SqlError> {
        let input_schema = self.planner.input_schema(input);
        let visible = scan.projected_schema.as_arrow();
        let kinds: Vec<SessionColumn> = columns
            .iter()
            .map(|c| match c {
                ScanColumn::Source(_) => SessionColumn::Value,
                ScanColumn::WindowStart => SessionColumn::Start,
                ScanColumn::WindowEnd => SessionColumn::End,
                ScanColumn::WindowTime => SessionColumn::Time,
            })
            .collect();
        let mut fields: Vec<Field> = visible
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut keys = Vec::new();
        for (name, at) in call.partition.iter().flatten() {
            let i = input_schema
                .index_of(name)
                .map_err(|_| self.error_at(Some(*at), format!("unknown column '{name}'")))?;
            let k = match columns.iter().position(|c| *c == ScanColumn::Source(i)) {
                Some(k) => k,
                None => {
                    columns.push(ScanColumn::Source(i));
                    fields.push(input_schema.field(i).clone());
                    columns.len() - 1
                }
            };
            keys.push(k);
        }
        let scanned = with_event_time(&Schema::new(fields));
        let op = SourceScan::new(
            self.planner.input_name(input),
            columns,
            time,
            drop_late,
            Some(WindowColumns::Placeholder),
            Arc::clone(&scanned),
        );
        let rows = SessionRows::new(gap, keys, kinds, scanned, with_event_time(visible));
        // The rows leave at their session's end: window_time is their time attribute now, and
        // the column they were windowed by an ordinary timestamp (as in Flink).
        for o in &mut origins {
            if *o == Origin::EventTime {
                *o = Origin::Value;
            }
        }
        Ok(Stage {
            inputs: vec![input],
            branches: vec![Vec::new()],
            meet: None,
            ops: vec![Box::new(op), Box::new(rows)],
            origins,
            window: None,
            aggregated: false,
        })
    }

    /// `UNION ALL`: one branch per input, meeting in one stream.
    fn union(&self, u: &datafusion::logical_expr::logical_plan::Union) -> Result<Stage, SqlError> {
        let mut inputs = Vec::new();
        let mut branches = Vec::new();
        for child in &u.inputs {
            let stage = self.lower(child)?;
            if stage.inputs.len() != 1 {
                return Err(self.error("a UNION inside a UNION branch is not supported; list every branch in one UNION ALL"));
            }
            stage.require_aggregated("GROUP BY ..., window_start, window_end before the UNION")?;
            inputs.extend(stage.inputs);
            branches.push(stage.ops);
        }
        let meet = Union::new(inputs.len(), with_event_time(u.schema.as_arrow()));
        Ok(Stage {
            inputs,
            branches,
            meet: Some(Box::new(meet)),
            ops: Vec::new(),
            origins: vec![Origin::Value; u.schema.fields().len()],
            window: None,
            aggregated: false,
        })
    }

    fn projection(
        &self,
        p: &datafusion::logical_expr::logical_plan::Projection,
    ) -> Result<Stage, SqlError> {
        let mut stage = self.lower(&p.input)?;
        let input = p.input.schema();
        let mut exprs = Vec::with_capacity(p.expr.len());
        let mut origins = Vec::with_capacity(p.expr.len());
        for (e, field) in p.expr.iter().zip(p.schema.fields()) {
            let passed = match e {
                Expr::Column(c) => Some(c),
                Expr::Alias(a) => match a.expr.as_ref() {
                    Expr::Column(c) => Some(c),
                    _ => None,
                },
                _ => None,
            };
            match passed {
                Some(c) => origins.push(self.origin(&stage, c, input)),
                None => {
                    self.check_window_use(&stage, e, input)?;
                    origins.push(Origin::Value);
                }
            }
            exprs.push((self.physical(e, input)?, field.name().clone()));
        }
        let schema = with_event_time(p.schema.as_arrow());
        stage.ops.push(Box::new(Project::new(exprs, schema)));
        stage.origins = origins;
        Ok(stage)
    }

    fn origin(&self, stage: &Stage, column: &Column, schema: &DFSchema) -> Origin {
        schema
            .index_of_column(column)
            .ok()
            .and_then(|i| stage.origins.get(i).copied())
            .unwrap_or(Origin::Value)
    }

    /// HOP leaves the window columns empty until its aggregate: no expression may read them before.
    fn check_window_use(&self, stage: &Stage, e: &Expr, schema: &DFSchema) -> Result<(), SqlError> {
        let Some(call) = &stage.window else {
            return Ok(());
        };
        if !call.kind.assigned_by_aggregate() {
            return Ok(());
        }
        for c in e.column_refs() {
            if matches!(
                self.origin(stage, c, schema),
                Origin::WindowStart | Origin::WindowEnd | Origin::WindowTime
            ) {
                return Err(SqlError::new(
                    call.location,
                    format!(
                        "{} of a {} window can be used in GROUP BY and after it, not in `{e}` before the aggregation",
                        c.name,
                        call.function()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Where the first `... OVER (...)` call of a query is.
fn first_over(query: &sql::Query) -> Option<Location> {
    let found = sql::visit_expressions(query, |e| match e {
        sql::Expr::Function(f) if f.over.is_some() => {
            std::ops::ControlFlow::Break(Location::from(f.name.span().start))
        }
        _ => std::ops::ControlFlow::Continue(()),
    });
    match found {
        std::ops::ControlFlow::Break(l) => Some(l),
        std::ops::ControlFlow::Continue(()) => None,
    }
}

fn unsupported(plan: &LogicalPlan) -> String {
    let what = match plan {
        LogicalPlan::Sort(_) => "ORDER BY",
        LogicalPlan::Limit(_) => "LIMIT",
        LogicalPlan::Join(_) => "JOIN",
        LogicalPlan::Union(_) => "UNION",
        LogicalPlan::Window(_) => "an OVER (...) window function",
        LogicalPlan::Distinct(_) => "DISTINCT",
        LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => "a query that reads no source",
        LogicalPlan::Subquery(_) => "a subquery",
        LogicalPlan::Unnest(_) => "UNNEST",
        LogicalPlan::RecursiveQuery(_) => "a recursive query",
        _ => "this kind of query",
    };
    format!("{what} is not supported in a continuous query yet")
}
