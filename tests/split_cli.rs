//! `clip-ast split` through the binary: its outputs in the artifact store, the hash cache, and
//! one clear `error:` line with nothing published for each kind of bad input.

mod common;
mod split_fixture;

use std::ffi::OsStr;
use std::path::Path;

use clip_ast::data::subsample::Subsample;
use serde_json::Value;
use split_fixture::{coop_dataset, os, request, run};

fn split_args<'a>(
    root: &'a Path,
    dataset: &'a str,
    shots: &'a str,
    store: &'a Path,
    cache: &'a Path,
) -> Vec<&'a OsStr> {
    vec![
        os("split"),
        os("--dataset"),
        os(dataset),
        os("--root"),
        root.as_os_str(),
        os("--shots"),
        os(shots),
        os("--seed"),
        os("2"),
        os("--image-size"),
        os("16"),
        os("--hash-cache"),
        cache.as_os_str(),
        os("--store"),
        store.as_os_str(),
    ]
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Run `clip-ast split` into `store`; returns the artifact folder it prints and its stderr.
fn split_ok(args: Vec<&OsStr>) -> (std::path::PathBuf, String) {
    let result = common::clip_ast().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    assert!(result.status.success(), "{stderr}");
    let stdout = String::from_utf8(result.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stdout: {stdout}");
    (lines[0].into(), stderr)
}

#[test]
fn split_through_the_binary() {
    let ds = coop_dataset();
    let cache = ds.tmp.path().join("cache").join("hashes.json");
    let store = ds.tmp.path().join("store");
    let (out, _) = split_ok(split_args(&ds.root, "DescribableTextures", "4", &store, &cache));
    assert!(out.starts_with(store.join("split")), "{}", out.display());
    for file in ["files.json", "split.json", "test_images.safetensors"] {
        assert!(out.join(file).is_file(), "{file} missing in {}", out.display());
    }

    // Same lists as the library call (which the sampling tests compare with Python).
    let lib_cache = ds.tmp.path().join("c2");
    let (_, lib) = run(&request(&ds.root, "dtd", 4, 2, Subsample::All, &lib_cache), &ds.tmp.path().join("lib"));
    let split: Value = serde_json::from_slice(&std::fs::read(out.join("split.json")).unwrap()).unwrap();
    for key in ["dataset", "classnames", "train", "val", "test", "template"] {
        assert_eq!(split[key], lib[key], "{key}");
    }
    assert_eq!(split["template"], "{} texture.");

    // Every image used is hashed; hashes are blake3 of the file bytes, and the cache holds them.
    let files: Value = serde_json::from_slice(&std::fs::read(out.join("files.json")).unwrap()).unwrap();
    let files = files["files"].as_object().unwrap();
    let used: std::collections::BTreeSet<&str> = ["train", "val", "test"]
        .iter()
        .flat_map(|p| split[p].as_array().unwrap())
        .map(|r| r[0].as_str().unwrap())
        .collect();
    assert_eq!(files.keys().map(String::as_str).collect::<std::collections::BTreeSet<_>>(), used);
    for (rel, hash) in files {
        assert_eq!(
            hash.as_str().unwrap(),
            blake3::hash(&std::fs::read(ds.image_dir.join(rel)).unwrap()).to_hex().as_str()
        );
    }
    let cached: Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(cached["files"].as_object().unwrap().len(), used.len());

    // Test images: [N, 16, 16, 3] uint8 in test-list order, labels alongside.
    let bytes = std::fs::read(out.join("test_images.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let test = split["test"].as_array().unwrap();
    let images = st.tensor("images").unwrap();
    assert_eq!(images.shape(), [test.len(), 16, 16, 3]);
    assert_eq!(images.dtype(), safetensors::Dtype::U8);
    let first = clip_ast::data::image::test_crop(&ds.image_dir.join(test[0][0].as_str().unwrap()), 16).unwrap();
    assert_eq!(&images.data()[..16 * 16 * 3], first.as_raw().as_slice());
    let labels: Vec<i64> =
        st.tensor("labels").unwrap().data().chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(labels, test.iter().map(|r| r[1].as_i64().unwrap()).collect::<Vec<_>>());

    // A fresh store over the same files: the split is made again, but no image is read to hash it.
    let (out2, stderr) = split_ok(split_args(&ds.root, "dtd", "4", &ds.tmp.path().join("store2"), &cache));
    assert!(stderr.contains(&format!("0 files hashed, {} from cache", used.len())), "{stderr}");
    assert_eq!(std::fs::read(out2.join("split.json")).unwrap(), std::fs::read(out.join("split.json")).unwrap());
    // The same request against the first store is the same artifact.
    let (again, stderr) = split_ok(split_args(&ds.root, "DescribableTextures", "4", &store, &cache));
    assert_eq!(again, out);
    assert!(stderr.contains("cached"), "{stderr}");
}

#[test]
fn a_differing_coop_pickle_is_reported() {
    let ds = coop_dataset();
    let pkl_dir = ds.dataset_dir.join("split_fewshot");
    std::fs::create_dir_all(&pkl_dir).unwrap();
    // An empty train list stands in for a pickle that CoOp made differently.
    let lists = ds.tmp.path().join("lists.json");
    std::fs::write(&lists, r#"{"train": [], "val": []}"#).unwrap();
    let pkl = pkl_dir.join("shot_4-seed_2.pkl");
    common::run_reference(
        "ref_fewshot.py",
        &[os("pickle"), pkl.as_os_str(), lists.as_os_str(), ds.image_dir.as_os_str()],
    );
    let out = ds.tmp.path().join("out");
    let cache = ds.tmp.path().join("hashes.json");
    let result =
        common::clip_ast().args(split_args(&ds.root, "dtd", "4", &out, &cache)).arg("--quiet").output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("warning: ")
            && lines[0].contains("shot_4-seed_2.pkl")
            && lines[0].contains("train has 0 items there"),
        "{stderr}"
    );
}

/// The command fails with one `error:` line holding every needle and publishes nothing: no
/// split artifact, no temp folder left in the store.
fn expect_error(root: &Path, dataset: &str, shots: &str, needles: &[&str]) -> String {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let cache = work.path().join("hashes.json");
    let result = common::clip_ast().args(split_args(root, dataset, shots, &store, &cache)).output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    assert!(!result.status.success(), "expected failure");
    assert_ne!(result.status.code(), Some(101), "panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "want one line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for needle in needles {
        assert!(lines[0].contains(needle), "`{needle}` not in: {stderr}");
    }
    assert!(result.stdout.is_empty());
    for dir in ["split", "tmp"] {
        let left = common::files_under(&store.join(dir));
        assert!(
            left.is_empty() && !store.join(dir).read_dir().is_ok_and(|mut d| d.next().is_some()),
            "left behind: {left:?}"
        );
    }
    lines[0].to_owned()
}

#[test]
fn bad_input_gives_one_clear_error_and_writes_nothing() {
    let ds = coop_dataset();
    let untouched = listing(&ds.dataset_dir);

    // K < 1.
    expect_error(&ds.root, "dtd", "0", &["--shots 0", "at least 1"]);
    expect_error(&ds.root, "dtd", "-3", &["--shots -3", "at least 1"]);
    // Unknown dataset, and a root without the dataset folder.
    expect_error(&ds.root, "cifar10", "1", &["--dataset `cifar10`", "caltech101"]);
    let e = expect_error(&ds.root, "caltech101", "1", &["no Caltech101 dataset", "caltech-101/101_ObjectCategories"]);
    assert!(e.contains("Caltech101/101_ObjectCategories"), "CLIP-LoRA folder name: {e}");

    // Label/classname mismatch.
    let split_text = std::fs::read_to_string(&ds.split_json).unwrap();
    let mut split: Value = serde_json::from_str(&split_text).unwrap();
    split["test"][1][2] = "wrinkled".into();
    std::fs::write(&ds.split_json, split.to_string()).unwrap();
    expect_error(&ds.root, "dtd", "1", &["split_zhou_DescribableTextures.json", "label", "wrinkled", "test[1]"]);

    // Split naming images that do not exist: 25 listed as missing, 20 shown, count given.
    let mut split: Value = serde_json::from_str(&split_text).unwrap();
    let train = split["train"].as_array_mut().unwrap();
    for i in 0..25 {
        train.push(serde_json::json!([format!("banded/ghost_{i:02}.png"), 0, "banded"]));
    }
    std::fs::write(&ds.split_json, split.to_string()).unwrap();
    let e = expect_error(&ds.root, "dtd", "1", &["25 of", "do not exist", "ghost_00.png", "first 20 shown"]);
    assert_eq!(e.matches("ghost_").count(), 20, "{e}");
    std::fs::write(&ds.split_json, &split_text).unwrap();

    // Corrupt images, one that few-shot train always takes (its class has one image) and one
    // in the test set: both named in the one error.
    let split: Value = serde_json::from_str(&split_text).unwrap();
    let only = split["train"].as_array().unwrap().iter().find(|r| r[2] == "chequered").unwrap()[0]
        .as_str()
        .unwrap()
        .to_owned();
    let test_img = split["test"][0][0].as_str().unwrap().to_owned();
    std::fs::write(ds.image_dir.join(&only), b"not a png").unwrap();
    let bytes = std::fs::read(ds.image_dir.join(&test_img)).unwrap();
    std::fs::write(ds.image_dir.join(&test_img), &bytes[..bytes.len() / 2]).unwrap();
    expect_error(&ds.root, "dtd", "1", &["2 image(s) cannot be decoded", &only, &test_img]);

    assert_eq!(listing(&ds.dataset_dir), untouched, "the dataset folder is left as it was");
}
