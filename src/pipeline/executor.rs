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

use super::graph::{Graph, Job, Node, NodeId};
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
    /// Nodes under way.
    running: usize,
    /// A node that takes every core is under way: nothing else starts.
    alone: bool,
}

/// The nodes `wanted` and what they need, given the artifacts `done` already (by node id):
/// returns `done` with those added. On the first failure no new node starts; the ones running
/// finish (their artifacts are published) and the failure is returned.
pub fn execute_for(
    ctx: &StageContext,
    graph: &Graph,
    wanted: &[NodeId],
    done: Vec<Option<Artifact>>,
    jobs: usize,
    progress: &Progress,
) -> Result<Vec<Option<Artifact>>> {
    let needed = needed(graph, wanted, &done);
    let n = needed.iter().filter(|&&x| x).count();
    progress.add_total(n);
    let mut dependents: Vec<Vec<NodeId>> = vec![Vec::new(); graph.nodes.len()];
    let mut waiting = vec![0; graph.nodes.len()];
    for (id, node) in graph.nodes.iter().enumerate().filter(|(id, _)| needed[*id]) {
        for &input in node.inputs().iter().filter(|&&i| done[i].is_none()) {
            dependents[input].push(id);
            waiting[id] += 1;
        }
    }
    let ready = (0..graph.nodes.len()).filter(|&id| needed[id] && waiting[id] == 0).map(Reverse).collect();
    let state = Mutex::new(State { waiting, ready, done, finished: 0, failure: None, running: 0, alone: false });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all_threads = (jobs * ctx.threads).min(cores).max(ctx.threads);
    let wake = Condvar::new();
    // Splits of one dataset save its generated split file and share the hash cache, whose
    // temp file names are unique per process only; one split at a time per process.
    let split_gate = Mutex::new(());
    let worker = || {
        loop {
            let (id, inputs, alone) = {
                let mut st = state.lock().expect("no thread panics holding the state");
                loop {
                    // After SIGTERM/SIGUSR1 the training stages save and stop; start nothing new.
                    if st.failure.is_some() || st.finished == n || crate::interrupt::requested().is_some() {
                        return;
                    }
                    let next = st.ready.peek().map(|&Reverse(id)| id).filter(|_| !st.alone);
                    if let Some(id) = next {
                        let alone = all_threads > ctx.threads && takes_every_core(&graph.nodes[id]);
                        // A node that takes every core waits until the others are done.
                        if !alone || st.running == 0 {
                            st.ready.pop();
                            st.running += 1;
                            st.alone = alone;
                            let inputs: Vec<Artifact> = graph.nodes[id]
                                .inputs()
                                .iter()
                                .map(|&i| st.done[i].clone().expect("inputs finish first"))
                                .collect();
                            break (id, inputs, alone);
                        }
                    }
                    st = wake.wait(st).expect("no thread panics holding the state");
                }
            };
            let node = &graph.nodes[id];
            progress.started(node);
            let clock = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let _gate = (node.kind == ArtifactKind::Split).then(|| split_gate.lock());
                if alone {
                    with_threads(ctx, all_threads, |ctx| run_node(ctx, node, &inputs))
                } else {
                    run_node(ctx, node, &inputs)
                }
            }));
            let mut st = state.lock().expect("no thread panics holding the state");
            st.running -= 1;
            st.alone = false;
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
    Ok(st.done)
}

/// Pretraining a foundation: every other stage waits for it, so it runs alone on every core
/// the run has (`--jobs` × `--threads`) rather than on one while the others idle. Its result
/// depends on that thread count (recorded in its manifest, never in its key), which is the same
/// whenever the same command runs it.
fn takes_every_core(node: &Node) -> bool {
    matches!(node.job, Job::Pretrain(_))
}

/// `run` with libtorch on `threads` threads (recorded in the stage's manifest), then back.
fn with_threads<T>(ctx: &StageContext, threads: usize, run: impl FnOnce(&StageContext) -> T) -> T {
    let wide = StageContext { store: ctx.store.clone(), device: ctx.device, threads, quiet: ctx.quiet, rerun: None };
    tch::set_num_threads(threads as i32);
    let out = run(&wide);
    tch::set_num_threads(ctx.threads as i32);
    out
}

/// Per node: whether it must run for `wanted`, its inputs first, those `done` left out.
fn needed(graph: &Graph, wanted: &[NodeId], done: &[Option<Artifact>]) -> Vec<bool> {
    let mut needed = vec![false; graph.nodes.len()];
    let mut stack: Vec<NodeId> = wanted.to_vec();
    while let Some(id) = stack.pop() {
        if needed[id] || done[id].is_some() {
            continue;
        }
        needed[id] = true;
        stack.extend(graph.nodes[id].inputs());
    }
    needed
}

/// The node's artifact: from the store if there, else computed by its stage.
fn run_node(ctx: &StageContext, node: &Node, inputs: &[Artifact]) -> Result<Artifact> {
    // Checked as a stage command checks what it reuses: a manifest edited since is an error.
    if let Some(found) = ctx.store.cached(node.kind, &node.key)? {
        return Ok(found);
    }
    node.job.stage().run(ctx, inputs)
}
