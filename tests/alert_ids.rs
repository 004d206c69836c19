//! `alert_id = 'true'` on a sink: every alert carries an id computed from its query and its
//! values, so the same alert computed twice (a replay, a restart) has the same id, and a consumer
//! can de-duplicate. Different alerts have different ids.

mod common;

use std::collections::BTreeMap;

const QUERY: &str = "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = '${INPUT}');
CREATE SINK alerts WITH (connector = 'file', path = '${OUT}', mode = 'truncate', alert_id = 'true');
INSERT INTO alerts
SELECT device_id, window_start, window_end, avg(temp) AS avg_temp
FROM TUMBLE(readings, ts, INTERVAL '10' SECOND)
GROUP BY device_id, window_start, window_end;";

fn run(
    dir: &std::path::Path,
    input: &str,
    out: &str,
) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let result = common::run_eddy(
        dir,
        &["run", "q.sql", "--quiet"],
        &[("INPUT", input), ("OUT", out)],
    );
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    common::parse_lines(&std::fs::read_to_string(dir.join(out)).expect("alerts"))
}

#[test]
fn the_same_alert_gets_the_same_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lines: Vec<String> = (0..120)
        .flat_map(|s| {
            ["d1", "d2"].map(|d| {
                format!(
                    r#"{{"device_id":"{d}","temp":{},"ts":{}}}"#,
                    60 + (s * 7) % 30,
                    1_767_225_600_000i64 + s * 1000
                )
            })
        })
        .collect();
    std::fs::write(dir.path().join("full.jsonl"), lines.join("\n")).expect("input");
    // The first 55 seconds only: the window 00:50-01:00 fires early, with half of its rows.
    std::fs::write(
        dir.path().join("first_minute.jsonl"),
        lines[..110].join("\n"),
    )
    .expect("input");
    std::fs::write(dir.path().join("q.sql"), QUERY).expect("query");

    let full = run(dir.path(), "full.jsonl", "a.jsonl");
    let again = run(dir.path(), "full.jsonl", "b.jsonl");
    assert_eq!(full.len(), 24);
    assert_eq!(full, again, "a replay gives the same alerts and ids");

    let ids: BTreeMap<String, String> = full
        .iter()
        .map(|a| {
            (
                a["alert_id"].as_str().expect("an id").to_string(),
                a["window_start"].to_string(),
            )
        })
        .collect();
    assert_eq!(ids.len(), full.len(), "different alerts, different ids");

    // Windows that closed within the first minute are the same alerts, with the same ids.
    let partial = run(dir.path(), "first_minute.jsonl", "c.jsonl");
    let mut same = 0;
    for a in &partial {
        let closed = a["window_end"]
            .as_str()
            .is_some_and(|e| e <= "2026-01-01T00:00:50.000Z");
        if closed {
            assert!(full.contains(a), "{a:?} is not in the full run");
            same += 1;
        } else {
            assert!(
                !ids.contains_key(a["alert_id"].as_str().unwrap_or_default()),
                "a window cut short is another alert: {a:?}"
            );
        }
    }
    assert_eq!(same, 10);
}
