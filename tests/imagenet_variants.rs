//! ImageNet's four test-only variants in CoOp's folder layout: read with the right names, labels
//! and ImageNet labels; `split` makes one test-only artifact for every seed and refuses few-shot
//! requests; A/R are evaluated over their own classes only (checked against open_clip), and a
//! model adapted on ImageNet must have seen every class of the variant.

mod common;

use std::ffi::OsStr;
use std::path::Path;

use clip_ast::data::split::{SplitRequest, make_split};
use clip_ast::data::subsample::Subsample;
use serde_json::{Value, json};

use common::imagenet_fixture::{A_CLASSES, A_IMAGES, CLASSES, R_CLASSES, R_IMAGES, V2_IMAGES, data, noise_png};

fn request(root: &Path, dataset: &str, cache: &Path) -> SplitRequest {
    SplitRequest {
        dataset: dataset.into(),
        root: root.into(),
        shots: 0,
        seed: 0,
        subsample: Subsample::All,
        image_size: 16,
        split_seed: 1,
        test_per_class: None,
        hash_cache: Some(cache.into()),
        save_generated_split: false,
        quiet: true,
        rendering: Default::default(),
        pool: Default::default(),
    }
}

/// One expected test item: impath, the variant's label, the index into [`CLASSES`].
type Item = (String, usize, usize);

/// The expected test list: (impath, label, class name) per image, from the fixture's design.
fn expected_test(entries: &[Item]) -> Vec<Value> {
    entries.iter().map(|(impath, label, class)| json!([impath, label, CLASSES[*class].1])).collect()
}

#[test]
fn each_variant_is_read_as_coop_reads_it() {
    let data = data();
    let cache = data.path("../hashes.json");
    let mut cases: Vec<(&str, Vec<usize>, Vec<Item>)> = Vec::new();
    // V2: folder = ImageNet label; the name is that line of classnames.txt.
    let v2 = (0..6).flat_map(|l| (0..V2_IMAGES[l]).map(move |i| (format!("{l}/{i}.jpeg"), l, l))).collect();
    cases.push(("ImageNetV2", (0..6).collect(), v2));
    let sketch =
        (0..6).flat_map(|l| (0..2).map(move |i| (format!("{}/sketch_{i}.JPEG", CLASSES[l].0), l, l))).collect();
    cases.push(("imagenet_sketch", (0..6).collect(), sketch));
    // A and R: labels 0..2 over their own classes, each keeping its ImageNet label.
    let a = A_CLASSES
        .iter()
        .enumerate()
        .flat_map(|(l, &c)| (0..A_IMAGES).map(move |i| (format!("{}/{i}.jpg", CLASSES[c].0), l, c)))
        .collect();
    cases.push(("imagenet-a", A_CLASSES.to_vec(), a));
    let r = R_CLASSES
        .iter()
        .enumerate()
        .flat_map(|(l, &c)| (0..R_IMAGES[l]).map(move |i| (format!("{}/{i}.jpg", CLASSES[c].0), l, c)))
        .collect();
    cases.push(("ImageNet-R", R_CLASSES.to_vec(), r));

    for (dataset, classes, test) in cases {
        let out = data.path(&format!("../out-{dataset}"));
        std::fs::create_dir_all(&out).unwrap();
        let summary = make_split(&request(&data.root, dataset, &cache), &out).unwrap_or_else(|e| panic!("{e:#}"));
        let split: Value = serde_json::from_slice(&std::fs::read(out.join("split.json")).unwrap()).unwrap();
        let names: Vec<&str> = classes.iter().map(|&c| CLASSES[c].1).collect();
        let wnids: Vec<&str> = classes.iter().map(|&c| CLASSES[c].0).collect();
        assert_eq!(split["classnames"], json!(names), "{dataset}");
        assert_eq!(split["class_wnids"], json!(wnids), "{dataset}");
        assert_eq!(split["source_labels"], json!(classes), "{dataset}");
        assert_eq!(split["subset_of"], "imagenet", "{dataset}");
        assert_eq!(split["test_only"], true, "{dataset}");
        assert_eq!((&split["shots"], &split["seed"], &split["subsample"]), (&json!(0), &json!(0), &json!("all")));
        assert_eq!(split["template"], "a photo of a {}.");
        assert_eq!(split["train"], json!([]), "{dataset}");
        assert_eq!(split["val"], json!([]), "{dataset}");
        assert_eq!(split["test"], json!(expected_test(&test)), "{dataset}");
        assert_eq!((summary.train, summary.val, summary.test), (0, 0, test.len()), "{dataset}");
        let files: Value = serde_json::from_slice(&std::fs::read(out.join("files.json")).unwrap()).unwrap();
        assert_eq!(files["files"].as_object().unwrap().len(), test.len(), "{dataset}");
        let tensors = tch::Tensor::read_safetensors(out.join("test_images.safetensors")).unwrap();
        let labels = &tensors.iter().find(|(n, _)| n == "labels").unwrap().1;
        let labels = Vec::<i64>::try_from(labels).unwrap();
        assert_eq!(labels, test.iter().map(|t| t.1 as i64).collect::<Vec<_>>(), "{dataset}");
    }
}

