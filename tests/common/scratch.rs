//! The pipeline tests' scratch folder and fixtures: a temp dir with its own dataset, hash cache,
//! stores and results, the MINI sweep, and readers of what a run leaves behind.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use clip_ast::rng::SplitMix64;

/// The signal a crash point (or `Child::kill`) ends a run with.
pub const SIGKILL: i32 = 9;

/// Two seeds × K 3/6 × λ 0/1 on four classes: 1 weights, 2 splits, 2 stage-1 runs,
/// 4 selections, 8 stage-2 runs, 8 evaluations.
pub const MINI: &str = r#"name = "mini"

[weights]
init = { preset = "mini", seed = 0 }

[data]
dataset = "imagefolder"
root = "${DATA}"
shots = 2
seed = [1, 2]

[stage1]
lr = 1e-4
epochs = 1
batch_size = 8

[select]
k = [3, 6]

[stage2]
lr = 1e-3
epochs = 2
warmup_epochs = 1
batch_size = 8
lambda = [0, 1]
"#;

pub const MINI_STAGES: usize = 25;
pub const MINI_EVALS: usize = 8;

/// A temp folder with its own dataset, hash cache, stores and results.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn p(&self, rel: &str) -> String {
        self.path(rel).to_str().unwrap().to_string()
    }

    /// The binary with this scratch's hash cache, `$DATA` and `$WEIGHTS`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = super::clip_ast();
        // In the scratch folder, so a default `results/` would land there.
        c.args(args)
            .current_dir(self.dir.path())
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env("DATA", self.path("data"))
            .env("WEIGHTS", self.path("ViT-B-16.pt"));
        c
    }

    /// Run; must succeed without a warning (a warning means the runner's predicted key for a
    /// stage differs from the stage's own). Returns (stdout, stderr).
    pub fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.cmd(args).output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "{args:?} failed:\n{stderr}\n{stdout}");
        assert!(!stderr.contains("warning"), "{args:?}:\n{stderr}");
        (stdout, stderr)
    }

    /// Run; must fail with one `error: ...` line holding every needle. Returns stdout.
    pub fn fails(&self, cmd: &mut Command, needles: &[&str]) -> String {
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "should fail: {cmd:?}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "`{needle}` not in {stderr}");
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn write(&self, rel: &str, text: &str) -> String {
        std::fs::write(self.path(rel), text).unwrap();
        self.p(rel)
    }

    /// `--dry-run` counts per stage kind: [to-run, cached, total, naive].
    pub fn dry(&self, pipeline: &str, store: &str) -> BTreeMap<String, [usize; 4]> {
        let (stdout, _) = self.ok(&["run", pipeline, "--dry-run", "--store", store]);
        dry_counts(&stdout)
    }

    pub fn audit_clean(&self, store: &str) {
        let out = self.cmd(&["audit", "--store", store]).output().unwrap();
        assert!(
            out.status.success(),
            "audit of {store}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Four classes of noisy single-colour images, 10 each, in class folders.
pub fn colour_images(dir: &Path) {
    let colours =
        [("red", [220u8, 30, 30]), ("green", [30, 200, 40]), ("blue", [40, 40, 220]), ("yellow", [230, 220, 30])];
    let mut rng = SplitMix64::new(7);
    for (name, c) in colours {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        for i in 0..10 {
            let img = image::RgbImage::from_fn(48, 40, |_, _| {
                let mut j = |v: u8| (f64::from(v) + rng.uniform(-50.0, 50.0)).clamp(0.0, 255.0) as u8;
                image::Rgb([j(c[0]), j(c[1]), j(c[2])])
            });
            img.save(dir.join(name).join(format!("{i:02}.png"))).unwrap();
        }
    }
}

/// Progress lines `[ n/N] kind key12 (computed, 1.2s) label` → (kind, key12, computed).
pub fn stage_lines(stderr: &str) -> Vec<(String, String, bool)> {
    stderr
        .lines()
        .filter(|l| l.starts_with('['))
        .map(|l| {
            let f: Vec<&str> = l.split(']').nth(1).unwrap().split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f[2].starts_with("(computed"))
        })
        .collect()
}

/// Every artifact in a store: (kind, key, manifest).
pub fn artifacts(store: &Path) -> Vec<(String, String, serde_json::Value)> {
    let mut out = Vec::new();
    for kind in ["weights", "split", "stage1", "selection", "stage2", "eval"] {
        let Ok(entries) = std::fs::read_dir(store.join(kind)) else { continue };
        let mut dirs: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        dirs.sort();
        for dir in dirs {
            let manifest = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
            out.push((kind.to_string(), dir.file_name().unwrap().to_str().unwrap().to_string(), manifest));
        }
    }
    out
}

/// Names in `STORE/tmp/`: work in progress, or left by a killed run.
pub fn temp_dirs(store: &Path) -> BTreeSet<String> {
    std::fs::read_dir(store.join("tmp"))
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The counts table of `--dry-run`'s output, per stage kind: [to-run, cached, total, naive]. It
/// follows the first line and its header and ends with its `all` line; the estimate and choice
/// lines come after it.
pub fn dry_counts(stdout: &str) -> BTreeMap<String, [usize; 4]> {
    let mut counts = BTreeMap::new();
    for line in stdout.lines().skip(2) {
        let f: Vec<&str> = line.split_whitespace().collect();
        counts.insert(f[0].to_string(), [1, 2, 3, 4].map(|i| f[i].parse().unwrap()));
        if f[0] == "all" {
            break;
        }
    }
    counts
}
