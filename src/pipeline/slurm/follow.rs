//! Following submitted jobs until none is left queued or running. The store says what is
//! done (a job's artifact is there); Slurm says what is pending, running or over. A job that
//! ended without its artifact (failed, cancelled, out of time, its node lost) fails its node:
//! the jobs that need it are cancelled (Slurm does so too where kill_invalid_depend is set;
//! `--kill-on-invalid-dep` asks for it per job), the others run on, and the run then ends
//! with the first such failure, its job, its log and the log's last lines.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use super::limit::Queue;
use super::scheduler::{self, JobStatus};
use super::submit::{Tracked, cancel_submitted};
use crate::pipeline::graph::{Graph, NodeId};
use crate::pipeline::progress::Progress;
use crate::store::Store;

/// How often `squeue` is asked: `$CLIP_AST_SLURM_POLL` seconds, default 2 (what `watch`
/// does; a scheduler serves many users).
fn poll_interval() -> Duration {
    let seconds = std::env::var("CLIP_AST_SLURM_POLL").ok().and_then(|s| s.parse::<f64>().ok());
    Duration::from_secs_f64(seconds.filter(|s| s.is_finite() && *s > 0.0).unwrap_or(2.0))
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Waiting,
    Done,
    /// How the job ended: `FAILED, exit code 1:0`, `CANCELLED (DependencyNeverSatisfied)`.
    Failed(String),
}

