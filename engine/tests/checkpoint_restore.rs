//! A query restored from a checkpoint goes on exactly as if it had never stopped: every query
//! kind (tumbling, hopping and cumulating windows, sessions, OVER frames and window functions,
//! window Top-N, interval joins, UNION ALL, MATCH_RECOGNIZE) runs over out-of-order readings once without interruption, and once with its
//! state written, encoded, decoded and restored into a freshly planned pipeline every few
//! batches. Both runs must give the same rows. (The same input also checks that releasing idle
//! keys leaves the keys that keep reporting alone.)

mod common;

use datafusion::arrow::array::RecordBatch;
use eddy_engine::checkpoint::{StateReader, StateWriter};
use eddy_engine::message::Message;
use eddy_engine::plan::PlannedQuery;

const QUERIES: &[(&str, &str)] = &[
    (
        "tumble",
        "SELECT device_id, window_start, avg(temp) AS a, max(temp) AS m, count(*) AS n, approx_percentile_cont(temp, 0.9) AS p90
         FROM TUMBLE(readings, ts, INTERVAL '10' SECOND) GROUP BY device_id, window_start, window_end",
    ),
    (
        "tumble without keys",
        "SELECT window_start, count(*) AS n, sum(temp) AS s FROM TUMBLE(readings, ts, INTERVAL '5' SECOND)
         WHERE temp > 65 GROUP BY window_start, window_end",
    ),
    (
        "hop",
        "SELECT device_id, window_start, window_end, avg(temp) AS a, min(temp) AS lo, count(DISTINCT temp) AS d
         FROM HOP(readings, ts, INTERVAL '4' SECOND, INTERVAL '30' SECOND) GROUP BY device_id, window_start, window_end",
    ),
    (
        "session",
        "SELECT device_id, window_start, window_end, count(*) AS n, avg(temp) AS a
         FROM SESSION(readings, ts, INTERVAL '1500' MILLISECOND) GROUP BY device_id, window_start, window_end",
    ),
    (
        "over",
        "SELECT device_id, ts,
           avg(temp) OVER (PARTITION BY device_id ORDER BY ts ROWS BETWEEN 4 PRECEDING AND CURRENT ROW) AS avg5,
           max(temp) OVER (PARTITION BY device_id ORDER BY ts RANGE BETWEEN INTERVAL '20' SECOND PRECEDING AND CURRENT ROW) AS max20,
           sum(temp) OVER (PARTITION BY device_id ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS total
         FROM readings",
    ),
    (
        "over window functions",
        "SELECT device_id, ts,
           LAG(temp, 2, 0.0) OVER (PARTITION BY device_id ORDER BY ts) AS lag2,
           ROW_NUMBER() OVER (PARTITION BY device_id ORDER BY ts) AS n,
           RANK() OVER (PARTITION BY device_id ORDER BY ts) AS r,
           DENSE_RANK() OVER (PARTITION BY device_id ORDER BY ts) AS dr,
           FIRST_VALUE(temp) OVER (PARTITION BY device_id ORDER BY ts ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) AS first4,
           FIRST_VALUE(temp) OVER (PARTITION BY device_id ORDER BY ts) AS first_ever,
           LAST_VALUE(temp) OVER (PARTITION BY device_id ORDER BY ts) AS last,
           count(*) FILTER (WHERE temp > 65) OVER (PARTITION BY device_id ORDER BY ts ROWS BETWEEN 5 PRECEDING AND CURRENT ROW) AS warm6
         FROM readings",
    ),
    (
        "over frames reaching ahead",
        "SELECT device_id, ts,
           LEAD(temp, 2, 0.0) OVER (PARTITION BY device_id ORDER BY ts) AS lead2,
           avg(temp) OVER (PARTITION BY device_id ORDER BY ts ROWS BETWEEN 2 PRECEDING AND 3 FOLLOWING) AS centred,
           max(temp) OVER (PARTITION BY device_id ORDER BY ts RANGE BETWEEN INTERVAL '1' SECOND PRECEDING AND INTERVAL '2' SECOND FOLLOWING) AS around,
           count(*) OVER (PARTITION BY device_id ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND 1 FOLLOWING) AS so_far,
           LAG(temp) OVER (PARTITION BY device_id ORDER BY ts) AS lag1,
           LAG(temp, 2) IGNORE NULLS OVER (PARTITION BY device_id ORDER BY ts) AS lag2_known
         FROM readings",
    ),
    (
        "over frames ending before the current row",
        "SELECT device_id, ts,
           avg(temp) OVER (PARTITION BY device_id ORDER BY ts ROWS BETWEEN 4 PRECEDING AND 2 PRECEDING) AS a,
           max(temp) OVER (PARTITION BY device_id ORDER BY ts ROWS BETWEEN 3 PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW) AS m,
           sum(temp) OVER (PARTITION BY device_id ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS s
         FROM readings",
    ),
    (
        "cumulate",
        "SELECT device_id, window_start, window_end, count(*) AS n, max(temp) AS m
         FROM CUMULATE(readings, ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND) GROUP BY device_id, window_start, window_end",
    ),
    (
        "hop with an offset",
        "SELECT device_id, window_start, window_end, count(*) AS n, avg(temp) AS a
         FROM HOP(readings, ts, INTERVAL '3' SECOND, INTERVAL '9' SECOND, INTERVAL '1300' MILLISECOND)
         GROUP BY device_id, window_start, window_end",
    ),
    (
        "window top-n",
        "SELECT * FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY hottest DESC, device_id) AS rownum
           FROM (SELECT window_start, window_end, device_id, max(temp) AS hottest
                 FROM TUMBLE(readings, ts, INTERVAL '5' SECOND) GROUP BY device_id, window_start, window_end))
         WHERE rownum <= 2",
    ),
    (
        "window top-n over hop rows",
        "SELECT * FROM (
           SELECT device_id, ts, temp, window_start, window_end,
             ROW_NUMBER() OVER (PARTITION BY window_start, window_end, device_id ORDER BY temp DESC, ts) AS rownum
           FROM TABLE(HOP(TABLE readings, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '6' SECOND)))
         WHERE rownum <= 2",
    ),
    (
        "session rows",
        "SELECT device_id, ts, temp, window_start, window_end, window_time
         FROM TABLE(SESSION(TABLE readings PARTITION BY device_id, DESCRIPTOR(ts), INTERVAL '150' MILLISECOND))",
    ),
    (
        "grouping sets",
        "SELECT window_start, device_id, GROUPING(device_id) AS g, count(*) AS n, max(temp) AS m
         FROM TUMBLE(readings, ts, INTERVAL '5' SECOND) GROUP BY window_start, window_end, ROLLUP (device_id)",
    ),
    (
        "window join",
        "SELECT a.device_id, a.window_start, a.n, b.ts, b.temp
         FROM (SELECT device_id, window_start, window_end, count(*) AS n
                 FROM TUMBLE(readings, ts, INTERVAL '2' SECOND) GROUP BY device_id, window_start, window_end) a
         FULL JOIN (SELECT device_id, ts, temp, window_start, window_end
                      FROM TUMBLE(readings, ts, INTERVAL '2' SECOND) WHERE temp > 74) b
           ON a.device_id = b.device_id AND a.window_start = b.window_start AND a.window_end = b.window_end
              AND a.n > 9",
    ),
    (
        "interval join",
        "SELECT a.device_id, a.ts, b.ts AS later, b.temp - a.temp AS rise
         FROM readings a JOIN readings b ON a.device_id = b.device_id
           AND b.ts BETWEEN a.ts + INTERVAL '1' MILLISECOND AND a.ts + INTERVAL '3' SECOND
         WHERE b.temp > a.temp + 5",
    ),
    (
        "full interval join",
        "SELECT a.device_id, a.ts, b.ts AS later, b.temp - a.temp AS rise
         FROM (SELECT * FROM readings WHERE temp > 72) a FULL JOIN (SELECT * FROM readings WHERE temp < 62) b
           ON a.device_id = b.device_id
           AND b.ts BETWEEN a.ts - INTERVAL '1' SECOND AND a.ts + INTERVAL '2' SECOND",
    ),
    (
        "union",
        "SELECT device_id, ts, temp FROM readings WHERE temp > 70
         UNION ALL SELECT device_id, ts, temp FROM readings WHERE temp < 62",
    ),
    (
        "match_recognize",
        "SELECT * FROM readings MATCH_RECOGNIZE (
           PARTITION BY device_id ORDER BY ts
           MEASURES FIRST(A.ts) AS start_ts, LAST(C.ts) AS end_ts, AVG(B.temp) AS avg_b, MATCH_NUMBER() AS n
           AFTER MATCH SKIP TO NEXT ROW
           PATTERN (A B+ C) WITHIN INTERVAL '8' SECOND
           DEFINE B AS B.temp > PREV(B.temp), C AS C.temp > A.temp + 4)",
    ),
    (
        "match_recognize reluctant",
        "SELECT * FROM readings MATCH_RECOGNIZE (
           PARTITION BY device_id ORDER BY ts
           MEASURES COUNT(*) AS rows, MAX(H.temp) AS hottest, CLASSIFIER() AS last_var
           AFTER MATCH SKIP PAST LAST ROW
           PATTERN (H{2,} ?C)
           DEFINE H AS H.temp > 68, C AS C.temp < 66)",
    ),
    (
        "match_recognize all rows per match with unmatched rows",
        "SELECT * FROM readings MATCH_RECOGNIZE (
           PARTITION BY device_id ORDER BY ts
           MEASURES MATCH_NUMBER() AS n, CLASSIFIER() AS var, COUNT(*) AS so_far,
                    FINAL MAX(R.temp) AS peak, NEXT(LAST(R.temp)) AS after
           ALL ROWS PER MATCH WITH UNMATCHED ROWS
           AFTER MATCH SKIP PAST LAST ROW
           PATTERN (S R{2,})
           DEFINE S AS S.temp < 68, R AS R.temp > PREV(R.temp))",
    ),
    (
        "match_recognize all rows per match, exclusions and SUBSET",
        "SELECT * FROM readings MATCH_RECOGNIZE (
           PARTITION BY device_id ORDER BY ts
           MEASURES CLASSIFIER() AS var, COUNT(U.*) AS u_rows, FINAL LAST(U.temp) AS last_u
           ALL ROWS PER MATCH
           AFTER MATCH SKIP TO NEXT ROW
           PATTERN (S {- F -}+ R+)
           SUBSET U = (F, R)
           DEFINE F AS F.temp < PREV(F.temp), R AS R.temp > PREV(R.temp))",
    ),
    (
        "match_recognize all rows per match, empty matches",
        "SELECT * FROM readings MATCH_RECOGNIZE (
           PARTITION BY device_id ORDER BY ts
           MEASURES MATCH_NUMBER() AS n, RUNNING AVG(R.temp) AS avg_so_far
           ALL ROWS PER MATCH SHOW EMPTY MATCHES
           PATTERN (R*)
           DEFINE R AS R.temp > PREV(R.temp))",
    ),
    (
        "match_recognize navigation outside the match",
        "SELECT * FROM readings MATCH_RECOGNIZE (
           PARTITION BY device_id ORDER BY ts
           MEASURES PREV(FIRST(U.temp), 2) AS before, NEXT(LAST(U.temp), 3) AS after,
                    NEXT(FIRST(U.ts, 1)) AS second_next, MATCH_NUMBER() AS n
           AFTER MATCH SKIP PAST LAST ROW
           PATTERN (U{2,})
           DEFINE U AS U.temp > PREV(LAST(U.temp)) OR PREV(U.temp, 2) IS NULL)",
    ),
];

