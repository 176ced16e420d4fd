//! `[eval] targets`: datasets a trained model is also evaluated on, unchanged, besides its own
//! test set (cross-dataset transfer, domain generalisation). Each target is one split node
//! shared by every grid point and one eval node per (model, target), keyed as `clip-ast eval
//! --split TARGET --weights W --stage2 D` keys it, so a target adds no training.
//!
//! A target may be shown in a rendering (`rendering = "rotated"`, src/data/rendering.rs): the
//! domain-generalisation analogue on one dataset, a model adapted on one rendering evaluated on
//! renderings no stage saw. The same dataset may be a target once per rendering.
//!
//! Class names: a target is always scored among its own class names. Where its classes are a
//! subset of the source dataset's (ImageNet-A/-R/-V2/-Sketch of ImageNet), or are the source
//! dataset's own (a rendering of it), the model must have been adapted on all of them: a
//! `[data] classes` other than `all` is refused here, and any other uncovered class of a
//! subset by the eval stage (`stages::coverage`).

use std::path::PathBuf;

use anyhow::{Result, bail};

use super::file::PipelineFile;
pub use super::file::Target;
use super::grid::Point;
use crate::data::datasets;
use crate::data::split::SplitRequest;
use crate::data::subsample::Subsample;
use crate::settings::split::SplitSettings;

/// The shots and seed of a target that is an ordinary (not test-only) dataset: its test list
/// does not depend on them, so one fixed sampling serves every point.
const ORDINARY_TARGET_SHOTS: i64 = 1;
const ORDINARY_TARGET_SEED: i64 = 1;

/// The target's split for `point`: its whole test set (or `test_per_class` images per class)
/// over all its classes, in the target's rendering, at the point's image size. A test-only dataset's split samples nothing
/// (`clip-ast split` without `--shots`).
pub fn split_request(target: &Target, point: &Point, hash_cache: Option<PathBuf>) -> Result<SplitRequest> {
    let manifest = datasets::manifest(&target.dataset)?;
    let (shots, seed) = if manifest.test_only { (0, 0) } else { (ORDINARY_TARGET_SHOTS, ORDINARY_TARGET_SEED) };
    let settings = SplitSettings {
        subsample: Subsample::All,
        image_size: u32::try_from(point.get("data.image_size").as_i64()).unwrap_or(u32::MAX),
        split_seed: point.get("data.split_seed").as_i64(),
        test_per_class: target.test_per_class,
        // Original leaves the key as it was before targets had renderings (split.rs enters
        // `rendering` only when it is not original).
        rendering: target.rendering,
        pool: Default::default(),
    };
    Ok(settings.request(&manifest.name, &target.root, shots, seed, hash_cache))
}

/// A target whose classes are a subset of the point's dataset, or are that dataset's own (the
/// same dataset, in any rendering), needs a model adapted on all of that dataset's classes; with
/// `[data] classes` `base`, `new` or `base-to-novel` some are missing for certain, which is said
/// now rather than after training. (The eval stage checks subsets only: a `new`-class eval of a
/// base-trained model is base-to-novel's own protocol, so it cannot refuse the same dataset.)
pub fn check_coverage(file: &PipelineFile, target: &Target, point: &Point) -> Result<()> {
    let source = point.get("data.dataset").as_str();
    let classes = point.get("data.classes").as_str();
    if classes == "all" {
        return Ok(());
    }
    let manifest = datasets::manifest(&target.dataset)?;
    let source_name = datasets::manifest(source).map(|m| m.name).unwrap_or_else(|_| source.to_string());
    let relation = if manifest.name == source_name {
        format!("is {source_name} itself")
    } else if manifest.subset_of.as_deref() == Some(source_name.as_str()) {
        format!("has classes that are a subset of {source_name}'s")
    } else {
        return Ok(());
    };
    bail!(
        "{}:{}: [eval] targets: {} {relation}, so the model must be adapted on all of {source_name}'s classes, but [data] classes = {classes} ({}); use classes = \"all\"",
        file.path.display(),
        target.line,
        target.label(),
        file.at_point(point, "data.classes")
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::data::rendering::Rendering;

    fn parse(targets: &str) -> Result<PipelineFile> {
        let text = format!(
            "[weights]\ninit = {{ preset = \"mini\" }}\n[data]\ndataset = \"dtd\"\nroot = \"/d\"\nshots = 1\nseed = 1\n[eval]\ntargets = [\n{targets}]\n"
        );
        super::super::file::parse(&text, Path::new("t.toml"), &|_| None)
    }

    #[test]
    fn a_dataset_is_a_target_once_per_rendering() {
        let file = parse(
            "{ dataset = \"DTD\", root = \"/d\" },\n{ dataset = \"dtd\", root = \"/d\", rendering = \"rotated\" },\n",
        )
        .unwrap();
        let shown: Vec<(String, Rendering, usize)> =
            file.targets.iter().map(|t| (t.label(), t.rendering, t.line)).collect();
        assert_eq!(shown, [("dtd".into(), Rendering::Original, 10), ("dtd/rotated".into(), Rendering::Rotated, 11)]);
        let twice = "{ dataset = \"dtd\", root = \"/d\", rendering = \"rotated\" },\n{ dataset = \"dtd\", root = \"/e\", rendering = \"rotated\" },\n";
        let e = parse(twice).unwrap_err().to_string();
        assert_eq!(e, "t.toml:11: [eval] targets lists dtd/rotated twice");
        let e = parse("{ dataset = \"dtd\", root = \"/d\", rendering = \"sideways\" },\n").unwrap_err().to_string();
        assert!(e.starts_with("t.toml:10:") && e.contains("original, negative-blur, rotated, low-contrast"), "{e}");
    }
}
