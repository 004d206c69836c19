//! Window results checked against DuckDB: every folder of `tests/cases` holds a query file, its
//! input (out of order, late rows, bad lines) and DuckDB's answer over the same rows
//! (`tests/oracle/generate.py`). `eddy run` replays the input and must give the same rows.

mod common;

use std::path::Path;

#[test]
fn window_results_equal_duckdb_answers() {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut folders: Vec<_> = std::fs::read_dir(&cases)
        .expect("tests/cases exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.join("query.sql").exists())
        .collect();
    folders.sort();
    assert!(
        folders.len() >= 6,
        "the oracle cases are missing: {folders:?}"
    );
    let out_dir = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    for folder in &folders {
        let name = folder
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let out = out_dir.path().join(format!("{name}.jsonl"));
        let result = common::run_eddy(
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
        if let Err(diff) = common::compare_rows(&actual, &expected, 1e-9) {
            failures.push(format!("{name}:\n{diff}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
