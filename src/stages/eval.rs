//! The `eval` artifact: accuracy of pretrained weights (zero-shot) or weights + a stage-2 delta
//! on one split's test set, or on a base and a new split together (CoOp's base-to-novel, with
//! the harmonic mean).

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::definition::{Stage, input_flags, param};
use super::eval_scores::{SplitScores, score_split};
use super::split_data::{SplitInfo, read_split, test_set, val_set};
use super::stage2::DELTA_FILE;
use super::{StageContext, weights};
use crate::clip::layers::Precision;
use crate::clip::model::weights_to_device;
use crate::clip::weights::read_safetensors;
use crate::clip::{Clip, ClipConfig, Weights};
use crate::csv_io::{self, shortest, shortest_opt};
use crate::eval::{harmonic_mean, predict_clip};
use crate::settings::Settings;
use crate::settings::eval::EvalSettings;
use crate::store::{Artifact, ArtifactKey, ArtifactKind, ArtifactSpec};
use crate::train::prompts::class_prompt_ids;

/// 2: `val_acc` and `val_base_acc`; an `all` split's base/new are CoOp's own-task accuracies
/// (they were the halves of the N-way task).
const SCHEMA: u32 = 2;
const BATCH: i64 = 64;

pub const METRIC_COLUMNS: [&str; 13] = [
    "dataset",
    "shots",
    "seed",
    "subsample",
    "method",
    "n",
    "acc",
    "macro_acc",
    "base_acc",
    "new_acc",
    "hm",
    "val_acc",
    "val_base_acc",
];

/// `metrics.csv`'s one row ([`METRIC_COLUMNS`]); `report` reads it back. The base-to-novel
/// columns are empty for an eval of one split that is not an `all` split; `val_acc` is empty
/// where the split has no val images (ImageNet).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    pub dataset: String,
    pub shots: i64,
    pub seed: i64,
    pub subsample: String,
    pub method: String,
    /// Test images; the test columns are empty for a validation-only eval (`--val-only`).
    pub n: Option<i64>,
    #[serde(serialize_with = "shortest_opt")]
    pub acc: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub macro_acc: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub base_acc: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub new_acc: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub hm: Option<f64>,
    /// Top-1 on the split's val images, classified as the test images are (for a base+new
    /// eval: the base split's val images among the base names, as `acc` is the base test's).
    #[serde(default, serialize_with = "shortest_opt")]
    pub val_acc: Option<f64>,
    /// The base classes' val images among the base names only: what `base_acc` is on test.
    #[serde(default, serialize_with = "shortest_opt")]
    pub val_base_acc: Option<f64>,
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

/// What an eval scores: the test set and val images, or the val images alone (`[choose] test =
/// "chosen"` scores every run on val and only the chosen ones on test).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Parts {
    #[default]
    TestAndVal,
    ValOnly,
}

/// `splits`: one, or a base then a new split; `method` as [`method_of`] names a stage-2 delta's,
/// or `zero-shot`.
pub fn spec(
    splits: &[&ArtifactKey],
    weights: &ArtifactKey,
    stage2: Option<&ArtifactKey>,
    precision: Precision,
    method: &str,
    parts: Parts,
) -> ArtifactSpec {
    let mut params = json!({ "precision": precision, "method": method });
    // Left out at its default, so the keys of evals made before it existed stand.
    if parts == Parts::ValOnly {
        params["parts"] = json!("val");
    }
    let mut spec = ArtifactSpec::new(ArtifactKind::Eval, SCHEMA, params)
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
    parts: Parts,
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
    if let Some(s) = stage2 {
        super::coverage::check_covered(ctx, s, &infos)?;
    }
    let split_keys: Vec<&ArtifactKey> = splits.iter().map(|s| &s.key).collect();
    if parts == Parts::ValOnly && infos[0].val.is_empty() {
        bail!(
            "split {} has no val images to score: a validation-only eval needs them (ImageNet's splits have none)",
            splits[0].key.short()
        );
    }
    let spec = spec(&split_keys, &weights_artifact.key, stage2.map(|s| &s.key), precision, &method, parts)
        .with_run_info(ctx.run_info());
    let artifact = ctx.produce(&spec, |dir| {
        let (config, weights) = tuned_weights(weights_artifact, stage2)?;
        let weights = weights_to_device(weights, ctx.device);
        let model = Clip::with_precision(&config, &weights, precision)?;
        if parts == Parts::ValOnly {
            let info = &infos[0];
            let ids = class_prompt_ids(&info.template, &info.classnames, config.text.context_length)?;
            let val =
                val_set(info, config.vision.image_size as u32)?.context("checked above: the split has val images")?;
            let predict = |images: &_, heads: &_| predict_clip(&model, images, &ids, ctx.device, BATCH, heads);
            let (val_acc, val_base) = super::eval_scores::score_val(info, predict, &val)?;
            return write_val_outputs(ctx, dir, &infos, val_acc, val_base, &method);
        }
        let mut results: Vec<SplitScores> = Vec::new();
        for (i, (split, info)) in splits.iter().zip(&infos).enumerate() {
            let ids = class_prompt_ids(&info.template, &info.classnames, config.text.context_length)?;
            let test = test_set(split)?;
            check_image_size(&test, config.vision.image_size)?;
            // Validation is the first split's: in base-to-novel the new classes are the unseen
            // ones, and a choice made on their val images would have seen them.
            let val = if i == 0 { val_set(info, config.vision.image_size as u32)? } else { None };
            let predict = |images: &_, heads: &_| predict_clip(&model, images, &ids, ctx.device, BATCH, heads);
            results.push(score_split(info, predict, &test, val.as_ref())?);
        }
        write_outputs(ctx, dir, &infos, &results, &method)
    })?;
    ctx.report(&artifact);
    Ok(artifact)
}

