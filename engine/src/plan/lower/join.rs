//! Joins: a stream with a reference table (a lookup join), two streams bounded in time (an
//! interval join).

use std::sync::Arc;

use datafusion::logical_expr::{Expr, LogicalPlan};

use super::{Origin, Stage, Walk};
use crate::error::SqlError;
use crate::ops::{
    IntervalJoin, JoinInput, LookupJoin, TableRead, WindowJoin, WindowJoinInput, WindowJoinType,
    with_event_time,
};
use crate::time::{Millis, interval_millis};

/// The columns of one side's window bounds.
#[derive(Debug, Clone, Copy)]
struct WindowColumnsOf {
    start: usize,
    end: usize,
    time: Option<usize>,
}

impl Walk<'_, '_> {
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
    pub(super) fn lookup_join(
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
            (None, None) => return self.stream_join(j),
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

    /// A join of two streams: a window join when ON equates both sides' window bounds, an
    /// interval join when it bounds their event times.
    fn stream_join(
        &self,
        j: &datafusion::logical_expr::logical_plan::Join,
    ) -> Result<Stage, SqlError> {
        let left = self.lower(&j.left)?;
        let right = self.lower(&j.right)?;
        for side in [&left, &right] {
            if side.inputs.len() != 1 || side.meet.is_some() {
                return Err(self.error("a join of two streams joins two streams, each one source or view; put a UNION ALL or another join in a view first"));
            }
            side.require_aggregated("aggregate them before joining")?;
        }
        match self.window_bounds(j, &left, &right)? {
            Some(bounds) => self.window_join(j, left, right, bounds),
            None => self.interval_join(j, left, right),
        }
    }

    /// The columns of each side's window bounds when ON equates them (`l.window_start =
    /// r.window_start AND l.window_end = r.window_end`).
    fn window_bounds(
        &self,
        j: &datafusion::logical_expr::logical_plan::Join,
        left: &Stage,
        right: &Stage,
    ) -> Result<Option<[WindowColumnsOf; 2]>, SqlError> {
        let (ls, rs) = (j.left.schema(), j.right.schema());
        let (mut start, mut end) = (None, None);
        for (l, r) in &j.on {
            let (Expr::Column(lc), Expr::Column(rc)) = (l, r) else {
                continue;
            };
            let at = |c, s: &datafusion::common::DFSchema| s.index_of_column(c).ok();
            match (self.origin(left, lc, ls), self.origin(right, rc, rs)) {
                (Origin::WindowStart, Origin::WindowStart) => start = at(lc, ls).zip(at(rc, rs)),
                (Origin::WindowEnd, Origin::WindowEnd) => end = at(lc, ls).zip(at(rc, rs)),
                _ => {}
            }
        }
        let time_of = |stage: &Stage| stage.origins.iter().position(|o| *o == Origin::WindowTime);
        match (start, end) {
            (Some((l_start, r_start)), Some((l_end, r_end))) => Ok(Some([
                WindowColumnsOf {
                    start: l_start,
                    end: l_end,
                    time: time_of(left),
                },
                WindowColumnsOf {
                    start: r_start,
                    end: r_end,
                    time: time_of(right),
                },
            ])),
            (None, None) => Ok(None),
            _ => Err(self.error(
                "a window join equates both window bounds: ON l.window_start = r.window_start AND l.window_end = r.window_end (and the keys)",
            )),
        }
    }

    /// A window join: both sides' rows of a window joined once the window is over.
    fn window_join(
        &self,
        j: &datafusion::logical_expr::logical_plan::Join,
        left: Stage,
        right: Stage,
        [lw, rw]: [WindowColumnsOf; 2],
    ) -> Result<Stage, SqlError> {
        use datafusion::logical_expr::JoinType;
        let kind = match j.join_type {
            JoinType::Inner => WindowJoinType::Inner,
            JoinType::Left => WindowJoinType::Left,
            JoinType::Right => WindowJoinType::Right,
            JoinType::Full => WindowJoinType::Full,
            JoinType::LeftSemi => WindowJoinType::LeftSemi,
            JoinType::LeftAnti => WindowJoinType::LeftAnti,
            JoinType::RightSemi => WindowJoinType::RightSemi,
            JoinType::RightAnti => WindowJoinType::RightAnti,
            other => {
                return Err(self.error(format!("{other} window joins are not supported")));
            }
        };
        let keys = |side: usize, schema: &datafusion::common::DFSchema| {
            j.on.iter()
                .map(|pair| self.physical(if side == 0 { &pair.0 } else { &pair.1 }, schema))
                .collect::<Result<Vec<_>, _>>()
        };
        let pairs = j
            .left
            .schema()
            .join(j.right.schema())
            .map_err(|e| self.error(format!("internal: the joined columns: {e}")))?;
        let one_side = matches!(
            kind,
            WindowJoinType::LeftSemi
                | WindowJoinType::LeftAnti
                | WindowJoinType::RightSemi
                | WindowJoinType::RightAnti
        );
        let filter = j
            .filter
            .as_ref()
            .map(|f| self.physical(f, if one_side { &pairs } else { &j.schema }))
            .transpose()?;
        let input = |side: usize, w: WindowColumnsOf, plan: &LogicalPlan| {
            Ok::<_, SqlError>(WindowJoinInput {
                keys: keys(side, plan.schema())?,
                start: w.start,
                end: w.end,
                time: w.time,
                schema: with_event_time(plan.schema().as_arrow()),
            })
        };
        let join = WindowJoin::new(
            input(0, lw, &j.left)?,
            input(1, rw, &j.right)?,
            kind,
            filter,
            with_event_time(pairs.as_arrow()),
            with_event_time(j.schema.as_arrow()),
        )
        .null_aware(j.null_aware);
        // The joined rows leave at their window's end: no column is their event time any more.
        let plain = |origins: Vec<Origin>| -> Vec<Origin> {
            origins
                .into_iter()
                .map(|o| {
                    if o == Origin::EventTime {
                        Origin::Value
                    } else {
                        o
                    }
                })
                .collect()
        };
        let origins = match kind {
            WindowJoinType::LeftSemi | WindowJoinType::LeftAnti => plain(left.origins),
            WindowJoinType::RightSemi | WindowJoinType::RightAnti => plain(right.origins),
            _ => [plain(left.origins), plain(right.origins)].concat(),
        };
        Ok(Stage {
            inputs: [left.inputs, right.inputs].concat(),
            branches: vec![left.ops, right.ops],
            meet: Some(Box::new(join)),
            ops: Vec::new(),
            origins,
            window: None,
            aggregated: true,
        })
    }

    /// A join of two streams bounded in time (an interval join).
    fn interval_join(
        &self,
        j: &datafusion::logical_expr::logical_plan::Join,
        left: Stage,
        right: Stage,
    ) -> Result<Stage, SqlError> {
        use datafusion::logical_expr::{JoinType, Operator as Op};
        let no_bound = "a JOIN of two streams needs a time bound: add `AND d.ts BETWEEN r.ts - INTERVAL '1' MINUTE AND r.ts` (an interval join), join the rows of two windows on their bounds (`l.window_start = r.window_start AND l.window_end = r.window_end`: a window join), or join a stream with a table (CREATE TABLE)";
        let (outer_left, outer_right) = match j.join_type {
            JoinType::Inner => (false, false),
            JoinType::Left => (true, false),
            JoinType::Right => (false, true),
            JoinType::Full => (true, true),
            other => {
                return Err(self.error(format!(
                    "{other} JOIN of two streams bounded in time is not supported; an interval join is an inner, LEFT, RIGHT or FULL JOIN"
                )));
            }
        };
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
        let (lower, upper) = match (lower, upper) {
            (Some(lower), Some(upper)) => (lower, upper),
            (None, None) => return Err(self.error(no_bound)),
            (Some(_), None) => {
                return Err(self.error(
                    "this interval join bounds the right side's event time from below only: add an upper bound too (`AND r.ts <= l.ts + INTERVAL '1' MINUTE`); without both, each side's rows would have to be kept forever",
                ));
            }
            (None, Some(_)) => {
                return Err(self.error(
                    "this interval join bounds the right side's event time from above only: add a lower bound too (`AND r.ts >= l.ts - INTERVAL '1' MINUTE`); without both, each side's rows would have to be kept forever",
                ));
            }
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
            JoinInput {
                keys: left_keys,
                schema: with_event_time(j.left.schema().as_arrow()),
            },
            JoinInput {
                keys: right_keys,
                schema: with_event_time(j.right.schema().as_arrow()),
            },
            lower,
            upper,
            filter,
            with_event_time(j.schema.as_arrow()),
        )
        .outer(outer_left, outer_right);
        let columns = j.schema.fields().len();
        Ok(Stage {
            inputs: [left.inputs, right.inputs].concat(),
            branches: vec![left.ops, right.ops],
            meet: Some(Box::new(join)),
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
}
