//! The `stage1` artifact: tuned block tensors, AdamW's moments, the training log, and how
//! informative the moments are (`diagnostics.json`: steps run, fraction of each tensor's second
//! moment below eps).

use anyhow::Result;
use serde_json::json;

use super::definition::{Stage, input_flags, param};
use super::split_data::{read_split, train_images};
use super::{StageContext, weights};
use crate::clip::model::weights_to_device;
use crate::clip::weights::write_safetensors;
use crate::csv_io;
use crate::settings::Settings;
use crate::settings::stage1::Stage1Settings;
use crate::store::{Artifact, ArtifactKey, ArtifactKind, ArtifactSpec};
use crate::train::diagnostics::Stage1Diagnostics;
use crate::train::prompts::class_prompt_ids;
use crate::train::stage1::{Stage1Inputs, Stage1Params, run_stage1};

/// 2: `diagnostics.json`.
const SCHEMA: u32 = 2;
pub const DIAGNOSTICS_FILE: &str = "diagnostics.json";

pub fn spec(split: &ArtifactKey, weights: &ArtifactKey, params: &Stage1Params) -> ArtifactSpec {
    ArtifactSpec::new(ArtifactKind::Stage1, SCHEMA, json!({ "train": params }))
        .input_key("split", split)
        .input_key("weights", weights)
}

pub fn run(
    ctx: &StageContext,
    split: &Artifact,
    weights_artifact: &Artifact,
    params: &Stage1Params,
) -> Result<Artifact> {
    let spec = spec(&split.key, &weights_artifact.key, params).with_run_info(ctx.run_info());
    let artifact = ctx.produce(&spec, |dir| {
        let info = read_split(split)?;
        let (config, weights) = weights::load(weights_artifact)?;
        let prompt_ids = class_prompt_ids(&info.template, &info.classnames, config.text.context_length)?;
        let train = train_images(&info, params.passes(info.train.len()))?;
        let progress = ctx.progress();
        let result = run_stage1(
            Stage1Inputs {
                config: &config,
                weights: weights_to_device(weights, ctx.device),
                train,
                prompt_ids: &prompt_ids,
                device: ctx.device,
                progress: &progress,
                checkpoints: ctx.checkpoints(&spec)?,
            },
            params,
        )?;
        write_safetensors(&result.checkpoint, &dir.join("checkpoint.safetensors"))?;
        write_safetensors(&result.adamw_state, &dir.join("adamw.safetensors"))?;
        csv_io::write_rows(&dir.join("log.csv"), &["step", "epoch", "loss", "acc", "lr"], &result.log)?;
        let second_moments =
            result.adamw_state.iter().filter_map(|(key, v)| Some((key.strip_suffix(".exp_avg_sq")?, v)));
        let diagnostics = Stage1Diagnostics::new(second_moments, result.log.len() as i64, params.optimizer.eps);
        std::fs::write(dir.join(DIAGNOSTICS_FILE), serde_json::to_string_pretty(&diagnostics)? + "\n")?;
        let last = result.log.last();
        Ok(json!({
            "final_loss": last.map(|r| r.loss),
            "final_train_acc": last.map(|r| r.acc),
            "steps": result.log.len(),
            "below_eps": diagnostics.below_eps,
        }))
    })?;
    ctx.report(&artifact);
    Ok(artifact)
}

/// Stage 1 as a graph node runs it: the settings, the seed set.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage1 {
    pub settings: Stage1Settings,
}

impl Stage1 {
    pub fn params(&self) -> Result<Stage1Params> {
        self.settings.params(0)
    }

    pub fn from_manifest(a: &Artifact) -> Result<Self> {
        Ok(Stage1 { settings: Stage1Settings::from_params(&param(a, "train")?) })
    }
}

impl Stage for Stage1 {
    fn kind(&self) -> ArtifactKind {
        ArtifactKind::Stage1
    }

    fn inputs(&self) -> Vec<&'static str> {
        vec!["split", "weights"]
    }

    fn spec(&self, inputs: &[&ArtifactKey]) -> Result<ArtifactSpec> {
        Ok(spec(inputs[0], inputs[1], &self.params()?))
    }

    fn run(&self, ctx: &StageContext, inputs: &[Artifact]) -> Result<Artifact> {
        run(ctx, &inputs[0], &inputs[1], &self.params()?)
    }

    fn command_line(&self, inputs: &[&ArtifactKey]) -> Vec<String> {
        let flags = input_flags(&self.inputs(), inputs);
        ["stage1".to_string()].into_iter().chain(flags).chain(self.settings.to_args()).collect()
    }
}
