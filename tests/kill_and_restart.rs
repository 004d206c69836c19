//! `kill -9` in the middle of a file replay, then a restart: the alerts of the killed run and of
//! the restarted one, de-duplicated by `alert_id`, are exactly the alerts of an uninterrupted run,
//! at several kill points. (Without checkpoints a restart replays the file from its start; the
//! ids make the alerts written twice recognizable.)

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const QUERY: &str = "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'input.jsonl', batch_size = '512');
CREATE SINK alerts WITH (connector = 'file', path = '${OUT}', alert_id = 'true');
INSERT INTO alerts
SELECT device_id, window_start, window_end, avg(temp) AS avg_temp, max(temp) AS max_temp
FROM TUMBLE(readings, ts, INTERVAL '10' SECOND)
GROUP BY device_id, window_start, window_end
HAVING avg(temp) > 70;";

fn alerts(path: &std::path::Path) -> BTreeSet<String> {
    // A line cut by the kill is not an alert: only whole JSON lines count.
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v.to_string())
        .collect()
}

#[test]
fn killed_and_restarted_runs_together_give_every_alert_once_by_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut lines = Vec::new();
    for s in 0..40_000i64 {
        for d in 0..5 {
            let temp = 60 + (s * 13 + d * 7) % 25;
            lines.push(format!(
                r#"{{"device_id":"d{d}","temp":{temp},"ts":{}}}"#,
                1_767_225_600_000 + s * 1000
            ));
        }
    }
    std::fs::write(dir.path().join("input.jsonl"), lines.join("\n")).expect("input");
    std::fs::write(dir.path().join("q.sql"), QUERY).expect("query");

    let reference = dir.path().join("reference.jsonl");
    let run = common::run_eddy(
        dir.path(),
        &["run", "q.sql", "--quiet"],
        &[("OUT", reference.to_str().expect("utf-8"))],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let expected = alerts(&reference);
    assert!(expected.len() > 1000, "{} alerts", expected.len());

    for (i, kill_after) in [
        Duration::from_millis(150),
        Duration::from_millis(400),
        Duration::from_millis(900),
    ]
    .into_iter()
    .enumerate()
    {
        let out = dir.path().join(format!("killed-{i}.jsonl"));
        let mut child = common::eddy()
            .current_dir(dir.path())
            .args(["run", "q.sql", "--quiet"])
            .env("OUT", &out)
            .env("EDDY_LOG", "warn")
            .spawn()
            .expect("eddy starts");
        let started = Instant::now();
        std::thread::sleep(kill_after);
        let finished_before_kill = child.try_wait().expect("status").is_some();
        // SIGKILL: no flush, no goodbye.
        let _ = child.kill();
        let _ = child.wait();
        let before = alerts(&out);
        let restart = common::run_eddy(
            dir.path(),
            &["run", "q.sql", "--quiet"],
            &[("OUT", out.to_str().expect("utf-8"))],
        );
        assert!(
            restart.status.success(),
            "{}",
            String::from_utf8_lossy(&restart.stderr)
        );
        let union = alerts(&out);
        assert_eq!(
            union,
            expected,
            "killed after {:?} ({} alerts written before the kill{}): the union differs",
            started.elapsed(),
            before.len(),
            if finished_before_kill {
                ", the run had already ended"
            } else {
                ""
            }
        );
        // The same alerts written twice are the same lines, ids included.
        assert!(
            before.is_subset(&expected),
            "a killed run wrote an alert the full run does not have"
        );
    }
}
