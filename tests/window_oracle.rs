//! Window results checked against DuckDB. Every folder of `tests/cases` holds `query.sql` (what
//! Eddy runs), `input.jsonl` (out of order, late rows, bad lines), `oracle.sql` (the DuckDB query
//! for the same answer as a batch) and `expected.jsonl` (DuckDB's answer).
//! `tests/oracle/generate.py` writes the inputs and query files and computes each `expected.jsonl`
//! from the folder's `oracle.sql`. `eddy run` replays the input and must give the same rows.

mod common;

use std::path::Path;

#[test]
fn window_results_equal_duckdb_answers() {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let n = common::check_case_folders(&cases, 1e-9);
    assert!(n >= 12, "the oracle cases are missing: {n} found");
}
