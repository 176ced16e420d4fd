//! The run graph: each grid point's chain of stages, where stages with the same artifact key
//! (same params, same inputs) are one node. A sweep over stage-2 settings thus has one split,
//! one stage 1 and one selection per data setting, however many stage-2 runs share them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::chain::{Chain, Method, chain};
use super::file::{PipelineFile, PretrainSource, WeightsSource};
use super::grid::Point;
use super::keys;
use super::targets;
use super::value::Scalar;
use crate::clip::ClipConfig;
use crate::clip::layers::Precision;
use crate::data::split::SplitRequest;
use crate::data::subsample::Subsample;
use crate::settings::Settings;
use crate::settings::split::SplitSettings;
use crate::stages::eval::Parts;
use crate::stages::stage2::Init;
use crate::store::{ArtifactKey, ArtifactKind, Store};
use crate::train::pretrain::PretrainParams;
use crate::train::select::SelectRequest;
use crate::train::stage1::Stage1Params;
use crate::train::stage2::Stage2Params;

pub type NodeId = usize;

/// What a node runs, with its inputs as the nodes that produce them.
#[derive(Clone, Debug)]
pub enum Job {
    /// An imported checkpoint or a seeded initialisation.
    Weights(WeightsSource),
    /// A foundation pretrained on a split.
    Pretrain {
        split: NodeId,
        preset: String,
        init_seed: i64,
        params: Box<PretrainParams>,
    },
    Split(Box<SplitRequest>),
    Stage1 {
        split: NodeId,
        weights: NodeId,
        params: Box<Stage1Params>,
    },
    Select {
        stage1: NodeId,
        settings: SelectRequest,
        /// `--match params --like`: the selection whose parameter counts this one matches.
        like: Option<NodeId>,
    },
    Stage2 {
        split: NodeId,
        weights: NodeId,
        selection: NodeId,
        init: Init,
        params: Box<Stage2Params>,
    },
    /// One split, or a base split then a new one; the weights as they are (zero-shot) or
    /// with a stage-2 delta.
    Eval {
        splits: Vec<NodeId>,
        weights: NodeId,
        stage2: Option<NodeId>,
        precision: Precision,
        parts: Parts,
    },
    /// The linear-probe baseline, an eval artifact too.
    Probe {
        split: NodeId,
        weights: NodeId,
    },
}

impl Job {
    pub fn inputs(&self) -> Vec<NodeId> {
        match self {
            Job::Weights(_) | Job::Split(_) => Vec::new(),
            Job::Pretrain { split, .. } => vec![*split],
            Job::Stage1 { split, weights, .. } => vec![*split, *weights],
            Job::Select { stage1, like, .. } => std::iter::once(*stage1).chain(*like).collect(),
            Job::Stage2 { split, weights, selection, .. } => vec![*split, *weights, *selection],
            Job::Eval { splits, weights, stage2, .. } => {
                splits.iter().copied().chain([*weights]).chain(*stage2).collect()
            }
            Job::Probe { split, weights } => vec![*split, *weights],
        }
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub kind: ArtifactKind,
    /// The key the stage will give its artifact.
    pub key: ArtifactKey,
    pub job: Job,
    /// What the node is, for progress lines.
    pub label: String,
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
            let key = keys::pretrain(b.key(split), &p.preset, p.init_seed, &p.params);
            let job = Job::Pretrain {
                split,
                preset: p.preset.clone(),
                init_seed: p.init_seed,
                params: Box::new(p.params.clone()),
            };
            b.add(ArtifactKind::Weights, key, job, weights_label.clone())
        }
        source => {
            b.add(ArtifactKind::Weights, keys::weights(source)?, Job::Weights(source.clone()), weights_label.clone())
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
        validations.push((test_chosen && c.method.trains()).then(|| b.validation(&c, eval)));
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
                on_targets.push((label.clone(), b.target_eval(&c, eval, split, &label)));
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
    Ok(SplitRequest {
        dataset: text("data.dataset")?,
        root: PathBuf::from(text("data.root")?),
        shots: p.shots,
        seed: p.seed,
        subsample: p.classes,
        image_size: u32::try_from(ClipConfig::preset(&p.preset)?.vision.image_size).unwrap_or(u32::MAX),
        split_seed: first("data.split_seed").map_or_else(|| SplitSettings::defaults().split_seed, |v| v.as_i64()),
        test_per_class: p.test_per_class,
        rendering: p.rendering,
        pool: p.pool,
        hash_cache,
        save_generated_split: true,
        quiet: true,
    })
}

#[derive(Default)]
struct Builder {
    nodes: Vec<Node>,
    by_key: HashMap<ArtifactKey, NodeId>,
    /// Split keys by request: the fingerprint behind one reads the dataset, so it is taken once.
    split_keys: HashMap<String, ArtifactKey>,
}

impl Builder {
    fn add(&mut self, kind: ArtifactKind, key: ArtifactKey, job: Job, label: String) -> NodeId {
        if let Some(&id) = self.by_key.get(&key) {
            return id;
        }
        let id = self.nodes.len();
        self.by_key.insert(key.clone(), id);
        self.nodes.push(Node { kind, key, job, label });
        id
    }

