//! Helpers shared by the integration tests: running the `eddy` binary, comparing JSON-lines
//! results with expected ones.

#![allow(dead_code)]

pub mod mosquitto;
pub mod service;
pub mod windows;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// The `eddy` binary built for these tests.
pub fn eddy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eddy"))
}

/// Runs `eddy` with `args` in `dir`, with extra environment variables.
pub fn run_eddy(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = eddy();
    c.current_dir(dir).args(args).env("EDDY_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("the eddy binary runs")
}

/// The JSON summary `eddy run --stats` prints last on stderr.
pub fn stats(stderr: &str) -> Value {
    stderr
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("--stats printed a summary")
}

pub fn parse_lines(text: &str) -> Vec<Map<String, Value>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(m)) => m,
            other => panic!("not a JSON object line: {l} ({other:?})"),
        })
        .collect()
}

/// A sort key for a row: exact fields as they are, floats rounded, so that rows computed with
/// different summation orders still line up.
fn sort_key(row: &Map<String, Value>) -> String {
    let mut parts: Vec<String> = row
        .iter()
        .map(|(k, v)| match v {
            Value::Number(n) if n.is_f64() => format!("{k}={:.4}", n.as_f64().unwrap_or(0.0)),
            other => format!("{k}={other}"),
        })
        .collect();
    parts.sort();
    parts.join("|")
}

fn same_value(a: &Value, b: &Value, tolerance: f64) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                let (x, y) = (
                    x.as_f64().unwrap_or(f64::NAN),
                    y.as_f64().unwrap_or(f64::NAN),
                );
                (x - y).abs() <= tolerance * 1f64.max(x.abs()).max(y.abs())
            } else {
                x == y
            }
        }
        _ => a == b,
    }
}

/// Checks that `actual` and `expected` hold the same rows in any order (floats within a relative
/// `tolerance`); the error lists the differences.
pub fn compare_rows(actual: &str, expected: &str, tolerance: f64) -> Result<(), String> {
    let mut a = parse_lines(actual);
    let mut e = parse_lines(expected);
    a.sort_by_key(sort_key);
    e.sort_by_key(sort_key);
    let mut problems = Vec::new();
    if a.len() != e.len() {
        problems.push(format!("{} rows, expected {}", a.len(), e.len()));
    }
    for (x, y) in a.iter().zip(&e) {
        let same = x.len() == y.len()
            && x.iter()
                .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w, tolerance)));
        if !same {
            problems.push(format!(
                "got      {}\nexpected {}",
                Value::Object(x.clone()),
                Value::Object(y.clone())
            ));
        }
        if problems.len() > 5 {
            break;
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// A running `eddy`, killed when dropped, whatever the test's outcome.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `eddy run FILE --quiet` and waits (up to 30 s) until its log prints a line containing
/// `ready` (e.g. "subscribed to"); the rest of its log is drained in the background.
pub fn run_until_logged(file: &Path, ready: &str) -> Running {
    run_with_until_logged(file, &[], ready)
}

/// [`run_until_logged`] with more arguments to `eddy run`.
pub fn run_with_until_logged(file: &Path, args: &[&str], ready: &str) -> Running {
    let mut command = eddy();
    command
        .args(["run", file.to_str().expect("utf-8 path"), "--quiet"])
        .args(args)
        .env("EDDY_LOG", "info")
        .stdout(std::process::Stdio::null());
    let mut eddy = Logged::spawn(command);
    eddy.wait_for_line(ready, Duration::from_secs(30));
    eddy.into_running()
}

/// A running `eddy` whose log (stderr) is read as it comes, so that a test can wait for a line
/// that shows a state; every line also goes with the test's output (shown when the test fails).
/// Killed when dropped.
pub struct Logged {
    process: Running,
    lines: mpsc::Receiver<String>,
    log: String,
}

impl Logged {
    /// Spawns `command` with its stderr piped.
    pub fn spawn(mut command: Command) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = command
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("eddy starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self {
            process: Running(child),
            lines,
            log: String::new(),
        }
    }

    fn record(&mut self, line: String) -> String {
        eprintln!("eddy: {line}");
        self.log.push_str(&line);
        self.log.push('\n');
        line
    }

    /// Waits up to `within` for a log line containing `text` and returns it; panics if none comes.
    pub fn wait_for_line(&mut self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let line = self.record(line);
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("eddy did not log '{text}' within {within:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("eddy ended without logging '{text}'")
                }
            }
        }
    }

    /// Takes the lines logged so far without looking at them, so that the next wait sees only
    /// what comes after.
    pub fn skip_logged(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.record(line);
        }
    }

    /// Waits for the process to end: its status and its whole log as `stderr` (stdout is not
    /// captured).
    pub fn wait(mut self) -> Output {
        let status = self.process.0.wait().expect("eddy ends");
        // The reader ends at the end of the pipe, once every line is in the channel.
        while let Ok(line) = self.lines.recv() {
            self.record(line);
        }
        Output {
            status,
            stdout: Vec::new(),
            stderr: self.log.into_bytes(),
        }
    }

    /// The process alone, the rest of its log going with the test's output.
    pub fn into_running(self) -> Running {
        let lines = self.lines;
        std::thread::spawn(move || {
            while let Ok(line) = lines.recv() {
                eprintln!("eddy: {line}");
            }
        });
        self.process
    }
}

/// Waits up to `within`, looking every 20 ms, until `ready` holds; panics naming `what` if it
/// does not.
pub fn wait_until(what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs every case folder under `dir` (a `query.sql` writing to `$OUT`, its inputs, and
/// `expected.jsonl`) with `eddy run`, and compares the output with the expected rows. Returns the
/// number of cases; panics with every difference found.
pub fn check_case_folders(dir: &Path, tolerance: f64) -> usize {
    let mut folders: Vec<_> = std::fs::read_dir(dir)
        .expect("the case folder exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.join("query.sql").exists())
        .collect();
    folders.sort();
    let out_dir = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    for folder in &folders {
        let name = folder
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let out = out_dir.path().join(format!("{name}.jsonl"));
        let result = run_eddy(
            folder,
            &["run", "query.sql", "--quiet"],
            &[("OUT", out.to_str().expect("utf-8 path"))],
        );
        if !result.status.success() {
            failures.push(format!(
                "{name}: eddy exited with {}: {}",
                result.status,
                String::from_utf8_lossy(&result.stderr)
            ));
            continue;
        }
        let actual = std::fs::read_to_string(&out).unwrap_or_default();
        let expected =
            std::fs::read_to_string(folder.join("expected.jsonl")).expect("expected.jsonl");
        if let Err(diff) = compare_rows(&actual, &expected, tolerance) {
            failures.push(format!("{name}:\n{diff}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    folders.len()
}

/// A small deterministic generator (PCG-style LCG): inputs and moments that are repeatable.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// Two processes that keep a core busy each, until dropped.
pub struct CpuLoad(Vec<std::process::Child>);

impl CpuLoad {
    pub fn start() -> Self {
        Self(
            (0..2)
                .map(|_| {
                    std::process::Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("sh runs")
                })
                .collect(),
        )
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