/// The model an evaluation classifies with: the weights artifact's tensors with a stage-2
/// delta's tuned tensors in their place (fp32, CPU). `export` and `predict` build the same.
pub fn tuned_weights(weights_artifact: &Artifact, stage2: Option<&Artifact>) -> Result<(ClipConfig, Weights)> {
    let (config, mut weights) = weights::load(weights_artifact)?;
    if let Some(s) = stage2 {
        for (name, tensor) in read_safetensors(&s.file(DELTA_FILE))? {
            if !weights.contains_key(&name) {
                bail!("{}: tensor `{name}` is not in the weights", s.file(DELTA_FILE).display());
            }
            weights.insert(name, tensor);
        }
    }
    Ok((config, weights))
}

/// The method a stage-2 run stands for, read off its selection: `full-ft` when every block
/// tensor was tuned, `random-k` for random selection, `random-params` for a random selection
/// matched to another's parameter counts, else `clip-ast/<score rule>`.
pub fn method_of(ctx: &StageContext, stage2: &Artifact) -> Result<String> {
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
    results: &[SplitScores],
    method: &str,
) -> Result<serde_json::Value> {
    let mut per_class_rows = Vec::new();
    for (info, scores) in infos.iter().zip(results) {
        for c in &scores.test.per_class {
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
    let head = &results[0];
    // Base-to-novel from two splits (each its own task already), or from one `all` split by
    // CoOp's rule (the first ceil(n/2) classes are base, each half scored among its own names):
    // how a model adapted on every class fares on the classes its foundation saw and on those
    // it did not.
    let (base, new, val_base) = match (results.get(1), &head.base_new) {
        (Some(new), _) => (head.test.acc, Some(new.test.acc), head.val),
        (None, Some((b, n))) => (*b, Some(*n), head.val_base),
        (None, None) => (head.test.acc, None, None),
    };
    let hm = new.map(|n| harmonic_mean(base, n));
    let subsample = if infos.len() == 2 { "base+new".to_string() } else { first.subsample.clone() };
    let row = MetricsRow {
        dataset: first.dataset.clone(),
        shots: first.shots,
        seed: first.seed,
        subsample,
        method: method.to_string(),
        n: Some(head.test.n),
        acc: Some(head.test.acc),
        macro_acc: Some(head.test.macro_acc),
        base_acc: new.map(|_| base),
        new_acc: new,
        hm,
        val_acc: head.val,
        val_base_acc: val_base,
    };
    csv_io::write_rows(&dir.join("metrics.csv"), &METRIC_COLUMNS, std::slice::from_ref(&row))?;
    csv_io::write_rows(&dir.join("per_class.csv"), &PER_CLASS_COLUMNS, &per_class_rows)?;
    (ctx.progress())(&format!(
        "eval: {} {method}: acc {:.4}{}{}",
        first.dataset,
        head.test.acc,
        hm.map(|h| format!(", base {base:.4}, new {:.4}, HM {h:.4}", new.unwrap_or(0.0))).unwrap_or_default(),
        head.val.map(|v| format!(", val {v:.4}")).unwrap_or_default()
    ));
    Ok(headline(&row))
}

/// A validation-only eval's `metrics.csv`: the test columns empty, `val_acc` and
/// `val_base_acc` as the full eval computes them (same images, same batches), so a choice made
/// on either is the same; no `per_class.csv` (it is per test class).
fn write_val_outputs(
    ctx: &StageContext,
    dir: &std::path::Path,
    infos: &[SplitInfo],
    val_acc: Option<f64>,
    val_base_acc: Option<f64>,
    method: &str,
) -> Result<serde_json::Value> {
    let first = &infos[0];
    let two_splits = infos.len() == 2;
    let row = MetricsRow {
        dataset: first.dataset.clone(),
        shots: first.shots,
        seed: first.seed,
        subsample: if two_splits { "base+new".to_string() } else { first.subsample.clone() },
        method: method.to_string(),
        n: None,
        acc: None,
        macro_acc: None,
        base_acc: None,
        new_acc: None,
        hm: None,
        // In base-to-novel the base split's val accuracy is what `val_base_acc` is.
        val_acc,
        val_base_acc: if two_splits { val_acc } else { val_base_acc },
    };
    csv_io::write_rows(&dir.join("metrics.csv"), &METRIC_COLUMNS, std::slice::from_ref(&row))?;
    (ctx.progress())(&format!(
        "eval: {} {method}: val {}",
        first.dataset,
        val_acc.map_or("-".into(), |v| format!("{v:.4}"))
    ));
    Ok(headline(&row))
}

/// The manifest's metrics: the row's accuracies.
fn headline(row: &MetricsRow) -> serde_json::Value {
    json!({
        "acc": row.acc,
        "macro_acc": row.macro_acc,
        "base_acc": row.base_acc,
        "new_acc": row.new_acc,
        "hm": row.hm,
        "val_acc": row.val_acc,
        "val_base_acc": row.val_base_acc,
    })
}

/// An evaluation as a graph node runs it: on one split or a base then a new one, of the weights
/// as they are or with a stage-2 delta; `method` is what the delta's selection makes it
/// ([`method_name`]), `zero-shot` without one.
#[derive(Clone, Debug, PartialEq)]
pub struct Eval {
    pub settings: EvalSettings,
    pub method: String,
    pub new_split: bool,
    pub tuned: bool,
    pub parts: Parts,
}

impl Eval {
    pub fn from_manifest(a: &Artifact) -> Result<Self> {
        let parts = match a.manifest.params.get("parts").and_then(|p| p.as_str()) {
            Some("val") => Parts::ValOnly,
            _ => Parts::TestAndVal,
        };
        Ok(Eval {
            settings: EvalSettings { precision: param(a, "precision")? },
            method: param(a, "method")?,
            new_split: a.manifest.inputs.contains_key("split_new"),
            tuned: a.manifest.inputs.contains_key("stage2"),
            parts,
        })
    }

    fn splits(&self) -> usize {
        1 + usize::from(self.new_split)
    }
}

impl Stage for Eval {
    fn kind(&self) -> ArtifactKind {
        ArtifactKind::Eval
    }

    fn inputs(&self) -> Vec<&'static str> {
        let mut names = vec!["split"];
        names.extend(self.new_split.then_some("split_new"));
        names.push("weights");
        names.extend(self.tuned.then_some("stage2"));
        names
    }

    fn spec(&self, inputs: &[&ArtifactKey]) -> Result<ArtifactSpec> {
        let (splits, rest) = inputs.split_at(self.splits());
        Ok(spec(splits, rest[0], rest.get(1).copied(), self.settings.precision, &self.method, self.parts))
    }

    fn run(&self, ctx: &StageContext, inputs: &[Artifact]) -> Result<Artifact> {
        let (splits, rest) = inputs.split_at(self.splits());
        run(ctx, splits, &rest[0], rest.get(1), self.settings.precision, self.parts)
    }

    fn command_line(&self, inputs: &[&ArtifactKey]) -> Vec<String> {
        // The command takes a new split as a second --split.
        let names: Vec<&str> = self.inputs().into_iter().map(|n| if n == "split_new" { "split" } else { n }).collect();
        let flags = input_flags(&names, inputs);
        let val_only = (self.parts == Parts::ValOnly).then(|| "--val-only".to_string());
        ["eval".to_string()].into_iter().chain(flags).chain(val_only).chain(self.settings.to_args()).collect()
    }
}
