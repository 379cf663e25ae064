//! Local Similarity Sort without relaxation: the first comparison of searches with one to three
//! fingers, which rank every record of the gallery and cannot afford LSS-R on each.
//!
//! # Why
//! A probe with fewer fingers than the codes need (`index_min_fingers`) has no cheap filter:
//! one finger's code loses 5-13 % of the FVC mates at 10 % penetration, so those searches
//! compared every record's coarse local structures by LSS-R ([`super::local`]), ~25 µs a record
//! and finger on one core — 14 s for one finger at a million people on two. Most of that cost is what LSS-R does
//! after pairing the cylinders: selecting, sorting and relaxing the best pairs by their
//! geometry. The pairing alone already separates mates from strangers well (it is the Local
//! Similarity Sort of Cappelli, Ferrara & Maltoni, *IEEE TPAMI* 2010, which LSS-R refines), so
//! this stage scores every record by it and passes only the best to LSS-R.
//!
//! # The score
//! The same cylinder similarity as LSS-R's pairing (the same minimum of common cells, a
//! narrower direction gate: [`SORT_GATE8`]); each stored cylinder takes its best pair among the
//! probe's cylinders, and the score is the mean of the best `n_P` of those (the matcher's `n_P`
//! for the smaller form; fewer count as zeros). LSS proper averages the best `n_P` of all
//! pairs, so that one stored cylinder resembling many probe cylinders can fill the average —
//! a stranger's pattern more than a mate's; one pair per stored cylinder lost fewer accepted
//! mates on the FVC2002 B sets (in-sample, `abis-bench codes-eval`, at 1 % penetration: DB4
//! 6.47 against 7.19 %, others equal) and leaves ~36 values a record to select from instead of
//! ~450. The stored form's bytes are read in place — no decoding, no allocation — and the
//! probe's cylinders are prepared once, sorted by direction so that the pairs the gate admits
//! are one run per stored cylinder.
//!
//! # Cost
//! `cargo bench -p abis-bench --bench index` (synthetic fingers of ~36 cylinders, one core of
//! this machine), over 256 different strangers: 1.6-1.8 µs a stranger with the AVX-512 kernel
//! (eight probe cylinders a step, `VPOPCNTQ`, each stored cylinder's best pair kept in a
//! register; `sort_256_strangers`), against 25 µs for LSS-R (`lssr_256_strangers`). One pair
//! scored over and over (`sort_stranger`, `lssr_stranger`) looks cheaper than it is (1.5 and
//! 15 µs): the branch predictor learns its sequence, which a gallery never repeats; what the
//! kernel avoids is a branch on data per lane. The kernels give
//! the same bits (tested: a maximum does not depend on the order of its operands), so a
//! search's answer does not depend on the CPU.

use super::local::{adiff8, disc, sqrt_table, LocalForm, CYLINDER_BYTES, MIN_MATCHABLE, ND};
use crate::matcher::pairs_to_average;

/// The widest direction difference (1/256 turn) of the cylinder pairs the sort compares: 62°,
/// where LSS-R admits 90°.
///
/// Why narrower: the pairs between 62° and 90° are a third of what the kernel computes, and
/// they are almost all strangers' pairs (a mate's corresponding minutiae differ by the rotation
/// between the impressions plus a little). On the FVC2002 B sets
/// (`abis-bench codes-eval`, in-sample: the gate was chosen there) the sort loses no accepted
/// mate more than at 90° on any set and penetration, and fewer on DB4 (7.19 against 8.63 % at
/// 1 %); at 51° DB1 begins to lose mates (0.72 % at 1 %), so the gate keeps a margin above it.
const SORT_GATE8: u8 = 44;

/// The most pairs a score averages (the matcher's `MAX_NP`).
const MAX_PAIRS: usize = 12;

/// One probe cylinder, ready to be paired.
#[derive(Debug, Clone, Copy)]
struct Prepared {
    bits: [u64; ND],
    mask: u64,
    dir8: u8,
    ones: u32,
}

