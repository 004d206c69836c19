//! The engine's modules stack in layers without cycles: a module uses only the modules of the
//! layers below it (see the map in `src/lib.rs`). Read from the sources, so that a `use` that
//! breaks the order fails here, with the file and the line.

use std::collections::BTreeMap;
use std::path::Path;

/// Each top-level module and the layer it sits in.
const LAYERS: [(&str, u8); 14] = [
    ("error", 0),
    ("time", 0),
    ("message", 0),
    ("fanout", 0),
    ("hash", 0),
    ("options", 0),
    ("metrics", 0),
    ("checkpoint", 0),
    ("sql", 0),
    ("ops", 1),
    ("connector", 2),
    ("plan", 3),
    ("runtime", 4),
    ("lib", 5),
];

/// Foundations may use one another, but not in a circle: the order within layer 0.
const FOUNDATIONS: [&str; 9] = [
    "hash",
    "time",
    "message",
    "fanout",
    "metrics",
    "error",
    "options",
    "checkpoint",
    "sql",
];

fn module_of(path: &Path, src: &Path) -> String {
    let rel = path.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a file");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layer: BTreeMap<&str, u8> = LAYERS.into_iter().collect();
    let foundation_rank = |m: &str| FOUNDATIONS.iter().position(|f| *f == m);
    let mut paths = Vec::new();
    files(&src, &mut paths);
    let mut wrong = Vec::new();
    for path in paths {
        let from = module_of(&path, &src);
        let Some(&from_layer) = layer.get(from.as_str()) else {
            wrong.push(format!(
                "{}: module {from} is not on the map",
                path.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("readable");
        // Tests may reach anywhere.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            for (i, _) in line.match_indices("crate::") {
                let used: String = line[i + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if used == from || used.is_empty() {
                    continue;
                }
                let Some(&used_layer) = layer.get(used.as_str()) else {
                    continue;
                };
                let allowed = used_layer < from_layer
                    || (from_layer == 0
                        && used_layer == 0
                        && foundation_rank(&used) < foundation_rank(&from));
                if !allowed {
                    wrong.push(format!(
                        "{}:{}: {from} uses {used}: {}",
                        path.display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "uses against the layers:\n{}",
        wrong.join("\n")
    );
}
