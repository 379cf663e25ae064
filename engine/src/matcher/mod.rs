//! Fingerprint minutiae matching (1:1): Minutia Cylinder-Code descriptors consolidated by
//! relaxation (LSS-R), verified by a distortion-tolerant global alignment, with a calibrated
//! score.
//!
//! # Algorithm
//!
//! **Preparation** ([`Matcher::prepare`], once per template, probe or gallery side):
//! 1. Coordinates are converted to **500 ppi-equivalent pixels** (`x · 500 / ppi`), so a 569 ppi
//!    capture (FVC2002 DB2) and a 500 ppi one are compared in physical units; exact duplicate
//!    minutiae are dropped.
//! 2. Every minutia gets a **bit Minutia Cylinder-Code** (Cappelli, Ferrara, Maltoni, *IEEE
//!    TPAMI* 2010): a cylinder of radius 70 px aligned with the minutia's direction, 16 x 16
//!    cells x 6 direction layers (1,536 bits). A cell's bit is set when neighbouring minutiae
//!    (Gaussian in distance, σ = 9.3 px, and in relative direction, σ = 40°) contribute enough.
//!    Cells outside the print (the minutiae's convex hull grown by 50 px) are marked invalid, so
//!    the descriptor says "nothing here" only where it could have seen something. Cylinders with
//!    too few valid cells or fewer than 2 neighbours are not used.
//! 3. The pairwise geometry (distance, and angle from each minutia's direction to the segment to
//!    the other) is tabulated, so consolidation needs no trigonometry.
//!
//! **Comparison** ([`Matcher::compare`], allocation-free with a reused [`Scratch`]):
//! 1. *Local similarity* of every two cylinders whose minutiae directions differ by at most 90°:
//!    `1 − √|a⊕b| / (√|a| + √|b|)` over the cells valid in both (popcounts; AVX-512 / AVX2 /
//!    popcnt kernels chosen at run time). Rotation and translation invariant by construction.
//! 2. *LSS-R*: the best `min(n_A, n_B, 24)` pairs are relaxed five times: each pair's similarity
//!    is reinforced by the pairs geometrically compatible with it (same distance ±~5 px, same
//!    relative directions ±~15°). The relaxed similarity of the `n_P` (4..12) most *efficient*
//!    pairs gives the local score `L` in 0..1. Relaxation rewards a *constellation* of agreeing
//!    pairs, which single descriptors of an impostor rarely form.
//! 3. *Global alignment* (skipped, score 0, when `L` is below the gate, i.e. for ~9 in 10
//!    impostors): from each of the 6 most efficient pairs a rigid motion is taken, all minutiae
//!    are paired greedily one-to-one (position tolerance `10 px + 8 %` of the distance from the
//!    anchor, for skin distortion; direction ±28°), the motion is refitted by least squares on
//!    the pairs found and pairing repeated. The best alignment's weight `w` (pairs weighted by
//!    closeness) is normalised by how many minutiae of each print fall inside the *other* print
//!    once aligned (`a_in`, `b_in`, at least 8): `G = w² / (a_in · b_in)`. Partial overlap
//!    therefore costs nothing: minutiae the other print could not have seen are not counted
//!    against it.
//! 4. `raw = √(L · G)`: both the descriptors and the global geometry must agree.
//! 5. The raw similarity is mapped through a monotone table to the **calibrated score**
//!    `−10·log10(FMR)` ([`fmr`], [`decide`]); see `calibration.rs` for how the table was fitted
//!    (impostor pairs of images from *different* FVC2002 sets, never a reported set's own
//!    impostors).
//!
//! The comparison is exactly symmetric (the two templates are put in a canonical order first)
//! and deterministic. Minutia type and quality are not used in scoring: LEADER keeps only
//! minutiae of quality >= 55 %, and type flips (ending ↔ bifurcation) between impressions are
//! common; both are kept in the prepared form for later use.
//!
//! # Accuracy (FVC2002 B sets, FVC protocol, LEADER templates)
//!
//! `cargo run --release -p abis-engine --example fvc_eval`: EER 0.35 / 0.00 / 0.70 / 0.70 %,
//! FMR1000 0.36 / 0.00 / 1.07 / 1.79 % on DB1 / DB2 / DB3 / DB4 (NBIS bozorth3: EER
//! 4.3 / 2.6 / 8.7 / 5.3 %, FMR1000 11.4 / 6.1 / 29.6 / 18.9 %). The constants marked *tuned* in
//! `params.rs` were chosen on DB1_B and DB3_B; DB2_B and DB4_B were not looked at for tuning.
//! Calibration on held-out within-set impostors of the real-finger sets DB1-3 (8,640): 1.04e-3
//! observed at the 1e-3 threshold, 1.4e-2 at 1e-2, 1.2e-4 at 1e-4. On the *synthetic* DB4
//! (SFinGe) impostors score higher (1.8e-2 at the 1e-3 threshold): synthetic prints resemble
//! each other more than real fingers do, so its scores are not a real-world FMR.
//!
//! # Speed
//!
//! One core, prepared templates: see `benches/benches/matcher.rs`
//! (`cargo bench -p abis-bench --bench matcher`). Memory of a prepared template: ~256 bytes per
//! minutia plus 4·n² bytes of geometry.
//!
//! # Input convention
//!
//! Directions must follow the engine convention (`atan2` in y-down image coordinates: they turn
//! *with* the image); a mirrored convention breaks every rotated impression. The extractor's
//! templates follow it (`finger/mod.rs` negates LEADER's counter-clockwise angle, and
//! `engine/tests/matcher_convention.rs` checks it), so they are matched as they come.