/// A probe finger's local form prepared for [`SortProbe::similarity`].
#[derive(Debug, Clone)]
pub struct SortProbe {
    /// The cylinders in order of direction, twice over, so that the cylinders within the
    /// direction gate of any stored cylinder are one contiguous run.
    cylinders: Vec<Prepared>,
    /// The same, one array per word (6 layers, then the mask), each padded with a lane group
    /// of empty cylinders: what the vector kernel loads eight at a time.
    lanes: [Vec<u64>; ND + 1],
    /// Number of cylinders (half of `cylinders`).
    n: usize,
    /// Per stored direction (1/256 turn): where its run starts and how long it is.
    runs: Vec<(u16, u16)>,
    /// Common valid cells two cylinders need to be compared.
    min_common: u32,
}

/// Lanes of the vector kernel.
const LANES: usize = 8;

impl SortProbe {
    pub fn of(form: &LocalForm) -> SortProbe {
        let mut sorted: Vec<Prepared> = form
            .cylinders
            .iter()
            .map(|c| Prepared::new(c.bits, c.mask, c.dir8()))
            .collect();
        sorted.sort_by_key(|c| c.dir8);
        let n = sorted.len();
        // Why runs: the gate (at most 62° apart) rejects about two thirds of all pairs; a
        // branch per pair on it mispredicts half the time, and a vector kernel would compute
        // the rejected pairs too.
        let runs = (0..=255u8)
            .map(|g| {
                let gated = |c: &Prepared| adiff8(c.dir8, g) <= SORT_GATE8;
                let count = sorted.iter().filter(|c| gated(c)).count();
                let start = if count == n {
                    0
                } else {
                    // The first gated cylinder after an ungated one (circularly).
                    (0..n)
                        .find(|&i| gated(&sorted[i]) && !gated(&sorted[(i + n - 1) % n]))
                        .unwrap_or(0)
                };
                (start as u16, count as u16)
            })
            .collect();
        let cylinders: Vec<Prepared> = sorted.iter().chain(&sorted).copied().collect();
        let lanes = std::array::from_fn(|w| {
            let word = |c: &Prepared| if w < ND { c.bits[w] } else { c.mask };
            let mut v: Vec<u64> = cylinders.iter().map(word).collect();
            v.resize(cylinders.len() + LANES, 0);
            v
        });
        SortProbe {
            cylinders,
            lanes,
            n,
            runs,
            min_common: (MIN_MATCHABLE * disc().len() as f32).ceil() as u32,
        }
    }

