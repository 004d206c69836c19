//! The rows of a `MATCH_RECOGNIZE` (planned by `plan::match_recognize`) as a stage of the walk.

use std::sync::Arc;

use datafusion::physical_expr::PhysicalExpr;

use super::{Origin, Stage, Walk};
use crate::error::SqlError;
use crate::ops::{
    MatchRecognize, Operator, Project, ScanColumn, ScanTime, SourceScan, with_event_time,
};
use crate::plan::Input;

impl Walk<'_, '_> {
    /// The rows of a `MATCH_RECOGNIZE`: its input scanned whole, the matcher, then the columns
    /// the query reads.
    pub(super) fn match_recognize(
        &self,
        scan: &datafusion::logical_expr::logical_plan::TableScan,
    ) -> Result<Stage, SqlError> {
        let table = scan.table_name.table();
        let call = self
            .planner
            .match_calls
            .get(table)
            .ok_or_else(|| self.error(format!("internal: no MATCH_RECOGNIZE {table}")))?;
        if scan.fetch.is_some() {
            return Err(self.error_at(
                self.anchors.limit,
                "LIMIT is not supported in a continuous query",
            ));
        }
        let input_schema = self.planner.input_schema(call.input);
        let columns = (0..input_schema.fields().len())
            .map(ScanColumn::Source)
            .collect();
        // A view's rows older than the watermark (by the ordering column) are late: dropped.
        let scan_op = SourceScan::new(
            self.planner.input_name(call.input),
            columns,
            ScanTime::Column(call.time_index),
            matches!(call.input, Input::View(_)),
            None,
            with_event_time(input_schema),
        );
        let matcher = MatchRecognize::new(call.spec.clone());
        let mut ops: Vec<Box<dyn Operator>> = vec![Box::new(scan_op), Box::new(matcher)];
        let n = call.schema.fields().len();
        let projection = scan.projection.clone().unwrap_or_else(|| (0..n).collect());
        if projection != (0..n).collect::<Vec<_>>() {
            let exprs = projection
                .iter()
                .map(|&i| {
                    let name = call.schema.field(i).name().clone();
                    let e: Arc<dyn PhysicalExpr> = Arc::new(
                        datafusion::physical_expr::expressions::Column::new(&name, i),
                    );
                    (e, name)
                })
                .collect();
            ops.push(Box::new(Project::new(
                exprs,
                with_event_time(scan.projected_schema.as_arrow()),
            )));
        }
        Ok(Stage {
            inputs: vec![call.input],
            branches: vec![Vec::new()],
            meet: None,
            ops,
            origins: vec![Origin::Value; projection.len()],
            window: None,
            aggregated: false,
        })
    }
}
