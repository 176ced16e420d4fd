//! CPython's `random` module (3.x, `random.Random` on the Mersenne Twister), ported so that a
//! seed gives the same draws as Python: Dassl's few-shot splits are defined by what
//! `random.seed(S)` followed by `random.sample` returns, so anything short of bit-identity
//! would hand users different training images than CoOp did.
//!
//! Covered: `seed(int)`, `getrandbits(k)` for k <= 64, `_randbelow` (rejection sampling on
//! `getrandbits`), `random()`, `shuffle`, `sample` (both of its algorithms) and unweighted
//! `choices`.

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// The state of one `random.Random` instance.
#[derive(Clone)]
pub struct PyRandom {
    mt: [u32; N],
    index: usize,
}

impl PyRandom {
    /// `random.Random(seed)` for an int seed; CPython seeds from `abs(seed)`, so `-5` and `5`
    /// give the same stream.
    pub fn new(seed: i64) -> Self {
        let mut rng = PyRandom { mt: [0; N], index: N };
        rng.seed(seed);
        rng
    }

    /// `random.seed(n)`: `init_by_array` over the 32-bit words of `abs(n)`, least significant
    /// first; 0 becomes the one-word key `[0]`.
    pub fn seed(&mut self, seed: i64) {
        let mut n = seed.unsigned_abs();
        let mut key = Vec::with_capacity(2);
        loop {
            key.push(n as u32);
            n >>= 32;
            if n == 0 {
                break;
            }
        }
        self.init_by_array(&key);
    }

    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..N {
            let prev = self.mt[i - 1];
            self.mt[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        self.index = N;
    }

    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19_650_218);
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let prev = self.mt[i - 1];
            self.mt[i] = (self.mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                self.mt[0] = self.mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = self.mt[i - 1];
            self.mt[i] = (self.mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                self.mt[0] = self.mt[N - 1];
                i = 1;
            }
        }
        // Guarantees a non-zero state whatever the key.
        self.mt[0] = 0x8000_0000;
    }

    fn twist(&mut self) {
        let mag01 = |y: u32| if y & 1 == 0 { 0 } else { MATRIX_A };
        for kk in 0..N {
            let y = (self.mt[kk] & UPPER_MASK) | (self.mt[(kk + 1) % N] & LOWER_MASK);
            self.mt[kk] = self.mt[(kk + M) % N] ^ (y >> 1) ^ mag01(y);
        }
        self.index = 0;
    }

    /// One tempered 32-bit output (`genrand_uint32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `getrandbits(k)` for `k <= 64`: whole 32-bit words, least significant first, the last
    /// one cut down to its top bits.
    pub fn getrandbits(&mut self, k: u32) -> u64 {
        assert!(k <= 64, "getrandbits supports up to 64 bits, asked for {k}");
        if k == 0 {
            return 0;
        }
        let mut out = 0u64;
        let mut left = k;
        let mut shift = 0;
        while left > 0 {
            let mut r = self.next_u32();
            if left < 32 {
                r >>= 32 - left;
            }
            out |= u64::from(r) << shift;
            shift += 32;
            left = left.saturating_sub(32);
        }
        out
    }

    /// `_randbelow(n)`: draw `n.bit_length()` bits until the value is below `n`.
    pub fn randbelow(&mut self, n: usize) -> usize {
        assert!(n > 0, "randbelow(0)");
        let n = n as u64;
        let k = 64 - n.leading_zeros();
        loop {
            let r = self.getrandbits(k);
            if r < n {
                return r as usize;
            }
        }
    }

    /// `random()`: 53 random bits as a float in [0, 1).
    pub fn random(&mut self) -> f64 {
        let a = self.next_u32() >> 5;
        let b = self.next_u32() >> 6;
        (f64::from(a) * 67_108_864.0 + f64::from(b)) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `shuffle(x)` in place (Fisher–Yates from the end).
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.randbelow(i + 1);
            x.swap(i, j);
        }
    }

    /// `sample(population, k)`: indices into the population, in selection order.
    ///
    /// CPython switches algorithm on the population size: a partial Fisher–Yates over a copy
    /// when `n <= setsize`, else rejection of already-drawn indices. The two consume the
    /// generator differently, so the switch point has to be CPython's exactly.
    pub fn sample_indices(&mut self, n: usize, k: usize) -> Vec<usize> {
        assert!(k <= n, "sample larger than population ({k} > {n})");
        let mut result = Vec::with_capacity(k);
        if n <= sample_setsize(k) {
            let mut pool: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = self.randbelow(n - i);
                result.push(pool[j]);
                pool[j] = pool[n - i - 1];
            }
        } else {
            let mut selected = std::collections::HashSet::with_capacity(k);
            for _ in 0..k {
                let mut j = self.randbelow(n);
                while !selected.insert(j) {
                    j = self.randbelow(n);
                }
                result.push(j);
            }
        }
        result
    }

    /// `sample(population, k)` returning the chosen elements.
    pub fn sample<T: Clone>(&mut self, population: &[T], k: usize) -> Vec<T> {
        self.sample_indices(population.len(), k).into_iter().map(|i| population[i].clone()).collect()
    }

    /// Unweighted `choices(population, k=k)`: `floor(random() * n)`, with replacement.
    pub fn choices<T: Clone>(&mut self, population: &[T], k: usize) -> Vec<T> {
        let n = population.len() as f64;
        (0..k).map(|_| population[(self.random() * n).floor() as usize].clone()).collect()
    }
}

/// `21 + 4 ** ceil(log(3k, 4))` for k > 5, else 21; computed in floating point as CPython does
/// (`math.log(x, 4)` is `log(x) / log(4)`).
fn sample_setsize(k: usize) -> usize {
    let mut setsize = 21usize;
    if k > 5 {
        let exp = ((k as f64 * 3.0).ln() / 4f64.ln()).ceil() as u32;
        setsize = setsize.saturating_add(4usize.saturating_pow(exp));
    }
    setsize
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values printed by CPython 3.11: `random.seed(s); random.getrandbits(32)` etc.
    #[test]
    fn first_outputs_match_cpython() {
        let mut r = PyRandom::new(1);
        assert_eq!(r.random(), 0.134_364_244_112_401_22);
        let mut r = PyRandom::new(0);
        assert_eq!(r.random(), 0.844_421_851_525_048_1);
    }

    #[test]
    fn negative_seed_is_its_absolute_value() {
        let (mut a, mut b) = (PyRandom::new(-12345), PyRandom::new(12345));
        assert!((0..100).all(|_| a.next_u32() == b.next_u32()));
    }

    #[test]
    fn setsize_rule() {
        assert_eq!(sample_setsize(1), 21);
        assert_eq!(sample_setsize(5), 21);
        assert_eq!(sample_setsize(6), 21 + 64); // ceil(log4(18)) = 3
        assert_eq!(sample_setsize(16), 21 + 64); // ceil(log4(48)) = 3
        assert_eq!(sample_setsize(22), 21 + 256); // ceil(log4(66)) = 4
        assert_eq!(sample_setsize(100), 21 + 1024);
    }

    #[test]
    fn sample_is_a_permutation_prefix() {
        let mut r = PyRandom::new(7);
        for (n, k) in [(10, 10), (1000, 16), (30, 4)] {
            let s = r.sample_indices(n, k);
            let set: std::collections::HashSet<_> = s.iter().collect();
            assert_eq!(set.len(), k);
            assert!(s.iter().all(|&i| i < n));
        }
    }
}
