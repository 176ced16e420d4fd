//! `pretrain`: a weights artifact trained from scratch on a split's train images, so every
//! other stage can use it as its foundation model.

use anyhow::Result;
use serde_json::json;

use super::StageContext;
use super::split_data::{read_split, train_set};
use crate::clip::ClipConfig;
use crate::clip::import::write_canonical;
use crate::clip::init::init_weights;
use crate::clip::model::weights_to_device;
use crate::csv_io;
use crate::store::{Artifact, ArtifactKey, ArtifactKind, ArtifactSpec};
use crate::train::pretrain::{PretrainParams, PretrainRun, run_pretrain};

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
        let train = train_set(&info)?;
        let progress = ctx.progress();
        let (weights, log) = run_pretrain(
            PretrainRun {
                config: &config,
                weights: weights_to_device(init_weights(&config, init_seed), ctx.device),
                train,
                classnames: &info.classnames,
                device: ctx.device,
                progress: &progress,
            },
            params,
        )?;
        write_canonical(dir, &config, &weights)?;
        csv_io::write_rows(&dir.join("log.csv"), &["epoch", "lr", "loss", "caption_acc"], &log)?;
        Ok(json!({ "final_loss": log.last().map(|r| r.loss), "classes": info.classnames.len() }))
    })?;
    ctx.report(&artifact);
    Ok(artifact)
}
