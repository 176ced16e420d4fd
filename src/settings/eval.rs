//! `clip-ast eval` and a pipeline's `[eval]`.

use clap::Args;
use serde::{Deserialize, Serialize};

use super::{Key, Range, Settings, key};
use crate::clip::layers::Precision;

#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    /// fp32, or bf16 products from bf16 weight copies
    #[arg(long, value_enum, default_value_t = Precision::default())]
    pub precision: Precision,
}

impl Settings for EvalSettings {
    const SECTION: &'static str = "eval";

    fn keys() -> Vec<Key> {
        vec![key("precision", Range::Any)]
    }
}
