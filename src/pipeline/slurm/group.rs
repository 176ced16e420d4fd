//! `[slurm] group = "point"`: cheap stages ride in the batch job of the stage that made their
//! model, so a sweep is not a flood of half-second jobs. A selection joins the job of the
//! stage 1 it ranks, an evaluation the job of its stage 2, when that stage is submitted by the
//! same run and asks for the same kind of place (partition, account, qos, GPUs, device, extra
//! arguments, requeue). Evaluations of bare weights (zero-shot, linear probes) do not join the
//! weights' job, which every later stage waits on; they share jobs of up to [`BATCH`]. The job runs the members'
//! ordinary stage commands one after another in one process (`clip-ast stages`, reading them
//! on stdin), so libtorch starts once; each member still publishes its own artifact, and a
//! member that fails ends the job, naming itself on the log's last line.
//!
//! Resources follow Snakemake's rule for a group (sum over members that run at once, maximum
//! over members that run one after another): the members run one after another, so `cpus` and
//! `mem` are the largest any member asks for and `time` is the sum of theirs.

use std::collections::HashMap;

use super::config::{Grouping, Resources, SlurmConfig, slurm_minutes};
use crate::pipeline::graph::{Graph, NodeId};
use crate::store::ArtifactKind as Kind;

/// Evaluations of bare weights (zero-shot, linear probes) that share one job at most: enough
/// to spread libtorch's start over, few enough that they still run side by side.
pub const BATCH: usize = 8;

/// Whose job `node` may join: the stage that made the model it ranks or evaluates, when
/// nothing else waits on that stage (a stage 1 for its selections, a stage 2 for its
/// evaluations); for an evaluation of bare weights, which every stage after them waits on,
/// the other evaluations of the same weights instead.
enum Ride {
    Alone,
    With(NodeId),
    BesideOthersOf(NodeId),
}

fn ride(graph: &Graph, node: NodeId) -> Ride {
    let n = &graph.nodes[node];
    let inputs = n.inputs();
    let of_kind = |kind: Kind| inputs.iter().copied().find(|&i| graph.nodes[i].kind == kind);
    match n.kind {
        Kind::Selection => of_kind(Kind::Stage1).map_or(Ride::Alone, Ride::With),
        Kind::Eval => match (of_kind(Kind::Stage2), of_kind(Kind::Weights)) {
            (Some(stage2), _) => Ride::With(stage2),
            (None, Some(weights)) => Ride::BesideOthersOf(weights),
            (None, None) => Ride::Alone,
        },
        _ => Ride::Alone,
    }
}

/// Whether two kinds' jobs could be one: the same place, whatever the size.
fn same_place(a: &Resources, b: &Resources) -> bool {
    (&a.partition, &a.account, &a.qos, &a.gpus, &a.device, &a.extra, a.requeues())
        == (&b.partition, &b.account, &b.qos, &b.gpus, &b.device, &b.extra, b.requeues())
}

/// The nodes to submit (`nodes`, inputs first) as jobs: each a list of nodes to run in order,
/// the jobs in an order where a job's inputs' jobs come first.
pub fn units(graph: &Graph, nodes: &[NodeId], config: &SlurmConfig) -> Vec<Vec<NodeId>> {
    if config.group == Grouping::None {
        return nodes.iter().map(|&n| vec![n]).collect();
    }
    let mut units: Vec<Vec<NodeId>> = Vec::new();
    let mut unit_of: HashMap<NodeId, usize> = HashMap::new();
    // Per weights node: the unit its bare evaluations are filling.
    let mut batch_of: HashMap<NodeId, usize> = HashMap::new();
    for &n in nodes {
        let fits = |u: usize| {
            let head = graph.nodes[units[u][0]].kind;
            same_place(&config.for_kind(head), &config.for_kind(graph.nodes[n].kind))
        };
        let joined = match ride(graph, n) {
            Ride::Alone => None,
            Ride::With(anchor) => unit_of.get(&anchor).copied().filter(|&u| fits(u)),
            Ride::BesideOthersOf(weights) => batch_of.get(&weights).copied().filter(|&u| units[u].len() < BATCH),
        };
        let u = joined.unwrap_or_else(|| {
            units.push(Vec::new());
            units.len() - 1
        });
        units[u].push(n);
        unit_of.insert(n, u);
        if let Ride::BesideOthersOf(weights) = ride(graph, n) {
            batch_of.insert(weights, u);
        }
    }
    order(graph, units, &unit_of)
}

