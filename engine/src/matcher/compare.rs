//! Comparison of two prepared templates: local cylinder similarities, LSS-R consolidation,
//! global alignment with overlap normalisation (see the module docs of `matcher`).

use super::lssr::Relaxation;
use super::params::*;
use super::prepare::{in_hull, to_dir8, Cylinder, PreparedTemplate};

/// Lookup tables shared by all comparisons (built once per [`Matcher`](super::Matcher)).
#[derive(Debug, Clone)]
pub(super) struct Tables {
    /// Z(d; μ_ρd, τ_ρd) for a distance difference `d` in 1/8 px, index `d / 2` (1/4 px steps).
    pub rho_dist: [f32; 256],
    /// Z(α; μ_ρa, τ_ρa) for an angle difference in 1/256 turns, 0..=128.
    pub rho_angle: [f32; 129],
    /// √k for the popcounts of a cylinder.
    pub sqrt: Vec<f32>,
    /// Whether this CPU has the popcnt instruction (chooses the compiled kernel).
    pub popcnt: bool,
    /// Whether this CPU has avx2 and popcnt.
    pub avx2: bool,
    /// Whether this CPU has AVX-512 with the vector popcount.
    pub avx512: bool,
}

fn sigmoid(v: f32, mu: f32, tau: f32) -> f32 {
    1.0 / (1.0 + (-tau * (v - mu)).exp())
}

impl Tables {
    pub fn new() -> Tables {
        let mut rho_dist = [0f32; 256];
        for (i, r) in rho_dist.iter_mut().enumerate() {
            *r = sigmoid(i as f32 * 0.25, MU_RHO_D, TAU_RHO_D);
        }
        let mut rho_angle = [0f32; 129];
        for (i, r) in rho_angle.iter_mut().enumerate() {
            let a = i as f32 * std::f32::consts::TAU / 256.0;
            *r = sigmoid(a, MU_RHO_A, TAU_RHO_A);
        }
        let sqrt = (0..=BIT_WORDS * 64).map(|k| (k as f32).sqrt()).collect();
        #[cfg(target_arch = "x86_64")]
        let popcnt = std::arch::is_x86_feature_detected!("popcnt");
        #[cfg(not(target_arch = "x86_64"))]
        let popcnt = false;
        #[cfg(target_arch = "x86_64")]
        let avx2 = popcnt && std::arch::is_x86_feature_detected!("avx2");
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = false;
        #[cfg(target_arch = "x86_64")]
        let avx512 = avx2
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512vpopcntdq");
        #[cfg(not(target_arch = "x86_64"))]
        let avx512 = false;
        Tables {
            rho_dist,
            rho_angle,
            sqrt,
            popcnt,
            avx2,
            avx512,
        }
    }
}

/// Per-thread working memory for comparisons; reuse one per thread so the comparison itself
/// allocates nothing once the buffers have grown.
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    /// Local pairs as sortable keys: λ bits << 32 | a << 8 | b (cylinder indices).
    pairs: Vec<u64>,
    sel_a: Vec<u8>,
    sel_b: Vec<u8>,
    /// Similarities of the selected pairs, their compatibilities, relaxation, order.
    lssr: Relaxation,
    dir_a: Vec<u8>,
    dir_b: Vec<u8>,
    /// A's minutiae mapped into B's frame by the current alignment.
    ax: Vec<f32>,
    ay: Vec<f32>,
    adir: Vec<u8>,
    /// Distance of each A minutia from the alignment's anchor.
    adist: Vec<f32>,
    cand: Vec<u64>,
    matched: Vec<(u8, u8)>,
    seeds: Vec<(u8, u8)>,
}

/// |a − b| of two 1/256-turn angles, 0..=128.
#[inline(always)]
fn adiff(a: u8, b: u8) -> usize {
    let d = a.wrapping_sub(b);
    usize::from(d.min(d.wrapping_neg()))
}

