//! `WHERE` and `HAVING`: keeps the rows for which a predicate is true.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::physical_expr::PhysicalExpr;

use super::Operator;
use crate::error::Result;
use crate::message::Message;

pub struct Filter {
    predicate: Arc<dyn PhysicalExpr>,
}

impl Filter {
    pub fn new(predicate: Arc<dyn PhysicalExpr>) -> Self {
        Self { predicate }
    }
}

impl Operator for Filter {
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
        format!("filter {}", self.predicate)
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Vec<Message>) -> Result<()> {
        let mask = self
            .predicate
            .evaluate(&batch)?
            .into_array(batch.num_rows())?;
        let mask = mask.as_boolean();
        if mask.null_count() == 0 && mask.true_count() == batch.num_rows() {
            out.push(Message::Batch(batch));
            return Ok(());
        }
        let kept = filter_record_batch(&batch, mask)?;
        if kept.num_rows() > 0 {
            out.push(Message::Batch(kept));
        }
        Ok(())
    }
}
