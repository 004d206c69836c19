//! `MATCH_RECOGNIZE` in `FROM`: its pattern compiled, its `DEFINE` conditions and `MEASURES`
//! rewritten into expressions DataFusion plans over columns the operator computes (`PREV(temp)` a
//! column of previous values, `FIRST(A.ts)` or `AVG(B.temp)` a column of per-match values), and
//! its output registered as a table so the rest of the query plans as usual.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast::{
    self as sql, AfterMatchSkip, EmptyMatchesMode, ExprWithAlias, FunctionArg, FunctionArgExpr,
    FunctionArguments, Ident, RowsPerMatch, TableFactor, VisitMut,
};

mod define;
mod measures;
mod pattern;

use define::DefineRewriter;
use measures::MeasureRewriter;
use pattern::{loops_on_nothing, skip_always_moves, to_pattern};

use super::Input;
use super::Planner;
use super::names::{location_of, normalize};
use crate::error::{Location, SqlError};
use crate::ops::pattern::{Program, SkipTo};
use crate::ops::{EmptyMatches, MatchRows, MatchSpec, Nav, with_event_time};
use crate::sql::parser::WITHIN_SYMBOL;
use crate::sql::row_pattern::{FINAL_PREFIX, SUBSET_FUNCTION};

/// A planned `MATCH_RECOGNIZE`.
#[derive(Clone)]
pub struct MatchCall {
    pub input: Input,
    /// The input's event-time column.
    pub time_index: usize,
    /// What the operator runs: the pattern, conditions, measures.
    pub spec: MatchSpec,
    /// Partition columns, then measures: what the enclosing query reads.
    pub schema: SchemaRef,
}

/// Partial matches alive at once in one partition of a `MATCH_RECOGNIZE`.
const MAX_PARTIAL_MATCHES: usize = 10_000;

fn err(at: Location, m: impl Into<String>) -> SqlError {
    SqlError::new(at, m)
}

