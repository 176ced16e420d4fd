//! The stage-2 learning-rate schedule: linear warm-up from a tiny rate, then cosine decay to 0.
//! Set per epoch, as the existing implementation (Dassl's schedulers) does. The peak rate is the
//! optimizer's learning rate, which the schedule does not hold a second copy of.

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarmupCosine {
    pub warmup_start_lr: f64,
    pub warmup_epochs: usize,
    pub epochs: usize,
}

impl WarmupCosine {
    /// Rate for 0-based `epoch` with peak `base_lr`. Warm-up climbs linearly from
    /// `warmup_start_lr` towards `base_lr`; the cosine then runs over the remaining epochs,
    /// starting at `base_lr` and ending one epoch short of 0 (the last epoch still learns).
    pub fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        if epoch < self.warmup_epochs {
            let fraction = epoch as f64 / self.warmup_epochs as f64;
            return self.warmup_start_lr + (base_lr - self.warmup_start_lr) * fraction;
        }
        let span = (self.epochs - self.warmup_epochs) as f64;
        let progress = (epoch - self.warmup_epochs) as f64 / span;
        0.5 * base_lr * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = WarmupCosine { warmup_start_lr: 1e-9, warmup_epochs: 3, epochs: 30 };
        assert_eq!(s.lr_at(1e-7, 0), 1e-9);
        assert!((s.lr_at(1e-7, 1) - (1e-9 + (1e-7 - 1e-9) / 3.0)).abs() < 1e-20);
        assert_eq!(s.lr_at(1e-7, 3), 1e-7);
        // Half-way through the cosine part the rate is half the base.
        let mid = WarmupCosine { warmup_start_lr: 0.0, warmup_epochs: 2, epochs: 12 };
        assert!((mid.lr_at(1.0, 7) - 0.5).abs() < 1e-12);
        assert!(s.lr_at(1e-7, 29) > 0.0 && s.lr_at(1e-7, 29) < 1e-9);
    }
}
