//! `clip-ast run --executor slurm`: the same graph as a local run, each node the store lacks a
//! batch job running the node's ordinary stage command (`clip-ast stage2 --split KEY …`) on a
//! store every node mounts, after (`afterok`) the jobs of its inputs. This process then follows
//! the jobs and, once every artifact is in the store, writes the same results.csv,
//! summary.csv and report a local run writes (the caller does, from the artifacts returned).
//!
//! config: `[slurm]` resources · command: node → stage command · submit: sbatch, records ·
//! follow: squeue until done, failures · scheduler: the Slurm commands · record: what was
//! submitted for which key, so a later run attaches to it (pipelines/README.md, "On a Slurm
//! cluster").

pub mod command;
pub mod config;
mod follow;
mod group;
mod limit;
mod record;
mod scheduler;
mod submit;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::graph::Graph;
use super::progress::Progress;
use crate::stages::StageContext;
use crate::store::{Artifact, STORE_ENV};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Executor {
    /// Stages run in this process, --jobs at a time
    #[default]
    Local,
    /// Each stage is a Slurm batch job
    Slurm,
}

/// `clip-ast run`'s executor flags.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ExecutorArgs {
    /// Where stages run: local, or slurm (each a batch job; the store, given as an absolute
    /// path, must be on a filesystem every node mounts; resources from the file's [slurm])
    #[arg(long, value_enum, default_value_t = Executor::Local)]
    pub executor: Executor,
    /// With --executor slurm: submit and exit. The same command later follows what is still
    /// queued, or writes the results once every stage is done
    #[arg(long)]
    pub detach: bool,
}

/// What the slurm executor needs of the command line besides its own flags.
pub struct SlurmRun<'a> {
    pub args: &'a ExecutorArgs,
    /// `--store` as given (it must be absolute); `None`: $CLIP_AST_STORE or the default.
    pub store_arg: Option<&'a Path>,
    /// `--threads` as given, passed on to each stage.
    pub threads: Option<i32>,
}

impl ExecutorArgs {
    pub fn check(&self) -> Result<()> {
        if self.detach && self.executor != Executor::Slurm {
            bail!("--detach only applies to --executor slurm");
        }
        Ok(())
    }
}

/// Every node's artifact once all are in the store; `None` after `--detach` submitted.
pub fn execute(
    ctx: &StageContext,
    config: &config::SlurmConfig,
    graph: &Graph,
    run: &SlurmRun,
    progress: &Progress,
) -> Result<Option<Vec<Artifact>>> {
    let given: PathBuf = match run.store_arg {
        Some(p) => p.to_path_buf(),
        None => std::env::var_os(STORE_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(crate::store::DEFAULT_STORE), PathBuf::from),
    };
    if !given.is_absolute() {
        bail!(
            "--executor slurm: the store `{}` is a relative path; give --store (or ${STORE_ENV}) as an absolute path on a filesystem every node mounts",
            given.display()
        );
    }
    let exe = std::env::current_exe().context("cannot find the clip-ast binary the jobs should run")?;
    let settings =
        submit::JobSettings { store: &ctx.store, config, exe, threads: run.threads, device: device_name(ctx.device) };
    for node in &graph.nodes {
        if ctx.store.artifact_dir(node.kind, &node.key).is_dir() {
            progress.finished(node, &node.key, true, 0.0);
        }
    }
    let (mut tracked, mut queue) = submit::submit_missing(graph, &settings, progress)?;
    let jobs = |submitted: bool| {
        let mut ids: Vec<&str> =
            tracked.iter().filter(|t| t.submitted == submitted && !t.job.is_empty()).map(|t| t.job.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    };
    if !tracked.is_empty() {
        let stages = tracked.iter().filter(|t| t.submitted).count();
        let held = queue.waiting();
        progress.note(&format!(
            "slurm: {} job(s) submitted, {} already queued followed{}{}; logs in {}",
            jobs(true),
            jobs(false),
            if stages > jobs(true) { format!(" ({stages} stages in the submitted jobs)") } else { String::new() },
            if held > 0 { format!("; {held} stage(s) wait for max_jobs") } else { String::new() },
            record::logs_dir(&ctx.store).display()
        ));
    }
    if run.args.detach {
        progress.note("slurm: detached; run the same command again to follow the jobs and write the results");
        if queue.waiting() > 0 {
            progress.note("slurm: the stages max_jobs held back are submitted by that later run");
        }
        return Ok(None);
    }
    follow::follow(&ctx.store, graph, &mut tracked, &mut queue, progress)?;
    let artifacts = graph
        .nodes
        .iter()
        .map(|n| {
            ctx.store.cached(n.kind, &n.key)?.ok_or_else(|| {
                anyhow::anyhow!("{} {}: its job ended but {} is not in the store", n.kind, n.label, n.key.short())
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(artifacts))
}

/// The jobs `nodes` (inputs first) are submitted as under `config`: each a list of nodes.
pub fn job_units(graph: &Graph, nodes: &[super::graph::NodeId], config: &config::SlurmConfig) -> Vec<Vec<usize>> {
    group::units(graph, nodes, config)
}

/// `--device` for a stage command.
pub fn device_name(device: tch::Device) -> String {
    match device {
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        tch::Device::Mps => "mps".to_string(),
        tch::Device::Vulkan => "vulkan".to_string(),
        _ => "cpu".to_string(),
    }
}
