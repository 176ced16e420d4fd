//! What a run will cost, before it runs: `clip-ast run FILE --dry-run` estimates each stage
//! the store lacks from the manifests of comparable stages already in it (their `seconds`),
//! and `--calibrate` first computes one stage of each kind the store lacks (with whatever
//! inputs it needs), so a cold store has something to compare with; those artifacts are the
//! run's own and are reused by it.
//!
//! A stage is compared with stored ones of the same kind on the same device and precision, and
//! where there are such, made from the same weights (so the same model size) and data (dataset,
//! class subset, rendering, test images per class): then its time scales with its work, the
//! training stages' shots × epochs (images × epochs for a fixed class count), an evaluation's
//! number of splits. Without such stages the kind's stages on the same device and precision
//! at large are used, and the line says so (`~`); without any, the kind has no estimate.

use std::collections::HashMap;

use serde_json::Value;

use super::graph::{Graph, Job, Node};
use crate::clip::layers::Precision;
use crate::store::{Artifact, ArtifactKey, ArtifactKind as Kind, Store};

/// What makes two stages comparable, and how much work one is.
#[derive(Clone, Debug, PartialEq)]
struct Profile {
    kind: Kind,
    /// `delta`, `zero-shot`, `probe` for evaluations; `pretrain`, `init` for weights.
    variant: String,
    device: String,
    precision: String,
    weights: Option<ArtifactKey>,
    data: Option<String>,
    work: f64,
}

impl Profile {
    fn same_place(&self, o: &Profile) -> bool {
        (self.kind, &self.variant, &self.device, &self.precision) == (o.kind, &o.variant, &o.device, &o.precision)
    }

    fn same_model_and_data(&self, o: &Profile) -> bool {
        self.same_place(o) && self.weights == o.weights && self.data == o.data
    }
}

fn precision_name(p: Precision) -> String {
    match p {
        Precision::Fp32 => "fp32".into(),
        Precision::Bf16 => "bf16".into(),
    }
}

/// `dataset/subsample/rendering/test_per_class` of a planned split.
fn planned_data(graph: &Graph, split: usize) -> (Option<String>, f64) {
    match &graph.nodes[split].job {
        Job::Split(r) => {
            let tpc = r.test_per_class.map_or("none".to_string(), |n| n.to_string());
            let data = format!("{}/{}/{}/{tpc}", r.dataset, r.subsample.as_str(), r.rendering.as_str());
            (Some(data), r.shots.max(1) as f64)
        }
        _ => (None, 1.0),
    }
}

/// A planned node's profile on `device`.
fn planned(graph: &Graph, id: usize, device: &str) -> Profile {
    let node: &Node = &graph.nodes[id];
    let key = |id: usize| Some(graph.nodes[id].key.clone());
    let mut p = Profile {
        kind: node.kind,
        variant: String::new(),
        device: device.to_string(),
        precision: "fp32".into(),
        weights: None,
        data: None,
        work: 1.0,
    };
    let input = |name: &str| node.input(name).expect("the stage names this input");
    match &node.job {
        Job::Weights(_) => p.variant = "init".into(),
        Job::Pretrain(_) => (p.variant, p.data) = ("pretrain".into(), planned_data(graph, input("split")).0),
        Job::Split(_) => p.data = planned_data(graph, id).0,
        Job::Stage1(s) => {
            let (data, shots) = planned_data(graph, input("split"));
            (p.weights, p.data, p.precision) = (key(input("weights")), data, precision_name(s.settings.precision));
            p.work = shots * s.settings.epochs.max(1) as f64;
        }
        Job::Select(_) => {}
        Job::Stage2(s) => {
            let (data, shots) = planned_data(graph, input("split"));
            (p.weights, p.data, p.precision) = (key(input("weights")), data, precision_name(s.settings.precision));
            p.work = shots * s.settings.epochs.max(1) as f64;
        }
        Job::Eval(e) => {
            p.variant = if e.tuned { "delta" } else { "zero-shot" }.into();
            (p.weights, p.data, p.precision) =
                (key(input("weights")), planned_data(graph, input("split")).0, precision_name(e.settings.precision));
            p.work = 1.0 + f64::from(u8::from(e.new_split));
        }
        Job::Probe(_) => {
            p.variant = "probe".into();
            (p.weights, p.data) = (key(input("weights")), planned_data(graph, input("split")).0);
        }
    }
    p
}

