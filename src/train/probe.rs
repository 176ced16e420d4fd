//! The linear-probe baseline: logistic regression on frozen, unit-normalised image features
//! of the few-shot train images (test-time preprocessing, no augmentation).

use anyhow::Result;
use tch::{Device, Kind, Tensor};

use super::adamw::{AdamW, AdamWConfig};
use super::losses::{cross_entropy, normalize};

pub const STEPS: usize = 300;

/// Train a [D, C] classifier with a bias by full-batch AdamW; deterministic on the CPU.
pub fn fit_linear_probe(features: &Tensor, labels: &Tensor, classes: i64) -> Result<(Tensor, Tensor)> {
    let x = normalize(&features.detach());
    let dim = x.size()[1];
    let weight = Tensor::zeros([dim, classes], (Kind::Float, x.device())).set_requires_grad(true);
    let bias = Tensor::zeros([classes], (Kind::Float, x.device())).set_requires_grad(true);
    let config = AdamWConfig { lr: 1e-2, weight_decay: 1e-3, ..AdamWConfig::default() };
    let mut opt =
        AdamW::new(vec![("weight".into(), weight.shallow_clone()), ("bias".into(), bias.shallow_clone())], config);
    for _ in 0..STEPS {
        // Features are unit length; a fixed temperature of 10 lets the logits separate quickly.
        let logits = (x.matmul(&weight) + &bias) * 10.0;
        let loss = cross_entropy(&logits, labels);
        opt.zero_grad();
        loss.backward();
        opt.step();
    }
    Ok((weight.detach(), bias.detach()))
}

/// Predicted labels for unit-normalised features.
pub fn predict(features: &Tensor, weight: &Tensor, bias: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(logits(features, weight, bias).argmax(-1, false).to_device(Device::Cpu)).unwrap_or_default()
}

/// The probe's class scores for (not yet normalised) image features.
pub fn logits(features: &Tensor, weight: &Tensor, bias: &Tensor) -> Tensor {
    normalize(features).matmul(weight) + bias
}