/// Follow `tracked` until each is done or failed, submitting what `queue` holds back as the
/// limit allows.
pub fn follow(
    store: &Store,
    graph: &Graph,
    tracked: &mut [Tracked],
    queue: &mut Queue,
    progress: &Progress,
) -> Result<()> {
    let mut outcome = vec![Outcome::Waiting; tracked.len()];
    let mut started: Vec<Option<Instant>> = vec![None; tracked.len()];
    let nodes: Vec<NodeId> = tracked.iter().map(|t| t.node).collect();
    let index_of = |node: NodeId| nodes.iter().position(|&n| n == node);
    let mut last_line = String::new();
    // Nodes submitted again: Slurm cancels the jobs that waited on their earlier jobs.
    let mut resubmitted: Vec<NodeId> = Vec::new();
    let interval = poll_interval();
    let mut busy: Vec<String> = Vec::new();
    loop {
        let waiting: Vec<usize> = (0..tracked.len()).filter(|&i| outcome[i] == Outcome::Waiting).collect();
        // Jobs last seen queued or running stay asked about until Slurm says they ended: a job
        // whose stage has published may still be ending, and counts against max_jobs.
        let mut ids: Vec<String> =
            waiting.iter().map(|&i| tracked[i].job.clone()).filter(|j| !j.is_empty()).chain(busy).collect();
        ids.sort();
        ids.dedup();
        let jobs = scheduler::squeue(&ids)?;
        busy = jobs.iter().filter(|(_, s)| s.active()).map(|(id, _)| id.clone()).collect();
        let (mut pending, mut running) = (0, 0);
        let mut newly_failed = Vec::new();
        for &i in &waiting {
            let t = &tracked[i];
            let node = &graph.nodes[t.node];
            let status = jobs.get(&t.job).filter(|s| s.name == t.name).cloned();
            let status = status.as_ref();
            let held_back = t.job.is_empty();
            if store.artifact_dir(node.kind, &node.key).is_dir() {
                outcome[i] = Outcome::Done;
                let seconds = started[i].map_or(0.0, |s| s.elapsed().as_secs_f64());
                progress.finished(node, &node.key, false, seconds);
                continue;
            }
            if held_back {
                continue; // not submitted yet: max_jobs or a limit holds it back
            }
            match status {
                Some(s) if s.active() => {
                    if s.state == "PENDING" {
                        pending += 1;
                    } else {
                        running += 1;
                        started[i].get_or_insert_with(Instant::now);
                    }
                }
                _ => {
                    // Over without the artifact. A job can finish a moment before its
                    // artifact is visible on a network filesystem: look once more.
                    std::thread::sleep(Duration::from_millis(200));
                    if store.artifact_dir(node.kind, &node.key).is_dir() {
                        outcome[i] = Outcome::Done;
                        progress.finished(
                            node,
                            &node.key,
                            false,
                            started[i].map_or(0.0, |s| s.elapsed().as_secs_f64()),
                        );
                        continue;
                    }
                    // A dependent that Slurm cancelled when its input's job stopped for a
                    // resubmission: submitted again, after its inputs' new jobs.
                    if resubmitted.iter().any(|r| node.inputs().contains(r))
                        && status.is_some_and(|s| s.state == "CANCELLED")
                    {
                        let after: Vec<String> = node
                            .inputs()
                            .iter()
                            .filter_map(|&n| index_of(n))
                            .filter(|&j| outcome[j] == Outcome::Waiting)
                            .map(|j| tracked[j].job.clone())
                            .collect();
                        let t = &mut tracked[i];
                        let previous = std::mem::take(&mut t.job);
                        (t.job, t.log) = t.again.submit(store, &node.key, &after)?;
                        resubmitted.push(t.node);
                        progress.note(&format!(
                            "slurm: {} {}: job {previous} was cancelled with its input's job; submitted again as job {} after {}",
                            node.kind.as_str(),
                            &node.key.as_str()[..12],
                            t.job,
                            after.join(", ")
                        ));
                        continue;
                    }
                    if let Some(why) = resubmittable(store, t, node, status) {
                        let t = &mut tracked[i];
                        let previous = std::mem::take(&mut t.job);
                        let (job, log) = t.again.submit(store, &node.key, &[])?;
                        (t.job, t.log) = (job, log);
                        t.attempt += 1;
                        t.resubmits_left -= 1;
                        started[i] = None;
                        resubmitted.push(t.node);
                        progress.note(&format!(
                            "slurm: {} {} ({}): job {previous} {why}; resubmitted as job {} (attempt {}, {} more allowed)",
                            node.kind.as_str(),
                            &node.key.as_str()[..12],
                            node.label,
                            t.job,
                            t.attempt,
                            t.resubmits_left
                        ));
                        continue;
                    }
                    outcome[i] = Outcome::Failed(describe(&t.job, status));
                    newly_failed.push(t.node);
                }
            }
        }
        // Whatever needs a failed node can never run: cancel it rather than leave it pending.
        let mut doomed = Vec::new();
        for &failed in &newly_failed {
            for dependent in dependents(graph, failed) {
                if let Some(i) = index_of(dependent)
                    && outcome[i] == Outcome::Waiting
                {
                    outcome[i] = Outcome::Failed("cancelled: an input failed".into());
                    if !tracked[i].job.is_empty() {
                        doomed.push(tracked[i].job.clone());
                    }
                }
            }
        }
        doomed.sort();
        doomed.dedup();
        scheduler::scancel(&doomed)?;
        let open: Vec<bool> = outcome.iter().map(|o| *o == Outcome::Waiting).collect();
        if let Err(e) = queue.submit_ready(graph, store, tracked, &|i| open[i], &busy, progress) {
            return Err(cancel_submitted(tracked, e));
        }
        let held = queue.waiting();

        let done = outcome.iter().filter(|o| **o == Outcome::Done).count();
        let failed = outcome.iter().filter(|o| matches!(o, Outcome::Failed(_))).count();
        let mut line = format!("slurm: {pending} pending, {running} running, {done} done, {failed} failed");
        if held > 0 {
            line += &format!(", {held} not submitted yet");
        }
        if line != last_line {
            progress.note(&line);
            last_line = line;
        }
        if outcome.iter().all(|o| *o != Outcome::Waiting) {
            break;
        }
        std::thread::sleep(interval);
    }
    if let Some(i) = first_failure(graph, tracked, &outcome) {
        let t = &tracked[i];
        let node = &graph.nodes[t.node];
        let Outcome::Failed(how) = &outcome[i] else { unreachable!("first_failure returns a failure") };
        let others = outcome.iter().filter(|o| matches!(o, Outcome::Failed(_))).count() - 1;
        let tail = log_tail(&t.log, 5);
        return Err(anyhow!(
            "{} {} ({}): Slurm job {} {how}; log {}{}{}; run the same command again to resubmit what is missing",
            node.kind.as_str(),
            &node.key.as_str()[..12],
            node.label,
            t.job,
            t.log.display(),
            match (t.log.exists(), tail.is_empty()) {
                (false, _) => " (not written: the job never started)".to_string(),
                (true, true) => " (empty)".to_string(),
                (true, false) => format!(" ends: {}", tail.join(" | ")),
            },
            if others > 0 {
                format!("; {others} other stage(s) failed or were cancelled with it")
            } else {
                String::new()
            }
        ));
    }
    Ok(())
}

