//! `stage1`, `select` and `stage2`: the CLIP-AST training chain.

use anyhow::{Context, Result, bail};
use clap::Args;

use super::{print_artifact, split_seed};
use crate::settings::Settings;
use crate::settings::select::SelectSettings;
use crate::settings::stage1::Stage1Settings;
use crate::settings::stage2::Stage2Settings;
use crate::stages::{self, StageContext};
use crate::store::ArtifactKind;
use crate::train::select::{Match, ScoreRule};

#[derive(Args, Debug)]
pub struct Stage1 {
    /// Split artifact (directory or key prefix)
    #[arg(long)]
    split: String,
    /// Weights artifact
    #[arg(long)]
    weights: String,
    #[command(flatten)]
    settings: Stage1Settings,
}

impl Stage1 {
    pub fn run(self, ctx: &StageContext) -> Result<()> {
        self.settings.check_flags()?;
        let (split, weights) =
            (ctx.resolve(&self.split, ArtifactKind::Split)?, ctx.resolve(&self.weights, ArtifactKind::Weights)?);
        let seed = match self.settings.seed {
            Some(seed) => seed,
            None => split_seed(&split)?,
        };
        let params = self.settings.params(seed)?;
        print_artifact(&stages::stage1::run(ctx, &split, &weights, &params)?);
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct Select {
    /// Stage-1 artifact
    #[arg(long)]
    stage1: String,
    #[command(flatten)]
    settings: SelectSettings,
    /// With --score random: K tensors per block, or per block as many parameters as the
    /// --like selection chose (random among the subsets nearest that count; --k is unused)
    #[arg(long = "match", id = "match", value_name = "MATCH", value_enum, default_value_t = Match::Tensors)]
    matching: Match,
    /// Selection artifact whose per-block parameter counts --match params matches
    #[arg(long, value_name = "SELECTION")]
    like: Option<String>,
}

impl Select {
    pub fn run(self, ctx: &StageContext) -> Result<()> {
        self.settings.check_flags()?;
        match (self.matching, &self.like) {
            (Match::Params, None) => {
                bail!("--match params needs --like SELECTION: the selection whose parameter counts to match")
            }
            (Match::Tensors, Some(_)) => bail!("--like only applies with --match params"),
            (Match::Params, Some(_)) if self.settings.score != ScoreRule::Random => {
                bail!("--match params draws random tensors; it needs --score random")
            }
            _ => {}
        }
        let stage1 = ctx.resolve(&self.stage1, ArtifactKind::Stage1)?;
        let like = self.like.as_deref().map(|l| ctx.resolve(l, ArtifactKind::Selection)).transpose()?;
        // The seed follows the split stage 1 trained on, as a pipeline's `select.seed` follows
        // `data.seed`, so the command and a pipeline make the same selection.
        let seed = match self.settings.seed {
            Some(seed) => seed,
            None => {
                let split = stage1.manifest.inputs.get("split").context("the stage-1 manifest names no split")?;
                split_seed(&ctx.resolve(split.as_str(), ArtifactKind::Split)?)?
            }
        };
        let mut request = self.settings.request(seed);
        if like.is_some() {
            request.k = 0;
        }
        let artifact = stages::select::run(ctx, &stage1, &request, like.as_ref())?;
        // Also when cached, and with --quiet: a weak ranking should not pass unnoticed.
        for warning in stages::select::read(&artifact)?.warnings {
            eprintln!("warning: {warning}");
        }
        print_artifact(&artifact);
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct Stage2 {
    /// Split artifact
    #[arg(long)]
    split: String,
    /// Weights artifact
    #[arg(long)]
    weights: String,
    /// Selection artifact
    #[arg(long)]
    selection: String,
    #[command(flatten)]
    settings: Stage2Settings,
}

impl Stage2 {
    pub fn run(self, ctx: &StageContext) -> Result<()> {
        // Settings first: a bad value fails before any artifact is looked up.
        self.settings.check_flags()?;
        let split = ctx.resolve(&self.split, ArtifactKind::Split)?;
        let weights = ctx.resolve(&self.weights, ArtifactKind::Weights)?;
        let selection = ctx.resolve(&self.selection, ArtifactKind::Selection)?;
        let seed = match self.settings.seed {
            Some(seed) => seed,
            None => split_seed(&split)?,
        };
        let params = self.settings.params(seed)?;
        print_artifact(&stages::stage2::run(ctx, &split, &weights, &selection, self.settings.init, &params)?);
        Ok(())
    }
}
