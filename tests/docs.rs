//! The documentation names only files that exist: every `src/…`, `tests/…`,
//! `bench/…`, `config/…`, `scripts/…` and `docs/…` path written in README.md
//! and docs/*.md is checked against the repository.

use std::path::{Path, PathBuf};

/// Top-level directories whose paths the documentation cites.
const ROOTS: &[&str] = &["src/", "tests/", "bench/", "config/", "scripts/", "docs/"];

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// Every repository path in `text` that starts with one of [`ROOTS`] at a
/// word boundary (so `https://host/x/src/a.rs` is not taken for `src/a.rs`),
/// without a trailing sentence dot.
fn cited_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in text.char_indices() {
        let rest = &text[at..];
        if !ROOTS.iter().any(|r| rest.starts_with(r)) {
            continue;
        }
        if text[..at].chars().next_back().is_some_and(is_path_char) {
            continue;
        }
        let end = rest.find(|c: char| !is_path_char(c)).unwrap_or(rest.len());
        found.push(rest[..end].trim_end_matches('.').to_string());
    }
    found
}

fn documents() -> Vec<PathBuf> {
    let mut docs = vec![PathBuf::from("README.md")];
    for e in std::fs::read_dir("docs").unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            docs.push(p);
        }
    }
    docs.sort();
    docs
}

#[test]
fn the_scanner_finds_paths_and_ignores_urls() {
    let text = "see `src/a.rs`, (tests/b/) and bench/run.sh. Not https://x.org/src/c.rs nor mysrc/d.rs";
    assert_eq!(cited_paths(text), ["src/a.rs", "tests/b/", "bench/run.sh"]);
}

#[test]
fn readme_and_docs_name_only_files_that_exist() {
    let mut missing = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for p in cited_paths(&text) {
            checked += 1;
            if !Path::new(&p).exists() {
                missing.push(format!("{}: {p}", doc.display()));
            }
        }
    }
    assert!(checked > 20, "only {checked} paths found: the scanner is broken");
    assert!(missing.is_empty(), "the documentation names files that do not exist:\n{}", missing.join("\n"));
}
