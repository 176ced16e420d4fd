//! Shared helpers for integration tests: where the binary and the reference Python live.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The venv interpreter with torch/open_clip, set by the Makefile; falls back to ./.venv.
pub fn python() -> PathBuf {
    std::env::var_os("CLIP_AST_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run a reference script from tests/ with the venv's python; panic with its stderr on failure.
pub fn run_reference(script: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(python())
        .arg(repo_root().join("tests").join(script))
        .args(args)
        .output()
        .expect("start reference python");
    assert!(out.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// The clip-ast binary cargo built for this test run.
pub fn clip_ast() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clip-ast"))
}
