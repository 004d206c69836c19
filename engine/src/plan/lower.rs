//! The walk from DataFusion's optimized logical plan to a pipeline of streaming operators:
//! `TableScan` of a source or window table → [`SourceScan`], `Filter` → [`Filter`],
//! `Projection` → [`Project`], `Aggregate` over a window → [`WindowAggregate`]. Anything else is
//! an error that names the construct: never a silent batch answer.

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::common::{Column, DFSchema};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::aggregate::{AggregateExprBuilder, LoweredAggregateBuilder};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
use datafusion::sql::sqlparser::ast::{self as sql, Spanned};
use std::sync::Arc;

use super::Input;
use super::diagnose;
use super::session::Planner;
use super::windows::WindowCall;
use crate::error::{Location, SqlError};
use crate::ops::{
    AggregateCall, Filter, Frame, IntervalJoin, LookupJoin, MatchRecognize, Operator, OutputColumn,
    OverCall, OverWindow, Pipeline, Project, ScanColumn, ScanTime, SessionAggregate, SourceScan,
    TableRead, WindowAggregate, WindowColumns, WindowKind, with_event_time,
};
use crate::time::Millis;

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
}

/// The operators so far, and what the columns they output are.
struct Stage {
    inputs: Vec<Input>,
    /// With several inputs (UNION ALL): the operators of each, before they meet.
    branches: Vec<Vec<Box<dyn Operator>>>,
    /// The schema batches take where the branches meet.
    merged: Option<SchemaRef>,
    /// Where the two branches of an interval join meet.
    join: Option<IntervalJoin>,
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
    let walk = Walk {
        planner,
        query,
        anchors,
    };
    let stage = walk.lower(plan)?;
    if let Some(call) = &stage.window
        && call.kind.assigned_by_aggregate()
    {
        return Err(SqlError::new(
            call.location,
            match call.kind {
                WindowKind::Session { .. } => "rows of SESSION(...) get their session when they are aggregated: aggregate them with GROUP BY ..., window_start, window_end".to_string(),
                _ => "rows of HOP(...) are in several windows each: aggregate them with GROUP BY ..., window_start, window_end".to_string(),
            },
        ));
    }
    let pipeline = if let Some(join) = stage.join {
        let mut branches = stage.branches.into_iter();
        let left = branches.next().unwrap_or_default();
        let right = branches.next().unwrap_or_default();
        Pipeline::joined(left, right, join, stage.ops)
    } else if stage.inputs.len() > 1 {
        Pipeline::with_branches(stage.branches, stage.ops, stage.merged)
    } else {
        Pipeline::new(stage.ops)
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
            LogicalPlan::TableScan(scan) => {
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
                    .map(|&i| match i.cmp(&n) {
                        std::cmp::Ordering::Less => ScanColumn::Source(i),
                        std::cmp::Ordering::Equal => ScanColumn::WindowStart,
                        std::cmp::Ordering::Greater => ScanColumn::WindowEnd,
                    })
                    .collect();
                let time_column = match (input, &window) {
                    (Input::Source(i), _) => {
                        self.planner.sources[i].event_time.as_ref().map(|e| e.index)
                    }
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
                    })
                    .collect();
                let window_columns = window.as_ref().map(|w| match w.kind {
                    WindowKind::Tumble { size } => WindowColumns::Tumble { size },
                    WindowKind::Hop { .. } | WindowKind::Session { .. } => {
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
                let schema = with_event_time(scan.projected_schema.as_arrow());
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
                    merged: None,
                    join: None,
                    ops: vec![Box::new(op)],
                    origins,
                    window,
                    aggregated: false,
                })
            }
            LogicalPlan::Union(u) => {
                let mut inputs = Vec::new();
                let mut branches = Vec::new();
                for child in &u.inputs {
                    let stage = self.lower(child)?;
                    if stage.inputs.len() != 1 {
                        return Err(self.error("a UNION inside a UNION branch is not supported; list every branch in one UNION ALL"));
                    }
                    stage.require_aggregated(
                        "GROUP BY ..., window_start, window_end before the UNION",
                    )?;
                    inputs.extend(stage.inputs);
                    branches.push(stage.ops);
                }
                Ok(Stage {
                    inputs,
                    branches,
                    merged: Some(with_event_time(u.schema.as_arrow())),
                    join: None,
                    ops: Vec::new(),
                    origins: vec![Origin::Value; u.schema.fields().len()],
                    window: None,
                    aggregated: false,
                })
            }
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
            LogicalPlan::Projection(p) => {
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
            LogicalPlan::Aggregate(a) => {
                let mut stage = self.lower(&a.input)?;
                if stage.aggregated {
                    return Err(self.error_at(
                        self.anchors.group_by,
                        "a GROUP BY over the rows of another GROUP BY is not supported yet",
                    ));
                }
                if stage.window.is_none()
                    && a.aggr_expr.is_empty()
                    && matches!(a.input.as_ref(), LogicalPlan::Union(_))
                {
                    return Err(self.error("UNION without ALL removes duplicates, which a stream cannot do without a window; use UNION ALL"));
                }
                let Some(call) = stage.window.take() else {
                    return Err(self.error_at(
                        self.anchors.group_by,
                        "GROUP BY on a stream needs a window: read the source through TUMBLE(source, ts, size) or HOP(source, ts, slide, size) and add window_start, window_end to the GROUP BY",
                    ));
                };
                let input = a.input.schema();
                let output = a.schema.as_arrow();
                let mut layout = Vec::new();
                let mut keys = Vec::new();
                let mut key_fields: Vec<Field> = Vec::new();
                let (mut has_start, mut has_end) = (false, false);
                for (i, g) in a.group_expr.iter().enumerate() {
                    if matches!(g, Expr::GroupingSet(_)) {
                        return Err(self.error_at(
                            self.anchors.group_by,
                            "GROUPING SETS, CUBE and ROLLUP are not supported in a continuous query",
                        ));
                    }
                    let origin = match g {
                        Expr::Column(c) => self.origin(&stage, c, input),
                        _ => Origin::Value,
                    };
                    match origin {
                        Origin::WindowStart => {
                            has_start = true;
                            layout.push(OutputColumn::WindowStart);
                        }
                        Origin::WindowEnd => {
                            has_end = true;
                            layout.push(OutputColumn::WindowEnd);
                        }
                        Origin::Value | Origin::EventTime => {
                            self.check_window_use(&stage, g, input)?;
                            layout.push(OutputColumn::Key(keys.len()));
                            keys.push(self.physical(g, input)?);
                            key_fields.push(output.field(i).clone());
                        }
                    }
                }
                if !(has_start && has_end) {
                    return Err(SqlError::new(
                        call.location,
                        format!(
                            "GROUP BY over {}(...) must include window_start and window_end",
                            call.function()
                        ),
                    ));
                }
                let mut calls = Vec::with_capacity(a.aggr_expr.len());
                let props = ExecutionProps::new();
                let planning = PhysicalPlanningContext::default();
                for e in &a.aggr_expr {
                    self.check_window_use(&stage, e, input)?;
                    let lowered =
                        LoweredAggregateBuilder::new(e, input, input.as_arrow(), &props, &planning)
                            .build()
                            .map_err(|err| self.error(diagnose::message(&err)))?;
                    let call = AggregateCall::new(lowered.aggregate, lowered.filter);
                    call.check().map_err(|err| {
                        let at = diagnose::find_function(self.query, call.expr.fun().name());
                        self.error_at(at, format!("{}: {}", call.name(), diagnose::message(&err)))
                    })?;
                    layout.push(OutputColumn::Aggregate(calls.len()));
                    calls.push(call);
                }
                let op: Box<dyn Operator> = match call.kind {
                    WindowKind::Session { gap } => Box::new(SessionAggregate::new(
                        gap,
                        keys,
                        calls,
                        layout,
                        with_event_time(output),
                    )),
                    kind => Box::new(WindowAggregate::new(
                        kind,
                        keys,
                        Arc::new(Schema::new(key_fields)),
                        calls,
                        layout,
                        with_event_time(output),
                    )),
                };
                stage.ops.push(op);
                stage.aggregated = true;
                stage.origins = vec![Origin::Value; output.fields().len()];
                Ok(stage)
            }
            LogicalPlan::Window(w) => {
                let mut stage = self.lower(&w.input)?;
                if let Some(call) = &stage.window {
                    return Err(SqlError::new(
                        call.location,
                        format!(
                            "an OVER (...) window over the rows of {}(...) is not supported; read the source directly",
                            call.function()
                        ),
                    ));
                }
                let op = self.over_window(&stage, w)?;
                stage.ops.push(Box::new(op));
                stage
                    .origins
                    .extend(std::iter::repeat_n(Origin::Value, w.window_expr.len()));
                Ok(stage)
            }
            LogicalPlan::Join(j) => self.lookup_join(j),
            LogicalPlan::Sort(_) => Err(self.error_at(self.anchors.order_by, unsupported(plan))),
            LogicalPlan::Limit(_) => Err(self.error_at(self.anchors.limit, unsupported(plan))),
            other => Err(self.error(unsupported(other))),
        }
    }

