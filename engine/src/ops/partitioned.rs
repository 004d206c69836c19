//! Rows sorted by partition key, then event time: how the operators that take each key's rows in
//! time order (OVER windows, sessions, MATCH_RECOGNIZE) see a batch the watermark has released.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::{SortColumn, lexsort_to_indices, take, take_record_batch};
use datafusion::arrow::row::{RowConverter, Rows};

use super::event_times;
use crate::error::Result;
use crate::time::Millis;

pub(crate) struct Partitioned {
    /// The rows, sorted.
    pub batch: RecordBatch,
    /// The key columns, sorted with the rows.
    pub keys: Vec<ArrayRef>,
    pub times: Vec<Millis>,
    /// The keys in the row format: comparable bytes, for maps of per-key state.
    rows: Option<Rows>,
}

impl Partitioned {
    /// Sorts `batch` (its event time last) by `keys` (one array per key column), then by time,
    /// then by the other columns.
    /// `converter` is created on first use and kept by the operator.
    pub fn sort(
        batch: &RecordBatch,
        keys: Vec<ArrayRef>,
        converter: &mut Option<RowConverter>,
    ) -> Result<Self> {
        let time_column = batch.num_columns() - 1;
        let mut sort: Vec<SortColumn> = keys
            .iter()
            .map(|k| SortColumn {
                values: Arc::clone(k),
                options: None,
            })
            .collect();
        sort.push(SortColumn {
            values: Arc::clone(batch.column(time_column)),
            options: None,
        });
        // Rows of one key with the same time are taken in the order of their values, not of
        // their arrival: a ROWS frame or a pattern over tied rows gives the same answer whatever
        // order they came in. (Columns that cannot be compared are left out.)
        let with_ties: Vec<SortColumn> = sort
            .iter()
            .cloned()
            .chain(batch.columns()[..time_column].iter().map(|c| SortColumn {
                values: Arc::clone(c),
                options: None,
            }))
            .collect();
        let order = match lexsort_to_indices(&with_ties, None) {
            Ok(order) => order,
            Err(_) => lexsort_to_indices(&sort, None)?,
        };
        let batch = take_record_batch(batch, &order)?;
        let keys: Vec<ArrayRef> = keys
            .iter()
            .map(|k| Ok(take(k, &order, None)?))
            .collect::<Result<_>>()?;
        let times = event_times(&batch)?.to_vec();
        let rows = if keys.is_empty() {
            None
        } else {
            Some(super::row_converter(converter, &keys)?.convert_columns(&keys)?)
        };
        Ok(Self {
            batch,
            keys,
            times,
            rows,
        })
    }

    /// The key of row `i` as comparable bytes (empty without keys).
    pub fn key(&self, i: usize) -> &[u8] {
        self.rows.as_ref().map_or(&[], |r| r.row(i).data())
    }

    /// The ranges of rows with the same key.
    pub fn runs(&self) -> Vec<(usize, usize)> {
        let n = self.batch.num_rows();
        let mut runs = Vec::new();
        let mut s = 0;
        while s < n {
            let mut e = s + 1;
            while e < n && self.key(e) == self.key(s) {
                e += 1;
            }
            runs.push((s, e));
            s = e;
        }
        runs
    }
}