const T0: i64 = 1_767_225_600_000;
const BOUND_MS: i64 = 2_000;

/// A deterministic generator: repeatable inputs.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// Batches of readings (6 devices, about 5 a second each, up to 1.5 s out of order), each with
/// the watermark after it.
fn input() -> Vec<(RecordBatch, i64)> {
    let mut rng = Lcg(7);
    let mut batches = Vec::new();
    let mut newest = 0;
    for b in 0..240i64 {
        let n = 1 + (rng.next() % 13) as usize;
        let mut ids = Vec::new();
        let mut temps = Vec::new();
        let mut ts = Vec::new();
        for _ in 0..n {
            let d = rng.next() % 6;
            let t = T0 + b * 250 - (rng.next() % 1_500) as i64;
            ids.push(format!("d{d}"));
            temps.push(60.0 + (rng.next() % 1_600) as f64 / 100.0);
            ts.push(t.max(newest - BOUND_MS));
        }
        newest = newest.max(ts.iter().copied().max().unwrap_or(0));
        let batch = common::readings(ids, temps, ts);
        batches.push((batch, newest - BOUND_MS));
    }
    batches
}

async fn plan(select: &str) -> PlannedQuery {
    common::plan_readings_query(select).await
}

/// Output rows as text, floats to 9 significant digits (a frame's sum rebuilt on restore may
/// differ from the slid one in the last bits).
fn lines(out: &[Message]) -> Vec<String> {
    common::rows_as_text(out, true)
}

