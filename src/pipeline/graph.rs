//! The run graph: each grid point's chain of stages, where stages with the same artifact key
//! (same params, same inputs) are one node. A sweep over stage-2 settings thus has one split,
//! one stage 1 and one selection per data setting, however many stage-2 runs share them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::chain::{Chain, Method, chain};
use super::file::{PipelineFile, PretrainSource, WeightsSource};
use super::grid::Point;
use super::targets;
use super::value::Scalar;
use crate::clip::ClipConfig;
use crate::data::split::SplitRequest;
use crate::data::subsample::Subsample;
use crate::settings::Settings;
use crate::settings::split::SplitSettings;
use crate::stages;
use crate::stages::definition::Stage;
use crate::stages::eval::{Eval, Parts};
use crate::stages::pretrain::Pretrain;
use crate::stages::probe::Probe;
use crate::stages::select::Select;
use crate::stages::stage1::Stage1;
use crate::stages::stage2::Stage2;
use crate::stages::weights::WeightsJob;
use crate::store::{ArtifactKey, ArtifactKind, Store};
use crate::train::select::SelectRequest;

pub type NodeId = usize;

/// What a node runs: one stage's definition ([`Stage`]), its settings resolved.
#[derive(Clone, Debug)]
pub enum Job {
    /// An imported checkpoint or a seeded initialisation.
    Weights(WeightsJob),
    /// A foundation pretrained on a split.
    Pretrain(Box<Pretrain>),
    Split(Box<SplitRequest>),
    Stage1(Box<Stage1>),
    Select(Box<Select>),
    Stage2(Box<Stage2>),
    /// One split, or a base split then a new one; the weights as they are (zero-shot) or
    /// with a stage-2 delta.
    Eval(Eval),
    /// The linear-probe baseline, an eval artifact too.
    Probe(Probe),
}

