//! `UNION ALL`: the streams of several inputs become one. Rows pass as they come (given the
//! merged schema); the merged watermark is the smallest of the inputs' still running, and the
//! stream ends when every input has.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use super::MultiInputOperator;
use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::time::{END_OF_TIME, Millis};

pub struct Union {
    /// The schema batches take once merged.
    schema: SchemaRef,
    /// Each input's watermark, and whether it has ended.
    inputs: Vec<(Option<Millis>, bool)>,
}

impl Union {
    pub fn new(inputs: usize, schema: SchemaRef) -> Self {
        Self {
            schema,
            inputs: vec![(None, false); inputs],
        }
    }

    /// The smallest watermark of the inputs still running; `None` until each has sent one.
    fn watermark(&self) -> Option<Millis> {
        self.inputs
            .iter()
            .filter(|(_, ended)| !ended)
            .map(|(w, _)| *w)
            .try_fold(END_OF_TIME, |lo, w| w.map(|w| lo.min(w)))
    }
}

impl MultiInputOperator for Union {
    fn describe(&self) -> String {
        format!(
            "union of {} inputs (watermark: the smallest of theirs)",
            self.inputs.len()
        )
    }

    fn process(&mut self, input: usize, message: Message, out: &mut Vec<Message>) -> Result<()> {
        if input >= self.inputs.len() {
            return Err(EngineError::Internal(format!(
                "no input {input} in the union"
            )));
        }
        match message {
            Message::Batch(b) => out.push(Message::Batch(RecordBatch::try_new(
                Arc::clone(&self.schema),
                b.columns().to_vec(),
            )?)),
            Message::Watermark(w) => {
                let before = self.watermark();
                let slot = &mut self.inputs[input].0;
                *slot = Some(slot.map_or(w, |old| old.max(w)));
                if let Some(now) = self.watermark()
                    && before.is_none_or(|b| now > b)
                {
                    out.push(Message::Watermark(now));
                }
            }
            Message::Barrier(_) => {
                return Err(EngineError::Internal(
                    "a barrier inside a pipeline: the query task takes them".into(),
                ));
            }
            Message::End => {
                self.inputs[input].1 = true;
                if self.inputs.iter().all(|(_, ended)| *ended) {
                    out.push(Message::End);
                } else if let Some(now) = self.watermark() {
                    out.push(Message::Watermark(now));
                }
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        state.json(&self.inputs)
    }

    fn restore(&mut self, state: &mut StateReader) -> Result<()> {
        let inputs: Vec<(Option<Millis>, bool)> = state.json()?;
        if inputs.len() != self.inputs.len() {
            return Err(EngineError::Checkpoint(format!(
                "the union's state has {} inputs, the query {}",
                inputs.len(),
                self.inputs.len()
            )));
        }
        self.inputs = inputs;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Schema;

    fn watermarks(out: &[Message]) -> Vec<Millis> {
        out.iter()
            .filter_map(|m| match m {
                Message::Watermark(w) => Some(*w),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn merged_inputs_follow_the_slowest_watermark_and_end_together() {
        let mut u = Union::new(2, Arc::new(Schema::empty()));
        let mut out = Vec::new();
        u.process(0, Message::Watermark(100), &mut out).unwrap();
        assert!(
            watermarks(&out).is_empty(),
            "input 1 has sent no watermark yet"
        );
        u.process(1, Message::Watermark(50), &mut out).unwrap();
        assert_eq!(watermarks(&out), [50]);
        u.process(1, Message::Watermark(150), &mut out).unwrap();
        assert_eq!(watermarks(&out), [50, 100]);
        u.process(0, Message::End, &mut out).unwrap();
        assert_eq!(
            watermarks(&out).last(),
            Some(&150),
            "an ended input holds nothing back"
        );
        assert!(!out.iter().any(|m| matches!(m, Message::End)));
        u.process(1, Message::End, &mut out).unwrap();
        assert!(matches!(out.last(), Some(Message::End)));
    }
}
