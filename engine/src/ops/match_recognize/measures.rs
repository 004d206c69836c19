//! MEASURES: what each found match reads of its rows (first and last values, counts, aggregates,
//! the match number, the classifier), then the measure expressions evaluated by DataFusion over
//! all matches found at once.

use std::sync::Arc;

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::array::{ArrayRef, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::compute::{cast, nullif};
use datafusion::common::ScalarValue;

use super::partition::{KeyState, row_at};
use super::pattern::Match;
use super::spec::{EmptyMatches, MatchRows, MatchSpec, Nav, NavKind};
use crate::error::{EngineError, Result};
use crate::ops::event_times;
use crate::time::Millis;

/// An output row: of a match (ONE ROW PER MATCH), of a row of a match (ALL ROWS PER MATCH), or
/// of a row no match maps (WITH UNMATCHED ROWS), with what its measures need.
pub(super) struct Found {
    key: Vec<ScalarValue>,
    navs: Vec<ScalarValue>,
    /// ALL ROWS PER MATCH: the row's ordering column, then its remaining columns.
    values: Vec<ScalarValue>,
    /// A row no match maps: its measures are NULL.
    unmatched: bool,
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

/// The values the navs of a match read when the row being output is `current` (an index into
/// `m.rows`; `None`: the match's last row, or an empty match).
fn navs_at(
    spec: &MatchSpec,
    state: &KeyState,
    m: &Match,
    current: Option<usize>,
) -> Result<Vec<ScalarValue>> {
    let available = state.matcher.next_row();
    let value_at = |seq: u64, column: usize| -> Result<ScalarValue> {
        let (b, r) = row_at(state, seq)?;
        Ok(ScalarValue::try_from_array(b.column(column), r)?)
    };
    let mut navs = Vec::with_capacity(spec.navs.len());
    for nav in &spec.navs {
        // Running: the match up to the current row; final: all of it.
        let upto = match current {
            Some(k) if !nav.final_ => k + 1,
            _ => m.rows.len(),
        };
        let seen = &m.rows[..upto];
        let v = match &nav.kind {
            NavKind::MatchNumber => ScalarValue::Int64(Some(state.matches)),
            NavKind::Classifier => match seen.iter().rev().find(|(_, v)| nav.reads(*v)) {
                Some((_, v)) => ScalarValue::Utf8(Some(spec.vars[*v].clone())),
                None => ScalarValue::Utf8(None),
            },
            _ => {
                let rows: Vec<u64> = seen
                    .iter()
                    .filter(|(_, v)| nav.reads(*v))
                    .map(|(r, _)| *r)
                    .collect();
                over_rows(nav, &rows, available, value_at)?
            }
        };
        navs.push(v);
    }
    Ok(navs)
}

/// The event time of the row of sequence number `seq`, and (ALL ROWS PER MATCH) its ordering
/// column and remaining columns.
fn row_values(spec: &MatchSpec, state: &KeyState, seq: u64) -> Result<(Millis, Vec<ScalarValue>)> {
    let (b, r) = row_at(state, seq)?;
    let time = event_times(b)?[r];
    let values = match &spec.rows_per_match {
        MatchRows::OneRow => Vec::new(),
        MatchRows::AllRows { order, rest, .. } => std::iter::once(order)
            .chain(rest)
            .map(|&c| ScalarValue::try_from_array(b.column(c), r))
            .collect::<datafusion::error::Result<_>>()?,
    };
    Ok((time, values))
}

/// The output rows of a match: one (ONE ROW PER MATCH), or one per row of it (ALL ROWS PER
/// MATCH; an empty match has one, of the row where it was found, unless omitted).
pub(super) fn measure(
    spec: &MatchSpec,
    state: &mut KeyState,
    m: &Match,
    out: &mut Vec<Found>,
) -> Result<()> {
    state.matches += 1;
    let empty = match &spec.rows_per_match {
        MatchRows::OneRow => {
            let navs = navs_at(spec, state, m, None)?;
            let (time, _) = row_values(spec, state, m.rows.last().map_or(m.start, |r| r.0))?;
            out.push(Found {
                key: state.key.clone(),
                navs,
                values: Vec::new(),
                unmatched: false,
                time,
            });
            return Ok(());
        }
        MatchRows::AllRows { empty, .. } => *empty,
    };
    if m.rows.is_empty() {
        if empty != EmptyMatches::Omit {
            let navs = navs_at(spec, state, m, None)?;
            let (time, values) = row_values(spec, state, m.start)?;
            out.push(Found {
                key: state.key.clone(),
                navs,
                values,
                unmatched: false,
                time,
            });
        }
        return Ok(());
    }
    for (k, &(seq, _)) in m.rows.iter().enumerate() {
        // Excluded rows count in the measures of the rows after them, but are not output.
        if m.excluded.contains(&seq) {
            continue;
        }
        let navs = navs_at(spec, state, m, Some(k))?;
        let (time, values) = row_values(spec, state, seq)?;
        out.push(Found {
            key: state.key.clone(),
            navs,
            values,
            unmatched: false,
            time,
        });
    }
    Ok(())
}

/// The output row of a row no match maps (WITH UNMATCHED ROWS): NULL measures.
pub(super) fn unmatched(spec: &MatchSpec, state: &KeyState, seq: u64) -> Result<Found> {
    let navs = spec
        .navs
        .iter()
        .map(|n| ScalarValue::try_from(&n.data_type))
        .collect::<datafusion::error::Result<_>>()?;
    let (time, values) = row_values(spec, state, seq)?;
    Ok(Found {
        key: state.key.clone(),
        navs,
        values,
        unmatched: true,
        time,
    })
}

/// The output rows: partition columns, (ordering column,) measures, (remaining columns,) the
/// event time.
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
    let fields = spec.schema.fields();
    let value_column = |j: usize, at: usize| -> Result<ArrayRef> {
        let a = ScalarValue::iter_to_array(found.iter().map(|f| f.values[j].clone()))?;
        let t = fields[at].data_type();
        Ok(if a.data_type() == t { a } else { cast(&a, t)? })
    };
    let mut out: Vec<ArrayRef> = inputs.columns()[..p].to_vec();
    let all_rows = matches!(spec.rows_per_match, MatchRows::AllRows { .. });
    if all_rows {
        out.push(value_column(0, out.len())?);
    }
    let unmatched = found
        .iter()
        .any(|f| f.unmatched)
        .then(|| BooleanArray::from(found.iter().map(|f| f.unmatched).collect::<Vec<_>>()));
    for m in &spec.measures {
        let field = &fields[out.len()];
        let a = m.evaluate(&inputs)?.into_array(n)?;
        let a = if a.data_type() == field.data_type() {
            a
        } else {
            cast(&a, field.data_type())?
        };
        out.push(match &unmatched {
            Some(mask) => nullif(&a, mask)?,
            None => a,
        });
    }
    if let MatchRows::AllRows { rest, .. } = &spec.rows_per_match {
        for j in 0..rest.len() {
            out.push(value_column(j + 1, out.len())?);
        }
    }
    out.push(Arc::new(TimestampMillisecondArray::from(
        found.iter().map(|f| f.time).collect::<Vec<_>>(),
    )));
    Ok(RecordBatch::try_new(Arc::clone(&spec.schema), out)?)
}
