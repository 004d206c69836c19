//! MEASURES: each expression rewritten so that DataFusion plans it over columns the operator fills
//! per match (`FIRST(A.ts)`, `AVG(B.temp)`, `MATCH_NUMBER()`, `CLASSIFIER()`).
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::logical_expr::type_coercion::functions::fields_with_udf;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::sql::sqlparser::ast::{self as sql, FunctionArgExpr, Ident, VisitorMut};

use super::{AGGREGATES, err, function_args, function_name, var_column, var_name};
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
    pub(super) schema: &'a Schema,
    pub(super) partition: &'a [usize],
    pub(super) navs: &'a mut Vec<Nav>,
    /// Names of the columns the navs become: `__m` in MEASURES, `__ctx` in DEFINE.
    pub(super) prefix: &'static str,
}

impl MeasureRewriter<'_> {
    fn var(&self, id: Option<&Ident>, at: Location) -> Result<Option<usize>, SqlError> {
        match id {
            None => Ok(None),
            Some(id) => {
                let n = var_name(id);
                self.vars
                    .iter()
                    .position(|v| *v == n)
                    .map(Some)
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

    pub(super) fn rewrite(&mut self, e: &sql::Expr) -> Result<Option<sql::Expr>, SqlError> {
        let at = location_of(e);
        match e {
            sql::Expr::Function(f) => {
                let name = function_name(f);
                let args = function_args(f);
                match name.as_str() {
                    "MATCH_NUMBER" => Ok(Some(self.push(Nav {
                        kind: NavKind::MatchNumber,
                        var: None,
                        column: None,
                        data_type: DataType::Int64,
                    }))),
                    "CLASSIFIER" => Ok(Some(self.push(Nav {
                        kind: NavKind::Classifier,
                        var: None,
                        column: None,
                        data_type: DataType::Utf8,
                    }))),
                    "FIRST" | "LAST" => {
                        let Some(FunctionArgExpr::Expr(x)) = args.first() else {
                            return Err(err(at, format!("{name} takes a column: {name}(A.ts)")));
                        };
                        let Some((v, c)) = var_column(x) else {
                            return Err(err(
                                at,
                                format!(
                                    "{name} takes a column, and an offset: {name}(A.ts) or {name}(A.ts, 1); \
                                     navigation inside it (PREV, NEXT, another FIRST or LAST) is not supported"
                                ),
                            ));
                        };
                        let offset = match args.get(1) {
                            None => 0,
                            Some(FunctionArgExpr::Expr(n)) => offset_of(n).ok_or_else(|| {
                                err(
                                    location_of(n),
                                    format!(
                                        "the offset of {name} is a number of rows, 0 or more: {name}(A.ts, 1)"
                                    ),
                                )
                            })?,
                            Some(_) => {
                                return Err(err(at, format!("{name} takes a column and an offset")));
                            }
                        };
                        if args.len() > 2 {
                            return Err(err(at, format!("{name} takes a column and an offset")));
                        }
                        let var = self.var(v, at)?;
                        let column = self.column(c, at)?;
                        Ok(Some(self.push(Nav {
                            kind: if name == "FIRST" {
                                NavKind::First(offset)
                            } else {
                                NavKind::Last(offset)
                            },
                            var,
                            column: Some(column),
                            data_type: self.schema.field(column).data_type().clone(),
                        })))
                    }
                    "PREV" | "NEXT" => Err(err(
                        at,
                        format!("{name} in MEASURES is not supported; use FIRST and LAST"),
                    )),
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
