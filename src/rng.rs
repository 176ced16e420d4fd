//! A small seeded generator of our own (SplitMix64), so shuffles, crops and random selections
//! are reproducible from a seed alone, independent of libtorch's RNG and of thread timing.

#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// An independent stream for `(seed, a, b)`, e.g. one per (epoch, image): items can then be
    /// drawn in parallel and in any order with the same result.
    pub fn derive(seed: u64, a: u64, b: u64) -> Self {
        let mut mix = SplitMix64(seed ^ 0xA076_1D64_78BD_642F);
        let x = mix.next_u64() ^ a.wrapping_mul(0xE703_7ED1_A0B4_28DB);
        let mut mix = SplitMix64(x);
        SplitMix64(mix.next_u64() ^ b.wrapping_mul(0x8EBC_6AF0_9C88_C6E3))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next_f64()
    }

    /// Uniform integer in `0..=max` (rejection sampling, so unbiased).
    pub fn below_inclusive(&mut self, max: u64) -> u64 {
        let span = max.wrapping_add(1);
        if span == 0 {
            return self.next_u64();
        }
        let zone = u64::MAX - u64::MAX % span;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % span;
            }
        }
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below_inclusive(i as u64) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_integers_cover_the_range_evenly() {
        let mut rng = SplitMix64::new(1);
        let mut counts = [0usize; 7];
        for _ in 0..70_000 {
            counts[rng.below_inclusive(6) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn derived_streams_differ_and_repeat() {
        let a = SplitMix64::derive(3, 0, 1).next_u64();
        assert_eq!(a, SplitMix64::derive(3, 0, 1).next_u64());
        assert_ne!(a, SplitMix64::derive(3, 1, 0).next_u64());
        assert_ne!(a, SplitMix64::derive(4, 0, 1).next_u64());
    }
}
