//! MEASURES: what each found match reads of its rows (first and last values, counts, aggregates,
//! the match number, the classifier), then the measure expressions evaluated by DataFusion over
//! all matches found at once.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::compute::cast;
use datafusion::common::ScalarValue;

use super::partition::{KeyState, row_at};
use super::pattern::Match;
use super::spec::{MatchSpec, Nav, NavKind};
use crate::error::{EngineError, Result};
use crate::ops::event_times;
use crate::time::Millis;

/// A found match, with what its measures need.
pub(super) struct Found {
    key: Vec<ScalarValue>,
    navs: Vec<ScalarValue>,
    time: Millis,
}

/// What `nav` reads of the rows `seqs` (in order): the first or last row's value (or a row some
/// rows before or after it in the partition), their count, or an aggregate over them. The
/// partition's rows so far are those before sequence number `available`; `value_at(seq, column)`
/// reads a stored row.
pub(super) fn over_rows(
    nav: &Nav,
    seqs: &[u64],
    available: u64,
    value_at: impl Fn(u64, usize) -> Result<ScalarValue>,
) -> Result<ScalarValue> {
    Ok(match &nav.kind {
        NavKind::First(n) | NavKind::Last(n) => {
            // Beyond the rows read, and beyond the partition, the value is NULL.
            let seq = if matches!(nav.kind, NavKind::First(_)) {
                seqs.get(*n)
            } else {
                seqs.len().checked_sub(n + 1).and_then(|i| seqs.get(i))
            };
            let target = seq
                .and_then(|&s| s.checked_add_signed(nav.physical))
                .filter(|&s| s < available);
            match (target, nav.column) {
                (Some(s), Some(c)) => value_at(s, c)?,
                _ => ScalarValue::try_from(&nav.data_type)?,
            }
        }
        NavKind::CountRows => ScalarValue::Int64(Some(seqs.len() as i64)),
        NavKind::Aggregate { function, input } => {
            let c = nav
                .column
                .ok_or_else(|| EngineError::Internal("aggregate without column".into()))?;
            let mut acc = function.create_accumulator()?;
            if !seqs.is_empty() {
                let values = seqs
                    .iter()
                    .map(|&s| value_at(s, c))
                    .collect::<Result<Vec<_>>>()?;
                let values = ScalarValue::iter_to_array(values)?;
                let values = if values.data_type() == input {
                    values
                } else {
                    cast(&values, input)?
                };
                acc.update_batch(&[values])?;
            }
            acc.evaluate()?
        }
        NavKind::MatchNumber | NavKind::Classifier => ScalarValue::try_from(&nav.data_type)?,
    })
}

/// The values a match's measures read; the partition's rows are those the matcher has seen.
pub(super) fn measure(spec: &MatchSpec, state: &mut KeyState, m: &Match) -> Result<Found> {
    state.matches += 1;
    let available = state.matcher.next_row();
    let mut navs = Vec::with_capacity(spec.navs.len());
    for nav in &spec.navs {
        let rows: Vec<u64> = m
            .rows
            .iter()
            .filter(|(_, v)| nav.var.is_none_or(|x| x == *v))
            .map(|(r, _)| *r)
            .collect();
        let value_at = |seq: u64, column: usize| -> Result<ScalarValue> {
            let (b, r) = row_at(state, seq)?;
            Ok(ScalarValue::try_from_array(b.column(column), r)?)
        };
        let v = match &nav.kind {
            NavKind::MatchNumber => ScalarValue::Int64(Some(state.matches)),
            NavKind::Classifier => match m.rows.last() {
                Some((_, v)) => ScalarValue::Utf8(Some(spec.vars[*v].clone())),
                None => ScalarValue::Utf8(None),
            },
            _ => over_rows(nav, &rows, available, value_at)?,
        };
        navs.push(v);
    }
    let time_seq = m.rows.last().map_or(m.start, |r| r.0);
    let (b, r) = row_at(state, time_seq)?;
    let time = event_times(b)?[r];
    Ok(Found {
        key: state.key.clone(),
        navs,
        time,
    })
}

/// The output rows of the matches found: partition columns, measures, the event time.
pub(super) fn emit(spec: &MatchSpec, found: Vec<Found>) -> Result<RecordBatch> {
    let n = found.len();
    let p = spec.partition.len();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(p + spec.navs.len());
    for k in 0..p {
        columns.push(ScalarValue::iter_to_array(
            found.iter().map(|f| f.key[k].clone()),
        )?);
    }
    for (j, nav) in spec.navs.iter().enumerate() {
        let a = ScalarValue::iter_to_array(found.iter().map(|f| f.navs[j].clone()))?;
        columns.push(if a.data_type() == &nav.data_type {
            a
        } else {
            cast(&a, &nav.data_type)?
        });
    }
    let inputs = RecordBatch::try_new(Arc::clone(&spec.measure_schema), columns)?;
    let mut out: Vec<ArrayRef> = inputs.columns()[..p].to_vec();
    for (m, field) in spec
        .measures
        .iter()
        .zip(spec.schema.fields().iter().skip(p))
    {
        let a = m.evaluate(&inputs)?.into_array(n)?;
        out.push(if a.data_type() == field.data_type() {
            a
        } else {
            cast(&a, field.data_type())?
        });
    }
    out.push(Arc::new(TimestampMillisecondArray::from(
        found.iter().map(|f| f.time).collect::<Vec<_>>(),
    )));
    Ok(RecordBatch::try_new(Arc::clone(&spec.schema), out)?)
}