    /// The LSS score in `[0, 1]` of the probe against an encoded local form (the bytes
    /// [`LocalForm::encode`] writes); 0 when either side has no cylinder or the bytes are not a
    /// form's length. Bytes are never trusted beyond their length: any input gives a score.
    /// Computed with the widest kernel the CPU has; every kernel gives the same bits.
    pub fn similarity(&self, encoded: &[u8]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the CPU has the features the kernel is compiled for (checked once).
            return unsafe { self.similarity_avx512(encoded) };
        }
        self.similarity_scalar(encoded)
    }

    /// The stored cylinders of `encoded` and the number of pairs to average, or `None` when
    /// the score is 0 whatever the pairs.
    fn stored_form<'b>(&self, encoded: &'b [u8]) -> Option<(&'b [u8], usize)> {
        let (&n, rest) = encoded.split_first()?;
        let n = usize::from(n);
        if n == 0 || self.n == 0 || rest.len() != n * CYLINDER_BYTES {
            return None;
        }
        Some((rest, pairs_to_average(self.n.min(n)).clamp(1, MAX_PAIRS)))
    }

    /// The probe cylinders within the direction gate of a stored direction.
    fn run(&self, dir8: u8) -> (usize, usize) {
        let (start, count) = self.runs[usize::from(dir8)];
        (usize::from(start), usize::from(count))
    }

    fn similarity_scalar(&self, encoded: &[u8]) -> f32 {
        let Some((rest, n_p)) = self.stored_form(encoded) else {
            return 0.0;
        };
        let mut best = TopPairs::new(n_p);
        for bytes in rest.chunks_exact(CYLINDER_BYTES) {
            let g = stored(bytes);
            let (start, count) = self.run(g.dir8);
            let top = self.cylinders[start..start + count]
                .iter()
                .map(|p| pair_similarity(p, &g, self.min_common))
                .fold(0f32, f32::max);
            best.offer(top);
        }
        best.mean()
    }

    /// [`SortProbe::similarity_scalar`] eight probe cylinders at a time: the same operations in
    /// the same operations per pair (IEEE square roots and division) and the same maxima, so the
    /// same bits.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512vpopcntdq,avx,popcnt")]
    unsafe fn similarity_avx512(&self, encoded: &[u8]) -> f32 {
        use std::arch::x86_64::*;
        let Some((rest, n_p)) = self.stored_form(encoded) else {
            return 0.0;
        };
        let mut best = TopPairs::new(n_p);
        let min = _mm512_set1_epi64(i64::from(self.min_common));
        for bytes in rest.chunks_exact(CYLINDER_BYTES) {
            let g = stored(bytes);
            let (start, count) = self.run(g.dir8);
            let g_mask = _mm512_set1_epi64(g.mask as i64);
            let g_bits: [__m512i; ND] =
                std::array::from_fn(|l| _mm512_set1_epi64(g.bits[l] as i64));
            let mut top = _mm256_setzero_ps();
            for i in (0..count).step_by(LANES) {
                let off = start + i;
                let live: __mmask8 = if count - i >= LANES {
                    0xFF
                } else {
                    (1u8 << (count - i)) - 1
                };
                // SAFETY: `off + LANES <= 2n + LANES`, the length of every lane array (start < n,
                // count <= n).
                let load = |w: usize| unsafe {
                    _mm512_loadu_si512(self.lanes[w].as_ptr().add(off).cast())
                };
                let m = _mm512_and_si512(load(ND), g_mask);
                let enough = _mm512_mask_cmpge_epu64_mask(live, _mm512_popcnt_epi64(m), min);
                if enough == 0 {
                    continue;
                }
                let (mut na, mut nb, mut nx) = (
                    _mm512_setzero_si512(),
                    _mm512_setzero_si512(),
                    _mm512_setzero_si512(),
                );
                for (l, gb) in g_bits.iter().enumerate() {
                    let x = _mm512_and_si512(load(l), m);
                    let y = _mm512_and_si512(*gb, m);
                    na = _mm512_add_epi64(na, _mm512_popcnt_epi64(x));
                    nb = _mm512_add_epi64(nb, _mm512_popcnt_epi64(y));
                    nx = _mm512_add_epi64(nx, _mm512_popcnt_epi64(_mm512_xor_si512(x, y)));
                }
                let (fx, fa, fb) = (
                    _mm512_cvtepi64_ps(nx),
                    _mm512_cvtepi64_ps(na),
                    _mm512_cvtepi64_ps(nb),
                );
                let den = _mm256_add_ps(_mm256_sqrt_ps(fa), _mm256_sqrt_ps(fb));
                let sim =
                    _mm256_sub_ps(_mm256_set1_ps(1.0), _mm256_div_ps(_mm256_sqrt_ps(fx), den));
                let nonzero = _mm256_cmp_ps_mask::<_CMP_NEQ_OQ>(den, _mm256_setzero_ps());
                top = _mm256_mask_max_ps(top, enough & nonzero, top, sim);
            }
            let top4 = _mm_max_ps(_mm256_castps256_ps128(top), _mm256_extractf128_ps::<1>(top));
            let top2 = _mm_max_ps(top4, _mm_movehl_ps(top4, top4));
            let top1 = _mm_max_ss(top2, _mm_shuffle_ps::<1>(top2, top2));
            best.offer(_mm_cvtss_f32(top1));
        }
        best.mean()
    }
}

/// Whether this CPU runs the AVX-512 kernel (checked once).
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
    })
}

/// The name of the kernel [`SortProbe::similarity`] uses on this CPU.
pub fn kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        return "avx512vpopcntdq";
    }
    "scalar"
}

impl Prepared {
    /// A cylinder from its words; bits outside the mask are dropped (a stored form never has
    /// any, but its bytes are not trusted), so that equal masks need no masking when paired.
    fn new(bits: [u64; ND], mask: u64, dir8: u8) -> Prepared {
        let bits = bits.map(|w| w & mask);
        Prepared {
            bits,
            mask,
            dir8,
            ones: bits.iter().map(|w| w.count_ones()).sum(),
        }
    }
}

