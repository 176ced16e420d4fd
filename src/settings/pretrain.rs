//! `clip-ast pretrain` and a pipeline's `[weights.pretrain]`; defaults are
//! `PretrainParams::default()`'s (which also holds what neither sets: templates, AdamW's other
//! settings).

use anyhow::Result;
use clap::Args;
use serde::{Deserialize, Serialize};

use super::{Key, Range, Settings, key};
use crate::data::crop_scale::CropScale;
use crate::data::rendering::Rendering;
use crate::train::adamw::AdamWConfig;
use crate::train::captions::Captions;
use crate::train::pretrain::PretrainParams;

#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainSettings {
    /// Seed of the random initialisation
    #[arg(long, default_value_t = 0)]
    pub init_seed: i64,
    /// Passes over the train images, ≥ 1
    #[arg(long, default_value_t = PretrainParams::default().epochs)]
    pub epochs: usize,
    /// AdamW learning rate, ≥ 0
    #[arg(long, value_parser = super::finite, default_value_t = PretrainParams::default().optimizer.lr, allow_hyphen_values = true)]
    pub lr: f64,
    /// Image–caption pairs per step, ≥ 1
    #[arg(long, default_value_t = PretrainParams::default().batch_size)]
    pub batch_size: usize,
    /// Shuffling, augmentation and caption seed
    #[arg(long, default_value_t = PretrainParams::default().seed)]
    pub seed: u64,
    /// Area range MIN,MAX of the RandomResizedCrop augmentation, 0 < MIN ≤ MAX ≤ 1
    #[arg(long, value_name = "MIN,MAX", default_value_t = PretrainParams::default().crop_scale())]
    #[serde(with = "crate::data::crop_scale::as_text")]
    pub crop_scale: CropScale,
    /// The rendering of the images not shown in the split's own (see --target-fraction)
    #[arg(long, value_enum, default_value_t = PretrainParams::default().source_rendering)]
    pub source_rendering: Rendering,
    /// Fraction of each class's images shown in the split's rendering (the target), in [0, 1];
    /// the rest are shown in --source-rendering
    #[arg(long, value_parser = super::finite, default_value_t = PretrainParams::default().target_fraction, allow_hyphen_values = true)]
    pub target_fraction: f64,
    /// Caption names: class names only, or with synonyms and coarse captions (30% of images)
    #[arg(long, value_enum, default_value_t = PretrainParams::default().captions)]
    pub captions: Captions,
}

impl Settings for PretrainSettings {
    const SECTION: &'static str = "weights.pretrain";

    fn keys() -> Vec<Key> {
        vec![
            key("init_seed", Range::Any),
            key("epochs", Range::AtLeast(1)),
            key("lr", Range::NonNegative),
            key("batch_size", Range::AtLeast(1)),
            key("seed", Range::AtLeast(0)),
            key("crop_scale", Range::CropScale),
            key("source_rendering", Range::Any),
            key("target_fraction", Range::NonNegative),
            key("captions", Range::Any),
        ]
    }

    fn check(&self, name: &dyn Fn(&str) -> String) -> Result<(), String> {
        self.check_ranges(name)?;
        if self.target_fraction > 1.0 {
            return Err(format!("{} {}: must be in [0, 1]", name("target_fraction"), self.target_fraction));
        }
        Ok(())
    }
}

impl PretrainSettings {
    /// The settings that make `p` (a manifest's params), or why there are none: `p` sets what
    /// no flag reaches (templates, AdamW's other settings).
    pub fn from_params(p: &PretrainParams, init_seed: i64) -> Result<Self> {
        let settings = PretrainSettings {
            init_seed,
            epochs: p.epochs,
            lr: p.optimizer.lr,
            batch_size: p.batch_size,
            seed: p.seed,
            crop_scale: p.crop_scale(),
            source_rendering: p.source_rendering,
            target_fraction: p.target_fraction,
            captions: p.captions,
        };
        if settings.params()? != *p {
            anyhow::bail!("the pretraining params set what `clip-ast pretrain` has no flag for");
        }
        Ok(settings)
    }

    pub fn params(&self) -> Result<PretrainParams> {
        self.check_flags()?;
        let defaults = PretrainParams::default();
        Ok(PretrainParams {
            optimizer: AdamWConfig { lr: self.lr, ..defaults.optimizer.clone() },
            epochs: self.epochs,
            batch_size: self.batch_size,
            seed: self.seed,
            crop_scale_min: self.crop_scale.min,
            crop_scale_max: self.crop_scale.max,
            source_rendering: self.source_rendering,
            target_fraction: self.target_fraction,
            captions: self.captions,
            ..defaults
        })
    }
}
