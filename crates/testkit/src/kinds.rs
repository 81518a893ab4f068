//! The kinds of record a crate declares, read from its sources, so that a
//! test can hold the crate's list of kinds to what its code declares.

use std::path::Path;

/// The names that the `impl Kind` blocks in the Rust sources under `dir`
/// give their kinds (`const KIND: &'static str = "...";`), sorted, each as
/// often as it is declared. Panics on a `const KIND` that is not given as
/// a string literal on its line, which this does not read.
pub fn declared_in(dir: &Path) -> Vec<String> {
    let mut kinds = Vec::new();
    for file in rust_files(dir) {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        for line in text.lines().map(str::trim) {
            let Some(rest) = line.strip_prefix("const KIND:") else {
                continue;
            };
            let name = rest
                .split_once('"')
                .and_then(|(_, after)| after.split_once('"'))
                .map(|(name, _)| name.to_owned())
                .unwrap_or_else(|| {
                    panic!("{}: a kind not named by a literal: {line}", file.display())
                });
            kinds.push(name);
        }
    }
    kinds.sort();
    kinds
}

/// Every `.rs` file under `dir`, at any depth.
fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinds_declared_are_read_from_every_file_at_any_depth() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("payments");
        std::fs::create_dir(&nested).unwrap();
        std::fs::write(
            dir.path().join("plan.rs"),
            "impl Kind for Plan {\n    const KIND: &'static str = \"plan\";\n}\n",
        )
        .unwrap();
        std::fs::write(
            nested.join("event.rs"),
            "impl Kind for Event {\n    const KIND: &str = \"event\";\n}\n// const KIND elsewhere\n",
        )
        .unwrap();
        std::fs::write(
            nested.join("notes.txt"),
            "const KIND: &str = \"not_rust\";\n",
        )
        .unwrap();
        assert_eq!(declared_in(dir.path()), ["event", "plan"]);
    }
}
