//! The window functions of `OVER (PARTITION BY key ORDER BY <event time>)` that are not aggregates
//! (`LAG`, `ROW_NUMBER`, `RANK`, `DENSE_RANK`, `FIRST_VALUE`, `LAST_VALUE`), as accumulators over
//! a frame, so that the OVER operator slides, checkpoints and restores them as it does the
//! aggregates:
//!
//! - `LAG(x, n, default)` is the first row of a `ROWS n PRECEDING` frame once the frame holds
//!   `n + 1` rows, the default (NULL unless given) before that;
//! - `LEAD(x, n, default)` is the last row of a frame from the current row to `n FOLLOWING`
//!   when it holds `n + 1` rows, the default when the input ended before (the OVER operator holds
//!   the row until then);
//! - `ROW_NUMBER()`, `RANK()` and `DENSE_RANK()` read the event time of every row of an unbounded
//!   frame, rows of the same time being peers (the same rank);
//! - `FIRST_VALUE(x)` and `LAST_VALUE(x)` are the first and last row of the frame (which ends at
//!   the current row, so `LAST_VALUE` is the current row's value);
//! - with `IGNORE NULLS`, `LAG(x, n)` is the `n`th non-NULL value before the current row (an
//!   unbounded frame keeping the last `n + 1` of them), and `FIRST_VALUE` / `LAST_VALUE` over a frame
//!   from `UNBOUNDED PRECEDING` the first and last non-NULL value.

use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Accumulator, AggregateUDF, Volatility, create_udaf};

/// A window function, as the OVER operator computes it.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowFunction {
    /// The value `offset` rows before, `default` where there is none.
    Lag {
        offset: u64,
        default: ScalarValue,
    },
    /// The value `offset` rows after, `default` where there is none.
    Lead {
        offset: u64,
        default: ScalarValue,
    },
    RowNumber,
    Rank,
    DenseRank,
    /// The first row of the frame; `bounded`: the frame has a start that slides.
    FirstValue {
        bounded: bool,
    },
    LastValue,
}

impl WindowFunction {
    fn name(&self) -> &'static str {
        match self {
            WindowFunction::Lag { .. } => "lag",
            WindowFunction::Lead { .. } => "lead",
            WindowFunction::RowNumber => "row_number",
            WindowFunction::Rank => "rank",
            WindowFunction::DenseRank => "dense_rank",
            WindowFunction::FirstValue { .. } => "first_value",
            WindowFunction::LastValue => "last_value",
        }
    }

    /// The function as an aggregate over one argument of type `input` (the value, or for the
    /// numberings the event time), giving `output`; `ignore_nulls`: `IGNORE NULLS` (LAG,
    /// FIRST_VALUE and LAST_VALUE).
    pub fn udaf(&self, input: DataType, output: DataType, ignore_nulls: bool) -> AggregateUDF {
        let state: Vec<DataType> = match self {
            // The last non-NULL values, and whether the current row's is NULL.
            WindowFunction::Lag { .. } if ignore_nulls => vec![
                DataType::List(Arc::new(
                    datafusion::arrow::datatypes::Field::new_list_field(input.clone(), true),
                )),
                DataType::Boolean,
            ],
            // Bounded frames are restored from their rows, not from a state.
            WindowFunction::Lag { .. }
            | WindowFunction::Lead { .. }
            | WindowFunction::FirstValue { bounded: true } => vec![],
            WindowFunction::RowNumber => vec![DataType::Int64],
            WindowFunction::Rank | WindowFunction::DenseRank => vec![DataType::Int64; 4],
            WindowFunction::FirstValue { bounded: false } | WindowFunction::LastValue => {
                vec![input.clone(), DataType::Boolean]
            }
        };
        let function = self.clone();
        let returns = output.clone();
        create_udaf(
            self.name(),
            vec![input],
            Arc::new(output),
            Volatility::Immutable,
            Arc::new(move |_| {
                let mut state = FunctionState::new(function.clone(), returns.clone());
                state.ignore_nulls = ignore_nulls;
                Ok(Box::new(state))
            }),
            Arc::new(state),
        )
    }
}

