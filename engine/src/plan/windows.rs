//! Window calls in `FROM`: `TUMBLE(src, ts, size)` and `HOP(src, ts, slide, size)` (also Flink's
//! `TUMBLE(TABLE src, DESCRIPTOR(ts), size)` and named arguments) are replaced by a table that
//! DataFusion can plan, with the source's columns plus `window_start` and `window_end`; the call is
//! remembered so the streaming walk knows which window the table stands for.

use std::ops::ControlFlow;

use datafusion::arrow::datatypes::{DataType, TimeUnit};

use datafusion::sql::sqlparser::ast::{
    self as sql, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, TableAlias,
    TableFactor, VisitMut, VisitorMut,
};

use super::Input;
use super::Planner;
use super::names::{location_of, normalize};
use super::planner::{WINDOW_COLUMNS, window_table_schema};
use crate::error::{Location, SqlError};
use crate::ops::WindowKind;
use crate::sql::parser::PARTITIONED_FUNCTION;
use crate::time::{Millis, show_duration};

/// A window call, by the name of the table that replaced it.
#[derive(Debug, Clone)]
pub struct WindowCall {
    pub kind: WindowKind,
    /// The source or view windowed.
    pub input: Input,
    /// The event-time column, in the input's columns.
    pub time_index: usize,
    pub location: Location,
    /// Where windows start, from the epoch (Flink's `offset` argument; 0 without).
    pub offset: Millis,
    /// Flink's `SESSION(TABLE src [PARTITION BY k], ...)`: sessions keyed by these columns alone
    /// (over all rows without any). `None` for Eddy's `SESSION(src, ...)`, whose sessions are
    /// keyed by the GROUP BY keys.
    pub partition: Option<Vec<(String, Location)>>,
}

impl WindowCall {
    pub fn function(&self) -> &'static str {
        match self.kind {
            WindowKind::Tumble { .. } => "TUMBLE",
            WindowKind::Hop { .. } => "HOP",
            WindowKind::Cumulate { .. } => "CUMULATE",
            WindowKind::Session { .. } => "SESSION",
        }
    }
}

