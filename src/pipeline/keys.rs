//! The key each stage will give its artifact, known before anything runs, so a dry run can
//! tell what is cached and identical stages of different grid points become one node.
//!
//! Each function builds its stage's own `spec` (in `src/stages/`) from the input keys; the
//! stage builds the same spec from the input artifacts when it runs, so the two cannot drift.
//! The executor still compares every artifact a stage returns with the key predicted here and
//! warns on a difference (tests/pipeline_runner.rs fails on that warning).

use anyhow::Result;

use super::file::WeightsSource;
use crate::clip::layers::Precision;
use crate::data::split::SplitRequest;
use crate::stages;
use crate::stages::stage2::Init;
use crate::store::ArtifactKey;
use crate::train::pretrain::PretrainParams;
use crate::train::select::SelectRequest;
use crate::train::stage1::Stage1Params;
use crate::train::stage2::Stage2Params;

/// `stages::weights::{import_weights, init}`.
pub fn weights(source: &WeightsSource) -> Result<ArtifactKey> {
    Ok(match source {
        WeightsSource::File { path, activation } => stages::weights::import_spec(path, *activation)?.key(),
        WeightsSource::Init { preset, seed } => stages::weights::init_spec(preset, *seed).key(),
        WeightsSource::Pretrain(_) => {
            anyhow::bail!("a pretrained foundation's key depends on its split: use `pretrain`")
        }
    })
}

/// `stages::pretrain::run`.
pub fn pretrain(split: &ArtifactKey, preset: &str, init_seed: i64, params: &PretrainParams) -> ArtifactKey {
    stages::pretrain::spec(split, preset, init_seed, params).key()
}

/// `stages::probe::run`.
pub fn probe(split: &ArtifactKey, weights: &ArtifactKey) -> ArtifactKey {
    stages::probe::spec(split, weights).key()
}

/// `stages::split::run`. Reads the dataset's lists and hashes the images the split uses.
pub fn split(request: &SplitRequest) -> Result<ArtifactKey> {
    Ok(stages::split::spec(request)?.key())
}

/// `stages::stage1::run`.
pub fn stage1(split: &ArtifactKey, weights: &ArtifactKey, params: &Stage1Params) -> ArtifactKey {
    stages::stage1::spec(split, weights, params).key()
}

/// `stages::select::run`; `like` for a parameter-matched random selection.
pub fn selection(stage1: &ArtifactKey, s: &SelectRequest, like: Option<&ArtifactKey>) -> ArtifactKey {
    stages::select::spec(stage1, s, like).key()
}

/// `stages::stage2::run`.
pub fn stage2(
    split: &ArtifactKey,
    weights: &ArtifactKey,
    selection: &ArtifactKey,
    init: Init,
    params: &Stage2Params,
) -> ArtifactKey {
    stages::stage2::spec(split, weights, selection, init, params).key()
}

/// The rule as the selection manifest records it (`inv-sqrt-v`), which eval's method reads.
pub fn rule_name(select: &SelectRequest) -> String {
    serde_json::to_value(select.rule).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// `stages::eval`'s method name for a stage-2 delta made with `select`'s tensors; `matched`
/// when they match another selection's parameter counts.
pub fn eval_method(select: &SelectRequest, matched: bool) -> String {
    stages::eval::method_name(&rule_name(select), select.k as u64, matched)
}

/// `stages::eval::run`, zero-shot or with a stage-2 delta (`method` from [`eval_method`]).
pub fn eval(
    splits: &[&ArtifactKey],
    weights: &ArtifactKey,
    stage2: Option<&ArtifactKey>,
    precision: Precision,
    method: &str,
    parts: stages::eval::Parts,
) -> ArtifactKey {
    stages::eval::spec(splits, weights, stage2, precision, method, parts).key()
}
