//! Helpers shared by the integration tests: running the `eddy` binary, comparing JSON-lines
//! results with expected ones.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

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
