//! `clip-ast run` end to end through the binary, on generated datasets and the mini preset:
//! upstream stages shared across a sweep, a second run computing nothing, keys that move with
//! every setting that matters and only those (crash points: tests/crash_points.rs),
//! tampering caught by `audit`, `gc`, and bad pipeline files.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clip_ast::rng::SplitMix64;
use common::Csv;
use common::scratch::*;

/// Caltech101 as CoOp lays it out (`caltech-101/101_ObjectCategories/<class>/image_NNNN.jpg`),
/// including the two folders CoOp ignores, without a split file (one is generated).
fn caltech_images(root: &Path) {
    let dir = root.join("caltech-101/101_ObjectCategories");
    let mut rng = SplitMix64::new(101);
    for class in ["BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "accordion", "airplanes", "anchor"] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 1..=8 {
            let img =
                image::RgbImage::from_fn(12, 10, |_, _| image::Rgb([0, 1, 2].map(|_| rng.uniform(0.0, 255.0) as u8)));
            img.save(dir.join(class).join(format!("image_{i:04}.jpg"))).unwrap();
        }
    }
}

#[test]
fn caltech101_sweep_dry_run_shares_splits_stage1_and_selections() {
    let s = Scratch::new();
    caltech_images(&s.path("data"));
    // A dry run only hashes the weights file (the key of an import is its content hash).
    s.write("ViT-B-16.pt", "stand-in for OpenAI's checkpoint");
    let pipeline = common::repo_root().join("pipelines/caltech101-sweep.toml");
    let store = s.p("store");
    let (stdout, _) = s.ok(&["run", pipeline.to_str().unwrap(), "--dry-run", "--store", &store]);
    println!("{stdout}");
    let counts = s.dry(pipeline.to_str().unwrap(), &store);
    assert_eq!(counts["weights"], [1, 0, 1, 275]);
    for kind in ["split", "stage1", "selection"] {
        assert_eq!(counts[kind], [5, 0, 5, 275], "{kind}");
    }
    for kind in ["stage2", "eval"] {
        assert_eq!(counts[kind], [275, 0, 275, 275], "{kind}");
    }
    assert!(stdout.starts_with("caltech101-sweep: 275 grid point(s), 275 evaluation(s)"), "{stdout}");
    // Nothing written: no store, no generated split beside the images, no results.
    assert!(!s.path("store").exists());
    assert!(!s.path("data/caltech-101/split_zhou_Caltech101.json").exists());
    assert!(!s.path("results").exists());
}

