//! A pipeline's `[full-ft]`: the settings of the full fine-tuning baseline that differ from
//! CLIP-AST's stage 2. Full fine-tuning runs `clip-ast stage2` on a selection of every block
//! tensor, with `[stage2]`'s settings except λ, which is this section's.

use clap::Args;
use serde::{Deserialize, Serialize};

use super::{Key, Range, Settings, key};
use crate::train::losses::ConsistencyWeights;

#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FullFtSettings {
    /// λ of all three self-consistency terms, ≥ 0: 0 is plain cross-entropy fine-tuning, the
    /// usual baseline; `[stage2]`'s λ shows full fine-tuning with CLIP-AST's loss
    #[arg(long, value_parser = super::finite, default_value_t = 0.0, allow_hyphen_values = true)]
    pub lambda: f64,
}

impl Settings for FullFtSettings {
    const SECTION: &'static str = "full-ft";

    fn keys() -> Vec<Key> {
        vec![key("lambda", Range::NonNegative)]
    }
}

impl FullFtSettings {
    /// The stage-2 loss weights of full fine-tuning.
    pub fn lambdas(&self) -> ConsistencyWeights {
        ConsistencyWeights { image_l1: self.lambda, text_l1: self.lambda, kl: self.lambda }
    }
}
