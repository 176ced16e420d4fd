//! `[choose]` and `[report] baseline` end to end: a sweep over 3 stage-2 learning rates × 2 λ
//! × 3 seeds on the mini preset and generated images, whose chosen rows are the argmax of `val_acc`
//! recomputed from results.csv in Python, whose choice does not move when the test labels are
//! permuted, and whose compare.csv matches a scipy computation of the paired differences.

mod common;

use std::path::Path;
use std::process::Command;

use common::Csv;

const PIPELINE: &str = r#"name = "choose"
method = ["zero-shot", "clip-ast"]

[weights]
init = { preset = "mini", seed = 0 }

[data]
dataset = "imagefolder"
root = "${DATA}"
shots = 4
seed = [1, 2, 3]

[stage1]
lr = 1e-4
batch_size = 8

[select]
k = 3

[stage2]
lr = [1e-4, 1e-3, 1e-2]
lambda = [0, 1]
epochs = 2
warmup_epochs = 1
batch_size = 8

[choose]
by = "val_acc"
among = ["stage2.lr", "stage2.lambda"]

[report]
baseline = "zero-shot"
subject = "clip-ast"
"#;

const CLASSES: [&str; 4] = ["red", "green", "blue", "yellow"];

/// 16 images per class in class folders: a generated 50/20/30 split holds 8 train, 3 val and
/// 5 test images of each.
fn images(dir: &Path) {
    let (images, labels) = common::colour_images(16, 13);
    for (i, (image, label)) in images.iter().zip(labels).enumerate() {
        let class = dir.join(CLASSES[label as usize]);
        std::fs::create_dir_all(&class).unwrap();
        image.save(class.join(format!("{i:03}.png"))).unwrap();
    }
}

fn clip_ast(scratch: &Path, data: &str, args: &[&str]) -> (String, String) {
    let out = common::clip_ast()
        .args(args)
        .current_dir(scratch)
        .env("XDG_CACHE_HOME", scratch.join("cache"))
        .env("DATA", scratch.join(data))
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert!(out.status.success(), "{args:?} failed:\n{stderr}\n{stdout}");
    (stdout, stderr)
}

/// Run the pipeline on `data` into its own store and results folder `out`.
fn run(scratch: &Path, data: &str, out: &str) -> (String, String) {
    let (pipeline, store) = (scratch.join("choose.toml"), scratch.join(format!("store-{out}")));
    let args = ["run", pipeline.to_str().unwrap(), "--store", store.to_str().unwrap(), "--out", out, "--threads", "1"];
    clip_ast(scratch, data, &[&args[..], &["--jobs", "2"]].concat())
}

/// The split file the first run saved beside the images, with every test image's label moved
/// to the next class: train and val lists unchanged, so only test metrics can change.
fn permute_test_labels(from: &Path, to: &Path) {
    common::copy_dir(from, to);
    let path = to.join("split_imagefolder.json");
    let mut split: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let classname =
        |label: usize| split["train"].as_array().unwrap().iter().find(|e| e[1] == label).unwrap()[2].clone();
    let names: Vec<serde_json::Value> = (0..CLASSES.len()).map(classname).collect();
    for entry in split["test"].as_array_mut().unwrap() {
        let moved = (entry[1].as_u64().unwrap() as usize + 1) % CLASSES.len();
        entry[1] = moved.into();
        entry[2] = names[moved].clone();
    }
    std::fs::write(&path, serde_json::to_string_pretty(&split).unwrap()).unwrap();
}

/// Python's choice and comparison. The λ terms the file leaves unset follow λ: they are chosen
/// with it.
fn reference(results: &Path, by: &str) -> serde_json::Value {
    let chosen = ["stage2.lr", "stage2.lambda", "stage2.lambda_img", "stage2.lambda_txt", "stage2.lambda_kl"];
    let mut args: Vec<&std::ffi::OsStr> = vec![results.as_os_str(), by.as_ref(), "zero-shot".as_ref()];
    args.extend(chosen.iter().map(std::ffi::OsStr::new));
    serde_json::from_str(&common::run_reference("ref_choose.py", &args)).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + b.abs())
}

/// (method, data.seed, stage2.lr, stage2.lambda) of each chosen row.
fn choices(chosen: &Csv) -> Vec<[String; 4]> {
    (0..chosen.rows.len())
        .map(|r| ["method", "data.seed", "stage2.lr", "stage2.lambda"].map(|c| chosen.get(r, c).to_string()))
        .collect()
}

