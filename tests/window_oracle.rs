//! Window results checked against DuckDB: every folder of `tests/cases` holds a query file, its
//! input (out of order, late rows, bad lines) and DuckDB's answer over the same rows
//! (`tests/oracle/generate.py`). `eddy run` replays the input and must give the same rows.

mod common;

use std::path::Path;

#[test]
fn window_results_equal_duckdb_answers() {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let n = common::check_case_folders(&cases, 1e-9);
    assert!(n >= 12, "the oracle cases are missing: {n} found");
}
