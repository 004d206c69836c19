//! What the engine's integration tests share: a registry whose source and sink the tests drive
//! themselves (the planned pipelines are pushed to directly, never run by the runtime), batches
//! of readings, and output rows as text.

#![allow(dead_code)]

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::util::display::array_value_to_string;
use eddy_engine::message::Message;
use eddy_engine::plan::PlannedQuery;
use eddy_engine::{
    ConnectorError, ConnectorRegistry, Planner, Sink, SinkSpec, Source, SourceContext, SourceSpec,
};

/// The planner needs connectors for a file's sources and sinks; these are never run.
pub struct Unused;

#[async_trait]
impl Source for Unused {
    fn describe(&self) -> String {
        "driven by the test".into()
    }
    async fn run(self: Box<Self>, _ctx: &mut SourceContext) -> Result<(), ConnectorError> {
        Ok(())
    }
}

#[async_trait]
impl Sink for Unused {
    fn describe(&self) -> String {
        "driven by the test".into()
    }
    async fn write(&mut self, _batch: RecordBatch) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// A registry with `connector = 'driven'` for sources and sinks.
pub fn driven() -> ConnectorRegistry {
    let mut registry = ConnectorRegistry::new();
    registry.register_source("driven", |_: &SourceSpec| {
        Ok(Box::new(Unused) as Box<dyn Source>)
    });
    registry.register_sink("driven", |_: &SinkSpec| {
        Ok(Box::new(Unused) as Box<dyn Sink>)
    });
    registry
}

/// The one query of `INSERT INTO out {select}` over `readings (device_id TEXT, temp DOUBLE, ts
/// TIMESTAMP)` with a 2-second watermark bound, planned with the driven connectors.
pub async fn plan_readings_query(select: &str) -> PlannedQuery {
    let sql = format!(
        "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) WITH (connector = 'driven');
         CREATE SINK out WITH (connector = 'driven');
         INSERT INTO out {select};"
    );
    let mut plan = Planner::new("readings.sql", &driven())
        .plan(&sql)
        .await
        .unwrap_or_else(|d| panic!("{d}"));
    plan.queries.remove(0)
}

/// A batch of `readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP)`.
pub fn readings(ids: Vec<String>, temps: Vec<f64>, ts: Vec<i64>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, true),
        Field::new("temp", DataType::Float64, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(Float64Array::from(temps)),
            Arc::new(TimestampMillisecondArray::from(ts)),
        ],
    )
    .expect("a batch of readings")
}

/// The rows of the batches in `out`, one line each; with `round`, DOUBLEs to 9 significant
/// digits (sums built in another order may differ in the last bits).
pub fn rows_as_text(out: &[Message], round: bool) -> Vec<String> {
    let mut lines = Vec::new();
    for m in out {
        let Message::Batch(b) = m else { continue };
        for row in 0..b.num_rows() {
            let fields: Vec<String> = b
                .columns()
                .iter()
                .map(|c| {
                    let text = array_value_to_string(c, row).expect("a value");
                    match (round, c.data_type(), text.parse::<f64>()) {
                        (true, DataType::Float64, Ok(v)) => format!("{v:.9e}"),
                        _ => text,
                    }
                })
                .collect();
            lines.push(fields.join(", "));
        }
    }
    lines
}
