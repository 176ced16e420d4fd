//! pipelines/demo.toml at a tiny size: the same file with fewer images, epochs, shots and
//! seeds, run by `clip-ast run` as `make demo` runs it. Checks the protocol the demo claims to
//! follow, on the artifacts it made:
//! - the foundation's pretraining images share nothing with any few-shot train, val or test
//!   image (pools);
//! - base-to-novel adaptation never saw a new-class image (every split reachable from its
//!   stage-2 runs, the foundation's aside, holds base classes only);
//! - the chosen rows are the best on validation, so no test metric can have chosen them;
//! - every label has its rows in both protocols and the domain-generalisation table, and a
//!   second run computes nothing and rewrites the same files byte for byte.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

const BASE_CLASSES: [&str; 5] = ["T-shirt/top", "trouser", "pullover", "dress", "coat"];

/// `text` with `from` replaced by `to` everywhere, failing if the demo file no longer holds `from`.
fn shrink(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "pipelines/demo.toml no longer holds `{from}`; update this test");
    text.replace(from, to)
}

fn tiny_demo(dir: &Path) -> PathBuf {
    let mut text = std::fs::read_to_string(common::repo_root().join("pipelines/demo.toml")).unwrap();
    for (from, to) in [
        ("shots = [1, 4, 16]", "shots = [1, 4]"),
        ("seed = [1, 2, 3]", "seed = [1, 2]"),
        ("shots = 1000", "shots = 40"),
        ("epochs = 6", "epochs = 1"),
        ("test_per_class = 200", "test_per_class = 10"),
        ("test_per_class = 100", "test_per_class = 10"),
        ("warmup_epochs = 2", "warmup_epochs = 1"),
        ("epochs = 15", "epochs = 2"),
        ("data.shots = 16", "data.shots = 4"),
    ] {
        text = shrink(&text, from, to);
    }
    let pipeline = dir.join("demo.toml");
    std::fs::write(&pipeline, text).unwrap();
    pipeline
}

fn manifest(store: &Path, kind: &str, key: &str) -> Value {
    let path = store.join(kind).join(key).join("manifest.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn split_json(store: &Path, key: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(store.join("split").join(key).join("split.json")).unwrap()).unwrap()
}

/// The artifact kind an input name points at (`split_new` is a split, `like` a selection).
fn kind_of(input: &str) -> &str {
    match input {
        "split" | "split_new" => "split",
        "like" | "selection" => "selection",
        other => other,
    }
}

/// Every split key reachable from `(kind, key)` through its inputs, not through the weights
/// (the foundation's own pretraining split is not adaptation data).
fn adaptation_splits(store: &Path, kind: &str, key: &str, found: &mut BTreeSet<String>) {
    if kind == "split" {
        found.insert(key.to_string());
        return;
    }
    let m = manifest(store, kind, key);
    for (input, value) in m["inputs"].as_object().unwrap() {
        if input != "weights" {
            adaptation_splits(store, kind_of(input), value.as_str().unwrap(), found);
        }
    }
}

/// `(image path, class name)` of a split.json list.
fn entries(split: &Value, list: &str) -> Vec<(String, String)> {
    split[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d[0].as_str().unwrap().to_string(), d[2].as_str().unwrap().to_string()))
        .collect()
}

