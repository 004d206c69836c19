//! A sink's `throttle`: at most one alert per key per interval, in event time. Two devices'
//! windows of 10 s over a minute of readings, throttled to one alert per device per 30 s: the
//! windows starting at 0 s and 30 s pass (computed here from the readings), the other eight are
//! suppressed; the plan shows the throttle; a key that is not a column is an error at its query.

mod common;

use std::collections::BTreeSet;

const T0: i64 = 1_767_225_600_000;

fn write_input(dir: &std::path::Path) {
    let mut lines = String::new();
    for s in 0..60 {
        for d in ["a", "b"] {
            lines.push_str(&format!(
                "{{\"device_id\":\"{d}\",\"temp\":{},\"ts\":{}}}\n",
                80 + s % 5,
                T0 + s * 1000
            ));
        }
    }
    std::fs::write(dir.join("input.jsonl"), lines).expect("input");
}

const QUERY: &str = "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                                WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH (connector = 'file', path = 'input.jsonl');
CREATE SINK alerts WITH (connector = 'file', path = 'alerts.jsonl', mode = 'truncate',
                         throttle = '30 seconds');
INSERT INTO alerts
SELECT device_id, window_start, count(*) AS n
FROM TUMBLE(readings, ts, INTERVAL '10' SECOND)
GROUP BY device_id, window_start, window_end;
";

#[test]
fn one_alert_per_device_per_interval() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_input(dir.path());
    std::fs::write(dir.path().join("q.sql"), QUERY).expect("query");
    let check = common::run_eddy(dir.path(), &["check", "q.sql"], &[]);
    let plan = String::from_utf8_lossy(&check.stdout);
    assert!(
        plan.contains("throttle: one alert per device_id per 30s"),
        "{plan}"
    );

    let run = common::run_eddy(dir.path(), &["run", "q.sql", "--quiet", "--stats"], &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let got: BTreeSet<(String, i64, i64)> =
        common::windows::read_alerts(&dir.path().join("alerts.jsonl"))
            .iter()
            .map(|a| {
                let text = a["window_start"].as_str().expect("window_start");
                let start = chrono::DateTime::parse_from_rfc3339(text)
                    .map(|t| t.timestamp_millis())
                    .or_else(|_| {
                        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                            .map(|t| t.and_utc().timestamp_millis())
                    })
                    .unwrap_or_else(|e| panic!("{text}: {e}"));
                (
                    a["device_id"].as_str().expect("device").to_string(),
                    (start - T0) / 1000,
                    a["n"].as_i64().expect("n"),
                )
            })
            .collect();
    let expected: BTreeSet<(String, i64, i64)> = ["a", "b"]
        .iter()
        .flat_map(|d| [(d.to_string(), 0, 10), (d.to_string(), 30, 10)])
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn a_throttle_key_that_is_not_a_column_is_an_error_at_its_query() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_input(dir.path());
    std::fs::write(
        dir.path().join("q.sql"),
        QUERY.replace(
            "throttle = '30 seconds'",
            "throttle = '30 seconds', throttle_key = 'machine'",
        ),
    )
    .expect("query");
    let check = common::run_eddy(dir.path(), &["check", "q.sql"], &[]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success());
    assert!(
        stderr.contains("q.sql:6:1: throttle_key of sink 'alerts' names 'machine', but the query's columns are: device_id, window_start, n"),
        "{stderr}"
    );
}