mod calibration;
mod compare;
mod lssr;
mod mates;
mod params;
mod prepare;

pub use compare::Scratch;
pub(crate) use lssr::{pairs_to_average, Relaxation};
pub use mates::{MatedComparison, MatedPair, RigidAlignment};
pub use prepare::PreparedTemplate;
pub(crate) use prepare::{convex_hull, dphi, erf, in_hull};

use thiserror::Error;

use crate::template::{FingerTemplate, TemplateError};

/// Why a template cannot be matched.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum MatchError {
    #[error("invalid template: {0}")]
    Template(#[from] TemplateError),
}

/// The outcome of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// Calibrated score, `-10·log10(FMR)`: 30 means one impostor in 1,000 scores this high.
    pub score: f32,
    /// The uncalibrated similarity in `[0, 1]`.
    pub raw: f32,
    /// Number of minutia pairs the similarity rests on.
    pub pairs: u16,
}

impl Comparison {
    /// The false-match rate this score corresponds to.
    pub fn fmr(&self) -> f64 {
        fmr(self.score)
    }
}

/// What a comparison found, for tuning and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Evidence {
    pub raw: f32,
    /// LSS-R similarity of the cylinder descriptors, 0..1.
    pub local: f32,
    /// Minutiae paired by the best global alignment.
    pub matched: u16,
    /// Minutiae of the first template inside the second's area once aligned, and vice versa.
    pub a_inside: u16,
    pub b_inside: u16,
    /// Sum of the paired minutiae's closeness weights.
    pub weight: f32,
    pub a_minutiae: u16,
    pub b_minutiae: u16,
}

/// The outcome of matching a probe against several impressions of one finger.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MultiComparison {
    /// Calibrated score of the fused comparison (the best, less `10·log10(k)`).
    pub score: f32,
    /// Index of the impression that matched best (`None` when there were none).
    pub best: Option<usize>,
    /// The best single comparison.
    pub best_comparison: Comparison,
}

/// The false-match rate of a calibrated score: `10^(-score/10)`.
pub fn fmr(score: f32) -> f64 {
    10f64.powf(-f64::from(score) / 10.0).min(1.0)
}

/// The calibrated score whose false-match rate is `target_fmr`.
pub fn score_for_fmr(target_fmr: f64) -> f32 {
    (-10.0 * target_fmr.clamp(f64::MIN_POSITIVE, 1.0).log10()) as f32
}

/// Accept (`true`) when `score` is at least the score of `target_fmr`.
pub fn decide(score: f32, target_fmr: f64) -> bool {
    score >= score_for_fmr(target_fmr)
}

/// The matcher. Holds only read-only lookup tables: share one between threads
/// (`Send + Sync`), give each thread its own [`Scratch`].
#[derive(Debug, Clone)]
pub struct Matcher {
    tables: compare::Tables,
}

impl Default for Matcher {
    fn default() -> Self {
        Matcher::new()
    }
}

impl Matcher {
    pub fn new() -> Matcher {
        Matcher {
            tables: compare::Tables::new(),
        }
    }

