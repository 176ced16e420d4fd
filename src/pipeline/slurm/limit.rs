//! Submitting the run's jobs under a limit. `[slurm] max_jobs = N` keeps at most N of the
//! run's jobs queued or running: the rest wait here and go as earlier ones end (the follower
//! calls [`Queue::submit_ready`] after every `squeue`). An `sbatch` the cluster refuses because
//! of a limit of its own (MaxSubmitJobs of a QOS or an association, a full job table, a busy
//! controller) is tried again later, waiting longer each time up to a minute; any other refusal
//! is the caller's to report, after cancelling what the run submitted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::submit::{JobSpec, Tracked};
use crate::pipeline::graph::{Graph, NodeId};
use crate::pipeline::progress::Progress;
use crate::store::Store;

/// `sbatch` said no.
#[derive(Debug)]
pub struct Refused {
    /// The command as run (without the script).
    pub command: String,
    /// The job's name.
    pub name: String,
    /// sbatch's error output on one line.
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} refused {}: {}", self.command, self.name, self.message)
    }
}

impl std::error::Error for Refused {}

impl Refused {
    /// A refusal that goes away by itself once jobs end or the controller catches up.
    pub fn is_limit(&self) -> bool {
        const LIMITS: &[&str] = &[
            "MaxSubmitJob", // QOSMaxSubmitJobPerUserLimit, AssocMaxSubmitJobLimit, …PerAccount…
            "queue full",   // MaxJobCount reached (after sbatch's own retries)
            "Unable to create job record",
            "temporarily unable", // EAGAIN from a busy controller
            "Resource temporarily unavailable",
            "Socket timed out",
            "Unable to contact slurm controller",
        ];
        LIMITS.iter().any(|l| self.message.contains(l))
    }
}

/// Builds the job of several stages (indices into the tracked list).
pub type GroupSpec = Box<dyn Fn(&[usize]) -> JobSpec>;

/// Stages not yet submitted, as jobs (one stage each, or a group), inputs' jobs first.
pub struct Queue {
    /// Each job's members as indices into the tracked list.
    pending: std::collections::VecDeque<Vec<usize>>,
    max_jobs: Option<usize>,
    /// How to submit several members as one job.
    grouped: GroupSpec,
    /// After a limit refusal: not before then.
    retry_at: Option<Instant>,
    backoff: Duration,
    refusals: u32,
}

impl Queue {
    pub fn new(units: Vec<Vec<usize>>, max_jobs: Option<u32>, grouped: GroupSpec) -> Queue {
        Queue {
            pending: units.into(),
            max_jobs: max_jobs.map(|n| n as usize),
            grouped,
            retry_at: None,
            backoff: Duration::ZERO,
            refusals: 0,
        }
    }

    /// Stages still waiting for a submission.
    pub fn waiting(&self) -> usize {
        self.pending.iter().map(Vec::len).sum()
    }

    /// Submit jobs from the front while the limit allows. `open(i)`: tracked `i` may still be
    /// made (neither done nor failed); `busy`: the run's jobs Slurm last listed as queued or
    /// running (a job whose stage has published may still be ending, and counts). Errors are
    /// refusals other than a limit's.
    pub fn submit_ready(
        &mut self,
        graph: &Graph,
        store: &Store,
        tracked: &mut [Tracked],
        open: &dyn Fn(usize) -> bool,
        busy: &[String],
        progress: &Progress,
    ) -> Result<()> {
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return Ok(());
        }
        let index_of: HashMap<NodeId, usize> = tracked.iter().enumerate().map(|(i, t)| (t.node, i)).collect();
        let mut active: Vec<&str> = (0..tracked.len())
            .filter(|&i| open(i) && !tracked[i].job.is_empty())
            .map(|i| tracked[i].job.as_str())
            .chain(busy.iter().map(String::as_str))
            .collect();
        active.sort_unstable();
        active.dedup();
        let mut active = active.len();
        while let Some(unit) = self.pending.front() {
            if self.max_jobs.is_some_and(|max| active >= max) {
                break;
            }
            let members: Vec<usize> = unit
                .iter()
                .copied()
                .filter(|&m| open(m) && tracked[m].job.is_empty())
                .filter(|&m| {
                    !store.artifact_dir(graph.nodes[tracked[m].node].kind, &graph.nodes[tracked[m].node].key).is_dir()
                })
                .collect();
            if members.is_empty() {
                self.pending.pop_front();
                continue;
            }
            let member_nodes: Vec<NodeId> = members.iter().map(|&m| tracked[m].node).collect();
            let mut after = Vec::new();
            for &m in &members {
                for &input in graph.nodes[tracked[m].node].inputs() {
                    if member_nodes.contains(&input) {
                        continue;
                    }
                    if let Some(&j) = index_of.get(&input)
                        && open(j)
                        && !after.contains(&tracked[j].job)
                    {
                        // Inputs' jobs go first; an input still unsubmitted is a bug, not a wait.
                        assert!(!tracked[j].job.is_empty(), "an input's job is submitted before its dependents'");
                        after.push(tracked[j].job.clone());
                    }
                }
            }
            let spec = if members.len() == 1 { tracked[members[0]].again.clone() } else { (self.grouped)(&members) };
            match spec.sbatch(&after) {
                Ok((job, log)) => {
                    for &m in &members {
                        let node = &graph.nodes[tracked[m].node];
                        spec.record(store, &node.key, node.kind.as_str(), &job, &log)?;
                        let t = &mut tracked[m];
                        (t.job, t.log, t.name, t.submitted) = (job.clone(), log.clone(), spec.name.clone(), true);
                    }
                    self.pending.pop_front();
                    active += 1;
                    self.backoff = Duration::ZERO;
                    if self.refusals > 0 {
                        progress.note(&format!("slurm: sbatch accepted again after {} refusal(s)", self.refusals));
                        self.refusals = 0;
                    }
                }
                Err(e) => match e.downcast_ref::<Refused>() {
                    Some(r) if r.is_limit() => {
                        self.backoff = (self.backoff * 2).clamp(Duration::from_secs(2), Duration::from_secs(60));
                        self.retry_at = Some(Instant::now() + self.backoff);
                        self.refusals += 1;
                        progress.note(&format!(
                            "slurm: a limit refused the submission ({}); {} stage(s) wait, trying again in {}s",
                            r.message,
                            self.waiting(),
                            self.backoff.as_secs()
                        ));
                        return Ok(());
                    }
                    _ => {
                        let node = &graph.nodes[tracked[members[0]].node];
                        return Err(e).with_context(|| format!("{} {}", node.kind.as_str(), node.label));
                    }
                },
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_told_from_mistakes_by_what_sbatch_says() {
        let r = |message: &str| Refused { command: "sbatch".into(), name: "j".into(), message: message.into() };
        for limit in [
            "sbatch: error: QOSMaxSubmitJobPerUserLimit sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)",
            "sbatch: error: AssocMaxSubmitJobLimit",
            "sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying.",
            "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)",
        ] {
            assert!(r(limit).is_limit(), "{limit}");
        }
        for mistake in [
            "sbatch: error: Batch job submission failed: Invalid partition name specified",
            "sbatch: error: Batch job submission failed: Requested node configuration is not available",
            "sbatch: error: invalid dependency specification",
            // The same policy error for a job too long for its QOS: it never gets through.
            "sbatch: error: QOSMaxWallDurationPerJobLimit sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)",
        ] {
            assert!(!r(mistake).is_limit(), "{mistake}");
        }
    }
}
