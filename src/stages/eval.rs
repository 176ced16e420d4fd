//! The `eval` artifact: accuracy of pretrained weights (zero-shot) or weights + a stage-2 delta
//! on one split's test set, or on a base and a new split together (CoOp's base-to-novel, with
//! the harmonic mean).

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::split_data::{SplitInfo, read_split, test_set};
use super::stage2::DELTA_FILE;
use super::{StageContext, weights};
use crate::clip::Clip;
use crate::clip::layers::Precision;
use crate::clip::model::weights_to_device;
use crate::clip::weights::read_safetensors;
use crate::csv_io::{self, shortest, shortest_opt};
use crate::eval::{Accuracy, evaluate, harmonic_mean};
use crate::store::{Artifact, ArtifactKey, ArtifactKind, ArtifactSpec};
use crate::train::prompts::class_prompt_ids;

const SCHEMA: u32 = 1;
const BATCH: i64 = 64;

pub const METRIC_COLUMNS: [&str; 11] =
    ["dataset", "shots", "seed", "subsample", "method", "n", "acc", "macro_acc", "base_acc", "new_acc", "hm"];

/// `metrics.csv`'s one row ([`METRIC_COLUMNS`]); `report` reads it back. The base-to-novel
/// columns are empty for an eval of one split that is not an `all` split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    pub dataset: String,
    pub shots: i64,
    pub seed: i64,
    pub subsample: String,
    pub method: String,
    pub n: i64,
    #[serde(serialize_with = "shortest")]
    pub acc: f64,
    #[serde(serialize_with = "shortest")]
    pub macro_acc: f64,
    #[serde(serialize_with = "shortest_opt")]
    pub base_acc: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub new_acc: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub hm: Option<f64>,
}

const PER_CLASS_COLUMNS: [&str; 6] = ["subsample", "label", "classname", "n", "correct", "acc"];

/// A row of `per_class.csv`.
#[derive(Serialize)]
struct PerClassRow<'a> {
    subsample: &'a str,
    label: i64,
    classname: &'a str,
    n: i64,
    correct: i64,
    #[serde(serialize_with = "shortest")]
    acc: f64,
}

/// `splits`: one, or a base then a new split; `method` as [`method_of`] names a stage-2 delta's,
/// or `zero-shot`.
pub fn spec(
    splits: &[&ArtifactKey],
    weights: &ArtifactKey,
    stage2: Option<&ArtifactKey>,
    precision: Precision,
    method: &str,
) -> ArtifactSpec {
    let mut spec = ArtifactSpec::new(ArtifactKind::Eval, SCHEMA, json!({ "precision": precision, "method": method }))
        .input_key("weights", weights)
        .input_key("split", splits[0]);
    if let Some(new) = splits.get(1) {
        spec = spec.input_key("split_new", new);
    }
    if let Some(s) = stage2 {
        spec = spec.input_key("stage2", s);
    }
    spec
}

pub fn run(
    ctx: &StageContext,
    splits: &[Artifact],
    weights_artifact: &Artifact,
    stage2: Option<&Artifact>,
    precision: Precision,
) -> Result<Artifact> {
    if splits.is_empty() || splits.len() > 2 {
        bail!("eval takes one --split, or two (a base and a new split) for base-to-novel");
    }
    let infos: Vec<SplitInfo> = splits.iter().map(read_split).collect::<Result<_>>()?;
    if infos.len() == 2 && !(infos[0].subsample == "base" && infos[1].subsample == "new") {
        bail!(
            "two splits must be a base then a new split of one dataset (got subsample {} and {})",
            infos[0].subsample,
            infos[1].subsample
        );
    }
    let method = match stage2 {
        None => "zero-shot".to_string(),
        Some(s) => method_of(ctx, s)?,
    };
    let split_keys: Vec<&ArtifactKey> = splits.iter().map(|s| &s.key).collect();
    let spec = spec(&split_keys, &weights_artifact.key, stage2.map(|s| &s.key), precision, &method)
        .with_run_info(ctx.run_info());
    let artifact = ctx.produce(&spec, |dir| {
        let (config, mut weights) = weights::load(weights_artifact)?;
        if let Some(s) = stage2 {
            for (name, tensor) in read_safetensors(&s.file(DELTA_FILE))? {
                if !weights.contains_key(&name) {
                    bail!("{}: tensor `{name}` is not in the weights", s.file(DELTA_FILE).display());
                }
                weights.insert(name, tensor);
            }
        }
        let weights = weights_to_device(weights, ctx.device);
        let model = Clip::with_precision(&config, &weights, precision)?;
        let mut results: Vec<Accuracy> = Vec::new();
        for (split, info) in splits.iter().zip(&infos) {
            let ids = class_prompt_ids(&info.template, &info.classnames, config.text.context_length)?;
            let test = test_set(split)?;
            check_image_size(&test, config.vision.image_size)?;
            results.push(evaluate(&model, &test, &ids, &info.classnames, ctx.device, BATCH)?);
        }
        write_outputs(ctx, dir, &infos, &results, &method)
    })?;
    ctx.report(&artifact);
    Ok(artifact)
}

