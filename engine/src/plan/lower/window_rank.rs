//! Window Top-N and window deduplication: `ROW_NUMBER()`, `RANK()` or `DENSE_RANK()` `OVER
//! (PARTITION BY window_start, window_end ...)`, over a window aggregate's rows or a window table
//! function's.

use datafusion::logical_expr::Expr;

use super::{Origin, Stage, Walk};
use crate::error::SqlError;
use crate::ops::{Operator, RankOrder, WindowFunction, WindowRank, WindowRows, with_event_time};
use crate::plan::diagnose;

impl Walk<'_, '_> {
    /// Window Top-N and deduplication: a ranking `OVER (PARTITION BY window_start, window_end
    /// ... ORDER BY ...)` of the rows of a window aggregate, or of a window table function's rows
    /// (held until their window closes); `None` for any other OVER window.
    pub(super) fn window_rank(
        &self,
        stage: &Stage,
        w: &datafusion::logical_expr::logical_plan::Window,
    ) -> Result<Option<Vec<Box<dyn Operator>>>, SqlError> {
        let [e] = w.window_expr.as_slice() else {
            return Ok(None);
        };
        let inner = match e {
            Expr::Alias(a) => a.expr.as_ref(),
            other => other,
        };
        let Expr::WindowFunction(f) = inner else {
            return Ok(None);
        };
        let name = f.fun.name().to_ascii_lowercase();
        let function = match name.as_str() {
            "row_number" => WindowFunction::RowNumber,
            "rank" => WindowFunction::Rank,
            "dense_rank" => WindowFunction::DenseRank,
            _ => return Ok(None),
        };
        let input = w.input.schema();
        let p = &f.params;
        let origins: Vec<Origin> = p
            .partition_by
            .iter()
            .map(|k| match k {
                Expr::Column(c) => self.origin(stage, c, input),
                _ => Origin::Value,
            })
            .collect();
        if !(origins.contains(&Origin::WindowStart) && origins.contains(&Origin::WindowEnd)) {
            return Ok(None);
        }
        let at = diagnose::find_function(self.query, &name);
        let mut ops: Vec<Box<dyn Operator>> = Vec::new();
        if !stage.aggregated {
            // Rows of a window table function: each window's rows are ranked once it closes.
            if let Some(call) = stage
                .window
                .as_ref()
                .filter(|c| c.kind.assigned_by_aggregate())
            {
                return Err(self.error_at(
                    at,
                    format!(
                        "{name}() over the rows of {}(...) is not supported; rank the rows of a window aggregate over it (GROUP BY ..., window_start, window_end)",
                        call.function()
                    ),
                ));
            }
            let end = stage
                .origins
                .iter()
                .position(|o| *o == Origin::WindowEnd)
                .ok_or_else(|| self.error_at(at, "internal: no window_end column to rank by"))?;
            ops.push(Box::new(WindowRows::new(
                end,
                with_event_time(input.as_arrow()),
            )));
        }
        if p.order_by.is_empty() {
            return Err(self.error_at(
                at,
                format!("{name}() OVER (PARTITION BY window_start, window_end ...) needs an ORDER BY: what ranks first"),
            ));
        }
        let partition = p
            .partition_by
            .iter()
            .map(|k| self.physical(k, input))
            .collect::<Result<Vec<_>, _>>()?;
        let order = p
            .order_by
            .iter()
            .map(|s| {
                Ok(RankOrder {
                    expr: self.physical(&s.expr, input)?,
                    descending: !s.asc,
                    nulls_first: s.nulls_first,
                })
            })
            .collect::<Result<Vec<_>, SqlError>>()?;
        let rank = WindowRank::new(
            function,
            partition,
            order,
            with_event_time(w.schema.as_arrow()),
        )
        .map_err(|e| self.error_at(at, e.to_string()))?;
        ops.push(Box::new(rank));
        Ok(Some(ops))
    }
}
