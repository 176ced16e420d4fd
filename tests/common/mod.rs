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
