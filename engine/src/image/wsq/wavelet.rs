//! Inverse wavelet transform: rebuilds the image plane from its subbands, one w-tree node
//! at a time (deepest first), each node by a one-dimensional synthesis down its columns and
//! then along its rows.
//!
//! One synthesis step turns a line holding a low band of `ceil(n/2)` and a high band of
//! `floor(n/2)` coefficients (high band first in "inverted" nodes) back into `n` samples:
//! every output sample is a short sum over the low band with the synthesis lowpass taps
//! plus a short sum over the high band with the synthesis highpass taps, with the filters
//! upsampled by two. Past the ends of a band the coefficients are continued by symmetric
//! extension, as the specification requires for odd-length (whole-sample symmetric) filters:
//! the low band reflects about its end samples (whole-sample symmetry) where the original
//! line ends on a low-band position, and repeats its end sample (half-sample symmetry) where
//! it ends on a high-band position; the high band the other way round.
//!
//! All lines of a node have the same length, so the index pattern of a step is computed
//! once ([`LinePlan`]) and replayed over every row or column. The sums are accumulated in
//! `f32` in the same order as the NBIS reference decoder (low-band terms by ascending tap,
//! then high-band terms), which makes our output match it exactly, not just to within a
//! grey level.

use super::errors::unsupported;
use super::segments::TransformTable;
use super::tree::{Geometry, MIN_SIDE};
use crate::image::ImageError;

/// The synthesis filter pair and the constants that place it on a line.
#[derive(Debug, Clone)]
pub(super) struct SynthesisFilters<'a> {
    low: &'a [f32],
    high: &'a [f32],
    /// Band index at which the walk of the first output's taps starts.
    low_start: usize,
    high_start: usize,
    /// 1 when the first output sample takes an odd tap before an even one (two outputs per
    /// step from the first), 0 when it takes only tap 0.
    first_tap: usize,
}

impl<'a> SynthesisFilters<'a> {
    pub(super) fn new(table: &'a TransformTable) -> Result<Self, ImageError> {
        let (low, high) = (table.lowpass.as_slice(), table.highpass.as_slice());
        let (ls, hs) = (low.len(), high.len());
        let odd = |n: usize| n % 2 == 1;
        let low_tap = ((ls.saturating_sub(1)) / 2) % 2;
        let high_tap = hs.div_ceil(2) % 2;
        // Odd lengths differing by 2 (mod 4) form a biorthogonal pair; the standard is 7/9.
        if !odd(ls) || !odd(hs) || hs < 3 || low_tap != high_tap {
            return Err(unsupported(
                0,
                format!("transform filter lengths {ls} (lowpass) / {hs} (highpass)"),
            ));
        }
        Ok(SynthesisFilters {
            low,
            high,
            low_start: (ls - 1) / 4,
            high_start: (hs + 1) / 4 - 1,
            first_tap: low_tap,
        })
    }
}

/// A position in a band of `len` coefficients moving through its symmetric extension: on
/// reaching an end it turns back, after first repeating the end sample once if that end
/// has half-sample symmetry.
#[derive(Debug, Clone, Copy)]
struct Mirror {
    pos: isize,
    step: isize,
    last: isize,
    repeat_first: bool,
    repeat_last: bool,
}

impl Mirror {
    fn new(start: usize, len: usize, repeat_first: bool, repeat_last: bool) -> Self {
        // Band lengths are at most 65535, so these conversions are lossless.
        Mirror {
            pos: start as isize,
            step: -1,
            last: len as isize - 1,
            repeat_first,
            repeat_last,
        }
    }

    fn turn_at_first(&mut self) {
        if self.pos == 0 {
            if self.repeat_first {
                self.step = 0;
                self.repeat_first = false;
            } else {
                self.step = 1;
            }
        }
    }

    /// One step within a tap sum.
    fn advance(&mut self) {
        self.turn_at_first();
        if self.pos == self.last {
            if self.repeat_last {
                self.step = 0;
                self.repeat_last = false;
            } else {
                self.step = -1;
            }
        }
        self.pos += self.step;
    }

