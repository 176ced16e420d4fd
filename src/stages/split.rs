//! The `split` artifact. Its key holds the sampling settings and a fingerprint of the data they
//! select: the dataset's lists and the content hash of every image the split uses, so editing
//! an image or a split file makes a new artifact while moving the dataset folder does not.

use std::collections::BTreeSet;

use anyhow::Result;
use serde_json::json;

use super::StageContext;
use super::definition::Stage;
use crate::data::datasets;
use crate::data::fewshot::{ShortClass, coop_fewshot};
use crate::data::file_hashes::hash_files;
use crate::data::split::{SplitRequest, make_split};
use crate::data::split_file::Datum;
use crate::data::subsample;
use crate::settings::Settings;
use crate::settings::split::SplitSettings;
use crate::store::{Artifact, ArtifactKey, ArtifactKind, ArtifactSpec};

const SCHEMA: u32 = 1;

/// The split artifact's key params: the sampling settings and the data fingerprint.
fn params(request: &SplitRequest) -> Result<serde_json::Value> {
    let mut params = sampling(request)?;
    params["data_blake3"] = json!(data_fingerprint(request)?);
    Ok(params)
}

/// The sampling settings a split's key holds.
fn sampling(request: &SplitRequest) -> Result<serde_json::Value> {
    // The manifest's own name, so aliases (dtd, DescribableTextures) share one key.
    let manifest = datasets::manifest(&request.dataset)?;
    let dataset = manifest.name;
    if manifest.test_only {
        // No sampling: shots, seed, subsample and split seed do not apply, so every seed of a
        // protocol shares one (large) test-only artifact.
        return Ok(json!({
            "dataset": dataset,
            "test_only": true,
            "image_size": request.image_size,
            "test_per_class": request.test_per_class,
        }));
    }
    let mut params = json!({
        "dataset": dataset,
        "shots": request.shots,
        "seed": request.seed,
        "subsample": request.subsample,
        "image_size": request.image_size,
        "split_seed": request.split_seed,
        "test_per_class": request.test_per_class,
    });
    // Only where they differ from the old behaviour, so earlier splits keep their keys.
    if !request.rendering.is_original() {
        params["rendering"] = json!(request.rendering);
    }
    if !request.pool.is_all() {
        params["pool"] = json!(request.pool);
    }
    Ok(params)
}

pub fn spec(request: &SplitRequest) -> Result<ArtifactSpec> {
    Ok(ArtifactSpec::new(ArtifactKind::Split, SCHEMA, params(request)?))
}

pub fn run(ctx: &StageContext, request: &SplitRequest) -> Result<Artifact> {
    let spec = spec(request)?.with_run_info(ctx.run_info());
    let artifact = ctx.produce(&spec, |dir| {
        let summary = make_split(request, dir)?;
        Ok(json!({ "classes": summary.classnames.len(), "train": summary.train, "val": summary.val, "test": summary.test }))
    })?;
    ctx.report(&artifact);
    Ok(artifact)
}

