//! State stays bounded on a long stream whose devices come and go: every minute a new set of
//! devices reports once a second and the previous set goes quiet for good. Windows fire, sessions
//! close, join sides and moving-aggregate keys are released, so what an hour leaves in state is no
//! more than what ten minutes do, in rows and in bytes. (MATCH_RECOGNIZE keeps each partition's PREV history whatever
//! the watermark: there it is `--key-idle-timeout` that releases the devices gone quiet.)

mod common;

use datafusion::arrow::array::RecordBatch;
use eddy_engine::message::Message;

const QUERIES: [(&str, &str); 6] = [
    (
        "tumble",
        "SELECT device_id, window_start, avg(temp) AS a FROM TUMBLE(readings, ts, INTERVAL '10' SECOND) GROUP BY device_id, window_start, window_end",
    ),
    (
        "hop",
        "SELECT device_id, window_start, max(temp) AS m FROM HOP(readings, ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE) GROUP BY device_id, window_start, window_end",
    ),
    (
        "session",
        "SELECT device_id, window_start, count(*) AS n FROM SESSION(readings, ts, INTERVAL '30' SECOND) GROUP BY device_id, window_start, window_end",
    ),
    (
        "over range",
        "SELECT device_id, ts, avg(temp) OVER (PARTITION BY device_id ORDER BY ts RANGE BETWEEN INTERVAL '20' SECOND PRECEDING AND CURRENT ROW) AS a FROM readings",
    ),
    (
        "match_recognize",
        "SELECT * FROM readings MATCH_RECOGNIZE (PARTITION BY device_id ORDER BY ts MEASURES LAST(B.ts) AS t ONE ROW PER MATCH AFTER MATCH SKIP PAST LAST ROW PATTERN (A B+ C) WITHIN INTERVAL '20' SECOND DEFINE B AS B.temp > 25, C AS C.temp > 100)",
    ),
    (
        "interval join",
        "SELECT a.device_id, a.ts, b.ts AS later FROM readings a JOIN readings b ON a.device_id = b.device_id AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '5' SECOND",
    ),
];

const T0: i64 = 1_767_225_600_000;
const BOUND_MS: i64 = 2_000;

/// One second of readings: the 100 devices of the current minute, each once, out of order
/// within the second.
fn second(s: i64) -> RecordBatch {
    let minute = s / 60;
    let ids: Vec<String> = (0..100).map(|k| format!("m{minute}-{k}")).collect();
    let ts: Vec<i64> = (0..100)
        .map(|k| T0 + s * 1_000 + (k * 7_919 % 1_000))
        .collect();
    let temps: Vec<f64> = (0..100).map(|k| 20.0 + (k % 13) as f64).collect();
    common::readings(ids, temps, ts)
}

#[tokio::test]
async fn state_does_not_grow_with_devices_that_went_quiet() {
    for (name, select) in QUERIES {
        let mut query = common::plan_readings_query(select).await;
        let inputs = query.inputs.len();
        let mut out = Vec::new();
        let (mut early, mut late) = (0usize, 0usize);
        let (mut early_bytes, mut late_bytes) = (0usize, 0usize);
        for s in 0..3_600i64 {
            let watermark = T0 + s * 1_000 + 999 - BOUND_MS;
            for input in 0..inputs {
                query
                    .pipeline
                    .push(input, Message::Batch(second(s)), &mut out)
                    .expect("the pipeline runs");
                query
                    .pipeline
                    .push(input, Message::Watermark(watermark), &mut out)
                    .expect("the pipeline runs");
            }
            // `--key-idle-timeout 5min` for MATCH_RECOGNIZE only: the others release their
            // state by the watermark alone, and the test checks that they do.
            if name == "match_recognize" {
                query.pipeline.release_keys_idle_since(watermark - 300_000);
            }
            out.clear();
            let held = query.pipeline.state_rows();
            let bytes = query.pipeline.state_bytes();
            if (300..600).contains(&s) {
                early = early.max(held);
                early_bytes = early_bytes.max(bytes);
            }
            if s >= 3_300 {
                late = late.max(held);
                late_bytes = late_bytes.max(bytes);
            }
        }
        assert!(early > 0, "{name}: no state at all?");
        assert!(
            early_bytes >= early * 8,
            "{name}: {early} rows of state measured as {early_bytes} bytes"
        );
        assert!(
            late_bytes <= early_bytes + early_bytes / 2,
            "{name}: state grew from {early_bytes} bytes (minutes 5-10) to {late_bytes} (minutes 55-60) though 5,400 devices had gone quiet"
        );
        assert!(
            late <= early + early / 2,
            "{name}: state grew from {early} (minutes 5-10) to {late} (minutes 55-60) though 5,400 devices had gone quiet"
        );
    }
}
