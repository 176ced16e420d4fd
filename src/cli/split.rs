//! `split`: a few-shot split artifact, or a test-only one for ImageNet's variants.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Args;

use super::print_artifact;
use crate::data::datasets;
use crate::data::file_hashes::{check_cache_file, default_cache_path};
use crate::settings::Settings;
use crate::settings::split::SplitSettings;
use crate::stages::{self, StageContext};

#[derive(Args, Debug)]
pub struct Split {
    /// caltech101, oxford_pets, stanford_cars, oxford_flowers, food101, fgvc_aircraft,
    /// sun397, dtd, eurosat, ucf101, imagenet, imagefolder or fashion-mnist; or one of the
    /// test-only imagenetv2, imagenet-sketch, imagenet-a, imagenet-r
    #[arg(long)]
    dataset: String,
    /// The folder holding the dataset folder (CoOp's DATASET.ROOT), or the dataset folder
    #[arg(long)]
    root: PathBuf,
    /// Images per class in the train set, ≥ 1 (val gets min(K, 4)); omit it (or give 0) for a
    /// test-only dataset
    #[arg(long, allow_negative_numbers = true)]
    shots: Option<i64>,
    /// Few-shot seed, as CoOp's --seed; not needed for a test-only dataset
    #[arg(long, allow_negative_numbers = true)]
    seed: Option<i64>,
    #[command(flatten)]
    settings: SplitSettings,
    /// blake3 cache file [default: $XDG_CACHE_HOME/clip-ast/file-hashes.json]; an existing file
    /// must be such a cache (or empty): anything else is refused, never replaced
    #[arg(long)]
    hash_cache: Option<PathBuf>,
}

impl Split {
    pub fn run(self, ctx: &StageContext) -> Result<()> {
        self.settings.check_flags()?;
        let hash_cache = self.hash_cache.or_else(default_cache_path);
        // Before any image is read: the file it names must be one this tool may replace.
        if let Some(cache) = &hash_cache {
            check_cache_file(cache)?;
        }
        // A test-only dataset samples nothing; every other one needs both.
        let test_only = datasets::manifest(&self.dataset)?.test_only;
        let required = |value: Option<i64>, flag: &str, what: &str| match value {
            Some(v) => Ok(v),
            None if test_only => Ok(0),
            None => Err(anyhow!("{flag} is required for --dataset {} ({what})", self.dataset)),
        };
        let shots = required(self.shots, "--shots", "images per class, at least 1")?;
        let seed = required(self.seed, "--seed", "the few-shot seed, as CoOp's --seed")?;
        let mut request = self.settings.request(&self.dataset, &self.root, shots, seed, hash_cache);
        request.quiet = ctx.quiet;
        print_artifact(&stages::split::run(ctx, &request)?);
        Ok(())
    }
}
