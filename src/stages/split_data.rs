//! Reading a split artifact back: class names, template, the train images (decoded once, in
//! parallel), the preprocessed test set and the val images (preprocessed as the test set is).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use serde::Deserialize;

use crate::data::augment::{FileTrainSet, TrainImages, TrainSet};
use crate::data::datasets::load_image;
use crate::data::idx;
use crate::data::image::resize_and_center_crop;
use crate::data::rendering::Rendering;
use crate::eval::TestSet;
use crate::store::Artifact;

use super::split_images::{self, Origin};

#[derive(Clone, Debug, Deserialize)]
pub struct SplitInfo {
    pub dataset: String,
    pub classnames: Vec<String>,
    pub template: String,
    pub shots: i64,
    pub seed: i64,
    pub subsample: String,
    pub image_size: u32,
    pub image_dir: PathBuf,
    pub train: Vec<(String, i64, String)>,
    /// CoOp's few-shot val images, min(K, 4) per class (none where the dataset has no val list).
    pub val: Vec<(String, i64, String)>,
    /// A test-only split (ImageNet's variants): `train` and the val list are empty, so it can be
    /// evaluated on but not trained or validated on.
    #[serde(default)]
    pub test_only: bool,
    /// The dataset whose classes a test-only split's are (`imagenet`), which a model adapted on
    /// that dataset must cover; `None` for other splits.
    #[serde(default)]
    pub subset_of: Option<String>,
    /// How the split renders its images; splits made before renderings existed are `original`.
    #[serde(default)]
    pub rendering: Rendering,
    /// The artifact it was read from ([`read_split`] sets it), whose recorded image hashes the
    /// images are checked against before they are read; `None` for a split built in code.
    #[serde(skip)]
    pub origin: Option<Origin>,
}

impl SplitInfo {
    /// Training stages call this first: a test-only split has no train images.
    pub fn check_trainable(&self) -> Result<()> {
        if self.test_only {
            bail!(
                "the split of {} is test-only (no train or val images); adapt on {} and evaluate here with `clip-ast eval --split`",
                self.dataset,
                self.subset_of.as_deref().unwrap_or("another dataset")
            );
        }
        Ok(())
    }
}

pub fn read_split(artifact: &Artifact) -> Result<SplitInfo> {
    let path = artifact.file("split.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut info: SplitInfo =
        serde_json::from_str(&text).with_context(|| format!("{}: not a clip-ast split file", path.display()))?;
    info.origin = Some(Origin::of(artifact));
    Ok(info)
}

fn impaths(list: &[(String, i64, String)]) -> Vec<&str> {
    list.iter().map(|(impath, _, _)| impath.as_str()).collect()
}

/// The train images for a run of `epochs` passes: read from their files batch by batch for a
/// single pass over image files, else decoded once up front (Fashion-MNIST's images live inside
/// one IDX file, which is read once).
pub fn train_images(split: &SplitInfo, epochs: usize) -> Result<TrainImages> {
    split.check_trainable()?;
    let in_files = split.train.iter().all(|(impath, _, _)| idx::parse_virtual(impath).is_none());
    if epochs == 1 && in_files && split.rendering.is_original() {
        split_images::check(split, &impaths(&split.train), "train")?;
        let paths = split.train.iter().map(|(impath, _, _)| split.image_dir.join(impath)).collect();
        let labels = split.train.iter().map(|(_, label, _)| *label).collect();
        return Ok(TrainImages::Files(Arc::new(FileTrainSet { paths, labels })));
    }
    Ok(TrainImages::Decoded(train_set(split)?))
}

/// The few-shot train images in the split's rendering, decoded once for the whole run.
pub fn train_set(split: &SplitInfo) -> Result<Arc<TrainSet>> {
    split.check_trainable()?;
    train_set_rendered(split, split.rendering)
}

/// One image of the split (train or val) as the split shows it: decoded, then rendered.
pub fn load_split_image(split: &SplitInfo, impath: &str) -> Result<image::RgbImage> {
    Ok(split.rendering.apply(load_image(&split.image_dir, impath)?))
}

/// The train images in `rendering` (pretraining mixes the split's rendering with another).
pub fn train_set_rendered(split: &SplitInfo, rendering: Rendering) -> Result<Arc<TrainSet>> {
    split_images::check(split, &impaths(&split.train), "train")?;
    let decoded: Vec<Result<image::RgbImage>> = split
        .train
        .par_iter()
        .map(|(impath, _, _)| Ok(rendering.apply(load_image(&split.image_dir, impath)?)))
        .collect();
    let mut images = Vec::with_capacity(decoded.len());
    let mut errors = Vec::new();
    for result in decoded {
        match result {
            Ok(img) => images.push(img),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        bail!("{} train image(s) cannot be read: {}", errors.len(), errors.join("; "));
    }
    let labels = split.train.iter().map(|(_, label, _)| *label).collect();
    Ok(Arc::new(TrainSet { images: Arc::new(images), labels }))
}

pub fn test_set(artifact: &Artifact) -> Result<TestSet> {
    let path = artifact.file("test_images.safetensors");
    let tensors = tch::Tensor::read_safetensors(&path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read test images ({e})", path.display()))?;
    let find = |name: &str| {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.shallow_clone())
            .with_context(|| format!("{}: no `{name}` tensor", path.display()))
    };
    Ok(TestSet { images: find("images")?, labels: find("labels")? })
}

/// The split's val images, in its rendering, with the test set's preprocessing (shorter side resized to `size`,
/// centre crop), read from their files: a val list is at most 4 images per class, so decoding
/// it per evaluation costs little, and the split artifact (and every key made from it) stays as
/// it was. `None` when the split has no val images.
pub fn val_set(split: &SplitInfo, size: u32) -> Result<Option<TestSet>> {
    if split.val.is_empty() {
        return Ok(None);
    }
    split_images::check(split, &impaths(&split.val), "val")?;
    let decoded: Vec<Result<image::RgbImage>> = split
        .val
        .par_iter()
        .map(|(impath, _, _)| Ok(resize_and_center_crop(&load_split_image(split, impath)?, size)))
        .collect();
    let mut pixels = Vec::with_capacity(split.val.len() * (size * size * 3) as usize);
    let mut errors = Vec::new();
    for result in decoded {
        match result {
            Ok(img) => pixels.extend_from_slice(img.as_raw()),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        bail!("{} val image(s) cannot be read: {}", errors.len(), errors.join("; "));
    }
    let side = i64::from(size);
    let images = tch::Tensor::from_slice(&pixels).view([split.val.len() as i64, side, side, 3]);
    let labels = tch::Tensor::from_slice(&split.val.iter().map(|(_, label, _)| *label).collect::<Vec<i64>>());
    Ok(Some(TestSet { images, labels }))
}
