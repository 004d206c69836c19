//! What the engine's integration tests share: a registry whose source and sink the tests drive
//! themselves (the planned pipelines are pushed to directly, never run by the runtime).

#![allow(dead_code)]

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
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
