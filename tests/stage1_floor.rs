//! Stage 1's floor on optimizer steps, its diagnostics, `select`'s warning about weak
//! statistics, and the crop-scale setting, through the command line. The below-eps fractions
//! are checked against PyTorch reading the saved AdamW state (`tests/ref_below_eps.py`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

struct Store {
    dir: tempfile::TempDir,
}

impl Store {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn run(&self, args: &[&str]) -> Output {
        common::clip_ast()
            .args(args)
            .args(["--store", self.path("store").to_str().unwrap(), "--threads", "1", "--quiet"])
            .output()
            .unwrap()
    }

    /// A stage that must succeed: its artifact directory and its stderr.
    fn stage(&self, args: &[&str]) -> (PathBuf, String) {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?} failed:\n{stderr}");
        (PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()), stderr)
    }
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// One shot of each of four colour classes (one batch of 4 < 32: one step per pass), mini model.
fn fixture() -> (Store, String, String) {
    let store = Store { dir: tempfile::tempdir().unwrap() };
    let (images, labels) = common::colour_images(6, 9);
    for (i, (img, label)) in images.iter().zip(labels).enumerate() {
        let dir = store.path("data").join(["red", "green", "blue", "yellow"][label as usize]);
        std::fs::create_dir_all(&dir).unwrap();
        img.save(dir.join(format!("{i:03}.png"))).unwrap();
    }
    let root = store.path("data");
    let split_args = ["split", "--dataset", "imagefolder", "--root", root.to_str().unwrap(), "--image-size", "32"];
    let (split, _) = store.stage(&[&split_args[..], &["--shots", "1", "--seed", "1"]].concat());
    let (weights, _) = store.stage(&["init-weights", "--preset", "mini", "--seed", "0"]);
    (store, split.to_str().unwrap().to_string(), weights.to_str().unwrap().to_string())
}

/// PyTorch's per-tensor fraction of `exp_avg_sq < eps` and the state's step.
fn reference(stage1: &Path) -> Value {
    let state = stage1.join("adamw.safetensors");
    let out = common::run_reference("ref_below_eps.py", &[state.as_os_str(), "1e-8".as_ref()]);
    serde_json::from_str(&out).unwrap()
}

fn log_rows(stage1: &Path) -> common::Csv {
    common::Csv::read(&stage1.join("log.csv"))
}

#[test]
fn min_steps_floor_diagnostics_and_the_select_warning() {
    let (store, split, weights) = fixture();
    let stage1 =
        |extra: &[&str]| store.stage(&[&["stage1", "--split", &split, "--weights", &weights], extra].concat()).0;

    // The paper's one epoch: a single step.
    let one = stage1(&[]);
    assert_eq!(log_rows(&one).rows.len(), 1);
    let manifest = json(&one.join("manifest.json"));
    assert_eq!(manifest["metrics"]["steps"], 1);
    assert!(manifest["params"]["train"].get("min_steps").is_none(), "the default stays out of the key");

    // --min-steps 8: eight passes of one step, each shuffled and augmented anew.
    let eight = stage1(&["--min-steps", "8"]);
    let log = log_rows(&eight);
    assert_eq!(log.column("step"), ["0", "1", "2", "3", "4", "5", "6", "7"]);
    assert_eq!(log.column("epoch"), ["0", "1", "2", "3", "4", "5", "6", "7"]);
    let manifest = json(&eight.join("manifest.json"));
    assert_eq!((&manifest["metrics"]["steps"], &manifest["params"]["train"]["min_steps"]), (&8.into(), &8.into()));
    assert_ne!(one, eight, "another key");

    for (dir, steps) in [(&one, 1), (&eight, 8)] {
        let want = reference(dir);
        assert_eq!(want["step"], f64::from(steps), "the optimizer ran {steps} step(s)");
        let got = json(&dir.join("diagnostics.json"));
        assert_eq!((&got["steps"], &got["eps"]), (&steps.into(), &1e-8.into()));
        let (want, got) = (want["tensors"].as_object().unwrap(), got["tensors"].as_object().unwrap());
        assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>());
        for (name, w) in want {
            let (w, g) = (w.as_f64().unwrap(), got[name].as_f64().unwrap());
            assert!((w - g).abs() < 1e-6, "{name}: PyTorch {w}, stage 1 {g}");
        }
        assert!(want.values().any(|f| f.as_f64().unwrap() > 0.0), "some entries below eps: the check can fail");
    }

    // Selecting from the one-step run warns, naming the remedy; the fractions are copied.
    let (selection, stderr) = store.stage(&["select", "--stage1", one.to_str().unwrap(), "--k", "3"]);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("1 optimizer step(s)") && warnings[0].contains("--min-steps"), "{stderr}");
    let chosen = json(&selection.join("selection.json"));
    assert_eq!(chosen["stage1_steps"], 1);
    let diagnostics = json(&one.join("diagnostics.json"));
    let mut ranked = 0;
    for block in chosen["blocks"].as_array().unwrap() {
        for t in block["tensors"].as_array().unwrap() {
            assert_eq!(t["below_eps"], diagnostics["tensors"][t["name"].as_str().unwrap()], "{t}");
            ranked += 1;
        }
    }
    assert_eq!(ranked, diagnostics["tensors"].as_object().unwrap().len());
    assert_eq!(chosen["warnings"].as_array().unwrap().len(), 1);
    // Cached, it warns again.
    let (_, again) = store.stage(&["select", "--stage1", one.to_str().unwrap(), "--k", "3"]);
    assert!(again.lines().any(|l| l.starts_with("warning:")), "{again}");
    // The random rule reads no statistics; eight steps are enough steps.
    let (_, random) = store.stage(&["select", "--stage1", one.to_str().unwrap(), "--score", "random"]);
    assert!(!random.contains("warning:"), "{random}");
    let (selection, stderr) = store.stage(&["select", "--stage1", eight.to_str().unwrap(), "--k", "3"]);
    assert!(!stderr.contains("optimizer step(s)"), "{stderr}");
    assert_eq!(json(&selection.join("selection.json"))["stage1_steps"], 8);
}

#[test]
fn crop_scale_is_in_the_key_and_checked() {
    let (store, split, weights) = fixture();
    let base = ["stage1", "--split", &split, "--weights", &weights];
    let (default, _) = store.stage(&base);
    let (same, _) = store.stage(&[&base[..], &["--crop-scale", "0.08,1.0"]].concat());
    assert_eq!(default, same, "the default spelled out is the same artifact");
    let (cropped, _) = store.stage(&[&base[..], &["--crop-scale", "0.5,1"]].concat());
    assert_ne!(default, cropped);
    assert_eq!(json(&cropped.join("manifest.json"))["params"]["train"]["crop_scale"], serde_json::json!([0.5, 1.0]));
    let checkpoint = |dir: &Path| std::fs::read(dir.join("checkpoint.safetensors")).unwrap();
    assert_ne!(checkpoint(&default), checkpoint(&cropped), "other crops, other batches, other weights");

    let artifacts = common::files_under(&store.path("store")).len();
    for (bad, why) in [("0,1", "must satisfy 0 < MIN ≤ MAX ≤ 1"), ("0.5", "must be two numbers MIN,MAX")] {
        for stage in [&base[..], &["stage2", "--split", &split, "--weights", &weights, "--selection", "x"]] {
            let out = store.run(&[stage, &["--crop-scale", bad]].concat());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(
                stderr.starts_with("error: ") && stderr.contains(why) && stderr.contains("--crop-scale"),
                "{stderr}"
            );
        }
    }
    assert_eq!(common::files_under(&store.path("store")).len(), artifacts, "nothing written");
}