    /// Moves the starting point of the next output pair's tap sums (only ever reflected at
    /// the first end: it never gets near the last).
    fn advance_start(&mut self) {
        self.turn_at_first();
        self.pos += self.step;
    }

    fn index(&self) -> Option<usize> {
        usize::try_from(self.pos)
            .ok()
            .filter(|&i| i as isize <= self.last)
    }
}

/// Which input samples (indices into the line) and taps make each output sample.
#[derive(Debug, Clone)]
struct LinePlan {
    terms: Vec<(usize, f32)>,
    /// Sample `k`'s terms are `terms[offsets[k]..offsets[k + 1]]`.
    offsets: Vec<usize>,
}

impl LinePlan {
    fn new(capacity: usize, samples: usize) -> Self {
        let mut offsets = Vec::with_capacity(samples + 1);
        offsets.push(0);
        LinePlan {
            terms: Vec::with_capacity(capacity),
            offsets,
        }
    }

    fn terms(&self, k: usize) -> &[(usize, f32)] {
        match (self.offsets.get(k), self.offsets.get(k + 1)) {
            (Some(&start), Some(&end)) => self.terms.get(start..end).unwrap_or_default(),
            _ => &[],
        }
    }

    fn end_sample(&mut self) {
        self.offsets.push(self.terms.len());
    }
}

fn too_small(n: usize) -> ImageError {
    ImageError::Unsupported {
        format: "WSQ",
        detail: format!(
            "image too small for the WSQ wavelet tree: a split of {n} samples cannot be inverted \
             (WSQ images need at least {MIN_SIDE} pixels per side)"
        ),
    }
}

/// The terms one band contributes to each of the `n` outputs, in output order.
fn band_terms(
    n: usize,
    filter: &[f32],
    mut start: Mirror,
    base: usize,
    first_tap: usize,
) -> Result<LinePlan, ImageError> {
    // Taps of the output samples in order: pairs (odd tap, even tap) per step of the start
    // position (the first step may have only the even tap), then whatever the tail needs.
    let mut outputs: Vec<(usize, Mirror)> = Vec::with_capacity(n);
    for p in 0..n / 2 {
        let top = if p == 0 { first_tap } else { 1 };
        outputs.extend((0..=top).rev().map(|tap| (tap, start)));
        start.advance_start();
    }
    let stop = first_tap + usize::from(n.is_multiple_of(2));
    outputs.extend((stop..=1).rev().map(|tap| (tap, start)));
    if outputs.len() != n {
        return Err(too_small(n));
    }
    let mut plan = LinePlan::new(n * (filter.len() / 2 + 1), n);
    for (tap, mut walk) in outputs {
        for (i, &coef) in filter.iter().enumerate().skip(tap).step_by(2) {
            if i > tap {
                walk.advance();
            }
            let index = walk.index().ok_or_else(|| too_small(n))?;
            plan.terms.push((base + index, coef));
        }
        plan.end_sample();
    }
    Ok(plan)
}

/// Plans the synthesis of an `n`-sample line (see the module docs).
fn line_plan(n: usize, high_first: bool, f: &SynthesisFilters<'_>) -> Result<LinePlan, ImageError> {
    let odd = n % 2 == 1;
    let (low_len, high_len) = (n - n / 2, n / 2);
    let (low_base, high_base) = if high_first {
        (high_len, 0)
    } else {
        (0, low_len)
    };
    let low_walk = Mirror::new(f.low_start, low_len, false, !odd);
    let high_walk = Mirror::new(f.high_start, high_len, true, odd);
    let low = band_terms(n, f.low, low_walk, low_base, f.first_tap)?;
    let high = band_terms(n, f.high, high_walk, high_base, f.first_tap)?;
    let mut plan = LinePlan::new(low.terms.len() + high.terms.len(), n);
    for k in 0..n {
        plan.terms.extend_from_slice(low.terms(k));
        plan.terms.extend_from_slice(high.terms(k));
        plan.end_sample();
    }
    Ok(plan)
}