    /// The reference table read by one side of a join: its scan's columns and the predicates on
    /// them. `None` when the side is not a table.
    fn table_read(&self, plan: &LogicalPlan, keys: &[Expr]) -> Result<Option<TableRead>, SqlError> {
        match plan {
            LogicalPlan::SubqueryAlias(a) => {
                // The keys name the alias; the scan below has the same columns in the same order.
                let Some(mut read) = self.table_read(&a.input, &[])? else {
                    return Ok(None);
                };
                read.keys = keys
                    .iter()
                    .map(|k| self.physical(k, plan.schema()))
                    .collect::<Result<_, _>>()?;
                Ok(Some(read))
            }
            LogicalPlan::Filter(f) => {
                let Some(mut read) = self.table_read(&f.input, &[])? else {
                    return Ok(None);
                };
                read.filters
                    .push(self.physical(&f.predicate, f.input.schema())?);
                read.keys = keys
                    .iter()
                    .map(|k| self.physical(k, plan.schema()))
                    .collect::<Result<_, _>>()?;
                Ok(Some(read))
            }
            LogicalPlan::TableScan(scan) => {
                let Some(t) = self.planner.table_index(scan.table_name.table()) else {
                    return Ok(None);
                };
                let table = &self.planner.tables[t];
                let projection = scan
                    .projection
                    .clone()
                    .unwrap_or_else(|| (0..table.schema.fields().len()).collect());
                Ok(Some(TableRead {
                    name: table.name.clone(),
                    snapshot: Arc::clone(&table.snapshot),
                    projection,
                    filters: Vec::new(),
                    keys: keys
                        .iter()
                        .map(|k| self.physical(k, plan.schema()))
                        .collect::<Result<_, _>>()?,
                }))
            }
            _ => Ok(None),
        }
    }