pub fn plan_match_recognize(
    planner: &Planner,
    factor: &TableFactor,
    location: Location,
) -> Result<MatchCall, SqlError> {
    let TableFactor::MatchRecognize {
        table,
        partition_by,
        order_by,
        measures,
        rows_per_match,
        after_match_skip,
        pattern,
        symbols,
        ..
    } = factor
    else {
        return Err(err(location, "internal: not a MATCH_RECOGNIZE"));
    };
    let TableFactor::Table { name, .. } = table.as_ref() else {
        return Err(err(
            location,
            "MATCH_RECOGNIZE reads a source or a view by name; put a subquery in a view first",
        ));
    };
    let input_name = name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(normalize)
        .unwrap_or_default();
    let input = planner.input_named(&input_name).ok_or_else(|| {
        err(
            location_of(name),
            format!(
                "unknown source '{input_name}'; {}",
                planner.source_names(&input_name)
            ),
        )
    })?;
    let schema = Arc::clone(planner.input_schema(input));
    let schema_of_input = Arc::clone(&schema);
    let column = |id: &Ident| -> Result<usize, SqlError> {
        let c = normalize(id);
        schema.index_of(&c).map_err(|_| {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            err(
                Location::from(id),
                format!("unknown column '{c}'; columns here: {}", names.join(", ")),
            )
        })
    };

    let mut partition = Vec::new();
    for e in partition_by {
        match e {
            sql::Expr::Identifier(id) => partition.push(column(id)?),
            other => {
                return Err(err(
                    location_of(other),
                    "PARTITION BY in MATCH_RECOGNIZE takes column names",
                ));
            }
        }
    }
    // A source is ordered by its WATERMARK column; a view by any TIMESTAMP column it has.
    let time_index = match input {
        Input::Source(i) => planner.sources[i].event_time.as_ref().map(|e| e.index),
        Input::View(_) => match order_by.as_slice() {
            [o] => match &o.expr {
                sql::Expr::Identifier(id) => column(id).ok().filter(|&c| {
                    *schema.field(c).data_type()
                        == DataType::Timestamp(
                            datafusion::arrow::datatypes::TimeUnit::Millisecond,
                            None,
                        )
                }),
                _ => None,
            },
            _ => None,
        },
    };
    let order_ok = match (order_by.as_slice(), time_index) {
        ([o], Some(t)) => {
            matches!(&o.expr, sql::Expr::Identifier(id) if column(id).ok() == Some(t))
                && o.options.asc != Some(false)
        }
        _ => false,
    };
    let Some(time_index) = time_index.filter(|_| order_ok) else {
        return Err(err(
            order_by.first().map_or(location, |o| location_of(&o.expr)),
            "MATCH_RECOGNIZE must be ORDER BY the event-time column (a source's WATERMARK column, or a TIMESTAMP column of a view), ascending",
        ));
    };

    // Variables: in the order the pattern names them.
    let mut vars: Vec<String> = Vec::new();
    let pattern = to_pattern(pattern, &mut vars, location)?;
    if loops_on_nothing(&pattern) {
        return Err(err(
            location,
            "PATTERN repeats without bound a part that can match no rows ((A?)*, ()+): not supported; give the part at least one row ((A)* rather than (A?)*)",
        ));
    }
    let program = Arc::new(Program::compile(&pattern).map_err(|m| err(location, m))?);
    if program.excluded.contains(&true)
        && matches!(
            rows_per_match,
            Some(RowsPerMatch::AllRows(Some(EmptyMatchesMode::WithUnmatched)))
        )
    {
        // The standard forbids it: an excluded row would be neither output nor unmatched.
        return Err(err(
            location,
            "PATTERN exclusions {- ... -} cannot go with ALL ROWS PER MATCH WITH UNMATCHED ROWS",
        ));
    }

    let mut within = None;
    let mut conditions: Vec<Option<(sql::Expr, Location)>> = vec![None; vars.len()];
    let mut subsets: Vec<(String, Vec<usize>)> = Vec::new();
    for s in symbols {
        if let sql::Expr::Function(f) = &s.definition
            && f.name.to_string() == SUBSET_FUNCTION
        {
            subsets.push(subset(&s.symbol, f, &vars, &subsets)?);
            continue;
        }
        if normalize(&s.symbol) == WITHIN_SYMBOL {
            let ms = planner.interval_millis(&s.definition)?;
            if ms <= 0 {
                return Err(err(location_of(&s.definition), "WITHIN must be positive"));
            }
            within = Some(ms);
            continue;
        }
        let name = var_name(&s.symbol);
        let Some(v) = vars.iter().position(|x| *x == name) else {
            return Err(err(
                Location::from(&s.symbol),
                format!(
                    "DEFINE {name}: the PATTERN has no variable {name} (it has: {})",
                    vars.join(", ")
                ),
            ));
        };
        conditions[v] = Some((s.definition.clone(), Location::from(&s.symbol)));
    }

    // DEFINE: rewrite navigation into `__prev` columns, then let DataFusion plan.
    let mut prev: Vec<(usize, u32)> = Vec::new();
    let mut ctx: Vec<Nav> = Vec::new();
    let mut define_ctx: Vec<Vec<usize>> = Vec::with_capacity(vars.len());
    let mut define_sql = Vec::with_capacity(vars.len());
    for (v, c) in conditions.iter().enumerate() {
        let Some((expr, _)) = c else {
            define_sql.push(None);
            define_ctx.push(Vec::new());
            continue;
        };
        let mut expr = expr.clone();
        let before = ctx.len();
        let mut rewriter = DefineRewriter {
            planner,
            var: &vars[v],
            vars: &vars,
            subsets: &subsets,
            schema: &schema,
            prev: &mut prev,
            ctx: &mut ctx,
        };
        if let ControlFlow::Break(e) = expr.visit(&mut rewriter) {
            return Err(e);
        }
        define_ctx.push((before..ctx.len()).collect());
        define_sql.push(Some(expr));
    }
    let mut define_fields: Vec<Field> =
        schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for (c, n) in &prev {
        let f = schema.field(*c);
        define_fields.push(Field::new(
            prev_name(f.name(), *n),
            f.data_type().clone(),
            true,
        ));
    }
    for (k, n) in ctx.iter().enumerate() {
        define_fields.push(Field::new(format!("__ctx{k}"), n.data_type.clone(), true));
    }
    let define_schema = Arc::new(Schema::new(define_fields));
    let mut defines = Vec::with_capacity(vars.len());
    for (expr, c) in define_sql.into_iter().zip(&conditions) {
        match (expr, c) {
            (Some(e), Some((_, at))) => {
                let p = physical(planner, e, &define_schema, *at)?;
                defines.push(Some(p));
            }
            _ => defines.push(None),
        }
    }

    // MEASURES: rewrite navigation and aggregates into `__m` columns.
    let mut navs: Vec<Nav> = Vec::new();
    let mut measure_sql = Vec::with_capacity(measures.len());
    for m in measures {
        let mut expr = m.expr.clone();
        let mut rewriter = MeasureRewriter {
            planner,
            vars: &vars,
            subsets: &subsets,
            schema: &schema,
            partition: &partition,
            navs: &mut navs,
            prefix: "__m",
        };
        if let ControlFlow::Break(e) = expr.visit(&mut rewriter) {
            return Err(e);
        }
        measure_sql.push((expr, normalize(&m.alias), location_of(&m.expr)));
    }
    let mut measure_fields: Vec<Field> =
        partition.iter().map(|&c| schema.field(c).clone()).collect();
    for (k, n) in navs.iter().enumerate() {
        measure_fields.push(Field::new(format!("__m{k}"), n.data_type.clone(), true));
    }
    let measure_schema = Arc::new(Schema::new(measure_fields));
    // ONE ROW PER MATCH: partition columns, measures. ALL ROWS PER MATCH: partition columns, the
    // ordering column, measures, then the input's remaining columns, as the standard lays out.
    let rows_per_match = match rows_per_match {
        None | Some(RowsPerMatch::OneRow) => MatchRows::OneRow,
        Some(RowsPerMatch::AllRows(mode)) => MatchRows::AllRows {
            empty: match mode {
                None | Some(EmptyMatchesMode::Show) => EmptyMatches::Show,
                Some(EmptyMatchesMode::Omit) => EmptyMatches::Omit,
                Some(EmptyMatchesMode::WithUnmatched) => EmptyMatches::WithUnmatched,
            },
            order: time_index,
            rest: (0..schema.fields().len())
                .filter(|c| *c != time_index && !partition.contains(c))
                .collect(),
        },
    };
    let mut out_fields: Vec<Field> = partition.iter().map(|&c| schema.field(c).clone()).collect();
    if let MatchRows::AllRows { order, .. } = &rows_per_match {
        out_fields.push(schema.field(*order).clone());
    }
    let mut measure_exprs = Vec::with_capacity(measure_sql.len());
    for (expr, alias, at) in measure_sql {
        let p = physical(planner, expr, &measure_schema, at)?;
        let data_type = p
            .data_type(&measure_schema)
            .map_err(|e| err(at, super::diagnose::message(&e)))?;
        if out_fields.iter().any(|f| f.name() == &alias) {
            return Err(err(
                at,
                format!("the output has two columns named '{alias}'"),
            ));
        }
        out_fields.push(Field::new(alias, data_type, true));
        measure_exprs.push(p);
    }
    if let MatchRows::AllRows { rest, .. } = &rows_per_match {
        for &c in rest {
            let f = schema.field(c);
            if out_fields.iter().any(|o| o.name() == f.name()) {
                return Err(err(
                    location,
                    format!(
                        "the output has two columns named '{}': a measure and an input column (ALL ROWS PER MATCH outputs both); rename the measure",
                        f.name()
                    ),
                ));
            }
            out_fields.push(f.clone());
        }
    }

    let var_index = |id: &Ident| -> Result<usize, SqlError> {
        let n = var_name(id);
        if subsets.iter().any(|(s, _)| *s == n) {
            return Err(err(
                Location::from(id),
                format!(
                    "AFTER MATCH SKIP TO a SUBSET ({n}) is not supported; name a pattern variable"
                ),
            ));
        }
        vars.iter().position(|v| *v == n).ok_or_else(|| {
            err(
                Location::from(id),
                format!("the PATTERN has no variable {n}"),
            )
        })
    };
    let skip = match after_match_skip {
        None | Some(AfterMatchSkip::PastLastRow) => SkipTo::PastLastRow,
        Some(AfterMatchSkip::ToNextRow) => SkipTo::NextRow,
        Some(AfterMatchSkip::ToFirst(v)) => SkipTo::FirstOf(var_index(v)?),
        Some(AfterMatchSkip::ToLast(v)) => SkipTo::LastOf(var_index(v)?),
    };
    if let (
        SkipTo::FirstOf(v) | SkipTo::LastOf(v),
        Some(AfterMatchSkip::ToFirst(id) | AfterMatchSkip::ToLast(id)),
    ) = (skip, after_match_skip)
        && !skip_always_moves(&pattern, v, matches!(skip, SkipTo::LastOf(_)))
    {
        let which = if matches!(skip, SkipTo::FirstOf(_)) {
            "FIRST"
        } else {
            "LAST"
        };
        let name = &vars[v];
        return Err(err(
            Location::from(id),
            format!(
                "AFTER MATCH SKIP TO {which} {name}: a match of this pattern may map no row to {name}, or only its first row, and the SQL standard makes skipping there an error; skip to a variable every match maps after its first row"
            ),
        ));
    }
    let schema = Arc::new(Schema::new(out_fields));
    Ok(MatchCall {
        input,
        time_index,
        spec: MatchSpec {
            input: with_event_time(&schema_of_input),
            vars,
            program,
            partition,
            prev,
            defines,
            ctx,
            define_ctx,
            navs,
            measure_schema,
            measures: measure_exprs,
            skip,
            rows_per_match,
            within,
            schema: with_event_time(&schema),
            max_partial_matches: MAX_PARTIAL_MATCHES,
        },
        schema,
    })
}

