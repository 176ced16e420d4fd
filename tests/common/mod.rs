//! Shared helpers for integration tests: where the binary and the reference Python live.
#![allow(dead_code)]

pub mod coop_fixture;
pub mod imagenet_fixture;
pub mod kernels;
pub mod mini;

use std::path::{Path, PathBuf};
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

/// Noisy 40×36 images whose dominant colour is the class (red, green, blue, yellow): learnable
/// in a few steps. `per_class` images of each, labels 0–3.
pub fn colour_images(per_class: usize, seed: u64) -> (Vec<image::RgbImage>, Vec<i64>) {
    let mut rng = clip_ast::rng::SplitMix64::new(seed);
    let colours = [[220, 30, 30], [30, 200, 40], [40, 40, 220], [230, 220, 30]];
    let mut out = (Vec::new(), Vec::new());
    for (label, colour) in colours.iter().enumerate() {
        for _ in 0..per_class {
            let img = image::RgbImage::from_fn(40, 36, |_, _| {
                let mut jitter = |c: u8| (f64::from(c) + rng.uniform(-60.0, 60.0)).clamp(0.0, 255.0) as u8;
                image::Rgb([jitter(colour[0]), jitter(colour[1]), jitter(colour[2])])
            });
            out.0.push(img);
            out.1.push(label as i64);
        }
    }
    out
}

/// A CSV file the tool wrote, parsed by the `csv` crate (not by the tool's own reader).
pub struct Csv {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Csv {
    pub fn read(path: &Path) -> Csv {
        let mut reader = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let header = reader.headers().unwrap().iter().map(str::to_string).collect();
        let rows = reader
            .records()
            .map(|r| r.unwrap_or_else(|e| panic!("{}: {e}", path.display())).iter().map(str::to_string).collect())
            .collect();
        Csv { header, rows }
    }

    /// The index of column `name`; panics naming the columns there are.
    pub fn col(&self, name: &str) -> usize {
        self.header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no `{name}` in {:?}", self.header))
    }

    /// Row `row`'s value in column `name`.
    pub fn get(&self, row: usize, name: &str) -> &str {
        &self.rows[row][self.col(name)]
    }

    /// Every row's value in column `name`.
    pub fn column(&self, name: &str) -> Vec<&str> {
        let i = self.col(name);
        self.rows.iter().map(|r| r[i].as_str()).collect()
    }
}

/// Files under `dir` (recursively), or nothing if it does not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| !e.file_type().is_dir())
        .map(walkdir::DirEntry::into_path)
        .collect()
}

/// Copy the tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
pub mod scratch;
