//! MEASURES: each expression rewritten so that DataFusion plans it over columns the operator fills
//! per match (`FIRST(A.ts)`, `AVG(B.temp)`, `MATCH_NUMBER()`, `CLASSIFIER()`).
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::logical_expr::type_coercion::functions::fields_with_udf;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::sql::sqlparser::ast::{self as sql, FunctionArgExpr, Ident, VisitorMut};

use super::{AGGREGATES, err, function_args, function_name, is_final, var_column, var_name};
use crate::error::{Location, SqlError};
use crate::ops::{Nav, NavKind};
use crate::plan::names::{location_of, normalize};
use crate::plan::{Planner, diagnose};

/// Rewrites a `MEASURES` expression: `FIRST(A.col)`, `LAST(col)`, `A.col`, `col`, aggregates over
/// a variable's rows, `MATCH_NUMBER()` and `CLASSIFIER()` become columns the operator fills per
/// match. Partition columns stay as they are.
pub(super) struct MeasureRewriter<'a> {
    pub(super) planner: &'a Planner<'a>,
    pub(super) vars: &'a [String],
    /// `SUBSET` names with their member variables.
    pub(super) subsets: &'a [(String, Vec<usize>)],
    pub(super) schema: &'a Schema,
    pub(super) partition: &'a [usize],
    pub(super) navs: &'a mut Vec<Nav>,
    /// Names of the columns the navs become: `__m` in MEASURES, `__ctx` in DEFINE.
    pub(super) prefix: &'static str,
}

