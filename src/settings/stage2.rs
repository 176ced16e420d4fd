//! `clip-ast stage2` and a pipeline's `[stage2]`; defaults are `Stage2Params::default()`'s.

use anyhow::Result;
use clap::Args;
use serde::{Deserialize, Serialize};

use super::optimizer::OptimizerSettings;
use super::{Key, Range, Settings, follows, key};
use crate::clip::layers::Precision;
use crate::data::crop_scale::CropScale;
use crate::train::losses::ConsistencyWeights;
use crate::train::schedule::WarmupCosine;
use crate::train::stage2::Stage2Params;

/// Where stage 2 starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// The pretrained weights (the existing implementation's current behaviour).
    Pretrained,
    /// The pretrained weights overlaid with stage 1's tuned tensors (its earlier behaviour).
    Stage1,
}

#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage2Settings {
    /// Start from the pretrained weights, or from stage 1's tuned tensors
    #[arg(long, value_enum, default_value_t = Init::Pretrained)]
    pub init: Init,
    /// Peak AdamW learning rate (after the warm-up, before the cosine decay), ≥ 0
    #[arg(long, value_parser = super::finite, default_value_t = Stage2Params::default().optimizer.lr, allow_hyphen_values = true)]
    pub lr: f64,
    /// Passes over the train set, ≥ 1
    #[arg(long, default_value_t = Stage2Params::default().schedule.epochs)]
    pub epochs: usize,
    /// Linear warm-up epochs before the cosine decay, fewer than --epochs
    #[arg(long, default_value_t = Stage2Params::default().schedule.warmup_epochs)]
    pub warmup_epochs: usize,
    /// Learning rate the warm-up starts from, ≥ 0
    #[arg(long, value_parser = super::finite, default_value_t = Stage2Params::default().schedule.warmup_start_lr, allow_hyphen_values = true)]
    pub warmup_lr: f64,
    /// Images per step, ≥ 1
    #[arg(long, default_value_t = Stage2Params::default().batch_size)]
    pub batch_size: usize,
    /// λ: weight of all three self-consistency terms, ≥ 0 (0 is plain cross-entropy)
    #[arg(long = "lmbd", id = "lambda", visible_alias = "lambda", value_name = "LAMBDA", value_parser = super::finite, default_value_t = Stage2Params::default().lambdas.kl, allow_hyphen_values = true)]
    pub lambda: f64,
    /// λ for the image-feature L1 term [default: --lmbd]
    #[arg(long, value_parser = super::finite, allow_hyphen_values = true)]
    pub lambda_img: Option<f64>,
    /// λ for the text-feature L1 term [default: --lmbd]
    #[arg(long, value_parser = super::finite, allow_hyphen_values = true)]
    pub lambda_txt: Option<f64>,
    /// λ for the KL term [default: --lmbd]
    #[arg(long, value_parser = super::finite, allow_hyphen_values = true)]
    pub lambda_kl: Option<f64>,
    /// Shuffling and augmentation seed [default: the split's seed]
    #[arg(long)]
    pub seed: Option<u64>,
    /// fp32, or bf16 products from bf16 weight copies (fp32 master weights and state)
    #[arg(long, value_enum, default_value_t = Stage2Params::default().precision)]
    pub precision: Precision,
    /// Area range MIN,MAX of the RandomResizedCrop augmentation, 0 < MIN ≤ MAX ≤ 1
    #[arg(long, value_name = "MIN,MAX", default_value_t = Stage2Params::default().crop_scale)]
    #[serde(with = "crate::data::crop_scale::as_text")]
    pub crop_scale: CropScale,
    #[command(flatten)]
    #[serde(flatten)]
    pub optimizer: OptimizerSettings,
}

impl Settings for Stage2Settings {
    const SECTION: &'static str = "stage2";

    fn keys() -> Vec<Key> {
        let own = [
            key("init", Range::Any),
            key("lr", Range::NonNegative),
            key("epochs", Range::AtLeast(1)),
            key("warmup_epochs", Range::AtLeast(0)),
            key("warmup_lr", Range::NonNegative),
            key("batch_size", Range::AtLeast(1)),
            key("lambda", Range::NonNegative),
            follows("lambda_img", Range::NonNegative, "stage2.lambda"),
            follows("lambda_txt", Range::NonNegative, "stage2.lambda"),
            follows("lambda_kl", Range::NonNegative, "stage2.lambda"),
            follows("seed", Range::AtLeast(0), "data.seed"),
            key("precision", Range::Any),
        ];
        // Added later: at the end, so results.csv's older columns keep their places.
        own.into_iter().chain(OptimizerSettings::keys()).chain([key("crop_scale", Range::CropScale)]).collect()
    }

    fn check(&self, name: &dyn Fn(&str) -> String) -> Result<(), String> {
        self.check_ranges(name)?;
        if self.warmup_epochs >= self.epochs {
            return Err(format!(
                "{} {} must be less than {} {} (stage 2 warms up, then decays)",
                name("warmup_epochs"),
                self.warmup_epochs,
                name("epochs"),
                self.epochs
            ));
        }
        Ok(())
    }
}

impl Stage2Settings {
    /// The settings that make `p` (a manifest's params) from `init`, the seed set.
    pub fn from_params(p: &Stage2Params, init: Init) -> Self {
        Stage2Settings {
            init,
            lr: p.optimizer.lr,
            epochs: p.schedule.epochs,
            warmup_epochs: p.schedule.warmup_epochs,
            warmup_lr: p.schedule.warmup_start_lr,
            batch_size: p.batch_size,
            lambda: p.lambdas.kl,
            lambda_img: Some(p.lambdas.image_l1),
            lambda_txt: Some(p.lambdas.text_l1),
            lambda_kl: None,
            seed: Some(p.seed),
            precision: p.precision,
            crop_scale: p.crop_scale,
            optimizer: (&p.optimizer).into(),
        }
    }

    /// The artifact's params; `split_seed` is the seed when none is set.
    pub fn params(&self, split_seed: u64) -> Result<Stage2Params> {
        self.check_flags()?;
        Ok(Stage2Params {
            optimizer: self.optimizer.config(self.lr),
            schedule: WarmupCosine {
                warmup_start_lr: self.warmup_lr,
                warmup_epochs: self.warmup_epochs,
                epochs: self.epochs,
            },
            lambdas: ConsistencyWeights {
                image_l1: self.lambda_img.unwrap_or(self.lambda),
                text_l1: self.lambda_txt.unwrap_or(self.lambda),
                kl: self.lambda_kl.unwrap_or(self.lambda),
            },
            batch_size: self.batch_size,
            seed: self.seed.unwrap_or(split_seed),
            precision: self.precision,
            crop_scale: self.crop_scale,
        })
    }
}