/// A stored artifact's profile and seconds, read off its manifest and its split's.
fn stored(a: &Artifact, splits: &HashMap<ArtifactKey, Value>) -> Option<(Profile, f64)> {
    let m = &a.manifest;
    let split = m.inputs.get("split").and_then(|k| splits.get(k));
    let data = |s: &Value| {
        let tpc = s.get("test_per_class").and_then(Value::as_u64).map_or("none".to_string(), |n| n.to_string());
        let text = |f: &str, d: &str| s.get(f).and_then(Value::as_str).unwrap_or(d).to_string();
        format!("{}/{}/{}/{tpc}", text("dataset", ""), text("subsample", "all"), text("rendering", "original"))
    };
    let shots = split.and_then(|s| s.get("shots")).and_then(Value::as_i64).unwrap_or(1).max(1) as f64;
    let train = m.params.get("train");
    let precision = train
        .and_then(|t| t.get("precision"))
        .or(m.params.get("precision"))
        .and_then(Value::as_str)
        .unwrap_or("fp32")
        .to_string();
    let mut p = Profile {
        kind: a.kind,
        variant: String::new(),
        device: m.device.clone(),
        precision,
        weights: m.inputs.get("weights").cloned(),
        data: split.map(data),
        work: 1.0,
    };
    match a.kind {
        Kind::Weights => {
            p.variant = if m.params.get("pretrain").is_some() { "pretrain" } else { "init" }.into();
            p.precision = "fp32".into();
        }
        Kind::Split => p.data = Some(data(&m.params)),
        Kind::Stage1 => {
            let epochs = train.and_then(|t| t.get("epochs")).and_then(Value::as_f64)?;
            p.work = shots * epochs.max(1.0);
        }
        Kind::Stage2 => {
            let epochs = train.and_then(|t| t.pointer("/schedule/epochs")).and_then(Value::as_f64)?;
            p.work = shots * epochs.max(1.0);
        }
        Kind::Eval => {
            p.variant = match (m.params.get("method").and_then(Value::as_str), m.inputs.contains_key("stage2")) {
                (Some("linear-probe"), _) => "probe",
                (_, true) => "delta",
                _ => "zero-shot",
            }
            .into();
            p.work = m.inputs.keys().filter(|k| k.starts_with("split")).count().max(1) as f64;
        }
        _ => {}
    }
    Some((p, m.seconds))
}

/// Seconds as a function of work: a fixed part (loading the model, encoding the class names)
/// and a part per unit of work, fitted by least squares to stages of different work, else
/// proportional to the work of the one size there is.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Fit {
    fixed: f64,
    per_unit: f64,
}

impl Fit {
    fn of(points: &[(f64, f64)]) -> Option<Fit> {
        let n = points.len() as f64;
        let (sw, ss) = points.iter().fold((0.0, 0.0), |(w, s), p| (w + p.0, s + p.1));
        if points.is_empty() || sw <= 0.0 {
            return None;
        }
        let (mw, ms) = (sw / n, ss / n);
        let var: f64 = points.iter().map(|p| (p.0 - mw).powi(2)).sum();
        let proportional = Fit { fixed: 0.0, per_unit: ss / sw };
        if var <= 1e-12 {
            return Some(proportional);
        }
        let slope = points.iter().map(|p| (p.0 - mw) * (p.1 - ms)).sum::<f64>() / var;
        let fixed = ms - slope * mw;
        Some(if slope < 0.0 {
            Fit { fixed: ms, per_unit: 0.0 } // more work never took longer: a constant
        } else if fixed < 0.0 {
            proportional
        } else {
            Fit { fixed, per_unit: slope }
        })
    }

    fn seconds(&self, work: f64) -> f64 {
        self.fixed + self.per_unit * work
    }
}

/// One kind's estimate.
pub struct KindEstimate {
    pub kind: Kind,
    pub stages: usize,
    /// Stages with an estimate, and how many of those only from other weights or data.
    pub estimated: usize,
    pub loose: usize,
    pub seconds: f64,
}

/// Seconds per node to run (`None`: cached, or nothing comparable), and per kind.
pub struct Estimate {
    pub per_node: Vec<Option<f64>>,
    pub kinds: Vec<KindEstimate>,
    /// Stored stages compared with.
    pub compared: usize,
}

