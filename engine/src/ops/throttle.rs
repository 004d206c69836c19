//! A sink's `throttle`: at most one alert per key per interval, in event time. An alert passes
//! when its key has had none pass within the interval before it (or after it, for an alert that
//! comes out of order); the others are suppressed and counted. What passed last per key is kept
//! in checkpoints, and a key is forgotten once the watermark is an interval past its last alert
//! (a later alert of that key, being newer than the watermark, would pass anyway).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::TimestampMillisecondType;
use datafusion::arrow::row::{RowConverter, SortField};

use super::Operator;
use crate::checkpoint::{StateReader, StateWriter};
use crate::error::Result;
use crate::message::Message;
use crate::time::Millis;

pub struct Throttle {
    interval: Millis,
    /// The key columns, by index in the rows (whose last column is the event time).
    keys: Vec<usize>,
    /// The key columns' names, for the plan.
    key_names: Vec<String>,
    converter: Option<RowConverter>,
    /// Per key, the event time of the last alert that passed.
    last: HashMap<Box<[u8]>, Millis>,
    suppressed: Arc<AtomicU64>,
}

impl Throttle {
    pub fn new(
        interval: Millis,
        keys: Vec<usize>,
        key_names: Vec<String>,
        suppressed: Arc<AtomicU64>,
    ) -> Self {
        Self {
            interval,
            keys,
            key_names,
            converter: None,
            last: HashMap::new(),
            suppressed,
        }
    }

    fn passes(&mut self, key: &[u8], time: Millis) -> bool {
        match self.last.get_mut(key) {
            None => {
                self.last.insert(key.into(), time);
                true
            }
            Some(last) if time >= *last + self.interval => {
                *last = time;
                true
            }
            Some(last) => *last - time >= self.interval,
        }
    }
}

impl Operator for Throttle {
    fn describe(&self) -> String {
        format!(
            "throttle: one alert per {} per {}",
            self.key_names.join(", "),
            crate::time::show_duration(self.interval)
        )
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Vec<Message>) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let time_column = batch.num_columns() - 1;
        let times = crate::checkpoint::primitive_column::<TimestampMillisecondType>(
            &batch,
            time_column,
            "throttle",
        )?
        .clone();
        let columns: Vec<_> = self
            .keys
            .iter()
            .map(|&i| Arc::clone(batch.column(i)))
            .collect();
        let converter = match &mut self.converter {
            Some(c) => c,
            None => self.converter.insert(RowConverter::new(
                columns
                    .iter()
                    .map(|c| SortField::new(c.data_type().clone()))
                    .collect(),
            )?),
        };
        let rows = converter.convert_columns(&columns)?;
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|i| Some(self.passes(rows.row(i).as_ref(), times.value(i))))
            .collect();
        let suppressed = batch.num_rows() - keep.true_count();
        if suppressed > 0 {
            self.suppressed
                .fetch_add(suppressed as u64, Ordering::Relaxed);
        }
        let kept = filter_record_batch(&batch, &keep)?;
        if kept.num_rows() > 0 {
            out.push(Message::Batch(kept));
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Millis, out: &mut Vec<Message>) -> Result<()> {
        let interval = self.interval;
        self.last
            .retain(|_, last| last.saturating_add(interval) > watermark);
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    fn state_rows(&self) -> usize {
        self.last.len()
    }

    fn state_bytes(&self) -> usize {
        self.last
            .keys()
            .map(|k| k.len() + std::mem::size_of::<(Box<[u8]>, Millis)>())
            .sum()
    }

    fn release_keys_idle_since(&mut self, before: Millis) {
        self.last.retain(|_, last| *last >= before);
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        let mut entries: Vec<(&[u8], Millis)> =
            self.last.iter().map(|(k, t)| (k.as_ref(), *t)).collect();
        entries.sort();
        state.json(&entries)
    }

    fn restore(&mut self, state: &mut StateReader) -> Result<()> {
        let entries: Vec<(Vec<u8>, Millis)> = state.json()?;
        self.last = entries
            .into_iter()
            .map(|(k, t)| (k.into_boxed_slice(), t))
            .collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    fn alerts(rows: &[(&str, Millis)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
            ],
        )
        .expect("batch")
    }

    fn passed(out: &[Message]) -> Vec<(String, Millis)> {
        let mut rows = Vec::new();
        for m in out {
            if let Message::Batch(b) = m {
                let ids = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("ids");
                let ts = b
                    .column(1)
                    .as_any()
                    .downcast_ref::<TimestampMillisecondArray>()
                    .expect("times");
                for i in 0..b.num_rows() {
                    rows.push((ids.value(i).to_string(), ts.value(i)));
                }
            }
        }
        rows
    }

    #[test]
    fn one_alert_per_key_per_interval_in_event_time_across_a_restore() {
        let counter = Arc::new(AtomicU64::new(0));
        let mut throttle = Throttle::new(
            60_000,
            vec![0],
            vec!["device_id".into()],
            Arc::clone(&counter),
        );
        let mut out = Vec::new();
        throttle
            .process_batch(
                alerts(&[
                    ("a", 0),
                    ("b", 10_000),
                    ("a", 30_000),
                    ("a", 59_999),
                    ("a", 60_000),
                ]),
                &mut out,
            )
            .expect("processed");
        assert_eq!(
            passed(&out),
            [("a".into(), 0), ("b".into(), 10_000), ("a".into(), 60_000)]
        );
        assert_eq!(counter.load(Ordering::Relaxed), 2);

        // Checkpointed and restored: the next alerts are judged against what passed before.
        let mut state = StateWriter::new();
        throttle.snapshot(&mut state).expect("snapshot");
        let bytes = state.encode().expect("encoded");
        let mut restored = Throttle::new(
            60_000,
            vec![0],
            vec!["device_id".into()],
            Arc::clone(&counter),
        );
        let mut reader = StateReader::decode(&bytes).expect("decoded");
        restored.restore(&mut reader).expect("restored");
        let mut out = Vec::new();
        restored
            .process_batch(
                alerts(&[("b", 50_000), ("b", 70_000), ("a", 119_000)]),
                &mut out,
            )
            .expect("processed");
        assert_eq!(passed(&out), [("b".into(), 70_000)]);

        // Once the watermark is an interval past a key's last alert, the key is forgotten.
        let mut out = Vec::new();
        restored
            .process_watermark(125_000, &mut out)
            .expect("watermark");
        assert_eq!(restored.state_rows(), 1, "b's last alert, at 70 s, is kept");
    }
}
