//! A sink that fails: its writes are retried with backoff while the rows wait (the queries and
//! the source wait with them), and once the retries are spent the rows go to the sink's dead
//! letters with the reason. Nothing vanishes. The failure is real: the sink's path is a
//! directory, which no file can be opened at, until the test removes it.

mod common;

use std::time::Duration;

fn readings(dir: &std::path::Path) {
    let lines: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"device_id":"d{}","temp":{},"ts":{}}}"#,
                i % 2,
                70 + i,
                1_767_225_600_000i64 + i * 1000
            )
        })
        .collect();
    std::fs::write(dir.join("input.jsonl"), lines.join("\n")).expect("input written");
}

const SOURCE: &str = "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'input.jsonl');";

#[test]
fn a_sink_that_recovers_gets_every_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    readings(dir.path());
    let out = dir.path().join("alerts.jsonl");
    std::fs::create_dir(&out).expect("a directory where the file should be");
    std::fs::write(
        dir.path().join("q.sql"),
        format!(
            "{SOURCE}
             CREATE SINK alerts WITH (connector = 'file', path = 'alerts.jsonl',
                                      retries = '20', retry_backoff = '50ms',
                                      dead_letter = 'failed.jsonl');
             INSERT INTO alerts SELECT device_id, temp, ts FROM readings WHERE temp > 75;"
        ),
    )
    .expect("query written");
    let mut command = common::eddy();
    command
        .current_dir(dir.path())
        .args(["run", "q.sql", "--quiet"])
        .env("EDDY_LOG", "warn");
    let mut eddy = common::Logged::spawn(command);
    eddy.wait_for_line("write failed", Duration::from_secs(30));
    std::fs::remove_dir(&out).expect("the directory goes away");
    let result = eddy.wait();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(
        stderr.contains("retry"),
        "the failures were retried: {stderr}"
    );
    let rows = common::parse_lines(&std::fs::read_to_string(&out).expect("alerts written"));
    assert_eq!(rows.len(), 14, "{rows:?}");
    assert!(
        !dir.path().join("failed.jsonl").exists()
            || std::fs::read_to_string(dir.path().join("failed.jsonl"))
                .unwrap_or_default()
                .is_empty()
    );
}

#[test]
fn rows_a_sink_cannot_take_go_to_its_dead_letters() {
    let dir = tempfile::tempdir().expect("temp dir");
    readings(dir.path());
    std::fs::create_dir(dir.path().join("alerts.jsonl")).expect("a directory");
    std::fs::write(
        dir.path().join("q.sql"),
        format!(
            "{SOURCE}
             CREATE SINK alerts WITH (connector = 'file', path = 'alerts.jsonl',
                                      retries = '2', retry_backoff = '10ms',
                                      dead_letter = 'failed.jsonl');
             INSERT INTO alerts SELECT device_id, temp, ts FROM readings WHERE temp > 75;"
        ),
    )
    .expect("query written");
    let result = common::run_eddy(dir.path(), &["run", "q.sql", "--quiet"], &[]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        !result.status.success(),
        "a sink that never worked is an error: {stderr}"
    );
    let letters = common::parse_lines(
        &std::fs::read_to_string(dir.path().join("failed.jsonl")).expect("dead letters"),
    );
    assert_eq!(letters.len(), 14, "every row is there: {letters:?}");
    for l in &letters {
        assert_eq!(l["origin"], "sink alerts");
        assert!(
            l["reason"]
                .as_str()
                .is_some_and(|r| r.contains("alerts.jsonl")),
            "{l:?}"
        );
        assert!(
            l["payload"].as_str().is_some_and(|p| p.contains("temp=")),
            "{l:?}"
        );
    }
}
