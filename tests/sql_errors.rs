//! Bad query files and the exact errors `eddy check` must print for them: each file in
//! `tests/errors` ends with `-- expect: LINE:COL: message` lines, printed as `FILE:LINE:COL: message`.

mod common;

use std::path::Path;

#[test]
fn each_bad_query_file_prints_its_errors_and_exits_1() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/errors");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/errors exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the error cases are missing");
    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(path).expect("readable case");
        let expected: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("-- expect: "))
            .map(|l| format!("{name}:{l}"))
            .collect();
        assert!(!expected.is_empty(), "{name} has no `-- expect:` line");
        let out = common::run_eddy(&dir, &["check", &name], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let printed: Vec<&str> = stderr.lines().collect();
        if out.status.code() != Some(1) || printed != expected {
            failures.push(format!(
                "{name}: exit {:?}\n  printed:  {printed:?}\n  expected: {expected:?}",
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_good_file_checks_clean_and_prints_its_plan() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = common::run_eddy(root, &["check", "queries/overheat.sql"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("window aggregate HOP size 1min slide 10s (panes of 10s)"),
        "{plan}"
    );
    assert!(plan.contains("sink overheat (mqtt)"), "{plan}");
}
