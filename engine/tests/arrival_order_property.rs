//! Properties (proptest) over random readings (4 devices, a minute of event time, temperatures in
//! quarter degrees so that sums are exact whatever the order), each arriving up to 2 s late (the
//! bound), in batches of random size, with the watermark after each batch:
//! - every query kind gives the rows it gives when all readings arrive at once;
//! - a checkpoint taken at any point and restored into a freshly planned query changes no row.

mod common;

use datafusion::arrow::array::RecordBatch;
use eddy_engine::checkpoint::{StateReader, StateWriter};
use eddy_engine::message::Message;
use proptest::prelude::*;

const QUERIES: &[&str] = &[
    "SELECT device_id, window_start, avg(temp) AS a, max(temp) AS m, count(*) AS n
     FROM TUMBLE(readings, ts, INTERVAL '5' SECOND) GROUP BY device_id, window_start, window_end",
    "SELECT device_id, window_start, sum(temp) AS s, min(temp) AS lo
     FROM HOP(readings, ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND) GROUP BY device_id, window_start, window_end",
    "SELECT device_id, window_start, window_end, count(*) AS n, sum(temp) AS s
     FROM SESSION(readings, ts, INTERVAL '3' SECOND) GROUP BY device_id, window_start, window_end",
    "SELECT device_id, ts, sum(temp) OVER (PARTITION BY device_id ORDER BY ts
       ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) AS s4 FROM readings",
    "SELECT a.device_id, a.ts, b.ts AS later FROM readings a JOIN readings b
     ON a.device_id = b.device_id AND b.ts BETWEEN a.ts + INTERVAL '1' MILLISECOND AND a.ts + INTERVAL '2' SECOND",
    "SELECT * FROM readings MATCH_RECOGNIZE (PARTITION BY device_id ORDER BY ts
       MEASURES FIRST(A.ts) AS s, LAST(B.ts) AS e, COUNT(B.*) AS n
       AFTER MATCH SKIP PAST LAST ROW PATTERN (A B+) DEFINE B AS B.temp > PREV(B.temp))",
    "SELECT * FROM readings MATCH_RECOGNIZE (PARTITION BY device_id ORDER BY ts
       MEASURES CLASSIFIER() AS c, COUNT(*) AS n, NEXT(LAST(B.temp)) AS after
       ALL ROWS PER MATCH WITH UNMATCHED ROWS
       AFTER MATCH SKIP PAST LAST ROW PATTERN (A B+) DEFINE B AS B.temp > PREV(B.temp))",
    "SELECT device_id, ts, LEAD(temp, 2) OVER (PARTITION BY device_id ORDER BY ts) AS lead2,
       avg(temp) OVER (PARTITION BY device_id ORDER BY ts
         RANGE BETWEEN INTERVAL '1' SECOND PRECEDING AND INTERVAL '1' SECOND FOLLOWING) AS around
     FROM readings",
    "SELECT a.device_id, a.ts, b.ts AS later FROM readings a FULL JOIN readings b
     ON a.device_id = b.device_id AND b.ts BETWEEN a.ts + INTERVAL '1' MILLISECOND AND a.ts + INTERVAL '1' SECOND
     AND b.temp > a.temp + 5",
    "SELECT a.device_id, a.window_start, a.n, b.ts
     FROM (SELECT device_id, window_start, window_end, count(*) AS n
           FROM TUMBLE(readings, ts, INTERVAL '5' SECOND) GROUP BY device_id, window_start, window_end) a
     FULL JOIN (SELECT * FROM TABLE(TUMBLE(TABLE readings, DESCRIPTOR(ts), INTERVAL '5' SECOND)) WHERE temp > 75) b
     ON a.device_id = b.device_id AND a.window_start = b.window_start AND a.window_end = b.window_end AND a.n > 3",
    "SELECT device_id, ts, temp, window_start, window_end FROM TABLE(
       SESSION(TABLE readings PARTITION BY device_id, DESCRIPTOR(ts), INTERVAL '2' SECOND))",
    "SELECT * FROM (SELECT device_id, ts, temp, window_start,
         ROW_NUMBER() OVER (PARTITION BY window_start, window_end, device_id ORDER BY ts) AS n
       FROM TABLE(HOP(TABLE readings, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '6' SECOND))) WHERE n = 1",
    "SELECT device_id, ts, avg(temp) OVER (PARTITION BY device_id ORDER BY ts
       ROWS BETWEEN 3 PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW) AS avg_before FROM readings",
    "SELECT window_start, device_id, count(*) AS n FROM TUMBLE(readings, ts, INTERVAL '5' SECOND)
     GROUP BY window_start, window_end, CUBE (device_id)",
];

const T0: i64 = 1_767_225_600_000;
const BOUND: i64 = 2_000;

