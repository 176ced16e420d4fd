//! `clip-ast select` and a pipeline's `[select]`.

use clap::Args;
use serde::{Deserialize, Serialize};

use super::{Key, Range, Settings, follows, key};
use crate::train::select::{ScoreRule, SelectRequest, Towers};

#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectSettings {
    /// Tensors chosen per block (a block has 12), ≥ 1
    #[arg(long, default_value_t = 6)]
    pub k: usize,
    /// How a tensor's importance is scored; the highest K per block are chosen
    #[arg(long, value_enum, default_value_t = ScoreRule::InvSqrtV)]
    pub score: ScoreRule,
    /// Which towers' blocks get tensors selected
    #[arg(long, value_enum, default_value_t = Towers::Both)]
    pub towers: Towers,
    /// Seed of the random rule [default: the split's seed]
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Settings for SelectSettings {
    const SECTION: &'static str = "select";

    fn keys() -> Vec<Key> {
        vec![
            key("k", Range::AtLeast(1)),
            key("score", Range::Any),
            key("towers", Range::Any),
            follows("seed", Range::AtLeast(0), "data.seed"),
        ]
    }
}

impl SelectSettings {
    /// The settings of `r`, the seed set.
    pub fn from_request(r: &SelectRequest) -> Self {
        SelectSettings { k: r.k, score: r.rule, towers: r.towers, seed: Some(r.seed) }
    }

    /// The selection's request; `split_seed` is the seed when none is set.
    pub fn request(&self, split_seed: u64) -> SelectRequest {
        SelectRequest { rule: self.score, k: self.k, towers: self.towers, seed: self.seed.unwrap_or(split_seed) }
    }
}
