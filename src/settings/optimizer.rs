//! AdamW's settings other than the learning rate, shared by both training stages. The defaults
//! are `AdamWConfig::default()`'s.

use clap::Args;
use serde::{Deserialize, Serialize};

use super::{Key, Range, key};
use crate::train::adamw::AdamWConfig;

#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerSettings {
    /// AdamW weight decay (decoupled), ≥ 0
    #[arg(long, value_parser = super::finite, default_value_t = AdamWConfig::default().weight_decay, allow_hyphen_values = true)]
    pub weight_decay: f64,
    /// Decay of the first moment, in [0, 1)
    #[arg(long, value_parser = super::finite, default_value_t = AdamWConfig::default().beta1, allow_hyphen_values = true)]
    pub beta1: f64,
    /// Decay of the second moment, in [0, 1)
    #[arg(long, value_parser = super::finite, default_value_t = AdamWConfig::default().beta2, allow_hyphen_values = true)]
    pub beta2: f64,
    /// Added to the second moment's root, ≥ 0
    #[arg(long, value_parser = super::finite, default_value_t = AdamWConfig::default().eps, allow_hyphen_values = true)]
    pub eps: f64,
    /// Use AMSGrad's running maximum of the second moment
    #[arg(long, default_value_t = AdamWConfig::default().amsgrad)]
    pub amsgrad: bool,
}

impl OptimizerSettings {
    pub fn keys() -> [Key; 5] {
        [
            key("weight_decay", Range::NonNegative),
            key("beta1", Range::Beta),
            key("beta2", Range::Beta),
            key("eps", Range::NonNegative),
            key("amsgrad", Range::Any),
        ]
    }

    pub fn config(&self, lr: f64) -> AdamWConfig {
        AdamWConfig {
            lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            amsgrad: self.amsgrad,
        }
    }
}

impl From<&AdamWConfig> for OptimizerSettings {
    fn from(c: &AdamWConfig) -> Self {
        OptimizerSettings {
            weight_decay: c.weight_decay,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            amsgrad: c.amsgrad,
        }
    }
}