impl Job {
    /// The stage's definition: what keys, the executor and the Slurm commands use.
    pub fn stage(&self) -> &dyn Stage {
        match self {
            Job::Weights(s) => s,
            Job::Pretrain(s) => s.as_ref(),
            Job::Split(s) => s.as_ref(),
            Job::Stage1(s) => s.as_ref(),
            Job::Select(s) => s.as_ref(),
            Job::Stage2(s) => s.as_ref(),
            Job::Eval(s) => s,
            Job::Probe(s) => s,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub kind: ArtifactKind,
    /// The key the stage will give its artifact.
    pub key: ArtifactKey,
    pub job: Job,
    /// The nodes that make the stage's inputs, in the order its [`Stage::inputs`] names them.
    pub inputs: Vec<NodeId>,
    /// What the node is, for progress lines.
    pub label: String,
}

impl Node {
    pub fn inputs(&self) -> &[NodeId] {
        &self.inputs
    }

    /// The node making input `name` (`selection`), if the stage has it.
    pub fn input(&self, name: &str) -> Option<NodeId> {
        self.job.stage().inputs().iter().position(|&n| n == name).map(|i| self.inputs[i])
    }
}

#[derive(Debug)]
pub struct Graph {
    /// Every input comes before the nodes that use it.
    pub nodes: Vec<Node>,
    pub points: Vec<Point>,
    /// What the weights are, for results.csv.
    pub weights_label: String,
    /// The eval node of each point, in point order.
    pub evaluations: Vec<NodeId>,
    /// With `[choose] test = "chosen"`, each trained point's validation-only eval node: the
    /// choice is made on these, and only the chosen points' `evaluations` (and targets) run.
    pub validations: Vec<Option<NodeId>>,
    /// `[eval] targets`' labels (`DATASET` or `DATASET/RENDERING`), in the file's order (then
    /// those only variants name): every target some point is evaluated on.
    pub targets: Vec<String>,
    /// Per point, its targets (its variant's, or the file's) and its eval node on each, in
    /// target order; none for a linear probe, whose head knows only the source's classes.
    pub target_evaluations: Vec<Vec<(String, NodeId)>>,
    /// How many of each kind a sweep that recomputed every point's whole chain would run.
    pub naive: BTreeMap<ArtifactKind, usize>,
}

/// Per kind: nodes to compute, nodes in the store already, and the naive sweep's count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StageCount {
    pub kind: ArtifactKind,
    pub to_run: usize,
    pub cached: usize,
    pub naive: usize,
}

impl Graph {
    /// A damaged manifest that a run would refuse to reuse fails here too.
    pub fn counts(&self, store: &Store) -> Result<Vec<StageCount>> {
        ArtifactKind::ALL
            .iter()
            .map(|&kind| {
                let nodes: Vec<&Node> = self.nodes.iter().filter(|n| n.kind == kind).collect();
                let mut cached = 0;
                for node in &nodes {
                    cached += usize::from(
                        store
                            .cached(kind, &node.key)
                            .with_context(|| format!("{} {}", kind.as_str(), node.label))?
                            .is_some(),
                    );
                }
                Ok(StageCount {
                    kind,
                    to_run: nodes.len() - cached,
                    cached,
                    naive: self.naive.get(&kind).copied().unwrap_or(0),
                })
            })
            .collect()
    }
}

/// The graph of `points`. Computing split keys reads the dataset's lists and hashes the images
/// each split uses (cached by the hash cache), so dataset mistakes surface here, before any
/// stage runs.
pub fn build(file: &PipelineFile, points: Vec<Point>, hash_cache: Option<PathBuf>) -> Result<Graph> {
    let test_chosen = super::choose::tests_chosen_only(file);
    let mut b = Builder::default();
    let weights_label = match &file.weights {
        WeightsSource::File { path, .. } => {
            path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
        }
        WeightsSource::Init { preset, seed } => format!("init {preset} seed {seed}"),
        WeightsSource::Pretrain(p) => {
            format!("pretrain {} {} shots={} seed={}", p.preset, p.classes.as_str(), p.shots, p.seed)
        }
    };
    let weights = match &file.weights {
        WeightsSource::Pretrain(p) => {
            let request = pretrain_split(file, p, hash_cache.clone())?;
            let split = b.split(&request).with_context(|| {
                format!(
                    "{}: [weights] pretrain on {} under {}",
                    file.at("weights.pretrain"),
                    request.dataset,
                    request.root.display()
                )
            })?;
            let job = Pretrain { preset: p.preset.clone(), settings: p.settings.clone() };
            b.add(Job::Pretrain(Box::new(job)), vec![split], weights_label.clone())?
        }
        WeightsSource::File { path, activation } => {
            let job = WeightsJob::Import { path: path.clone(), activation: *activation };
            b.add(Job::Weights(job), Vec::new(), weights_label.clone())?
        }
        WeightsSource::Init { preset, seed } => {
            let job = WeightsJob::Init { preset: preset.clone(), seed: *seed };
            b.add(Job::Weights(job), Vec::new(), weights_label.clone())?
        }
    };
    let mut evaluations = Vec::with_capacity(points.len());
    let mut validations = Vec::with_capacity(points.len());
    let mut target_evaluations = Vec::with_capacity(points.len());
    let mut naive: BTreeMap<ArtifactKind, usize> = BTreeMap::new();
    for point in &points {
        let c = chain(file, point, hash_cache.clone())?;
        let eval = b.chain(&c, weights).with_context(|| {
            format!("{}: [data] {} under {}", file.at("data.root"), c.split.dataset, c.split.root.display())
        })?;
        evaluations.push(eval);
        validations.push(if test_chosen && c.method.trains() { Some(b.validation(eval)?) } else { None });
        let mut on_targets = Vec::new();
        if c.method != Method::LinearProbe {
            for target in file.targets_of(point) {
                targets::check_coverage(file, target, point)?;
                let request = targets::split_request(target, point, hash_cache.clone())?;
                let split = b.split(&request).with_context(|| {
                    format!(
                        "{}:{}: [eval] targets: {} under {}",
                        file.path.display(),
                        target.line,
                        target.label(),
                        target.root.display()
                    )
                })?;
                let label = target.label();
                on_targets.push((label.clone(), b.target_eval(eval, split, &label)?));
                // A naive sweep splits and evaluates every target once per point.
                *naive.entry(ArtifactKind::Split).or_default() += 1;
                *naive.entry(ArtifactKind::Eval).or_default() += 1;
            }
        }
        target_evaluations.push(on_targets);
        let splits = 1 + usize::from(c.split_new.is_some());
        let trained: &[ArtifactKind] = if c.method.trains() {
            &[ArtifactKind::Stage1, ArtifactKind::Selection, ArtifactKind::Stage2]
        } else {
            &[]
        };
        for (kind, n) in [(ArtifactKind::Weights, 1), (ArtifactKind::Split, splits), (ArtifactKind::Eval, 1)]
            .into_iter()
            .chain(trained.iter().map(|&k| (k, 1)))
        {
            *naive.entry(kind).or_default() += n;
        }
        if c.like.is_some() {
            *naive.entry(ArtifactKind::Selection).or_default() += 1;
        }
    }
    let mut targets: Vec<String> = Vec::new();
    for label in
        file.targets.iter().map(|t| t.label()).chain(target_evaluations.iter().flatten().map(|(t, _)| t.clone()))
    {
        if !targets.contains(&label) {
            targets.push(label);
        }
    }
    Ok(Graph { nodes: b.nodes, points, weights_label, evaluations, validations, targets, target_evaluations, naive })
}

/// The split a `[weights] pretrain` foundation trains on: `[data]`'s dataset, root and
/// split file seed, at the preset's image size.
fn pretrain_split(file: &PipelineFile, p: &PretrainSource, hash_cache: Option<PathBuf>) -> Result<SplitRequest> {
    let first = |k: &str| file.values.get(k).and_then(|v| v.first());
    let text = |k: &str| first(k).map(|v| v.as_str().to_string()).context("[data] keys are checked when read");
    let settings = SplitSettings {
        subsample: p.classes,
        image_size: u32::try_from(ClipConfig::preset(&p.preset)?.vision.image_size).unwrap_or(u32::MAX),
        split_seed: first("data.split_seed").map_or_else(|| SplitSettings::defaults().split_seed, |v| v.as_i64()),
        test_per_class: p.test_per_class,
        rendering: p.rendering,
        pool: p.pool,
    };
    Ok(settings.request(&text("data.dataset")?, &PathBuf::from(text("data.root")?), p.shots, p.seed, hash_cache))
}

#[derive(Default)]
struct Builder {
    nodes: Vec<Node>,
    by_key: HashMap<ArtifactKey, NodeId>,
    /// Split keys by request: the fingerprint behind one reads the dataset, so it is taken once.
    split_keys: HashMap<String, ArtifactKey>,
}

impl Builder {
    /// The node of `job` on `inputs` (nodes in the order its stage names them), added unless
    /// a node with its key is there.
    fn add(&mut self, job: Job, inputs: Vec<NodeId>, label: String) -> Result<NodeId> {
        let keys: Vec<&ArtifactKey> = inputs.iter().map(|&i| &self.nodes[i].key).collect();
        let key = job.stage().spec(&keys)?.key();
        Ok(self.add_keyed(key, job, inputs, label))
    }

