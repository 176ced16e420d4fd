//! `probe`: the linear-probe baseline as an eval artifact (same metrics files as `eval`; base
//! and new of an `all` split take the argmax over the probe's base or new outputs only).

use anyhow::Result;
use serde_json::json;

use super::definition::{Stage, input_flags};
use super::eval::{check_image_size, write_outputs};
use super::eval_scores::score_split;
use super::split_data::{read_split, test_set, train_set, val_set};
use super::{StageContext, weights};
use crate::clip::Clip;
use crate::clip::model::weights_to_device;
use crate::data::image::{center_crop, normalize_to_tensor, resize_shorter_side};
use crate::eval::{Head, TestSet, predict_heads};
use crate::store::{Artifact, ArtifactKey, ArtifactKind, ArtifactSpec};
use crate::train::probe::{STEPS, fit_linear_probe, logits};

/// 2: `val_acc`, and `val_base_acc` with CoOp's own-task base/new for an `all` split (see
/// `eval`'s schema 2).
const SCHEMA: u32 = 2;
const BATCH: i64 = 256;

pub fn spec(split: &ArtifactKey, weights: &ArtifactKey) -> ArtifactSpec {
    ArtifactSpec::new(ArtifactKind::Eval, SCHEMA, json!({ "method": "linear-probe", "steps": STEPS }))
        .input_key("split", split)
        .input_key("weights", weights)
}

pub fn run(ctx: &StageContext, split: &Artifact, weights_artifact: &Artifact) -> Result<Artifact> {
    let spec = spec(&split.key, &weights_artifact.key).with_run_info(ctx.run_info());
    let artifact = ctx.produce(&spec, |dir| {
        let info = read_split(split)?;
        let (config, weights) = weights::load(weights_artifact)?;
        let weights = weights_to_device(weights, ctx.device);
        let model = Clip::new(&config, &weights)?;
        let size = config.vision.image_size as u32;
        let _guard = tch::no_grad_guard();
        let train = train_set(&info)?;
        let crops: Vec<tch::Tensor> = train
            .images
            .iter()
            .map(|img| normalize_to_tensor(&center_crop(&resize_shorter_side(img, size), size)))
            .collect();
        let train_features = model.encode_image(&tch::Tensor::stack(&crops, 0).to_device(ctx.device));
        let labels = tch::Tensor::from_slice(&train.labels).to_device(ctx.device);
        let (w, b) = tch::with_grad(|| fit_linear_probe(&train_features, &labels, info.classnames.len() as i64))?;
        let test = test_set(split)?;
        check_image_size(&test, config.vision.image_size)?;
        let val = val_set(&info, size)?;
        let predict = |images: &TestSet, heads: &[Head]| {
            predict_heads(images, ctx.device, BATCH, heads, |x| logits(&model.encode_image(x), &w, &b))
        };
        let scores = score_split(&info, predict, &test, val.as_ref())?;
        write_outputs(ctx, dir, std::slice::from_ref(&info), &[scores], "linear-probe")
    })?;
    ctx.report(&artifact);
    Ok(artifact)
}

/// The linear probe as a graph node runs it: no settings of its own.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe;

impl Stage for Probe {
    fn kind(&self) -> ArtifactKind {
        ArtifactKind::Eval
    }

    fn inputs(&self) -> Vec<&'static str> {
        vec!["split", "weights"]
    }

    fn spec(&self, inputs: &[&ArtifactKey]) -> Result<ArtifactSpec> {
        Ok(spec(inputs[0], inputs[1]))
    }

    fn run(&self, ctx: &StageContext, inputs: &[Artifact]) -> Result<Artifact> {
        run(ctx, &inputs[0], &inputs[1])
    }

    fn command_line(&self, inputs: &[&ArtifactKey]) -> Vec<String> {
        ["probe".to_string()].into_iter().chain(input_flags(&self.inputs(), inputs)).collect()
    }
}
