//! Local Similarity Sort with Relaxation (Cappelli, Ferrara & Maltoni): the relaxation rounds
//! and the local score over the relaxed pairs. One implementation for the matcher's full
//! cylinders and the 1:N index's coarse ones: the two differ in how pairs are selected and how
//! compatible two pairs are, not in these stages.

use super::params::{MAX_NP, MIN_NP, MU_P, RELAX_ITERATIONS, RELAX_WEIGHT, TAU_P};

/// Working memory of the relaxation, reused across comparisons.
#[derive(Debug, Default, Clone)]
pub(crate) struct Relaxation {
    /// Similarity of each selected pair before relaxation.
    pub lambda0: Vec<f32>,
    /// After relaxation (valid after [`Relaxation::relax`]).
    pub lambda: Vec<f32>,
    next: Vec<f32>,
    /// Compatible selected pairs `(i, j, ρ)`, `i < j`.
    pub edges: Vec<(u8, u8, f32)>,
    /// Selected pairs, most strengthened first (valid after [`Relaxation::local_score`]).
    pub order: Vec<u32>,
}

impl Relaxation {
    /// `RELAX_ITERATIONS` rounds over the first `n_r` pairs: each pair keeps `RELAX_WEIGHT` of
    /// its similarity and takes the rest from the pairs compatible with it; the result is left
    /// in `lambda`.
    pub fn relax(&mut self, n_r: usize) {
        self.lambda.clear();
        self.lambda.extend_from_slice(&self.lambda0);
        self.next.clear();
        self.next.resize(n_r, 0.0);
        let spread = if n_r > 1 {
            (1.0 - RELAX_WEIGHT) / (n_r - 1) as f32
        } else {
            0.0
        };
        for _ in 0..RELAX_ITERATIONS {
            for (n, l) in self.next.iter_mut().zip(&self.lambda) {
                *n = RELAX_WEIGHT * l;
            }
            for &(i, j, r) in &self.edges {
                let (i, j) = (usize::from(i), usize::from(j));
                let w = spread * r;
                self.next[i] += w * self.lambda[j];
                self.next[j] += w * self.lambda[i];
            }
            std::mem::swap(&mut self.lambda, &mut self.next);
        }
    }

    /// The mean relaxed similarity of the `n_P` pairs the relaxation strengthened most, over
    /// the `n_P` two templates of `n_min` cylinders deserve; and that `n_P` (at most `n_r`).
    /// Averaging over the full count (not fewer when fewer pairs exist) penalises comparisons
    /// with very few matchable descriptors.
    pub fn local_score(&mut self, n_min: usize, n_r: usize) -> (f32, usize) {
        let full_np = pairs_to_average(n_min);
        let n_p = full_np.min(n_r).max(1);
        self.order.clear();
        self.order.extend(0..n_r as u32);
        let (lambda, lambda0) = (&self.lambda, &self.lambda0);
        let eff = |i: u32| lambda[i as usize] / lambda0[i as usize].max(1e-9);
        self.order
            .sort_unstable_by(|&x, &y| eff(y).total_cmp(&eff(x)).then(x.cmp(&y)));
        let sum: f32 = self.order[..n_p]
            .iter()
            .map(|&i| self.lambda[i as usize])
            .sum();
        (sum / full_np.max(1) as f32, n_p)
    }
}

/// `n_P`: how many pairs the local score of two templates of `n_min` cylinders averages.
pub(crate) fn pairs_to_average(n_min: usize) -> usize {
    (MIN_NP as f32 + (sigmoid_p(n_min as f32) * (MAX_NP - MIN_NP) as f32).round()) as usize
}

fn sigmoid_p(v: f32) -> f32 {
    1.0 / (1.0 + (-TAU_P * (v - MU_P)).exp())
}
