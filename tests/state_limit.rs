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