/// The first difference, if any, rather than two long lists.
fn same(got: &[String], expected: &[String], what: &str) {
    if let Some(i) = (0..got.len().max(expected.len())).find(|&i| got.get(i) != expected.get(i)) {
        panic!(
            "{what}: row {i} of {} (expected {}) is {:?}, expected {:?}",
            got.len(),
            expected.len(),
            got.get(i),
            expected.get(i)
        );
    }
}

fn push_all(query: &mut PlannedQuery, message: Message, out: &mut Vec<Message>) {
    for input in 0..query.inputs.len() {
        query
            .pipeline
            .push(input, message.clone(), out)
            .expect("the pipeline runs");
    }
}

#[tokio::test]
async fn a_restored_query_gives_the_rows_of_an_uninterrupted_one() {
    let input = input();
    for &(name, select) in QUERIES {
        let mut whole = plan(select).await;
        let mut expected = Vec::new();
        for (batch, watermark) in &input {
            push_all(&mut whole, Message::Batch(batch.clone()), &mut expected);
            push_all(&mut whole, Message::Watermark(*watermark), &mut expected);
        }
        push_all(&mut whole, Message::End, &mut expected);
        let expected = lines(&expected);
        assert!(expected.len() > 5, "{name}: only {} rows", expected.len());

        for every in [7, 31] {
            let mut query = plan(select).await;
            let mut got = Vec::new();
            for (i, (batch, watermark)) in input.iter().enumerate() {
                push_all(&mut query, Message::Batch(batch.clone()), &mut got);
                if i % every == every - 1 {
                    // A checkpoint between a batch and its watermark: rows are held.
                    let mut state = StateWriter::new();
                    query.pipeline.snapshot(&mut state).expect("snapshot");
                    let bytes = state.encode().expect("encode");
                    // The snapshot leaves the running query as it was: both go on.
                    let mut restored = plan(select).await;
                    let mut reader = StateReader::decode(&bytes).expect("decode");
                    restored.pipeline.restore(&mut reader).expect("restore");
                    reader.finish().expect("every part read");
                    query = restored;
                }
                push_all(&mut query, Message::Watermark(*watermark), &mut got);
            }
            push_all(&mut query, Message::End, &mut got);
            same(
                &lines(&got),
                &expected,
                &format!("{name}, restored every {every} batches"),
            );
        }
    }
}

