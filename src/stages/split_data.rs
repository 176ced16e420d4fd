//! Reading a split artifact back: class names, template, the train images (decoded once, in
//! parallel) and the preprocessed test set.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use serde::Deserialize;

use crate::data::augment::{FileTrainSet, TrainImages, TrainSet};
use crate::data::datasets::load_image;
use crate::data::idx;
use crate::data::rendering::Rendering;
use crate::eval::TestSet;
use crate::store::Artifact;

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
    /// How the split renders its images; splits made before renderings existed are `original`.
    #[serde(default)]
    pub rendering: Rendering,
}

pub fn read_split(artifact: &Artifact) -> Result<SplitInfo> {
    let path = artifact.file("split.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a clip-ast split file", path.display()))
}

/// The train images for a run of `epochs` passes: read from their files batch by batch for a
/// single pass over image files, else decoded once up front (Fashion-MNIST's images live inside
/// one IDX file, which is read once).
pub fn train_images(split: &SplitInfo, epochs: usize) -> Result<TrainImages> {
    let in_files = split.train.iter().all(|(impath, _, _)| idx::parse_virtual(impath).is_none());
    if epochs == 1 && in_files && split.rendering.is_original() {
        let paths = split.train.iter().map(|(impath, _, _)| split.image_dir.join(impath)).collect();
        let labels = split.train.iter().map(|(_, label, _)| *label).collect();
        return Ok(TrainImages::Files(Arc::new(FileTrainSet { paths, labels })));
    }
    Ok(TrainImages::Decoded(train_set(split)?))
}

/// The few-shot train images in the split's rendering, decoded once for the whole run.
pub fn train_set(split: &SplitInfo) -> Result<Arc<TrainSet>> {
    train_set_rendered(split, split.rendering)
}

/// One image of the split (train or val) as the split shows it: decoded, then rendered.
pub fn load_split_image(split: &SplitInfo, impath: &str) -> Result<image::RgbImage> {
    Ok(split.rendering.apply(load_image(&split.image_dir, impath)?))
}

/// The train images in `rendering` (pretraining mixes the split's rendering with another).
pub fn train_set_rendered(split: &SplitInfo, rendering: Rendering) -> Result<Arc<TrainSet>> {
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