/// blake3 over the lists and the hashes of the images the split will hold. Sampling is cheap
/// and the file hashes are cached by path, size and mtime, so this costs little on a rerun;
/// errors (missing dataset, K < 1, missing images) surface here, before anything is written.
pub fn data_fingerprint(request: &SplitRequest) -> Result<String> {
    let manifest = datasets::manifest(&request.dataset)?;
    if manifest.test_only {
        return crate::data::split_test_only::data_fingerprint(request, &manifest);
    }
    if request.shots < 1 {
        anyhow::bail!("--shots {}: must be at least 1 (images sampled per class)", request.shots);
    }
    let loc = datasets::locate(&manifest, &request.root)?;
    let (lists, _) = datasets::load_lists(&loc, request.split_seed)?;
    let (pool_train, pool_val) = request.pool.lists(&lists);
    let (train, val) =
        coop_fewshot(&pool_train, pool_val.as_deref(), request.shots as usize, request.seed, ShortClass::KeepAll);
    let map = subsample::relabeler(&train, request.subsample);
    // Found here, before any stage runs, not by eval after training: a half with no class, or
    // classes with no test image.
    if map.is_empty() {
        anyhow::bail!("subsample {}: the dataset's classes leave none in that half", request.subsample.as_str());
    }
    let test = crate::data::split::limit_per_class(&lists.test, request.test_per_class);
    if subsample::apply(&test, &map).is_empty() {
        anyhow::bail!("subsample {}: the kept classes have no test image", request.subsample.as_str());
    }
    let used: Vec<Datum> = [&train, &val, &test].into_iter().flat_map(|items| subsample::apply(items, &map)).collect();
    let files: BTreeSet<&str> = used.iter().map(|d| file_part(&d.impath)).collect();
    let paths: Vec<std::path::PathBuf> = files.iter().map(|f| loc.image_dir.join(f)).collect();
    let existing: Vec<std::path::PathBuf> = paths.iter().filter(|p| p.is_file()).cloned().collect();
    // Missing files are reported by the split itself, with the full list.
    let hashes = if existing.len() == paths.len() {
        hash_files(&paths, request.hash_cache.as_deref())?.blake3
    } else {
        Vec::new()
    };
    let mut hasher = blake3::Hasher::new();
    for list in [&lists.train, lists.val.as_ref().unwrap_or(&Vec::new()), &lists.test] {
        for d in list {
            hasher.update(format!("{}\t{}\t{}\n", d.impath, d.label, d.classname).as_bytes());
        }
        hasher.update(b"--\n");
    }
    for (file, hash) in files.iter().zip(&hashes) {
        hasher.update(format!("{file}\t{hash}\n").as_bytes());
    }
    Ok(hasher.finalize().to_hex().to_string())
}

fn file_part(impath: &str) -> &str {
    crate::data::idx::parse_virtual(impath).map_or(impath, |(file, _)| file)
}

/// A split as a graph node makes it: the request is its settings.
impl Stage for SplitRequest {
    fn kind(&self) -> ArtifactKind {
        ArtifactKind::Split
    }

    fn inputs(&self) -> Vec<&'static str> {
        Vec::new()
    }

    fn spec(&self, _: &[&ArtifactKey]) -> Result<ArtifactSpec> {
        spec(self)
    }

    fn run(&self, ctx: &StageContext, _: &[Artifact]) -> Result<Artifact> {
        run(ctx, self)
    }

    fn command_line(&self, _: &[&ArtifactKey]) -> Vec<String> {
        let mut args =
            vec!["split".to_string(), format!("--dataset={}", self.dataset), format!("--root={}", self.root.display())];
        // A test-only dataset's split (an `[eval] targets` one) samples nothing: no --shots.
        if self.shots != 0 {
            args.extend([format!("--shots={}", self.shots), format!("--seed={}", self.seed)]);
        }
        args.extend(SplitSettings::of(self).to_args());
        args.extend(self.hash_cache.iter().map(|c| format!("--hash-cache={}", c.display())));
        args
    }
}

/// What a split's key holds besides the data fingerprint, with the folder the data is read from:
/// two requests with the same identity make one artifact, and the fingerprint is read once.
pub fn identity(request: &SplitRequest) -> Result<String> {
    Ok(format!("{}\t{}", sampling(request)?, request.root.display()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::data::pool::Pool;
    use crate::data::rendering::Rendering;
    use crate::data::subsample::Subsample;

    /// Two requests that differ in anything a split's key holds are two nodes: the identity is
    /// built from the key's own params, so no setting can be left out of it.
    #[test]
    fn every_key_setting_is_in_the_identity() {
        let base = SplitSettings::defaults().request("dtd", Path::new("/d"), 4, 1, None);
        let identity = |r: &SplitRequest| identity(r).unwrap();
        let changes: [&dyn Fn(&mut SplitRequest); 9] = [
            &|r| r.shots = 2,
            &|r| r.seed = 2,
            &|r| r.subsample = Subsample::Base,
            &|r| r.image_size = 32,
            &|r| r.split_seed = 2,
            &|r| r.test_per_class = Some(3),
            &|r| r.rendering = Rendering::Rotated,
            &|r| r.pool = Pool::Fewshot,
            &|r| r.root = "/e".into(),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut other = base.clone();
            change(&mut other);
            assert_ne!(identity(&other), identity(&base), "change {i}");
        }
        // What the key does not hold (where hashes are cached) does not split a node.
        let cached = SplitRequest { hash_cache: Some("/c".into()), quiet: false, ..base.clone() };
        assert_eq!(identity(&cached), identity(&base));
    }
}
