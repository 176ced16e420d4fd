//! Turning the graph into batch jobs: every node the store lacks becomes one job running its
//! stage command, after (`afterok`) the jobs of its inputs that are not in the store yet. A node
//! whose recorded job is still queued or running is followed, not submitted again.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::command::command_for;
use super::config::{Resources, SlurmConfig};
use super::group;
use super::limit::Queue;
use super::record::{self, Record, SubmitLock};
use super::scheduler::{self, Submission};
use crate::pipeline::graph::{Graph, Node, NodeId};
use crate::pipeline::progress::Progress;
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
    /// The command's standard input (a group's stage commands).
    pub input: Option<String>,
}

impl JobSpec {
    /// Submit after `after`; returns the job id and its log.
    pub fn sbatch(&self, after: &[String]) -> Result<(String, PathBuf)> {
        let job = scheduler::sbatch(&Submission {
            name: &self.name,
            log: &self.pattern,
            after,
            resources: &self.sbatch_args,
            argv: &self.argv,
            input: self.input.as_deref(),
        })?;
        let log = PathBuf::from(self.pattern.display().to_string().replace("%j", &job));
        Ok((job, log))
    }

    /// Record that `job` makes `key` (one of the job's stages, of `kind`).
    pub fn record(
        &self,
        store: &Store,
        key: &crate::store::ArtifactKey,
        kind: &str,
        job: &str,
        log: &std::path::Path,
    ) -> Result<()> {
        let r =
            Record { job: job.to_string(), name: self.name.clone(), kind: kind.to_string(), log: log.to_path_buf() };
        record::write(store, key, &r)
    }

    /// Submit after `after`, record the job for the key; returns the job id and its log.
    pub fn submit(
        &self,
        store: &Store,
        key: &crate::store::ArtifactKey,
        after: &[String],
    ) -> Result<(String, PathBuf)> {
        let (job, log) = self.sbatch(after)?;
        self.record(store, key, &self.kind, &job, &log)?;
        Ok((job, log))
    }
}

/// Every node not in the store with its job (empty while still waiting to be submitted), and
/// the queue of what is not submitted yet: the first jobs are submitted here, as many as
/// `max_jobs` allows.
pub fn submit_missing(graph: &Graph, settings: &JobSettings, progress: &Progress) -> Result<(Vec<Tracked>, Queue)> {
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

    let mut tracked = Vec::new();
    let mut resources = Vec::new();
    let mut to_submit = Vec::new();
    for (&id, record) in missing.iter().zip(recorded) {
        let node = &graph.nodes[id];
        // Another run may have finished it since the check above.
        if in_store(store, node) {
            continue;
        }
        let alive = record.filter(|r| known.get(&r.job).is_some_and(|s| s.active() && s.name == r.name));
        let kind_resources = settings.config.for_kind(node.kind);
        let mut argv = vec![settings.exe.display().to_string()];
        argv.extend(argvs[id].clone().expect("missing nodes have commands"));
        argv.push(format!("--store={}", store.root().display()));
        let device = kind_resources.device.clone().unwrap_or_else(|| {
            if kind_resources.gpus.is_some() { "cuda".to_string() } else { settings.device.clone() }
        });
        argv.push(format!("--device={device}"));
        if let Some(threads) = settings.threads.or(kind_resources.cpus.map(|c| c as i32)) {
            argv.push(format!("--threads={threads}"));
        }
        let again = JobSpec {
            name: format!("clip-ast-{}-{}", node.kind.as_str(), &node.key.as_str()[..12]),
            pattern: logs.join(format!("{}-{}-%j.log", node.kind.as_str(), node.key.as_str())),
            sbatch_args: kind_resources.sbatch_args(),
            argv,
            kind: node.kind.as_str().to_string(),
            input: None,
        };
        let resubmits_left = kind_resources.resubmits();
        let (job, name, log, submitted) = match alive {
            Some(r) => (r.job, r.name, r.log, false),
            None => {
                to_submit.push(id);
                (String::new(), again.name.clone(), PathBuf::new(), false)
            }
        };
        tracked.push(Tracked { node: id, job, name, log, submitted, again, resubmits_left, attempt: 1 });
        resources.push(kind_resources);
    }
    let index_of: HashMap<NodeId, usize> = tracked.iter().enumerate().map(|(i, t)| (t.node, i)).collect();
    let units: Vec<Vec<usize>> = group::units(graph, &to_submit, settings.config)
        .into_iter()
        .map(|u| u.iter().map(|n| index_of[n]).collect())
        .collect();
    let specs: Vec<JobSpec> = tracked.iter().map(|t| t.again.clone()).collect();
    let exe = settings.exe.display().to_string();
    let grouped = Box::new(move |members: &[usize]| group_spec(&exe, members, &specs, &resources));
    let mut queue = Queue::new(units, settings.config.max_jobs, grouped);
    let submitted = queue.submit_ready(graph, store, &mut tracked, &|_| true, &[], progress);
    if let Err(e) = submitted {
        return Err(cancel_submitted(&tracked, e));
    }
    Ok((tracked, queue))
}

/// Several stages as one job: the first's name and log, `clip-ast stages` reading each stage's
/// command (less the binary) as a JSON line, resources by `group::combined`.
fn group_spec(exe: &str, members: &[usize], specs: &[JobSpec], resources: &[Resources]) -> JobSpec {
    let head = &specs[members[0]];
    let lines: String = members
        .iter()
        .map(|&m| serde_json::to_string(&specs[m].argv[1..]).expect("strings serialise") + "\n")
        .collect();
    let r: Vec<Resources> = members.iter().map(|&m| resources[m].clone()).collect();
    JobSpec {
        name: head.name.clone(),
        pattern: head.pattern.clone(),
        sbatch_args: group::combined(&r).sbatch_args(),
        argv: vec![exe.to_string(), "stages".to_string()],
        kind: head.kind.clone(),
        input: Some(lines),
    }
}

/// After a refusal that is no limit's: cancel every job this run submitted, so none runs on
/// unfollowed, and say so with sbatch's words.
pub fn cancel_submitted(tracked: &[Tracked], error: anyhow::Error) -> anyhow::Error {
    let mut ids: Vec<String> =
        tracked.iter().filter(|t| t.submitted && !t.job.is_empty()).map(|t| t.job.clone()).collect();
    ids.sort();
    ids.dedup();
    let cancelled = match scheduler::scancel(&ids) {
        Ok(()) => format!("cancelled the {} job(s) this run had submitted", ids.len()),
        Err(e) => format!("cancelling the {} job(s) this run had submitted failed too: {e:#}", ids.len()),
    };
    anyhow::anyhow!("{error:#}; {cancelled}")
}

fn in_store(store: &Store, node: &Node) -> bool {
    store.artifact_dir(node.kind, &node.key).is_dir()
}