    /// Converts a template to 500 ppi-equivalent units and computes its descriptors. Do this
    /// once per template (probe and gallery alike). Templates with no or few minutiae prepare
    /// fine and score 0 against everything; an invalid template is refused.
    pub fn prepare(&self, template: &FingerTemplate) -> Result<PreparedTemplate, MatchError> {
        prepare::prepare(template)
    }

    /// Compares two prepared templates. Exactly symmetric: `compare(a, b) == compare(b, a)`.
    pub fn compare(
        &self,
        a: &PreparedTemplate,
        b: &PreparedTemplate,
        scratch: &mut Scratch,
    ) -> Comparison {
        let (first, second) = if a.key <= b.key { (a, b) } else { (b, a) };
        let r = compare::compare_raw(first, second, &self.tables, scratch);
        Comparison {
            score: calibration::calibrate(r.raw),
            raw: r.raw,
            pairs: r.pairs,
        }
    }

    /// [`compare`](Self::compare) with the mated minutiae pairs and the alignment behind the
    /// score (probe = `a`). The score is the same computation, bit for bit.
    pub fn compare_with_pairs(
        &self,
        a: &PreparedTemplate,
        b: &PreparedTemplate,
        scratch: &mut Scratch,
    ) -> MatedComparison {
        let swapped = a.key > b.key;
        let (first, second) = if swapped { (b, a) } else { (a, b) };
        let r = compare::compare_raw(first, second, &self.tables, scratch);
        let prepared = compare::mated_pairs(first, second, &r, scratch);
        let (pairs, alignment) = mates::in_caller_order(first, second, &r, &prepared, swapped);
        MatedComparison {
            comparison: Comparison {
                score: calibration::calibrate(r.raw),
                raw: r.raw,
                pairs: r.pairs,
            },
            pairs,
            alignment,
        }
    }

    /// The evidence behind a comparison (for tuning and diagnostics).
    pub fn explain(
        &self,
        a: &PreparedTemplate,
        b: &PreparedTemplate,
        scratch: &mut Scratch,
    ) -> Evidence {
        let (first, second) = if a.key <= b.key { (a, b) } else { (b, a) };
        let r = compare::compare_raw(first, second, &self.tables, scratch);
        Evidence {
            raw: r.raw,
            local: r.local,
            matched: r.matched,
            a_inside: r.a_inside,
            b_inside: r.b_inside,
            weight: r.weight,
            a_minutiae: first.minutiae_count() as u16,
            b_minutiae: second.minutiae_count() as u16,
        }
    }

    /// Prepares both templates and compares them (convenience for one-off 1:1 matching).
    pub fn match_templates(
        &self,
        a: &FingerTemplate,
        b: &FingerTemplate,
    ) -> Result<Comparison, MatchError> {
        let pa = self.prepare(a)?;
        let pb = self.prepare(b)?;
        Ok(self.compare(&pa, &pb, &mut Scratch::default()))
    }

    /// Matches a probe against several impressions of one enrolled finger: the best single
    /// comparison decides, and its score is lowered by `10·log10(k)` for the `k` impressions so
    /// that it stays a false-match rate (an impostor gets `k` chances; `FMR(max) <= k·FMR`).
    /// Enrolling 2-3 impressions lowers the FNMR markedly (module docs); a probe needs only to
    /// overlap one of them well.
    pub fn match_multi(
        &self,
        probe: &PreparedTemplate,
        candidates: &[PreparedTemplate],
        scratch: &mut Scratch,
    ) -> MultiComparison {
        let mut best: Option<(usize, Comparison)> = None;
        for (i, c) in candidates.iter().enumerate() {
            let r = self.compare(probe, c, scratch);
            if best.is_none_or(|(_, b)| r.score > b.score) {
                best = Some((i, r));
            }
        }
        match best {
            None => MultiComparison {
                score: 0.0,
                best: None,
                best_comparison: Comparison {
                    score: 0.0,
                    raw: 0.0,
                    pairs: 0,
                },
            },
            Some((i, c)) => MultiComparison {
                // An impostor had k chances: FMR(max of k) <= k·FMR(one).
                score: (c.score - 10.0 * (candidates.len() as f32).log10()).max(0.0),
                best: Some(i),
                best_comparison: c,
            },
        }
    }
}
