//! The aggregates DuckDB cannot check (DataFusion's approximate ones, ordered `first_value`,
//! `bool_and`, ...) checked against DataFusion's own batch answer over the same rows: `eddy run`
//! computes them incrementally per window and, for HOP, merges pane states; the batch query sees
//! each window's rows at once. With fewer than 100 rows per group the t-digest behind
//! `approx_percentile_cont` keeps every value, so merged and one-pass answers must agree.

mod common;

use std::sync::Arc;

use datafusion::arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

const START: i64 = 1_767_225_600_000;

struct Row {
    device: &'static str,
    temp: Option<f64>,
    ts: i64,
}

/// Three devices, a reading every 2 s for 3 minutes, some NULL temperatures, arriving up to 3 s
/// out of order (the watermark allows 5).
fn rows() -> Vec<Row> {
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as i64
    };
    let mut rows: Vec<(i64, Row)> = Vec::new();
    for i in 0..90 {
        for (d, device) in ["m-1", "m-2", "m-3"].into_iter().enumerate() {
            let ts = START + i * 2_000 + next() % 2_000;
            let temp =
                (next() % 7 != 0).then(|| 40.0 + d as f64 * 10.0 + (next() % 2_000) as f64 / 100.0);
            rows.push((ts + next() % 3_000, Row { device, temp, ts }));
        }
    }
    rows.sort_by_key(|(arrival, _)| *arrival);
    rows.into_iter().map(|(_, r)| r).collect()
}

const AGGREGATES: &str = "approx_percentile_cont(temp, 0.5) AS p50,
       approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY temp) AS p90,
       approx_percentile_cont_with_weight(temp, 1.0, 0.25) AS p25,
       stddev_pop(temp) AS sd, var_samp(temp) AS var,
       first_value(temp ORDER BY ts) AS first_temp, last_value(temp ORDER BY ts) AS last_temp,
       bool_and(temp > 45) AS always_warm, count(DISTINCT round(temp)) AS distinct_degrees,
       median(temp) AS med";

#[tokio::test]
async fn approximate_and_ordered_aggregates_equal_datafusion_batch_answers() {
    let rows = rows();
    let dir = tempfile::tempdir().expect("temp dir");
    let lines: Vec<String> = rows
        .iter()
        .map(|r| serde_json::json!({"device_id": r.device, "temp": r.temp, "ts": r.ts}).to_string())
        .collect();
    std::fs::write(dir.path().join("input.jsonl"), lines.join("\n")).expect("input written");

    let windows = [
        (
            "tumble",
            "TUMBLE(readings, ts, INTERVAL '20' SECOND)",
            "SELECT *, date_bin(INTERVAL '20 seconds', ts, TIMESTAMP '1970-01-01T00:00:00') AS window_start FROM readings",
        ),
        (
            "hop",
            "HOP(readings, ts, INTERVAL '20' SECOND, INTERVAL '1' MINUTE)",
            "SELECT r.*, date_bin(INTERVAL '20 seconds', ts, TIMESTAMP '1970-01-01T00:00:00') - k.back AS window_start
             FROM readings r CROSS JOIN (VALUES (INTERVAL '0 seconds'), (INTERVAL '20 seconds'),
                                                (INTERVAL '40 seconds')) AS k(back)",
        ),
    ];
    let ctx = SessionContext::new();
    ctx.register_table("readings", Arc::new(mem_table(&rows)))
        .expect("table registered");
    for (name, call, assign) in windows {
        let query = format!(
            "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
               WITH (connector = 'file', path = 'input.jsonl');
             CREATE SINK out WITH (connector = 'file', path = '{name}.jsonl', mode = 'truncate');
             INSERT INTO out SELECT device_id, window_start, {AGGREGATES}
             FROM {call} GROUP BY device_id, window_start, window_end;"
        );
        std::fs::write(dir.path().join(format!("{name}.sql")), query).expect("query written");
        let run = common::run_eddy(dir.path(), &["run", &format!("{name}.sql"), "--quiet"], &[]);
        assert!(
            run.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let streamed =
            std::fs::read_to_string(dir.path().join(format!("{name}.jsonl"))).expect("output");

        let batch_sql = format!(
            "SELECT device_id, window_start, {AGGREGATES} FROM ({assign}) GROUP BY device_id, window_start"
        );
        let batches = ctx
            .sql(&batch_sql)
            .await
            .expect("the batch query plans")
            .collect()
            .await
            .expect("the batch query runs");
        let mut expected = Vec::new();
        for b in &batches {
            expected.extend(eddy_connectors::format::json::encode_rows(b).expect("encoded"));
        }
        let expected = String::from_utf8(expected).expect("utf-8");
        assert!(
            common::parse_lines(&expected).len() > 20,
            "{name}: too few windows to compare"
        );
        if let Err(diff) = common::compare_rows(&streamed, &expected, 1e-9) {
            panic!("{name}: the streamed windows differ from DataFusion's batch answer:\n{diff}");
        }
    }
}

fn mem_table(rows: &[Row]) -> MemTable {
    let schema = Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, true),
        Field::new("temp", DataType::Float64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(rows.iter().map(|r| Some(r.device)).collect::<StringArray>()),
            Arc::new(rows.iter().map(|r| r.temp).collect::<Float64Array>()),
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.ts))
                    .collect::<TimestampMillisecondArray>(),
            ),
        ],
    )
    .expect("a batch of the rows");
    MemTable::try_new(schema, vec![vec![batch]]).expect("a table of the rows")
}
