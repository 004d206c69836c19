//! What MATCH_RECOGNIZE outputs is never late for the operators after it: a match is decided
//! (or its `NEXT` rows arrive, or a row turns out unmatched) after the watermark has passed its
//! rows, so the operator holds its watermark back to the earliest row it may still output. Every
//! output row's event time must be at or after the watermark passed on before it.

mod common;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::TimestampMillisecondType;
use eddy_engine::message::Message;

const QUERIES: &[(&str, &str)] = &[
    (
        "one row per match, greedy (decided rows after its last row)",
        "SELECT * FROM readings MATCH_RECOGNIZE (
           PARTITION BY device_id ORDER BY ts
           MEASURES COUNT(*) AS n
           PATTERN (R+ F?)
           DEFINE R AS R.temp > PREV(R.temp), F AS F.temp < 0)",
    ),
    (
        "one row per match reading NEXT rows",
        "SELECT * FROM readings MATCH_RECOGNIZE (
           PARTITION BY device_id ORDER BY ts
           MEASURES NEXT(LAST(R.temp), 4) AS later
           PATTERN (R R)
           DEFINE R AS R.temp > PREV(R.temp))",
    ),
    (
        "all rows per match with unmatched rows",
        "SELECT * FROM readings MATCH_RECOGNIZE (
           PARTITION BY device_id ORDER BY ts
           MEASURES CLASSIFIER() AS var
           ALL ROWS PER MATCH WITH UNMATCHED ROWS
           PATTERN (R{3,})
           DEFINE R AS R.temp > PREV(R.temp))",
    ),
];

#[tokio::test]
async fn output_rows_are_not_older_than_the_watermark_passed_before_them() {
    // Rises of 2 to 6 readings, then a fall; one reading a second per device, one per batch.
    let temps: Vec<f64> = (0..120).map(|i| f64::from((i % 7) * 3 - (i % 5))).collect();
    for &(name, select) in QUERIES {
        let mut query = common::plan_readings_query(select).await;
        let mut out = Vec::new();
        for (i, t) in temps.iter().enumerate() {
            let ts = i as i64 * 1_000;
            let batch = common::readings(vec!["d1".into()], vec![*t], vec![ts]);
            query
                .pipeline
                .push(0, Message::Batch(batch), &mut out)
                .expect("runs");
            query
                .pipeline
                .push(0, Message::Watermark(ts - 2_000), &mut out)
                .expect("runs");
        }
        query
            .pipeline
            .push(0, Message::End, &mut out)
            .expect("runs");
        let mut watermark = i64::MIN;
        let mut rows = 0;
        for m in &out {
            match m {
                Message::Watermark(w) => {
                    assert!(*w >= watermark, "{name}: the watermark went back");
                    watermark = *w;
                }
                Message::Batch(b) => {
                    let times = b
                        .columns()
                        .last()
                        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
                        .expect("an event-time column");
                    for t in times.values().iter() {
                        assert!(
                            *t >= watermark,
                            "{name}: a row at {t} came after the watermark {watermark}"
                        );
                    }
                    rows += b.num_rows();
                }
                _ => {}
            }
        }
        assert!(rows > 10, "{name}: only {rows} rows");
    }
}
