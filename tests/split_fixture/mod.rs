//! Tiny CoOp-shaped datasets for the split tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use clip_ast::data::split::{SplitRequest, SplitSummary, make_split};
use clip_ast::data::subsample::Subsample;

pub const CLASSES: [&str; 6] = ["banded", "braided", "bubbly", "bumpy", "chequered", "cobwebbed"];
/// Uneven on purpose: one class above 85 items (Python's sample takes its set branch even for
/// K = 16), some below K for K >= 2, one with a single image.
pub const TRAIN: [usize; 6] = [100, 30, 3, 12, 1, 20];
pub const VAL: [usize; 6] = [5, 2, 4, 1, 3, 6];
pub const TEST: [usize; 6] = [4, 2, 3, 1, 2, 3];

/// A distinct tiny PNG per name.
pub fn png(path: &Path, seed: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(6 + (seed % 3) as u32, 5, |x, y| {
        image::Rgb([(seed % 251) as u8, (x * 40) as u8, (y * 50 + (seed / 251) as u32) as u8])
    });
    img.save(path).unwrap();
}

pub struct Dataset {
    pub tmp: tempfile::TempDir,
    /// `--root`: holds `dtd/`
    pub root: PathBuf,
    pub dataset_dir: PathBuf,
    pub image_dir: PathBuf,
    pub split_json: PathBuf,
}

/// A DTD-layout dataset (`dtd/images/<class>/*.png` + `split_zhou_DescribableTextures.json`)
/// whose split lists interleave classes, so first-appearance order differs from label order.
pub fn coop_dataset() -> Dataset {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let dataset_dir = root.join("dtd");
    let image_dir = dataset_dir.join("images");
    let mut n = 0;
    let mut part = |sizes: &[usize; 6], tag: &str| {
        let mut rows = Vec::new();
        for (label, (&count, class)) in sizes.iter().zip(CLASSES).enumerate() {
            for i in 0..count {
                let impath = format!("{class}/{class}_{tag}{i:03}.png");
                png(&image_dir.join(&impath), n);
                n += 1;
                rows.push(serde_json::json!([impath, label, class]));
            }
        }
        interleave(rows)
    };
    let split = serde_json::json!({"train": part(&TRAIN, "tr"), "val": part(&VAL, "va"), "test": part(&TEST, "te")});
    let split_json = dataset_dir.join("split_zhou_DescribableTextures.json");
    std::fs::write(&split_json, serde_json::to_vec_pretty(&split).unwrap()).unwrap();
    Dataset { tmp, root, dataset_dir, image_dir, split_json }
}

/// A fixed permutation (multiplicative step coprime to the length).
fn interleave<T: Clone>(rows: Vec<T>) -> Vec<T> {
    let n = rows.len();
    let step = (1..n).rev().find(|s| gcd(*s, n) == 1 && *s > n / 3).unwrap_or(1);
    (0..n).map(|i| rows[(i * step + 3) % n].clone()).collect()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

pub fn request(root: &Path, dataset: &str, shots: i64, seed: i64, subsample: Subsample, cache: &Path) -> SplitRequest {
    SplitRequest {
        dataset: dataset.into(),
        root: root.into(),
        shots,
        seed,
        subsample,
        image_size: 16,
        split_seed: 1,
        test_per_class: None,
        rendering: Default::default(),
        pool: Default::default(),
        hash_cache: Some(cache.into()),
        save_generated_split: true,
        quiet: true,
    }
}

/// Run the split stage in-process into a fresh folder; returns the summary and split.json.
pub fn run(req: &SplitRequest, out: &Path) -> (SplitSummary, serde_json::Value) {
    std::fs::create_dir_all(out).unwrap();
    let summary = make_split(req, out).unwrap_or_else(|e| panic!("split failed: {e:#}"));
    let json = serde_json::from_slice(&std::fs::read(out.join("split.json")).unwrap()).unwrap();
    (summary, json)
}

pub fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}
