//! `pretrain`: a weights artifact trained from scratch on a split's train images, so every
//! other stage can use it as its foundation model.

use std::sync::Arc;

use anyhow::Result;
use serde_json::json;

use super::StageContext;
use super::definition::{Stage, input_flags, param};
use super::split_data::{SplitInfo, read_split, train_set, train_set_rendered};
use crate::clip::ClipConfig;
use crate::clip::import::write_canonical;
use crate::clip::init::init_weights;
use crate::clip::model::weights_to_device;
use crate::csv_io;
use crate::data::augment::TrainSet;
use crate::data::datasets;
use crate::data::rendering::Rendering;
use crate::settings::Settings;
use crate::settings::pretrain::PretrainSettings;
use crate::store::{Artifact, ArtifactKey, ArtifactKind, ArtifactSpec};
use crate::train::captions::CaptionSources;
use crate::train::pretrain::{PretrainParams, PretrainRun, run_pretrain};
use crate::train::render_mix::{render_mixed, target_images};

const SCHEMA: u32 = 1;

pub fn spec(split: &ArtifactKey, preset: &str, init_seed: i64, params: &PretrainParams) -> ArtifactSpec {
    ArtifactSpec::new(
        ArtifactKind::Weights,
        SCHEMA,
        json!({ "pretrain": params, "preset": preset, "init_seed": init_seed }),
    )
    .input_key("split", split)
}

pub fn run(
    ctx: &StageContext,
    split: &Artifact,
    preset: &str,
    init_seed: i64,
    params: &PretrainParams,
) -> Result<Artifact> {
    let config = ClipConfig::preset(preset)?;
    let spec = spec(&split.key, preset, init_seed, params).with_run_info(ctx.run_info());
    let artifact = ctx.produce(&spec, |dir| {
        let info = read_split(split)?;
        if i64::from(info.image_size) != config.vision.image_size {
            anyhow::bail!(
                "the split's images are {} px but {preset} takes {} px; make the split with --image-size {}",
                info.image_size,
                config.vision.image_size,
                config.vision.image_size
            );
        }
        let (train, target_count) = pretrain_images(&info, params)?;
        let manifest = datasets::manifest(&info.dataset)?;
        let progress = ctx.progress();
        let (weights, log) = run_pretrain(
            PretrainRun {
                config: &config,
                weights: weights_to_device(init_weights(&config, init_seed), ctx.device),
                train,
                classnames: &info.classnames,
                caption_sources: CaptionSources {
                    synonyms: &manifest.caption_synonyms,
                    coarse: &manifest.coarse_captions,
                },
                device: ctx.device,
                progress: &progress,
                checkpoints: ctx.checkpoints(&spec)?,
            },
            params,
        )?;
        write_canonical(dir, &config, &weights)?;
        csv_io::write_rows(&dir.join("log.csv"), &["epoch", "lr", "loss", "caption_acc"], &log)?;
        let mut summary = json!({ "final_loss": log.last().map(|r| r.loss), "classes": info.classnames.len() });
        if let Some(n) = target_count {
            summary["target_rendered_images"] = json!(n);
        }
        Ok(summary)
    })?;
    ctx.report(&artifact);
    Ok(artifact)
}

/// The split's train images, a `target_fraction` of each class in the split's rendering and the
/// rest in `source_rendering`; with the mix, how many are in the split's rendering.
fn pretrain_images(info: &SplitInfo, params: &PretrainParams) -> Result<(Arc<TrainSet>, Option<usize>)> {
    if params.target_fraction == 1.0 {
        return Ok((train_set(info)?, None));
    }
    let decoded = train_set_rendered(info, Rendering::Original)?;
    let in_target = target_images(&decoded.labels, params.target_fraction, params.seed);
    let images = Arc::try_unwrap(Arc::clone(&decoded.images)).unwrap_or_else(|shared| (*shared).clone());
    let images = render_mixed(images, &in_target, info.rendering, params.source_rendering);
    let count = in_target.iter().filter(|&&t| t).count();
    Ok((Arc::new(TrainSet { images: Arc::new(images), labels: decoded.labels.clone() }), Some(count)))
}

/// A foundation pretrained as a graph node runs it: a preset and the pretraining settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Pretrain {
    pub preset: String,
    pub settings: PretrainSettings,
}

impl Pretrain {
    pub fn from_manifest(a: &Artifact) -> Result<Self> {
        let settings = PretrainSettings::from_params(&param(a, "pretrain")?, param(a, "init_seed")?)?;
        Ok(Pretrain { preset: param(a, "preset")?, settings })
    }
}

impl Stage for Pretrain {
    fn kind(&self) -> ArtifactKind {
        ArtifactKind::Weights
    }

    fn inputs(&self) -> Vec<&'static str> {
        vec!["split"]
    }

    fn spec(&self, inputs: &[&ArtifactKey]) -> Result<ArtifactSpec> {
        Ok(spec(inputs[0], &self.preset, self.settings.init_seed, &self.settings.params()?))
    }

    fn run(&self, ctx: &StageContext, inputs: &[Artifact]) -> Result<Artifact> {
        run(ctx, &inputs[0], &self.preset, self.settings.init_seed, &self.settings.params()?)
    }

    fn command_line(&self, inputs: &[&ArtifactKey]) -> Vec<String> {
        let mut args = vec!["pretrain".to_string()];
        args.extend(input_flags(&self.inputs(), inputs));
        args.push(format!("--preset={}", self.preset));
        args.extend(self.settings.to_args());
        args
    }
}
