//! `GROUP BY` over a window table: a window aggregate (TUMBLE, HOP) or a session aggregate, with
//! its keys, window columns and DataFusion aggregate calls.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, GroupingSet, LogicalPlan};
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;

use super::{Origin, Stage, Walk};
use crate::error::SqlError;
use crate::ops::{
    AggregateCall, GroupingSets, Operator, OutputColumn, SessionAggregate, WindowAggregate,
    WindowKind, with_event_time,
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
        // `GROUP BY window_start, window_end, GROUPING SETS (...)` (or ROLLUP, CUBE): DataFusion
        // makes one grouping set of it, over the distinct expressions of every set.
        let (group_exprs, sets): (Vec<&Expr>, Option<Vec<Vec<&Expr>>>) =
            match a.group_expr.as_slice() {
                [Expr::GroupingSet(g)] => (g.distinct_expr(), Some(grouping_sets(g))),
                other => (other.iter().collect(), None),
            };
        let mut layout = Vec::new();
        let mut keys = Vec::new();
        let mut key_exprs: Vec<&Expr> = Vec::new();
        let mut window_exprs: Vec<&Expr> = Vec::new();
        let mut key_fields: Vec<Field> = Vec::new();
        let (mut has_start, mut has_end) = (false, false);
        for (i, g) in group_exprs.iter().copied().enumerate() {
            if matches!(g, Expr::GroupingSet(_)) {
                return Err(self.error_at(
                    self.anchors.group_by,
                    "GROUPING SETS, CUBE and ROLLUP inside one another are not supported",
                ));
            }
            let origin = match g {
                Expr::Column(c) => self.origin(&stage, c, input),
                _ => Origin::Value,
            };
            match origin {
                Origin::WindowStart => {
                    has_start = true;
                    window_exprs.push(g);
                    layout.push(OutputColumn::WindowStart);
                }
                Origin::WindowEnd => {
                    has_end = true;
                    window_exprs.push(g);
                    layout.push(OutputColumn::WindowEnd);
                }
                Origin::WindowTime => layout.push(OutputColumn::WindowTime),
                Origin::Value | Origin::EventTime => {
                    self.check_window_use(&stage, g, input)?;
                    layout.push(OutputColumn::Key(keys.len()));
                    keys.push(self.physical(g, input)?);
                    key_exprs.push(g);
                    key_fields.push(output.field(i).clone());
                }
            }
        }
        if let Some(partition) = &call.partition {
            self.check_session_partition(partition, &key_exprs)?;
        }
        let grouping = match &sets {
            None => None,
            Some(sets) => {
                if matches!(call.kind, WindowKind::Session { .. }) {
                    return Err(self.error_at(
                        self.anchors.group_by,
                        "GROUPING SETS, CUBE and ROLLUP over SESSION(...) are not supported; use TUMBLE, HOP or CUMULATE",
                    ));
                }
                if let Some(set) = sets
                    .iter()
                    .find(|set| !window_exprs.iter().all(|w| set.contains(w)))
                {
                    let shown: Vec<String> = set.iter().map(|e| shown(e)).collect();
                    return Err(self.error_at(
                        self.anchors.group_by,
                        format!(
                            "the grouping set ({}) leaves out window_start or window_end: every set of a window aggregate groups by the window; write GROUP BY window_start, window_end, GROUPING SETS (...)",
                            shown.join(", ")
                        ),
                    ));
                }
                // The grouping id comes after the grouping expressions in the output.
                let id_field = output.field(group_exprs.len()).clone();
                layout.push(OutputColumn::Key(keys.len()));
                let id_type = id_field.data_type().clone();
                key_fields.push(id_field);
                Some(GroupingSets {
                    sets: grouping_ids(&group_exprs, sets)
                        .into_iter()
                        .zip(sets)
                        .map(|(id, set)| (key_exprs.iter().map(|k| set.contains(k)).collect(), id))
                        .collect(),
                    id_type,
                })
            }
        };
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
                // The rows' event time: a time attribute a later window or OVER reads.
                OutputColumn::WindowTime => Origin::EventTime,
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
            kind => {
                let op = WindowAggregate::new(
                    kind,
                    keys,
                    Arc::new(Schema::new(key_fields)),
                    calls,
                    layout,
                    with_event_time(output),
                )
                .with_offset(call.offset);
                Box::new(match grouping {
                    Some(sets) => op.with_grouping_sets(sets),
                    None => op,
                })
            }
        };
        // The window's bounds stay what they are (a window Top-N partitions by them); an
        // aggregate's rows are of one window each, so no column is an event time any more.
        stage.origins = layout_origins;
        stage.ops.push(op);
        stage.aggregated = true;
        Ok(stage)
    }
}