    fn key(&self, id: NodeId) -> &ArtifactKey {
        &self.nodes[id].key
    }

    fn split(&mut self, request: &SplitRequest) -> Result<NodeId> {
        // Every setting of the request that enters its key (a rendering or pool that did not
        // would make two splits one).
        let identity = format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{:?}\t{}\t{}\t{}",
            request.dataset,
            request.shots,
            request.seed,
            request.subsample.as_str(),
            request.image_size,
            request.split_seed,
            request.test_per_class,
            request.rendering.as_str(),
            request.pool.as_str(),
            request.root.display()
        );
        let key = match self.split_keys.get(&identity) {
            Some(key) => key.clone(),
            None => {
                let key = keys::split(request)?;
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
        Ok(self.add(ArtifactKind::Split, key, Job::Split(Box::new(request.clone())), label))
    }

    /// Add `c`'s stages; returns its eval node.
    fn chain(&mut self, c: &Chain, weights: NodeId) -> Result<NodeId> {
        let split = self.split(&c.split)?;
        let split_new = c.split_new.as_ref().map(|r| self.split(r)).transpose()?;
        let base_label = self.nodes[split].label.clone();
        let splits: Vec<NodeId> = std::iter::once(split).chain(split_new).collect();
        let split_keys: Vec<ArtifactKey> = splits.iter().map(|&s| self.key(s).clone()).collect();
        let split_keys: Vec<&ArtifactKey> = split_keys.iter().collect();

        match c.method {
            Method::ZeroShot => {
                let key =
                    keys::eval(&split_keys, self.key(weights), None, c.eval_precision, "zero-shot", Parts::TestAndVal);
                let job =
                    Job::Eval { splits, weights, stage2: None, precision: c.eval_precision, parts: Parts::TestAndVal };
                return Ok(self.add(ArtifactKind::Eval, key, job, format!("{base_label} zero-shot")));
            }
            Method::LinearProbe => {
                let key = keys::probe(self.key(split), self.key(weights));
                let job = Job::Probe { split, weights };
                return Ok(self.add(ArtifactKind::Eval, key, job, format!("{base_label} linear-probe")));
            }
            Method::ClipAst | Method::RandomK | Method::RandomParams | Method::FullFt => {}
        }

        let key = keys::stage1(self.key(split), self.key(weights), &c.stage1);
        let label = format!("{base_label} lr={}", Scalar::Float(c.stage1.optimizer.lr));
        let stage1 = self.add(
            ArtifactKind::Stage1,
            key,
            Job::Stage1 { split, weights, params: Box::new(c.stage1.clone()) },
            label,
        );

        let selection_label = |s: &SelectRequest| format!("{base_label} k={} {}", s.k, keys::rule_name(s));
        // random-params: the selection it matches first (the clip-ast point's own node).
        let like = c.like.map(|like| {
            let key = keys::selection(self.key(stage1), &like, None);
            let job = Job::Select { stage1, settings: like, like: None };
            self.add(ArtifactKind::Selection, key, job, selection_label(&like))
        });
        let key = keys::selection(self.key(stage1), &c.select, like.map(|l| self.key(l)));
        let label = match c.like {
            Some(like) => format!("{} random-params", selection_label(&like)),
            None => selection_label(&c.select),
        };
        let selection =
            self.add(ArtifactKind::Selection, key, Job::Select { stage1, settings: c.select, like }, label.clone());

        let key = keys::stage2(self.key(split), self.key(weights), self.key(selection), c.init, &c.stage2);
        let l = &c.stage2.lambdas;
        let lambda = if l.image_l1 == l.text_l1 && l.text_l1 == l.kl {
            format!("λ={}", Scalar::Float(l.image_l1))
        } else {
            let [img, txt, kl] = [l.image_l1, l.text_l1, l.kl].map(Scalar::Float);
            format!("λ={img}/{txt}/{kl}")
        };
        let label = format!("{label} lr={} {lambda}", Scalar::Float(c.stage2.optimizer.lr));
        let job = Job::Stage2 { split, weights, selection, init: c.init, params: Box::new(c.stage2.clone()) };
        let stage2 = self.add(ArtifactKind::Stage2, key, job, label.clone());

        let method = keys::eval_method(&c.select, c.like.is_some());
        let key = keys::eval(
            &split_keys,
            self.key(weights),
            Some(self.key(stage2)),
            c.eval_precision,
            &method,
            Parts::TestAndVal,
        );
        let job =
            Job::Eval { splits, weights, stage2: Some(stage2), precision: c.eval_precision, parts: Parts::TestAndVal };
        Ok(self.add(ArtifactKind::Eval, key, job, label))
    }

    /// The validation-only twin of the eval node `eval` (`[choose] test = "chosen"`).
    fn validation(&mut self, c: &Chain, eval: NodeId) -> NodeId {
        let Job::Eval { splits, weights, stage2, precision, .. } = self.nodes[eval].job.clone() else {
            unreachable!("only trained points get a validation, and they end in an eval node")
        };
        let split_keys: Vec<ArtifactKey> = splits.iter().map(|&s| self.key(s).clone()).collect();
        let split_keys: Vec<&ArtifactKey> = split_keys.iter().collect();
        let method = keys::eval_method(&c.select, c.like.is_some());
        let key =
            keys::eval(&split_keys, self.key(weights), stage2.map(|s| self.key(s)), precision, &method, Parts::ValOnly);
        let label = format!("{} val only", self.nodes[eval].label);
        let job = Job::Eval { splits, weights, stage2, precision, parts: Parts::ValOnly };
        self.add(ArtifactKind::Eval, key, job, label)
    }

    /// The model `eval` (a point's own evaluation) measured, evaluated on the target split
    /// `split`: the same weights, delta, precision and method, so the key is what `clip-ast
    /// eval --split TARGET` gives it.
    fn target_eval(&mut self, c: &Chain, eval: NodeId, split: NodeId, target: &str) -> NodeId {
        let Job::Eval { weights, stage2, precision, .. } = self.nodes[eval].job.clone() else {
            unreachable!("only linear-probe points end in a non-eval node, and they have no targets")
        };
        let method = match stage2 {
            None => "zero-shot".to_string(),
            Some(_) => keys::eval_method(&c.select, c.like.is_some()),
        };
        let key = keys::eval(
            &[self.key(split)],
            self.key(weights),
            stage2.map(|s| self.key(s)),
            precision,
            &method,
            Parts::TestAndVal,
        );
        let label = format!("{} on {target}", self.nodes[eval].label);
        let job = Job::Eval { splits: vec![split], weights, stage2, precision, parts: Parts::TestAndVal };
        self.add(ArtifactKind::Eval, key, job, label)
    }
}