/// Runs the inverse transform in place on `plane` (row-major, `width` columns), which on
/// entry holds the dequantized subbands at the positions given by `geometry`.
pub(super) fn reconstruct(
    plane: &mut [f32],
    width: usize,
    geometry: &Geometry,
    filters: &SynthesisFilters<'_>,
) -> Result<(), ImageError> {
    let mut scratch: Vec<f32> = Vec::new();
    for node in geometry.nodes.iter().rev() {
        let r = node.rect;
        if r.width == 0 || r.height == 0 {
            continue;
        }
        let outside = || ImageError::Corrupt {
            format: "WSQ",
            detail: "wavelet node outside the image".into(),
        };

        // Columns: output row k of the node is a weighted sum of whole input rows, so the
        // pass runs row by row (cache friendly) with the same per-sample order of terms.
        let plan = line_plan(r.height, node.high_first_in_columns, filters)?;
        scratch.clear();
        scratch.resize(r.width * r.height, 0.0);
        for (k, out_row) in scratch.chunks_exact_mut(r.width).enumerate() {
            for (t, &(src, coef)) in plan.terms(k).iter().enumerate() {
                let start = (r.y + src) * width + r.x;
                let in_row = plane.get(start..start + r.width).ok_or_else(outside)?;
                if t == 0 {
                    for (o, &v) in out_row.iter_mut().zip(in_row) {
                        *o = v * coef;
                    }
                } else {
                    for (o, &v) in out_row.iter_mut().zip(in_row) {
                        *o += v * coef;
                    }
                }
            }
        }

        // Rows. Each output sample is a serial sum (its order is fixed, for exactness), so
        // rows go through in groups whose independent sums can overlap in the CPU.
        let plan = line_plan(r.width, node.high_first_in_rows, filters)?;
        let mut groups = scratch.chunks_exact(ROW_GROUP * r.width);
        for (g, group) in groups.by_ref().enumerate() {
            let first = (r.y + g * ROW_GROUP) * width + r.x;
            synthesise_rows::<ROW_GROUP>(group, r.width, &plan, plane, first, width);
        }
        let done = r.height - r.height % ROW_GROUP;
        for (i, row) in groups.remainder().chunks_exact(r.width).enumerate() {
            let first = (r.y + done + i) * width + r.x;
            synthesise_rows::<1>(row, r.width, &plan, plane, first, width);
        }
    }
    Ok(())
}

/// Rows synthesised together by [`synthesise_rows`].
const ROW_GROUP: usize = 8;