    /// A join of a stream with a reference table (a lookup join).
    fn lookup_join(
        &self,
        j: &datafusion::logical_expr::logical_plan::Join,
    ) -> Result<Stage, SqlError> {
        use datafusion::logical_expr::JoinType;
        let (left_keys, right_keys): (Vec<Expr>, Vec<Expr>) = j.on.iter().cloned().unzip();
        let left_table = self.table_read(&j.left, &left_keys)?;
        let right_table = self.table_read(&j.right, &right_keys)?;
        let (table, stream_plan, stream_keys, stream_first) = match (left_table, right_table) {
            (None, Some(t)) => (t, &j.left, left_keys, true),
            (Some(t), None) => (t, &j.right, right_keys, false),
            (Some(_), Some(_)) => {
                return Err(
                    self.error("a JOIN of two tables reads no stream; join a stream with a table")
                );
            }
            (None, None) => return self.interval_join(j),
        };
        if stream_keys.is_empty() {
            return Err(self.error(
                "a lookup join needs an equality between the stream and the table in ON (r.device_id = t.device_id)",
            ));
        }
        let keep_unmatched = match (j.join_type, stream_first) {
            (JoinType::Inner, _) => false,
            (JoinType::Left, true) | (JoinType::Right, false) => true,
            (other, _) => {
                return Err(self.error(format!(
                    "{other} JOIN with a table is not supported; use JOIN or LEFT JOIN with the stream on the left"
                )));
            }
        };
        let mut stage = self.lower(stream_plan)?;
        stage.require_aggregated("aggregate them before joining")?;
        let stream_schema = stream_plan.schema();
        let stream_keys = stream_keys
            .iter()
            .map(|k| self.physical(k, stream_schema))
            .collect::<Result<Vec<_>, _>>()?;
        let filter = j
            .filter
            .as_ref()
            .map(|f| self.physical(f, &j.schema))
            .transpose()?;
        let table_columns = j.schema.fields().len() - stream_schema.fields().len();
        let table_origins = vec![Origin::Value; table_columns];
        stage.origins = if stream_first {
            [std::mem::take(&mut stage.origins), table_origins].concat()
        } else {
            [table_origins, std::mem::take(&mut stage.origins)].concat()
        };
        stage.ops.push(Box::new(LookupJoin::new(
            table,
            stream_keys,
            stream_first,
            keep_unmatched,
            filter,
            with_event_time(j.schema.as_arrow()),
        )));
        Ok(stage)
    }

