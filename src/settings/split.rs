//! `clip-ast split`'s settings beside the dataset and shots, and the defaults a pipeline's
//! `[data]` shares with it.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};

use super::{Key, Range, Settings, key};
use crate::data::pool::Pool;
use crate::data::rendering::Rendering;
use crate::data::split::SplitRequest;
use crate::data::subsample::Subsample;

#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitSettings {
    /// Classes to keep
    #[arg(long, value_enum, default_value_t = Subsample::All)]
    pub subsample: Subsample,
    /// Side of the preprocessed test images, 1 to 1024: the model's input size (224 for
    /// OpenAI's models but ViT-L/14@336; a pipeline takes its preset's)
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

pub use crate::data::split::{MAX_IMAGE_SIZE, check_image_size};

/// Images per class (`--shots`, `data.shots`, `weights.pretrain.shots`): at least 1. A class
/// with fewer keeps all it has (CoOp's rule); more than the largest class has is refused where
/// the dataset's lists are read (`data::fewshot`).
pub const SHOTS: Range = Range::AtLeast(1);

/// The few-shot seed (`--seed`, `data.seed`).
pub const SEED: Range = Range::AtLeast(0);

impl Settings for SplitSettings {
    const SECTION: &'static str = "data";

    fn keys() -> Vec<Key> {
        vec![
            key("subsample", Range::Any),
            key("image_size", Range::Between(1, MAX_IMAGE_SIZE)),
            key("split_seed", Range::Any),
            key("test_per_class", Range::AtLeast(1)),
            key("rendering", Range::Any),
            key("pool", Range::Any),
        ]
    }
}

impl SplitSettings {
    /// The one way a split request is built (the `split` command, a pipeline's `[data]`, its
    /// `[eval] targets`, a foundation's pretraining split): the sampling of `dataset` under
    /// `root`, with these settings.
    pub fn request(
        &self,
        dataset: &str,
        root: &Path,
        shots: i64,
        seed: i64,
        hash_cache: Option<PathBuf>,
    ) -> SplitRequest {
        SplitRequest {
            dataset: dataset.to_string(),
            root: root.to_path_buf(),
            shots,
            seed,
            subsample: self.subsample,
            image_size: self.image_size,
            split_seed: self.split_seed,
            test_per_class: self.test_per_class,
            rendering: self.rendering,
            pool: self.pool,
            hash_cache,
            save_generated_split: true,
            quiet: true,
        }
    }

    /// The settings of `r`.
    pub fn of(r: &SplitRequest) -> Self {
        SplitSettings {
            subsample: r.subsample,
            image_size: r.image_size,
            split_seed: r.split_seed,
            test_per_class: r.test_per_class,
            rendering: r.rendering,
            pool: r.pool,
        }
    }
}