/// Run clip-ast with a store and hash cache under `dir`; (success, stdout, stderr).
fn clip_ast(dir: &Path, args: &[&OsStr]) -> (bool, String, String) {
    let out = common::clip_ast()
        .args(args)
        .arg("--store")
        .arg(dir.join("store"))
        .args(["--threads", "1", "--quiet"])
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let (success, stdout, stderr) = clip_ast(dir, &args);
    assert!(success, "{args:?} failed:\n{stderr}");
    stdout
}

/// Files in the store's artifact folders (lock files are not artifacts).
fn stored_files(dir: &Path) -> usize {
    common::files_under(&dir.join("store")).iter().filter(|f| !f.starts_with(dir.join("store/locks"))).count()
}

/// The command fails with one `error:` line holding every needle, and adds nothing to the store.
fn fails(dir: &Path, args: &[&str], needles: &[&str]) {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let before = stored_files(dir);
    let (success, _, stderr) = clip_ast(dir, &args);
    assert!(!success, "{args:?} succeeded");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
    }
    assert_eq!(stored_files(dir), before, "{args:?} wrote to the store");
}

fn split_args<'a>(root: &'a str, dataset: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    [&["split", "--dataset", dataset, "--root", root, "--image-size", "32"][..], extra].concat()
}

#[test]
fn test_only_splits_ignore_seeds_and_refuse_few_shot_requests() {
    let data = data();
    let dir = data.path("..");
    let root = data.root.to_str().unwrap();
    let plain = ok(&dir, &split_args(root, "imagenet-sketch", &[]));
    assert_eq!(ok(&dir, &split_args(root, "imagenet-sketch", &["--shots", "0", "--seed", "1"])), plain);
    assert_eq!(ok(&dir, &split_args(root, "imagenet-sketch", &["--seed", "2"])), plain);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(Path::new(&plain).join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["params"]["test_only"], true, "{manifest}");
    assert!(manifest["params"].get("shots").is_none(), "{manifest}");

    fails(
        &dir,
        &split_args(root, "imagenet-a", &["--shots", "16", "--seed", "1"]),
        &["--shots 16", "test-only", "imagenet"],
    );
    fails(&dir, &split_args(root, "imagenet-r", &["--subsample", "base"]), &["--subsample base", "test-only"]);
    fails(&dir, &split_args(root, "imagenet", &["--seed", "1"]), &["--shots is required", "imagenet"]);
    fails(&dir, &split_args(root, "imagenet", &["--shots", "1"]), &["--seed is required"]);
    // A test-only split has nothing to train on.
    let weights = ok(&dir, &["init-weights", "--preset", "mini"]);
    fails(&dir, &["stage1", "--split", &plain, "--weights", &weights], &["test-only", "imagenet-sketch"]);

    // Broken trees: each names the file and what to do.
    std::fs::create_dir_all(data.path("imagenet-adversarial/imagenet-a/n09999999")).unwrap();
    noise_png(&data.path("imagenet-adversarial/imagenet-a/n09999999/x.jpg"), 99);
    fails(&dir, &split_args(root, "imagenet-a", &[]), &["n09999999", "classnames.txt", "not an ImageNet class"]);
    std::fs::remove_file(data.path("imagenet-rendition/classnames.txt")).unwrap();
    fails(&dir, &split_args(root, "imagenet-r", &[]), &["imagenet-rendition/classnames.txt", "copy"]);
    std::fs::remove_dir_all(data.path("imagenetv2/imagenetv2-matched-frequency-format-val/4")).unwrap();
    fails(&dir, &split_args(root, "imagenetv2", &[]), &["format-val/4", "missing"]);
    std::fs::remove_file(data.path(&format!("imagenet-sketch/images/{}/sketch_0.JPEG", CLASSES[2].0))).unwrap();
    std::fs::remove_file(data.path(&format!("imagenet-sketch/images/{}/sketch_1.JPEG", CLASSES[2].0))).unwrap();
    fails(&dir, &split_args(root, "imagenet-sketch", &[]), &[CLASSES[2].0, "no images"]);
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn a_is_evaluated_over_its_own_classes_only() {
    let data = data();
    let dir = data.path("..");
    let split = ok(&dir, &split_args(data.root.to_str().unwrap(), "imagenet-a", &[]));
    // The reference classifies the same preprocessed images with open_clip, among the three
    // names and among all six; the fixture is one where the two answers differ.
    let names: Vec<&str> = CLASSES.iter().map(|c| c.1).collect();
    std::fs::write(dir.join("classes.json"), json!(names).to_string()).unwrap();
    std::fs::write(dir.join("subset.json"), json!(A_CLASSES).to_string()).unwrap();
    let reference = common::run_reference(
        "ref_subset_eval.py",
        &[
            dir.join("ref").as_os_str(),
            Path::new(&split).join("test_images.safetensors").as_os_str(),
            dir.join("classes.json").as_os_str(),
            dir.join("subset.json").as_os_str(),
        ],
    );
    let reference: Value = serde_json::from_str(reference.lines().last().unwrap()).unwrap();
    eprintln!("reference: {reference}");
    let subset = reference["acc_subset"].as_f64().unwrap();
    assert!(reference["right_in_subset_wrong_in_all"].as_u64().unwrap() >= 1, "fixture does not tell the two apart");
    assert_ne!(subset, reference["acc_all"].as_f64().unwrap());
    assert!(reference["min_margin"].as_f64().unwrap() > 1e-3, "a near-tie would make the comparison fragile");

    let weights = ok(
        &dir,
        &["import-weights", dir.join("ref/openai.safetensors").to_str().unwrap(), "--activation", "quick_gelu"],
    );
    let eval = ok(&dir, &["eval", "--split", &split, "--weights", &weights]);
    let metrics = common::Csv::read(&Path::new(&eval).join("metrics.csv"));
    assert_eq!(metrics.get(0, "dataset"), "imagenet-a");
    assert_eq!(metrics.get(0, "n"), (A_CLASSES.len() * A_IMAGES).to_string());
    let acc: f64 = metrics.get(0, "acc").parse().unwrap();
    assert!((acc - subset).abs() < 1e-9, "clip-ast {acc}, open_clip over the subset {subset}");
    // No base/new halves on a test-only split.
    assert_eq!((metrics.get(0, "base_acc"), metrics.get(0, "hm")), ("", ""));
    let per_class = common::Csv::read(&Path::new(&eval).join("per_class.csv"));
    let expected: Vec<&str> = A_CLASSES.iter().map(|&c| CLASSES[c].1).collect();
    assert_eq!(per_class.column("classname"), expected);
}

#[test]
fn a_model_adapted_on_imagenet_must_cover_the_variant() {
    let data = data();
    let dir = data.path("..");
    let root = data.root.to_str().unwrap();
    let weights = ok(&dir, &["init-weights", "--preset", "mini"]);
    let target = ok(&dir, &split_args(root, "imagenet-r", &[]));
    let adapt = |subsample: &str| {
        let split = ok(&dir, &split_args(root, "imagenet", &["--shots", "1", "--seed", "1", "--subsample", subsample]));
        let stage1 =
            ok(&dir, &["stage1", "--split", &split, "--weights", &weights, "--epochs", "1", "--batch-size", "4"]);
        let selection = ok(&dir, &["select", "--stage1", &stage1, "--k", "2"]);
        ok(
            &dir,
            &[
                "stage2",
                "--split",
                &split,
                "--weights",
                &weights,
                "--selection",
                &selection,
                "--epochs",
                "1",
                "--warmup-epochs",
                "0",
                "--batch-size",
                "4",
            ],
        )
    };
    let all = adapt("all");
    let eval = ok(&dir, &["eval", "--split", &target, "--weights", &weights, "--stage2", &all]);
    let per_class = common::Csv::read(&Path::new(&eval).join("per_class.csv"));
    let expected: Vec<&str> = R_CLASSES.iter().map(|&c| CLASSES[c].1).collect();
    assert_eq!(per_class.column("classname"), expected);
    let metrics = read_json(&Path::new(&eval).join("manifest.json"));
    assert!(metrics["inputs"]["stage2"].is_string(), "{metrics}");

    // ImageNet's base half is labels 0-2; R's `electric ray` (label 5) was never trained on.
    let base = adapt("base");
    fails(
        &dir,
        &["eval", "--split", &target, "--weights", &weights, "--stage2", &base],
        &["1 of imagenet-r's 3 classes", "`electric ray`", "subsample base"],
    );
}
