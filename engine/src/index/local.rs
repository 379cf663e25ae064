//! Coarse local structures of a finger and their LSS-R similarity: the second stage of the 1:N
//! index, which ranks the first stage's candidates almost as the full matcher would, at a
//! fraction of its cost.
//!
//! # Why
//! Fixed-length codes of a finger (the first stage, [`super::code`]) share too little between two
//! impressions that overlap on a small area: measured on the FVC2002 B sets, a code loses
//! several per cent of the genuine pairs the matcher accepts even when it lets 10 % of the
//! impostors through. What recovers them is what the matcher does first: pair the minutiae whose
//! neighbourhoods look alike (Local Similarity Sort) and keep the pairs that agree with each
//! other geometrically (relaxation, LSS-R; Cappelli, Ferrara & Maltoni, *IEEE TPAMI* 2010).
//! This module does that on a coarser descriptor than the matcher's, stored with the gallery so
//! that nothing is prepared at search time.
//!
//! # The form
//! Per minutia with a reliable neighbourhood, a Minutia Cylinder-Code of 8 × 8 cells by 6
//! direction layers (384 bits; the matcher uses 16 × 16), its mask of valid cells (inside the
//! print's convex hull grown by 50 px), and the minutia itself. The MCC constants are the
//! published ones (radius 70 px, σ_S = 28/3 px, σ_D = 2π/9, μ_ψ = 0.01); nothing here was tuned
//! on the evaluation sets. One cylinder is 64 bytes ([`LocalForm::encode`]), so a finger of
//! 40 minutiae costs about 2.5 KB on disk.
//!
//! # The similarity
//! Every two cylinders whose minutiae differ by at most 90° in direction and share at least 60 %
//! of their cells are compared (`1 − √|a⊕b| / (√|a| + √|b|)` over the common cells); the best
//! `n_R` pairs are relaxed five times by their pairwise geometric compatibility (distance,
//! direction and radial-angle differences), and the score is the mean relaxed similarity of the
//! `n_P` pairs the relaxation strengthened most, in `[0, 1]`.

use std::f32::consts::{PI, SQRT_2, TAU};
use std::sync::OnceLock;

use crate::matcher::{convex_hull, dphi, erf, in_hull, Relaxation};
use crate::template::FingerTemplate;

/// Cells per side.
const NS: usize = 8;
/// Direction layers.
pub(super) const ND: usize = 6;
const RADIUS: f32 = 70.0;
const SIGMA_S: f32 = 28.0 / 3.0;
const SIGMA_D: f32 = 2.0 * PI / 9.0;
const MU_PSI: f32 = 0.01;
const HULL_MARGIN: f32 = 50.0;
/// A cylinder needs this share of its disc's cells valid and this many neighbours within R.
const MIN_VALID_CELLS: f32 = 0.75;
const MIN_NEIGHBOURS: usize = 2;
/// Two cylinders are compared only when this share of the disc is valid in both...
pub(super) const MIN_MATCHABLE: f32 = 0.60;
/// ... and their minutiae differ by at most a quarter turn (1/256 turns).
pub(super) const MAX_DIR_DIFF8: u8 = 64;
/// LSS-R constants (the matcher's, from the MCC papers; relaxation and the local score are
/// the matcher's own code, [`Relaxation`]).
const MAX_NR: usize = 24;
const MU_RHO_D: f32 = 5.0;
const TAU_RHO_D: f32 = -1.6;
const MU_RHO_A: f32 = PI / 12.0;
const TAU_RHO_A: f32 = -30.0;
/// Most minutiae a form keeps (the cylinder index is a byte).
const MAX_CYLINDERS: usize = 255;
/// Bytes of one encoded cylinder.
pub const CYLINDER_BYTES: usize = 64;

/// One minutia's coarse cylinder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalCylinder {
    /// Layer `l` is word `l`; cell `c` (row-major 8 × 8) is bit `c`.
    pub bits: [u64; ND],
    /// Valid cells.
    pub mask: u64,
    /// The minutia, in 500 ppi pixels and radians.
    pub x: f32,
    pub y: f32,
    pub dir: f32,
}

