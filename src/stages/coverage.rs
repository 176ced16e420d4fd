//! Class coverage when a model adapted on one dataset is evaluated on another.
//!
//! The classifier is always built from the evaluated split's own class names (CoOp builds its
//! prompts from the target dataset's names). Two cases:
//! - cross-dataset (the target is another dataset): its names are simply its own, nothing to check;
//! - an ImageNet variant evaluated with a model adapted on ImageNet: the variant's classes are a
//!   subset of ImageNet's, and its 200 (A, R) or 1000 (V2, Sketch) prompts are exactly the
//!   matching rows of the ImageNet classifier, since each row depends on its class name alone.
//!   That only holds if the model was adapted on every one of those classes, so a class missing
//!   from the adaptation split (a `base` subsample, a different classnames.txt) is an error.

use anyhow::{Context, Result, bail};

use super::StageContext;
use super::split_data::{SplitInfo, read_split};
use crate::store::{Artifact, ArtifactKind};

/// Fail if a stage-2 delta is evaluated on a split whose classes must be, but are not, among
/// those of the split it was trained on.
pub fn check_covered(ctx: &StageContext, stage2: &Artifact, targets: &[SplitInfo]) -> Result<()> {
    if targets.iter().all(|t| t.subset_of.is_none()) {
        return Ok(());
    }
    let key = stage2.manifest.inputs.get("split").context("stage-2 manifest names no split")?;
    let source = read_split(&ctx.store.resolve(key.as_str(), Some(ArtifactKind::Split))?)?;
    for target in targets {
        let missing = uncovered(target, &source);
        if !missing.is_empty() {
            let shown: Vec<String> = missing.iter().take(5).map(|name| format!("`{name}`")).collect();
            bail!(
                "{} of {}'s {} classes are not among the {} classes the model was adapted on ({} split, subsample {}): {}{}; adapt on all of {}'s classes",
                missing.len(),
                target.dataset,
                target.classnames.len(),
                source.classnames.len(),
                source.dataset,
                source.subsample,
                shown.join(", "),
                if missing.len() > shown.len() { ", ..." } else { "" },
                source.dataset
            );
        }
    }
    Ok(())
}

/// The target's class names the source does not have, where coverage is required (the target is
/// a subset of the source's dataset); empty otherwise.
pub fn uncovered<'a>(target: &'a SplitInfo, source: &SplitInfo) -> Vec<&'a str> {
    if target.subset_of.as_deref() != Some(source.dataset.as_str()) {
        return Vec::new();
    }
    let known: std::collections::HashSet<&str> = source.classnames.iter().map(String::as_str).collect();
    target.classnames.iter().map(String::as_str).filter(|name| !known.contains(name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(dataset: &str, names: &[&str], subset_of: Option<&str>) -> SplitInfo {
        SplitInfo {
            dataset: dataset.into(),
            classnames: names.iter().map(|s| s.to_string()).collect(),
            template: "a photo of a {}.".into(),
            shots: 0,
            seed: 0,
            subsample: "all".into(),
            image_size: 32,
            image_dir: "/data".into(),
            train: Vec::new(),
            val: Vec::new(),
            test_only: subset_of.is_some(),
            subset_of: subset_of.map(str::to_string),
            rendering: Default::default(),
            origin: None,
        }
    }

    #[test]
    fn a_variant_must_be_covered_by_its_source_only() {
        let imagenet_base = info("imagenet", &["tench", "goldfish", "shark"], None);
        let a = info("imagenet-a", &["goldfish", "hen", "ostrich"], Some("imagenet"));
        assert_eq!(uncovered(&a, &imagenet_base), ["hen", "ostrich"]);
        let imagenet_all = info("imagenet", &["tench", "goldfish", "shark", "hen", "ostrich"], None);
        assert!(uncovered(&a, &imagenet_all).is_empty());
        // Cross-dataset: a model adapted elsewhere is evaluated on the target's own names.
        let dtd = info("dtd", &["banded"], None);
        assert!(uncovered(&a, &dtd).is_empty());
        assert!(uncovered(&dtd, &imagenet_base).is_empty());
    }
}
