//! The stage commands end to end through the binary on a generated image-folder dataset and
//! the mini preset: one path per stage on stdout, caching, bit-identical reruns, audit, errors.

mod common;

use std::path::{Path, PathBuf};

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
}

/// Four classes of noisy single-colour images, 10 each, in class folders.
fn dataset() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let data = root.join("colours");
    let colours =
        [("red", [220u8, 30, 30]), ("green", [30, 200, 40]), ("blue", [40, 40, 220]), ("yellow", [230, 220, 30])];
    let mut rng = clip_ast::rng::SplitMix64::new(7);
    for (name, c) in colours {
        std::fs::create_dir_all(data.join(name)).unwrap();
        for i in 0..10 {
            let img = image::RgbImage::from_fn(48, 40, |_, _| {
                let mut j = |v: u8| (f64::from(v) + rng.uniform(-50.0, 50.0)).clamp(0.0, 255.0) as u8;
                image::Rgb([j(c[0]), j(c[1]), j(c[2])])
            });
            img.save(data.join(name).join(format!("{i:02}.png"))).unwrap();
        }
    }
    Env { _dir: dir, root, data }
}

/// Run a stage command; return (stdout line as a path, stderr).
fn stage(env: &Env, store: &str, args: &[&str]) -> (PathBuf, String) {
    let out = common::clip_ast()
        .args(args)
        .args(["--store", env.root.join(store).to_str().unwrap(), "--threads", "1"])
        .env("XDG_CACHE_HOME", env.root.join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one line on stdout, got {stdout:?}");
    let path = PathBuf::from(stdout.trim());
    assert!(path.join("manifest.json").is_file(), "{} is not an artifact", path.display());
    (path, stderr)
}

fn fails(env: &Env, store: &str, args: &[&str], needle: &str) {
    let out = common::clip_ast()
        .args(args)
        .args(["--store", env.root.join(store).to_str().unwrap()])
        .env("XDG_CACHE_HOME", env.root.join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains(needle), "`{needle}` not in {stderr}");
}

fn outputs(dir: &Path) -> serde_json::Value {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    manifest["outputs"].clone()
}

struct Run {
    weights: PathBuf,
    split: PathBuf,
    stage1: PathBuf,
    selection: PathBuf,
    stage2: PathBuf,
    eval: PathBuf,
}

fn full_run(env: &Env, store: &str) -> (Run, Vec<String>) {
    let mut logs = Vec::new();
    let mut go = |args: &[&str]| {
        let (p, e) = stage(env, store, args);
        logs.push(e);
        p
    };
    let weights = go(&["init-weights", "--preset", "mini", "--seed", "3"]);
    let data = env.data.to_str().unwrap();
    let split =
        go(&["split", "--dataset", "imagefolder", "--root", data, "--shots", "4", "--seed", "1", "--image-size", "32"]);
    let (s, w) = (split.to_str().unwrap().to_string(), weights.to_str().unwrap().to_string());
    let stage1 = go(&["stage1", "--split", &s, "--weights", &w, "--lr", "3e-4", "--epochs", "4", "--batch-size", "8"]);
    let selection = go(&["select", "--stage1", stage1.to_str().unwrap(), "--k", "6"]);
    let stage2 = go(&[
        "stage2",
        "--split",
        &s,
        "--weights",
        &w,
        "--selection",
        selection.to_str().unwrap(),
        "--lr",
        "1e-3",
        "--epochs",
        "4",
        "--warmup-epochs",
        "1",
        "--batch-size",
        "8",
        "--lmbd",
        "0.1",
    ]);
    let eval = go(&["eval", "--split", &s, "--weights", &w, "--stage2", stage2.to_str().unwrap()]);
    (Run { weights, split, stage1, selection, stage2, eval }, logs)
}

#[test]
fn stages_chain_cache_rerun_and_audit() {
    let env = dataset();
    let (run, logs) = full_run(&env, "store");
    for (dir, kind) in [
        (&run.weights, "weights"),
        (&run.split, "split"),
        (&run.stage1, "stage1"),
        (&run.selection, "selection"),
        (&run.stage2, "stage2"),
        (&run.eval, "eval"),
    ] {
        assert!(dir.starts_with(env.root.join("store").join(kind)), "{} not a {kind} artifact", dir.display());
    }
    assert!(logs.iter().all(|l| !l.contains("(cached)")), "first run computes everything");

    // The selection file ranks all 12 tensors of all 8 blocks and chooses 6 of each.
    let selection: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.selection.join("selection.json")).unwrap()).unwrap();
    assert_eq!(selection["blocks"].as_array().unwrap().len(), 8);
    assert_eq!(selection["chosen"].as_array().unwrap().len(), 48);

    let metrics = common::Csv::read(&run.eval.join("metrics.csv"));
    assert_eq!(
        metrics.header,
        [
            "dataset",
            "shots",
            "seed",
            "subsample",
            "method",
            "n",
            "acc",
            "macro_acc",
            "base_acc",
            "new_acc",
            "hm",
            "val_acc",
            "val_base_acc"
        ]
    );
    assert_eq!(metrics.rows.len(), 1);
    assert_eq!(&metrics.rows[0][..5], &["imagefolder", "4", "1", "all", "clip-ast/inv-sqrt-v"]);
    let acc: f64 = metrics.get(0, "acc").parse().unwrap();
    assert!(acc > 0.25, "tuned accuracy {acc} not above chance");
    assert_eq!(common::Csv::read(&run.eval.join("per_class.csv")).rows.len(), 4);

    // Second run in the same store: every stage cached, same paths.
    let (again, logs) = full_run(&env, "store");
    assert!(logs.iter().all(|l| l.contains("(cached)")), "{logs:?}");
    assert_eq!(again.eval, run.eval);

    // A fresh store recomputes everything to bit-identical files (CPU, same thread count).
    let (fresh, _) = full_run(&env, "fresh");
    for (a, b) in [
        (&run.split, &fresh.split),
        (&run.stage1, &fresh.stage1),
        (&run.selection, &fresh.selection),
        (&run.stage2, &fresh.stage2),
        (&run.eval, &fresh.eval),
    ] {
        assert_eq!(a.file_name(), b.file_name(), "same key in both stores");
        assert_eq!(outputs(a), outputs(b), "{} differs between runs", a.display());
    }

    // Audit: clean, then a flipped byte is named.
    let audit =
        common::clip_ast().args(["audit", "--store", env.root.join("store").to_str().unwrap()]).output().unwrap();
    assert!(audit.status.success(), "{}", String::from_utf8_lossy(&audit.stdout));
    let delta = run.stage2.join("delta.safetensors");
    let mut bytes = std::fs::read(&delta).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&delta, bytes).unwrap();
    let audit =
        common::clip_ast().args(["audit", "--store", env.root.join("store").to_str().unwrap()]).output().unwrap();
    assert!(!audit.status.success());
    assert!(String::from_utf8_lossy(&audit.stdout).contains("delta.safetensors"));

    // Bad input.
    let (s, w, l) = (run.split.to_str().unwrap(), run.weights.to_str().unwrap(), run.selection.to_str().unwrap());
    fails(&env, "store", &["stage2", "--split", s, "--weights", w, "--selection", l, "--lmbd", "-1"], "--lmbd -1");
    let (other, _) = stage(&env, "store", &["init-weights", "--preset", "mini", "--seed", "4"]);
    fails(
        &env,
        "store",
        &["stage2", "--split", s, "--weights", other.to_str().unwrap(), "--selection", l],
        "other weights",
    );
    let (clamped, log) = stage(&env, "store", &["select", "--stage1", run.stage1.to_str().unwrap(), "--k", "20"]);
    assert!(log.contains("clamped"), "{log}");
    let clamped: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(clamped.join("selection.json")).unwrap()).unwrap();
    assert_eq!(clamped["chosen"].as_array().unwrap().len(), 96);
    fails(&env, "store", &["select", "--stage1", run.stage1.to_str().unwrap(), "--score", "biggest"], "biggest");
    fails(&env, "store", &["select", "--stage1", w], "expected kind `stage1`");
}
