//! Faults in the middle of a file replay with checkpoints (`--state-dir`):
//! - `kill -9`, then a restart from the newest checkpoint: the alerts of the killed run and of the
//!   restarted one, de-duplicated by `alert_id`, are exactly the alerts of an uninterrupted run,
//!   at several kill points (a HOP window, and a view with an OVER frame read by two queries, one of
//!   them a window over the view: barriers pass through views);
//! - SIGTERM: a last checkpoint is taken and the process exits 0; the restarted run writes every
//!   remaining alert, and no alert is written twice;
//! - a damaged checkpoint, or one taken for other queries, stops the restart with an error that
//!   names it, before anything runs.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

const QUERY: &str = "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'input.jsonl', batch_size = '512');
CREATE SINK alerts WITH (connector = 'file', path = '${OUT}', alert_id = 'true');
INSERT INTO alerts
SELECT device_id, window_start, window_end, avg(temp) AS avg_temp, max(temp) AS max_temp
FROM HOP(readings, ts, INTERVAL '10' SECOND, INTERVAL '30' SECOND)
GROUP BY device_id, window_start, window_end
HAVING avg(temp) > 71;
CREATE VIEW smoothed AS
SELECT device_id, ts, avg(temp) OVER (PARTITION BY device_id ORDER BY ts
    ROWS BETWEEN 4 PRECEDING AND CURRENT ROW) AS avg5
FROM readings;
INSERT INTO alerts SELECT device_id, ts, avg5 FROM smoothed WHERE avg5 > 80;
INSERT INTO alerts
SELECT device_id, window_start, max(avg5) AS peak_avg5
FROM TUMBLE(smoothed, ts, INTERVAL '1' MINUTE)
GROUP BY device_id, window_start, window_end
HAVING max(avg5) > 81;";

/// The alert lines of a file; a line cut by a kill is not an alert.
fn alert_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v.to_string())
        .collect()
}

fn alerts(path: &Path) -> BTreeSet<String> {
    alert_lines(path).into_iter().collect()
}

/// Whether `state` holds a complete checkpoint: a directory with a manifest that is not still
/// being written (`*.pending`).
fn has_checkpoint(state: &Path) -> bool {
    std::fs::read_dir(state)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .any(|p| p.extension().is_none() && p.join("manifest.json").exists())
}

/// Waits until `state` holds a checkpoint or the run has ended.
fn wait_for_checkpoint(child: &mut std::process::Child, state: &Path) {
    common::wait_until(
        &format!("a checkpoint in {}", state.display()),
        Duration::from_secs(30),
        || has_checkpoint(state) || child.try_wait().expect("status").is_some(),
    );
}

/// A replay long enough to be stopped in the middle: 250,000 readings of 5 devices.
fn setup() -> (tempfile::TempDir, BTreeSet<String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut lines = Vec::new();
    for s in 0..50_000i64 {
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
    (dir, expected)
}

/// Sets compared by what is missing and what is extra, a few of each.
fn same(got: &BTreeSet<String>, expected: &BTreeSet<String>, what: &str) {
    let missing: Vec<&String> = expected.difference(got).collect();
    let extra: Vec<&String> = got.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} alerts missing (first: {:?}), {} not expected (first: {:?})",
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
        extra.len(),
        extra.iter().take(3).collect::<Vec<_>>()
    );
}

fn run_with_state(dir: &Path, out: &Path, state: &str) -> std::process::Output {
    let mut c = common::eddy();
    c.current_dir(dir)
        .args(["run", "q.sql", "--quiet", "--state-dir", state])
        .args(["--checkpoint-interval", "100ms"])
        .env("OUT", out)
        .env("EDDY_LOG", "info");
    c.output().expect("eddy runs")
}

fn spawn_with_state(dir: &Path, out: &Path, state: &str) -> std::process::Child {
    common::eddy()
        .current_dir(dir)
        .args(["run", "q.sql", "--quiet", "--state-dir", state])
        .args(["--checkpoint-interval", "100ms"])
        .env("OUT", out)
        .env("EDDY_LOG", "warn")
        .spawn()
        .expect("eddy starts")
}