pub fn estimate(graph: &Graph, store: &Store, device: &str) -> anyhow::Result<Estimate> {
    let all = store.list()?;
    let splits: HashMap<ArtifactKey, Value> =
        all.iter().filter(|a| a.kind == Kind::Split).map(|a| (a.key.clone(), a.manifest.params.clone())).collect();
    let known: Vec<(Profile, f64)> = all.iter().filter_map(|a| stored(a, &splits)).collect();
    let mut per_node = vec![None; graph.nodes.len()];
    let mut kinds: Vec<KindEstimate> = Vec::new();
    for (id, node) in graph.nodes.iter().enumerate() {
        if store.artifact_dir(node.kind, &node.key).is_dir() {
            continue;
        }
        let p = planned(graph, id, device);
        let fit = |same: &dyn Fn(&Profile) -> bool| {
            let points: Vec<(f64, f64)> = known.iter().filter(|(k, _)| same(k)).map(|(k, s)| (k.work, *s)).collect();
            Fit::of(&points)
        };
        let exact = fit(&|k| p.same_model_and_data(k));
        let loose = if exact.is_none() { fit(&|k| p.same_place(k)) } else { None };
        let seconds = exact.or(loose).map(|f| f.seconds(p.work));
        per_node[id] = seconds;
        let i = match kinds.iter().position(|k| k.kind == node.kind) {
            Some(i) => i,
            None => {
                kinds.push(KindEstimate { kind: node.kind, stages: 0, estimated: 0, loose: 0, seconds: 0.0 });
                kinds.len() - 1
            }
        };
        let k = &mut kinds[i];
        k.stages += 1;
        if let Some(s) = seconds {
            k.estimated += 1;
            k.seconds += s;
            k.loose += usize::from(exact.is_none());
        }
    }
    kinds.sort_by_key(|k| Kind::ALL.iter().position(|&x| x == k.kind));
    Ok(Estimate { per_node, kinds, compared: known.len() })
}

/// The longest chain of estimated seconds through the nodes to run (`extra` added per node).
pub fn critical_path(graph: &Graph, per_node: &[Option<f64>], extra: f64) -> f64 {
    let mut finish = vec![0.0f64; graph.nodes.len()];
    for (id, node) in graph.nodes.iter().enumerate() {
        let start = node.inputs().iter().map(|&i| finish[i]).fold(0.0, f64::max);
        finish[id] = start + per_node[id].map_or(0.0, |s| s + extra);
    }
    finish.into_iter().fold(0.0, f64::max)
}

/// `95 s`, `12.5 min`, `3.2 h`.
pub fn duration(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.1} s")
    } else if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 7200.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// `--calibrate`: compute, for each kind (and variant), the first stage the store lacks (and the missing
/// stages it needs), each by its ordinary stage command, as a batch job would; returns a line
/// per stage with its time.
pub fn calibrate(graph: &Graph, store: &Store, device: &str, threads: Option<i32>) -> anyhow::Result<Vec<String>> {
    use anyhow::{Context, bail};
    let missing = |id: usize| !store.artifact_dir(graph.nodes[id].kind, &graph.nodes[id].key).is_dir();
    // Per kind and variant (zero-shot, tuned and probe evaluations differ): the first stage
    // and the one with the most work, so the fit has two sizes where the graph has them.
    let mut wanted = vec![false; graph.nodes.len()];
    let mut classes: Vec<((Kind, String), usize, usize)> = Vec::new();
    for id in (0..graph.nodes.len()).filter(|&id| missing(id)) {
        let p = planned(graph, id, device);
        let class = (p.kind, p.variant.clone());
        match classes.iter_mut().find(|c| c.0 == class) {
            Some(c) if planned(graph, c.2, device).work < p.work => c.2 = id,
            Some(_) => {}
            None => classes.push((class, id, id)),
        }
    }
    for (_, first, largest) in &classes {
        wanted[*first] = true;
        wanted[*largest] = true;
    }
    // Inputs come first in node order: one pass backwards marks every missing ancestor.
    for id in (0..graph.nodes.len()).rev() {
        if wanted[id] {
            for &input in graph.nodes[id].inputs() {
                wanted[input] |= missing(input);
            }
        }
    }
    // One process runs them all (`clip-ast stages`), as one process runs a local sweep: only
    // its first stage pays for starting libtorch.
    let ids: Vec<usize> = (0..graph.nodes.len()).filter(|&id| wanted[id]).collect();
    let mut input = String::new();
    for &id in &ids {
        let mut argv = super::slurm::command::command_for(graph, &graph.nodes[id]);
        argv.push(format!("--store={}", store.root().display()));
        argv.push(format!("--device={device}"));
        argv.push("--quiet".into());
        if let Some(t) = threads {
            argv.push(format!("--threads={t}"));
        }
        input += &(serde_json::to_string(&argv)? + "\n");
    }
    let exe = std::env::current_exe().context("cannot find the clip-ast binary to calibrate with")?;
    let mut child = std::process::Command::new(&exe)
        .arg("stages")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    std::io::Write::write_all(&mut child.stdin.take().expect("piped"), input.as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!("--calibrate: computing {} stage(s) failed ({status}); the error is above", ids.len());
    }
    let mut lines = Vec::new();
    for &id in &ids {
        let node = &graph.nodes[id];
        let Some(a) = store.cached(node.kind, &node.key)? else { continue };
        let line = format!(
            "calibrated: {} {} {:.2}s ({})",
            node.kind.as_str(),
            node.key.short(),
            a.manifest.seconds,
            node.label
        );
        eprintln!("{line}");
        lines.push(line);
    }
    Ok(lines)
}

