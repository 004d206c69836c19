//! A flood of new keys cannot take the process down: past `--max-state-rows` the query stops
//! with an error that says what was reached and what to do, and `eddy run` exits 1.

mod common;

use std::path::Path;

const T0: i64 = 1_767_225_600_000;

/// Writes `input.jsonl`: 50,000 devices reporting once each, device `i` at `ts(i)` (ms) with a
/// temperature of `i % 7`.
fn write_readings(dir: &Path, ts: impl Fn(i64) -> i64) {
    let lines: Vec<String> = (0..50_000)
        .map(|i| {
            format!(
                r#"{{"device_id":"dev-{i}","temp":{},"ts":{}}}"#,
                i % 7,
                ts(i)
            )
        })
        .collect();
    std::fs::write(dir.join("input.jsonl"), lines.join("\n")).expect("input");
}

/// Writes `q.sql`: the readings source over `input.jsonl` (1,000-row batches, a 2 s watermark
/// bound), an `out` file sink, and `insert` on line 5.
fn write_query(dir: &Path, insert: &str) {
    std::fs::write(
        dir.join("q.sql"),
        format!(
            "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
              WITH (connector = 'file', path = 'input.jsonl', batch_size = '1000');
             CREATE SINK out WITH (connector = 'file', path = 'out.jsonl');
             {insert};"
        ),
    )
    .expect("query");
}

#[test]
fn too_many_keys_stop_the_query_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_readings(dir.path(), |i| T0 + i / 100);
    write_query(
        dir.path(),
        "INSERT INTO out SELECT device_id, count(*) AS n
         FROM TUMBLE(readings, ts, INTERVAL '1' HOUR) GROUP BY device_id, window_start, window_end",
    );
    let limited = common::run_eddy(
        dir.path(),
        &["run", "q.sql", "--quiet", "--max-state-rows", "10000"],
        &[],
    );
    let stderr = String::from_utf8_lossy(&limited.stderr);
    assert_eq!(limited.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("rows of state, more than the limit of 10000 (--max-state-rows)"),
        "{stderr}"
    );
    let unlimited = common::run_eddy(dir.path(), &["run", "q.sql", "--quiet"], &[]);
    assert!(
        unlimited.status.success(),
        "{}",
        String::from_utf8_lossy(&unlimited.stderr)
    );
}

/// Keys a query keeps whatever the watermark (a MATCH_RECOGNIZE partition's `PREV` history, an
/// OVER frame's last rows) count against the limit, and `--key-idle-timeout` releases those of
/// keys gone quiet: 50,000 devices reporting once each, over 80 minutes of event time.
#[test]
fn keys_gone_quiet_are_released_after_the_idle_timeout() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_readings(dir.path(), |i| T0 + i * 100);
    for (name, insert) in [
        (
            "match_recognize",
            "INSERT INTO out SELECT * FROM readings MATCH_RECOGNIZE (
               PARTITION BY device_id ORDER BY ts MEASURES LAST(B.ts) AS t
               PATTERN (A B) DEFINE B AS B.temp > PREV(B.temp))",
        ),
        (
            "over rows",
            "INSERT INTO out SELECT device_id, ts, avg(temp) OVER (PARTITION BY device_id ORDER BY ts
               ROWS BETWEEN 4 PRECEDING AND CURRENT ROW) AS a FROM readings",
        ),
    ] {
        write_query(dir.path(), insert);
        let kept = common::run_eddy(
            dir.path(),
            &["run", "q.sql", "--quiet", "--max-state-rows", "10000"],
            &[],
        );
        let stderr = String::from_utf8_lossy(&kept.stderr);
        assert_eq!(kept.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains("(--max-state-rows)"), "{name}: {stderr}");
        let released = common::run_eddy(
            dir.path(),
            &[
                "run",
                "q.sql",
                "--quiet",
                "--max-state-rows",
                "10000",
                "--key-idle-timeout",
                "1min",
            ],
            &[],
        );
        assert!(
            released.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&released.stderr)
        );
    }
}

/// `--max-state-bytes` bounds the memory a query's state takes, whatever its row count: 50,000
/// devices each starting an OVER frame (one every 10 ms of event time, so the watermark lets
/// them in as they come) stay within the row limit but not within 2 MiB. Without the byte limit
/// the run ends well and `--stats` reports the query's peak.
#[test]
fn state_past_the_byte_limit_stops_the_query() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_readings(dir.path(), |i| T0 + i * 10);
    write_query(
        dir.path(),
        "INSERT INTO out SELECT device_id, ts, avg(temp) OVER (PARTITION BY device_id ORDER BY ts
           ROWS BETWEEN 4 PRECEDING AND CURRENT ROW) AS a FROM readings",
    );
    let limited = common::run_eddy(
        dir.path(),
        &["run", "q.sql", "--quiet", "--max-state-bytes", "2MiB"],
        &[],
    );
    let stderr = String::from_utf8_lossy(&limited.stderr);
    assert_eq!(limited.status.code(), Some(1), "{stderr}");
    // The error Eddy ends with is the query's, not the source's that stopped after it.
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: query q.sql:5 holds")
            && last.contains("of state, more than the limit of 2.0 MiB (--max-state-bytes)"),
        "{stderr}"
    );

    let unlimited = common::run_eddy(dir.path(), &["run", "q.sql", "--quiet", "--stats"], &[]);
    let stderr = String::from_utf8_lossy(&unlimited.stderr);
    assert!(unlimited.status.success(), "{stderr}");
    let stats = common::stats(&stderr);
    let peaks = stats["peak_state_bytes"]
        .as_object()
        .unwrap_or_else(|| panic!("no peak_state_bytes in {stats}"));
    assert_eq!(peaks.len(), 1, "{stats}");
    let peak = peaks.values().next().and_then(|v| v.as_u64()).unwrap_or(0);
    assert!(peak > 2 << 20, "peak state {peak} bytes: {stats}");
}