#[inline(always)]
fn masked_count(bits: &[u64; BIT_WORDS], m: &[u64; MASK_WORDS]) -> u32 {
    let mut n = 0;
    for layer in 0..ND {
        for w in 0..MASK_WORDS {
            n += (bits[layer * MASK_WORDS + w] & m[w]).count_ones();
        }
    }
    n
}

/// The bit-MCC similarity `1 − √|x⊕y| / (√|x| + √|y|)` of the two cylinders restricted to the
/// cells valid in both; 0 when fewer than `min_matchable` cells are.
///
/// A cylinder's bits are already zero outside its own mask, so when one mask contains the
/// other the restriction of that side is a no-op and its count is precomputed: the common case
/// (two interior minutiae, both discs fully valid) costs one XOR-popcount pass.
#[inline(always)]
fn cylinder_similarity(a: &Cylinder, b: &Cylinder, sqrt: &[f32], min_matchable: u32) -> f32 {
    let mut m = [0u64; MASK_WORDS];
    let (mut a_out, mut b_out) = (0u64, 0u64);
    for ((mw, &aw), &bw) in m.iter_mut().zip(&a.mask).zip(&b.mask) {
        *mw = aw & bw;
        a_out |= aw & !bw;
        b_out |= bw & !aw;
    }
    let (na, nb, nx) = match (a_out == 0, b_out == 0) {
        (true, true) => {
            if u32::from(a.valid) < min_matchable {
                return 0.0;
            }
            let mut nx = 0;
            for k in 0..BIT_WORDS {
                nx += (a.bits[k] ^ b.bits[k]).count_ones();
            }
            (u32::from(a.ones), u32::from(b.ones), nx)
        }
        (true, false) => {
            if u32::from(a.valid) < min_matchable {
                return 0.0;
            }
            let (mut nb, mut nx) = (0, 0);
            for k in 0..BIT_WORDS {
                let y = b.bits[k] & a.mask[k % MASK_WORDS];
                nb += y.count_ones();
                nx += (a.bits[k] ^ y).count_ones();
            }
            (u32::from(a.ones), nb, nx)
        }
        (false, true) => {
            if u32::from(b.valid) < min_matchable {
                return 0.0;
            }
            let (mut na, mut nx) = (0, 0);
            for k in 0..BIT_WORDS {
                let x = a.bits[k] & b.mask[k % MASK_WORDS];
                na += x.count_ones();
                nx += (x ^ b.bits[k]).count_ones();
            }
            (na, u32::from(b.ones), nx)
        }
        (false, false) => {
            let common: u32 = m.iter().map(|w| w.count_ones()).sum();
            if common < min_matchable {
                return 0.0;
            }
            let mut nx = 0;
            for k in 0..BIT_WORDS {
                nx += ((a.bits[k] ^ b.bits[k]) & m[k % MASK_WORDS]).count_ones();
            }
            (masked_count(&a.bits, &m), masked_count(&b.bits, &m), nx)
        }
    };
    let den = sqrt[na as usize] + sqrt[nb as usize];
    if den == 0.0 {
        0.0
    } else {
        1.0 - sqrt[nx as usize] / den
    }
}

