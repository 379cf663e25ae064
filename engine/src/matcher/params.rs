//! The matcher's constants, in 500 ppi-equivalent pixels and radians unless said otherwise.
//! Values follow Cappelli, Ferrara & Maltoni (2010) where the paper gives them; the ones marked
//! *tuned* were chosen on FVC2002 DB1_B and DB3_B (see the module docs).

use std::f32::consts::PI;

/// Resolution all coordinates are converted to before anything else.
pub const REFERENCE_PPI: f32 = 500.0;

/// Cylinder radius R.
pub const RADIUS: f32 = 70.0;
/// Cells per side of a cylinder, N_S.
pub const NS: usize = 16;
/// Direction layers, N_D.
pub const ND: usize = 6;
/// Spatial Gaussian σ_S.
pub const SIGMA_S: f32 = 28.0 / 3.0;
/// Directional Gaussian σ_D.
pub const SIGMA_D: f32 = 2.0 * PI / 9.0;
/// A cell's bit is set when its contribution sum exceeds μ_ψ.
pub const MU_PSI: f32 = 0.01;
/// The print area is the minutiae's convex hull grown by ω.
pub const HULL_MARGIN: f32 = 50.0;
/// A cylinder needs this share of its disc's cells valid...
pub const MIN_VALID_CELLS: f32 = 0.75;
/// ... and this many other minutiae within R.
pub const MIN_NEIGHBOURS: usize = 2;
/// Two cylinders are compared only when this share of a disc's cells is valid in both.
pub const MIN_MATCHABLE: f32 = 0.60;
/// Two cylinders are compared only when their minutiae directions differ by at most δ_θ
/// (in 1/256 turns: π/2).
pub const MAX_DIR_DIFF8: u8 = 64;

pub const BIT_WORDS: usize = NS * NS * ND / 64;
pub const MASK_WORDS: usize = NS * NS / 64;

/// LSS-R: relaxation iterations n_rel and weight w_R.
/// LSS-R relaxes the n_R = min(n_A, n_B, MAX_NR) best local pairs (the cap bounds the
/// quadratic relaxation cost on templates with many minutiae).
pub const MAX_NR: usize = 24;
pub const RELAX_ITERATIONS: usize = 5;
pub const RELAX_WEIGHT: f32 = 0.5;
/// Number of top pairs averaged: n_P = min_NP + Z(min(n_A, n_B); μ_P, τ_P)·(max_NP − min_NP).
pub const MIN_NP: usize = 4;
pub const MAX_NP: usize = 12;
pub const MU_P: f32 = 20.0;
pub const TAU_P: f32 = 0.4;
/// Compatibility ρ: sigmoids of the distance difference and the two angle differences.
pub const MU_RHO_D: f32 = 5.0;
pub const TAU_RHO_D: f32 = -1.6;
pub const MU_RHO_A: f32 = PI / 12.0;
pub const TAU_RHO_A: f32 = -30.0;
/// Angle differences beyond this (1/256 turns, ≈ 28°) make ρ < 1e-3: treated as 0.
pub const RHO_MAX_ANGLE8: usize = 20;

/// Global alignment: seeds tried (the most efficient LSS-R pairs).
pub const GEO_SEEDS: usize = 6;
/// Position tolerance `GEO_TOL0 + GEO_TOL1 · distance from the anchor` (distortion grows away
/// from it).
pub const GEO_TOL0: f32 = 10.0;
pub const GEO_TOL1: f32 = 0.08;
/// Direction tolerance of a paired minutia, 1/256 turns (20 ≈ 28°).
pub const GEO_ANGLE_TOL8: usize = 20;
/// Margin around a print's area when counting the other print's minutiae inside it.
pub const OVERLAP_MARGIN: f32 = 10.0;
/// The alignment score `w² / (max(a_in, N)·max(b_in, N))` counts an overlap of fewer than N
/// minutiae as N, so that a tiny overlap cannot score high (*tuned*: 8 on DB1_B, DB3_B).
pub const GEO_MIN_AREA_COUNT: usize = 8;
/// Comparisons whose descriptor similarity (LSS-R) is below this are not aligned and score 0:
/// about 9 in 10 impostor comparisons and none of the genuine ones that could have been
/// recognised on FVC2002 DB1_B..DB4_B (*tuned*: the 0.9 quantile of impostor LSS-R scores).
pub const GEO_GATE: f32 = 0.0185;
