//! `split`: a few-shot split artifact.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::print_artifact;
use crate::data::file_hashes::default_cache_path;
use crate::data::split::SplitRequest;
use crate::settings::split::SplitSettings;
use crate::stages::{self, StageContext};

#[derive(Args, Debug)]
pub struct Split {
    /// caltech101, oxford_pets, stanford_cars, oxford_flowers, food101, fgvc_aircraft,
    /// sun397, dtd, eurosat, ucf101, imagenet, imagefolder or fashion-mnist
    #[arg(long)]
    dataset: String,
    /// The folder holding the dataset folder (CoOp's DATASET.ROOT), or the dataset folder
    #[arg(long)]
    root: PathBuf,
    /// Images per class in the train set, ≥ 1 (val gets min(K, 4))
    #[arg(long, allow_negative_numbers = true)]
    shots: i64,
    /// Few-shot seed, as CoOp's --seed
    #[arg(long, allow_negative_numbers = true)]
    seed: i64,
    #[command(flatten)]
    settings: SplitSettings,
    /// blake3 cache file [default: $XDG_CACHE_HOME/clip-ast/file-hashes.json]
    #[arg(long)]
    hash_cache: Option<PathBuf>,
}

impl Split {
    pub fn run(self, ctx: &StageContext) -> Result<()> {
        let request = SplitRequest {
            dataset: self.dataset,
            root: self.root,
            shots: self.shots,
            seed: self.seed,
            subsample: self.settings.subsample,
            image_size: self.settings.image_size,
            split_seed: self.settings.split_seed,
            test_per_class: self.settings.test_per_class,
            rendering: self.settings.rendering,
            pool: self.settings.pool,
            hash_cache: self.hash_cache.or_else(default_cache_path),
            save_generated_split: true,
            quiet: ctx.quiet,
        };
        print_artifact(&stages::split::run(ctx, &request)?);
        Ok(())
    }
}
