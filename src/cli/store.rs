//! `ls`, `audit`, `run` and `gc`: the commands over the whole store and pipeline files.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use crate::pipeline::{self, RunOptions};
use crate::stages::{self, StageContext, listing};
use crate::store::{Artifact, ArtifactKind, audit};

#[derive(Args, Debug)]
pub struct Ls {}

impl Ls {
    pub fn run(self, ctx: &StageContext) -> Result<()> {
        let (lines, unreadable) = listing::lines(&ctx.store)?;
        for line in lines {
            println!("{line}");
        }
        if let Some(first) = unreadable.first() {
            bail!(
                "{} artifact(s) not listed, their manifests unreadable (`clip-ast audit` checks them): {first}{}",
                unreadable.len(),
                if unreadable.len() > 1 { "; ..." } else { "" }
            );
        }
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct Audit {
    /// Artifacts to check [default: all; --rerun needs them named]
    artifacts: Vec<String>,
    /// Recompute the named artifacts and compare their files byte for byte; for a split, hash
    /// every image file it was made from again and compare with what it recorded
    #[arg(long)]
    rerun: bool,
}

impl Audit {
    /// `threads_given`: whether --threads was passed, else a rerun takes the manifest's.
    pub fn run(self, mut ctx: StageContext, threads_given: bool) -> Result<()> {
        if self.rerun {
            return self.rerun(&mut ctx, threads_given);
        }
        let reports = if self.artifacts.is_empty() {
            audit::audit_all(&ctx.store)?
        } else {
            let dirs = self.artifacts.iter().map(|a| ctx.store.locate(a, None)).collect::<Result<Vec<_>>>()?;
            audit::audit_each(&ctx.store, &dirs)
        };
        let bad = reports.iter().filter(|r| !r.is_clean()).count();
        for report in &reports {
            println!("{report}");
        }
        if bad > 0 {
            bail!("{bad} of {} artifact(s) failed the audit", reports.len());
        }
        Ok(())
    }

    fn rerun(&self, ctx: &mut StageContext, threads_given: bool) -> Result<()> {
        if self.artifacts.is_empty() {
            bail!("--rerun recomputes what it is given: name the artifacts (keys, prefixes or folders)");
        }
        let mut bad = 0;
        for reference in &self.artifacts {
            let artifact = ctx.store.resolve(reference, None)?;
            let [report] = &audit::audit_each(&ctx.store, std::slice::from_ref(&artifact.dir))[..] else {
                unreachable!("one report per artifact")
            };
            if !report.is_clean() {
                bail!("{}; fix what audit reports before a rerun", report.to_string().replace('\n', "; "));
            }
            if artifact.kind == ArtifactKind::Split {
                bad += usize::from(!split_images(&artifact)?);
                continue;
            }
            if !threads_given {
                tch::set_num_threads(artifact.manifest.threads.max(1) as i32);
                ctx.threads = artifact.manifest.threads.max(1);
            }
            let report = stages::rerun::rerun(ctx, &artifact)?;
            let (kind, short) = (&artifact.kind, artifact.key.short());
            if let Some(machine) = &report.other_machine {
                println!("    {kind}/{short}: {machine}; comparing numbers, not bytes");
            }
            for note in &report.within_tolerance {
                println!("    {kind}/{short}: {note}");
            }
            if report.problems.is_empty() {
                let files = artifact.manifest.outputs.len();
                let how = if report.within_tolerance.is_empty() { "byte for byte" } else { "within tolerance" };
                println!("ok  {kind}/{short}: rerun wrote the same {files} file(s), {how}");
            }
            for problem in &report.problems {
                println!("BAD {kind}/{short}: {problem}");
            }
            bad += usize::from(!report.problems.is_empty());
        }
        if bad > 0 {
            bail!("{bad} of {} rerun(s) differ from the store", self.artifacts.len());
        }
        Ok(())
    }
}

/// `audit --rerun SPLIT`: a split is made from image files, not from other artifacts, so its
/// check is that every file it hashed still hashes so. Whether it passed.
fn split_images(artifact: &Artifact) -> Result<bool> {
    let (files, problems) = stages::split_images::audit(artifact)?;
    let short = artifact.key.short();
    if problems.is_empty() {
        println!("ok  split/{short}: its {files} image file(s) hash as it recorded");
    }
    for problem in &problems {
        println!("BAD split/{short}: {problem}");
    }
    Ok(problems.is_empty())
}

#[derive(Args, Debug)]
pub struct Run {
    /// The pipeline file (pipelines/*.toml)
    pipeline: PathBuf,
    /// Print per stage how many would run, how many are cached, and how many a naive
    /// sweep would run, and with [choose] how many choices it makes (each needs all its
    /// evaluations); run nothing
    #[arg(long)]
    dry_run: bool,
    /// Before the dry run's estimate: compute, for each stage kind (evaluations: zero-shot, tuned, probe), the first stage the store
    /// lacks (and what it needs), so a cold store has stages to estimate from; the run reuses them
    #[arg(long)]
    calibrate: bool,
    /// Stages run at once, ≥ 1 (independent ones: different grid points, or stages of one
    /// point that do not need each other)
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Results folder [default: results/<pipeline name>/]
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    executor: crate::pipeline::slurm::ExecutorArgs,
}

impl Run {
    pub fn run(self, ctx: &StageContext, shared: &super::Shared) -> Result<()> {
        let options = RunOptions {
            pipeline: self.pipeline,
            dry_run: self.dry_run,
            calibrate: self.calibrate,
            jobs: self.jobs,
            out: self.out,
            executor: self.executor,
            threads: shared.threads,
            store: shared.store.clone(),
        };
        for line in pipeline::run(ctx, &options)? {
            println!("{line}");
        }
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct Gc {
    /// Results folders (searched recursively for results.csv) or results.csv files
    results: Vec<PathBuf>,
    /// Remove; without it, only list what would go
    #[arg(long)]
    yes: bool,
    /// Only the checkpoints of unfinished stages (STORE/tmp/checkpoints/): those whose artifact
    /// is published, and with --older-than the ones not saved to for that long; no results
    /// folders needed
    #[arg(long)]
    checkpoints: bool,
    /// With or without --checkpoints: also remove checkpoints of stages not running that were
    /// last saved longer ago than this (90s, 30m, 12h, 7d)
    #[arg(long, value_parser = pipeline::gc::parse_age)]
    older_than: Option<std::time::Duration>,
}

impl Gc {
    pub fn run(self, ctx: &StageContext) -> Result<()> {
        let mut lines = Vec::new();
        if !self.checkpoints {
            lines = pipeline::gc(&ctx.store, &self.results, self.yes)?;
        }
        lines.extend(pipeline::gc::gc_checkpoints(&ctx.store, self.older_than, self.yes)?);
        for line in lines {
            println!("{line}");
        }
        Ok(())
    }
}
