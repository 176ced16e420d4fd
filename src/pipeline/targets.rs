//! `[eval] targets`: datasets a trained model is also evaluated on, unchanged, besides its own
//! test set (cross-dataset transfer, domain generalisation). Each target is one split node
//! shared by every grid point and one eval node per (model, target), keyed as `clip-ast eval
//! --split TARGET --weights W --stage2 D` keys it, so a target adds no training.
//!
//! Class names: a target is always scored among its own class names. Where its classes are a
//! subset of the source dataset's (ImageNet-A/-R/-V2/-Sketch of ImageNet), the model must have
//! been adapted on all of them: a `[data] classes` other than `all` is refused here, and any
//! other uncovered class by the eval stage (`stages::coverage`).

use std::path::PathBuf;

use anyhow::{Result, bail};

use super::file::PipelineFile;
use super::grid::Point;
use crate::data::datasets;
use crate::data::split::SplitRequest;
use crate::data::subsample::Subsample;

/// One `{ dataset = "...", root = "...", test_per_class = N }` of `[eval] targets`.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The dataset's canonical name (its data-manifest's), as results.csv's `target` shows it.
    pub dataset: String,
    pub root: PathBuf,
    pub test_per_class: Option<usize>,
    /// The line of the target in the pipeline file, for messages.
    pub line: usize,
}

/// The shots and seed of a target that is an ordinary (not test-only) dataset: its test list
/// does not depend on them, so one fixed sampling serves every point.
const ORDINARY_TARGET_SHOTS: i64 = 1;
const ORDINARY_TARGET_SEED: i64 = 1;

/// The target's split for `point`: its whole test set (or `test_per_class` images per class)
/// over all its classes, at the point's image size. A test-only dataset's split samples nothing
/// (`clip-ast split` without `--shots`).
pub fn split_request(target: &Target, point: &Point, hash_cache: Option<PathBuf>) -> Result<SplitRequest> {
    let manifest = datasets::manifest(&target.dataset)?;
    let (shots, seed) = if manifest.test_only { (0, 0) } else { (ORDINARY_TARGET_SHOTS, ORDINARY_TARGET_SEED) };
    Ok(SplitRequest {
        dataset: manifest.name,
        root: target.root.clone(),
        shots,
        seed,
        subsample: Subsample::All,
        image_size: u32::try_from(point.get("data.image_size").as_i64()).unwrap_or(u32::MAX),
        split_seed: point.get("data.split_seed").as_i64(),
        test_per_class: target.test_per_class,
        hash_cache,
        save_generated_split: true,
        quiet: true,
        // A target is shown as its dataset is on disk (renderings are a source-side setting).
        rendering: Default::default(),
        pool: Default::default(),
    })
}

/// A target whose classes are a subset of the point's dataset needs a model adapted on all of
/// that dataset's classes; with `[data] classes` `base`, `new` or `base-to-novel` some are
/// missing for certain, which is said now rather than after training.
pub fn check_coverage(file: &PipelineFile, target: &Target, point: &Point) -> Result<()> {
    let source = point.get("data.dataset").as_str();
    let classes = point.get("data.classes").as_str();
    let manifest = datasets::manifest(&target.dataset)?;
    let source_name = datasets::manifest(source).map(|m| m.name).unwrap_or_else(|_| source.to_string());
    if manifest.subset_of.as_deref() == Some(source_name.as_str()) && classes != "all" {
        bail!(
            "{}:{}: [eval] targets: {}'s classes are a subset of {source_name}'s, so the model must be adapted on all of {source_name}'s classes, but [data] classes = {classes} ({}); use classes = \"all\"",
            file.path.display(),
            target.line,
            manifest.name,
            file.at_point(point, "data.classes")
        );
    }
    Ok(())
}
