//! `eval`, `probe` and `report`: accuracies of a split's test set, and their summary over seeds.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::print_artifact;
use crate::report;
use crate::settings::eval::EvalSettings;
use crate::stages::{self, StageContext};
use crate::store::ArtifactKind;

#[derive(Args, Debug)]
pub struct Eval {
    /// Split artifact; twice for base then new
    #[arg(long = "split", required = true)]
    splits: Vec<String>,
    /// Weights artifact
    #[arg(long)]
    weights: String,
    /// Stage-2 artifact (omit for zero-shot)
    #[arg(long)]
    stage2: Option<String>,
    /// Score the val images only, not the test set: what `run` makes for every run of a
    /// `[choose] test = "chosen"` pipeline, the chosen ones then scored on test too
    #[arg(long)]
    val_only: bool,
    #[command(flatten)]
    settings: EvalSettings,
}

impl Eval {
    pub fn run(self, ctx: &StageContext) -> Result<()> {
        let splits = self.splits.iter().map(|s| ctx.resolve(s, ArtifactKind::Split)).collect::<Result<Vec<_>>>()?;
        let weights = ctx.resolve(&self.weights, ArtifactKind::Weights)?;
        let stage2 = self.stage2.map(|s| ctx.resolve(&s, ArtifactKind::Stage2)).transpose()?;
        let parts = if self.val_only { stages::eval::Parts::ValOnly } else { stages::eval::Parts::TestAndVal };
        print_artifact(&stages::eval::run(ctx, &splits, &weights, stage2.as_ref(), self.settings.precision, parts)?);
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct Probe {
    /// Split artifact
    #[arg(long)]
    split: String,
    /// Weights artifact
    #[arg(long)]
    weights: String,
}

impl Probe {
    pub fn run(self, ctx: &StageContext) -> Result<()> {
        let (split, weights) =
            (ctx.resolve(&self.split, ArtifactKind::Split)?, ctx.resolve(&self.weights, ArtifactKind::Weights)?);
        print_artifact(&stages::probe::run(ctx, &split, &weights)?);
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct Report {
    /// Eval artifacts (directories or key prefixes)
    #[arg(required = true)]
    evals: Vec<String>,
    /// Path prefix of the CSV and PNG to write
    #[arg(long, default_value = "report")]
    out: PathBuf,
    /// Title of the plot
    #[arg(long, default_value = "clip-ast")]
    title: String,
}

impl Report {
    pub fn run(self, ctx: &StageContext) -> Result<()> {
        crate::owned::check_report_prefix(&self.out.with_extension("csv"), &self.out.with_extension("png"))?;
        let rows = self
            .evals
            .iter()
            .map(|e| {
                let eval = ctx.resolve(e, ArtifactKind::Eval)?;
                ctx.store.verify(&eval)?;
                report::read_metrics(&eval.file("metrics.csv"))
            })
            .collect::<Result<Vec<_>>>()?;
        let summaries = report::summarize(&rows);
        report::write_csv(&summaries, &self.out.with_extension("csv"))?;
        report::plot(&summaries, &self.out.with_extension("png"), &self.title)?;
        print!("{}", report::table(&summaries));
        Ok(())
    }
}