impl Walk<'_, '_> {
    /// Flink's sessions are keyed by their PARTITION BY columns alone: an aggregate over them groups
    /// by exactly those (grouping by other keys within a session is not supported).
    fn check_session_partition(
        &self,
        partition: &[(String, crate::error::Location)],
        keys: &[&Expr],
    ) -> Result<(), SqlError> {
        let names: Vec<Option<&str>> = keys
            .iter()
            .map(|k| match k {
                Expr::Column(c) => Some(c.name.as_str()),
                _ => None,
            })
            .collect();
        let same = names.len() == partition.len()
            && partition
                .iter()
                .all(|(p, _)| names.contains(&Some(p.as_str())));
        if same {
            return Ok(());
        }
        let listed: Vec<&str> = partition.iter().map(|(p, _)| p.as_str()).collect();
        let grouped: Vec<String> = keys.iter().map(|k| shown(k)).collect();
        let partition_by = if listed.is_empty() {
            "no PARTITION BY: one session over all rows".to_string()
        } else {
            format!("PARTITION BY {}", listed.join(", "))
        };
        Err(self.error_at(
            self.anchors.group_by,
            format!(
                "SESSION(TABLE ... {partition_by}) groups its sessions by exactly those columns, but the GROUP BY has [{}]; group by {}window_start, window_end, or partition the sessions by the columns grouped (SESSION(TABLE source PARTITION BY device_id, ...) for a session per device)",
                grouped.join(", "),
                listed.iter().map(|l| format!("{l}, ")).collect::<String>()
            ),
        ))
    }
}

/// The sets of a grouping set, as DataFusion enumerates them: `ROLLUP (a, b)` is `(), (a), (a, b)`,
/// `CUBE (a, b)` every subset.
fn grouping_sets(g: &GroupingSet) -> Vec<Vec<&Expr>> {
    match g {
        GroupingSet::GroupingSets(sets) => sets.iter().map(|s| s.iter().collect()).collect(),
        GroupingSet::Rollup(exprs) => (0..=exprs.len())
            .map(|i| exprs[..i].iter().collect())
            .collect(),
        GroupingSet::Cube(exprs) => (0..1u64 << exprs.len())
            .map(|bits| {
                exprs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| bits & (1 << i) != 0)
                    .map(|(_, e)| e)
                    .collect()
            })
            .collect(),
    }
}

/// An expression as the query wrote it: a column by its name alone.
fn shown(e: &Expr) -> String {
    match e {
        Expr::Column(c) => c.name.clone(),
        other => other.to_string(),
    }
}

/// Each set's grouping id, as DataFusion's `__grouping_id` (which `GROUPING(...)` reads): a bit
/// per expression of `exprs`, the last the lowest, set where the set leaves it out, and above them
/// the ordinal of a set that repeats an earlier one.
fn grouping_ids(exprs: &[&Expr], sets: &[Vec<&Expr>]) -> Vec<u64> {
    let n = exprs.len();
    let masks: Vec<u64> = sets
        .iter()
        .map(|set| {
            exprs
                .iter()
                .enumerate()
                .filter(|(_, e)| !set.contains(e))
                .map(|(i, _)| 1u64 << (n - 1 - i))
                .sum()
        })
        .collect();
    masks
        .iter()
        .enumerate()
        .map(|(j, &mask)| {
            let ordinal = masks[..j].iter().filter(|&&m| m == mask).count() as u64;
            mask | (ordinal << n)
        })
        .collect()
}