/// Seconds a batch job spends before its stage starts: starting clip-ast and libtorch, which
/// took 1.0-1.7 s per job on the project's single-node Slurm.
pub const JOB_START_SECONDS: f64 = 1.5;

/// `--dry-run`'s estimate lines. `threads`: each stage's CPU threads; `slurm`: the
/// `[slurm]` section when the run's executor is slurm.
pub fn report(
    graph: &Graph,
    store: &Store,
    device: &str,
    threads: usize,
    slurm: Option<&super::slurm::config::SlurmConfig>,
) -> anyhow::Result<Vec<String>> {
    // An unreadable manifest is `audit`'s to report; the counts above stand without an estimate.
    let e = match estimate(graph, store, device) {
        Ok(e) => e,
        Err(err) => {
            return Ok(vec![format!(
                "estimate: none, the store's manifests cannot all be read ({err:#}); see clip-ast audit"
            )]);
        }
    };
    let gpu = device.starts_with("cuda");
    let mut lines = vec![
        format!(
            "estimate on {device} from {} stored stage(s) (their manifests' seconds; `~`: only stages of other weights or data compare; run --calibrate for a cold store):",
            e.compared
        ),
        format!("{:<10} {:>7} {:>10} {:>12}", "stage", "to-run", "each", "total"),
    ];
    for k in &e.kinds {
        let (each, total) = if k.estimated == 0 {
            ("?".to_string(), "no estimate".to_string())
        } else {
            let mark = if k.loose > 0 { "~" } else { "" };
            let missing =
                if k.estimated < k.stages { format!(" (+{} ?)", k.stages - k.estimated) } else { String::new() };
            (
                format!("{mark}{}", duration(k.seconds / k.estimated as f64)),
                format!("{mark}{}{missing}", duration(k.seconds)),
            )
        };
        lines.push(format!("{:<10} {:>7} {:>10} {:>12}", k.kind.as_str(), k.stages, each, total));
    }
    let total: f64 = e.kinds.iter().map(|k| k.seconds).sum::<f64>() + 0.0; // an empty sum is -0
    let unknown: usize = e.kinds.iter().map(|k| k.stages - k.estimated).sum();
    let hours = if gpu {
        format!("{:.2} GPU-hours", total / 3600.0)
    } else {
        format!("{:.2} core-hours at {threads} thread(s) a stage", total * threads as f64 / 3600.0)
    };
    lines.push(format!(
        "{:<10} {:>7} {:>10} {:>12} = {hours}{}",
        "all",
        e.kinds.iter().map(|k| k.stages).sum::<usize>(),
        "",
        duration(total),
        if unknown > 0 { format!(", {unknown} stage(s) without an estimate") } else { String::new() }
    ));
    if let Some(config) = slurm {
        let missing: Vec<usize> = (0..graph.nodes.len())
            .filter(|&id| !store.artifact_dir(graph.nodes[id].kind, &graph.nodes[id].key).is_dir())
            .collect();
        let units = super::slurm::job_units(graph, &missing, config);
        let job_seconds: f64 = units
            .iter()
            .map(|u| JOB_START_SECONDS + u.iter().map(|&n| e.per_node[n].unwrap_or(0.0)).sum::<f64>())
            .sum();
        // A group's members wait for the job: the chain is at least as long as the stages'.
        let chain = critical_path(graph, &e.per_node, JOB_START_SECONDS);
        let wall = match config.max_jobs {
            _ if unknown > 0 => format!("no wall time, {unknown} stage(s) lack an estimate"),
            Some(n) => format!("about {} wall at max_jobs = {n}", duration((job_seconds / n as f64).max(chain))),
            None => format!("at least {} wall (the longest chain; no max_jobs)", duration(chain)),
        };
        lines.push(format!(
            "slurm: {} job(s) for {} stage(s){}, {} of job time with {JOB_START_SECONDS} s start each; {wall}",
            units.len(),
            missing.len(),
            if units.len() < missing.len() { " (grouped)" } else { "" },
            duration(job_seconds)
        ));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_are_affine_across_sizes_and_proportional_for_one() {
        let f = Fit::of(&[(2.0, 3.0), (4.0, 4.0), (8.0, 6.0)]).unwrap();
        assert!((f.fixed - 2.0).abs() < 1e-9 && (f.per_unit - 0.5).abs() < 1e-9, "{f:?}");
        assert_eq!(Fit::of(&[(2.0, 3.0), (2.0, 5.0)]), Some(Fit { fixed: 0.0, per_unit: 2.0 }));
        assert_eq!(Fit::of(&[(1.0, 3.0), (2.0, 1.0)]), Some(Fit { fixed: 2.0, per_unit: 0.0 }));
        assert_eq!(Fit::of(&[]), None);
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(
            (duration(5.2), duration(600.0), duration(9000.0)),
            ("5.2 s".into(), "10.0 min".into(), "2.5 h".into())
        );
    }
}
