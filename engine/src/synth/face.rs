//! Synthetic face embeddings: an identity vector per person and a noisy capture of it per photo,
//! shaped so that cosine similarities have the spread the real face model gives on photos.
//!
//! Model (d = 192, the MobileFaceNet embedding): a capture is `normalise(m·μ + I + n)` where
//! - `μ` is one fixed unit vector shared by everyone (real embeddings of different people are
//!   not orthogonal: their cosines centre near +0.1, not 0);
//! - `I` is the person's identity and `n` the capture's noise, both Gaussian with per-axis
//!   variances falling off as `exp(−k/τ)` (real embeddings use far fewer than 192 effective
//!   dimensions: their impostor cosines spread twice as wide as isotropic 192-d vectors would);
//! - the noise power varies between captures (log-normal), which gives the long low tail of
//!   genuine scores (a bad photo).
//!
//! The constants are fitted to the ATT set (`../shared/data/face/ATT_ORL`, all 400 photos through
//! the engine's detector and MobileFaceNet): genuine cosine mean 0.876 / sd 0.085, impostor mean
//! 0.102 / sd 0.142. `abis-bench dist` draws both distributions side by side.

use super::rng::Rng;

/// Embedding dimension of the default face model.
pub const FACE_DIM: usize = 192;

/// Fitted constants (see the module docs).
const COMMON: f32 = 0.34;
const TAU: f32 = 24.0;
const NOISE_MEDIAN: f32 = 0.125;
const NOISE_LOG_SD: f32 = 0.75;

/// Per-axis standard deviations with unit total variance.
fn spectrum() -> Vec<f32> {
    let var: Vec<f32> = (0..FACE_DIM).map(|k| (-(k as f32) / TAU).exp()).collect();
    let total: f32 = var.iter().sum();
    var.iter().map(|v| (v / total).sqrt()).collect()
}

/// The shared direction `μ`: fixed, spread over all axes.
fn common_direction() -> Vec<f32> {
    let mut rng = Rng::new(0xC0_FFEE);
    let mut v: Vec<f32> = (0..FACE_DIM).map(|_| rng.normal()).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// A person's face identity.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceIdentity {
    base: Vec<f32>,
}

/// Draws identities and captures; holds the fixed parts of the model.
#[derive(Debug, Clone)]
pub struct FaceModel {
    spectrum: Vec<f32>,
    common: Vec<f32>,
}

impl Default for FaceModel {
    fn default() -> Self {
        FaceModel::new()
    }
}

impl FaceModel {
    pub fn new() -> FaceModel {
        FaceModel {
            spectrum: spectrum(),
            common: common_direction(),
        }
    }

    /// The identity of the person drawn from `seed`.
    pub fn identity(&self, seed: u64) -> FaceIdentity {
        let mut rng = Rng::fork(seed, 0xFACE);
        // The identity lives in a randomly rotated copy of the spectrum's axes would cost a
        // 192x192 rotation per capture; axis-aligned variances give the same cosine statistics.
        let base = (0..FACE_DIM)
            .map(|k| COMMON * self.common[k] + rng.normal() * self.spectrum[k])
            .collect();
        FaceIdentity { base }
    }

    /// One capture (photo) of `identity`, L2-normalised, drawn from `seed`.
    pub fn capture(&self, identity: &FaceIdentity, seed: u64, out: &mut Vec<f32>) {
        let mut rng = Rng::fork(seed, 0xCA97);
        let power = NOISE_MEDIAN * (rng.normal() * NOISE_LOG_SD).exp();
        let sd = power.sqrt();
        let start = out.len();
        out.extend(
            identity
                .base
                .iter()
                .zip(&self.spectrum)
                .map(|(b, s)| b + rng.normal() * s * sd),
        );
        let v = &mut out[start..];
        let n = v
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE);
        v.iter_mut().for_each(|x| *x /= n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn mean_sd(x: &[f32]) -> (f32, f32) {
        let m = x.iter().sum::<f32>() / x.len() as f32;
        let v = x.iter().map(|y| (y - m).powi(2)).sum::<f32>() / x.len() as f32;
        (m, v.sqrt())
    }

    #[test]
    fn cosines_have_the_fitted_spread() {
        let model = FaceModel::new();
        let (mut gen, mut imp) = (Vec::new(), Vec::new());
        for p in 0..600u64 {
            let id = model.identity(p);
            let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
            model.capture(&id, p * 2, &mut a);
            model.capture(&id, p * 2 + 1, &mut b);
            model.capture(&model.identity(p + 10_000), p, &mut c);
            assert!((cos(&a, &a) - 1.0).abs() < 1e-4);
            gen.push(cos(&a, &b));
            imp.push(cos(&a, &c));
        }
        let (gm, gs) = mean_sd(&gen);
        let (im, is) = mean_sd(&imp);
        // ATT through the real model: genuine 0.876 / 0.085, impostor 0.102 / 0.142.
        assert!((gm - 0.876).abs() < 0.03, "genuine mean {gm}");
        assert!((gs - 0.085).abs() < 0.03, "genuine sd {gs}");
        assert!((im - 0.102).abs() < 0.03, "impostor mean {im}");
        assert!((is - 0.142).abs() < 0.03, "impostor sd {is}");
    }
}
