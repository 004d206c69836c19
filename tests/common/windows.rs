//! The readings and windows the connector tests share: 4 devices (`m0`..`m3`), one reading a
//! second each from `T0`, counted and summed in tumbling windows of 10 s; the windows expected
//! are computed here, from the readings' formula, not by the engine.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// 2026-01-01T00:00:00Z
pub const T0: i64 = 1_767_225_600_000;

/// The query whose alerts [`windows_of`] reads: per device and window of 10 s, the count and sum
/// of the temperatures. Readings of devices other than `m*` (closing readings) are left out.
pub const QUERY_WINDOWS: &str = "INSERT INTO alerts
     SELECT device_id, window_start, count(*) AS n, sum(temp) AS total
     FROM TUMBLE(readings, ts, INTERVAL '10' SECOND)
     WHERE device_id LIKE 'm%'
     GROUP BY device_id, window_start, window_end;";

fn temp(d: i64, s: i64) -> i64 {
    20 + (s + d) % 7
}

/// The reading of device `d` at second `s`, as JSON.
pub fn reading(d: i64, s: i64) -> String {
    format!(
        r#"{{"device_id":"m{d}","temp":{},"ts":{}}}"#,
        temp(d, s),
        T0 + s * 1000
    )
}

/// The readings of the 4 devices at second `s`.
pub fn readings(s: i64) -> Vec<String> {
    (0..4).map(|d| reading(d, s)).collect()
}

/// A reading of device `x{n}` at second `at_second`: it moves the watermark past the windows
/// before it and is counted in none.
pub fn closing(n: i64, at_second: i64) -> String {
    format!(
        r#"{{"device_id":"x{n}","temp":0,"ts":{}}}"#,
        T0 + at_second * 1000
    )
}

/// (device, window start in seconds from T0) -> (count, sum of temperatures) of the readings of
/// seconds `0..seconds`.
pub fn expected_windows(seconds: i64) -> BTreeMap<(String, i64), (i64, i64)> {
    let mut w = BTreeMap::new();
    for s in 0..seconds {
        for d in 0..4i64 {
            let e = w.entry((format!("m{d}"), s / 10 * 10)).or_insert((0, 0));
            e.0 += 1;
            e.1 += temp(d, s);
        }
    }
    w
}

/// Alerts as JSON objects into (device, window start in seconds from T0) -> (n, total), failing
/// on an alert for a window seen already with other values (a window alerted again after a
/// restart must repeat its values).
pub fn windows_of(alerts: &[Value]) -> BTreeMap<(String, i64), (i64, i64)> {
    let mut w = BTreeMap::new();
    for a in alerts {
        let device = a["device_id"].as_str().expect("device_id").to_string();
        let start = match &a["window_start"] {
            Value::Number(n) => n.as_i64().expect("ms"),
            Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_millis())
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                        .map(|t| t.and_utc().timestamp_millis())
                })
                .expect("a time"),
            other => panic!("window_start {other}"),
        };
        let values = (
            a["n"].as_i64().expect("n"),
            a["total"].as_f64().expect("total") as i64,
        );
        let key = (device, (start - T0) / 1000);
        if let Some(before) = w.insert(key.clone(), values) {
            assert_eq!(
                before, values,
                "window {key:?} alerted twice with other values"
            );
        }
    }
    w
}

/// The JSON lines of a file sink's output (none when it is not there yet).
pub fn read_alerts(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