    /// The rows of a `MATCH_RECOGNIZE`: its input scanned whole, the matcher, then the columns
    /// the query reads.
    fn match_recognize(
        &self,
        scan: &datafusion::logical_expr::logical_plan::TableScan,
    ) -> Result<Stage, SqlError> {
        let table = scan.table_name.table();
        let call = self
            .planner
            .match_calls
            .get(table)
            .ok_or_else(|| self.error(format!("internal: no MATCH_RECOGNIZE {table}")))?;
        if scan.fetch.is_some() {
            return Err(self.error_at(
                self.anchors.limit,
                "LIMIT is not supported in a continuous query",
            ));
        }
        let input_schema = self.planner.input_schema(call.input);
        let columns = (0..input_schema.fields().len())
            .map(ScanColumn::Source)
            .collect();
        // A view's rows older than the watermark (by the ordering column) are late: dropped.
        let scan_op = SourceScan::new(
            self.planner.input_name(call.input),
            columns,
            ScanTime::Column(call.time_index),
            matches!(call.input, Input::View(_)),
            None,
            with_event_time(input_schema),
        );
        let matcher = MatchRecognize::new(call.spec.clone());
        let mut ops: Vec<Box<dyn Operator>> = vec![Box::new(scan_op), Box::new(matcher)];
        let n = call.schema.fields().len();
        let projection = scan.projection.clone().unwrap_or_else(|| (0..n).collect());
        if projection != (0..n).collect::<Vec<_>>() {
            let exprs = projection
                .iter()
                .map(|&i| {
                    let name = call.schema.field(i).name().clone();
                    let e: Arc<dyn PhysicalExpr> = Arc::new(
                        datafusion::physical_expr::expressions::Column::new(&name, i),
                    );
                    (e, name)
                })
                .collect();
            ops.push(Box::new(Project::new(
                exprs,
                with_event_time(scan.projected_schema.as_arrow()),
            )));
        }
        Ok(Stage {
            inputs: vec![call.input],
            branches: vec![Vec::new()],
            merged: None,
            join: None,
            ops,
            origins: vec![Origin::Value; projection.len()],
            window: None,
            aggregated: false,
        })
    }

    /// A join of two streams bounded in time (an interval join).
    fn interval_join(
        &self,
        j: &datafusion::logical_expr::logical_plan::Join,
    ) -> Result<Stage, SqlError> {
        use datafusion::logical_expr::{JoinType, Operator as Op};
        let no_bound = "a JOIN of two streams needs a time bound: add `AND d.ts BETWEEN r.ts - INTERVAL '1' MINUTE AND r.ts` (an interval join), or join a stream with a table (CREATE TABLE)";
        if j.join_type != JoinType::Inner {
            return Err(self.error(format!(
                "{} JOIN of two streams is not supported; an interval join is an inner JOIN",
                j.join_type
            )));
        }
        let left = self.lower(&j.left)?;
        let right = self.lower(&j.right)?;
        for side in [&left, &right] {
            if side.inputs.len() != 1 || side.join.is_some() {
                return Err(self.error("an interval join joins two streams, each one source or view; put a UNION ALL or another join in a view first"));
            }
            side.require_aggregated("aggregate them before joining")?;
        }
        // `right time - left time` must lie in [lower, upper].
        let (mut lower, mut upper) = (None::<Millis>, None::<Millis>);
        let conjuncts = j
            .filter
            .as_ref()
            .map(datafusion::logical_expr::utils::split_conjunction)
            .unwrap_or_default();
        for c in conjuncts {
            let Expr::BinaryExpr(b) = c else { continue };
            let (Some((x_side, x)), Some((y_side, y))) = (
                self.time_offset(&b.left, j, &left, &right),
                self.time_offset(&b.right, j, &left, &right),
            ) else {
                continue;
            };
            if x_side == y_side {
                continue;
            }
            let less = matches!(b.op, Op::Lt | Op::LtEq);
            let greater = matches!(b.op, Op::Gt | Op::GtEq);
            // left + x OP right + y, or right + x OP left + y.
            let (is_lower, value) = match (x_side, less, greater) {
                (0, true, _) => (true, x - y),
                (0, _, true) => (false, x - y),
                (_, true, _) => (false, y - x),
                (_, _, true) => (true, y - x),
                _ => continue,
            };
            if is_lower {
                lower = Some(lower.map_or(value, |l| l.max(value)));
            } else {
                upper = Some(upper.map_or(value, |u| u.min(value)));
            }
        }
        let (Some(lower), Some(upper)) = (lower, upper) else {
            return Err(self.error(no_bound));
        };
        if lower > upper {
            return Err(self.error(
                "the time bounds of this interval join leave no room: no pair of rows can match",
            ));
        }
        if j.on.is_empty() {
            return Err(self.error("an interval join needs an equality between the two streams in ON (a.device_id = b.device_id)"));
        }
        let left_keys =
            j.on.iter()
                .map(|(l, _)| self.physical(l, j.left.schema()))
                .collect::<Result<Vec<_>, _>>()?;
        let right_keys =
            j.on.iter()
                .map(|(_, r)| self.physical(r, j.right.schema()))
                .collect::<Result<Vec<_>, _>>()?;
        let filter = j
            .filter
            .as_ref()
            .map(|f| self.physical(f, &j.schema))
            .transpose()?;
        let join = IntervalJoin::new(
            left_keys,
            right_keys,
            lower,
            upper,
            filter,
            with_event_time(j.schema.as_arrow()),
        );
        let columns = j.schema.fields().len();
        Ok(Stage {
            inputs: [left.inputs, right.inputs].concat(),
            branches: vec![left.ops, right.ops],
            merged: None,
            join: Some(join),
            ops: Vec::new(),
            origins: vec![Origin::Value; columns],
            window: None,
            aggregated: false,
        })
    }