/// `SUBSET name = (A, B)`: the name, which must be new, and its members, which must be variables
/// of the pattern.
fn subset(
    name: &Ident,
    f: &sql::Function,
    vars: &[String],
    earlier: &[(String, Vec<usize>)],
) -> Result<(String, Vec<usize>), SqlError> {
    let at = Location::from(name);
    let n = var_name(name);
    if vars.contains(&n) || earlier.iter().any(|(s, _)| *s == n) {
        return Err(err(
            at,
            format!("SUBSET {n}: the name is already a pattern variable or a SUBSET"),
        ));
    }
    let mut members = Vec::new();
    for a in function_args(f) {
        let FunctionArgExpr::Expr(sql::Expr::Identifier(id)) = a else {
            return Err(err(
                at,
                format!("SUBSET {n} lists pattern variables: {n} = (A, B)"),
            ));
        };
        let m = var_name(id);
        let v = vars.iter().position(|x| *x == m).ok_or_else(|| {
            err(
                Location::from(id),
                format!(
                    "SUBSET {n}: the PATTERN has no variable {m} (it has: {})",
                    vars.join(", ")
                ),
            )
        })?;
        if !members.contains(&v) {
            members.push(v);
        }
    }
    Ok((n, members))
}

fn prev_name(column: &str, n: u32) -> String {
    format!("__prev{n}_{column}")
}

