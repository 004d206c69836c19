//! `GROUP BY` over a window table: a window aggregate (TUMBLE, HOP) or a session aggregate, with
//! its keys, window columns and DataFusion aggregate calls.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;

use super::{Origin, Stage, Walk};
use crate::error::SqlError;
use crate::ops::{
    AggregateCall, Operator, OutputColumn, SessionAggregate, WindowAggregate, WindowKind,
    with_event_time,
};
use crate::plan::diagnose;

impl Walk<'_, '_> {
    /// An aggregate over the rows of a window table, grouped by keys and the window.
    pub(super) fn aggregate(
        &self,
        a: &datafusion::logical_expr::logical_plan::Aggregate,
    ) -> Result<Stage, SqlError> {
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
        let mut layout_origins: Vec<Origin> = layout
            .iter()
            .map(|c| match c {
                OutputColumn::WindowStart => Origin::WindowStart,
                OutputColumn::WindowEnd => Origin::WindowEnd,
                _ => Origin::Value,
            })
            .collect();
        layout_origins.resize(output.fields().len(), Origin::Value);
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
                with_event_time(input.as_arrow()),
                with_event_time(output),
            )),
            kind => Box::new(
                WindowAggregate::new(
                    kind,
                    keys,
                    Arc::new(Schema::new(key_fields)),
                    calls,
                    layout,
                    with_event_time(output),
                )
                .with_offset(call.offset),
            ),
        };
        // The window's bounds stay what they are (a window Top-N partitions by them); an
        // aggregate's rows are of one window each, so no column is an event time any more.
        stage.origins = layout_origins;
        stage.ops.push(op);
        stage.aggregated = true;
        Ok(stage)
    }
}
