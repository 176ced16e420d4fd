//! Ranking every tensor of every transformer block by a score computed from stage 1, and
//! choosing the top K per block: the "adaptive selection" of CLIP-AST.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::adamw::SavedMoments;
use super::diagnostics::{below_eps_fraction, overall_fraction, weak_statistics_warning};
use crate::clip::ClipConfig;
use crate::clip::config::block_tensor_shapes;
use crate::rng::SplitMix64;

/// How a tensor's importance is scored. Higher scores are chosen first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreRule {
    /// mean(1/sqrt(v + eps)) over AdamW's raw second moment: the existing implementation's
    /// rule. It favours tensors with the *smallest* gradients.
    InvSqrtV,
    /// mean(sqrt(v̂)): gradient RMS (bias-corrected), favouring the largest gradients.
    SqrtV,
    /// mean(|m̂| / (sqrt(v̂) + eps)): the size of Adam's normalised update.
    Update,
    /// mean(|θ₁ − θ₀|): how far stage 1 actually moved the tensor.
    WeightDelta,
    /// Seeded random scores: the random-selection baseline.
    Random,
}

/// Which towers' blocks get tensors selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Towers {
    Both,
    Vision,
    Text,
}

/// How many tensors a block gets: K of them, or as many parameters as another selection chose
/// in that block (`random` only; see `select_like.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Match {
    /// K tensors per block (`--k`).
    #[default]
    Tensors,
    /// Per block, the parameter count of the `--like` selection, as closely as any subset of
    /// the block's tensors comes.
    Params,
}

/// What stage 1 left behind that a rule may need.
pub struct Stage1Statistics<'a> {
    pub moments: &'a BTreeMap<String, SavedMoments>,
    pub step: i64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// θ₀ and θ₁ of the tuned tensors, for `weight-delta`.
    pub initial: Option<&'a BTreeMap<String, Tensor>>,
    pub tuned: Option<&'a BTreeMap<String, Tensor>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankedTensor {
    pub name: String,
    pub score: f64,
    /// 1 is the highest score in the block.
    pub rank: usize,
    pub numel: i64,
    pub chosen: bool,
    /// Fraction of the tensor's stage-1 second moment below eps (where the score says little).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below_eps: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockSelection {
    pub block: String,
    pub tensors: Vec<RankedTensor>,
    /// Elements of the block's chosen tensors.
    #[serde(default)]
    pub trainable_parameters: i64,
    /// With `match = params`: the `like` selection's count in this block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_parameters: Option<i64>,
}

impl BlockSelection {
    /// A block whose `chosen` flags are set; counts its chosen parameters.
    pub fn new(block: String, tensors: Vec<RankedTensor>, target_parameters: Option<i64>) -> BlockSelection {
        let trainable_parameters = tensors.iter().filter(|t| t.chosen).map(|t| t.numel).sum();
        BlockSelection { block, tensors, trainable_parameters, target_parameters }
    }
}

/// The content of `selection.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub rule: ScoreRule,
    /// Tensors per block; 0 with `match = params`, where the count follows `like`.
    pub k: usize,
    /// Absent in selections made before it existed, which matched tensors.
    #[serde(default, rename = "match")]
    pub matching: Match,
    /// With `match = params`: the key of the selection whose parameter counts were matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub like: Option<String>,
    pub towers: Towers,
    pub seed: u64,
    pub blocks: Vec<BlockSelection>,
    pub chosen: Vec<String>,
    pub trainable_parameters: i64,
    /// Things the user should know (K clamped, …).
    pub notes: Vec<String>,
    /// Optimizer steps behind the stage-1 statistics, and AdamW's eps of that run.
    #[serde(default)]
    pub stage1_steps: Option<i64>,
    #[serde(default)]
    pub stage1_eps: Option<f64>,
    /// Fraction of the ranked tensors' second-moment entries below eps.
    #[serde(default)]
    pub below_eps: Option<f64>,
    /// Why the ranking may not mean much (too few stage-1 steps, …); `select` prints them.
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelectRequest {
    pub rule: ScoreRule,
    pub k: usize,
    pub towers: Towers,
    pub seed: u64,
}

/// The block prefixes of the requested towers, vision first, in depth order.
pub fn block_prefixes(config: &ClipConfig, towers: Towers) -> Vec<String> {
    let mut out = Vec::new();
    if towers != Towers::Text {
        out.extend((0..config.vision.layers).map(|i| format!("visual.transformer.resblocks.{i}")));
    }
    if towers != Towers::Vision {
        out.extend((0..config.text.layers).map(|i| format!("transformer.resblocks.{i}")));
    }
    out
}

