//! Inputs the fuzz targets once crashed on (`fuzz/regressions/`): `eddy check` must answer each
//! with diagnostics placed in the file, never a panic.

mod common;

use std::path::Path;

#[test]
fn query_files_that_crashed_the_front_end_get_diagnostics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/sql_front_end");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("the regressions folder") {
        let path = entry.expect("entry").path();
        let out = common::run_eddy(&dir, &["check", path.to_str().expect("utf-8")], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{}: {stderr}", path.display());
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{}: {:?}",
            path.display(),
            out.status
        );
        if !out.status.success() {
            let file = path.to_string_lossy();
            assert!(
                stderr.starts_with(file.as_ref()),
                "errors are placed in the file: {stderr}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 1);
}
