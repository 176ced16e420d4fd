//! Which tensors train, and the bookkeeping around them: marking them, snapshotting them,
//! stopping on a non-finite loss.

use anyhow::{Result, bail};
use tch::Tensor;

use crate::clip::config::block_tensor_shapes;
use crate::clip::{ClipConfig, Weights};
use crate::train::select::{Towers, block_prefixes};

/// Every tensor of every transformer block of both towers: what stage 1 tunes.
pub fn all_block_tensors(config: &ClipConfig) -> Vec<String> {
    let fields = block_tensor_shapes(1, 1);
    block_prefixes(config, Towers::Both)
        .into_iter()
        .flat_map(|prefix| fields.iter().map(move |(f, _)| format!("{prefix}.{f}")))
        .collect()
}

/// Turn gradients on for `names` (off for everything else) and return them for the optimizer.
pub fn mark_trainable(weights: &mut Weights, names: &[String]) -> Result<Vec<(String, Tensor)>> {
    for tensor in weights.values_mut() {
        let _ = tensor.set_requires_grad(false);
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let Some(tensor) = weights.get_mut(name) else {
            bail!("tensor `{name}` is selected but the model has no such tensor");
        };
        let _ = tensor.set_requires_grad(true);
        out.push((name.clone(), tensor.shallow_clone()));
    }
    Ok(out)
}

/// Independent copies (not views) of the named tensors, detached.
pub fn snapshot(weights: &Weights, names: &[String]) -> Weights {
    names.iter().map(|n| (n.clone(), weights[n].detach().copy())).collect()
}

/// The stage stops, writing nothing, on a loss that is NaN or infinite; `hint` says what to
/// change (`try a lower --lr`).
pub fn check_finite(stage: &str, loss: f64, epoch: usize, step: usize, hint: &str) -> Result<()> {
    if !loss.is_finite() {
        bail!("{stage}: loss is {loss} at epoch {} step {step}; nothing was written ({hint})", epoch + 1);
    }
    Ok(())
}

/// What a non-finite loss most likely comes from: a learning rate too high, unless the
/// cross-entropy is finite, when the λ-weighted terms overflowed (λ = 1e308).
pub fn loss_hint(ce_is_finite: bool) -> &'static str {
    if ce_is_finite {
        "the cross-entropy is finite but the λ-weighted terms are not: try a lower --lmbd"
    } else {
        LR_HINT
    }
}

pub const LR_HINT: &str = "try a lower --lr";
