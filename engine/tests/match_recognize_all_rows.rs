//! ALL ROWS PER MATCH WITH UNMATCHED ROWS over random readings, checked against the standard's
//! definitions worked out directly for the pattern `A B+` (any reading, then readings each above
//! the one before, as many as there are): each match's rows with their classifier, match number,
//! running and final counts and PREV (which reads the partition, before the match too); every
//! reading no match maps once, with NULL measures.

mod common;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int64Type, TimestampMillisecondType};
use eddy_engine::message::Message;

/// A row of the output: device, time, classifier, match number, running count, final count,
/// PREV(temp), temp.
type Row = (
    String,
    i64,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
);

const QUERY: &str =
    "SELECT device_id, ts, c, m, n, total, prev, temp FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id ORDER BY ts
    MEASURES CLASSIFIER() AS c, MATCH_NUMBER() AS m, COUNT(*) AS n, FINAL COUNT(*) AS total,
             PREV(temp) AS prev
    ALL ROWS PER MATCH WITH UNMATCHED ROWS
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (A B+)
    DEFINE B AS temp > PREV(temp))";

/// The rows the standard gives for one device's temperatures (a reading a second).
fn expected(device: &str, temps: &[i64]) -> Vec<Row> {
    let mut out = Vec::new();
    let prev = |i: usize| (i > 0).then(|| temps[i - 1]);
    let (mut start, mut number) = (0, 0);
    while start < temps.len() {
        // B+ is greedy: as many rising readings after A as there are; at least one.
        let mut end = start + 1;
        while end < temps.len() && temps[end] > temps[end - 1] {
            end += 1;
        }
        if end - start < 2 {
            out.push((
                device.into(),
                start as i64 * 1_000,
                None,
                None,
                None,
                None,
                None,
                temps[start],
            ));
            start += 1;
            continue;
        }
        number += 1;
        for (i, &temp) in temps.iter().enumerate().take(end).skip(start) {
            let var = if i == start { "A" } else { "B" };
            let running = (i - start + 1) as i64;
            let total = (end - start) as i64;
            out.push((
                device.into(),
                i as i64 * 1_000,
                Some(var.into()),
                Some(number),
                Some(running),
                Some(total),
                prev(i),
                temp,
            ));
        }
        start = end;
    }
    out
}

fn rows(out: &[Message]) -> Vec<Row> {
    let mut rows = Vec::new();
    for m in out {
        let Message::Batch(b) = m else { continue };
        let device = b.column(0).as_string::<i32>();
        let ts = b.column(1).as_primitive::<TimestampMillisecondType>();
        let c = b.column(2).as_string::<i32>();
        let int = |k: usize, i: usize| {
            let a = b.column(k).as_primitive::<Int64Type>();
            a.is_valid(i).then(|| a.value(i))
        };
        let float = |k: usize, i: usize| {
            let a = b.column(k).as_primitive::<Float64Type>();
            a.is_valid(i).then(|| a.value(i) as i64)
        };
        for i in 0..b.num_rows() {
            rows.push((
                device.value(i).to_string(),
                ts.value(i),
                c.is_valid(i).then(|| c.value(i).to_string()),
                int(3, i),
                int(4, i),
                int(5, i),
                float(6, i),
                float(7, i).unwrap_or(i64::MIN),
            ));
        }
    }
    rows.sort();
    rows
}

#[tokio::test]
async fn all_rows_with_unmatched_rows_follow_the_standard() {
    let mut seed = 5u64;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    for case in 0..200 {
        let devices = ["d0", "d1", "d2"];
        let temps: Vec<Vec<i64>> = devices
            .iter()
            .map(|_| (0..next(12)).map(|_| next(5) as i64).collect())
            .collect();
        let (mut ids, mut values, mut times) = (Vec::new(), Vec::new(), Vec::new());
        // In event-time order across the devices.
        for i in 0..12 {
            for (d, ts) in devices.iter().zip(&temps) {
                if let Some(t) = ts.get(i) {
                    ids.push(d.to_string());
                    values.push(*t as f64);
                    times.push(i as i64 * 1_000);
                }
            }
        }
        let mut query = common::plan_readings_query(QUERY).await;
        let mut out = Vec::new();
        // In batches of a few readings, each followed by the watermark it allows.
        let mut at = 0;
        while at < ids.len() {
            let to = (at + 1 + next(4) as usize).min(ids.len());
            let batch = common::readings(
                ids[at..to].to_vec(),
                values[at..to].to_vec(),
                times[at..to].to_vec(),
            );
            let watermark = times[at..to].iter().max().copied().unwrap_or(0) - 2_000;
            for message in [Message::Batch(batch), Message::Watermark(watermark)] {
                query.pipeline.push(0, message, &mut out).expect("runs");
            }
            at = to;
        }
        query
            .pipeline
            .push(0, Message::End, &mut out)
            .expect("runs");
        let mut want: Vec<Row> = devices
            .iter()
            .zip(&temps)
            .flat_map(|(d, ts)| expected(d, ts))
            .collect();
        want.sort();
        assert_eq!(rows(&out), want, "case {case}: temperatures {temps:?}");
    }
}