    /// `ts`, `ts + INTERVAL '1' MINUTE` or `ts - INTERVAL ...` over the event-time column of one
    /// side of a join: which side (0 left, 1 right) and the offset in milliseconds.
    fn time_offset(
        &self,
        e: &Expr,
        j: &datafusion::logical_expr::logical_plan::Join,
        left: &Stage,
        right: &Stage,
    ) -> Option<(usize, Millis)> {
        use datafusion::logical_expr::Operator as Op;
        match e {
            Expr::Column(c) => {
                if self.origin(left, c, j.left.schema()) == Origin::EventTime
                    && j.left.schema().has_column(c)
                {
                    Some((0, 0))
                } else if self.origin(right, c, j.right.schema()) == Origin::EventTime
                    && j.right.schema().has_column(c)
                {
                    Some((1, 0))
                } else {
                    None
                }
            }
            Expr::BinaryExpr(b) if matches!(b.op, Op::Plus | Op::Minus) => {
                let (side, base) = self.time_offset(&b.left, j, left, right)?;
                let Expr::Literal(v, _) = b.right.as_ref() else {
                    return None;
                };
                let ms = interval_millis(v)?;
                Some((
                    side,
                    if b.op == Op::Plus {
                        base + ms
                    } else {
                        base - ms
                    },
                ))
            }
            Expr::Cast(c) => self.time_offset(&c.expr, j, left, right),
            _ => None,
        }
    }