    fn add_keyed(&mut self, key: ArtifactKey, job: Job, inputs: Vec<NodeId>, label: String) -> NodeId {
        if let Some(&id) = self.by_key.get(&key) {
            return id;
        }
        let id = self.nodes.len();
        self.by_key.insert(key.clone(), id);
        self.nodes.push(Node { kind: job.stage().kind(), key, job, inputs, label });
        id
    }

    fn split(&mut self, request: &SplitRequest) -> Result<NodeId> {
        // What the key holds but the data fingerprint, which reads the dataset: taken once.
        let identity = stages::split::identity(request)?;
        let key = match self.split_keys.get(&identity) {
            Some(key) => key.clone(),
            None => {
                let key = request.spec(&[])?.key();
                self.split_keys.insert(identity, key.clone());
                key
            }
        };
        let mut label = match request.shots {
            0 => format!("{} test only", request.dataset),
            shots => format!("{} shots={shots} seed={}", request.dataset, request.seed),
        };
        if request.subsample != Subsample::All {
            label += &format!(" {}", request.subsample.as_str());
        }
        if !request.rendering.is_original() {
            label += &format!(" {}", request.rendering.as_str());
        }
        Ok(self.add_keyed(key, Job::Split(Box::new(request.clone())), Vec::new(), label))
    }

