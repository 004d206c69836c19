//! The runnable examples and the example queries: every query file in `queries/` and `examples/`
//! plans, and each example's recorded readings give the alerts its folder expects (computed by
//! hand, see the example's README).

mod common;

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn query_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable folder") {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            query_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "sql") {
            found.push(path);
        }
    }
}

#[test]
fn every_example_query_file_checks() {
    let mut files = Vec::new();
    query_files(&root().join("queries"), &mut files);
    query_files(&root().join("examples"), &mut files);
    assert!(
        files.len() >= 3,
        "example query files are missing: {files:?}"
    );
    for file in files {
        let out = common::run_eddy(root(), &["check", file.to_str().expect("utf-8 path")], &[]);
        assert!(
            out.status.success(),
            "eddy check {} failed:\n{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let plan = String::from_utf8_lossy(&out.stdout);
        assert!(
            plan.contains("query"),
            "no plan printed for {}: {plan}",
            file.display()
        );
    }
}

#[test]
fn cold_chain_gives_the_hand_computed_excursions() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("excursions.jsonl");
    let dead = tmp.path().join("dead_letters.jsonl");
    let result = common::run_eddy(
        root(),
        &["run", "examples/cold-chain/cold_chain.sql", "--quiet"],
        &[
            ("OUT", out.to_str().expect("utf-8 path")),
            ("DEAD_LETTERS", dead.to_str().expect("utf-8 path")),
        ],
    );
    assert!(
        result.status.success(),
        "eddy run failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let actual = std::fs::read_to_string(&out).expect("the excursions file");
    let expected =
        std::fs::read_to_string(root().join("examples/cold-chain/expected_excursions.jsonl"))
            .expect("expected_excursions.jsonl");
    if let Err(diff) = common::compare_rows(&actual, &expected, 1e-12) {
        panic!("cold chain excursions differ:\n{diff}");
    }

    let dead_letters = common::parse_lines(&std::fs::read_to_string(&dead).expect("dead letters"));
    assert_eq!(dead_letters.len(), 1, "{dead_letters:?}");
    let letter = &dead_letters[0];
    assert_eq!(letter["source"], "cargo");
    assert!(
        letter["origin"]
            .as_str()
            .is_some_and(|o| o.ends_with("examples/cold-chain/readings.jsonl:41")),
        "{letter:?}"
    );
    assert!(
        letter["reason"]
            .as_str()
            .is_some_and(|r| r.contains("temp")),
        "the reason must name the column: {letter:?}"
    );
    assert!(
        letter["payload"]
            .as_str()
            .is_some_and(|p| p.contains(r#""temp":"five""#)),
        "{letter:?}"
    );
}