fn batch(rows: &[(u8, i64, u8)]) -> RecordBatch {
    common::readings(
        rows.iter().map(|r| format!("d{}", r.0)).collect(),
        rows.iter().map(|r| 60.0 + r.2 as f64 / 4.0).collect(),
        rows.iter().map(|r| T0 + r.1).collect(),
    )
}

/// Every output row as text, sorted: the same rows in any order compare equal.
fn sorted_rows(out: &[Message]) -> Vec<String> {
    let mut rows = common::rows_as_text(out, false);
    rows.sort();
    rows
}

/// Runs `select` over the readings delivered in `batches`, each followed by the watermark the
/// source would send (the newest event time so far minus the bound), then the end.
fn run(
    runtime: &tokio::runtime::Runtime,
    select: &str,
    batches: &[Vec<(u8, i64, u8)>],
) -> Vec<String> {
    run_restored_at(runtime, select, batches, None)
}

/// [`run`], with the query checkpointed after batch `cut` (before its watermark) and restored
/// into a freshly planned one that goes on.
fn run_restored_at(
    runtime: &tokio::runtime::Runtime,
    select: &str,
    batches: &[Vec<(u8, i64, u8)>],
    cut: Option<usize>,
) -> Vec<String> {
    let mut query = runtime.block_on(common::plan_readings_query(select));
    let mut out = Vec::new();
    let mut newest = i64::MIN;
    for (i, rows) in batches.iter().enumerate() {
        newest = newest.max(rows.iter().map(|r| T0 + r.1).max().unwrap_or(i64::MIN));
        for input in 0..query.inputs.len() {
            query
                .pipeline
                .push(input, Message::Batch(batch(rows)), &mut out)
                .expect("the pipeline runs");
        }
        if cut == Some(i) {
            let mut state = StateWriter::new();
            query.pipeline.snapshot(&mut state).expect("snapshot");
            let bytes = state.encode().expect("encode");
            query = runtime.block_on(common::plan_readings_query(select));
            let mut reader = StateReader::decode(&bytes).expect("decode");
            query.pipeline.restore(&mut reader).expect("restore");
            reader.finish().expect("every part read");
        }
        for input in 0..query.inputs.len() {
            query
                .pipeline
                .push(input, Message::Watermark(newest - BOUND), &mut out)
                .expect("the pipeline runs");
        }
    }
    for input in 0..query.inputs.len() {
        query
            .pipeline
            .push(input, Message::End, &mut out)
            .expect("the pipeline runs");
    }
    sorted_rows(&out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_arrival_order_within_the_bound_gives_the_same_rows(
        readings in prop::collection::vec((0u8..4, 0i64..60_000, 0u8..80, 0i64..BOUND), 1..250),
        batch_size in 1usize..40,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        let rows: Vec<(u8, i64, u8)> = readings.iter().map(|&(d, t, v, _)| (d, t, v)).collect();
        // Arrival: each reading at its event time plus its delay (less than the bound).
        let mut arriving: Vec<(i64, usize)> = readings
            .iter()
            .enumerate()
            .map(|(i, &(_, t, _, delay))| (t + delay, i))
            .collect();
        arriving.sort();
        let in_arrival_order: Vec<(u8, i64, u8)> = arriving.iter().map(|&(_, i)| rows[i]).collect();
        let batches: Vec<Vec<(u8, i64, u8)>> =
            in_arrival_order.chunks(batch_size).map(<[_]>::to_vec).collect();
        for select in QUERIES {
            let at_once = run(&runtime, select, std::slice::from_ref(&rows));
            let arrived = run(&runtime, select, &batches);
            prop_assert_eq!(arrived, at_once, "{}", select);
        }
    }

    #[test]
    fn a_checkpoint_anywhere_restores_the_same_rows(
        readings in prop::collection::vec((0u8..4, 0i64..60_000, 0u8..80, 0i64..BOUND), 1..250),
        batch_size in 1usize..40,
        cut in 0usize..250,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        let mut arriving: Vec<(i64, (u8, i64, u8))> = readings
            .iter()
            .map(|&(d, t, v, delay)| (t + delay, (d, t, v)))
            .collect();
        arriving.sort();
        let rows: Vec<(u8, i64, u8)> = arriving.into_iter().map(|(_, r)| r).collect();
        let batches: Vec<Vec<(u8, i64, u8)>> = rows.chunks(batch_size).map(<[_]>::to_vec).collect();
        let cut = cut % batches.len();
        for select in QUERIES {
            let whole = run(&runtime, select, &batches);
            let restored = run_restored_at(&runtime, select, &batches, Some(cut));
            prop_assert_eq!(restored, whole, "{} restored after batch {}", select, cut);
        }
    }
}
