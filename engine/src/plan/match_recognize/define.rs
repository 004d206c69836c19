//! DEFINE: each variable's condition rewritten so that DataFusion plans it over the row, columns of
//! `PREV` values, and columns of what it reads of the match so far.
use std::ops::ControlFlow;

use datafusion::arrow::datatypes::Schema;
use datafusion::sql::sqlparser::ast::{self as sql, FunctionArgExpr, Ident, VisitorMut};

use super::measures::MeasureRewriter;
use super::{
    AGGREGATES, err, function_args, function_name, is_final, prev_name, var_column, var_name,
};
use crate::error::SqlError;
use crate::ops::Nav;
use crate::plan::Planner;
use crate::plan::names::{location_of, normalize};

/// Rewrites a `DEFINE` condition of `var`: `var.col` and `col` read the current row,
/// `PREV(col [, n])` a column of the value `n` rows before in the partition.
pub(super) struct DefineRewriter<'a> {
    pub(super) planner: &'a Planner<'a>,
    pub(super) var: &'a str,
    pub(super) vars: &'a [String],
    pub(super) subsets: &'a [(String, Vec<usize>)],
    pub(super) schema: &'a Schema,
    pub(super) prev: &'a mut Vec<(usize, u32)>,
    /// What conditions read of the partial match (`A.temp`, `FIRST(B.ts)`, `AVG(B.temp)`).
    pub(super) ctx: &'a mut Vec<Nav>,
}

impl DefineRewriter<'_> {
    /// A navigation over the rows matched so far, as a `__ctx` column.
    fn context(&mut self, e: &mut sql::Expr) -> ControlFlow<SqlError> {
        let mut m = MeasureRewriter {
            planner: self.planner,
            vars: self.vars,
            subsets: self.subsets,
            schema: self.schema,
            partition: &[],
            navs: self.ctx,
            prefix: "__ctx",
        };
        match m.rewrite(e) {
            Ok(Some(new)) => {
                *e = new;
                ControlFlow::Continue(())
            }
            Ok(None) => ControlFlow::Continue(()),
            Err(x) => ControlFlow::Break(x),
        }
    }
}

impl VisitorMut for DefineRewriter<'_> {
    type Break = SqlError;

    fn pre_visit_expr(&mut self, e: &mut sql::Expr) -> ControlFlow<SqlError> {
        let at = location_of(e);
        let fail = |m: String| ControlFlow::Break(err(at, m));
        match e {
            sql::Expr::Function(f) => {
                let name = function_name(f);
                if is_final(f) {
                    return fail("FINAL in DEFINE: a condition sees the match only up to the current row; FINAL belongs in MEASURES".into());
                }
                if name == "NEXT" {
                    return fail("NEXT reads a row that has not arrived yet; a stream can only look back: use PREV".into());
                }
                if name == "PREV" {
                    let args = function_args(f);
                    let target = match args.first() {
                        Some(FunctionArgExpr::Expr(x)) => var_column(x),
                        _ => None,
                    };
                    // PREV of another variable's row, or of FIRST / LAST: from the rows matched
                    // so far.
                    let Some((var, col)) = target else {
                        return self.context(e);
                    };
                    if var.is_some_and(|v| var_name(v) != self.var) {
                        return self.context(e);
                    }
                    let n = match args.get(1) {
                        None => 1,
                        Some(FunctionArgExpr::Expr(sql::Expr::Value(v))) => {
                            match v.value.to_string().parse::<u32>() {
                                Ok(n) => n,
                                _ => {
                                    return fail(
                                        "PREV(col, n): n is a whole number of rows, 0 or more"
                                            .into(),
                                    );
                                }
                            }
                        }
                        _ => {
                            return fail(
                                "PREV(col, n): n is a whole number of rows, 0 or more".into(),
                            );
                        }
                    };
                    if n == 0 {
                        // PREV(col, 0) is the current row's value.
                        *e = sql::Expr::Identifier(col.clone());
                        return ControlFlow::Continue(());
                    }
                    let column = normalize(col);
                    let Ok(c) = self.schema.index_of(&column) else {
                        return fail(format!("unknown column '{column}' in PREV"));
                    };
                    if !self.prev.contains(&(c, n)) {
                        self.prev.push((c, n));
                    }
                    *e = sql::Expr::Identifier(Ident::new(prev_name(&column, n)));
                    return ControlFlow::Continue(());
                }
                if name == "CLASSIFIER" {
                    let of = match function_args(f).as_slice() {
                        [] => None,
                        [FunctionArgExpr::Expr(sql::Expr::Identifier(id))] => Some(var_name(id)),
                        _ => {
                            return fail(
                                "CLASSIFIER takes no argument, or a pattern variable or SUBSET: CLASSIFIER(U)"
                                    .into(),
                            );
                        }
                    };
                    let mine = of.as_ref().is_none_or(|v| {
                        *v == self.var
                            || self.subsets.iter().any(|(s, members)| {
                                s == v
                                    && self
                                        .vars
                                        .iter()
                                        .position(|x| x == self.var)
                                        .is_some_and(|i| members.contains(&i))
                            })
                    });
                    if mine {
                        // In the condition of a variable, the current row is being mapped to it.
                        *e = sql::Expr::value(sql::Value::SingleQuotedString(self.var.to_string()));
                        return ControlFlow::Continue(());
                    }
                    // The variable of the last row so far mapped to another variable or SUBSET.
                    return self.context(e);
                }
                if name == "MATCH_NUMBER" {
                    return fail(
                        "MATCH_NUMBER() in DEFINE is not supported: partial matches from several start rows run side by side, so a condition cannot know how many matches come before its own; use it in MEASURES".into(),
                    );
                }
                if matches!(name.as_str(), "FIRST" | "LAST") || AGGREGATES.contains(&name.as_str())
                {
                    return self.context(e);
                }
                ControlFlow::Continue(())
            }
            sql::Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                let v = var_name(&parts[0]);
                if v == self.var {
                    *e = sql::Expr::Identifier(parts[1].clone());
                    ControlFlow::Continue(())
                } else if self.vars.contains(&v) || self.subsets.iter().any(|(s, _)| *s == v) {
                    // The last row mapped to another variable so far.
                    self.context(e)
                } else {
                    fail(format!(
                        "unknown pattern variable {v} in {}.{}",
                        v, parts[1]
                    ))
                }
            }
            _ => ControlFlow::Continue(()),
        }
    }
}
