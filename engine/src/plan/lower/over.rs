//! `OVER (...)` windows: moving aggregates per key over the last rows or the last stretch of
//! event time.

use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;

use super::{Origin, Stage, Walk};
use crate::error::SqlError;
use crate::ops::{Frame, OverCall, OverWindow, with_event_time};
use crate::plan::diagnose;
use crate::time::interval_millis;

impl Walk<'_, '_> {
    /// An OVER window after the rows so far.
    pub(super) fn over(
        &self,
        w: &datafusion::logical_expr::logical_plan::Window,
    ) -> Result<Stage, SqlError> {
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
                    Some(v) if interval_millis(&v).is_some() => interval_millis(&v),
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
            with_event_time(w.input.schema().as_arrow()),
            with_event_time(w.schema.as_arrow()),
        ))
    }
}
