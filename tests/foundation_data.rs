//! The demo foundation's data on the real Fashion-MNIST files (Debian's dataset-fashion-mnist):
//! the pretraining pool shares no image with any few-shot split or the test set, and a
//! split's rendering reaches its train and test images exactly as the numpy/PIL reference
//! (tests/ref_rendering.py) renders them.

mod common;
mod split_fixture;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use clip_ast::data::pool::Pool;
use clip_ast::data::rendering::Rendering;
use clip_ast::data::subsample::Subsample;
use clip_ast::stages::split_data::{SplitInfo, train_set};

const ROOT: &str = "/usr/share/datasets";

fn dataset_dir() -> PathBuf {
    let dir = Path::new(ROOT).join("fashion-mnist");
    assert!(
        dir.join("train-images-idx3-ubyte.gz").is_file(),
        "install Debian's dataset-fashion-mnist (make test does)"
    );
    dir
}

/// The image paths (`FILE#INDEX`) of a split.json list.
fn impaths(split: &serde_json::Value, list: &str) -> BTreeSet<String> {
    split[list].as_array().unwrap().iter().map(|d| d[0].as_str().unwrap().to_string()).collect()
}

fn split(dir: &Path, name: &str, shots: i64, seed: i64, pool: Pool, rendering: Rendering) -> serde_json::Value {
    dataset_dir();
    let mut req = split_fixture::request(Path::new(ROOT), "fashion-mnist", shots, seed, Subsample::All, &dir.join("c"));
    req.image_size = 8;
    req.test_per_class = Some(1);
    req.pool = pool;
    req.rendering = rendering;
    req.save_generated_split = false;
    split_fixture::run(&req, &dir.join(name)).1
}

#[test]
fn pretraining_pool_is_disjoint_from_every_few_shot_split_and_the_test_set() {
    let tmp = tempfile::tempdir().unwrap();
    // More shots than the pool holds per class: the whole pretraining pool.
    let pretrain = split(tmp.path(), "pre", 5000, 0, Pool::Pretrain, Rendering::Original);
    let pool = impaths(&pretrain, "train");
    assert_eq!(pool.len(), 24_000, "half of each class of the 48000-image train list");
    assert!(impaths(&pretrain, "val").is_empty(), "a pretraining split draws no val images");
    assert!(pool.iter().all(|p| p.starts_with("train-images-idx3-ubyte.gz#")));
    let test = impaths(&pretrain, "test");
    assert!(pool.is_disjoint(&test));
    for seed in 1..=3 {
        let few = split(tmp.path(), &format!("few{seed}"), 16, seed, Pool::Fewshot, Rendering::Original);
        for list in ["train", "val", "test"] {
            let used = impaths(&few, list);
            assert!(!used.is_empty(), "seed {seed} {list}");
            let shared: Vec<&String> = used.intersection(&pool).collect();
            assert!(shared.is_empty(), "seed {seed}: {list} images also in the pretraining pool: {shared:?}");
        }
    }
    // Without pools, few-shot splits do draw from the pretraining half (so the check above can fail).
    let all = split(tmp.path(), "all", 16, 1, Pool::All, Rendering::Original);
    assert!(!impaths(&all, "train").is_disjoint(&pool));
}

#[test]
fn renderings_match_the_reference_on_train_and_test_images() {
    let tmp = tempfile::tempdir().unwrap();
    let renderings = [Rendering::NegativeBlur, Rendering::Rotated, Rendering::LowContrast, Rendering::Original];
    // Per rendering: the split, and its train then test image paths.
    let mut splits = Vec::new();
    for rendering in renderings {
        let json = split(tmp.path(), rendering.as_str(), 1, 1, Pool::All, rendering);
        let paths = |list: &str| -> Vec<String> {
            json[list].as_array().unwrap().iter().map(|d| d[0].as_str().unwrap().to_string()).collect()
        };
        let (train, test) = (paths("train"), paths("test"));
        splits.push((rendering, json, train, test));
    }
    let groups: Vec<String> = splits
        .iter()
        .map(|(r, _, train, test)| format!("{}={}", r.as_str(), [train.as_slice(), test].concat().join(",")))
        .collect();
    let dir = dataset_dir();
    let mut args: Vec<&OsStr> = vec![dir.as_os_str(), OsStr::new("8"), tmp.path().as_os_str()];
    args.extend(groups.iter().map(OsStr::new));
    common::run_reference("ref_rendering.py", &args);

    for (rendering, json, train, test) in splits {
        let name = rendering.as_str();
        let info: SplitInfo = serde_json::from_value(json).unwrap();
        assert_eq!(info.rendering, rendering, "split.json records the rendering");
        let reference = std::fs::read(tmp.path().join(format!("{name}.raw"))).unwrap();
        let (rendered, cropped) = reference.split_at((train.len() + test.len()) * 28 * 28 * 3);
        let ours = train_set(&info).unwrap();
        for (i, img) in ours.images.iter().enumerate() {
            assert_eq!(img.as_raw().as_slice(), &rendered[i * 2352..(i + 1) * 2352], "{name}: train image {i}");
        }
        let tensors = tch::Tensor::read_safetensors(tmp.path().join(name).join("test_images.safetensors")).unwrap();
        let images = &tensors.iter().find(|(k, _)| k == "images").unwrap().1;
        let ours = Vec::<u8>::try_from(images.flatten(0, -1)).unwrap();
        assert_eq!(ours.as_slice(), &cropped[train.len() * 8 * 8 * 3..], "{name}: test images");
    }
}
