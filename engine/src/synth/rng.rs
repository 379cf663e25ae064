//! A small seeded generator: splitmix64 with uniform and normal draws. The population generator
//! must give the same people for the same seed on every machine and version of its dependencies,
//! which is why it does not use an external RNG crate.

use std::f32::consts::TAU;

use crate::hash::mix;

/// Deterministic random source (splitmix64 stream).
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng {
            state: mix(seed ^ 0x005E_ED0F_AB15),
        }
    }

    /// An independent stream for a sub-object (person, finger, capture).
    pub fn fork(seed: u64, stream: u64) -> Rng {
        Rng::new(mix(seed).wrapping_add(mix(stream ^ 0xA5A5_5A5A)))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `0..n` (`0 < n < 2^32`).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u = (self.unit() + 1.0 / (1u64 << 25) as f32).min(1.0);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (TAU * v).cos()
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }

    /// Poisson draw (Knuth; fine for the small means used here).
    pub fn poisson(&mut self, mean: f32) -> usize {
        let l = (-mean.max(0.0)).exp();
        let mut k = 0;
        let mut p = 1.0f32;
        loop {
            p *= self.unit();
            if p <= l || k > 1000 {
                return k;
            }
            k += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_reproducible_and_well_spread() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<f32> = (0..20_000).map(|_| a.normal()).collect();
        let ys: Vec<f32> = (0..20_000).map(|_| b.normal()).collect();
        assert_eq!(xs, ys);
        let mean = xs.iter().sum::<f32>() / xs.len() as f32;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / xs.len() as f32;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
        let mut c = Rng::new(8);
        let hits = (0..10_000).filter(|_| c.below(10) == 3).count();
        assert!((800..1200).contains(&hits), "{hits}");
        assert_ne!(Rng::fork(1, 2).next_u64(), Rng::fork(1, 3).next_u64());
    }
}
