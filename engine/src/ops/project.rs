//! `SELECT` lists: computes the output columns, keeping the rows' event time.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use super::Operator;
use crate::error::Result;
use crate::message::Message;

pub struct Project {
    exprs: Vec<(Arc<dyn PhysicalExpr>, String)>,
    /// Output schema, with the event-time column last.
    schema: SchemaRef,
}

impl Project {
    pub fn new(exprs: Vec<(Arc<dyn PhysicalExpr>, String)>, schema: SchemaRef) -> Self {
        Self { exprs, schema }
    }
}

impl Operator for Project {
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
        let items: Vec<String> = self
            .exprs
            .iter()
            .map(|(e, name)| {
                let e = e.to_string();
                if e.split('@').next() == Some(name.as_str()) {
                    name.clone()
                } else {
                    format!("{e} AS {name}")
                }
            })
            .collect();
        format!("project {}", items.join(", "))
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Vec<Message>) -> Result<()> {
        let n = batch.num_rows();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.exprs.len() + 1);
        for (e, _) in &self.exprs {
            columns.push(e.evaluate(&batch)?.into_array(n)?);
        }
        if let Some(time) = batch.columns().last() {
            columns.push(Arc::clone(time));
        }
        out.push(Message::Batch(RecordBatch::try_new(
            Arc::clone(&self.schema),
            columns,
        )?));
        Ok(())
    }
}
