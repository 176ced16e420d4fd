//! What an eval reports beyond test accuracy, checked against an independent Python
//! computation (tests/ref_eval_heads.py) from the same model's features: CoOp's base and new
//! accuracy of an `all` split (each half classified among its own class names, not the halves
//! of the N-way task) and the accuracy on the split's val images.

mod common;

use std::path::{Path, PathBuf};

use common::Csv;

/// Four classes of noisy colour images in class folders, 20 each: the generated 50/20/30 split
/// gives 10 train, 4 val and 6 test images per class.
fn dataset(root: &Path) -> PathBuf {
    let data = root.join("colours");
    let colours =
        [("red", [200u8, 60, 60]), ("green", [60, 180, 70]), ("blue", [70, 70, 200]), ("grey", [128, 128, 128])];
    let mut rng = clip_ast::rng::SplitMix64::new(11);
    for (name, c) in colours {
        std::fs::create_dir_all(data.join(name)).unwrap();
        for i in 0..20 {
            let img = image::RgbImage::from_fn(36, 30, |_, _| {
                let mut j = |v: u8| (f64::from(v) + rng.uniform(-90.0, 90.0)).clamp(0.0, 255.0) as u8;
                image::Rgb([j(c[0]), j(c[1]), j(c[2])])
            });
            img.save(data.join(name).join(format!("{i:02}.png"))).unwrap();
        }
    }
    data
}

/// Run a stage command into `store`; its one stdout line is the artifact directory.
fn stage(root: &Path, store: &Path, args: &[&str]) -> PathBuf {
    let out = common::clip_ast()
        .args(args)
        .args(["--store", store.to_str().unwrap(), "--threads", "1", "--quiet"])
        .env("XDG_CACHE_HOME", root.join("cache"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn number(metrics: &Csv, name: &str) -> f64 {
    metrics.get(0, name).parse().unwrap_or_else(|_| panic!("`{name}` = {:?} is not a number", metrics.get(0, name)))
}

#[test]
fn an_all_split_reports_coop_base_and_new_and_val_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = dataset(root);
    let store = root.join("store");
    let weights = stage(root, &store, &["init-weights", "--preset", "mini", "--seed", "5"]);
    let split = stage(
        root,
        &store,
        &[
            "split",
            "--dataset",
            "imagefolder",
            "--root",
            data.to_str().unwrap(),
            "--shots",
            "4",
            "--seed",
            "1",
            "--image-size",
            "32",
        ],
    );
    let (w, s) = (weights.to_str().unwrap(), split.to_str().unwrap());
    let eval = stage(root, &store, &["eval", "--split", s, "--weights", w]);

    let out = std::process::Command::new(common::python())
        .arg(common::repo_root().join("tests/ref_eval_heads.py"))
        .args([env!("CARGO_BIN_EXE_clip-ast"), w, s, root.to_str().unwrap()])
        .env("CLIP_AST_STORE", &store)
        .output()
        .expect("start reference python");
    assert!(out.status.success(), "ref_eval_heads.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (test, val) = (&reference["test"], &reference["val"]);
    let r = |v: &serde_json::Value, name: &str| v[name].as_f64().unwrap_or_else(|| panic!("{name} in {v}"));
    assert_eq!((test["n"].as_u64(), val["n"].as_u64()), (Some(24), Some(16)), "{reference}");
    // The fixture must tell the two definitions apart, or the comparison below proves nothing.
    assert!(
        r(test, "base") != r(test, "halves_base") && r(test, "new") != r(test, "halves_new"),
        "own-task and N-way halves agree on this fixture: {test}"
    );

    let metrics = Csv::read(&eval.join("metrics.csv"));
    let close =
        |got: f64, want: f64, name: &str| assert!((got - want).abs() < 1e-12, "{name}: eval {got}, reference {want}");
    close(number(&metrics, "acc"), r(test, "acc"), "acc");
    close(number(&metrics, "base_acc"), r(test, "base"), "base_acc");
    close(number(&metrics, "new_acc"), r(test, "new"), "new_acc");
    let (b, n) = (r(test, "base"), r(test, "new"));
    close(number(&metrics, "hm"), 2.0 * b * n / (b + n), "hm");
    close(number(&metrics, "val_acc"), r(val, "acc"), "val_acc");
    close(number(&metrics, "val_base_acc"), r(val, "base"), "val_base_acc");

    // The linear probe scores the same images: each accuracy is a count over 16 val images, 8 of
    // them base, and 12 base and 12 new test images.
    let probe = Csv::read(&stage(root, &store, &["probe", "--split", s, "--weights", w]).join("metrics.csv"));
    for (name, images) in [("val_acc", 16.0), ("val_base_acc", 8.0), ("base_acc", 12.0), ("new_acc", 12.0)] {
        let (acc, hits) = (number(&probe, name), number(&probe, name) * images);
        assert!((0.0..=1.0).contains(&acc) && (hits - hits.round()).abs() < 1e-9, "probe {name} = {acc}");
    }
}
