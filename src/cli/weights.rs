//! `import-weights`, `init-weights` and `pretrain`: the commands that make weights artifacts.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use clap::builder::PossibleValuesParser;

use super::print_artifact;
use crate::clip::config::{Activation, PRESETS};
use crate::settings::pretrain::PretrainSettings;
use crate::stages::{self, StageContext};
use crate::store::ArtifactKind;

#[derive(Args, Debug)]
pub struct ImportWeights {
    /// The checkpoint to import
    file: PathBuf,
    /// MLP activation, for OpenAI-named safetensors without open_clip_config.json beside them
    /// (they do not say); checked against that file or a Hugging Face config.json where present
    #[arg(long, value_enum)]
    activation: Option<Activation>,
}

impl ImportWeights {
    pub fn run(self, ctx: &StageContext) -> Result<()> {
        print_artifact(&stages::weights::import_weights(ctx, &self.file, self.activation)?);
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct InitWeights {
    /// Architecture
    #[arg(long, default_value = "mini", value_parser = PossibleValuesParser::new(PRESETS))]
    preset: String,
    /// Seed of the random initialisation
    #[arg(long, default_value_t = 0)]
    seed: i64,
}

impl InitWeights {
    pub fn run(self, ctx: &StageContext) -> Result<()> {
        print_artifact(&stages::weights::init(ctx, &self.preset, self.seed)?);
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct Pretrain {
    /// Split artifact whose train images and class names are the training data
    #[arg(long)]
    split: String,
    /// Architecture (mini for the demo)
    #[arg(long, default_value = "mini", value_parser = PossibleValuesParser::new(PRESETS))]
    preset: String,
    #[command(flatten)]
    settings: PretrainSettings,
}

impl Pretrain {
    pub fn run(self, ctx: &StageContext) -> Result<()> {
        let params = self.settings.params()?;
        let split = ctx.resolve(&self.split, ArtifactKind::Split)?;
        print_artifact(&stages::pretrain::run(ctx, &split, &self.preset, self.settings.init_seed, &params)?);
        Ok(())
    }
}