#[test]
fn chooses_on_validation_and_compares_paired_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path();
    images(&scratch.join("data"));
    std::fs::write(scratch.join("choose.toml"), PIPELINE).unwrap();

    let (dry, _) = clip_ast(scratch, "data", &["run", "choose.toml", "--dry-run", "--store", "store-a"]);
    let last = dry.lines().last().unwrap();
    assert_eq!(
        last,
        "choose: by val_acc among stage2.lr, stage2.lambda: 6 group(s), each keeping 1 of up to 6; the choice needs all 21 evaluation(s) above",
        "{dry}"
    );

    run(scratch, "data", "a");
    let results = Csv::read(&scratch.join("a/results.csv"));
    let chosen = Csv::read(&scratch.join("a/chosen.csv"));
    assert_eq!(results.rows.len(), 3 + 3 * 6, "three zero-shot rows, 6 combinations × 3 seeds");
    assert_eq!(chosen.header, results.header, "chosen.csv has results.csv's columns");

    // The chosen rows are Python's argmax of val_acc over each group.
    let want = reference(&scratch.join("a/results.csv"), "val_acc");
    let want_chosen: Vec<&str> = want["chosen"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(chosen.column("eval"), want_chosen);
    let vals: Vec<&str> = results.column("val_acc");
    println!("val_acc {vals:?}\nacc {:?}\nchosen {:?}", results.column("acc"), choices(&chosen));

    // compare.csv: clip-ast's chosen rows against zero-shot, seed by seed.
    let compare = Csv::read(&scratch.join("a/compare.csv"));
    assert_eq!(compare.rows.len(), 1, "one group: clip-ast at 4 shots");
    let c = &want["compare"]["clip-ast"];
    assert_eq!(compare.get(0, "method"), "clip-ast");
    assert_eq!(compare.get(0, "baseline"), "zero-shot");
    assert_eq!(compare.get(0, "pairs"), c["pairs"].to_string());
    for (column, key) in [("acc_diff_mean", "mean"), ("acc_diff_std", "std"), ("acc_diff_ci95", "ci95")] {
        let got: f64 = compare.get(0, column).parse().unwrap();
        assert!(close(got, c[key].as_f64().unwrap()), "{column}: {got} vs scipy's {}", c[key]);
    }
    let summary = Csv::read(&scratch.join("a/chosen-summary.csv"));
    assert!(!summary.header.iter().any(|h| h == "stage2.lr" || h == "data.seed"), "{:?}", summary.header);
    let runs = summary.column("runs");
    assert_eq!(runs, ["3", "3"], "zero-shot and clip-ast, three seeds each");
    // report.csv: the chosen rows, each seed's chosen values in seed order.
    let report = Csv::read(&scratch.join("a/report.csv"));
    let acc: Vec<usize> = (0..report.rows.len()).filter(|&r| report.get(r, "metric") == "acc").collect();
    let labels: Vec<&str> = acc.iter().map(|&r| report.get(r, "label")).collect();
    assert_eq!(labels, ["zero-shot", "clip-ast"]);
    let seeds: Vec<&str> = acc.iter().map(|&r| report.get(r, "seeds")).collect();
    assert_eq!(seeds, ["3", "3"], "the report shows the chosen rows, not all 6 combinations");
    let mut mine: Vec<[String; 4]> = choices(&chosen).into_iter().filter(|c| c[0] == "clip-ast").collect();
    mine.sort_by_key(|c| c[1].parse::<i64>().unwrap());
    let values = |i: usize| mine.iter().map(|c| c[i].as_str()).collect::<Vec<_>>().join(",");
    assert_eq!(report.get(acc[1], "chosen"), format!("lr {}; lambda {}", values(2), values(3)));
    // paired.csv: clip-ast − zero-shot on accuracy (the headline of classes = all), the same
    // pairs as compare.csv and so scipy's numbers.
    let paired = Csv::read(&scratch.join("a/paired.csv"));
    assert_eq!(paired.rows.len(), 1, "{:?}", paired.rows);
    assert_eq!((paired.get(0, "other"), paired.get(0, "metric")), ("zero-shot", "acc"));
    assert_eq!(paired.get(0, "pairs"), c["pairs"].to_string());
    for (column, key) in [("diff_mean", "mean"), ("diff_std", "std"), ("diff_ci95", "ci95")] {
        let got: f64 = paired.get(0, column).parse().unwrap();
        assert!(close(got, c[key].as_f64().unwrap()), "{column}: {got} vs scipy's {}", c[key]);
    }

    // `test = "chosen"` on the same store: the choice, made on validation-only evals, is the
    // same and lands on the very evaluations the full run made (chosen.csv byte for byte); the
    // runs not chosen are scored on val only, so only those 18 evals are computed.
    let chosen_only = PIPELINE.replace(
        "among = [\"stage2.lr\", \"stage2.lambda\"]",
        "among = [\"stage2.lr\", \"stage2.lambda\"]\ntest = \"chosen\"",
    );
    std::fs::write(scratch.join("chosen-only.toml"), chosen_only).unwrap();
    let (dry, _) = clip_ast(scratch, "data", &["run", "chosen-only.toml", "--dry-run", "--store", "store-a"]);
    assert!(dry.lines().last().unwrap().ends_with("test = \"chosen\": 18 of the evaluations above score val only, and then only the chosen runs' full evaluations (and targets) run, not the other runs' counted above"), "{dry}");
    let args = ["run", "chosen-only.toml", "--store", "store-a", "--out", "c", "--threads", "1", "--jobs", "2"];
    let (_, stderr) = clip_ast(scratch, "data", &args);
    assert!(stderr.contains(": 18 stage(s) computed,"), "{stderr}");
    assert_eq!(
        std::fs::read(scratch.join("c/chosen.csv")).unwrap(),
        std::fs::read(scratch.join("a/chosen.csv")).unwrap(),
        "the same choice, on the same evaluations"
    );
    let results_c = Csv::read(&scratch.join("c/results.csv"));
    assert_eq!(results_c.column("val_acc"), vals, "validation-only evals score val as full ones do");
    let chosen_evals = chosen.column("eval");
    for r in 0..results_c.rows.len() {
        let full = chosen_evals.contains(&results_c.get(r, "eval")) || results_c.get(r, "method") == "zero-shot";
        assert_eq!(results_c.get(r, "acc").is_empty(), !full, "row {r}: only the chosen runs are scored on test");
    }

    // The same sweep with every test label moved to another class: the test accuracies change,
    // the validation accuracies and so the choice do not.
    permute_test_labels(&scratch.join("data"), &scratch.join("permuted"));
    run(scratch, "permuted", "b");
    let results_b = Csv::read(&scratch.join("b/results.csv"));
    assert_eq!(results_b.column("val_acc"), vals);
    assert_ne!(results_b.column("acc"), results.column("acc"), "the test labels changed");
    assert_eq!(choices(&Csv::read(&scratch.join("b/chosen.csv"))), choices(&chosen));
    // A choice that read the test accuracy would have moved: the check above can fail.
    let by_test = reference(&scratch.join("b/results.csv"), "acc");
    let evals = results_b.column("eval");
    let rows: Vec<usize> =
        by_test["chosen"].as_array().unwrap().iter().map(|k| evals.iter().position(|e| k == e).unwrap()).collect();
    let test_choices: Vec<[String; 4]> = rows.iter().map(|&r| choices(&results_b)[r].clone()).collect();
    assert_ne!(test_choices, choices(&chosen), "permuted acc {:?}", results_b.column("acc"));
}