#[derive(Debug)]
struct FunctionState {
    function: WindowFunction,
    output: DataType,
    /// LAG, and FIRST_VALUE over a bounded frame: the values of the frame's rows.
    rows: VecDeque<ScalarValue>,
    /// ROW_NUMBER: rows so far.
    count: i64,
    /// RANK: rows before the current time; DENSE_RANK: the times seen.
    before: i64,
    last_time: Option<i64>,
    peers: i64,
    distinct: i64,
    /// FIRST_VALUE (unbounded) and LAST_VALUE: the value kept, once a row has been seen.
    value: Option<ScalarValue>,
    /// `IGNORE NULLS`: NULL values are skipped.
    ignore_nulls: bool,
    /// LAG IGNORE NULLS: whether the current row's value is NULL.
    current_null: bool,
}

fn int(a: &ArrayRef, i: usize) -> Result<Option<i64>> {
    Ok(
        match ScalarValue::try_from_array(a, i)?.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(v) => v,
            _ => None,
        },
    )
}

impl FunctionState {
    fn new(function: WindowFunction, output: DataType) -> Self {
        Self {
            function,
            output,
            rows: VecDeque::new(),
            count: 0,
            before: 0,
            last_time: None,
            peers: 0,
            distinct: 0,
            value: None,
            ignore_nulls: false,
            current_null: false,
        }
    }

    fn number(&self, n: i64) -> Result<ScalarValue> {
        ScalarValue::Int64(Some(n)).cast_to(&self.output)
    }
}

