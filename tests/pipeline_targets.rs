//! `[eval] targets` end to end: a model adapted on a fake ImageNet evaluated on two of its
//! variants. Adding targets reuses every training artifact (dry-run counts), gives one results
//! row per (point, target) and a mean row in the summary; a second run computes nothing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::Csv;
use common::imagenet_fixture::{R_CLASSES, R_IMAGES, data};

const PIPELINE: &str = r#"name = "targets"
method = ["zero-shot", "clip-ast"]

[weights]
init = { preset = "mini", seed = 0 }

[data]
dataset = "imagenet"
root = "${DATA}"
shots = 1
seed = [1, 2]

[stage1]
epochs = 1
batch_size = 4

[select]
k = 2

[stage2]
epochs = 1
warmup_epochs = 0
batch_size = 4
"#;

const TARGETS: &str = r#"
[eval]
targets = [
    { dataset = "imagenet-sketch", root = "${DATA}" },
    { dataset = "ImageNet-R", root = "${DATA}" },
]
"#;

fn cmd(dir: &Path, data: &Path, args: &[&str]) -> Command {
    let mut c = common::clip_ast();
    c.args(args)
        .arg("--store")
        .arg(dir.join("store"))
        .current_dir(dir)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env("DATA", data)
        .env("WEIGHTS", dir.join("ViT-B-16.pt"));
    c
}

