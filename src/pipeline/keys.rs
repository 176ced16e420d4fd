//! The key each stage will give its artifact, known before anything runs, so a dry run can
//! tell what is cached and identical stages of different grid points become one node.
//!
//! Each function mirrors the `ArtifactSpec` its stage in `src/stages/` builds: kind, schema
//! version, params and input names. The stages do not expose their specs, so this is a copy;
//! the executor compares every artifact a stage returns with the key predicted here and warns
//! on a difference, and tests/pipeline_runner.rs fails on that warning. A stage that changes
//! its spec must change its mirror here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};

use super::chain::SelectSettings;
use super::file::WeightsSource;
use crate::clip::layers::Precision;
use crate::data::datasets;
use crate::data::fewshot::{ShortClass, coop_fewshot};
use crate::data::file_hashes::hash_files;
use crate::data::split::{SplitRequest, limit_per_class};
use crate::data::split_file::Datum;
use crate::data::subsample;
use crate::stages::stage2::Init;
use crate::store::ArtifactKey;
use crate::train::stage1::Stage1Params;
use crate::train::stage2::Stage2Params;

/// Every stage's `const SCHEMA`.
const SCHEMA: u32 = 1;

fn key(kind: &str, params: Value, inputs: &[(&str, &ArtifactKey)]) -> ArtifactKey {
    let inputs: BTreeMap<String, ArtifactKey> = inputs.iter().map(|(n, k)| (n.to_string(), (*k).clone())).collect();
    ArtifactKey::compute(kind, SCHEMA, &params, &inputs)
}

/// `stages::weights::{import_weights, init}`.
pub fn weights(source: &WeightsSource) -> Result<ArtifactKey> {
    Ok(match source {
        WeightsSource::File { path, activation } => {
            let params = json!({ "source_blake3": hash_file(path)?, "activation": activation });
            key("weights", params, &[])
        }
        WeightsSource::Init { preset, seed } => key("weights", json!({ "init": preset, "seed": seed }), &[]),
    })
}

/// `stages::split::run`.
pub fn split(request: &SplitRequest) -> Result<ArtifactKey> {
    let fingerprint = data_fingerprint(request)?;
    let dataset = datasets::manifest(&request.dataset)?.name;
    let params = json!({
        "dataset": dataset,
        "shots": request.shots,
        "seed": request.seed,
        "subsample": request.subsample.as_str(),
        "image_size": request.image_size,
        "split_seed": request.split_seed,
        "test_per_class": request.test_per_class,
        "data_blake3": fingerprint,
    });
    Ok(key("split", params, &[]))
}

/// `stages::stage1::run`.
pub fn stage1(split: &ArtifactKey, weights: &ArtifactKey, params: &Stage1Params) -> ArtifactKey {
    key("stage1", json!({ "train": params }), &[("split", split), ("weights", weights)])
}

/// `stages::select::run`.
pub fn selection(stage1: &ArtifactKey, s: &SelectSettings) -> ArtifactKey {
    let params = json!({ "rule": s.rule, "k": s.k, "towers": s.towers, "seed": s.seed });
    key("selection", params, &[("stage1", stage1)])
}

/// `stages::stage2::run`.
pub fn stage2(
    split: &ArtifactKey,
    weights: &ArtifactKey,
    selection: &ArtifactKey,
    init: Init,
    params: &Stage2Params,
) -> ArtifactKey {
    key(
        "stage2",
        json!({ "train": params, "init": init }),
        &[("split", split), ("weights", weights), ("selection", selection)],
    )
}

/// The rule as the selection manifest records it (`inv-sqrt-v`), which eval's method reads.
pub fn rule_name(select: &SelectSettings) -> String {
    serde_json::to_value(select.rule).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// `stages::eval`'s method name for a stage-2 delta made with `select`'s tensors.
pub fn eval_method(select: &SelectSettings) -> String {
    let rule = rule_name(select);
    let per_block = crate::clip::config::block_tensor_shapes(1, 1).len();
    if select.k >= per_block {
        "full-ft".to_string()
    } else if rule == "random" {
        "random-k".to_string()
    } else {
        format!("clip-ast/{rule}")
    }
}

/// `stages::eval::run` with a stage-2 delta; `method` from [`eval_method`].
pub fn eval(
    splits: &[&ArtifactKey],
    weights: &ArtifactKey,
    stage2: &ArtifactKey,
    precision: Precision,
    method: &str,
) -> ArtifactKey {
    let mut inputs = vec![("weights", weights), ("split", splits[0]), ("stage2", stage2)];
    if let Some(new) = splits.get(1) {
        inputs.push(("split_new", new));
    }
    key("eval", json!({ "precision": precision, "method": method }), &inputs)
}

fn hash_file(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!("{}: no such weights file ([weights] file)", path.display()),
        _ => anyhow!("{}: cannot open ({e})", path.display()),
    })?;
    if file.metadata()?.is_dir() {
        bail!("{}: is a folder; [weights] file takes a checkpoint file", path.display());
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file).map_err(|e| anyhow!("{}: cannot read ({e})", path.display()))?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// `stages::split`'s fingerprint: the dataset's lists and the hashes of the images the split
/// uses.
fn data_fingerprint(request: &SplitRequest) -> Result<String> {
    if request.shots < 1 {
        bail!("shots {}: must be at least 1 (images sampled per class)", request.shots);
    }
    let manifest = datasets::manifest(&request.dataset)?;
    let loc = datasets::locate(&manifest, &request.root)?;
    let (lists, _) = datasets::load_lists(&loc, request.split_seed)?;
    let (train, val) =
        coop_fewshot(&lists.train, lists.val.as_deref(), request.shots as usize, request.seed, ShortClass::KeepAll);
    let map = subsample::relabeler(&train, request.subsample);
    let test = limit_per_class(&lists.test, request.test_per_class);
    let used: Vec<Datum> = [&train, &val, &test].into_iter().flat_map(|items| subsample::apply(items, &map)).collect();
    let files: BTreeSet<&str> = used.iter().map(|d| file_part(&d.impath)).collect();
    let paths: Vec<std::path::PathBuf> = files.iter().map(|f| loc.image_dir.join(f)).collect();
    let hashes = if paths.iter().all(|p| p.is_file()) {
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