#[inline(always)]
fn local_pairs_body(a: &PreparedTemplate, b: &PreparedTemplate, t: &Tables, out: &mut Vec<u64>) {
    let min_matchable = (MIN_MATCHABLE * disc_cells() as f32).ceil() as u32;
    for (ia, (ca, &da)) in a.cylinders.iter().zip(&a.cyl_dir).enumerate() {
        for (ib, (cb, &db)) in b.cylinders.iter().zip(&b.cyl_dir).enumerate() {
            if adiff(da, db) > usize::from(MAX_DIR_DIFF8) {
                continue;
            }
            let s = cylinder_similarity(ca, cb, &t.sqrt, min_matchable);
            if s > 0.0 {
                out.push((u64::from(s.to_bits()) << 32) | ((ia as u64) << 8) | ib as u64);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vpopcntdq,avx2,popcnt")]
fn local_pairs_avx512(a: &PreparedTemplate, b: &PreparedTemplate, t: &Tables, out: &mut Vec<u64>) {
    local_pairs_body(a, b, t, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
fn local_pairs_avx2(a: &PreparedTemplate, b: &PreparedTemplate, t: &Tables, out: &mut Vec<u64>) {
    local_pairs_body(a, b, t, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn local_pairs_popcnt(a: &PreparedTemplate, b: &PreparedTemplate, t: &Tables, out: &mut Vec<u64>) {
    local_pairs_body(a, b, t, out)
}

fn local_pairs_generic(a: &PreparedTemplate, b: &PreparedTemplate, t: &Tables, out: &mut Vec<u64>) {
    local_pairs_body(a, b, t, out)
}

fn local_pairs(a: &PreparedTemplate, b: &PreparedTemplate, t: &Tables, out: &mut Vec<u64>) {
    out.clear();
    #[cfg(target_arch = "x86_64")]
    if t.avx512 {
        // SAFETY: `t.avx512` is true only when the CPU reports every feature the kernel enables.
        unsafe { local_pairs_avx512(a, b, t, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if t.avx2 {
        // SAFETY: `t.avx2` is true only when the CPU reports both avx2 and popcnt.
        unsafe { local_pairs_avx2(a, b, t, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if t.popcnt {
        // SAFETY: `t.popcnt` is true only when the CPU reports the popcnt feature.
        unsafe { local_pairs_popcnt(a, b, t, out) };
        return;
    }
    local_pairs_generic(a, b, t, out)
}

/// Number of cells in a cylinder's disc.
pub(super) fn disc_cells() -> usize {
    let delta_s = 2.0 * RADIUS / NS as f32;
    (0..NS * NS)
        .filter(|c| {
            let u = ((c % NS) as f32 - (NS as f32 - 1.0) / 2.0) * delta_s;
            let v = ((c / NS) as f32 - (NS as f32 - 1.0) / 2.0) * delta_s;
            u * u + v * v <= RADIUS * RADIUS
        })
        .count()
}

/// The raw outcome of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct RawComparison {
    pub raw: f32,
    pub pairs: u16,
    /// LSS-R similarity of the descriptors, 0..1.
    pub local: f32,
    /// Minutiae paired by the best alignment, and how many of each side lie in the other's area.
    pub matched: u16,
    pub a_inside: u16,
    pub b_inside: u16,
    /// Sum of the matched pairs' closeness weights.
    pub weight: f32,
    /// The best alignment (A's frame into B's) and the anchor of its position tolerance: what
    /// `mated_pairs` needs to recover that alignment's pairs.
    pub transform: Option<Transform>,
    pub anchor: (f32, f32),
}

/// Compares `a` against `b` (the caller orders them for symmetry).
pub(super) fn compare_raw(
    a: &PreparedTemplate,
    b: &PreparedTemplate,
    t: &Tables,
    s: &mut Scratch,
) -> RawComparison {
    let (na, nb) = (a.cylinders.len(), b.cylinders.len());
    if na == 0 || nb == 0 {
        return RawComparison::default();
    }
    let n_r = select_local_pairs(a, b, t, s);
    if n_r == 0 {
        return RawComparison::default();
    }
    compatibility_edges(a, b, t, s, n_r);
    s.lssr.relax(n_r);
    let (local, n_p) = s.lssr.local_score(na.min(nb), n_r);
    let best = align_globally(a, b, s, local);
    let (a_inside, b_inside) = match best.transform {
        Some(tr) => overlap(a, b, &tr),
        None => (0, 0),
    };
    let n_min = GEO_MIN_AREA_COUNT as f32;
    let geometric = best.weight * best.weight
        / (f32::from(a_inside).max(n_min) * f32::from(b_inside).max(n_min));
    RawComparison {
        raw: (local * geometric.min(1.0)).sqrt(),
        pairs: n_p as u16,
        local,
        matched: best.matched,
        a_inside,
        b_inside,
        weight: best.weight,
        transform: best.transform,
        anchor: best.anchor,
    }
}

/// The minutia pairs (A index, B index, in prepared order) of the alignment `raw` rests on.
/// Re-runs the one greedy pairing that alignment came from (deterministic), so the score path
/// keeps no copy of the pairs it does not need.
pub(super) fn mated_pairs(
    a: &PreparedTemplate,
    b: &PreparedTemplate,
    raw: &RawComparison,
    s: &mut Scratch,
) -> Vec<(u8, u8)> {
    match raw.transform {
        Some(tr) => {
            greedy(a, b, &tr, raw.anchor, s);
            s.matched.clone()
        }
        None => Vec::new(),
    }
}

/// Local Similarity Sort: the `n_R` best pairs of cylinders, best first, into `s.sel_a`,
/// `s.sel_b` (minutia indices) and `s.lssr.lambda0` (their similarities). Returns `n_R` (0: none).
#[inline]
fn select_local_pairs(
    a: &PreparedTemplate,
    b: &PreparedTemplate,
    t: &Tables,
    s: &mut Scratch,
) -> usize {
    local_pairs(a, b, t, &mut s.pairs);
    if s.pairs.is_empty() {
        return 0;
    }
    let n_r = a
        .cylinders
        .len()
        .min(b.cylinders.len())
        .min(MAX_NR)
        .min(s.pairs.len());
    if n_r < s.pairs.len() {
        s.pairs.select_nth_unstable_by(n_r - 1, |x, y| y.cmp(x));
        s.pairs.truncate(n_r);
    }
    s.pairs.sort_unstable_by(|x, y| y.cmp(x));

    s.sel_a.clear();
    s.sel_b.clear();
    s.lssr.lambda0.clear();
    for &k in &s.pairs {
        s.lssr.lambda0.push(f32::from_bits((k >> 32) as u32));
        s.sel_a.push(a.cyl_index[((k >> 8) & 0xFF) as usize]);
        s.sel_b.push(b.cyl_index[(k & 0xFF) as usize]);
    }
    n_r
}

/// Compatibility of every two selected pairs, kept sparse in `s.lssr.edges` (most pairs of an
/// impostor comparison are incompatible). Angles first: they need no table look-up.
#[inline]
fn compatibility_edges(
    a: &PreparedTemplate,
    b: &PreparedTemplate,
    t: &Tables,
    s: &mut Scratch,
    n_r: usize,
) {
    s.dir_a.clear();
    s.dir_b.clear();
    for i in 0..n_r {
        s.dir_a.push(a.minutiae[usize::from(s.sel_a[i])].dir8);
        s.dir_b.push(b.minutiae[usize::from(s.sel_b[i])].dir8);
    }
    s.lssr.edges.clear();
    for i in 0..n_r {
        let (ai, bi) = (usize::from(s.sel_a[i]), usize::from(s.sel_b[i]));
        let (da, db) = (s.dir_a[i], s.dir_b[i]);
        for j in i + 1..n_r {
            let d_dir = adiff(da.wrapping_sub(s.dir_a[j]), db.wrapping_sub(s.dir_b[j]));
            if d_dir > RHO_MAX_ANGLE8 {
                continue;
            }
            let (aj, bj) = (usize::from(s.sel_a[j]), usize::from(s.sel_b[j]));
            if aj == ai || bj == bi {
                continue;
            }
            let (ga, gb) = (a.geo(ai, aj), b.geo(bi, bj));
            let d_rad = adiff((ga >> 16) as u8, (gb >> 16) as u8);
            if d_rad > RHO_MAX_ANGLE8 {
                continue;
            }
            let dd = ((ga & 0xFFFF) as i32 - (gb & 0xFFFF) as i32).unsigned_abs() as usize / 2;
            if dd >= t.rho_dist.len() {
                continue;
            }
            let r = t.rho_dist[dd] * t.rho_angle[d_dir] * t.rho_angle[d_rad];
            if r > 1e-4 {
                s.lssr.edges.push((i as u8, j as u8, r));
            }
        }
    }
}

/// The global alignment: from each of the most efficient pairs (when the local score clears
/// `GEO_GATE`), a rigid motion, a greedy pairing of minutiae under it, refined once by least
/// squares; the best pairing found.
#[inline]
fn align_globally(
    a: &PreparedTemplate,
    b: &PreparedTemplate,
    s: &mut Scratch,
    local: f32,
) -> Alignment {
    s.seeds.clear();
    if local >= GEO_GATE {
        for &i in s.lssr.order.iter().take(GEO_SEEDS) {
            s.seeds.push((s.sel_a[i as usize], s.sel_b[i as usize]));
        }
    }
    let mut best = Alignment::default();
    // For each A minutia, 1 + its partner in the best alignment so far (0: none).
    let mut best_map = [0u8; 256];
    for k in 0..s.seeds.len() {
        let (ia, ib) = s.seeds[k];
        // A seed the best alignment already pairs would only find that alignment again.
        if best_map[usize::from(ia)] == ib.wrapping_add(1) {
            continue;
        }
        let (ma, mb) = (&a.minutiae[usize::from(ia)], &b.minutiae[usize::from(ib)]);
        let rot = mb.dir - ma.dir;
        let (c, sn) = (rot.cos(), rot.sin());
        let tr = Transform {
            cos: c,
            sin: sn,
            tx: mb.x - (c * ma.x - sn * ma.y),
            ty: mb.y - (sn * ma.x + c * ma.y),
            rot8: mb.dir8.wrapping_sub(ma.dir8),
        };
        let mut al = greedy(a, b, &tr, (ma.x, ma.y), s);
        // Refine once by least squares on the pairs found, anchored at their centroid.
        if al.matched >= 3 {
            if let Some((tr2, anchor)) = refit(a, b, &s.matched) {
                let al2 = greedy(a, b, &tr2, anchor, s);
                if al2.weight > al.weight {
                    al = al2;
                }
            }
        }
        if al.weight > best.weight {
            best = al;
            best_map = [0u8; 256];
            for &(k, l) in &s.matched {
                best_map[usize::from(k)] = l.wrapping_add(1);
            }
        }
    }
    best
}

/// A rigid motion from A's frame into B's: `p' = R·p + t`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct Transform {
    pub cos: f32,
    pub sin: f32,
    pub tx: f32,
    pub ty: f32,
    /// The rotation in 1/256 turns.
    rot8: u8,
}

impl Transform {
    #[inline(always)]
    fn apply(&self, x: f32, y: f32) -> (f32, f32) {
        (
            self.cos * x - self.sin * y + self.tx,
            self.sin * x + self.cos * y + self.ty,
        )
    }

    #[inline(always)]
    fn invert(&self, x: f32, y: f32) -> (f32, f32) {
        let (dx, dy) = (x - self.tx, y - self.ty);
        (
            self.cos * dx + self.sin * dy,
            -self.sin * dx + self.cos * dy,
        )
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Alignment {
    matched: u16,
    weight: f32,
    transform: Option<Transform>,
    anchor: (f32, f32),
}

/// Pairs A's minutiae (mapped by `tr`) with B's, greedily by closeness, one-to-one. The position
/// tolerance grows with the distance from `anchor` (skin distortion accumulates away from the
/// place the alignment was taken). Leaves the pairs in `s.matched`.
fn greedy(
    a: &PreparedTemplate,
    b: &PreparedTemplate,
    tr: &Transform,
    anchor: (f32, f32),
    s: &mut Scratch,
) -> Alignment {
    s.ax.clear();
    s.ay.clear();
    s.adir.clear();
    s.adist.clear();
    for m in &a.minutiae {
        let (x, y) = tr.apply(m.x, m.y);
        s.ax.push(x);
        s.ay.push(y);
        s.adir.push(m.dir8.wrapping_add(tr.rot8));
        s.adist.push(
            ((m.x - anchor.0) * (m.x - anchor.0) + (m.y - anchor.1) * (m.y - anchor.1)).sqrt(),
        );
    }
    s.cand.clear();
    for k in 0..a.minutiae.len() {
        let tol = GEO_TOL0 + GEO_TOL1 * s.adist[k];
        let tol2 = tol * tol;
        let (x, y, d) = (s.ax[k], s.ay[k], s.adir[k]);
        for (l, mb) in b.minutiae.iter().enumerate() {
            let (dx, dy) = (mb.x - x, mb.y - y);
            let d2 = dx * dx + dy * dy;
            if d2 > tol2 {
                continue;
            }
            let da = adiff(d, mb.dir8);
            if da > GEO_ANGLE_TOL8 {
                continue;
            }
            let closeness = 1.0 - 0.5 * (d2 / tol2) - 0.5 * (da as f32 / GEO_ANGLE_TOL8 as f32);
            let w = closeness.max(0.0);
            s.cand
                .push((u64::from(w.to_bits()) << 32) | ((k as u64) << 8) | l as u64);
        }
    }
    s.cand.sort_unstable_by(|x, y| y.cmp(x));
    let (mut used_a, mut used_b) = ([0u64; 4], [0u64; 4]);
    s.matched.clear();
    let mut weight = 0.0;
    for &c in &s.cand {
        let (k, l) = (((c >> 8) & 0xFF) as usize, (c & 0xFF) as usize);
        if used_a[k / 64] & (1 << (k % 64)) != 0 || used_b[l / 64] & (1 << (l % 64)) != 0 {
            continue;
        }
        used_a[k / 64] |= 1 << (k % 64);
        used_b[l / 64] |= 1 << (l % 64);
        s.matched.push((k as u8, l as u8));
        weight += 0.5 + 0.5 * f32::from_bits((c >> 32) as u32);
    }
    Alignment {
        matched: s.matched.len() as u16,
        weight,
        transform: Some(*tr),
        anchor,
    }
}

/// Least-squares rigid motion over the matched pairs; returns it and the pairs' centroid in A.
fn refit(
    a: &PreparedTemplate,
    b: &PreparedTemplate,
    pairs: &[(u8, u8)],
) -> Option<(Transform, (f32, f32))> {
    let n = pairs.len() as f32;
    let (mut ax, mut ay, mut bx, mut by) = (0f32, 0f32, 0f32, 0f32);
    for &(k, l) in pairs {
        let (p, q) = (&a.minutiae[usize::from(k)], &b.minutiae[usize::from(l)]);
        ax += p.x;
        ay += p.y;
        bx += q.x;
        by += q.y;
    }
    let (ax, ay, bx, by) = (ax / n, ay / n, bx / n, by / n);
    let (mut sxx, mut sxy) = (0f32, 0f32);
    for &(k, l) in pairs {
        let (p, q) = (&a.minutiae[usize::from(k)], &b.minutiae[usize::from(l)]);
        let (px, py, qx, qy) = (p.x - ax, p.y - ay, q.x - bx, q.y - by);
        sxx += px * qx + py * qy;
        sxy += px * qy - py * qx;
    }
    let norm = sxx.hypot(sxy);
    if norm <= f32::EPSILON {
        return None;
    }
    let (c, sn) = (sxx / norm, sxy / norm);
    let tr = Transform {
        cos: c,
        sin: sn,
        tx: bx - (c * ax - sn * ay),
        ty: by - (sn * ax + c * ay),
        rot8: to_dir8(sn.atan2(c)),
    };
    Some((tr, (ax, ay)))
}

/// How many of A's minutiae fall inside B's area once aligned, and of B's inside A's.
fn overlap(a: &PreparedTemplate, b: &PreparedTemplate, tr: &Transform) -> (u16, u16) {
    let a_in = a
        .minutiae
        .iter()
        .filter(|m| in_hull(&b.hull, tr.apply(m.x, m.y), OVERLAP_MARGIN))
        .count();
    let b_in = b
        .minutiae
        .iter()
        .filter(|m| in_hull(&a.hull, tr.invert(m.x, m.y), OVERLAP_MARGIN))
        .count();
    (a_in as u16, b_in as u16)
}
