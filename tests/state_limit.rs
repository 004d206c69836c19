//! A flood of new keys cannot take the process down: past `--max-state-rows` the query stops
//! with an error that says what was reached and what to do, and `eddy run` exits 1.

mod common;

#[test]
fn too_many_keys_stop_the_query_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lines: Vec<String> = (0..50_000)
        .map(|i| {
            format!(
                r#"{{"device_id":"dev-{i}","temp":1,"ts":{}}}"#,
                1_767_225_600_000i64 + i / 100
            )
        })
        .collect();
    std::fs::write(dir.path().join("input.jsonl"), lines.join("\n")).expect("input");
    std::fs::write(
        dir.path().join("q.sql"),
        "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
          WITH (connector = 'file', path = 'input.jsonl', batch_size = '1000');
         CREATE SINK out WITH (connector = 'file', path = 'out.jsonl');
         INSERT INTO out SELECT device_id, count(*) AS n
         FROM TUMBLE(readings, ts, INTERVAL '1' HOUR) GROUP BY device_id, window_start, window_end;",
    )
    .expect("query");
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
    let lines: Vec<String> = (0..50_000)
        .map(|i| {
            format!(
                r#"{{"device_id":"dev-{i}","temp":{},"ts":{}}}"#,
                i % 7,
                1_767_225_600_000i64 + i * 100
            )
        })
        .collect();
    std::fs::write(dir.path().join("input.jsonl"), lines.join("\n")).expect("input");
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
        std::fs::write(
            dir.path().join("q.sql"),
            format!(
                "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
                  WITH (connector = 'file', path = 'input.jsonl', batch_size = '1000');
                 CREATE SINK out WITH (connector = 'file', path = 'out.jsonl');
                 {insert};"
            ),
        )
        .expect("query");
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