impl LocalCylinder {
    pub(super) fn dir8(&self) -> u8 {
        ((self.dir / TAU * 256.0).round() as i64 & 0xFF) as u8
    }
}

/// A finger's coarse cylinders: the second-stage form.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocalForm {
    pub cylinders: Vec<LocalCylinder>,
}

/// Why encoded bytes are not a local form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed local form: {0}")]
pub struct LocalFormError(&'static str);

/// The cells inside the disc with their centres in the minutia's frame, and their grid index.
pub(super) fn disc() -> &'static [(usize, f32, f32)] {
    static DISC: OnceLock<Vec<(usize, f32, f32)>> = OnceLock::new();
    DISC.get_or_init(|| {
        let ds = 2.0 * RADIUS / NS as f32;
        (0..NS * NS)
            .map(|c| {
                let u = ((c % NS) as f32 - (NS as f32 - 1.0) / 2.0) * ds;
                let v = ((c / NS) as f32 - (NS as f32 - 1.0) / 2.0) * ds;
                (c, u, v)
            })
            .filter(|&(_, u, v)| u * u + v * v <= RADIUS * RADIUS)
            .collect()
    })
}

/// Cell side (px), and the grid index of the disc's centre.
const CELL: f32 = 2.0 * RADIUS / NS as f32;
const CENTRE: f32 = (NS as f32 - 1.0) / 2.0;

/// The centre of each grid cell inside the disc, by grid index (`None` outside the disc).
fn disc_centres() -> &'static [Option<(f32, f32)>; NS * NS] {
    static CENTRES: OnceLock<[Option<(f32, f32)>; NS * NS]> = OnceLock::new();
    CENTRES.get_or_init(|| {
        let mut t = [None; NS * NS];
        for &(c, u, v) in disc() {
            t[c] = Some((u, v));
        }
        t
    })
}

/// Steps of the direction-difference table (per turn).
const DIR_STEPS: usize = 1024;
/// Steps of the spatial Gaussian table per px² of squared distance.
const GAUSS_STEPS_PER_PX2: f32 = 4.0;

/// The directional weights of a neighbour whose direction differs by `dd` from the centre's,
/// one per layer, tabulated over 1/1024 turns (the erf pairs are the costly part of a cylinder).
fn directional(dd: f32) -> &'static [f32; ND] {
    static TABLE: OnceLock<Vec<[f32; ND]>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let delta = TAU / ND as f32;
        let s = SQRT_2 * SIGMA_D;
        (0..DIR_STEPS)
            .map(|i| {
                let dd = i as f32 / DIR_STEPS as f32 * TAU;
                std::array::from_fn(|k| {
                    let phi = -PI + (k as f32 + 0.5) * delta;
                    let a = dphi(phi, dd);
                    0.5 * (erf((a + delta / 2.0) / s) - erf((a - delta / 2.0) / s))
                })
            })
            .collect()
    });
    let i = (dd.rem_euclid(TAU) / TAU * DIR_STEPS as f32).round() as usize % DIR_STEPS;
    &table[i]
}

/// The spatial Gaussian of a squared distance `e2` ≤ 9σ², tabulated in quarter px².
fn spatial(e2: f32) -> f32 {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let norm = 1.0 / (SIGMA_S * TAU.sqrt());
        let n = (9.0 * SIGMA_S * SIGMA_S * GAUSS_STEPS_PER_PX2).ceil() as usize + 1;
        (0..=n)
            .map(|i| norm * (-(i as f32 / GAUSS_STEPS_PER_PX2) / (2.0 * SIGMA_S * SIGMA_S)).exp())
            .collect()
    });
    let i = (e2 * GAUSS_STEPS_PER_PX2).round() as usize;
    table[i.min(table.len() - 1)]
}