/// Runs each query twice over the same input, once as it is and once with `between` applied to
/// it after each batch (and, with `after_watermark`, after the batch's watermark): both must
/// give the same rows.
async fn side_by_side(after_watermark: bool, between: impl Fn(&mut PlannedQuery, i64)) {
    let input = input();
    for &(name, select) in QUERIES {
        let mut whole = plan(select).await;
        let mut expected = Vec::new();
        let mut query = plan(select).await;
        let mut got = Vec::new();
        for (batch, watermark) in &input {
            for (q, out) in [(&mut whole, &mut expected), (&mut query, &mut got)] {
                push_all(q, Message::Batch(batch.clone()), out);
            }
            if !after_watermark {
                between(&mut query, *watermark);
            }
            for (q, out) in [(&mut whole, &mut expected), (&mut query, &mut got)] {
                push_all(q, Message::Watermark(*watermark), out);
            }
            if after_watermark {
                between(&mut query, *watermark);
            }
        }
        push_all(&mut whole, Message::End, &mut expected);
        push_all(&mut query, Message::End, &mut got);
        same(&lines(&got), &lines(&expected), name);
    }
}

#[tokio::test]
async fn a_snapshot_does_not_disturb_the_query_that_took_it() {
    side_by_side(false, |query, _| {
        query
            .pipeline
            .snapshot(&mut StateWriter::new())
            .expect("snapshot");
    })
    .await;
}

