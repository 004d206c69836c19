//! Where a sink's write stopped part-way: the engine retries a failed write with the same batch,
//! and the retry resumes at the first row not delivered, so that the rows delivered before the
//! failure are not sent twice. A different batch starts at its first row.

use std::sync::Arc;

use arrow::array::RecordBatch;

/// The batch whose write failed part-way, and its first row not delivered.
#[derive(Debug, Default)]
pub struct PartWritten {
    at: Option<(BatchIdentity, usize)>,
}

impl PartWritten {
    /// The first row of `batch` to write: where its failed write stopped, else 0. Forgets the
    /// failure either way (a write that fails again says where it stopped).
    pub fn resume(&mut self, batch: &RecordBatch) -> usize {
        match self.at.take() {
            Some((identity, row)) if identity == BatchIdentity::of(batch) => row,
            _ => 0,
        }
    }

    /// The write of `batch` failed with the rows from `row` on not delivered.
    pub fn failed(&mut self, batch: &RecordBatch, row: usize) {
        self.at = Some((BatchIdentity::of(batch), row));
    }
}

/// The same batch again (a clone shares its columns) has the same identity; a batch made anew
/// has another, even with as many rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchIdentity {
    column: usize,
    rows: usize,
}

impl BatchIdentity {
    fn of(batch: &RecordBatch) -> Self {
        Self {
            column: batch
                .columns()
                .first()
                .map_or(0, |c| Arc::as_ptr(c) as *const () as usize),
            rows: batch.num_rows(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(values: Vec<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values))]).expect("batch")
    }

    #[test]
    fn the_same_batch_resumes_where_it_stopped_and_another_starts_at_its_beginning() {
        let first = batch(vec![1, 2, 3]);
        let mut part = PartWritten::default();
        assert_eq!(part.resume(&first), 0);
        part.failed(&first, 2);
        assert_eq!(part.resume(&first.clone()), 2);
        assert_eq!(
            part.resume(&first),
            0,
            "a write that succeeded is forgotten"
        );
        part.failed(&first, 1);
        let other = batch(vec![4, 5, 6]);
        assert_eq!(part.resume(&other), 0, "as many rows, another batch");
    }
}