impl LocalForm {
    /// The form of a template (coordinates scaled to 500 ppi).
    pub fn of(template: &FingerTemplate) -> LocalForm {
        let scale = 500.0 / f32::from(template.ppi.max(1));
        let ms: Vec<(f32, f32, f32)> = template
            .minutiae
            .iter()
            .map(|m| (f32::from(m.x) * scale, f32::from(m.y) * scale, m.direction))
            .collect();
        let points: Vec<(f32, f32)> = ms.iter().map(|m| (m.0, m.1)).collect();
        let hull = convex_hull(&points);
        let disc = disc();
        let cylinders = ms
            .iter()
            .enumerate()
            .filter_map(|(i, _)| cylinder(i, &ms, &hull, disc))
            .take(MAX_CYLINDERS)
            .collect();
        LocalForm { cylinders }
    }

    /// Bytes: count u8, then per cylinder 6 × u64 bits, u64 mask, x and y in 1/8 px (u16),
    /// direction in 1/65536 turns (u16), 2 zero bytes; little-endian.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.cylinders.len() as u8);
        for c in &self.cylinders {
            for w in c.bits.iter().chain(std::iter::once(&c.mask)) {
                out.extend_from_slice(&w.to_le_bytes());
            }
            let q = |v: f32| ((v * 8.0).round().clamp(0.0, 65535.0)) as u16;
            let d = ((c.dir.rem_euclid(TAU) / TAU * 65536.0).round() as u32 & 0xFFFF) as u16;
            for v in [q(c.x), q(c.y), d, 0] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }

    /// The encoded size of a form with `n` cylinders.
    pub fn encoded_len(n: usize) -> usize {
        1 + n * CYLINDER_BYTES
    }