    /// Add `c`'s stages; returns its eval node.
    fn chain(&mut self, c: &Chain, weights: NodeId) -> Result<NodeId> {
        let split = self.split(&c.split)?;
        let split_new = c.split_new.as_ref().map(|r| self.split(r)).transpose()?;
        let base_label = self.nodes[split].label.clone();
        let splits: Vec<NodeId> = std::iter::once(split).chain(split_new).collect();
        let eval = |method: &str, tuned: bool| Eval {
            settings: c.eval.clone(),
            method: method.to_string(),
            new_split: split_new.is_some(),
            tuned,
            parts: Parts::TestAndVal,
        };

        match c.method {
            Method::ZeroShot => {
                let inputs = splits.iter().copied().chain([weights]).collect();
                return self.add(Job::Eval(eval("zero-shot", false)), inputs, format!("{base_label} zero-shot"));
            }
            Method::LinearProbe => {
                return self.add(Job::Probe(Probe), vec![split, weights], format!("{base_label} linear-probe"));
            }
            Method::ClipAst | Method::RandomK | Method::RandomParams | Method::FullFt => {}
        }

        let label = format!("{base_label} lr={}", Scalar::Float(c.stage1.settings.lr));
        let stage1 = self.add(Job::Stage1(Box::new(c.stage1.clone())), vec![split, weights], label)?;

        let selection_label = |s: &Select| format!("{base_label} k={} {}", s.settings.k, rule_name(&s.request()));
        // random-params: the selection it matches first (the clip-ast point's own node).
        let like = match &c.like {
            Some(like) => Some(self.add(Job::Select(Box::new(like.clone())), vec![stage1], selection_label(like))?),
            None => None,
        };
        let label = match &c.like {
            Some(like) => format!("{} random-params", selection_label(like)),
            None => selection_label(&c.select),
        };
        let inputs = std::iter::once(stage1).chain(like).collect();
        let selection = self.add(Job::Select(Box::new(c.select.clone())), inputs, label.clone())?;

        let l = c.stage2.params()?.lambdas;
        let lambda = if l.image_l1 == l.text_l1 && l.text_l1 == l.kl {
            format!("λ={}", Scalar::Float(l.image_l1))
        } else {
            let [img, txt, kl] = [l.image_l1, l.text_l1, l.kl].map(Scalar::Float);
            format!("λ={img}/{txt}/{kl}")
        };
        let label = format!("{label} lr={} {lambda}", Scalar::Float(c.stage2.settings.lr));
        let stage2 =
            self.add(Job::Stage2(Box::new(c.stage2.clone())), vec![split, weights, selection], label.clone())?;

        let method = eval_method(&c.select.request(), c.like.is_some());
        let inputs = splits.iter().copied().chain([weights, stage2]).collect();
        self.add(Job::Eval(eval(&method, true)), inputs, label)
    }

    /// The model `eval` (a point's own evaluation) measured, evaluated on the target split
    /// `split`: the same weights, delta, precision and method, so the key is what `clip-ast
    /// eval --split TARGET` gives it.
    fn target_eval(&mut self, eval: NodeId, split: NodeId, target: &str) -> Result<NodeId> {
        let node = &self.nodes[eval];
        let Job::Eval(e) = &node.job else {
            unreachable!("only linear-probe points end in a non-eval node, and they have no targets")
        };
        let job = Eval { new_split: false, ..e.clone() };
        let (weights, stage2) = (node.input("weights").expect("an eval has weights"), node.input("stage2"));
        let inputs = [split, weights].into_iter().chain(stage2).collect();
        let label = format!("{} on {target}", node.label);
        self.add(Job::Eval(job), inputs, label)
    }

    /// The validation-only twin of the eval node `eval` (`[choose] test = "chosen"`).
    fn validation(&mut self, eval: NodeId) -> Result<NodeId> {
        let node = &self.nodes[eval];
        let Job::Eval(e) = &node.job else {
            unreachable!("only trained points get a validation, and they end in an eval node")
        };
        let job = Eval { parts: Parts::ValOnly, ..e.clone() };
        let (inputs, label) = (node.inputs.clone(), format!("{} val only", node.label));
        self.add(Job::Eval(job), inputs, label)
    }
}

/// The rule as the selection manifest records it (`inv-sqrt-v`), which eval's method reads.
pub fn rule_name(select: &SelectRequest) -> String {
    serde_json::to_value(select.rule).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// `stages::eval`'s method name for a stage-2 delta made with `select`'s tensors; `matched`
/// when they match another selection's parameter counts.
fn eval_method(select: &SelectRequest, matched: bool) -> String {
    stages::eval::method_name(&rule_name(select), select.k as u64, matched)
}
