//! AdamW over tch tensors with its moments in the open, because CLIP-AST ranks parameters by
//! them (tch's built-in optimizer keeps them out of reach). State is fp32 whatever the
//! compute precision, so small second moments do not underflow as they do in fp16.

use anyhow::{Context, Result, bail};
use tch::{Kind, Tensor};

use crate::clip::Weights;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub amsgrad: bool,
}

impl Default for AdamWConfig {
    /// torch.optim.AdamW's defaults except weight decay, which CLIP-AST sets to 1e-4.
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-4,
            amsgrad: false,
        }
    }
}

struct Moments {
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sq: Option<Tensor>,
}

pub struct AdamW {
    pub config: AdamWConfig,
    params: Vec<(String, Tensor)>,
    moments: Vec<Moments>,
    step: i64,
}

impl AdamW {
    /// `params` must be fp32 leaf tensors with `requires_grad` set.
    pub fn new(params: Vec<(String, Tensor)>, config: AdamWConfig) -> AdamW {
        let moments = params
            .iter()
            .map(|(_, p)| Moments {
                exp_avg: p.zeros_like().detach(),
                exp_avg_sq: p.zeros_like().detach(),
                max_exp_avg_sq: config.amsgrad.then(|| p.zeros_like().detach()),
            })
            .collect();
        AdamW {
            config,
            params,
            moments,
            step: 0,
        }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    pub fn steps_taken(&self) -> i64 {
        self.step
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            let mut grad = p.grad();
            if grad.defined() {
                let _ = grad.zero_();
            }
        }
    }

    /// One update, with torch.optim.AdamW's arithmetic: decoupled decay, then moments, then a
    /// bias-corrected step. A tensor without a gradient counts as a zero gradient, so every
    /// tensor shares one step count (torch skips such tensors; in our stages all have grads).
    pub fn step(&mut self) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let c = &self.config;
        let t = self.step as f64;
        let bias_correction1 = 1.0 - c.beta1.powf(t);
        let bias_correction2_sqrt = (1.0 - c.beta2.powf(t)).sqrt();
        let step_size = c.lr / bias_correction1;
        for ((_, param), m) in self.params.iter().zip(&mut self.moments) {
            let grad = param.grad();
            let grad = if grad.defined() {
                grad
            } else {
                param.zeros_like()
            };
            let mut param = param.shallow_clone();
            let _ = param.g_mul_scalar_(1.0 - c.lr * c.weight_decay);
            let _ = m.exp_avg.lerp_(&grad, 1.0 - c.beta1);
            let _ = m.exp_avg_sq.g_mul_scalar_(c.beta2);
            let _ = m.exp_avg_sq.addcmul_(&(&grad * (1.0 - c.beta2)), &grad);
            let second = match &mut m.max_exp_avg_sq {
                Some(max) => {
                    let dest = max.shallow_clone();
                    let _ = max.maximum_out(&dest, &m.exp_avg_sq);
                    dest
                }
                None => m.exp_avg_sq.shallow_clone(),
            };
            let denom = second.sqrt() / bias_correction2_sqrt + c.eps;
            // value * (m / denom), in torch's order of rounding.
            let _ = param.g_add_(&((&m.exp_avg / &denom) * -step_size));
        }
    }

    /// `{name}.exp_avg`, `{name}.exp_avg_sq` (and `{name}.max_exp_avg_sq` with amsgrad) for every
    /// tensor, plus `step`: what `adamw.safetensors` holds.
    pub fn state(&self) -> Weights {
        let mut out = Weights::new();
        for ((name, _), m) in self.params.iter().zip(&self.moments) {
            out.insert(format!("{name}.exp_avg"), m.exp_avg.shallow_clone());
            out.insert(format!("{name}.exp_avg_sq"), m.exp_avg_sq.shallow_clone());
            if let Some(max) = &m.max_exp_avg_sq {
                out.insert(format!("{name}.max_exp_avg_sq"), max.shallow_clone());
            }
        }
        out.insert("step".into(), Tensor::from(self.step as f32));
        out
    }
}

/// The moments of one tensor as read back from `adamw.safetensors`.
pub struct SavedMoments {
    pub exp_avg: Tensor,
    pub exp_avg_sq: Tensor,
}

/// Split a saved state into per-tensor moments and the step count.
pub fn read_state(
    state: &Weights,
    source: &std::path::Path,
) -> Result<(std::collections::BTreeMap<String, SavedMoments>, i64)> {
    let step = state
        .get("step")
        .with_context(|| {
            format!(
                "{}: no `step` entry; not an AdamW state file",
                source.display()
            )
        })?
        .double_value(&[]) as i64;
    let mut out = std::collections::BTreeMap::new();
    for (key, tensor) in state {
        if let Some(name) = key.strip_suffix(".exp_avg") {
            let sq = state.get(&format!("{name}.exp_avg_sq")).with_context(|| {
                format!(
                    "{}: `{name}` has exp_avg but no exp_avg_sq",
                    source.display()
                )
            })?;
            if sq.size() != tensor.size() {
                bail!(
                    "{}: moments of `{name}` have different shapes",
                    source.display()
                );
            }
            out.insert(
                name.to_string(),
                SavedMoments {
                    exp_avg: tensor.to_kind(Kind::Float),
                    exp_avg_sq: sq.to_kind(Kind::Float),
                },
            );
        }
    }
    if out.is_empty() {
        bail!("{}: holds no exp_avg tensors", source.display());
    }
    Ok((out, step))
}