#[test]
fn killed_and_restarted_runs_together_give_every_alert_once_by_id() {
    let (dir, expected) = setup();
    let mut resumed = 0;
    // The first kill may come before any checkpoint (its restart starts over); the others never
    // do, however slowly the run starts.
    for (i, (kill_after, after_a_checkpoint)) in [
        (Duration::from_millis(400), false),
        (Duration::from_millis(900), true),
        (Duration::from_millis(1600), true),
    ]
    .into_iter()
    .enumerate()
    {
        let out = dir.path().join(format!("killed-{i}.jsonl"));
        let state = format!("state-{i}");
        let mut child = spawn_with_state(dir.path(), &out, &state);
        let started = Instant::now();
        if after_a_checkpoint {
            wait_for_checkpoint(&mut child, &dir.path().join(&state));
        }
        std::thread::sleep(kill_after.saturating_sub(started.elapsed()));
        let finished_before_kill = child.try_wait().expect("status").is_some();
        // SIGKILL: no flush, no last checkpoint, no goodbye.
        let _ = child.kill();
        let _ = child.wait();
        let before = alerts(&out);
        let restart = run_with_state(dir.path(), &out, &state);
        let log = String::from_utf8_lossy(&restart.stderr);
        assert!(restart.status.success(), "{log}");
        if log.contains("resumed from checkpoint") {
            resumed += 1;
        }
        let union = alerts(&out);
        same(
            &union,
            &expected,
            &format!(
                "killed after {:?} ({} alerts written before the kill{})",
                started.elapsed(),
                before.len(),
                if finished_before_kill {
                    ", the run had already ended"
                } else {
                    ""
                }
            ),
        );
        assert!(
            before.is_subset(&expected),
            "a killed run wrote an alert the full run does not have"
        );
    }
    assert!(
        resumed >= 2,
        "only {resumed} of 3 restarts resumed from a checkpoint: the kills came too early"
    );
}

#[test]
fn sigterm_takes_a_last_checkpoint_and_the_restart_writes_no_alert_twice() {
    let (dir, expected) = setup();
    let out = dir.path().join("stopped.jsonl");
    let mut child = spawn_with_state(dir.path(), &out, "state");
    // In the middle: alerts written and a checkpoint taken.
    common::wait_until("an alert in stopped.jsonl", Duration::from_secs(30), || {
        !alert_lines(&out).is_empty() || child.try_wait().expect("status").is_some()
    });
    wait_for_checkpoint(&mut child, &dir.path().join("state"));
    let pid = child.id().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let status = child.wait().expect("eddy stops");
    assert!(status.success(), "SIGTERM: {status}");
    let before = alert_lines(&out).len();
    assert!(
        before > 0 && before < expected.len(),
        "stopped with {before} of {} alerts: not in the middle",
        expected.len()
    );
    let restart = run_with_state(dir.path(), &out, "state");
    let log = String::from_utf8_lossy(&restart.stderr);
    assert!(restart.status.success(), "{log}");
    assert!(log.contains("resumed from checkpoint"), "{log}");
    let lines = alert_lines(&out);
    let unique: BTreeSet<String> = lines.iter().cloned().collect();
    same(&unique, &expected, "stopped by SIGTERM");
    assert_eq!(
        lines.len(),
        unique.len(),
        "alerts written twice after a SIGTERM stop"
    );
}

#[test]
fn a_damaged_or_foreign_checkpoint_is_refused_with_its_name() {
    let (dir, _) = setup();
    let out = dir.path().join("out.jsonl");
    let mut child = spawn_with_state(dir.path(), &out, "state");
    wait_for_checkpoint(&mut child, &dir.path().join("state"));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().expect("eddy stops").success());
    let checkpoint = std::fs::read_dir(dir.path().join("state"))
        .expect("a state directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .max()
        .expect("a checkpoint");

    // Other windows in the file: refused, nothing run.
    std::fs::write(
        dir.path().join("q.sql"),
        QUERY.replace("INTERVAL '10' SECOND", "INTERVAL '15' SECOND"),
    )
    .expect("query");
    let run = run_with_state(dir.path(), &out, "state");
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        log.contains(&format!(
            "cannot resume from state/{}",
            checkpoint
                .file_name()
                .and_then(|n| n.to_str())
                .expect("a name")
        )) && log.contains("taken for other queries"),
        "{log}"
    );
    std::fs::write(dir.path().join("q.sql"), QUERY).expect("query");

    // A state file cut short.
    // A manifest of another version of Eddy.
    let manifest = checkpoint.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(
        &manifest,
        text.replace(
            &format!("\"eddy\": \"{}\"", env!("CARGO_PKG_VERSION")),
            "\"eddy\": \"0.0.1\"",
        ),
    )
    .expect("manifest written");
    let run = run_with_state(dir.path(), &out, "state");
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(log.contains("it was taken by eddy 0.0.1"), "{log}");
    std::fs::write(&manifest, text).expect("manifest restored");

    let state = checkpoint.join("query-0.state");
    let bytes = std::fs::read(&state).expect("state file");
    std::fs::write(&state, &bytes[..bytes.len() / 2]).expect("damage");
    let run = run_with_state(dir.path(), &out, "state");
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        log.contains("query-0.state") && log.contains("is damaged"),
        "{log}"
    );

    // A damaged manifest.
    std::fs::write(&state, &bytes).expect("repair");
    std::fs::write(checkpoint.join("manifest.json"), "{\"format\": 1,").expect("damage");
    let run = run_with_state(dir.path(), &out, "state");
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(log.contains("manifest.json is damaged"), "{log}");
}
