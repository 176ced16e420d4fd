//! Turning the graph into batch jobs: every node the store lacks becomes one job running its
//! stage command, after (`afterok`) the jobs of its inputs that are not in the store yet. A node
//! whose recorded job is still queued or running is followed, not submitted again.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::command::command_for;
use super::config::SlurmConfig;
use super::record::{self, Record, SubmitLock};
use super::scheduler::{self, Submission};
use crate::pipeline::graph::{Graph, Node, NodeId};
use crate::store::Store;

/// How each stage job runs the stage command.
pub struct JobSettings<'a> {
    pub store: &'a Store,
    pub config: &'a SlurmConfig,
    /// The binary the jobs run: this one (it must be where every node can run it).
    pub exe: PathBuf,
    /// `clip-ast run --threads`, passed on to every stage; else a kind's `cpus`.
    pub threads: Option<i32>,
    /// The run's `--device`, for kinds that name none and ask for no GPU.
    pub device: String,
}

/// What a node is waiting on.
#[derive(Clone, Debug)]
pub struct Tracked {
    pub node: NodeId,
    pub job: String,
    pub name: String,
    pub log: PathBuf,
    /// Submitted by this run (else found in a record and attached to).
    pub submitted: bool,
    /// How to submit it again (after a time limit or a preemption, with `requeue`).
    pub again: JobSpec,
    /// Resubmissions still allowed (`max_resubmits`; 0 without `requeue`).
    pub resubmits_left: u32,
    /// 1 for the first job, +1 for each resubmission.
    pub attempt: u32,
}

/// A stage's batch job as `sbatch` is given it, with no dependencies: a resubmitted stage's
/// inputs are in the store already.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub name: String,
    /// `--output`, with `%j`.
    pub pattern: PathBuf,
    pub sbatch_args: Vec<String>,
    pub argv: Vec<String>,
    pub kind: String,
}

impl JobSpec {
    /// Submit after `after`, record the job for the key; returns the job id and its log.
    pub fn submit(
        &self,
        store: &Store,
        key: &crate::store::ArtifactKey,
        after: &[String],
    ) -> Result<(String, PathBuf)> {
        let job = scheduler::sbatch(&Submission {
            name: &self.name,
            log: &self.pattern,
            after,
            resources: &self.sbatch_args,
            argv: &self.argv,
        })?;
        let log = PathBuf::from(self.pattern.display().to_string().replace("%j", &job));
        let r = Record { job: job.clone(), name: self.name.clone(), kind: self.kind.clone(), log: log.clone() };
        record::write(store, key, &r)?;
        Ok((job, log))
    }
}

/// Submit what is missing; returns every node not in the store with its job.
pub fn submit_missing(graph: &Graph, settings: &JobSettings) -> Result<Vec<Tracked>> {
    let store = settings.store;
    let argvs: Vec<Option<Vec<String>>> =
        graph.nodes.iter().map(|n| (!in_store(store, n)).then(|| command_for(graph, n))).collect();
    let logs = record::logs_dir(store);
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let _lock = SubmitLock::acquire(store)?;

    let missing: Vec<NodeId> = (0..graph.nodes.len()).filter(|&id| argvs[id].is_some()).collect();
    let recorded: Vec<Option<Record>> = missing.iter().map(|&id| record::read(store, &graph.nodes[id].key)).collect();
    let ids: Vec<String> = recorded.iter().flatten().map(|r| r.job.clone()).collect();
    let known = scheduler::squeue(&ids)?;

    let mut job_of: Vec<Option<String>> = vec![None; graph.nodes.len()];
    let mut tracked = Vec::new();
    for (&id, record) in missing.iter().zip(recorded) {
        let node = &graph.nodes[id];
        // Another run may have finished it since the check above.
        if in_store(store, node) {
            continue;
        }
        let alive = record.filter(|r| known.get(&r.job).is_some_and(|s| s.active() && s.name == r.name));
        let resources = settings.config.for_kind(node.kind);
        let mut argv = vec![settings.exe.display().to_string()];
        argv.extend(argvs[id].clone().expect("missing nodes have commands"));
        argv.push(format!("--store={}", store.root().display()));
        let device = resources
            .device
            .clone()
            .unwrap_or_else(|| if resources.gpus.is_some() { "cuda".to_string() } else { settings.device.clone() });
        argv.push(format!("--device={device}"));
        if let Some(threads) = settings.threads.or(resources.cpus.map(|c| c as i32)) {
            argv.push(format!("--threads={threads}"));
        }
        let again = JobSpec {
            name: format!("clip-ast-{}-{}", node.kind.as_str(), &node.key.as_str()[..12]),
            pattern: logs.join(format!("{}-{}-%j.log", node.kind.as_str(), node.key.as_str())),
            sbatch_args: resources.sbatch_args(),
            argv,
            kind: node.kind.as_str().to_string(),
        };
        let resubmits_left = resources.resubmits();
        let t = match alive {
            Some(r) => Tracked {
                node: id,
                job: r.job,
                name: r.name,
                log: r.log,
                submitted: false,
                again,
                resubmits_left,
                attempt: 1,
            },
            None => {
                let after: Vec<String> = node.inputs().iter().filter_map(|&i| job_of[i].clone()).collect();
                let (job, log) = again
                    .submit(store, &node.key, &after)
                    .with_context(|| format!("{} {}", node.kind.as_str(), node.label))?;
                let name = again.name.clone();
                Tracked { node: id, job, name, log, submitted: true, again, resubmits_left, attempt: 1 }
            }
        };
        job_of[id] = Some(t.job.clone());
        tracked.push(t);
    }
    Ok(tracked)
}

fn in_store(store: &Store, node: &Node) -> bool {
    store.artifact_dir(node.kind, &node.key).is_dir()
}
