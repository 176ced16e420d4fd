//! `clip-ast split`'s settings beside the dataset and shots, and the defaults a pipeline's
//! `[data]` shares with it.

use clap::Args;
use serde::{Deserialize, Serialize};

use super::{Key, Range, Settings, key};
use crate::data::pool::Pool;
use crate::data::rendering::Rendering;
use crate::data::subsample::Subsample;

#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitSettings {
    /// Classes to keep
    #[arg(long, value_enum, default_value_t = Subsample::All)]
    pub subsample: Subsample,
    /// Side of the preprocessed test images: the model's input size (224 for OpenAI's models
    /// but ViT-L/14@336; a pipeline takes its preset's)
    #[arg(long, default_value_t = 224)]
    pub image_size: u32,
    /// Seed of the 50/20/30 split made when the dataset has no split file
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub split_seed: i64,
    /// Keep only the first N test images of each class (quick evaluations), ≥ 1
    #[arg(long)]
    pub test_per_class: Option<usize>,
    /// How every image (train, val, test) is rendered: as it is, or a shifted domain of it
    /// (docs/datasets.md)
    #[arg(long, value_enum, default_value_t = Rendering::Original)]
    pub rendering: Rendering,
    /// The part of the train list the few-shot images come from: all of it, the few-shot half
    /// of each class, or the pretraining half (disjoint from the first and from val and test)
    #[arg(long, value_enum, default_value_t = Pool::All)]
    pub pool: Pool,
}

impl Settings for SplitSettings {
    const SECTION: &'static str = "data";

    fn keys() -> Vec<Key> {
        vec![
            key("subsample", Range::Any),
            key("image_size", Range::AtLeast(1)),
            key("split_seed", Range::Any),
            key("test_per_class", Range::AtLeast(1)),
            key("rendering", Range::Any),
            key("pool", Range::Any),
        ]
    }
}