/// Mistakes in the new sections are one line naming the file and line, before anything runs.
#[test]
fn bad_choose_and_baseline_are_refused_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path();
    images(&scratch.join("data"));
    let fails = |text: &str, needle: &str| {
        std::fs::write(scratch.join("bad.toml"), text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_clip-ast"))
            .args(["run", "bad.toml", "--dry-run", "--store", "store"])
            .current_dir(scratch)
            .env("XDG_CACHE_HOME", scratch.join("cache"))
            .env("DATA", scratch.join("data"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.lines().count() == 1, "{stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(needle), "`{needle}` not in {stderr}");
    };
    fails(&PIPELINE.replace("by = \"val_acc\"", "by = \"hm\""), "bad.toml:28: [choose] by = hm is a test-set metric");
    fails(
        &PIPELINE.replace("\"stage2.lambda\"]", "\"stage2.lamda\"]"),
        "bad.toml:29: [choose] among: `stage2.lamda` is not",
    );
    fails(
        &PIPELINE.replace("baseline = \"zero-shot\"", "baseline = \"full-ft\""),
        "bad.toml:32: [report] baseline = full-ft is not a method this pipeline runs",
    );
    fails(
        &PIPELINE.replace("subject = \"clip-ast\"", "subject = \"clip\""),
        "bad.toml:33: [report] subject = \"clip\" is not a label of this pipeline's runs (\"zero-shot\", \"clip-ast\")",
    );
    fails(
        &PIPELINE.replace("subject = \"clip-ast\"", "zero_shot_band = \"80,45\""),
        "bad.toml:33: [report] zero_shot_band = \"80,45\": expected \"LOW,HIGH\"",
    );
    // Without [choose] the trained baseline has 6 rows per split and seed.
    let unchosen = PIPELINE
        .replace("baseline = \"zero-shot\"", "baseline = \"clip-ast\"")
        .replace("[choose]\nby = \"val_acc\"\namong = [\"stage2.lr\", \"stage2.lambda\"]\n", "");
    fails(
        &unchosen,
        "[report] baseline = clip-ast has 6 results for one split and seed (they differ in stage2.lr, stage2.lambda, stage2.lambda_img",
    );
    // A full-ft baseline pairs with every selection seed: it has none of its own.
    let full_ft = PIPELINE
        .replace("\"zero-shot\", \"clip-ast\"", "\"full-ft\", \"clip-ast\"")
        .replace("baseline = \"zero-shot\"", "baseline = \"full-ft\"")
        .replace("k = 3\n", "k = 3\nseed = [5, 6]\n");
    std::fs::write(scratch.join("full-ft.toml"), full_ft).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_clip-ast"))
        .args(["run", "full-ft.toml", "--dry-run", "--store", "store"])
        .current_dir(scratch)
        .env("XDG_CACHE_HOME", scratch.join("cache"))
        .env("DATA", scratch.join("data"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("choose: by val_acc among stage2.lr, stage2.lambda: 9 group(s), each keeping 1 of up to 6"),
        "{stdout}"
    );
}