#[test]
fn mini_pipeline_reruns_from_cache_keys_follow_settings_audit_and_gc() {
    let s = Scratch::new();
    colour_images(&s.path("data"));
    let pipeline = s.write("mini.toml", MINI);
    let store = s.p("store");
    let clock = Instant::now();
    let (stdout, stderr) =
        s.ok(&["run", &pipeline, "--store", &store, "--out", &s.p("out"), "--jobs", "2", "--threads", "1"]);
    println!("first run {:.1}s", clock.elapsed().as_secs_f64());
    assert_eq!(stdout.trim(), s.p("out"), "stdout is the results folder");
    let lines = stage_lines(&stderr);
    assert_eq!(lines.len(), MINI_STAGES, "{stderr}");
    assert!(lines.iter().all(|(_, _, computed)| *computed), "{stderr}");
    let (results_text, summary_text) = (read(&s.path("out/results.csv")), read(&s.path("out/summary.csv")));
    let results = Csv::read(&s.path("out/results.csv"));
    let summary = Csv::read(&s.path("out/summary.csv"));
    for column in ["data.dataset", "data.seed", "select.k", "stage2.lambda", "stage2.lr", "eval", "method", "acc", "hm"]
    {
        assert!(results.header.iter().any(|h| h == column), "{column} not in {:?}", results.header);
    }
    assert_eq!(results.rows.len(), MINI_EVALS);
    // Grouped over the two seeds: K × λ = 4 settings, 2 runs each, with a t interval.
    let has = |name: &str| summary.header.iter().any(|h| h == name);
    assert!(has("acc_ci95") && !has("data.seed"), "{:?}", summary.header);
    assert_eq!(summary.column("runs"), ["2"; 4]);
    assert_eq!(artifacts(&s.path("store")).len(), MINI_STAGES);

    // A second run computes nothing and writes the same results.
    let before = artifacts(&s.path("store"));
    let (_, stderr) = s.ok(&["run", &pipeline, "--store", &store, "--out", &s.p("out2"), "--threads", "1"]);
    let lines = stage_lines(&stderr);
    assert_eq!(lines.len(), MINI_STAGES);
    assert!(lines.iter().all(|(_, _, computed)| !computed), "{stderr}");
    assert_eq!(read(&s.path("out2/results.csv")), results_text);
    assert_eq!(read(&s.path("out2/summary.csv")), summary_text);
    assert_eq!(artifacts(&s.path("store")), before, "no manifest changed");

    // Only --threads or --quiet changed: the same keys, so still nothing computed.
    let (_, stderr) = s.ok(&["run", &pipeline, "--store", &store, "--out", &s.p("out3"), "--threads", "2"]);
    assert!(stage_lines(&stderr).iter().all(|(_, _, computed)| !computed), "{stderr}");
    assert_eq!(read(&s.path("out3/results.csv")), results_text);
    let (_, stderr) = s.ok(&["run", &pipeline, "--store", &store, "--out", &s.p("out4"), "--quiet"]);
    assert_eq!(stderr, "", "--quiet prints nothing");
    assert_eq!(read(&s.path("out4/results.csv")), results_text);
    assert_eq!(artifacts(&s.path("store")), before);

    // Every setting that matters changes its stage's key (and so everything downstream).
    let all_cached = s.dry(&pipeline, &store);
    assert!(all_cached.values().all(|c| c[0] == 0), "{all_cached:?}");
    let variant = |from: &str, to: &str| {
        assert!(MINI.contains(from), "{from}");
        let path = s.write("variant.toml", &MINI.replacen(from, to, 1));
        s.dry(&path, &store)
    };
    let to_run = |counts: &BTreeMap<String, [usize; 4]>, kind: &str| counts[kind][0];
    let seed = variant("seed = [1, 2]", "seed = [1, 3]");
    assert_eq!((to_run(&seed, "split"), to_run(&seed, "stage1")), (1, 1), "seed: {seed:?}");
    let lr1 = variant("lr = 1e-4", "lr = 2e-4");
    assert_eq!((to_run(&lr1, "split"), to_run(&lr1, "stage1")), (0, 2), "stage-1 lr: {lr1:?}");
    let k = variant("k = [3, 6]", "k = [3, 5]");
    assert_eq!((to_run(&k, "stage1"), to_run(&k, "selection")), (0, 2), "K: {k:?}");
    let rule = variant("k = [3, 6]", "k = [3, 6]\nscore = \"sqrt-v\"");
    assert_eq!((to_run(&rule, "stage1"), to_run(&rule, "selection")), (0, 4), "score rule: {rule:?}");
    let lr2 = variant("lr = 1e-3", "lr = 2e-3");
    assert_eq!((to_run(&lr2, "selection"), to_run(&lr2, "stage2")), (0, 8), "stage-2 lr: {lr2:?}");
    let lambda = variant("lambda = [0, 1]", "lambda = [0, 2]");
    assert_eq!((to_run(&lambda, "selection"), to_run(&lambda, "stage2")), (0, 4), "λ: {lambda:?}");
    // A dataset file's content: one test image (every split holds all test images).
    let split = artifacts(&s.path("store")).into_iter().find(|(kind, _, _)| kind == "split").unwrap();
    let split_json: serde_json::Value =
        serde_json::from_str(&read(&s.path(&format!("store/split/{}/split.json", split.1)))).unwrap();
    let image = s.path("data").join(split_json["test"][0][0].as_str().unwrap());
    let original = std::fs::read(&image).unwrap();
    image::RgbImage::from_pixel(47, 40, image::Rgb([1, 2, 3])).save(&image).unwrap();
    let edited = s.dry(&pipeline, &store);
    assert_eq!(to_run(&edited, "split"), 2, "edited image: {edited:?}");
    std::fs::write(&image, &original).unwrap();
    assert_eq!(s.dry(&pipeline, &store), all_cached, "restoring the image restores the keys");

    // Tampering: a flipped byte in any output file, or edited params, is named by audit.
    let tampered = s.path("tampered");
    common::copy_dir(&s.path("store"), &tampered);
    let mut flipped = Vec::new();
    for (kind, key, manifest) in artifacts(&tampered) {
        if flipped.iter().any(|(k, _, _): &(String, String, String)| *k == kind) {
            continue;
        }
        let file = manifest["outputs"].as_object().unwrap().keys().next().unwrap().clone();
        let path = tampered.join(&kind).join(&key).join(&file);
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        std::fs::write(&path, bytes).unwrap();
        flipped.push((kind, key, file));
    }
    assert_eq!(flipped.len(), 6, "one file of each kind");
    let report = s.fails(
        s.cmd(&["audit", "--store", tampered.to_str().unwrap()]).env_remove("RUST_BACKTRACE"),
        &["failed the audit"],
    );
    for (kind, key, file) in &flipped {
        let line = report.lines().find(|l| l.contains(&format!("BAD {kind}/{}", &key[..12])));
        let line = line.unwrap_or_else(|| panic!("{kind} {key} not reported:\n{report}"));
        assert!(line.contains(&format!("file `{file}` changed")), "{line}");
    }
    let edited = s.path("edited");
    common::copy_dir(&s.path("store"), &edited);
    let (_, key, mut manifest) = artifacts(&edited).into_iter().find(|(kind, _, _)| kind == "stage1").unwrap();
    manifest["params"]["train"]["epochs"] = serde_json::json!(2);
    let manifest_path = edited.join("stage1").join(&key).join("manifest.json");
    std::fs::write(&manifest_path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    // What was built from it fails too, through the input it came from: the artifacts whose
    // manifests name it, directly or further down.
    let all = artifacts(&edited);
    let mut tainted = vec![key.clone()];
    while let Some(more) = all.iter().find(|(_, k, m)| {
        !tainted.contains(k)
            && m["inputs"].as_object().unwrap().values().any(|v| tainted.iter().any(|t| v.as_str() == Some(t)))
    }) {
        tainted.push(more.1.clone());
    }
    assert!(tainted.len() > 1, "stage 1 has descendants");
    let failed = format!("{} of 25 artifact(s) failed", tainted.len());
    let report = s.fails(&mut s.cmd(&["audit", "--store", edited.to_str().unwrap()]), &[&failed]);
    let bad: Vec<&str> = report.lines().filter(|l| l.starts_with("BAD")).collect();
    let own: Vec<&&str> = bad.iter().filter(|l| !l.contains("built from input")).collect();
    assert_eq!(own.len(), 1, "{report}");
    assert!(own[0].contains(&format!("stage1/{}", &key[..12])) && own[0].contains("manifest edited"), "{}", own[0]);
    let stage1 = format!("stage1/{}", &key[..12]);
    for line in bad.iter().filter(|l| l.contains("built from input")) {
        assert!(
            line.contains(&format!("({stage1}), which fails"))
                || line.contains(&format!("built from {stage1}, which fails")),
            "{line}"
        );
    }

    // An artifact prefix two artifacts share (25 keys, 16 hex digits: some first digit repeats).
    let keys: Vec<String> = artifacts(&s.path("store")).into_iter().map(|(_, key, _)| key).collect();
    let shared = keys.iter().find(|k| keys.iter().filter(|o| o[..1] == k[..1]).count() > 1).unwrap();
    s.fails(&mut s.cmd(&["audit", &shared[..1], "--store", &store]), &["matches", "give more characters"]);

    // gc keeps what results reference and removes the rest, only with --yes.
    let (orphan, _) = s.ok(&["init-weights", "--preset", "mini", "--seed", "7", "--store", &store, "--quiet"]);
    let orphan = PathBuf::from(orphan.trim());
    let orphan_key = orphan.file_name().unwrap().to_str().unwrap()[..12].to_string();
    let results_dirs = [s.p("out"), s.p("out2")];
    let (listing, _) = s.ok(&["gc", &results_dirs[0], &results_dirs[1], "--store", &store]);
    assert!(listing.contains(&format!("would remove weights   {orphan_key}")), "{listing}");
    assert!(listing.contains("would remove 1 artifact(s)") && listing.contains("keep 25"), "{listing}");
    assert!(orphan.exists(), "without --yes nothing goes");
    let (removed, _) = s.ok(&["gc", &results_dirs[0], "--store", &store, "--yes"]);
    assert!(removed.contains("removed 1 artifact(s)"), "{removed}");
    assert!(!orphan.exists());
    s.audit_clean(&store);
    assert_eq!(s.dry(&pipeline, &store), all_cached);
    std::fs::create_dir_all(s.path("empty")).unwrap();
    s.fails(&mut s.cmd(&["gc", &s.p("empty"), "--store", &store]), &["no results.csv under"]);
}

#[test]
fn base_to_novel_pipeline_evaluates_base_and_new_splits() {
    let s = Scratch::new();
    colour_images(&s.path("data"));
    let text = MINI
        .replace("seed = [1, 2]", "seed = 1\nclasses = \"base-to-novel\"")
        .replace("k = [3, 6]", "k = 6")
        .replace("lambda = [0, 1]", "lambda = 1");
    let pipeline = s.write("b2n.toml", &text);
    let store = s.p("store");
    s.ok(&["run", &pipeline, "--store", &store, "--out", &s.p("out"), "--threads", "1", "--quiet"]);
    let counts = s.dry(&pipeline, &store);
    assert_eq!(counts["split"], [0, 2, 2, 2], "a base and a new split");
    assert!(counts.values().all(|c| c[0] == 0), "{counts:?}");
    let results = Csv::read(&s.path("out/results.csv"));
    let get = |name: &str| results.get(0, name);
    assert_eq!((get("data.classes"), get("subsample")), ("base-to-novel", "base+new"));
    for metric in ["base_acc", "new_acc", "hm", "val_acc", "val_base_acc"] {
        assert!(get(metric).parse::<f64>().is_ok(), "{metric} = {:?}", get(metric));
    }
    // Validation is the base split's: its val images among the base names, as base_acc is on test.
    assert_eq!(get("val_acc"), get("val_base_acc"));
}

#[test]
fn bad_pipeline_files_fail_with_one_line_naming_the_place() {
    let s = Scratch::new();
    colour_images(&s.path("data"));
    let store = s.p("store");
    let check = |name: &str, text: &str, needles: &[&str]| {
        let path = s.write(name, text);
        s.fails(&mut s.cmd(&["run", &path, "--store", &store, "--out", &s.p("out")]), needles);
    };
    check(
        "unknown.toml",
        &MINI.replace("batch_size = 8\nlambda", "batch_size = 8\nlr_max = 1\nlambda"),
        &["unknown.toml:25: unknown key `lr_max` in [stage2]", "known keys: init, lr,"],
    );
    check(
        "section.toml",
        &format!("{MINI}\n[stage3]\nlr = 1\n"),
        &["section.toml:27: unknown key `stage3` at the top level"],
    );
    check(
        "list.toml",
        &MINI.replace("root = \"${DATA}\"", "root = [\"${DATA}\", \"/elsewhere\"]"),
        &["list.toml:8: [data] root takes one value, not a list"],
    );
    check(
        "preset.toml",
        &MINI.replace("preset = \"mini\"", "preset = [\"mini\"]"),
        &["[weights.init] preset takes one value, not a list"],
    );
    let path = s.write("nodata.toml", MINI);
    s.fails(
        s.cmd(&["run", &path, "--store", &store]).env_remove("DATA"),
        &["nodata.toml:8: [data] root: environment variable DATA is not set"],
    );
    check(
        "warmup.toml",
        &MINI.replace("warmup_epochs = 1", "warmup_epochs = 2"),
        &["[stage2] warmup_epochs 2 must be less than epochs 2"],
    );
    s.fails(&mut s.cmd(&["run", &path, "--store", &store, "--jobs", "0"]), &["--jobs 0"]);
    s.fails(&mut s.cmd(&["run", &s.p("missing.toml"), "--store", &store]), &["missing.toml: no such pipeline file"]);
    assert!(!s.path("store").exists() && !s.path("out").exists(), "a bad file writes nothing");
}

/// Every method of the top-level `method` axis on a foundation pretrained by the pipeline itself
/// (the demo's shape): the stages the runner makes are the ones the stage commands make, methods
/// that do not train get one row each however many training settings the grid has.
#[test]
fn methods_and_a_pretrained_foundation_share_keys_with_the_commands() {
    let s = Scratch::new();
    colour_images(&s.path("data"));
    let text = r#"name = "methods"
method = ["zero-shot", "clip-ast", "random-k", "full-ft", "linear-probe"]

[weights]
pretrain = { preset = "mini", shots = 4, classes = "all", epochs = 1, batch_size = 8 }

[data]
dataset = "imagefolder"
root = "${DATA}"
shots = 2
seed = 1

[select]
k = 3

[stage2]
lr = [1e-3, 1e-4]
epochs = 2
warmup_epochs = 1
batch_size = 8

[report]
title = "methods"
"#;
    let pipeline = s.write("methods.toml", text);
    let store = s.p("store");
    let counts = s.dry(&pipeline, &store);
    let totals: BTreeMap<&str, usize> = counts.iter().map(|(k, c)| (k.as_str(), c[2])).collect();
    // Splits: the pretraining one and the few-shot one. Selections: the rule's, random, all.
    // Evaluations: 3 trained methods × 2 rates, one zero-shot, one probe.
    let expected = [("weights", 1), ("split", 2), ("stage1", 1), ("selection", 3), ("stage2", 6), ("eval", 8)];
    for (kind, n) in expected {
        assert_eq!(totals[kind], n, "{kind}: {counts:?}");
    }

    let out = s.p("out");
    let (stdout, _) = s.ok(&["run", &pipeline, "--store", &store, "--out", &out, "--threads", "1", "--jobs", "2"]);
    // The trained methods ran at two rates no [choose] decides: their labels name the rate.
    for label in [
        "zero-shot ",
        "clip-ast stage2.lr=1e-3 ",
        "clip-ast stage2.lr=1e-4 ",
        "random-k stage2.lr=1e-3 ",
        "full-ft stage2.lr=1e-4 ",
        "linear-probe ",
    ] {
        assert!(stdout.lines().any(|l| l.starts_with(label)), "no {label}in the report table:\n{stdout}");
    }
    assert!(s.path("out/report.txt").is_file() && s.path("out/report.csv").is_file());
    assert!(!s.path("out/report.png").exists(), "one shot count: nothing to plot");
    let results = Csv::read(&s.path("out/results.csv"));
    let col = |name: &str| results.col(name);
    let rows: Vec<Vec<&str>> = results.rows.iter().map(|r| r.iter().map(String::as_str).collect()).collect();
    let methods = results.column("method");
    assert_eq!(
        methods,
        ["zero-shot", "clip-ast", "clip-ast", "random-k", "random-k", "full-ft", "full-ft", "linear-probe"]
    );
    let select: Vec<(&str, &str)> = rows.iter().map(|r| (r[col("select.k")], r[col("select.score")])).collect();
    let (clip_ast, random, all) = (("3", "inv-sqrt-v"), ("3", "random"), ("12", ""));
    assert_eq!(select, [("", ""), clip_ast, clip_ast, random, random, all, all, ("", "")], "what each method selected");
    for r in &rows {
        let trained = !matches!(r[col("method")], "zero-shot" | "linear-probe");
        assert_eq!(!r[col("stage2.lr")].is_empty(), trained, "{r:?}");
        assert_eq!(r[col("weights")], "pretrain mini all shots=4 seed=0");
    }

    // The same stages through the commands land on the runner's artifacts.
    let quiet = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--store", &store, "--quiet"]);
        s.ok(&all).0.trim().to_string()
    };
    let data = s.p("data");
    let split_args = ["--dataset", "imagefolder", "--root", &data, "--image-size", "32"];
    let pre = quiet(&[&["split"][..], &split_args, &["--shots", "4", "--seed", "0"]].concat());
    let weights = quiet(&["pretrain", "--split", &pre, "--epochs", "1", "--batch-size", "8"]);
    let split = quiet(&[&["split"][..], &split_args, &["--shots", "2", "--seed", "1"]].concat());
    let zero_shot = quiet(&["eval", "--split", &split, "--weights", &weights]);
    let probe = quiet(&["probe", "--split", &split, "--weights", &weights]);
    let key = |path: &str| Path::new(path).file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(key(&zero_shot), rows[0][col("eval")]);
    assert_eq!(key(&probe), rows[7][col("eval")]);
    let stored = |kind: &str| artifacts(&s.path("store")).into_iter().filter(|a| a.0 == kind).count();
    assert_eq!((stored("weights"), stored("split"), stored("eval")), (1, 2, 8), "the commands made nothing new");

    // Every kind a stage makes, recomputed from its manifest alone, is byte-identical.
    let mut rerun: Vec<String> = artifacts(&s.path("store"))
        .into_iter()
        .filter(|(kind, _, _)| kind != "split")
        .map(|(kind, key, _)| format!("{kind}/{key}"))
        .collect();
    rerun.sort();
    let refs: Vec<String> = rerun.iter().map(|r| s.p(&format!("store/{r}"))).collect();
    let mut args = vec!["audit", "--rerun", "--store", &store];
    args.extend(refs.iter().map(String::as_str));
    let (stdout, _) = s.ok(&args);
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok  ")).count(), 1 + 1 + 3 + 6 + 8, "{stdout}");
    assert!(stdout.contains("ok  weights/") && stdout.contains("byte for byte"), "{stdout}");
    // A published result that no longer matches what its stage makes, its manifest made to agree
    // (so the plain audit passes): the rerun names the file.
    let probe_dir = s.path("store/eval").join(rows[7][col("eval")]);
    let metrics = probe_dir.join("metrics.csv");
    let forged = read(&metrics) + "forged,row\n";
    std::fs::write(&metrics, &forged).unwrap();
    let manifest_path = probe_dir.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_str(&read(&manifest_path)).unwrap();
    manifest["outputs"]["metrics.csv"] = blake3::hash(forged.as_bytes()).to_hex().as_str().into();
    std::fs::write(&manifest_path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    s.audit_clean(&store);
    let probe_ref = probe_dir.to_str().unwrap().to_string();
    let out = s.fails(
        &mut s.cmd(&["audit", "--rerun", "--store", &store, &probe_ref]),
        &["error: 1 of 1 rerun(s) differ from the store"],
    );
    assert!(out.contains("BAD eval/") && out.contains("rerun differs in `metrics.csv`"), "{out}");
    s.fails(&mut s.cmd(&["audit", "--rerun", "--store", &store]), &["--rerun recomputes what it is given"]);

    let bad = |name: &str, text: String, needles: &[&str]| {
        let path = s.write(name, &text);
        s.fails(&mut s.cmd(&["run", &path, "--store", &s.p("bad-store")]), needles);
    };
    bad(
        "probe-b2n.toml",
        text.replace("seed = 1\n", "seed = 1\nclasses = \"base-to-novel\"\n"),
        &["probe-b2n.toml:2: method linear-probe", "base-to-novel"],
    );
    bad(
        "two-sources.toml",
        text.replace("[weights]\n", "[weights]\ninit = { preset = \"mini\" }\n"),
        &["two-sources.toml:4: [weights] gives init and pretrain; keep one"],
    );
    bad("no-shots.toml", text.replace("shots = 4, ", ""), &["[weights.pretrain] shots is not set"]);
    assert!(!s.path("bad-store").exists());
}