/// `--key-idle-timeout` releases only keys gone quiet: with every device reporting every few
/// seconds, releasing keys idle for 5 s after each watermark changes no row.
#[tokio::test]
async fn releasing_idle_keys_leaves_active_ones_alone() {
    side_by_side(true, |query, watermark| {
        query.pipeline.release_keys_idle_since(watermark - 5_000);
    })
    .await;
}

/// The fingerprint of the plan of `INSERT INTO out {select}` over the readings: what a
/// checkpoint must have been taken for to be restored.
async fn fingerprint(select: &str) -> String {
    let sql = format!(
        "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) WITH (connector = 'driven');
         CREATE SINK out WITH (connector = 'driven');
         INSERT INTO out {select};"
    );
    eddy_engine::Planner::new("readings.sql", &common::driven())
        .plan(&sql)
        .await
        .unwrap_or_else(|d| panic!("{d}"))
        .fingerprint()
}

/// A new version of a query goes on from the old one's checkpoint when what keeps state is the
/// same: a condition (`WHERE`, `HAVING`) or the columns selected may change; a window, an
/// aggregate or a key may not.
#[tokio::test]
async fn the_fingerprint_follows_the_state_not_the_conditions_or_columns() {
    let base = "SELECT device_id, window_start, avg(temp) AS a FROM TUMBLE(readings, ts, INTERVAL '10' SECOND)
         WHERE temp > 65 GROUP BY device_id, window_start, window_end HAVING avg(temp) > 70";
    let original = fingerprint(base).await;
    for (from, to) in [
        ("temp > 65", "temp > 60"),
        ("avg(temp) > 70", "avg(temp) > 75"),
        ("AS a FROM", "AS average FROM"),
        (
            "device_id, window_start, avg",
            "window_start, device_id, avg",
        ),
    ] {
        assert_eq!(
            fingerprint(&base.replace(from, to)).await,
            original,
            "{from} -> {to} keeps the state"
        );
    }
    for (from, to) in [
        ("INTERVAL '10' SECOND", "INTERVAL '20' SECOND"),
        ("avg(temp) AS a", "max(temp) AS a"),
        ("GROUP BY device_id, ", "GROUP BY "),
    ] {
        let changed = base
            .replace(from, to)
            .replace("SELECT device_id, ", "SELECT ");
        let changed = if from.starts_with("GROUP") {
            changed
        } else {
            base.replace(from, to)
        };
        assert_ne!(
            fingerprint(&changed).await,
            original,
            "{from} -> {to} changes the state"
        );
    }
}