/// Units in an order where each comes after the units its members' inputs are in (Kahn's,
/// lowest first). Should the units need each other (no pipeline's graph does), the rest are
/// split into single stages, which node order already sorts.
fn order(graph: &Graph, units: Vec<Vec<NodeId>>, unit_of: &HashMap<NodeId, usize>) -> Vec<Vec<NodeId>> {
    let needs: Vec<Vec<usize>> = units
        .iter()
        .enumerate()
        .map(|(u, members)| {
            let mut deps: Vec<usize> = members
                .iter()
                .flat_map(|&m| graph.nodes[m].inputs().iter().copied())
                .filter_map(|i| unit_of.get(&i).copied())
                .filter(|&d| d != u)
                .collect();
            deps.sort_unstable();
            deps.dedup();
            deps
        })
        .collect();
    let mut placed = vec![false; units.len()];
    let mut sorted: Vec<Vec<NodeId>> = Vec::with_capacity(units.len());
    while placed.iter().any(|p| !p) {
        let Some(next) = (0..units.len()).find(|&u| !placed[u] && needs[u].iter().all(|&d| placed[d])) else {
            let mut rest: Vec<NodeId> =
                (0..units.len()).filter(|&u| !placed[u]).flat_map(|u| units[u].clone()).collect();
            rest.sort_unstable();
            sorted.extend(rest.into_iter().map(|n| vec![n]));
            break;
        };
        placed[next] = true;
        sorted.push(units[next].clone());
    }
    sorted
}

/// One job's request for members that run one after another: the first member's place, the
/// largest `cpus` and `mem`, the sum of the `time`s (unlimited if any member's is).
pub fn combined(members: &[Resources]) -> Resources {
    let mut r = members[0].clone();
    r.cpus = members.iter().filter_map(|m| m.cpus).max();
    r.mem = members.iter().filter_map(|m| m.mem.clone()).max_by_key(|m| megabytes(m).unwrap_or(0));
    let times: Vec<Option<Option<u64>>> =
        members.iter().map(|m| m.time.as_deref().map(|t| slurm_minutes(t).ok().flatten())).collect();
    r.time = if times.iter().all(Option::is_none) {
        None
    } else if times.iter().any(|t| matches!(t, Some(None))) {
        Some("UNLIMITED".to_string())
    } else {
        Some(times.iter().flatten().flatten().sum::<u64>().to_string())
    };
    r
}

/// `sbatch --mem` in megabytes: a number with an optional K, M, G or T (megabytes without).
fn megabytes(mem: &str) -> Option<u64> {
    let (number, unit) = match mem.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => mem.split_at(i),
        None => (mem, "M"),
    };
    let n: u64 = number.parse().ok()?;
    match unit.to_ascii_uppercase().as_str() {
        "K" | "KB" => Some(n.div_ceil(1024)),
        "M" | "MB" => Some(n),
        "G" | "GB" => Some(n * 1024),
        "T" | "TB" => Some(n * 1024 * 1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(cpus: Option<u32>, mem: Option<&str>, time: Option<&str>) -> Resources {
        Resources { cpus, mem: mem.map(Into::into), time: time.map(Into::into), ..Default::default() }
    }

    #[test]
    fn serial_members_take_the_largest_size_and_the_summed_time() {
        let c = combined(&[r(Some(4), Some("16G"), Some("1:00:00")), r(Some(8), Some("2000"), Some("30"))]);
        assert_eq!((c.cpus, c.mem.as_deref(), c.time.as_deref()), (Some(8), Some("16G"), Some("90")));
        let c = combined(&[r(None, None, None), r(None, None, Some("UNLIMITED"))]);
        assert_eq!(c.time.as_deref(), Some("UNLIMITED"));
        assert_eq!(combined(&[r(None, None, None)]), r(None, None, None));
        assert_eq!((megabytes("1T"), megabytes("512"), megabytes("2x")), (Some(1 << 20), Some(512), None));
    }

    #[test]
    fn different_places_never_share_a_job() {
        let gpu = Resources { partition: Some("gpu".into()), gpus: Some("1".into()), ..Default::default() };
        let cpu = Resources { partition: Some("cpu".into()), ..Default::default() };
        assert!(same_place(&gpu, &Resources { cpus: Some(4), ..gpu.clone() }));
        assert!(!same_place(&gpu, &cpu));
    }
}