impl MeasureRewriter<'_> {
    /// The variables a name stands for: a pattern variable, or the members of a `SUBSET`.
    fn var(&self, id: Option<&Ident>, at: Location) -> Result<Option<Vec<usize>>, SqlError> {
        match id {
            None => Ok(None),
            Some(id) => {
                let n = var_name(id);
                if let Some((_, members)) = self.subsets.iter().find(|(s, _)| *s == n) {
                    return Ok(Some(members.clone()));
                }
                self.vars
                    .iter()
                    .position(|v| *v == n)
                    .map(|v| Some(vec![v]))
                    .ok_or_else(|| err(at, format!("the PATTERN has no variable {n}")))
            }
        }
    }

    fn column(&self, id: &Ident, at: Location) -> Result<usize, SqlError> {
        let c = normalize(id);
        self.schema
            .index_of(&c)
            .map_err(|_| err(at, format!("unknown column '{c}'")))
    }

    fn push(&mut self, nav: Nav) -> sql::Expr {
        self.navs.push(nav);
        sql::Expr::Identifier(Ident::new(format!(
            "{}{}",
            self.prefix,
            self.navs.len() - 1
        )))
    }

    /// `FIRST(A.x [, n])` or `LAST(A.x [, n])`: the row `n` after the first, or before the last,
    /// of the rows mapped to `A` (or of the match).
    fn logical(
        &self,
        name: &str,
        args: &[&FunctionArgExpr],
        at: Location,
    ) -> Result<Nav, SqlError> {
        let Some(FunctionArgExpr::Expr(x)) = args.first() else {
            return Err(err(at, format!("{name} takes a column: {name}(A.ts)")));
        };
        let Some((v, c)) = var_column(x) else {
            return Err(err(
                at,
                format!(
                    "{name} takes a column, and an offset: {name}(A.ts) or {name}(A.ts, 1); \
                     PREV, NEXT, FIRST and LAST cannot be inside it (write PREV(LAST(A.ts)), not LAST(PREV(A.ts)))"
                ),
            ));
        };
        let offset = self.offset(name, args, at)?;
        let var = self.var(v, at)?;
        let column = self.column(c, at)?;
        Ok(Nav {
            kind: if name == "FIRST" {
                NavKind::First(offset)
            } else {
                NavKind::Last(offset)
            },
            var,
            column: Some(column),
            data_type: self.schema.field(column).data_type().clone(),
            physical: 0,
            final_: false,
        })
    }

    /// `PREV(x [, n])` or `NEXT(x [, n])`: `n` rows (1 unless given) before or after the row `x`
    /// lands on in the partition, where `x` is `A.col` (the last row mapped to `A`), `col` (the
    /// match's last row), or `FIRST(...)` / `LAST(...)`.
    fn physical(
        &self,
        name: &str,
        args: &[&FunctionArgExpr],
        at: Location,
    ) -> Result<Nav, SqlError> {
        let target = match args.first() {
            Some(FunctionArgExpr::Expr(x @ sql::Expr::Function(f)))
                if matches!(function_name(f).as_str(), "FIRST" | "LAST") =>
            {
                let nav = self.logical(&function_name(f), &function_args(f), location_of(x))?;
                if is_final(f) && self.prefix == "__ctx" {
                    return Err(err(
                        location_of(x),
                        "FINAL in DEFINE: a condition sees the match only up to the current row; FINAL belongs in MEASURES",
                    ));
                }
                Nav {
                    final_: is_final(f),
                    ..nav
                }
            }
            Some(FunctionArgExpr::Expr(x)) => match var_column(x) {
                Some((v, c)) => {
                    let column = self.column(c, at)?;
                    Nav {
                        kind: NavKind::Last(0),
                        var: self.var(v, at)?,
                        column: Some(column),
                        data_type: self.schema.field(column).data_type().clone(),
                        physical: 0,
                        final_: false,
                    }
                }
                None => {
                    return Err(err(
                        at,
                        format!(
                            "{name} takes a column, or FIRST or LAST of one, and an offset: \
                             {name}(A.temp), {name}(LAST(A.temp, 1), 2)"
                        ),
                    ));
                }
            },
            _ => return Err(err(at, format!("{name} takes a column: {name}(A.temp)"))),
        };
        let n = match args.get(1) {
            None => 1,
            Some(_) => self.offset(name, args, at)?,
        };
        let n =
            i64::try_from(n).map_err(|_| err(at, format!("the offset of {name} is too large")))?;
        Ok(Nav {
            physical: if name == "PREV" { -n } else { n },
            ..target
        })
    }

    /// The second argument of a navigation: a whole number of rows, 0 or more (0 if absent).
    fn offset(
        &self,
        name: &str,
        args: &[&FunctionArgExpr],
        at: Location,
    ) -> Result<usize, SqlError> {
        if args.len() > 2 {
            return Err(err(at, format!("{name} takes a column and an offset")));
        }
        match args.get(1) {
            None => Ok(0),
            Some(FunctionArgExpr::Expr(n)) => offset_of(n).ok_or_else(|| {
                err(
                    location_of(n),
                    format!("the offset of {name} is a number of rows, 0 or more: {name}(A.ts, 1)"),
                )
            }),
            Some(_) => Err(err(at, format!("{name} takes a column and an offset"))),
        }
    }

    /// `e` as a column the operator fills, if it is a navigation, an aggregate, `MATCH_NUMBER()`
    /// or `CLASSIFIER()`; `FINAL` before one makes it read the whole match.
    pub(super) fn rewrite(&mut self, e: &sql::Expr) -> Result<Option<sql::Expr>, SqlError> {
        let final_ = matches!(e, sql::Expr::Function(f) if is_final(f));
        if !final_ {
            return self.rewrite_call(e);
        }
        let at = location_of(e);
        if self.prefix == "__ctx" {
            return Err(err(
                at,
                "FINAL in DEFINE: a condition sees the match only up to the current row; FINAL belongs in MEASURES",
            ));
        }
        let before = self.navs.len();
        let out = self.rewrite_call(e)?;
        if out.is_none() || self.navs.len() == before {
            return Err(err(
                at,
                "FINAL goes before FIRST, LAST, PREV or NEXT of them, an aggregate, or CLASSIFIER()",
            ));
        }
        for n in &mut self.navs[before..] {
            n.final_ = true;
        }
        Ok(out)
    }

    fn rewrite_call(&mut self, e: &sql::Expr) -> Result<Option<sql::Expr>, SqlError> {
        let at = location_of(e);
        match e {
            sql::Expr::Function(f) => {
                let name = function_name(f);
                let args = function_args(f);
                match name.as_str() {
                    "MATCH_NUMBER" if !args.is_empty() => {
                        Err(err(at, "MATCH_NUMBER() takes no argument"))
                    }
                    "CLASSIFIER" if args.len() > 1 => Err(err(
                        at,
                        "CLASSIFIER takes no argument, or a pattern variable or SUBSET: CLASSIFIER(U)",
                    )),
                    "MATCH_NUMBER" => Ok(Some(self.push(Nav {
                        kind: NavKind::MatchNumber,
                        var: None,
                        column: None,
                        data_type: DataType::Int64,
                        physical: 0,
                        final_: false,
                    }))),
                    "CLASSIFIER" => Ok(Some({
                        // CLASSIFIER(U): the variable of the last row mapped to U.
                        let var = match args.first() {
                            None => None,
                            Some(FunctionArgExpr::Expr(sql::Expr::Identifier(id))) => {
                                self.var(Some(id), at)?
                            }
                            Some(_) => {
                                return Err(err(
                                    at,
                                    "CLASSIFIER takes no argument, or a pattern variable or SUBSET: CLASSIFIER(U)",
                                ));
                            }
                        };
                        self.push(Nav {
                            kind: NavKind::Classifier,
                            var,
                            column: None,
                            data_type: DataType::Utf8,
                            physical: 0,
                            final_: false,
                        })
                    })),
                    "FIRST" | "LAST" => Ok(Some({
                        let nav = self.logical(&name, &args, at)?;
                        self.push(nav)
                    })),
                    "PREV" | "NEXT" => Ok(Some({
                        let nav = self.physical(&name, &args, at)?;
                        self.push(nav)
                    })),
                    _ if AGGREGATES.contains(&name.as_str()) => {
                        let (var, column) = match args.first() {
                            Some(FunctionArgExpr::Wildcard) => (None, None),
                            Some(FunctionArgExpr::QualifiedWildcard(v)) => {
                                let id = v.0.last().and_then(|p| p.as_ident());
                                (self.var(id, at)?, None)
                            }
                            Some(FunctionArgExpr::Expr(x)) => match var_column(x) {
                                Some((v, c)) => (self.var(v, at)?, Some(self.column(c, at)?)),
                                None => {
                                    return Err(err(
                                        at,
                                        format!(
                                            "{name} in MEASURES takes a column: {name}(B.temp)"
                                        ),
                                    ));
                                }
                            },
                            _ => return Err(err(at, format!("{name} takes one argument"))),
                        };
                        let Some(c) = column else {
                            if name != "COUNT" {
                                return Err(err(
                                    at,
                                    format!("{name}(*) is not an aggregate; give a column"),
                                ));
                            }
                            return Ok(Some(self.push(Nav {
                                kind: NavKind::CountRows,
                                var,
                                column: None,
                                data_type: DataType::Int64,
                                physical: 0,
                                final_: false,
                            })));
                        };
                        use datafusion::execution::FunctionRegistry;
                        let udf = self
                            .planner
                            .ctx
                            .udaf(&name.to_lowercase())
                            .map_err(|e| err(at, diagnose::message(&e)))?;
                        // The argument's type as DataFusion coerces it for this aggregate.
                        let field = Arc::new(self.schema.field(c).clone());
                        let input = fields_with_udf(&[field], udf.as_ref())
                            .map_err(|e| err(at, diagnose::message(&e)))?
                            .first()
                            .map(|f| f.data_type().clone())
                            .ok_or_else(|| err(at, format!("{name} takes one argument")))?;
                        let data_type = udf
                            .return_type(std::slice::from_ref(&input))
                            .map_err(|e| err(at, diagnose::message(&e)))?;
                        // Build once so that an aggregate unfit for the type fails here; it reads
                        // the values cast to `input`.
                        let column = self.schema.field(c).name();
                        let cast_schema =
                            Schema::new(vec![datafusion::arrow::datatypes::Field::new(
                                column,
                                input.clone(),
                                true,
                            )]);
                        let arg = datafusion::physical_expr::expressions::col(column, &cast_schema)
                            .map_err(|e| err(at, diagnose::message(&e)))?;
                        let aggregate = AggregateExprBuilder::new(Arc::clone(&udf), vec![arg])
                            .schema(Arc::new(cast_schema.clone()))
                            .alias(name.to_lowercase())
                            .build()
                            .map_err(|e| err(at, diagnose::message(&e)))?;
                        aggregate
                            .create_accumulator()
                            .map_err(|e| err(at, diagnose::message(&e)))?;
                        Ok(Some(self.push(Nav {
                            kind: NavKind::Aggregate {
                                function: Arc::new(aggregate),
                                input,
                            },
                            var,
                            column: Some(c),
                            data_type,
                            physical: 0,
                            final_: false,
                        })))
                    }
                    _ => Ok(None),
                }
            }
            sql::Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                let var = self.var(Some(&parts[0]), at)?;
                let column = self.column(&parts[1], at)?;
                Ok(Some(self.push(Nav {
                    kind: NavKind::Last(0),
                    var,
                    column: Some(column),
                    data_type: self.schema.field(column).data_type().clone(),
                    physical: 0,
                    final_: false,
                })))
            }
            sql::Expr::Identifier(id) => {
                let column = self.column(id, at)?;
                if self.partition.contains(&column) {
                    return Ok(None);
                }
                Ok(Some(self.push(Nav {
                    kind: NavKind::Last(0),
                    var: None,
                    column: Some(column),
                    data_type: self.schema.field(column).data_type().clone(),
                    physical: 0,
                    final_: false,
                })))
            }
            _ => Ok(None),
        }
    }
}

/// A logical offset: an integer literal, 0 or more.
fn offset_of(e: &sql::Expr) -> Option<usize> {
    match e {
        sql::Expr::Value(v) => match &v.value {
            sql::Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        sql::Expr::Nested(e) => offset_of(e),
        _ => None,
    }
}

impl VisitorMut for MeasureRewriter<'_> {
    type Break = SqlError;

    fn pre_visit_expr(&mut self, e: &mut sql::Expr) -> ControlFlow<SqlError> {
        match self.rewrite(e) {
            Ok(Some(new)) => {
                *e = new;
                ControlFlow::Continue(())
            }
            Ok(None) => ControlFlow::Continue(()),
            Err(x) => ControlFlow::Break(x),
        }
    }
}