/// Rebuilds `N` rows of `n` samples from `input` (the rows' bands, one row after another)
/// into `plane`, the first row starting at `first_out` and the rows `width` apart.
fn synthesise_rows<const N: usize>(
    input: &[f32],
    n: usize,
    plan: &LinePlan,
    plane: &mut [f32],
    first_out: usize,
    width: usize,
) {
    let sample = |row: usize, src: usize| input.get(row * n + src).copied().unwrap_or(0.0);
    let mut acc = [0.0f32; N];
    for k in 0..n {
        let mut terms = plan.terms(k).iter();
        if let Some(&(src, coef)) = terms.next() {
            for (row, a) in acc.iter_mut().enumerate() {
                *a = sample(row, src) * coef;
            }
        }
        for &(src, coef) in terms {
            for (row, a) in acc.iter_mut().enumerate() {
                *a += sample(row, src) * coef;
            }
        }
        for (row, &a) in acc.iter().enumerate() {
            if let Some(out) = plane.get_mut(first_out + row * width + k) {
                *out = a;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The standard 7/9 synthesis pair (values as the reference encoder writes them).
    fn standard() -> TransformTable {
        let h0 = [
            0.852_698_7f32,
            0.377_402_85,
            -0.110_624_4,
            -0.023_849_465,
            0.037_828_455,
        ];
        let h1 = [0.788_485_6f32, -0.418_092_27, -0.040_689_42, 0.064_538_88];
        let expand = |half: &[f32]| {
            let c = half.len() - 1;
            let mut f = vec![0.0; 2 * c + 1];
            for (k, &v) in half.iter().enumerate() {
                let v = if k % 2 == 1 { -v } else { v };
                f[c + k] = v;
                f[c - k] = v;
            }
            f
        };
        TransformTable {
            lowpass: expand(&h1),
            highpass: expand(&h0),
        }
    }

    /// Forward analysis with whole-sample symmetric extension, low band at even positions,
    /// high band at odd positions, as the WSQ encoder does.
    fn analyse(x: &[f32], h0: &[f32], h1: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let n = x.len() as isize;
        let at = |mut i: isize| {
            while i < 0 || i >= n {
                i = if i < 0 { -i } else { 2 * (n - 1) - i };
            }
            x[i as usize]
        };
        let filt = |f: &[f32], centre: isize| {
            let c = (f.len() / 2) as isize;
            f.iter()
                .enumerate()
                .map(|(k, &v)| v * at(centre + k as isize - c))
                .sum::<f32>()
        };
        let low = (0..n).step_by(2).map(|i| filt(h0, i)).collect();
        let high = (1..n).step_by(2).map(|i| filt(h1, i)).collect();
        (low, high)
    }

    #[test]
    fn synthesis_inverts_analysis_for_even_and_odd_lengths() {
        let table = standard();
        let filters = SynthesisFilters::new(&table).unwrap();
        // Analysis filters from the synthesis ones: h0[k] = (-1)^k g1[k], h1[k] = (-1)^k g0[k].
        let modulate = |g: &[f32]| {
            let c = g.len() / 2;
            g.iter()
                .enumerate()
                .map(|(i, &v)| if (i + c) % 2 == 1 { -v } else { v })
                .collect::<Vec<_>>()
        };
        let h0 = modulate(&table.highpass);
        let h1 = modulate(&table.lowpass);
        for n in [8usize, 9, 10, 11, 16, 31, 64, 125] {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 23) as f32) - 11.0 + (i as f32 * 0.3).sin())
                .collect();
            let (low, high) = analyse(&x, &h0, &h1);
            let mut line = low.clone();
            line.extend(&high);
            let plan = line_plan(n, false, &filters).unwrap();
            for (k, &want) in x.iter().enumerate() {
                let got: f32 = plan.terms(k).iter().map(|&(i, c)| line[i] * c).sum();
                assert!((got - want).abs() < 1e-3, "n={n} k={k}: {got} vs {want}");
            }
            // High band first: the same result from the swapped line.
            let mut swapped = high.clone();
            swapped.extend(&low);
            let plan = line_plan(n, true, &filters).unwrap();
            for (k, &want) in x.iter().enumerate() {
                let got: f32 = plan.terms(k).iter().map(|&(i, c)| swapped[i] * c).sum();
                assert!(
                    (got - want).abs() < 1e-3,
                    "inverted n={n} k={k}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn lines_too_short_for_the_filters_are_errors_not_panics() {
        let table = standard();
        let filters = SynthesisFilters::new(&table).unwrap();
        for n in 0..4 {
            let _ = line_plan(n, false, &filters);
            let _ = line_plan(n, true, &filters);
        }
        assert!(line_plan(1, false, &filters).is_err());
        assert!(line_plan(4, false, &filters).is_ok());
    }

    #[test]
    fn rejects_unpaired_filter_lengths() {
        let t = TransformTable {
            lowpass: vec![1.0; 7],
            highpass: vec![1.0; 7],
        };
        assert!(SynthesisFilters::new(&t).is_err());
        let t = TransformTable {
            lowpass: vec![1.0; 9],
            highpass: vec![1.0; 7],
        };
        assert!(SynthesisFilters::new(&t).is_ok());
    }
}
