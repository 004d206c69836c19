//! DEFINE: the conditions a row must meet to be mapped to a variable, evaluated by DataFusion a
//! batch at a time where they read only the row (and `PREV`), and for all candidate partial
//! matches of a variable at once where they read the match so far.

use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::Schema;
use datafusion::common::ScalarValue;

use super::measures::over_rows;
use super::partition::stored_row;
use super::pattern::{Conditions, Step};
use super::spec::{MatchSpec, Nav, NavKind};
use crate::error::{EngineError, Result};

/// The conditions of one row: those that read only the row are looked up; those that read the
/// partial match are evaluated by DataFusion for all candidates of a variable at once, with the
/// values they read of each candidate's rows as extra columns.
pub(super) struct RowConditions<'a> {
    pub(super) spec: &'a MatchSpec,
    pub(super) holds: &'a [Option<BooleanArray>],
    pub(super) augmented: &'a RecordBatch,
    /// The row's index in `augmented`, and its sequence number in the partition.
    pub(super) row: usize,
    pub(super) rows: &'a VecDeque<(Arc<RecordBatch>, u32)>,
    pub(super) first: u64,
    pub(super) current: u64,
    pub(super) error: Option<EngineError>,
}

impl RowConditions<'_> {
    fn value(&self, seq: u64, column: usize) -> Result<ScalarValue> {
        let (b, r) = stored_row(self.rows, self.first, seq)?;
        Ok(ScalarValue::try_from_array(b.column(column), r)?)
    }

    /// What `nav` reads of a partial match whose rows are `path`, the current row being
    /// mapped to `var` (it counts as one of `var`'s rows, and as a row of the match).
    fn context(&self, nav: &Nav, var: usize, path: Option<&Arc<Step>>) -> Result<ScalarValue> {
        let mut seqs: Vec<u64> = Step::iter(path)
            .filter(|s| nav.reads(s.var))
            .map(|s| s.row)
            .collect();
        seqs.reverse();
        if nav.reads(var) {
            seqs.push(self.current);
        }
        match &nav.kind {
            // CLASSIFIER(U) of another variable's rows (the current row's is planned as a
            // literal): the variable of the last of them so far.
            NavKind::Classifier => Ok(ScalarValue::Utf8(
                Step::iter(path)
                    .find(|s| nav.reads(s.var))
                    .map(|s| self.spec.vars[s.var].clone()),
            )),
            NavKind::MatchNumber => Ok(ScalarValue::try_from(&nav.data_type)?),
            _ => over_rows(nav, &seqs, self.current + 1, |s, c| self.value(s, c)),
        }
    }

    /// Evaluates `var`'s condition for candidates with these paths.
    fn evaluate(&self, var: usize, paths: &[Option<&Arc<Step>>]) -> Result<Vec<bool>> {
        let Some(expr) = &self.spec.defines[var] else {
            return Ok(vec![true; paths.len()]);
        };
        let k = paths.len();
        let rows = datafusion::arrow::array::UInt32Array::from(vec![self.row as u32; k]);
        let mut columns: Vec<ArrayRef> = self
            .augmented
            .columns()
            .iter()
            .map(|c| Ok(take(c, &rows, None)?))
            .collect::<Result<_>>()?;
        let mut fields: Vec<_> = self.augmented.schema().fields().to_vec();
        for (c, nav) in self.spec.ctx.iter().enumerate() {
            let array = if self.spec.define_ctx[var].contains(&c) {
                let values = paths
                    .iter()
                    .map(|p| self.context(nav, var, *p))
                    .collect::<Result<Vec<_>>>()?;
                let a = ScalarValue::iter_to_array(values)?;
                if a.data_type() == &nav.data_type {
                    a
                } else {
                    cast(&a, &nav.data_type)?
                }
            } else {
                datafusion::arrow::array::new_null_array(&nav.data_type, k)
            };
            fields.push(Arc::new(datafusion::arrow::datatypes::Field::new(
                format!("__ctx{c}"),
                nav.data_type.clone(),
                true,
            )));
            columns.push(array);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        let result = expr.evaluate(&batch)?.into_array(k)?;
        let result = result.as_boolean();
        Ok((0..k)
            .map(|i| result.is_valid(i) && result.value(i))
            .collect())
    }
}

impl Conditions for RowConditions<'_> {
    fn eval(&mut self, candidates: &[(usize, Option<&Arc<Step>>)]) -> Vec<bool> {
        let mut out: Vec<bool> = candidates
            .iter()
            .map(|(v, _)| {
                self.holds[*v]
                    .as_ref()
                    .is_none_or(|h| h.is_valid(self.row) && h.value(self.row))
            })
            .collect();
        for v in 0..self.spec.vars.len() {
            if self.spec.define_ctx[v].is_empty() {
                continue;
            }
            let mine: Vec<usize> = (0..candidates.len())
                .filter(|&i| candidates[i].0 == v)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let paths: Vec<Option<&Arc<Step>>> = mine.iter().map(|&i| candidates[i].1).collect();
            match self.evaluate(v, &paths) {
                Ok(fits) => {
                    for (&i, f) in mine.iter().zip(fits) {
                        out[i] = f;
                    }
                }
                Err(e) => {
                    for &i in &mine {
                        out[i] = false;
                    }
                    self.error.get_or_insert(e);
                }
            }
        }
        out
    }
}