/// The method a stage-2 run stands for, read off its selection: `full-ft` when every block
/// tensor was tuned, `random-k` for random selection, `random-params` for a random selection
/// matched to another's parameter counts, else `clip-ast/<score rule>`.
fn method_of(ctx: &StageContext, stage2: &Artifact) -> Result<String> {
    let key = stage2.manifest.inputs.get("selection").context("stage-2 manifest names no selection")?;
    let selection = ctx.store.resolve(key.as_str(), Some(ArtifactKind::Selection))?;
    let rule = selection.manifest.params["rule"].as_str().unwrap_or("unknown");
    let k = selection.manifest.params["k"].as_u64().unwrap_or(0);
    let matched = selection.manifest.params.get("match").and_then(|m| m.as_str()) == Some("params");
    Ok(method_name(rule, k, matched))
}

/// What a delta trained on a selection of `rule`'s top `k` per block is called in metrics.
/// `matched`: the selection matched another's parameter counts (`--match params`).
pub fn method_name(rule: &str, k: u64, matched: bool) -> String {
    let per_block = crate::clip::config::block_tensor_shapes(1, 1).len() as u64;
    if matched {
        "random-params".to_string()
    } else if k >= per_block {
        "full-ft".to_string()
    } else if rule == "random" {
        "random-k".to_string()
    } else {
        format!("clip-ast/{rule}")
    }
}

pub fn check_image_size(test: &crate::eval::TestSet, expected: i64) -> Result<()> {
    let got = test.images.size().get(1).copied().unwrap_or(0);
    if got != expected {
        bail!(
            "the split's test images are {got} px but the model takes {expected} px; make the split with --image-size {expected}"
        );
    }
    Ok(())
}

/// `metrics.csv` (one row, [`METRIC_COLUMNS`]) and `per_class.csv`; returns the headline metrics.
pub fn write_outputs(
    ctx: &StageContext,
    dir: &std::path::Path,
    infos: &[SplitInfo],
    results: &[Accuracy],
    method: &str,
) -> Result<serde_json::Value> {
    let mut per_class_rows = Vec::new();
    for (info, acc) in infos.iter().zip(results) {
        for c in &acc.per_class {
            per_class_rows.push(PerClassRow {
                subsample: &info.subsample,
                label: c.label,
                classname: &c.classname,
                n: c.n,
                correct: c.correct,
                acc: c.acc,
            });
        }
    }
    let first = &infos[0];
    // Base-to-novel from two splits, or from one `all` split by CoOp's rule (the first
    // ceil(n/2) classes are base): how a model adapted on every class fares on the classes
    // its foundation saw and on those it did not.
    let (base, new) = match (results.get(1), first.subsample.as_str()) {
        (Some(new), _) => (results[0].acc, Some(new.acc)),
        (None, "all") => {
            let (b, n) = halves(&results[0]);
            (b, Some(n))
        }
        (None, _) => (results[0].acc, None),
    };
    let hm = new.map(|n| harmonic_mean(base, n));
    let subsample = if infos.len() == 2 { "base+new".to_string() } else { first.subsample.clone() };
    let row = MetricsRow {
        dataset: first.dataset.clone(),
        shots: first.shots,
        seed: first.seed,
        subsample,
        method: method.to_string(),
        n: results[0].n,
        acc: results[0].acc,
        macro_acc: results[0].macro_acc,
        base_acc: new.map(|_| base),
        new_acc: new,
        hm,
    };
    csv_io::write_rows(&dir.join("metrics.csv"), &METRIC_COLUMNS, &[row])?;
    csv_io::write_rows(&dir.join("per_class.csv"), &PER_CLASS_COLUMNS, &per_class_rows)?;
    (ctx.progress())(&format!(
        "eval: {} {method}: acc {:.4}{}",
        first.dataset,
        results[0].acc,
        hm.map(|h| format!(", base {base:.4}, new {:.4}, HM {h:.4}", new.unwrap_or(0.0))).unwrap_or_default()
    ));
    Ok(
        json!({ "acc": results[0].acc, "macro_acc": results[0].macro_acc, "base_acc": new.map(|_| base), "new_acc": new, "hm": hm }),
    )
}

/// Top-1 accuracy over the first ceil(n/2) classes and over the rest.
fn halves(acc: &Accuracy) -> (f64, f64) {
    let base_classes = acc.per_class.len().div_ceil(2);
    let (base, new) = acc.per_class.split_at(base_classes);
    let rate = |classes: &[crate::eval::ClassResult]| {
        let n: i64 = classes.iter().map(|c| c.n).sum();
        classes.iter().map(|c| c.correct).sum::<i64>() as f64 / n.max(1) as f64
    };
    (rate(base), rate(new))
}
