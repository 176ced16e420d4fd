//! How much stage 1's AdamW statistics can tell tensors apart. After one step the second moment
//! is (1 − β₂)·g², which is below eps (1e-8) wherever |g| ≲ 3e-3: there `inv-sqrt-v` is ≈ 1/√eps,
//! `update` is ≈ 1 and `weight-delta` ≈ lr everywhere, so the ranking is decided by eps and by
//! the order ties are broken in, not by the gradients. Stage 1 records the fraction of entries
//! below eps per tensor and its step count; `select` repeats them and warns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Fewer optimizer steps than this and the statistics are mostly the last gradient's square.
pub const MIN_INFORMATIVE_STEPS: i64 = 4;

/// What `diagnostics.json` of a stage-1 artifact holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage1Diagnostics {
    /// Optimizer steps run.
    pub steps: i64,
    /// AdamW's eps of the run, the threshold below.
    pub eps: f64,
    /// Fraction of all second-moment entries (every tuned tensor's) below eps.
    pub below_eps: f64,
    /// Per tensor, the fraction of its `exp_avg_sq` entries below eps.
    pub tensors: BTreeMap<String, f64>,
}

/// Fraction of `exp_avg_sq`'s entries below `eps`, compared in the tensor's own type (as
/// PyTorch compares `exp_avg_sq < eps`).
pub fn below_eps_fraction(exp_avg_sq: &Tensor, eps: f64) -> f64 {
    let _guard = tch::no_grad_guard();
    if exp_avg_sq.numel() == 0 {
        return 0.0;
    }
    exp_avg_sq.lt(eps).to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
}

/// The fraction over all entries of tensors given as (entries, fraction below eps).
pub fn overall_fraction(tensors: impl IntoIterator<Item = (i64, f64)>) -> f64 {
    let (below, total) = tensors.into_iter().fold((0.0, 0i64), |(b, t), (n, f)| (b + f * n as f64, t + n));
    if total == 0 { 0.0 } else { below / total as f64 }
}

impl Stage1Diagnostics {
    /// From each tuned tensor's second moment (`name`, `exp_avg_sq`).
    pub fn new<'a>(second_moments: impl IntoIterator<Item = (&'a str, &'a Tensor)>, steps: i64, eps: f64) -> Self {
        let mut tensors = BTreeMap::new();
        let mut sizes = Vec::new();
        for (name, v) in second_moments {
            let fraction = below_eps_fraction(v, eps);
            tensors.insert(name.to_string(), fraction);
            sizes.push((v.numel() as i64, fraction));
        }
        Stage1Diagnostics { steps, eps, below_eps: overall_fraction(sizes), tensors }
    }
}

/// The one-line warning (without `warning: `) when statistics from `steps` optimizer steps, a
/// fraction `below_eps` of them below `eps`, cannot rank tensors by their gradients.
pub fn weak_statistics_warning(steps: i64, below_eps: f64, eps: f64) -> Option<String> {
    let mut reasons = Vec::new();
    if steps < MIN_INFORMATIVE_STEPS {
        reasons.push(format!("come from {steps} optimizer step(s)"));
    }
    if below_eps > 0.5 {
        reasons.push(format!("are {:.0}% below eps ({eps:e})", 100.0 * below_eps));
    }
    if reasons.is_empty() {
        return None;
    }
    Some(format!(
        "stage 1's second moments {}: the scores then reflect eps more than the gradients, and the ranking is decided largely by eps and tie order; rerun stage 1 with --min-steps {} or more (a pipeline's [stage1] min_steps), or a smaller --eps",
        reasons.join(" and "),
        2 * steps.max(MIN_INFORMATIVE_STEPS)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_count_entries_strictly_below_eps() {
        let v = Tensor::from_slice(&[0.0f32, 1e-9, 1e-8, 2e-8]);
        // 1e-8 as f32 is 9.99999994e-9, equal to the entry: not below.
        assert_eq!(below_eps_fraction(&v, 1e-8), 0.5);
        assert_eq!(below_eps_fraction(&Tensor::zeros([0], (Kind::Float, tch::Device::Cpu)), 1e-8), 0.0);
        let w = Tensor::from_slice(&[1.0f32; 12]);
        let d = Stage1Diagnostics::new([("a", &v), ("b", &w)], 3, 1e-8);
        assert_eq!(d.tensors["a"], 0.5);
        assert_eq!(d.tensors["b"], 0.0);
        assert_eq!(d.below_eps, 2.0 / 16.0, "by entries, not the mean of the tensors' fractions");
    }

    #[test]
    fn warns_for_few_steps_or_mostly_below_eps() {
        assert_eq!(weak_statistics_warning(4, 0.5, 1e-8), None);
        let w = weak_statistics_warning(1, 0.2, 1e-8).unwrap();
        assert!(w.starts_with("stage 1's second moments come from 1 optimizer step(s): "), "{w}");
        assert!(w.contains("decided largely by eps and tie order") && w.contains("--min-steps 8"), "{w}");
        let w = weak_statistics_warning(30, 0.9, 1e-8).unwrap();
        assert!(w.starts_with("stage 1's second moments are 90% below eps (1e-8): "), "{w}");
        assert!(w.contains("--min-steps 60 or more"), "more than it had: {w}");
        let w = weak_statistics_warning(2, 0.75, 1e-8).unwrap();
        assert!(w.contains("2 optimizer step(s) and are 75% below eps"), "{w}");
        assert!(!w.contains('\n'));
    }
}
