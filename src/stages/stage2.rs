//! The `stage2` artifact: final values of the selected tensors, and the per-epoch loss log.

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::definition::{Stage, input_flags, param};
use super::split_data::{read_split, train_set};
use super::{StageContext, select, weights};
use crate::clip::model::weights_to_device;
use crate::clip::weights::{read_safetensors, write_safetensors};
use crate::csv_io;
use crate::settings::Settings;
use crate::settings::stage2::Stage2Settings;
use crate::store::{Artifact, ArtifactKey, ArtifactKind, ArtifactSpec};
use crate::train::prompts::class_prompt_ids;
use crate::train::stage2::{Stage2Params, Stage2Run, run_stage2};

const SCHEMA: u32 = 1;
pub const DELTA_FILE: &str = "delta.safetensors";

pub use crate::settings::stage2::Init;

pub fn spec(
    split: &ArtifactKey,
    weights: &ArtifactKey,
    selection: &ArtifactKey,
    init: Init,
    params: &Stage2Params,
) -> ArtifactSpec {
    ArtifactSpec::new(ArtifactKind::Stage2, SCHEMA, json!({ "train": params, "init": init }))
        .input_key("split", split)
        .input_key("weights", weights)
        .input_key("selection", selection)
}

pub fn run(
    ctx: &StageContext,
    split: &Artifact,
    weights_artifact: &Artifact,
    selection_artifact: &Artifact,
    init: Init,
    params: &Stage2Params,
) -> Result<Artifact> {
    for (name, lambda) in
        [("image L1", params.lambdas.image_l1), ("text L1", params.lambdas.text_l1), ("KL", params.lambdas.kl)]
    {
        if !(lambda >= 0.0 && lambda.is_finite()) {
            bail!("λ for the {name} term is {lambda}; it must be a finite number ≥ 0");
        }
    }
    let stage1 = stage1_of(ctx, selection_artifact)?;
    check_same_run(ctx, &stage1, split, weights_artifact)?;
    let spec =
        spec(&split.key, &weights_artifact.key, &selection_artifact.key, init, params).with_run_info(ctx.run_info());
    let artifact = ctx.produce(&spec, |dir| {
        let info = read_split(split)?;
        let (config, pretrained) = weights::load(weights_artifact)?;
        let selection = select::read(selection_artifact)?;
        let prompt_ids = class_prompt_ids(&info.template, &info.classnames, config.text.context_length)?;
        let train = train_set(&info)?;
        let mut start = pretrained.iter().map(|(k, t)| (k.clone(), t.copy())).collect::<crate::clip::Weights>();
        if init == Init::Stage1 {
            // Not among stage 2's inputs (the selection's is), so checked here as inputs are.
            ctx.store.verify(&stage1)?;
            for (name, tensor) in read_safetensors(&stage1.file("checkpoint.safetensors"))? {
                start.insert(name, tensor);
            }
        }
        let frozen = weights_to_device(pretrained, ctx.device);
        let progress = ctx.progress();
        let result = run_stage2(
            Stage2Run {
                config: &config,
                weights: weights_to_device(start, ctx.device),
                frozen: &frozen,
                selected: &selection.chosen,
                train,
                prompt_ids: &prompt_ids,
                device: ctx.device,
                progress: &progress,
                checkpoints: ctx.checkpoints(&spec)?,
            },
            params,
        )?;
        write_safetensors(&result.tuned, &dir.join(DELTA_FILE))?;
        csv_io::write_rows(
            &dir.join("log.csv"),
            &["epoch", "lr", "loss", "ce", "image_l1", "text_l1", "kl", "acc"],
            &result.log,
        )?;
        let last = result.log.last();
        Ok(json!({ "final_loss": last.map(|r| r.loss), "final_train_acc": last.map(|r| r.acc) }))
    })?;
    ctx.report(&artifact);
    Ok(artifact)
}

fn stage1_of(ctx: &StageContext, selection: &Artifact) -> Result<Artifact> {
    let key = selection.manifest.inputs.get("stage1").context("selection manifest names no stage-1 input")?;
    ctx.store.resolve(key.as_str(), Some(ArtifactKind::Stage1))
}

/// A selection is only meaningful for the model and classes its stage-1 run saw.
fn check_same_run(ctx: &StageContext, stage1: &Artifact, split: &Artifact, weights_artifact: &Artifact) -> Result<()> {
    if stage1.manifest.inputs.get("weights") != Some(&weights_artifact.key) {
        bail!(
            "the selection was ranked on a stage-1 run of other weights ({}), not {}; run stage1 and select with these weights",
            stage1.manifest.inputs.get("weights").map_or("none", |k| k.short()),
            weights_artifact.key.short()
        );
    }
    let stage1_split_key = stage1.manifest.inputs.get("split").context("stage-1 manifest names no split")?;
    if stage1_split_key != &split.key {
        let theirs = read_split(&ctx.store.resolve(stage1_split_key.as_str(), Some(ArtifactKind::Split))?)?;
        let ours = read_split(split)?;
        if theirs.classnames != ours.classnames {
            bail!(
                "the split's {} classes differ from the {} classes of the selection's stage-1 run; use a split of the same dataset and subsample",
                ours.classnames.len(),
                theirs.classnames.len()
            );
        }
    }
    Ok(())
}

/// Stage 2 as a graph node runs it: the settings (with where it starts from), the seed set.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage2 {
    pub settings: Stage2Settings,
}

impl Stage2 {
    pub fn params(&self) -> Result<Stage2Params> {
        self.settings.params(0)
    }

    pub fn from_manifest(a: &Artifact) -> Result<Self> {
        Ok(Stage2 { settings: Stage2Settings::from_params(&param(a, "train")?, param(a, "init")?) })
    }
}

impl Stage for Stage2 {
    fn kind(&self) -> ArtifactKind {
        ArtifactKind::Stage2
    }

    fn inputs(&self) -> Vec<&'static str> {
        vec!["split", "weights", "selection"]
    }

    fn spec(&self, inputs: &[&ArtifactKey]) -> Result<ArtifactSpec> {
        Ok(spec(inputs[0], inputs[1], inputs[2], self.settings.init, &self.params()?))
    }

    fn run(&self, ctx: &StageContext, inputs: &[Artifact]) -> Result<Artifact> {
        run(ctx, &inputs[0], &inputs[1], &inputs[2], self.settings.init, &self.params()?)
    }

    fn command_line(&self, inputs: &[&ArtifactKey]) -> Vec<String> {
        let flags = input_flags(&self.inputs(), inputs);
        ["stage2".to_string()].into_iter().chain(flags).chain(self.settings.to_args()).collect()
    }
}
