//! The `eval` artifact: accuracy of pretrained weights (zero-shot) or weights + a stage-2 delta
//! on one split's test set, or on a base and a new split together (CoOp's base-to-novel, with
//! the harmonic mean).

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::split_data::{SplitInfo, read_split, test_set};
use super::stage2::DELTA_FILE;
use super::{StageContext, num, weights, write_csv};
use crate::clip::Clip;
use crate::clip::layers::Precision;
use crate::clip::model::weights_to_device;
use crate::clip::weights::read_safetensors;
use crate::eval::{Accuracy, evaluate, harmonic_mean};
use crate::store::{Artifact, ArtifactSpec};
use crate::train::prompts::class_prompt_ids;

const SCHEMA: u32 = 1;
const BATCH: i64 = 64;

pub const METRIC_COLUMNS: [&str; 11] = [
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
];

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
    let mut spec = ArtifactSpec::new(
        "eval",
        SCHEMA,
        json!({ "precision": precision, "method": method }),
    )
    .input("weights", weights_artifact)
    .input("split", &splits[0])
    .with_run_info(ctx.run_info());
    if let Some(new) = splits.get(1) {
        spec = spec.input("split_new", new);
    }
    if let Some(s) = stage2 {
        spec = spec.input("stage2", s);
    }
    let artifact = ctx.store.get_or_produce(&spec, |dir| {
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
        let mut per_class_rows = Vec::new();
        for (split, info) in splits.iter().zip(&infos) {
            let ids = class_prompt_ids(&info.template, &info.classnames, config.text.context_length)?;
            let test = test_set(split)?;
            let expected = config.vision.image_size;
            let got = test.images.size().get(1).copied().unwrap_or(0);
            if got != expected {
                bail!("the split's test images are {got} px but the model takes {expected} px; make the split with --image-size {expected}");
            }
            let acc = evaluate(&model, &test, &ids, &info.classnames, ctx.device, BATCH)?;
            for c in &acc.per_class {
                per_class_rows.push(vec![info.subsample.clone(), c.label.to_string(), c.classname.clone(), c.n.to_string(), c.correct.to_string(), num(c.acc)]);
            }
            results.push(acc);
        }
        let first = &infos[0];
        let (base, new) = (results[0].acc, results.get(1).map(|r| r.acc));
        let hm = new.map(|n| harmonic_mean(base, n));
        let subsample = if infos.len() == 2 { "base+new".to_string() } else { first.subsample.clone() };
        let opt = |x: Option<f64>| x.map(num).unwrap_or_default();
        let row = vec![
            first.dataset.clone(),
            first.shots.to_string(),
            first.seed.to_string(),
            subsample,
            method.clone(),
            results[0].n.to_string(),
            num(results[0].acc),
            num(results[0].macro_acc),
            opt(new.map(|_| base)),
            opt(new),
            opt(hm),
        ];
        write_csv(&dir.join("metrics.csv"), &METRIC_COLUMNS, &[row])?;
        write_csv(&dir.join("per_class.csv"), &["subsample", "label", "classname", "n", "correct", "acc"], &per_class_rows)?;
        (ctx.progress())(&format!(
            "eval: {} {method}: acc {:.4}{}",
            first.dataset,
            results[0].acc,
            hm.map(|h| format!(", new {:.4}, HM {h:.4}", new.unwrap_or(0.0))).unwrap_or_default()
        ));
        Ok(json!({ "acc": results[0].acc, "macro_acc": results[0].macro_acc, "new_acc": new, "hm": hm }))
    })?;
    ctx.report(&artifact);
    Ok(artifact)
}

/// "clip-ast/<rule>" for a stage-2 run, read off its selection's parameters.
fn method_of(ctx: &StageContext, stage2: &Artifact) -> Result<String> {
    let key = stage2
        .manifest
        .inputs
        .get("selection")
        .context("stage-2 manifest names no selection")?;
    let selection = ctx.store.resolve(key.as_str(), Some("selection"))?;
    let rule = selection.manifest.params["rule"]
        .as_str()
        .unwrap_or("unknown");
    Ok(format!("stage2/{rule}"))
}
