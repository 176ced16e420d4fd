//! What an export is made from: an eval, stage-2 or weights artifact, resolved to the model
//! (the weights with a stage-2 delta merged in, as `eval` builds it), the splits whose classes
//! the classifier covers, and what the store records about the run (for the README).

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::clip::{ClipConfig, Weights};
use crate::stages::StageContext;
use crate::stages::eval::{method_of, tuned_weights};
use crate::stages::split_data::{SplitInfo, read_split};
use crate::store::{Artifact, ArtifactKey, ArtifactKind, Store};

pub struct Source {
    pub config: ClipConfig,
    pub weights: Weights,
    /// The splits whose class names the classifier holds (base then new for base-to-novel);
    /// empty for bare weights without `--split`.
    pub splits: Vec<(Artifact, SplitInfo)>,
    pub about: About,
}

/// Provenance written into the README and `clip_ast_export.json`.
pub struct About {
    pub source_kind: ArtifactKind,
    pub source_key: ArtifactKey,
    pub weights_key: ArtifactKey,
    pub stage2_key: Option<ArtifactKey>,
    pub eval_key: Option<ArtifactKey>,
    /// `zero-shot`, `clip-ast/<rule>`, `full-ft`, ... (`eval`'s method names).
    pub method: String,
    /// The stage-2 run's settings (its manifest's params) and its selection's.
    pub stage2_params: Option<Value>,
    pub selection_params: Option<Value>,
    /// The eval's headline metrics (acc, val_acc, base/new/hm), where one was found.
    pub metrics: Option<Value>,
    pub weights_params: Value,
}

/// Resolve `reference`; `splits` (`--split`) replaces the classifier's classes.
pub fn resolve(ctx: &StageContext, reference: &str, splits: &[String]) -> Result<Source> {
    let artifact = ctx.store.resolve(reference, None)?;
    let input = |a: &Artifact, name: &str, kind: ArtifactKind| -> Result<Artifact> {
        let key = a.manifest.inputs.get(name).with_context(|| format!("{} manifest names no {name}", a.kind))?;
        ctx.store.resolve(key.as_str(), Some(kind))
    };
    let (weights, stage2, mut split_artifacts, mut eval) = match artifact.kind {
        ArtifactKind::Eval => {
            if artifact.manifest.params["method"] == "linear-probe" {
                bail!(
                    "`{reference}` is a linear-probe evaluation, whose classifier is not CLIP's; export its weights artifact instead"
                );
            }
            let stage2 = artifact
                .manifest
                .inputs
                .contains_key("stage2")
                .then(|| input(&artifact, "stage2", ArtifactKind::Stage2))
                .transpose()?;
            let mut splits = vec![input(&artifact, "split", ArtifactKind::Split)?];
            if artifact.manifest.inputs.contains_key("split_new") {
                splits.push(input(&artifact, "split_new", ArtifactKind::Split)?);
            }
            (input(&artifact, "weights", ArtifactKind::Weights)?, stage2, splits, Some(artifact.clone()))
        }
        ArtifactKind::Stage2 => {
            let split = input(&artifact, "split", ArtifactKind::Split)?;
            let eval = find_eval(&ctx.store, "stage2", &artifact.key, &split.key, |_| true)?;
            (input(&artifact, "weights", ArtifactKind::Weights)?, Some(artifact.clone()), vec![split], eval)
        }
        ArtifactKind::Weights => (artifact.clone(), None, Vec::new(), None),
        other => bail!("`{reference}` is a {other} artifact; export takes an eval, stage2 or weights artifact"),
    };
    if !splits.is_empty() {
        let given: Vec<Artifact> =
            splits.iter().map(|s| ctx.store.resolve(s, Some(ArtifactKind::Split))).collect::<Result<_>>()?;
        let same = given.iter().map(|a| &a.key).eq(split_artifacts.iter().map(|a| &a.key));
        if !same {
            // The run's accuracies were measured on other classes: the README must not quote them.
            eval = None;
        }
        split_artifacts = given;
    }
    if artifact.kind == ArtifactKind::Weights && split_artifacts.len() == 1 {
        eval = find_zero_shot_eval(&ctx.store, &artifact.key, &split_artifacts[0].key)?;
    }
    let splits =
        split_artifacts.into_iter().map(|a| read_split(&a).map(|info| (a, info))).collect::<Result<Vec<_>>>()?;
    let (config, weights_tensors) = tuned_weights(&weights, stage2.as_ref())?;
    let method = match &stage2 {
        Some(s) => method_of(ctx, s)?,
        None => "zero-shot".to_string(),
    };
    let selection_params = match &stage2 {
        Some(s) => Some(input(s, "selection", ArtifactKind::Selection)?.manifest.params),
        None => None,
    };
    let about = About {
        source_kind: artifact.kind,
        source_key: artifact.key.clone(),
        weights_key: weights.key.clone(),
        stage2_key: stage2.as_ref().map(|s| s.key.clone()),
        eval_key: eval.as_ref().map(|e| e.key.clone()),
        method,
        stage2_params: stage2.as_ref().map(|s| s.manifest.params.clone()),
        selection_params,
        metrics: eval.map(|e| e.manifest.metrics),
        weights_params: weights.manifest.params.clone(),
    };
    Ok(Source { config, weights: weights_tensors, splits, about })
}

/// An eval of `key` (as input `input`) on `split` alone that `keep` accepts, fp32 preferred:
/// where the README's accuracies come from.
fn find_eval(
    store: &Store,
    input: &str,
    key: &ArtifactKey,
    split: &ArtifactKey,
    keep: impl Fn(&Artifact) -> bool,
) -> Result<Option<Artifact>> {
    let mut found: Vec<Artifact> = store
        .list()?
        .into_iter()
        .filter(|a| {
            let inputs = &a.manifest.inputs;
            a.kind == ArtifactKind::Eval
                && inputs.get(input) == Some(key)
                && inputs.get("split") == Some(split)
                && !inputs.contains_key("split_new")
                && keep(a)
        })
        .collect();
    found.sort_by_key(|a| a.manifest.params["precision"] != "fp32");
    Ok(found.into_iter().next())
}

fn find_zero_shot_eval(store: &Store, weights: &ArtifactKey, split: &ArtifactKey) -> Result<Option<Artifact>> {
    find_eval(store, "weights", weights, split, |a| {
        !a.manifest.inputs.contains_key("stage2") && a.manifest.params["method"] == "zero-shot"
    })
}