    /// `aggregate(...) OVER (PARTITION BY ... ORDER BY <event time> ROWS|RANGE ... PRECEDING)`.
    fn over_window(
        &self,
        stage: &Stage,
        w: &datafusion::logical_expr::logical_plan::Window,
    ) -> Result<OverWindow, SqlError> {
        use datafusion::logical_expr::{
            WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition,
        };
        let input = w.input.schema();
        let over_error = |m: &str| self.error_at(self.anchors.over, m.to_string());
        let mut partition: Option<Vec<Arc<dyn PhysicalExpr>>> = None;
        let mut calls = Vec::with_capacity(w.window_expr.len());
        for (e, field) in w
            .window_expr
            .iter()
            .zip(w.schema.fields().iter().skip(input.fields().len()))
        {
            let inner = match e {
                Expr::Alias(a) => a.expr.as_ref(),
                other => other,
            };
            let Expr::WindowFunction(f) = inner else {
                return Err(over_error(&format!("unexpected window expression {e}")));
            };
            let WindowFunctionDefinition::AggregateUDF(udf) = &f.fun else {
                return Err(over_error(&format!(
                    "{} OVER (...) is not supported in a continuous query; aggregates (avg, sum, count, min, max, stddev, ...) are",
                    f.fun
                )));
            };
            let p = &f.params;
            if p.filter.is_some() || p.distinct {
                return Err(over_error(
                    "FILTER and DISTINCT are not supported in an OVER (...) aggregate",
                ));
            }
            match p.order_by.as_slice() {
                [sort] if sort.asc => {
                    let is_time = matches!(&sort.expr, Expr::Column(c) if self.origin(stage, c, input) == Origin::EventTime);
                    if !is_time {
                        return Err(over_error(&format!(
                            "OVER (...) must be ORDER BY the event-time column (the source's WATERMARK column), not {}",
                            sort.expr
                        )));
                    }
                }
                [] => {
                    return Err(over_error(
                        "OVER (...) needs ORDER BY the event-time column, e.g. OVER (PARTITION BY device_id ORDER BY ts ROWS BETWEEN 9 PRECEDING AND CURRENT ROW)",
                    ));
                }
                _ => {
                    return Err(over_error(
                        "OVER (...) must be ORDER BY the event-time column alone, ascending",
                    ));
                }
            }
            let frame = &p.window_frame;
            if !matches!(frame.end_bound, WindowFrameBound::CurrentRow) {
                return Err(over_error(
                    "an OVER frame must end at CURRENT ROW: rows that follow have not happened yet",
                ));
            }
            let preceding = match &frame.start_bound {
                WindowFrameBound::Preceding(v) if v.is_null() => None,
                WindowFrameBound::Preceding(v) => Some(v.clone()),
                WindowFrameBound::CurrentRow => Some(ScalarValue::UInt64(Some(0))),
                WindowFrameBound::Following(_) => {
                    return Err(over_error(
                        "an OVER frame cannot start after the current row",
                    ));
                }
            };
            let frame = match frame.units {
                WindowFrameUnits::Rows => Frame::Rows(match preceding {
                    None => None,
                    Some(v) => Some(
                        v.cast_to(&datafusion::arrow::datatypes::DataType::UInt64)
                            .ok()
                            .and_then(|v| match v {
                                ScalarValue::UInt64(n) => n,
                                _ => None,
                            })
                            .ok_or_else(|| over_error("ROWS n PRECEDING needs a whole number"))?,
                    ),
                }),
                WindowFrameUnits::Range => Frame::Range(match preceding {
                    None => None,
                    Some(ScalarValue::UInt64(Some(0))) => Some(0),
                    Some(ScalarValue::IntervalMonthDayNano(Some(v))) if v.months == 0 => {
                        Some(v.days as i64 * 86_400_000 + v.nanoseconds / 1_000_000)
                    }
                    Some(ScalarValue::IntervalDayTime(Some(v))) => {
                        Some(v.days as i64 * 86_400_000 + v.milliseconds as i64)
                    }
                    Some(other) => {
                        return Err(over_error(&format!(
                            "RANGE over event time needs an interval such as INTERVAL '1' MINUTE PRECEDING, not {other}"
                        )));
                    }
                }),
                WindowFrameUnits::Groups => {
                    return Err(over_error(
                        "GROUPS frames are not supported; use ROWS or RANGE",
                    ));
                }
            };
            let keys = p
                .partition_by
                .iter()
                .map(|k| self.physical(k, input))
                .collect::<Result<Vec<_>, _>>()?;
            if partition.is_none() {
                partition = Some(keys);
            }
            let args = p
                .args
                .iter()
                .map(|a| self.physical(a, input))
                .collect::<Result<Vec<_>, _>>()?;
            let expr = AggregateExprBuilder::new(Arc::clone(udf), args)
                .schema(Arc::new(input.as_arrow().clone()))
                .alias(field.name().clone())
                .build()
                .map_err(|err| self.error(diagnose::message(&err)))?;
            let call = OverCall {
                expr: Arc::new(expr),
                frame,
            };
            call.new_accumulator().map_err(|err| {
                let at = diagnose::find_function(self.query, udf.name());
                self.error_at(at, format!("{}: {}", field.name(), diagnose::message(&err)))
            })?;
            calls.push(call);
        }
        Ok(OverWindow::new(
            partition.unwrap_or_default(),
            calls,
            with_event_time(w.schema.as_arrow()),
        ))
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
                Origin::WindowStart | Origin::WindowEnd
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

/// The length of an interval literal in milliseconds (days and less: months have no fixed length).
fn interval_millis(v: &ScalarValue) -> Option<Millis> {
    match v {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            Some(v.days as Millis * 86_400_000 + v.nanoseconds / 1_000_000)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(v.days as Millis * 86_400_000 + v.milliseconds as Millis)
        }
        _ => None,
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