/// A stored cylinder read in place: bits (6 × u64), mask (u64), x, y, direction (u16 each).
#[inline]
fn stored(c: &[u8]) -> Prepared {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&c[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    let dir = u32::from(u16::from_le_bytes([c[60], c[61]]));
    // 1/65536 turn to 1/256 turn, rounded as `LocalCylinder::dir8` rounds.
    Prepared::new(
        std::array::from_fn(word),
        word(ND),
        ((dir + 128) >> 8) as u8,
    )
}

/// `1 − √|a⊕b| / (√|a| + √|b|)` over the cells valid in both (LSS-R's pairing similarity);
/// 0 below `min` common cells.
#[inline]
fn pair_similarity(a: &Prepared, b: &Prepared, min: u32) -> f32 {
    let sqrt = sqrt_table();
    let m = a.mask & b.mask;
    if m.count_ones() < min {
        return 0.0;
    }
    let (na, nb, nx) = if a.mask == b.mask {
        let nx = a
            .bits
            .iter()
            .zip(&b.bits)
            .map(|(x, y)| (x ^ y).count_ones())
            .sum();
        (a.ones, b.ones, nx)
    } else {
        a.bits
            .iter()
            .zip(&b.bits)
            .fold((0, 0, 0), |(na, nb, nx), (x, y)| {
                let (x, y) = (x & m, y & m);
                (
                    na + x.count_ones(),
                    nb + y.count_ones(),
                    nx + (x ^ y).count_ones(),
                )
            })
    };
    let den = sqrt[na as usize] + sqrt[nb as usize];
    if den == 0.0 {
        0.0
    } else {
        1.0 - sqrt[nx as usize] / den
    }
}

/// The most cylinders a stored form has (its count is one byte): the most offers a score takes.
const MAX_CYLINDERS: usize = u8::MAX as usize;

/// The best `n` of the similarities offered, one per stored cylinder. They are all kept and
/// selected once, at the end, and the best `n` summed in descending order: the same bits
/// whatever the order of the offers, so kernels that offer differently agree.
struct TopPairs {
    offered: [f32; MAX_CYLINDERS],
    len: usize,
    n: usize,
}

impl TopPairs {
    fn new(n: usize) -> TopPairs {
        TopPairs {
            offered: [0.0; MAX_CYLINDERS],
            len: 0,
            n: n.clamp(1, MAX_PAIRS),
        }
    }

    /// Offers a stored cylinder's best similarity; zeros are left out (missing values count as
    /// zeros anyway), so every kept value is positive.
    #[inline]
    fn offer(&mut self, v: f32) {
        if v > 0.0 && self.len < MAX_CYLINDERS {
            self.offered[self.len] = v;
            self.len += 1;
        }
    }

    /// The mean of the best `n` offers (missing ones count as zeros).
    fn mean(&mut self) -> f32 {
        // Positive values: their bits order as the values do, and compare faster than
        // `total_cmp`.
        let key = |v: &f32| std::cmp::Reverse(v.to_bits());
        let kept = &mut self.offered[..self.len];
        if kept.len() > self.n {
            kept.select_nth_unstable_by_key(self.n - 1, key);
        }
        let best = &mut kept[..self.len.min(self.n)];
        best.sort_unstable_by_key(key);
        best.iter().sum::<f32>() / self.n as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{person_seed, MasterFinger};

    fn form(person: u64, capture: u64) -> LocalForm {
        LocalForm::of(&MasterFinger::generate(person_seed(4, person), 2).impression(capture))
    }

    fn encoded(f: &LocalForm) -> Vec<u8> {
        let mut out = Vec::new();
        f.encode(&mut out);
        out
    }

    /// The score written plainly over decoded forms: every pair's similarity, sorted, the best
    /// `n_P` summed from the largest and averaged.
    fn reference(probe: &LocalForm, gallery: &LocalForm) -> f32 {
        let p = SortProbe::of(probe);
        let g = SortProbe::of(gallery);
        if p.n == 0 || g.n == 0 {
            return 0.0;
        }
        let mut sims: Vec<f32> = Vec::new();
        for b in &g.cylinders[..g.n] {
            let mut top = 0f32;
            for a in &p.cylinders[..p.n] {
                if adiff8(a.dir8, b.dir8) <= SORT_GATE8 {
                    top = top.max(pair_similarity(a, b, p.min_common));
                }
            }
            sims.push(top);
        }
        sims.sort_by(|x, y| y.total_cmp(x));
        let n_p = pairs_to_average(p.n.min(g.n));
        sims.resize(sims.len().max(n_p), 0.0);
        sims[..n_p].iter().sum::<f32>() / n_p as f32
    }

    #[test]
    fn the_score_is_the_mean_of_the_best_pairs_read_from_the_stored_bytes() {
        for (a, b) in [
            ((1, 1), (1, 2)),
            ((1, 1), (2, 1)),
            ((3, 2), (3, 5)),
            ((4, 1), (9, 3)),
        ] {
            let (fa, fb) = (form(a.0, a.1), form(b.0, b.1));
            // Decoding rounds positions and directions; the reference sees what is stored.
            let stored = LocalForm::decode(&encoded(&fb)).expect("decodes");
            let got = SortProbe::of(&fa).similarity(&encoded(&fb));
            let want = reference(&fa, &stored);
            // Summed in the same (descending) order: the same bits, not just close.
            assert_eq!(got.to_bits(), want.to_bits(), "{got} vs {want}");
        }
    }

    /// Every kernel this CPU has gives the scalar kernel's bits.
    fn kernels_agree(p: &SortProbe, bytes: &[u8]) -> f32 {
        let scalar = p.similarity_scalar(bytes);
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the CPU has the kernel's features.
            let wide = unsafe { p.similarity_avx512(bytes) };
            assert_eq!(wide.to_bits(), scalar.to_bits(), "{wide} vs {scalar}");
        }
        scalar
    }

    #[test]
    fn the_kernels_give_the_same_bits() {
        for person in 0..30 {
            let p = SortProbe::of(&form(person, 1));
            for other in [person, person + 1, person + 50] {
                for capture in [2, 3] {
                    kernels_agree(&p, &encoded(&form(other, capture)));
                }
            }
        }
    }

    #[test]
    fn mates_score_above_strangers() {
        let mut mates = Vec::new();
        let mut strangers = Vec::new();
        for person in 0..20 {
            let p = SortProbe::of(&form(person, 1));
            mates.push(p.similarity(&encoded(&form(person, 2))));
            strangers.push(p.similarity(&encoded(&form(person + 100, 2))));
        }
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        assert!(
            mean(&mates) > mean(&strangers) + 0.1,
            "{mates:?} vs {strangers:?}"
        );
        let above = mates
            .iter()
            .filter(|&&m| strangers.iter().all(|&s| m > s))
            .count();
        assert!(above >= 17, "{above} of 20 mates above every stranger");
    }

    #[test]
    fn empty_and_malformed_forms_score_zero() {
        let p = SortProbe::of(&form(1, 1));
        assert_eq!(p.similarity(&[]), 0.0);
        assert_eq!(p.similarity(&[0]), 0.0);
        assert_eq!(p.similarity(&[2, 1, 2, 3]), 0.0);
        let empty = SortProbe::of(&LocalForm::default());
        assert_eq!(empty.similarity(&encoded(&form(1, 2))), 0.0);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_stay_in_range(
            n in 0u8..6,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6 * CYLINDER_BYTES + 3),
        ) {
            let p = SortProbe::of(&form(2, 1));
            // A form's length half of the time, so that the bytes are read, not just refused.
            let mut bytes = vec![n];
            let len = if n % 2 == 0 { usize::from(n) * CYLINDER_BYTES } else { body.len() };
            bytes.extend(body.iter().cycle().take(len.min(body.len() * 8)));
            let s = kernels_agree(&p, &bytes);
            proptest::prop_assert!((0.0..=1.0).contains(&s), "{}", s);
        }
    }
}