/// With `requeue`: why a job that ended without its artifact is submitted again, if it is. It
/// ran out of time or was preempted (TIMEOUT, PREEMPTED), or stopped itself after saving on
/// the warning signal (exit status 75, see docs/cli.md) or was ended by that signal before its
/// loop could save; and a checkpoint is there to continue from, so the next job makes progress.
fn resubmittable(
    store: &Store,
    t: &Tracked,
    node: &crate::pipeline::graph::Node,
    status: Option<&JobStatus>,
) -> Option<String> {
    let s = status?;
    if t.resubmits_left == 0 {
        return None;
    }
    let code = || scheduler::exit_code(&t.job).unwrap_or_default();
    let how = match s.state.as_str() {
        "TIMEOUT" | "PREEMPTED" => format!("ended {}", s.state),
        "FAILED" => {
            let code = code();
            let interrupted = format!("{}:0", crate::interrupt::EXIT_INTERRUPTED);
            if code != interrupted && !["0:10", "0:15"].contains(&code.as_str()) {
                return None;
            }
            format!("stopped on the signal before its time limit (exit code {code})")
        }
        _ => return None,
    };
    let area = store.checkpoint_area(&node.key);
    let newest = area.files().ok()?.pop()?;
    let at = match crate::store::checkpoint::peek_meta(&newest) {
        Ok(m) => format!("saved at epoch {}/{}", m["epoch"], m["epochs"]),
        Err(_) => "with a checkpoint".to_string(),
    };
    Some(format!("{how}, {at}"))
}

/// `FAILED, exit code 1:0 (NonZeroExitCode)`, `TIMEOUT`, or that Slurm forgot the job.
fn describe(job: &str, status: Option<&JobStatus>) -> String {
    match status {
        None => "ended without its artifact (Slurm no longer knows the job)".to_string(),
        Some(s) => {
            let mut text = format!("ended {}", s.state);
            if s.state != "COMPLETED"
                && let Some(code) = scheduler::exit_code(job)
            {
                text += &format!(", exit code {code}");
            }
            if !s.reason.is_empty() && s.reason != "None" {
                text += &format!(" ({})", s.reason);
            }
            if s.state == "COMPLETED" {
                text += " but its artifact is not in the store: is the store on a filesystem every node sees?";
            }
            text
        }
    }
}

/// The failure to report: a failed node whose inputs did not fail (the cause, not a
/// dependent cancelled because of it), lowest node first.
fn first_failure(graph: &Graph, tracked: &[Tracked], outcome: &[Outcome]) -> Option<usize> {
    let failed =
        |node: NodeId| tracked.iter().zip(outcome).any(|(t, o)| t.node == node && matches!(o, Outcome::Failed(_)));
    let mut failures: Vec<usize> = (0..tracked.len()).filter(|&i| matches!(outcome[i], Outcome::Failed(_))).collect();
    failures.sort_by_key(|&i| tracked[i].node);
    failures
        .iter()
        .copied()
        .find(|&i| !graph.nodes[tracked[i].node].inputs().iter().copied().any(failed))
        .or(failures.first().copied())
}

/// Every node that needs `node`, directly or not.
fn dependents(graph: &Graph, node: NodeId) -> Vec<NodeId> {
    let mut found = vec![false; graph.nodes.len()];
    found[node] = true;
    // Inputs come before the nodes that use them, so one pass in order finds them all.
    for (id, n) in graph.nodes.iter().enumerate().skip(node + 1) {
        if n.inputs().iter().any(|&i| found[i]) {
            found[id] = true;
        }
    }
    found[node] = false;
    (0..found.len()).filter(|&i| found[i]).collect()
}

/// The last `n` non-empty lines of a log (a progress line rewritten with `\r` counts as its
/// last state).
fn log_tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else { return Vec::new() };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<String> = text
        .lines()
        .filter_map(|l| l.rsplit('\r').find(|s| !s.trim().is_empty()).map(|s| s.trim_end().to_string()))
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_last_lines_and_the_last_state_of_rewritten_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "a\n\nb\nepoch 1\repoch 2\nerror: gone\n").unwrap();
        assert_eq!(log_tail(&path, 3), ["b", "epoch 2", "error: gone"]);
        assert_eq!(log_tail(&path, 10), ["a", "b", "epoch 2", "error: gone"]);
        assert!(log_tail(&dir.path().join("none"), 3).is_empty());
    }
}
