//! Running the graph: `jobs` worker threads take nodes whose inputs are done, lowest node first
//! (so whole chains finish early and a killed sweep leaves complete evaluations behind). Each
//! node is a store transaction, so a node another process is computing is waited for and
//! then reused, never computed twice.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use anyhow::{Result, anyhow};

use super::graph::{Graph, Node, NodeId};
use super::progress::Progress;
use crate::stages::StageContext;
use crate::store::{Artifact, ArtifactKind};

struct State {
    /// Inputs not done yet, per node.
    waiting: Vec<usize>,
    ready: BinaryHeap<Reverse<NodeId>>,
    done: Vec<Option<Artifact>>,
    finished: usize,
    failure: Option<anyhow::Error>,
}

/// Every node's artifact, by node id. On the first failure no new node starts; the ones
/// running finish (their artifacts are published) and the failure is returned.
pub fn execute(ctx: &StageContext, graph: &Graph, jobs: usize, progress: &Progress) -> Result<Vec<Artifact>> {
    let n = graph.nodes.len();
    let mut dependents: Vec<Vec<NodeId>> = vec![Vec::new(); n];
    let mut waiting = vec![0; n];
    for (id, node) in graph.nodes.iter().enumerate() {
        for &input in node.inputs() {
            dependents[input].push(id);
            waiting[id] += 1;
        }
    }
    let ready = (0..n).filter(|&id| waiting[id] == 0).map(Reverse).collect();
    let state = Mutex::new(State { waiting, ready, done: vec![None; n], finished: 0, failure: None });
    let wake = Condvar::new();
    // Splits of one dataset save its generated split file and share the hash cache, whose
    // temp file names are unique per process only; one split at a time per process.
    let split_gate = Mutex::new(());
    let worker = || {
        loop {
            let (id, inputs) = {
                let mut st = state.lock().expect("no thread panics holding the state");
                loop {
                    // After SIGTERM/SIGUSR1 the training stages save and stop; start nothing new.
                    if st.failure.is_some() || st.finished == n || crate::interrupt::requested().is_some() {
                        return;
                    }
                    if let Some(Reverse(id)) = st.ready.pop() {
                        let inputs: Vec<Artifact> = graph.nodes[id]
                            .inputs()
                            .iter()
                            .map(|&i| st.done[i].clone().expect("inputs finish first"))
                            .collect();
                        break (id, inputs);
                    }
                    st = wake.wait(st).expect("no thread panics holding the state");
                }
            };
            let node = &graph.nodes[id];
            progress.started(node);
            let clock = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let _gate = (node.kind == ArtifactKind::Split).then(|| split_gate.lock());
                run_node(ctx, node, &inputs)
            }));
            let mut st = state.lock().expect("no thread panics holding the state");
            match outcome {
                Ok(Ok(artifact)) => {
                    if artifact.key != node.key {
                        progress.warn(&format!(
                            "warning: {} {}: the stage made key {}, the runner predicted {}; --dry-run's cached counts are off until the stage's `spec` (src/stages/) builds the same key from input keys as from input artifacts",
                            node.kind.as_str(),
                            node.label,
                            artifact.key.short(),
                            node.key.short()
                        ));
                    }
                    progress.finished(node, &artifact.key, artifact.cached, clock.elapsed().as_secs_f64());
                    st.done[id] = Some(artifact);
                    st.finished += 1;
                    for &next in &dependents[id] {
                        st.waiting[next] -= 1;
                        if st.waiting[next] == 0 {
                            st.ready.push(Reverse(next));
                        }
                    }
                }
                Ok(Err(e)) => {
                    if st.failure.is_none() {
                        st.failure = Some(anyhow!("{} {}: {e:#}", node.kind.as_str(), node.label));
                    }
                }
                Err(panic) => {
                    st.failure = Some(anyhow!("a stage panicked"));
                    drop(st);
                    wake.notify_all();
                    resume_unwind(panic);
                }
            }
            wake.notify_all();
        }
    };
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, n.max(1)) {
            s.spawn(worker);
        }
    });
    let st = state.into_inner().expect("workers are done");
    if let Some(failure) = st.failure {
        return Err(failure);
    }
    if let Some(signal) = crate::interrupt::requested()
        && st.finished < n
    {
        let what = format!("{} of {n} stages done, the training ones under way saved", st.finished);
        return Err(crate::interrupt::Interrupted { signal, what }.into());
    }
    Ok(st.done.into_iter().map(|a| a.expect("every node finished")).collect())
}

/// The node's artifact: from the store if there, else computed by its stage.
fn run_node(ctx: &StageContext, node: &Node, inputs: &[Artifact]) -> Result<Artifact> {
    // Checked as a stage command checks what it reuses: a manifest edited since is an error.
    if let Some(found) = ctx.store.cached(node.kind, &node.key)? {
        return Ok(found);
    }
    node.job.stage().run(ctx, inputs)
}
