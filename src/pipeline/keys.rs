//! The key each stage will give its artifact, known before anything runs, so a dry run can
//! tell what is cached and identical stages of different grid points become one node.
//!
//! Each function mirrors the `ArtifactSpec` its stage in `src/stages/` builds: kind, schema
//! version, params and input names. The stages do not expose their specs, so this is a copy;
//! the executor compares every artifact a stage returns with the key predicted here and warns
//! on a difference, and tests/pipeline_runner.rs fails on that warning. A stage that changes
//! its spec must change its mirror here.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::{Value, json};

use super::chain::SelectSettings;
use super::file::WeightsSource;
use crate::clip::layers::Precision;
use crate::data::split::SplitRequest;
use crate::stages::stage2::Init;
use crate::store::ArtifactKey;
use crate::train::pretrain::PretrainParams;
use crate::train::probe::STEPS as PROBE_STEPS;
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
            let params = json!({ "source_blake3": crate::stages::weights::hash_file(path)?, "activation": activation });
            key("weights", params, &[])
        }
        WeightsSource::Init { preset, seed } => key("weights", json!({ "init": preset, "seed": seed }), &[]),
        WeightsSource::Pretrain(_) => {
            anyhow::bail!("a pretrained foundation's key depends on its split: use `pretrain`")
        }
    })
}

/// `stages::pretrain::run`.
pub fn pretrain(split: &ArtifactKey, preset: &str, init_seed: i64, params: &PretrainParams) -> ArtifactKey {
    key("weights", json!({ "pretrain": params, "preset": preset, "init_seed": init_seed }), &[("split", split)])
}

/// `stages::probe::run`.
pub fn probe(split: &ArtifactKey, weights: &ArtifactKey) -> ArtifactKey {
    key("eval", json!({ "method": "linear-probe", "steps": PROBE_STEPS }), &[("split", split), ("weights", weights)])
}

/// `stages::split::run`.
pub fn split(request: &SplitRequest) -> Result<ArtifactKey> {
    Ok(key("split", crate::stages::split::params(request)?, &[]))
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

/// `stages::eval::run`, zero-shot or with a stage-2 delta (`method` from [`eval_method`]).
pub fn eval(
    splits: &[&ArtifactKey],
    weights: &ArtifactKey,
    stage2: Option<&ArtifactKey>,
    precision: Precision,
    method: &str,
) -> ArtifactKey {
    let mut inputs = vec![("weights", weights), ("split", splits[0])];
    if let Some(stage2) = stage2 {
        inputs.push(("stage2", stage2));
    }
    if let Some(new) = splits.get(1) {
        inputs.push(("split_new", new));
    }
    key("eval", json!({ "precision": precision, "method": method }), &inputs)
}