    /// Reads what [`LocalForm::encode`] wrote; other bytes are an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<LocalForm, LocalFormError> {
        let (&n, rest) = bytes.split_first().ok_or(LocalFormError("empty"))?;
        if rest.len() != usize::from(n) * CYLINDER_BYTES {
            return Err(LocalFormError("length"));
        }
        let cylinders = rest
            .chunks_exact(CYLINDER_BYTES)
            .map(|c| {
                let w =
                    |i: usize| u64::from_le_bytes(c[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
                let h = |i: usize| u16::from_le_bytes([c[56 + i * 2], c[57 + i * 2]]);
                if h(3) != 0 {
                    return Err(LocalFormError("reserved bytes"));
                }
                let mask = w(6);
                let bits: [u64; ND] = std::array::from_fn(w);
                if bits.iter().any(|b| b & !mask != 0) {
                    return Err(LocalFormError("bits outside the mask"));
                }
                Ok(LocalCylinder {
                    bits,
                    mask,
                    x: f32::from(h(0)) / 8.0,
                    y: f32::from(h(1)) / 8.0,
                    dir: f32::from(h(2)) / 65536.0 * TAU,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(LocalForm { cylinders })
    }

    /// An order key making [`LocalForm::similarity`] exactly symmetric (floating-point sums
    /// depend on the order of their terms).
    fn key(&self) -> u64 {
        self.cylinders
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |k, c| {
                let k = (k ^ u64::from(c.x.to_bits())).wrapping_mul(0x0100_0000_01b3);
                let k = (k ^ u64::from(c.y.to_bits())).wrapping_mul(0x0100_0000_01b3);
                (k ^ c.mask).wrapping_mul(0x0100_0000_01b3)
            })
    }

    /// LSS-R similarity in `[0, 1]` (0 when either side has no cylinder). Exactly symmetric.
    pub fn similarity(&self, other: &LocalForm, scratch: &mut LocalScratch) -> f32 {
        let (first, second) = if self.key() <= other.key() {
            (self, other)
        } else {
            (other, self)
        };
        let (a, b) = (&first.cylinders, &second.cylinders);
        if a.is_empty() || b.is_empty() {
            return 0.0;
        }
        let n_r = local_pairs(a, b, scratch);
        if n_r == 0 {
            return 0.0;
        }
        relax(a, b, scratch, n_r);
        scratch.lssr.local_score(a.len().min(b.len()), n_r).0
    }
}

/// The cylinder of minutia `i`, or `None` when too few of its cells lie in the print or too few
/// neighbours are near to describe it reliably.
fn cylinder(
    i: usize,
    ms: &[(f32, f32, f32)],
    hull: &[(f32, f32)],
    disc: &[(usize, f32, f32)],
) -> Option<LocalCylinder> {
    let (mx, my, md) = ms[i];
    let (cos, sin) = (md.cos(), md.sin());
    let mut mask = 0u64;
    for &(c, u, v) in disc {
        let p = (mx + u * cos - v * sin, my + u * sin + v * cos);
        if near_hull(hull, p) {
            mask |= 1 << c;
        }
    }
    if (mask.count_ones() as f32) < MIN_VALID_CELLS * disc.len() as f32 {
        return None;
    }
    let reach = RADIUS + 3.0 * SIGMA_S;
    let centres = disc_centres();
    let mut values = [[0f32; NS * NS]; ND];
    let mut neighbours = 0;
    for (j, &(tx, ty, td)) in ms.iter().enumerate() {
        if j == i {
            continue;
        }
        let (dx, dy) = (tx - mx, ty - my);
        let d2 = dx * dx + dy * dy;
        if d2 > reach * reach {
            continue;
        }
        if d2 <= RADIUS * RADIUS {
            neighbours += 1;
        }
        let (lu, lv) = (dx * cos + dy * sin, -dx * sin + dy * cos);
        let gd = directional(dphi(md, td));
        // Only cells within 3σ of the neighbour get a contribution: visit the rows and columns
        // that can hold one (a cell of slack either side), not the whole disc.
        let span = |w: f32| {
            let lo = ((w - 3.0 * SIGMA_S) / CELL + CENTRE).floor() - 1.0;
            let hi = ((w + 3.0 * SIGMA_S) / CELL + CENTRE).ceil() + 1.0;
            (lo.max(0.0) as usize)..=(hi.min(NS as f32 - 1.0) as usize)
        };
        for row in span(lv) {
            for c in span(lu).map(|col| row * NS + col) {
                let Some((u, v)) = centres[c] else { continue };
                let e2 = (u - lu) * (u - lu) + (v - lv) * (v - lv);
                if e2 > 9.0 * SIGMA_S * SIGMA_S {
                    continue;
                }
                let gs = spatial(e2);
                for (layer, g) in values.iter_mut().zip(gd) {
                    layer[c] += gs * g;
                }
            }
        }
    }
    if neighbours < MIN_NEIGHBOURS {
        return None;
    }
    let bits = std::array::from_fn(|l| {
        (0..NS * NS).fold(0u64, |w, c| {
            if values[l][c] > MU_PSI {
                w | (1 << c)
            } else {
                w
            }
        }) & mask
    });
    Some(LocalCylinder {
        bits,
        mask,
        x: mx,
        y: my,
        dir: md,
    })
}

/// Whether `p` lies in the hull grown by `HULL_MARGIN` (a counter-clockwise polygon in y-up
/// terms, as `convex_hull` returns it): inside every edge's half-plane, or within the margin of
/// an edge. Fewer than three hull points make no area.
fn near_hull(hull: &[(f32, f32)], p: (f32, f32)) -> bool {
    let n = hull.len();
    if n < 3 {
        return in_hull(hull, p, HULL_MARGIN);
    }
    let mut inside = true;
    for k in 0..n {
        let (a, b) = (hull[k], hull[(k + 1) % n]);
        if (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0) < 0.0 {
            inside = false;
            break;
        }
    }
    inside || in_hull(hull, p, HULL_MARGIN)
}

/// Working memory of [`LocalForm::similarity`]; reuse one per thread.
#[derive(Debug, Default, Clone)]
pub struct LocalScratch {
    /// λ bits << 32 | a << 8 | b.
    pairs: Vec<u64>,
    /// Direction (1/256 turn) and bit count of each cylinder of the second form.
    b_info: Vec<(u8, u32)>,
    sel: Vec<(u8, u8)>,
    /// Similarities of the selected pairs, their compatibilities, relaxation, order.
    lssr: Relaxation,
}

pub(super) fn adiff8(a: u8, b: u8) -> u8 {
    let d = a.wrapping_sub(b);
    d.min(d.wrapping_neg())
}

/// `√k` for the bit counts of a cylinder (at most 384).
pub(super) fn sqrt_table() -> &'static [f32; 385] {
    static T: OnceLock<[f32; 385]> = OnceLock::new();
    T.get_or_init(|| std::array::from_fn(|k| (k as f32).sqrt()))
}

/// `1 − √|a⊕b| / (√|a| + √|b|)` over the cells valid in both; 0 below `min` common cells.
/// `ones_*` are the cylinders' own counts, used when the masks are equal (two interior minutiae:
/// the common case costs one XOR-popcount pass).
#[inline]
fn cylinder_similarity(a: &LocalCylinder, b: &LocalCylinder, ones: (u32, u32), min: u32) -> f32 {
    let sqrt = sqrt_table();
    let m = a.mask & b.mask;
    if m.count_ones() < min {
        return 0.0;
    }
    let (na, nb, nx) = if a.mask == b.mask {
        let nx: u32 = a
            .bits
            .iter()
            .zip(&b.bits)
            .map(|(x, y)| (x ^ y).count_ones())
            .sum();
        (ones.0, ones.1, nx)
    } else {
        let (mut na, mut nb, mut nx) = (0u32, 0u32, 0u32);
        for (x, y) in a.bits.iter().zip(&b.bits) {
            let (x, y) = (x & m, y & m);
            na += x.count_ones();
            nb += y.count_ones();
            nx += (x ^ y).count_ones();
        }
        (na, nb, nx)
    };
    let den = sqrt[na as usize] + sqrt[nb as usize];
    if den == 0.0 {
        0.0
    } else {
        1.0 - sqrt[nx as usize] / den
    }
}

/// The best `n_R` cylinder pairs, best first, into `s.sel` / `s.lssr.lambda0`; returns `n_R`.
fn local_pairs(a: &[LocalCylinder], b: &[LocalCylinder], s: &mut LocalScratch) -> usize {
    let min = (MIN_MATCHABLE * disc().len() as f32).ceil() as u32;
    s.pairs.clear();
    s.b_info.clear();
    s.b_info.extend(
        b.iter()
            .map(|c| (c.dir8(), c.bits.iter().map(|w| w.count_ones()).sum::<u32>())),
    );
    for (ia, ca) in a.iter().enumerate() {
        let da = ca.dir8();
        let ones_a: u32 = ca.bits.iter().map(|w| w.count_ones()).sum();
        for (ib, cb) in b.iter().enumerate() {
            let (db, ones_b) = s.b_info[ib];
            if adiff8(da, db) > MAX_DIR_DIFF8 {
                continue;
            }
            let sim = cylinder_similarity(ca, cb, (ones_a, ones_b), min);
            if sim > 0.0 {
                s.pairs
                    .push((u64::from(sim.to_bits()) << 32) | ((ia as u64) << 8) | ib as u64);
            }
        }
    }
    if s.pairs.is_empty() {
        return 0;
    }
    let n_r = a.len().min(b.len()).min(MAX_NR).min(s.pairs.len());
    if n_r < s.pairs.len() {
        s.pairs.select_nth_unstable_by(n_r - 1, |x, y| y.cmp(x));
        s.pairs.truncate(n_r);
    }
    s.pairs.sort_unstable_by(|x, y| y.cmp(x));
    s.sel.clear();
    s.lssr.lambda0.clear();
    for &k in &s.pairs {
        s.lssr.lambda0.push(f32::from_bits((k >> 32) as u32));
        s.sel.push((((k >> 8) & 0xFF) as u8, (k & 0xFF) as u8));
    }
    n_r
}

fn sigmoid(v: f32, mu: f32, tau: f32) -> f32 {
    1.0 / (1.0 + (-tau * (v - mu)).exp())
}

/// Geometric compatibility of two selected pairs: the distances between their minutiae, the
/// directions and the radial angles must agree on both sides.
fn compatibility(
    a1: &LocalCylinder,
    a2: &LocalCylinder,
    b1: &LocalCylinder,
    b2: &LocalCylinder,
) -> f32 {
    let d_dir = dphi(dphi(a1.dir, a2.dir), dphi(b1.dir, b2.dir)).abs();
    if d_dir > 0.7 {
        return 0.0; // ρ < 1e-4 well before this
    }
    let (dxa, dya) = (a2.x - a1.x, a2.y - a1.y);
    let (dxb, dyb) = (b2.x - b1.x, b2.y - b1.y);
    let d_len = (dxa.hypot(dya) - dxb.hypot(dyb)).abs();
    let d_rad = dphi(dphi(dya.atan2(dxa), a1.dir), dphi(dyb.atan2(dxb), b1.dir)).abs();
    sigmoid(d_len, MU_RHO_D, TAU_RHO_D)
        * sigmoid(d_dir, MU_RHO_A, TAU_RHO_A)
        * sigmoid(d_rad, MU_RHO_A, TAU_RHO_A)
}

/// Relaxation: each selected pair is reinforced by the pairs compatible with it.
fn relax(a: &[LocalCylinder], b: &[LocalCylinder], s: &mut LocalScratch, n_r: usize) {
    s.lssr.edges.clear();
    for i in 0..n_r {
        let (ai, bi) = s.sel[i];
        for j in i + 1..n_r {
            let (aj, bj) = s.sel[j];
            if ai == aj || bi == bj {
                continue;
            }
            let r = compatibility(
                &a[usize::from(ai)],
                &a[usize::from(aj)],
                &b[usize::from(bi)],
                &b[usize::from(bj)],
            );
            if r > 1e-4 {
                s.lssr.edges.push((i as u8, j as u8, r));
            }
        }
    }
    s.lssr.relax(n_r);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{person_seed, MasterFinger};

    fn form(person: u64, capture: u64) -> LocalForm {
        LocalForm::of(&MasterFinger::generate(person_seed(3, person), 2).impression(capture))
    }

    #[test]
    fn mates_score_above_strangers_and_the_score_is_symmetric() {
        let mut s = LocalScratch::default();
        let mut wins = 0;
        for p in 0..30 {
            let (a, mate, stranger) = (form(p, 1), form(p, 2), form(p + 100, 2));
            assert!(a.cylinders.len() > 10);
            let m = a.similarity(&mate, &mut s);
            assert_eq!(m, mate.similarity(&a, &mut s), "symmetric");
            if m > a.similarity(&stranger, &mut s) {
                wins += 1;
            }
            assert!((0.0..=1.0).contains(&m));
        }
        assert!(wins >= 29, "mate beat stranger {wins} of 30");
    }

    #[test]
    fn encoding_round_trips_closely_and_refuses_damage() {
        let f = form(7, 1);
        let mut bytes = Vec::new();
        f.encode(&mut bytes);
        assert_eq!(bytes.len(), LocalForm::encoded_len(f.cylinders.len()));
        let back = LocalForm::decode(&bytes).unwrap();
        assert_eq!(back.cylinders.len(), f.cylinders.len());
        for (x, y) in back.cylinders.iter().zip(&f.cylinders) {
            assert_eq!((x.bits, x.mask), (y.bits, y.mask));
            assert!((x.x - y.x).abs() <= 1.0 / 16.0 && (x.y - y.y).abs() <= 1.0 / 16.0);
            assert!(dphi(x.dir, y.dir).abs() < 1e-3);
        }
        let mut s = LocalScratch::default();
        let (a, b) = (
            f.similarity(&form(7, 2), &mut s),
            back.similarity(&form(7, 2), &mut s),
        );
        assert!((a - b).abs() < 0.02, "{a} vs {b}");
        assert!(LocalForm::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(LocalForm::decode(&[]).is_err());
        let mut bad = bytes.clone();
        bad[1 + 48] = 0; // clear mask bits under set bits
        bad[1 + 49] = 0;
        bad[1 + 50] = 0;
        bad[1 + 51] = 0;
        bad[1 + 52] = 0;
        bad[1 + 53] = 0;
        bad[1 + 54] = 0;
        bad[1 + 55] = 0;
        assert!(LocalForm::decode(&bad).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            if let Ok(f) = LocalForm::decode(&bytes) {
                let mut again = Vec::new();
                f.encode(&mut again);
                proptest::prop_assert_eq!(again.len(), bytes.len());
            }
        }
    }
}