pub fn rewrite_window_calls(query: &mut sql::Query, planner: &mut Planner) -> Result<(), SqlError> {
    let mut rewriter = Rewriter { planner };
    match query.visit(&mut rewriter) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Rewriter<'p, 'a> {
    planner: &'p mut Planner<'a>,
}

impl VisitorMut for Rewriter<'_, '_> {
    type Break = SqlError;

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<SqlError> {
        if let TableFactor::MatchRecognize { alias, .. } = factor {
            let alias = alias.clone();
            let location = factor_location(factor);
            let call = match super::match_recognize::plan_match_recognize(
                self.planner,
                factor,
                location,
            ) {
                Ok(c) => c,
                Err(e) => return ControlFlow::Break(e),
            };
            let table = format!("__match_{}", self.planner.match_calls.len() + 1);
            if let Err(e) =
                self.planner
                    .register_table(&table, std::sync::Arc::clone(&call.schema), location)
            {
                return ControlFlow::Break(e);
            }
            self.planner.match_calls.insert(table.clone(), call);
            *factor = TableFactor::Table {
                name: ObjectName::from(vec![Ident::new(table)]),
                alias,
                args: None,
                with_hints: vec![],
                version: None,
                with_ordinality: false,
                partitions: vec![],
                json_path: None,
                sample: None,
                index_hints: vec![],
            };
            return ControlFlow::Continue(());
        }
        let TableFactor::Table {
            name, args, alias, ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let Some(call_args) = args.as_ref() else {
            return ControlFlow::Continue(());
        };
        let function = name.to_string().to_uppercase();
        let location = location_of(name);
        let result = match function.as_str() {
            "TUMBLE" => self.window_call(
                &call_args.args,
                &["data", "timecol", "size", "offset"],
                location,
            ),
            "HOP" => self.window_call(
                &call_args.args,
                &["data", "timecol", "slide", "size", "offset"],
                location,
            ),
            "SESSION" => self.window_call(&call_args.args, &["data", "timecol", "gap"], location),
            "CUMULATE" => self.window_call(
                &call_args.args,
                &["data", "timecol", "step", "size", "offset"],
                location,
            ),
            _ => Err(SqlError::new(
                location,
                format!(
                    "unknown table function '{name}'; window functions are TUMBLE, HOP, CUMULATE and SESSION"
                ),
            )),
        };
        match result {
            Ok((call, source_name)) => {
                let table = format!("__window_{}", self.planner.window_calls.len() + 1);
                let schema = window_table_schema(self.planner.input_schema(call.input));
                if let Err(e) = self.planner.register_table(&table, schema, location) {
                    return ControlFlow::Break(e);
                }
                self.planner.window_calls.insert(table.clone(), call);
                *name = ObjectName::from(vec![Ident::new(table)]);
                *args = None;
                if alias.is_none() {
                    *alias = Some(TableAlias {
                        explicit: true,
                        name: Ident::new(source_name),
                        columns: vec![],
                        at: None,
                    });
                }
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }
}

impl Rewriter<'_, '_> {
    /// Reads the arguments of `TUMBLE` (data, timecol, size), `HOP` (data, timecol, slide, size),
    /// `CUMULATE` (data, timecol, step, size) or `SESSION` (data, timecol, gap).
    fn window_call(
        &self,
        args: &[FunctionArg],
        names: &[&str],
        location: Location,
    ) -> Result<(WindowCall, String), SqlError> {
        let function = match names.get(2) {
            Some(&"gap") => "SESSION",
            Some(&"size") => "TUMBLE",
            Some(&"step") => "CUMULATE",
            _ => "HOP",
        };
        let session = function == "SESSION";
        let cumulate = function == "CUMULATE";
        let usage = match function {
            "SESSION" => {
                "SESSION(source, time_column, INTERVAL '5' MINUTE) (the gap), or Flink's SESSION(TABLE source [PARTITION BY key], DESCRIPTOR(time_column), gap)"
            }
            "TUMBLE" => "TUMBLE(source, time_column, INTERVAL '10' SECOND [, offset])",
            "CUMULATE" => {
                "CUMULATE(source, time_column, step, max_size [, offset]), e.g. CUMULATE(readings, ts, INTERVAL '1' HOUR, INTERVAL '1' DAY)"
            }
            _ => {
                "HOP(source, time_column, slide, size [, offset]), e.g. HOP(readings, ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE)"
            }
        };
        // A trailing `offset` may be left out.
        let optional = usize::from(names.last() == Some(&"offset"));
        let bound = bind_arguments(args, names, optional, location, usage)?;
        let args: Vec<&sql::Expr> = bound.iter().flatten().copied().collect();
        let (data, partition) = match args[0] {
            sql::Expr::Function(f) if f.name.to_string() == PARTITIONED_FUNCTION => {
                let FunctionArguments::List(list) = &f.args else {
                    return Err(SqlError::new(location, format!("expected {usage}")));
                };
                let mut names = list.args.iter().map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(sql::Expr::Identifier(i))) => Ok(i),
                    other => Err(SqlError::new(
                        location_of(other),
                        format!("{function}: PARTITION BY takes column names; expected {usage}"),
                    )),
                });
                let data = names
                    .next()
                    .ok_or_else(|| SqlError::new(location, format!("expected {usage}")))??;
                let keys = names
                    .map(|k| k.map(|i| (normalize(i), Location::from(i))))
                    .collect::<Result<Vec<_>, _>>()?;
                (data, Some(keys))
            }
            sql::Expr::Identifier(i) => (i, None),
            e => {
                return Err(SqlError::new(
                    location_of(e),
                    format!("{function}: the first argument is a source name; expected {usage}"),
                ));
            }
        };
        let source_name = normalize(data);
        let input = self.planner.input_named(&source_name).ok_or_else(|| {
            SqlError::new(
                location_of(args[0]),
                format!(
                    "unknown source '{source_name}'; {}",
                    self.planner.source_names(&source_name)
                ),
            )
        })?;
        let columns = self.planner.input_schema(input);
        if let Some((name, at)) = partition
            .iter()
            .flatten()
            .find(|(name, _)| columns.index_of(name).is_err())
        {
            let known: Vec<&str> = columns.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(SqlError::new(
                *at,
                format!(
                    "{function}: PARTITION BY {name}: '{source_name}' has no column '{name}'; its columns are {}",
                    known.join(", ")
                ),
            ));
        }
        let time_ident = time_column(args[1]).ok_or_else(|| {
            SqlError::new(
                location_of(args[1]),
                format!(
                    "{function}: the second argument is the event-time column; expected {usage}"
                ),
            )
        })?;
        let time_column = normalize(time_ident);
        let time_index = match input {
            Input::Source(source) => {
                let planned = &self.planner.sources[source];
                match &planned.event_time {
                    None => {
                        return Err(SqlError::new(
                            Location::from(time_ident),
                            format!(
                                "{function} needs event time, but source '{source_name}' declares no WATERMARK; add `WATERMARK FOR {time_column} AS {time_column} - INTERVAL '2' SECOND` to its columns"
                            ),
                        ));
                    }
                    Some(et) if et.column != time_column => {
                        return Err(SqlError::new(
                            Location::from(time_ident),
                            format!(
                                "{function} runs on the event-time column of '{source_name}', which is '{}' (its WATERMARK), not '{time_column}'",
                                et.column
                            ),
                        ));
                    }
                    Some(et) => et.index,
                }
            }
            Input::View(_) => {
                let schema = self.planner.input_schema(input);
                if let Some(taken) = WINDOW_COLUMNS
                    .into_iter()
                    .find(|c| schema.index_of(c).is_ok())
                {
                    return Err(SqlError::new(
                        location_of(args[0]),
                        format!(
                            "{function} adds the columns window_start, window_end and window_time, but view '{source_name}' has a column '{taken}' already; rename it in the view (`{taken} AS ...`)"
                        ),
                    ));
                }
                let columns = || {
                    schema
                        .fields()
                        .iter()
                        .filter(|f| matches!(f.data_type(), DataType::Timestamp(_, _)))
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                match schema.index_of(&time_column) {
                    Ok(i)
                        if *schema.field(i).data_type()
                            == DataType::Timestamp(TimeUnit::Millisecond, None) =>
                    {
                        i
                    }
                    _ => {
                        return Err(SqlError::new(
                            Location::from(time_ident),
                            format!(
                                "{function}: view '{source_name}' has no TIMESTAMP column '{time_column}'; its TIMESTAMP columns: {}",
                                columns()
                            ),
                        ));
                    }
                }
            }
        };
        let positive = |e: &sql::Expr, what: &str| -> Result<i64, SqlError> {
            let ms = self.planner.interval_millis(e)?;
            if ms <= 0 {
                return Err(SqlError::new(
                    location_of(e),
                    format!("{function}: the window {what} must be positive"),
                ));
            }
            Ok(ms)
        };
        let kind = if session {
            WindowKind::Session {
                gap: positive(args[2], "gap")?,
            }
        } else if function == "TUMBLE" {
            WindowKind::Tumble {
                size: positive(args[2], "size")?,
            }
        } else if cumulate {
            let step = positive(args[2], "step")?;
            let size = positive(args[3], "max size")?;
            if size % step != 0 {
                return Err(SqlError::new(
                    location_of(args[3]),
                    format!(
                        "CUMULATE: the max size ({}) must be a whole number of steps ({}); arguments are (source, time_column, step, max_size)",
                        show_duration(size),
                        show_duration(step)
                    ),
                ));
            }
            WindowKind::Cumulate { step, size }
        } else {
            let slide = positive(args[2], "slide")?;
            let size = positive(args[3], "size")?;
            if slide > size {
                return Err(SqlError::new(
                    location_of(args[2]),
                    format!(
                        "HOP: the slide ({}) is longer than the size ({}): rows between windows would be in none; arguments are (source, time_column, slide, size)",
                        show_duration(slide),
                        show_duration(size)
                    ),
                ));
            }
            WindowKind::Hop { size, slide }
        };
        let offset = match bound.get(names.len() - 1).copied().flatten() {
            Some(e) if optional == 1 => self.planner.interval_millis(e)?,
            _ => 0,
        };
        if let (false, Some(keys)) = (session, &partition)
            && !keys.is_empty()
        {
            return Err(SqlError::new(
                keys[0].1,
                format!("{function} takes no PARTITION BY: only SESSION's windows are per key"),
            ));
        }
        Ok((
            WindowCall {
                kind,
                input,
                time_index,
                location,
                offset,
                partition: partition.filter(|_| session),
            },
            source_name,
        ))
    }
}

/// Where a `MATCH_RECOGNIZE` starts: at its input's name.
fn factor_location(factor: &TableFactor) -> Location {
    match factor {
        TableFactor::MatchRecognize { table, .. } => match table.as_ref() {
            TableFactor::Table { name, .. } => location_of(name),
            other => location_of(other),
        },
        other => location_of(other),
    }
}

/// Matches positional and named (`SIZE => ...`) arguments to `names`, in order.
/// `args` bound to `names` by position or name; the last `optional` names may be left out (`None`).
fn bind_arguments<'e>(
    args: &'e [FunctionArg],
    names: &[&str],
    optional: usize,
    location: Location,
    usage: &str,
) -> Result<Vec<Option<&'e sql::Expr>>, SqlError> {
    let mut bound: Vec<Option<&sql::Expr>> = vec![None; names.len()];
    for (i, arg) in args.iter().enumerate() {
        let (slot, value) = match arg {
            FunctionArg::Unnamed(v) => (i, v),
            FunctionArg::Named { name, arg, .. } => {
                let n = name.value.to_lowercase();
                let slot = names.iter().position(|x| *x == n).ok_or_else(|| {
                    SqlError::new(
                        Location::from(name),
                        format!("unknown argument '{n}'; expected {usage}"),
                    )
                })?;
                (slot, arg)
            }
            FunctionArg::ExprNamed { name, .. } => {
                return Err(SqlError::new(
                    location_of(name),
                    format!("unexpected argument; expected {usage}"),
                ));
            }
        };
        let FunctionArgExpr::Expr(expr) = value else {
            return Err(SqlError::new(
                location,
                format!("unexpected '*' argument; expected {usage}"),
            ));
        };
        if slot >= names.len() {
            return Err(SqlError::new(
                location_of(expr),
                format!("too many arguments; expected {usage}"),
            ));
        }
        bound[slot] = Some(expr);
    }
    bound
        .into_iter()
        .enumerate()
        .map(|(i, b)| match b {
            None if i + optional < names.len() => Err(SqlError::new(
                location,
                format!("missing argument '{}'; expected {usage}", names[i]),
            )),
            b => Ok(b),
        })
        .collect()
}

/// `ts` or `DESCRIPTOR(ts)`.
fn time_column(e: &sql::Expr) -> Option<&Ident> {
    match e {
        sql::Expr::Identifier(i) => Some(i),
        sql::Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("descriptor") => {
            let FunctionArguments::List(list) = &f.args else {
                return None;
            };
            match list.args.as_slice() {
                [FunctionArg::Unnamed(FunctionArgExpr::Expr(sql::Expr::Identifier(i)))] => Some(i),
                _ => None,
            }
        }
        _ => None,
    }
}