fn run(pipeline: &Path, dir: &Path) -> (String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clip-ast"))
        .arg("run")
        .arg(pipeline)
        .args(["--jobs", "2", "--threads", "1", "--out"])
        .arg(dir.join("out"))
        .arg("--store")
        .arg(dir.join("store"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "demo failed: {stderr}\n{stdout}");
    (stdout, stderr)
}

#[test]
fn tiny_demo_follows_its_protocol_and_reports_every_method() {
    let fashion = Path::new("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
    assert!(fashion.is_file(), "install Debian's dataset-fashion-mnist (make test does)");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pipeline = tiny_demo(dir);
    let (stdout, _) = run(&pipeline, dir);
    let (out, store) = (dir.join("out"), dir.join("store"));
    let results = common::Csv::read(&out.join("results.csv"));

    // Pools: the foundation's pretraining images against every other split's images.
    let weights: BTreeSet<String> = results
        .column("eval")
        .into_iter()
        .map(|e| manifest(&store, "eval", e)["inputs"]["weights"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(weights.len(), 1, "one foundation");
    let foundation = manifest(&store, "weights", weights.iter().next().unwrap());
    let pretrain_key = foundation["inputs"]["split"].as_str().expect("a pretrained foundation has a split").to_string();
    let pretrain = split_json(&store, &pretrain_key);
    assert_eq!(pretrain["pool"], "pretrain");
    let pretrained: BTreeSet<String> = entries(&pretrain, "train").into_iter().map(|(p, _)| p).collect();
    assert_eq!(pretrained.len(), 400, "40 images per class");
    let mut others = 0;
    for entry in std::fs::read_dir(store.join("split")).unwrap() {
        let key = entry.unwrap().file_name().to_string_lossy().into_owned();
        if key == pretrain_key || key.starts_with('.') || !store.join("split").join(&key).join("split.json").is_file() {
            continue;
        }
        let split = split_json(&store, &key);
        for list in ["train", "val", "test"] {
            let shared: Vec<String> =
                entries(&split, list).into_iter().map(|(p, _)| p).filter(|p| pretrained.contains(p)).collect();
            assert!(shared.is_empty(), "split {key}: {list} images the foundation pretrained on: {shared:?}");
        }
        others += 1;
    }
    assert!(others >= 8, "few-shot, base/new and target splits were checked ({others})");

    // Base-to-novel adaptation: every split behind a base-to-novel stage-2 run holds base
    // classes only, in its train and val lists.
    let (classes, method, eval) = (results.col("data.classes"), results.col("method"), results.col("eval"));
    let mut trained = 0;
    for row in &results.rows {
        if row[classes] != "base-to-novel" || ["zero-shot", "linear-probe"].contains(&row[method].as_str()) {
            continue;
        }
        let stage2 = manifest(&store, "eval", &row[eval])["inputs"]["stage2"].as_str().unwrap().to_string();
        let mut splits = BTreeSet::new();
        adaptation_splits(&store, "stage2", &stage2, &mut splits);
        assert!(!splits.is_empty());
        for key in splits {
            let split = split_json(&store, &key);
            assert_eq!(split["subsample"], "base", "split {key} behind {}", row[eval]);
            for list in ["train", "val"] {
                for (path, class) in entries(&split, list) {
                    assert!(BASE_CLASSES.contains(&class.as_str()), "{} adapted on {path} ({class})", row[eval]);
                }
            }
        }
        trained += 1;
    }
    assert_eq!(trained, 6 * 3 * 2 * 2, "6 trained base-to-novel variants x 3 rates x 2 shot counts x 2 seeds");

    // Every all-class model but the probe that was scored on test has its row on each target
    // rendering, the zero-shot ones included (one evaluation per target serves every split;
    // each point has its rows). With `[choose] test = "chosen"` those are the chosen ones: one
    // of the three learning rates of each trained model, the other two scored on val only.
    let all_class =
        |r: usize| results.get(r, "data.classes") == "all" && results.get(r, "data.rendering") == "original";
    for target in ["fashion-mnist/rotated", "fashion-mnist/low-contrast"] {
        for m in ["zero-shot", "clip-ast", "random-params", "full-ft"] {
            let own = |scored: bool| {
                (0..results.rows.len())
                    .filter(|&r| all_class(r) && results.get(r, "target").is_empty() && results.get(r, "method") == m)
                    .filter(|&r| results.get(r, "acc").is_empty() != scored)
                    .count()
            };
            let on_target = (0..results.rows.len())
                .filter(|&r| all_class(r) && results.get(r, "target") == target && results.get(r, "method") == m)
                .count();
            assert!(
                own(true) > 0 && on_target == own(true),
                "{m} on {target}: {on_target} rows for {} models",
                own(true)
            );
            let val_only = if m == "zero-shot" { 0 } else { 2 * own(true) };
            assert_eq!(own(false), val_only, "{m}: the runs not chosen are scored on val only");
        }
    }

    // The choice: per (variant, protocol, shots, seed), the own-test row with the best val_acc
    // (the first on ties), recomputed here from results.csv; chosen.csv holds exactly those and
    // the target rows of the points it chose.
    let chosen = common::Csv::read(&out.join("chosen.csv"));
    let key_of = |t: &common::Csv, r: usize| -> String {
        ["variant", "data.classes", "data.rendering", "data.shots", "data.seed"]
            .iter()
            .map(|c| t.get(r, c))
            .collect::<Vec<_>>()
            .join("|")
    };
    let mut best: BTreeMap<String, (f64, String)> = BTreeMap::new();
    for r in 0..results.rows.len() {
        if !results.get(r, "target").is_empty() {
            continue;
        }
        let val: f64 = results.get(r, "val_acc").parse().unwrap();
        let entry = best.entry(key_of(&results, r)).or_insert((f64::NEG_INFINITY, String::new()));
        if val > entry.0 {
            *entry = (val, results.get(r, "eval").to_string());
        }
    }
    let mut chosen_own: HashMap<String, String> = HashMap::new();
    for r in 0..chosen.rows.len() {
        if chosen.get(r, "target").is_empty() {
            assert!(chosen_own.insert(key_of(&chosen, r), chosen.get(r, "eval").to_string()).is_none());
        }
    }
    let expected: HashMap<String, String> = best.into_iter().map(|(k, (_, e))| (k, e)).collect();
    assert_eq!(chosen_own, expected, "chosen.csv keeps the best row on validation of every group");
    let chosen_evals: BTreeSet<&String> = expected.values().collect();
    for r in 0..chosen.rows.len() {
        let target = chosen.get(r, "target");
        if !target.is_empty() {
            assert!(chosen.get(r, "data.classes") == "all", "targets only for the all-class protocol");
            // A target row follows its point's row: same settings, the point was chosen.
            let own = (0..chosen.rows.len())
                .find(|&o| chosen.get(o, "target").is_empty() && key_of(&chosen, o) == key_of(&chosen, r))
                .unwrap();
            assert!(chosen_evals.contains(&chosen.get(own, "eval").to_string()));
            assert_eq!(chosen.get(r, "stage2.lr"), chosen.get(own, "stage2.lr"), "{target}");
        }
    }

    // The report: every label at every shot count, in both protocols and on both renderings.
    let report = common::Csv::read(&out.join("report.csv"));
    let labels: BTreeSet<&str> = report.column("label").into_iter().collect();
    for label in [
        "zero-shot",
        "clip-ast",
        "clip-ast-update",
        "clip-ast-lambda0",
        "random-params",
        "full-ft-lambda0",
        "full-ft-lambda1",
        "linear-probe",
        "zero-shot-source",
    ] {
        assert!(labels.contains(label), "no report rows for {label}: {labels:?}");
    }
    for target in ["fashion-mnist/rotated", "fashion-mnist/low-contrast"] {
        assert!(stdout.contains(target), "the target table shows {target}:\n{stdout}");
    }
    let paired = common::Csv::read(&out.join("paired.csv"));
    assert!(!paired.rows.is_empty(), "paired differences against clip-ast");
    let text = std::fs::read_to_string(out.join("report.txt")).unwrap();
    assert!(stdout.starts_with(&text), "report.txt is the printed tables:\n{text}\n{stdout}");
    let png = std::fs::read(out.join("report.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "the plot is a PNG");

    let files = [
        "results.csv",
        "summary.csv",
        "chosen.csv",
        "chosen-summary.csv",
        "report.txt",
        "report.csv",
        "paired.csv",
        "report.png",
    ];
    let before: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(out.join(f)).unwrap()).collect();
    let (again, stderr) = run(&pipeline, dir);
    assert_eq!(again, stdout, "a second run prints the same report");
    assert!(stderr.contains(" 0 stage(s) computed"), "a second run computes nothing: {stderr}");
    for (file, old) in files.iter().zip(before) {
        assert!(std::fs::read(out.join(file)).unwrap() == old, "{file} changed on the second run");
    }
}
