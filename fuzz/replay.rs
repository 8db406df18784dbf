//! Replays a fuzz target's seed corpus (`fuzz/corpus/NAME/`) as an ordinary test: every
//! file goes through the target's function, which must return without panicking; a panic
//! names the file. Included (`#[path]`) by each crate's `tests/fuzz_corpora.rs`, so
//! `cargo test` keeps every seed and every input that once found a bug passing.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The corpus `name`, from a crate whose manifest directory is `manifest_dir`.
pub fn corpus_dir(manifest_dir: &str, name: &str) -> PathBuf {
    let mut dir = Path::new(manifest_dir).to_path_buf();
    // Up to the workspace root (the directory holding `fuzz/`).
    while !dir.join("fuzz/corpus").is_dir() {
        assert!(dir.pop(), "no fuzz/corpus above {manifest_dir}");
    }
    dir.join("fuzz/corpus").join(name)
}

/// Runs `target` on every file of the corpus `name`.
pub fn replay(manifest_dir: &str, name: &str, target: impl Fn(&[u8])) {
    let dir = corpus_dir(manifest_dir, name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no seed", dir.display());
    let started = Instant::now();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
            panic!("{name}: {} fails", f.display());
        }
    }
    eprintln!("{name}: {} inputs in {:?}", files.len(), started.elapsed());
}