impl Accumulator for FunctionState {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(a) = values.first() else {
            return Ok(());
        };
        for i in 0..a.len() {
            match &self.function {
                WindowFunction::Lag { offset, .. } if self.ignore_nulls => {
                    let v = ScalarValue::try_from_array(a, i)?;
                    self.current_null = v.is_null();
                    if !self.current_null {
                        self.rows.push_back(v);
                        while self.rows.len() as u64 > offset.saturating_add(1) {
                            self.rows.pop_front();
                        }
                    }
                }
                _ if self.ignore_nulls && a.is_null(i) => {}
                WindowFunction::Lag { .. }
                | WindowFunction::Lead { .. }
                | WindowFunction::FirstValue { bounded: true } => {
                    self.rows.push_back(ScalarValue::try_from_array(a, i)?);
                }
                WindowFunction::RowNumber => self.count += 1,
                WindowFunction::Rank | WindowFunction::DenseRank => {
                    let time = int(a, i)?;
                    if self.peers > 0 && time == self.last_time {
                        self.peers += 1;
                    } else {
                        self.before += self.peers;
                        self.peers = 1;
                        self.distinct += 1;
                        self.last_time = time;
                    }
                }
                WindowFunction::FirstValue { bounded: false } => {
                    if self.value.is_none() {
                        self.value = Some(ScalarValue::try_from_array(a, i)?);
                    }
                }
                WindowFunction::LastValue => {
                    self.value = Some(ScalarValue::try_from_array(a, i)?);
                }
            }
        }
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let n = values.first().map_or(0, |a| a.len());
        for _ in 0..n {
            self.rows.pop_front();
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        // LAST_VALUE is the frame's last row, the current one, whatever leaves the frame.
        matches!(
            self.function,
            WindowFunction::Lag { .. }
                | WindowFunction::Lead { .. }
                | WindowFunction::FirstValue { bounded: true }
                | WindowFunction::LastValue
        )
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        match &self.function {
            WindowFunction::Lag { offset, default } if self.ignore_nulls => {
                // The current row's value is the last kept unless it is NULL.
                let back = if self.current_null {
                    *offset
                } else {
                    offset.saturating_add(1)
                };
                if *offset == 0 && self.current_null {
                    return ScalarValue::try_from(&self.output);
                }
                match (self.rows.len() as u64).checked_sub(back) {
                    Some(i) if back > 0 => Ok(self.rows[i as usize].clone()),
                    _ => Ok(default.clone()),
                }
            }
            WindowFunction::Lag { offset, default } => {
                if self.rows.len() as u64 > *offset {
                    Ok(self.rows.front().cloned().unwrap_or(ScalarValue::Null))
                } else {
                    Ok(default.clone())
                }
            }
            WindowFunction::Lead { offset, default } => {
                if self.rows.len() as u64 > *offset {
                    Ok(self.rows.back().cloned().unwrap_or(ScalarValue::Null))
                } else {
                    Ok(default.clone())
                }
            }
            WindowFunction::RowNumber => self.number(self.count),
            WindowFunction::Rank => self.number(self.before + 1),
            WindowFunction::DenseRank => self.number(self.distinct),
            WindowFunction::FirstValue { bounded: true } => match self.rows.front() {
                Some(v) => Ok(v.clone()),
                None => ScalarValue::try_from(&self.output),
            },
            WindowFunction::FirstValue { bounded: false } | WindowFunction::LastValue => {
                match &self.value {
                    Some(v) => Ok(v.clone()),
                    None => ScalarValue::try_from(&self.output),
                }
            }
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.rows.iter().map(ScalarValue::size).sum::<usize>()
            + self.value.as_ref().map_or(0, ScalarValue::size)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(match &self.function {
            WindowFunction::Lag { .. } if self.ignore_nulls => {
                let values: Vec<ScalarValue> = self.rows.iter().cloned().collect();
                let kept = match values.first() {
                    Some(v) => v.data_type(),
                    None => self.output.clone(),
                };
                vec![
                    ScalarValue::List(ScalarValue::new_list_nullable(&values, &kept)),
                    ScalarValue::Boolean(Some(self.current_null)),
                ]
            }
            WindowFunction::Lag { .. }
            | WindowFunction::Lead { .. }
            | WindowFunction::FirstValue { bounded: true } => vec![],
            WindowFunction::RowNumber => vec![ScalarValue::Int64(Some(self.count))],
            WindowFunction::Rank | WindowFunction::DenseRank => vec![
                ScalarValue::Int64(Some(self.before)),
                ScalarValue::Int64(self.last_time),
                ScalarValue::Int64(Some(self.peers)),
                ScalarValue::Int64(Some(self.distinct)),
            ],
            WindowFunction::FirstValue { bounded: false } | WindowFunction::LastValue => {
                let seen = self.value.is_some();
                vec![
                    match &self.value {
                        Some(v) => v.clone(),
                        None => ScalarValue::try_from(&self.output)?,
                    },
                    ScalarValue::Boolean(Some(seen)),
                ]
            }
        })
    }

    /// Restores a key's state from its checkpoint (one row per key, into a fresh accumulator).
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(first) = states.first() else {
            return Ok(());
        };
        for i in 0..first.len() {
            match &self.function {
                WindowFunction::Lag { .. } if self.ignore_nulls => {
                    if let ScalarValue::List(list) = ScalarValue::try_from_array(first, i)? {
                        let values = list.value(0);
                        for j in 0..values.len() {
                            self.rows
                                .push_back(ScalarValue::try_from_array(&values, j)?);
                        }
                    }
                    self.current_null = states
                        .get(1)
                        .map(|s| ScalarValue::try_from_array(s, i))
                        .transpose()?
                        == Some(ScalarValue::Boolean(Some(true)));
                }
                WindowFunction::Lag { .. }
                | WindowFunction::Lead { .. }
                | WindowFunction::FirstValue { bounded: true } => {}
                WindowFunction::RowNumber => self.count = int(first, i)?.unwrap_or(0),
                WindowFunction::Rank | WindowFunction::DenseRank => {
                    let [before, last, peers, distinct] = states else {
                        return Err(DataFusionError::Internal(
                            "a rank's state has four columns".into(),
                        ));
                    };
                    self.before = int(before, i)?.unwrap_or(0);
                    self.last_time = int(last, i)?;
                    self.peers = int(peers, i)?.unwrap_or(0);
                    self.distinct = int(distinct, i)?.unwrap_or(0);
                }
                WindowFunction::FirstValue { bounded: false } | WindowFunction::LastValue => {
                    let seen = states
                        .get(1)
                        .map(|s| ScalarValue::try_from_array(s, i))
                        .transpose()?;
                    if seen == Some(ScalarValue::Boolean(Some(true))) {
                        self.value = Some(ScalarValue::try_from_array(first, i)?);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    /// `f`'s value after each of `values` enters a frame of `window` preceding rows (unbounded
    /// without).
    fn run(f: WindowFunction, window: Option<usize>, values: &[i64]) -> Vec<ScalarValue> {
        let mut acc = FunctionState::new(f, DataType::Int64);
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let a: ArrayRef = Arc::new(Int64Array::from(vec![*v]));
            acc.update_batch(std::slice::from_ref(&a)).expect("update");
            // The frame holds `w + 1` rows at most: the oldest leaves as the next enters.
            if let Some(w) = window
                && i > w
            {
                acc.retract_batch(&[a]).expect("retract");
            }
            out.push(acc.evaluate().expect("evaluate"));
        }
        out
    }

    fn ints(v: &[Option<i64>]) -> Vec<ScalarValue> {
        v.iter().map(|x| ScalarValue::Int64(*x)).collect()
    }

    #[test]
    fn lag_reads_the_row_offset_rows_before() {
        let lag = WindowFunction::Lag {
            offset: 2,
            default: ScalarValue::Int64(Some(-1)),
        };
        // A ROWS 2 PRECEDING frame: three rows at most, the oldest leaving as a fourth enters.
        assert_eq!(
            run(lag, Some(2), &[10, 20, 30, 40]),
            ints(&[Some(-1), Some(-1), Some(10), Some(20)])
        );
    }

    #[test]
    fn ranks_give_peers_one_rank() {
        let times = [1, 2, 2, 5, 5, 5, 9];
        assert_eq!(
            run(WindowFunction::Rank, None, &times),
            ints(&[
                Some(1),
                Some(2),
                Some(2),
                Some(4),
                Some(4),
                Some(4),
                Some(7)
            ])
        );
        assert_eq!(
            run(WindowFunction::DenseRank, None, &times),
            ints(&[
                Some(1),
                Some(2),
                Some(2),
                Some(3),
                Some(3),
                Some(3),
                Some(4)
            ])
        );
        assert_eq!(
            run(WindowFunction::RowNumber, None, &times),
            ints(&[
                Some(1),
                Some(2),
                Some(3),
                Some(4),
                Some(5),
                Some(6),
                Some(7)
            ])
        );
    }

    #[test]
    fn a_rank_restored_from_its_state_goes_on() {
        let udaf = WindowFunction::Rank.udaf(DataType::Int64, DataType::Int64, false);
        assert_eq!(udaf.name(), "rank");
        let mut acc = FunctionState::new(WindowFunction::Rank, DataType::Int64);
        let times: ArrayRef = Arc::new(Int64Array::from(vec![1, 3, 3]));
        acc.update_batch(&[times]).expect("update");
        let state: Vec<ArrayRef> = acc
            .state()
            .expect("state")
            .iter()
            .map(|v| v.to_array().expect("array"))
            .collect();
        let mut again = FunctionState::new(WindowFunction::Rank, DataType::Int64);
        again.merge_batch(&state).expect("merge");
        let next: ArrayRef = Arc::new(Int64Array::from(vec![3]));
        again.update_batch(&[next]).expect("update");
        assert_eq!(again.evaluate().expect("rank"), ScalarValue::Int64(Some(2)));
    }
}