/// Run; must succeed without a warning (a warning is a predicted key the stage did not make).
fn ok(dir: &Path, data: &Path, args: &[&str]) -> (String, String) {
    let out = cmd(dir, data, args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert!(out.status.success(), "{args:?} failed:\n{stderr}\n{stdout}");
    assert!(!stderr.contains("warning"), "{args:?}:\n{stderr}");
    (stdout, stderr)
}

/// `--dry-run` counts per stage kind: [to-run, cached, total, naive].
fn dry(dir: &Path, data: &Path, pipeline: &str) -> BTreeMap<String, [usize; 4]> {
    let (stdout, _) = ok(dir, data, &["run", pipeline, "--dry-run"]);
    common::scratch::dry_counts(&stdout)
}

#[test]
fn shipped_domain_generalisation_dry_run_counts_target_splits_and_evaluations() {
    let data = data();
    let dir = data.tmp.path();
    // A dry run only hashes the weights file (the key of an import is its content hash).
    std::fs::write(dir.join("ViT-B-16.pt"), "stand-in for OpenAI's checkpoint").unwrap();
    let pipeline = common::repo_root().join("pipelines/domain-generalisation.toml");
    let counts = dry(dir, &data.root, pipeline.to_str().unwrap());
    // 2 methods × 3 seeds: 3 ImageNet splits + 4 variant splits shared by all; 3 trained
    // models; evaluations: 6 on ImageNet, 3 × 4 of the trained models and 4 zero-shot ones.
    assert_eq!(counts["weights"], [1, 0, 1, 6]);
    assert_eq!(counts["split"], [7, 0, 7, 30]);
    for kind in ["stage1", "selection", "stage2"] {
        assert_eq!(counts[kind], [3, 0, 3, 3], "{kind}");
    }
    assert_eq!(counts["eval"], [22, 0, 22, 30]);
    assert!(!dir.join("store").exists(), "a dry run writes nothing");
}

/// The shipped file's own grid, read with a plain TOML parser: (methods, seeds, targets).
fn grid_of(pipeline: &Path) -> (usize, usize, usize) {
    let text = std::fs::read_to_string(pipeline).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let len = |v: &toml::Value| v.as_array().map_or(1, Vec::len);
    let data = doc["data"].as_table().unwrap();
    // Only methods and seeds vary in these files; a new axis must be counted here too.
    assert!(data.iter().all(|(k, v)| k == "seed" || !v.is_array()), "{data:?}");
    let targets = doc["eval"]["targets"].as_array().unwrap().len();
    (len(&doc["method"]), len(&data["seed"]), targets)
}

/// `pipeline` with `[eval]` and everything after it cut off.
fn without_targets(pipeline: &Path, dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(pipeline).unwrap();
    let cut = dir.join("no-targets.toml");
    std::fs::write(&cut, &text[..text.find("\n[eval]").unwrap()]).unwrap();
    cut
}

#[test]
fn shipped_cross_dataset_dry_run_counts_one_eval_per_target_and_model() {
    let data = data();
    let dir = data.tmp.path();
    common::coop_fixture::write(&data.root);
    std::fs::write(dir.join("ViT-B-16.pt"), "stand-in for OpenAI's checkpoint").unwrap();
    let pipeline = common::repo_root().join("pipelines/cross-dataset.toml");
    let (methods, seeds, targets) = grid_of(&pipeline);
    assert_eq!((methods, seeds, targets), (2, 3, 10), "the papers' protocol");
    let (stdout, _) = ok(dir, &data.root, &["run", pipeline.to_str().unwrap(), "--dry-run"]);
    let points = methods * seeds;
    assert!(stdout.starts_with(&format!("cross-dataset: {points} grid point(s)")), "{stdout}");
    let counts = dry(dir, &data.root, pipeline.to_str().unwrap());
    // Zero-shot and CLIP-AST share each seed's ImageNet split; each target's split is shared by
    // every point. Evaluations: every point on ImageNet, each trained model (one per seed) on
    // every target, and the one zero-shot model on every target.
    let trained = seeds;
    assert_eq!(counts["weights"], [1, 0, 1, points]);
    assert_eq!(counts["split"], [seeds + targets, 0, seeds + targets, points * (1 + targets)]);
    let evals = points + (trained + 1) * targets;
    assert_eq!(counts["eval"], [evals, 0, evals, points * (1 + targets)]);
    // Targets add no training: the same file without them trains exactly as much.
    let plain = dry(dir, &data.root, without_targets(&pipeline, dir).to_str().unwrap());
    for kind in ["stage1", "selection", "stage2"] {
        assert_eq!(counts[kind], [trained, 0, trained, trained], "{kind}");
        assert_eq!(counts[kind], plain[kind], "{kind}");
    }
    assert!(!dir.join("store").exists(), "a dry run writes nothing");
}

#[test]
fn targets_reuse_training_give_rows_per_target_and_rerun_from_cache() {
    let data = data();
    let dir = data.tmp.path();
    std::fs::write(dir.join("plain.toml"), PIPELINE).unwrap();
    std::fs::write(dir.join("targets.toml"), format!("{PIPELINE}{TARGETS}")).unwrap();
    let run =
        |name: &str, out: &str| ok(dir, &data.root, &["run", name, "--out", out, "--jobs", "2", "--threads", "1"]).1;
    run("plain.toml", "plain");

    // With targets, every training artifact is the plain run's: only the two target splits
    // and the evaluations on them are new (2 trained models × 2 targets + zero-shot × 2).
    let counts = dry(dir, &data.root, "targets.toml");
    assert_eq!(counts["split"], [2, 2, 4, 12]);
    for kind in ["weights", "stage1", "selection", "stage2"] {
        assert_eq!(counts[kind][..3], [0, counts[kind][2], counts[kind][2]], "{kind}");
    }
    assert_eq!(counts["stage2"][2], 2);
    assert_eq!(counts["eval"], [6, 4, 10, 12]);

    let stderr = run("targets.toml", "out");
    assert!(stderr.contains("8 stage(s) computed"), "{stderr}");
    let stderr = run("targets.toml", "out");
    assert!(stderr.contains("0 stage(s) computed"), "{stderr}");
    let counts = dry(dir, &data.root, "targets.toml");
    assert!(counts.values().all(|c| c[0] == 0), "{counts:?}");

    let results = Csv::read(&dir.join("out/results.csv"));
    // Zero-shot seed 2's target evaluations are seed 1's (the same model), and each point
    // still has its rows on them, so every run has its target mean.
    let rows: Vec<(&str, &str, &str)> = (0..results.rows.len())
        .map(|i| (results.get(i, "method"), results.get(i, "data.seed"), results.get(i, "target")))
        .collect();
    let expected = [
        ("zero-shot", "1", ""),
        ("zero-shot", "1", "imagenet-sketch"),
        ("zero-shot", "1", "imagenet-r"),
        ("zero-shot", "2", ""),
        ("zero-shot", "2", "imagenet-sketch"),
        ("zero-shot", "2", "imagenet-r"),
        ("clip-ast", "1", ""),
        ("clip-ast", "1", "imagenet-sketch"),
        ("clip-ast", "1", "imagenet-r"),
        ("clip-ast", "2", ""),
        ("clip-ast", "2", "imagenet-sketch"),
        ("clip-ast", "2", "imagenet-r"),
    ];
    assert_eq!(rows, expected);
    let store = dir.join("store");
    let manifest = |key: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(store.join("eval").join(key).join("manifest.json")).unwrap())
            .unwrap()
    };
    let r_images: usize = R_IMAGES.iter().sum();
    for (i, (_, _, target)) in expected.iter().enumerate() {
        let n: usize = results.get(i, "n").parse().unwrap();
        match *target {
            // The fake ImageNet has one val (test) image per class; Sketch two per class.
            "" => assert_eq!(n, 6),
            "imagenet-sketch" => assert_eq!(n, 12),
            _ => assert_eq!(n, r_images, "R over its {} classes", R_CLASSES.len()),
        }
        // A target row's model is its point's: the same stage-2 delta as the row above it.
        let own = (0..=i).rev().find(|&j| expected[j].2.is_empty()).unwrap();
        let m = manifest(results.get(i, "eval"));
        assert_eq!(m["inputs"]["stage2"], manifest(results.get(own, "eval"))["inputs"]["stage2"], "row {i}");
        assert_eq!(results.get(i, "trainable_params"), results.get(own, "trainable_params"));
    }

    let summary = Csv::read(&dir.join("out/summary.csv"));
    let find = |method: &str, target: &str| {
        (0..summary.rows.len())
            .find(|&i| summary.get(i, "method") == method && summary.get(i, "target") == target)
            .unwrap_or_else(|| panic!("no summary row {method} {target}"))
    };
    let acc = |i: usize| -> f64 { results.get(i, "acc").parse().unwrap() };
    let mean = find("clip-ast", "mean");
    assert_eq!(summary.get(mean, "runs"), "2");
    let expected_mean = ((acc(7) + acc(8)) / 2.0 + (acc(10) + acc(11)) / 2.0) / 2.0;
    let got: f64 = summary.get(mean, "acc_mean").parse().unwrap();
    assert!((got - expected_mean).abs() < 1e-12, "{got} vs {expected_mean}");
    let sketch = find("clip-ast", "imagenet-sketch");
    let got: f64 = summary.get(sketch, "acc_mean").parse().unwrap();
    assert!((got - (acc(7) + acc(10)) / 2.0).abs() < 1e-12);
    assert_eq!(summary.get(find("zero-shot", "mean"), "runs"), "2");
    for i in [1, 2] {
        assert_eq!(results.get(i, "eval"), results.get(i + 3, "eval"), "zero-shot's target evaluations are shared");
    }
    assert_eq!(summary.get(find("clip-ast", ""), "runs"), "2");
}

#[test]
fn a_subset_target_of_a_model_not_adapted_on_every_class_is_one_error() {
    let data = data();
    let dir = data.tmp.path();
    let text = format!("{PIPELINE}{TARGETS}").replace("shots = 1\n", "shots = 1\nclasses = \"base\"\n");
    std::fs::write(dir.join("base.toml"), text).unwrap();
    let out = cmd(dir, &data.root, &["run", "base.toml", "--dry-run"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: base.toml:"), "{stderr}");
    for needle in ["imagenet-sketch", "subset of imagenet", "classes = base"] {
        assert!(stderr.contains(needle), "`{needle}` not in {stderr}");
    }
    let bad = format!("{PIPELINE}[eval]\ntargets = [{{ dataset = \"imagenet-a\", rot = \"x\" }}]\n");
    std::fs::write(dir.join("bad.toml"), bad).unwrap();
    let out = cmd(dir, &data.root, &["run", "bad.toml", "--dry-run"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: bad.toml:") && stderr.contains("unknown key `rot` in [eval] targets"),
        "{stderr}"
    );
}