pub fn select(config: &ClipConfig, stats: &Stage1Statistics, request: &SelectRequest) -> Result<Selection> {
    if request.k < 1 {
        bail!("--k {}: at least one tensor per block must be chosen", request.k);
    }
    let per_block = block_tensor_shapes(1, 1).len();
    let mut notes = Vec::new();
    let k = if request.k > per_block {
        notes.push(format!("--k {} exceeds the {per_block} tensors of a block; clamped to {per_block}", request.k));
        per_block
    } else {
        request.k
    };
    let mut random = SplitMix64::new(request.seed);
    let mut blocks = Vec::new();
    let mut chosen = Vec::new();
    let mut trainable_parameters = 0;
    for prefix in block_prefixes(config, request.towers) {
        let mut tensors = Vec::with_capacity(per_block);
        for (field, _) in block_tensor_shapes(1, 1) {
            let name = format!("{prefix}.{field}");
            let score = match request.rule {
                ScoreRule::Random => random.next_f64(),
                rule => score_tensor(rule, &name, stats)?,
            };
            let moments = stats.moments.get(&name);
            let numel = moments.map_or(0, |m| m.exp_avg.numel() as i64);
            let below_eps = moments.map(|m| below_eps_fraction(&m.exp_avg_sq, stats.eps));
            tensors.push(RankedTensor { name, score, rank: 0, numel, chosen: false, below_eps });
        }
        // Stable sort: ties keep the block's state-dict order, so rankings are reproducible.
        let mut order: Vec<usize> = (0..tensors.len()).collect();
        order.sort_by(|&a, &b| tensors[b].score.total_cmp(&tensors[a].score));
        for (rank, &i) in order.iter().enumerate() {
            tensors[i].rank = rank + 1;
            tensors[i].chosen = rank < k;
        }
        let block = BlockSelection::new(prefix, tensors, None);
        chosen.extend(block.tensors.iter().filter(|t| t.chosen).map(|t| t.name.clone()));
        trainable_parameters += block.trainable_parameters;
        blocks.push(block);
    }
    let ranked = blocks.iter().flat_map(|b| &b.tensors);
    let below_eps = overall_fraction(ranked.filter_map(|t| Some((t.numel, t.below_eps?))));
    // Random scores do not read the statistics.
    let warnings = match request.rule {
        ScoreRule::Random => None,
        _ => weak_statistics_warning(stats.step, below_eps, stats.eps),
    };
    Ok(Selection {
        rule: request.rule,
        k,
        matching: Match::Tensors,
        like: None,
        towers: request.towers,
        seed: request.seed,
        blocks,
        chosen,
        trainable_parameters,
        notes,
        stage1_steps: Some(stats.step),
        stage1_eps: Some(stats.eps),
        below_eps: Some(below_eps),
        warnings: warnings.into_iter().collect(),
    })
}

fn score_tensor(rule: ScoreRule, name: &str, stats: &Stage1Statistics) -> Result<f64> {
    let moments = stats.moments.get(name).ok_or_else(|| {
        anyhow::anyhow!("stage-1 statistics have no moments for `{name}`: the stage-1 run tuned another model")
    })?;
    let v = moments.exp_avg_sq.to_kind(Kind::Double);
    let t = stats.step as f64;
    let value = match rule {
        ScoreRule::InvSqrtV => (v + stats.eps).rsqrt().mean(Kind::Double),
        ScoreRule::SqrtV => (v / (1.0 - stats.beta2.powf(t))).sqrt().mean(Kind::Double),
        ScoreRule::Update => {
            let m_hat = moments.exp_avg.to_kind(Kind::Double) / (1.0 - stats.beta1.powf(t));
            let v_hat = v / (1.0 - stats.beta2.powf(t));
            (m_hat.abs() / (v_hat.sqrt() + stats.eps)).mean(Kind::Double)
        }
        ScoreRule::WeightDelta => {
            let (Some(initial), Some(tuned)) = (stats.initial, stats.tuned) else {
                bail!("the weight-delta rule needs the stage-1 checkpoint and the pretrained weights");
            };
            let (Some(a), Some(b)) = (initial.get(name), tuned.get(name)) else {
                bail!("weight-delta: `{name}` is missing from the stage-1 checkpoint or the pretrained weights");
            };
            (b.to_kind(Kind::Double) - a.to_kind(Kind::Double)).abs().mean(Kind::Double)
        }
        ScoreRule::Random => unreachable!("random scores are drawn by the caller"),
    };
    Ok(value.double_value(&[]))
}
