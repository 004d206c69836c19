//! `OVER (...)` windows: moving aggregates per key over the last rows or the last stretch of
//! event time.

use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;

use super::{Origin, Stage, Walk};
use crate::error::SqlError;
use crate::ops::{Following, Frame, OverCall, OverWindow, WindowFunction, with_event_time};
use crate::plan::diagnose;
use crate::time::interval_millis;

impl Walk<'_, '_> {
    /// An OVER window after the rows so far.
    pub(super) fn over(
        &self,
        w: &datafusion::logical_expr::logical_plan::Window,
    ) -> Result<Stage, SqlError> {
        let mut stage = self.lower(&w.input)?;
        if let Some(ops) = self.window_rank(&stage, w)? {
            stage.ops.extend(ops);
            stage.origins.push(Origin::Value);
            stage.window = None;
            return Ok(stage);
        }
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
            let name = f.fun.name().to_ascii_lowercase();
            let is_window_function = WINDOW_FUNCTIONS.contains(&name.as_str());
            let udf = match &f.fun {
                WindowFunctionDefinition::AggregateUDF(udf) if !is_window_function => Some(udf),
                _ if is_window_function => None,
                _ => {
                    return Err(self.error_at(
                        diagnose::find_function(self.query, &name),
                        format!(
                            "{name} OVER (...) is not supported in a continuous query; the aggregates (avg, sum, count, min, max, stddev, ...) and {} are",
                            WINDOW_FUNCTIONS.join(", ")
                        ),
                    ));
                }
            };
            let p = &f.params;
            if p.distinct {
                return Err(over_error(
                    "DISTINCT is not supported in an OVER (...) aggregate",
                ));
            }
            if p.filter.is_some() && !IGNORING_NULLS.contains(&name.as_str()) {
                return Err(self.error_at(
                    diagnose::find_function(self.query, &name),
                    format!(
                        "FILTER (WHERE ...) on {name}(...) OVER (...) is not supported; it is on {}",
                        IGNORING_NULLS.join(", ")
                    ),
                ));
            }
            let ignore_nulls = p.null_treatment
                == Some(datafusion::sql::sqlparser::ast::NullTreatment::IgnoreNulls.into());
            if ignore_nulls && !["lag", "first_value", "last_value"].contains(&name.as_str()) {
                return Err(self.error_at(
                    diagnose::find_function(self.query, &name),
                    format!(
                        "{name}(...) IGNORE NULLS is not supported; LAG, FIRST_VALUE and LAST_VALUE take it"
                    ),
                ));
            }
            let time = match p.order_by.as_slice() {
                [sort] if sort.asc => {
                    let is_time = matches!(&sort.expr, Expr::Column(c) if self.origin(stage, c, input) == Origin::EventTime);
                    if !is_time {
                        return Err(over_error(&format!(
                            "OVER (...) must be ORDER BY the event-time column (the source's WATERMARK column), not {}",
                            sort.expr
                        )));
                    }
                    &sort.expr
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
            };
            let frame = &p.window_frame;
            let (following, ends_before) = match &frame.end_bound {
                WindowFrameBound::CurrentRow => (None, None),
                WindowFrameBound::Following(v) if v.is_null() => {
                    return Err(over_error(
                        "an OVER frame cannot end at UNBOUNDED FOLLOWING: a stream has no last row; end it at CURRENT ROW or n FOLLOWING",
                    ));
                }
                WindowFrameBound::Following(v) => (Some(v.clone()), None),
                WindowFrameBound::Preceding(v) if v.is_null() => {
                    return Err(over_error(
                        "an OVER frame cannot end at UNBOUNDED PRECEDING",
                    ));
                }
                WindowFrameBound::Preceding(v) => (None, Some(v.clone())),
            };
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
            let rows = |v: ScalarValue, what: &str| {
                v.cast_to(&datafusion::arrow::datatypes::DataType::UInt64)
                    .ok()
                    .and_then(|v| match v {
                        ScalarValue::UInt64(n) => n,
                        _ => None,
                    })
                    .ok_or_else(|| over_error(&format!("ROWS n {what} needs a whole number")))
            };
            let range = |v: ScalarValue, what: &str| {
                match v {
                ScalarValue::UInt64(Some(0)) => Ok(0),
                v => interval_millis(&v).ok_or_else(|| {
                    over_error(&format!(
                        "RANGE over event time needs an interval such as INTERVAL '1' MINUTE {what}, not {v}"
                    ))
                }),
            }
            };
            let mut ends_before_rows = 0;
            let (frame, following) = match frame.units {
                WindowFrameUnits::Rows if ends_before.is_some() => {
                    let end = ends_before
                        .map(|v| rows(v, "PRECEDING"))
                        .transpose()?
                        .unwrap_or(0);
                    let before = preceding.map(|v| rows(v, "PRECEDING")).transpose()?;
                    if before.is_some_and(|b| b < end) {
                        return Err(over_error(
                            "this OVER frame starts after it ends: its start must be at least as many rows back as its end",
                        ));
                    }
                    ends_before_rows = end;
                    // The frame holds the rows up to `end` before the current one.
                    (Frame::Rows(before.map(|b| b - end)), Following::None)
                }
                WindowFrameUnits::Range if ends_before.is_some() => {
                    return Err(over_error(
                        "a RANGE frame ending before the current row is not supported; use ROWS BETWEEN n PRECEDING AND m PRECEDING",
                    ));
                }
                WindowFrameUnits::Rows => {
                    let after = following.map(|v| rows(v, "FOLLOWING")).transpose()?;
                    let before = preceding.map(|v| rows(v, "PRECEDING")).transpose()?;
                    match after {
                        // The frame slides as one ending at its last row.
                        Some(f) if f > 0 => (
                            Frame::Rows(before.map(|b| b.saturating_add(f))),
                            Following::Rows(f),
                        ),
                        _ => (Frame::Rows(before), Following::None),
                    }
                }
                WindowFrameUnits::Range => {
                    let after = following.map(|v| range(v, "FOLLOWING")).transpose()?;
                    let before = preceding.map(|v| range(v, "PRECEDING")).transpose()?;
                    match after {
                        Some(f) if f > 0 => (Frame::Range(before), Following::Range(f)),
                        _ => (Frame::Range(before), Following::None),
                    }
                }
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
            let (udf, args, frame, following, ends_before) = match udf {
                Some(udf) => (
                    Arc::clone(udf),
                    p.args
                        .iter()
                        .map(|a| self.physical(&filtered(a, p.filter.as_deref()), input))
                        .collect::<Result<Vec<_>, _>>()?,
                    frame,
                    following,
                    ends_before_rows,
                ),
                None => {
                    let at = diagnose::find_function(self.query, &name);
                    let (function, (mut frame, following), arg) = window_function(
                        &name,
                        &p.args,
                        (frame, following),
                        field.data_type(),
                        time,
                    )
                    .map_err(|m| self.error_at(at, m))?;
                    if ignore_nulls {
                        match (&function, frame, following) {
                            // The n-th value before that is not NULL may be any way back.
                            (WindowFunction::Lag { .. }, _, _) => frame = Frame::Rows(None),
                            (_, Frame::Rows(None) | Frame::Range(None), Following::None) => {}
                            _ => {
                                return Err(self.error_at(
                                    at,
                                    format!(
                                        "{name}(...) IGNORE NULLS is supported over a frame from UNBOUNDED PRECEDING to CURRENT ROW"
                                    ),
                                ));
                            }
                        }
                    }
                    let arg = self.physical(arg, input)?;
                    let arg_type = arg
                        .data_type(input.as_arrow())
                        .map_err(|err| self.error_at(at, diagnose::message(&err)))?;
                    let udf = function.udaf(arg_type, field.data_type().clone(), ignore_nulls);
                    // FIRST_VALUE and LAST_VALUE read the frame written; the other window
                    // functions have frames of their own.
                    let ends_before = if matches!(
                        function,
                        WindowFunction::FirstValue { .. } | WindowFunction::LastValue
                    ) {
                        ends_before_rows
                    } else {
                        0
                    };
                    (Arc::new(udf), vec![arg], frame, following, ends_before)
                }
            };
            let expr = AggregateExprBuilder::new(Arc::clone(&udf), args)
                .schema(Arc::new(input.as_arrow().clone()))
                .alias(field.name().clone())
                .build()
                .map_err(|err| self.error(diagnose::message(&err)))?;
            let call = OverCall {
                expr: Arc::new(expr),
                frame,
                following,
                ends_before,
            };
            call.new_accumulator().map_err(|err| {
                let at = diagnose::find_function(self.query, udf.name());
                self.error_at(at, format!("{}: {}", field.name(), diagnose::message(&err)))
            })?;
            calls.push(call);
        }
        if calls.iter().any(|c| c.ends_before > 0)
            && calls.iter().any(|c| c.following != Following::None)
        {
            return Err(over_error(
                "OVER frames that end before the current row and frames that reach after it in one SELECT are not supported; compute them in two views",
            ));
        }
        Ok(OverWindow::new(
            partition.unwrap_or_default(),
            calls,
            with_event_time(w.input.schema().as_arrow()),
            with_event_time(w.schema.as_arrow()),
        ))
    }
}

/// The aggregates that skip NULL arguments: `agg(x) FILTER (WHERE c)` is `agg(CASE WHEN c THEN x
/// END)` for them, so that a row left out by the filter enters and leaves the frame as a NULL.
const IGNORING_NULLS: [&str; 13] = [
    "avg",
    "sum",
    "count",
    "min",
    "max",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "var_samp",
    "var_pop",
    "variance",
    "bool_and",
    "bool_or",
];

/// `arg`, NULL where `filter` does not hold.
fn filtered(arg: &Expr, filter: Option<&Expr>) -> Expr {
    match filter {
        None => arg.clone(),
        Some(c) => Expr::Case(datafusion::logical_expr::Case {
            expr: None,
            when_then_expr: vec![(Box::new(c.clone()), Box::new(arg.clone()))],
            else_expr: None,
        }),
    }
}

/// The window functions an OVER window computes besides the aggregates.
const WINDOW_FUNCTIONS: [&str; 7] = [
    "lag",
    "lead",
    "row_number",
    "rank",
    "dense_rank",
    "first_value",
    "last_value",
];

/// Window function `name` with arguments `args`, the frame written for it, giving `output`, over
/// rows ordered by `time`: what it computes, over which frame, reading which argument.
fn window_function<'e>(
    name: &str,
    args: &'e [Expr],
    written: (Frame, Following),
    output: &datafusion::arrow::datatypes::DataType,
    time: &'e Expr,
) -> Result<(WindowFunction, (Frame, Following), &'e Expr), String> {
    let now = Following::None;
    let value = || {
        args.first()
            .ok_or_else(|| format!("{name} takes a column: {name}(temp)"))
    };
    Ok(match name {
        "lag" | "lead" => {
            let upper = name.to_ascii_uppercase();
            if args.len() > 3 {
                return Err(format!(
                    "{upper} takes a column, an offset and a default: {upper}(temp, 1, 0)"
                ));
            }
            let offset = match args.get(1) {
                None => 1,
                Some(e) => constant(e)
                    .and_then(|v| {
                        v.cast_to(&datafusion::arrow::datatypes::DataType::Int64)
                            .ok()
                    })
                    .and_then(|v| match v {
                        ScalarValue::Int64(Some(n)) => u64::try_from(n).ok(),
                        _ => None,
                    })
                    .ok_or_else(|| {
                        format!(
                            "the offset of {upper} is a whole number of rows, 0 or more, not {e}"
                        )
                    })?,
            };
            let default = match args.get(2) {
                None => ScalarValue::try_from(output).map_err(|e| e.to_string())?,
                Some(e) => constant(e)
                    .and_then(|v| v.cast_to(output).ok())
                    .ok_or_else(|| {
                        format!(
                            "the default of {upper} is a constant of the column's type, not {e}"
                        )
                    })?,
            };
            // LAG reads the row `offset` before the current one, LEAD the row `offset` after it
            // (once it has come), whatever frame is written.
            if name == "lag" {
                (
                    WindowFunction::Lag { offset, default },
                    (Frame::Rows(Some(offset)), now),
                    value()?,
                )
            } else {
                (
                    WindowFunction::Lead { offset, default },
                    (Frame::Rows(Some(offset)), Following::Rows(offset)),
                    value()?,
                )
            }
        }
        "row_number" => (WindowFunction::RowNumber, (Frame::Rows(None), now), time),
        "rank" => (WindowFunction::Rank, (Frame::Rows(None), now), time),
        "dense_rank" => (WindowFunction::DenseRank, (Frame::Rows(None), now), time),
        "first_value" => (
            WindowFunction::FirstValue {
                bounded: matches!(written.0, Frame::Rows(Some(_)) | Frame::Range(Some(_))),
            },
            written,
            value()?,
        ),
        _ => (WindowFunction::LastValue, written, value()?),
    })
}

/// The value of a constant expression (a literal, perhaps cast).
fn constant(e: &Expr) -> Option<ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v.clone()),
        Expr::Cast(c) => constant(&c.expr)?.cast_to(c.field.data_type()).ok(),
        Expr::TryCast(c) => constant(&c.expr)?.cast_to(c.field.data_type()).ok(),
        Expr::Negative(e) => constant(e)?.arithmetic_negate().ok(),
        _ => None,
    }
}