fn physical(
    planner: &Planner,
    expr: sql::Expr,
    schema: &SchemaRef,
    at: Location,
) -> Result<Arc<dyn PhysicalExpr>, SqlError> {
    let df = DFSchema::try_from(schema.as_ref().clone())
        .map_err(|e| err(at, super::diagnose::message(&e)))?;
    let state = planner.ctx.state();
    let logical = state
        .create_logical_expr_from_sql_expr(ExprWithAlias { expr, alias: None }, &df)
        .map_err(|e| err(at, super::diagnose::message(&e)))?;
    state
        .create_physical_expr(logical, &df)
        .map_err(|e| err(at, super::diagnose::message(&e)))
}

/// A call's name in upper case, without the `FINAL` mark (see [`is_final`]).
fn function_name(f: &sql::Function) -> String {
    let name = f.name.to_string().to_uppercase();
    match name.strip_prefix(&FINAL_PREFIX.to_uppercase()) {
        Some(rest) => rest.to_string(),
        None => name,
    }
}

/// Whether `FINAL` stands before the call (`FINAL LAST(A.x)`).
fn is_final(f: &sql::Function) -> bool {
    f.name
        .to_string()
        .to_uppercase()
        .starts_with(&FINAL_PREFIX.to_uppercase())
}

fn function_args(f: &sql::Function) -> Vec<&FunctionArgExpr> {
    match &f.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(e) => Some(e),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A pattern variable's name: as written when quoted (`"b"` and `"B"` are two variables), in
/// upper case otherwise (`b` and `B` are one, `B`), as the standard folds identifiers; it is what
/// `CLASSIFIER()` returns.
fn var_name(id: &Ident) -> String {
    match id.quote_style {
        Some(_) => id.value.clone(),
        None => id.value.to_uppercase(),
    }
}

/// `col` or `VAR.col`: the variable (if named) and the column.
fn var_column(e: &sql::Expr) -> Option<(Option<&Ident>, &Ident)> {
    match e {
        sql::Expr::Identifier(c) => Some((None, c)),
        sql::Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
            Some((Some(&parts[0]), &parts[1]))
        }
        _ => None,
    }
}

const AGGREGATES: [&str; 7] = ["AVG", "SUM", "MIN", "MAX", "COUNT", "STDDEV", "MEDIAN"];
