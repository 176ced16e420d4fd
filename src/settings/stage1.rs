//! `clip-ast stage1` and a pipeline's `[stage1]`; defaults are `Stage1Params::default()`'s.

use anyhow::Result;
use clap::Args;
use serde::{Deserialize, Serialize};

use super::optimizer::OptimizerSettings;
use super::{Key, Range, Settings, follows, key};
use crate::clip::layers::Precision;
use crate::data::crop_scale::CropScale;
use crate::train::stage1::Stage1Params;

#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage1Settings {
    /// AdamW learning rate, ≥ 0
    #[arg(long, value_parser = super::finite, default_value_t = Stage1Params::default().optimizer.lr, allow_hyphen_values = true)]
    pub lr: f64,
    /// Passes over the train set, ≥ 1
    #[arg(long, default_value_t = Stage1Params::default().epochs)]
    pub epochs: usize,
    /// Images per step, ≥ 1
    #[arg(long, default_value_t = Stage1Params::default().batch_size)]
    pub batch_size: usize,
    /// Shuffling and augmentation seed [default: the split's seed]
    #[arg(long)]
    pub seed: Option<u64>,
    /// fp32, or bf16 products from bf16 weight copies (fp32 master weights and state)
    #[arg(long, value_enum, default_value_t = Stage1Params::default().precision)]
    pub precision: Precision,
    /// Repeat the shuffled train set (a new shuffle each pass) until at least this many
    /// optimizer steps have run, ≥ 1. 1 and 4 shots of 10 classes at batch 32 are one step per
    /// epoch, too few for the selection's statistics; `select` warns below 4
    #[arg(long, default_value_t = Stage1Params::default().min_steps)]
    pub min_steps: usize,
    /// Area range MIN,MAX of the RandomResizedCrop augmentation, 0 < MIN ≤ MAX ≤ 1
    #[arg(long, value_name = "MIN,MAX", default_value_t = Stage1Params::default().crop_scale)]
    #[serde(with = "crate::data::crop_scale::as_text")]
    pub crop_scale: CropScale,
    #[command(flatten)]
    #[serde(flatten)]
    pub optimizer: OptimizerSettings,
}

impl Settings for Stage1Settings {
    const SECTION: &'static str = "stage1";

    fn keys() -> Vec<Key> {
        let own = [
            key("lr", Range::NonNegative),
            key("epochs", Range::AtLeast(1)),
            key("batch_size", Range::AtLeast(1)),
            follows("seed", Range::AtLeast(0), "data.seed"),
            key("precision", Range::Any),
        ];
        // Added later: at the end, so results.csv's older columns keep their places.
        let added = [key("min_steps", Range::AtLeast(1)), key("crop_scale", Range::CropScale)];
        own.into_iter().chain(OptimizerSettings::keys()).chain(added).collect()
    }
}

impl Stage1Settings {
    /// The settings that make `p` (a manifest's params), the seed set.
    pub fn from_params(p: &Stage1Params) -> Self {
        Stage1Settings {
            lr: p.optimizer.lr,
            epochs: p.epochs,
            batch_size: p.batch_size,
            seed: Some(p.seed),
            precision: p.precision,
            min_steps: p.min_steps,
            crop_scale: p.crop_scale,
            optimizer: (&p.optimizer).into(),
        }
    }

    /// The artifact's params; `split_seed` is the seed when none is set.
    pub fn params(&self, split_seed: u64) -> Result<Stage1Params> {
        self.check_flags()?;
        Ok(Stage1Params {
            optimizer: self.optimizer.config(self.lr),
            epochs: self.epochs,
            batch_size: self.batch_size,
            seed: self.seed.unwrap_or(split_seed),
            precision: self.precision,
            min_steps: self.min_steps,
            crop_scale: self.crop_scale,
        })
    }
}
