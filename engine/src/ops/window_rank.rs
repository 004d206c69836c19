//! Window Top-N: `ROW_NUMBER()`, `RANK()` or `DENSE_RANK()` `OVER (PARTITION BY window_start,
//! window_end [, key ...] ORDER BY x DESC ...)` over the rows of a window aggregate, which a
//! `WHERE rownum <= N` after it keeps the top N of. A window aggregate hands on each window's rows
//! together, once, when the window fires, so every partition is whole in the batch that holds it:
//! the rows are ranked batch by batch, with nothing kept in between.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array, UInt64Array};
use datafusion::arrow::compute::{SortColumn, SortOptions, lexsort_to_indices, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::Operator;
use super::window_functions::WindowFunction;
use crate::error::{EngineError, Result};
use crate::message::Message;

/// One `ORDER BY` key of the ranking.
pub struct RankOrder {
    pub expr: Arc<dyn PhysicalExpr>,
    pub descending: bool,
    pub nulls_first: bool,
}

pub struct WindowRank {
    function: WindowFunction,
    partition: Vec<Arc<dyn PhysicalExpr>>,
    order: Vec<RankOrder>,
    /// The input's columns, the rank, then the event time.
    schema: SchemaRef,
}

impl WindowRank {
    pub fn new(
        function: WindowFunction,
        partition: Vec<Arc<dyn PhysicalExpr>>,
        order: Vec<RankOrder>,
        schema: SchemaRef,
    ) -> Result<Self> {
        if !matches!(
            function,
            WindowFunction::RowNumber | WindowFunction::Rank | WindowFunction::DenseRank
        ) {
            return Err(EngineError::Internal(format!(
                "{function:?} is not a ranking"
            )));
        }
        Ok(Self {
            function,
            partition,
            order,
            schema,
        })
    }

    /// The rows of `batch` in partition and rank order, with their ranks.
    fn rank(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let evaluate = |e: &Arc<dyn PhysicalExpr>| -> Result<ArrayRef> {
            Ok(e.evaluate(batch)?.into_array(n)?)
        };
        let keys: Vec<ArrayRef> = self.partition.iter().map(evaluate).collect::<Result<_>>()?;
        let orders: Vec<ArrayRef> = self
            .order
            .iter()
            .map(|o| evaluate(&o.expr))
            .collect::<Result<_>>()?;
        let mut columns: Vec<SortColumn> = keys
            .iter()
            .map(|k| SortColumn {
                values: Arc::clone(k),
                options: None,
            })
            .collect();
        columns.extend(self.order.iter().zip(&orders).map(|(o, v)| SortColumn {
            values: Arc::clone(v),
            options: Some(SortOptions {
                descending: o.descending,
                nulls_first: o.nulls_first,
            }),
        }));
        // Rows equal in every key are taken in the order of their values, so that which of two
        // tied rows ranks first does not depend on their arrival (columns that cannot be compared
        // are left out, and then the order they came in decides).
        let arrival = SortColumn {
            values: Arc::new(UInt32Array::from_iter_values(0..n as u32)),
            options: None,
        };
        let with_ties: Vec<SortColumn> = columns
            .iter()
            .cloned()
            .chain(
                batch.columns()[..batch.num_columns() - 1]
                    .iter()
                    .map(|c| SortColumn {
                        values: Arc::clone(c),
                        options: None,
                    }),
            )
            .chain(std::iter::once(arrival.clone()))
            .collect();
        let indices = match lexsort_to_indices(&with_ties, None) {
            Ok(indices) => indices,
            Err(_) => {
                columns.push(arrival);
                lexsort_to_indices(&columns, None)?
            }
        };
        let sorted_keys = rows_of(&keys, &indices)?;
        let sorted_orders = rows_of(&orders, &indices)?;
        let mut ranks = Vec::with_capacity(n);
        let (mut number, mut rank, mut dense) = (0u64, 0u64, 0u64);
        for i in 0..n {
            let new_partition = i == 0 || sorted_keys.row(i) != sorted_keys.row(i - 1);
            if new_partition {
                (number, rank, dense) = (0, 0, 0);
            }
            number += 1;
            if new_partition || sorted_orders.row(i) != sorted_orders.row(i - 1) {
                rank = number;
                dense += 1;
            }
            ranks.push(match self.function {
                WindowFunction::RowNumber => number,
                WindowFunction::Rank => rank,
                _ => dense,
            });
        }
        let time = batch.num_columns() - 1;
        let mut out: Vec<ArrayRef> = batch.columns()[..time]
            .iter()
            .map(|c| Ok(take(c, &indices, None)?))
            .collect::<Result<_>>()?;
        let rank_field = self.schema.field(time);
        out.push(datafusion::arrow::compute::cast(
            &(Arc::new(UInt64Array::from(ranks)) as ArrayRef),
            rank_field.data_type(),
        )?);
        out.push(take(batch.column(time), &indices, None)?);
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), out)?)
    }
}

/// `columns` taken in `indices` order, as rows that compare equal when every value does.
fn rows_of(columns: &[ArrayRef], indices: &UInt32Array) -> Result<datafusion::arrow::row::Rows> {
    let taken: Vec<ArrayRef> = columns
        .iter()
        .map(|c| Ok(take(c, indices, None)?))
        .collect::<Result<_>>()?;
    let converter = RowConverter::new(
        taken
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?;
    Ok(converter.convert_columns(&taken)?)
}

impl Operator for WindowRank {
    fn keeps_state(&self) -> bool {
        false
    }

    fn snapshot(&mut self, _state: &mut crate::checkpoint::StateWriter) -> Result<()> {
        Ok(())
    }

    fn restore(&mut self, _state: &mut crate::checkpoint::StateReader) -> Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        let partition: Vec<String> = self.partition.iter().map(|k| k.to_string()).collect();
        let order: Vec<String> = self
            .order
            .iter()
            .map(|o| format!("{}{}", o.expr, if o.descending { " DESC" } else { "" }))
            .collect();
        format!(
            "window ranking {:?}, partitions [{}] (each window's rows together), order [{}]",
            self.function,
            partition.join(", "),
            order.join(", ")
        )
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Vec<Message>) -> Result<()> {
        if batch.num_rows() > 0 {
            out.push(Message::Batch(self.rank(&batch)?));
        }
        Ok(())
    }
}
