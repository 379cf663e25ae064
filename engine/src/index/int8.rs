//! Int8 dot products with runtime CPU dispatch (AVX-512 VNNI, AVX-512BW, AVX2, scalar; NEON is left to the
//! compiler's auto-vectorisation of the scalar loop on aarch64). Integer arithmetic, so every path returns the
//! same value as the scalar one, bit for bit; the vector paths only go faster.
//!
//! Range: rows are at most [`MAX_DIM`] elements, so no kernel's `i32` sums can overflow (the
//! VNNI kernel's biased products reach 255·128 per element).

use std::sync::OnceLock;

/// Longest row [`dots`] accepts (the store's face dimension limit is far below it).
pub const MAX_DIM: usize = 65_536;

/// Scores `query` against `rows` (row `r` at `rows[r * stride..][..query.len()]`), writing one
/// dot product per row into `out` (`out.len()` rows). Panics if a row is out of bounds.
pub fn dots(query: &[i8], rows: &[i8], stride: usize, out: &mut [i32]) {
    assert!(query.len() <= stride, "query longer than the row stride");
    assert!(query.len() <= MAX_DIM, "rows longer than MAX_DIM");
    assert!(out.is_empty() || (out.len() - 1) * stride + query.len() <= rows.len());
    (kernel().dots)(query, rows, stride, out)
}

/// The kernel the CPU supports, chosen once.
pub fn kernel_name() -> &'static str {
    kernel().name
}

/// `dots` without the checks: (query, rows, stride, out).
type DotsFn = fn(&[i8], &[i8], usize, &mut [i32]);

struct Kernel {
    name: &'static str,
    dots: DotsFn,
}

fn kernel() -> &'static Kernel {
    static K: OnceLock<Kernel> = OnceLock::new();
    K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
        {
            return Kernel {
                name: "avx512vnni",
                dots: dots_vnni,
            };
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512bw") {
            return Kernel {
                name: "avx512bw",
                dots: dots_avx512,
            };
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Kernel {
                name: "avx2",
                dots: dots_avx2,
            };
        }
        Kernel {
            name: "scalar",
            dots: dots_scalar,
        }
    })
}

/// One int8 dot product, plainly: the reference, and every vector kernel's tail.
#[inline]
fn dot_scalar(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

/// The reference: plain Rust (which the compiler may auto-vectorise for the baseline target).
pub fn dots_scalar(query: &[i8], rows: &[i8], stride: usize, out: &mut [i32]) {
    for (r, o) in out.iter_mut().enumerate() {
        let row = &rows[r * stride..r * stride + query.len()];
        *o = dot_scalar(query, row);
    }
}

#[cfg(target_arch = "x86_64")]
fn dots_avx2(query: &[i8], rows: &[i8], stride: usize, out: &mut [i32]) {
    // SAFETY: chosen only when the CPU reports AVX2; bounds were checked by `dots`.
    unsafe { dots_avx2_impl(query, rows, stride, out) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dots_avx2_impl(query: &[i8], rows: &[i8], stride: usize, out: &mut [i32]) {
    use std::arch::x86_64::*;
    let n = query.len();
    let full = n / 32 * 32;
    for (r, o) in out.iter_mut().enumerate() {
        let row = &rows[r * stride..r * stride + n];
        let mut acc = _mm256_setzero_si256();
        let mut i = 0;
        while i < full {
            // SAFETY: i + 32 <= full <= n, the length of both slices.
            let (a, b) = unsafe {
                (
                    _mm256_loadu_si256(query.as_ptr().add(i).cast()),
                    _mm256_loadu_si256(row.as_ptr().add(i).cast()),
                )
            };
            // Sign-extend to 16 bits (exact for every i8, -128 included), multiply and add
            // adjacent pairs into 32-bit lanes.
            let a_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(a));
            let a_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(a));
            let b_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(b));
            let b_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(b));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(a_lo, b_lo));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(a_hi, b_hi));
            i += 32;
        }
        let mut lanes = [0i32; 8];
        // SAFETY: `lanes` is 32 bytes.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc) };
        let tail = dot_scalar(&query[full..], &row[full..]);
        *o = lanes.iter().sum::<i32>() + tail;
    }
}

#[cfg(target_arch = "x86_64")]
fn dots_avx512(query: &[i8], rows: &[i8], stride: usize, out: &mut [i32]) {
    // SAFETY: chosen only when the CPU reports AVX-512BW; bounds were checked by `dots`.
    unsafe { dots_avx512_impl(query, rows, stride, out) }
}

/// The AVX2 method at twice the width, with the query widened to 16 bits once per call rather
/// than once per row: per 32 bytes of a row, one sign extension and one multiply-add into
/// sixteen 32-bit lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn dots_avx512_impl(query: &[i8], rows: &[i8], stride: usize, out: &mut [i32]) {
    use std::arch::x86_64::*;
    let n = query.len();
    let full = n / 32 * 32;
    let wide: Vec<__m512i> = (0..full)
        .step_by(32)
        // SAFETY: i + 32 <= full <= n.
        .map(|i| _mm512_cvtepi8_epi16(unsafe { _mm256_loadu_si256(query.as_ptr().add(i).cast()) }))
        .collect();
    for (r, o) in out.iter_mut().enumerate() {
        let row = &rows[r * stride..r * stride + n];
        let mut acc = _mm512_setzero_si512();
        for (k, q) in wide.iter().enumerate() {
            // SAFETY: 32·k + 32 <= full <= n, the row's length.
            let b = unsafe { _mm256_loadu_si256(row.as_ptr().add(32 * k).cast()) };
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(*q, _mm512_cvtepi8_epi16(b)));
        }
        let tail = dot_scalar(&query[full..], &row[full..]);
        *o = _mm512_reduce_add_epi32(acc) + tail;
    }
}

#[cfg(target_arch = "x86_64")]
fn dots_vnni(query: &[i8], rows: &[i8], stride: usize, out: &mut [i32]) {
    // SAFETY: chosen only when the CPU reports AVX-512BW and VNNI; bounds checked by `dots`.
    unsafe { dots_vnni_impl(query, rows, stride, out) }
}

/// VNNI multiplies unsigned by signed bytes, four at a time into each 32-bit lane, with no
/// widening step. Rows are signed, so each row byte is flipped to `row + 128` (xor 0x80, exact
/// for every i8) and the `128·Σquery` this adds is taken off at the end: still exact integers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn dots_vnni_impl(query: &[i8], rows: &[i8], stride: usize, out: &mut [i32]) {
    use std::arch::x86_64::*;
    let n = query.len();
    let full = n / 64 * 64;
    let bias = 128 * query[..full].iter().map(|&q| i32::from(q)).sum::<i32>();
    let flip = _mm512_set1_epi8(-128);
    let wide: Vec<__m512i> = (0..full)
        .step_by(64)
        // SAFETY: i + 64 <= full <= n.
        .map(|i| unsafe { _mm512_loadu_si512(query.as_ptr().add(i).cast()) })
        .collect();
    for (r, o) in out.iter_mut().enumerate() {
        let row = &rows[r * stride..r * stride + n];
        let mut acc = _mm512_setzero_si512();
        for (k, q) in wide.iter().enumerate() {
            // SAFETY: 64·k + 64 <= full <= n, the row's length.
            let b = unsafe { _mm512_loadu_si512(row.as_ptr().add(64 * k).cast()) };
            acc = _mm512_dpbusd_epi32(acc, _mm512_xor_si512(b, flip), *q);
        }
        let tail = dot_scalar(&query[full..], &row[full..]);
        *o = _mm512_reduce_add_epi32(acc) - bias + tail;
    }
}

/// Every kernel this CPU can run, by name (the dispatched one is among them).
#[cfg(test)]
fn available_kernels() -> Vec<(&'static str, DotsFn)> {
    let mut k: Vec<(&'static str, DotsFn)> = vec![("scalar", dots_scalar)];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            k.push(("avx2", dots_avx2));
        }
        if std::arch::is_x86_feature_detected!("avx512bw") {
            k.push(("avx512bw", dots_avx512));
        }
        if std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
        {
            k.push(("avx512vnni", dots_vnni));
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn index_int8_dispatched_dots_equal_scalar(
            dim in 1usize..300,
            pad in 0usize..40,
            rows in 1usize..12,
            seed in any::<u64>(),
        ) {
            let stride = dim + pad;
            let mut s = seed | 1;
            let mut next = move || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s as i8 };
            let query: Vec<i8> = (0..dim).map(|_| next()).collect();
            let matrix: Vec<i8> = (0..rows * stride).map(|_| next()).collect();
            let mut want = vec![0; rows];
            let mut got = vec![0; rows];
            dots_scalar(&query, &matrix, stride, &mut want);
            dots(&query, &matrix, stride, &mut got);
            prop_assert_eq!(&want, &got);
            for (name, kernel) in available_kernels() {
                got.fill(0);
                kernel(&query, &matrix, stride, &mut got);
                prop_assert_eq!(&want, &got, "kernel {}", name);
            }
        }
    }

    #[test]
    fn index_int8_extremes_are_exact() {
        let q = vec![-128i8; 192];
        let m = vec![-128i8; 192 * 2];
        let mut out = [0; 2];
        for (name, kernel) in available_kernels() {
            out = [0; 2];
            kernel(&q, &m, 192, &mut out);
            assert_eq!(out, [192 * 128 * 128; 2], "kernel {name}");
        }
        dots(&q, &m, 192, &mut out);
        assert_eq!(out, [192 * 128 * 128; 2]);
        println!("int8 kernel: {}", kernel_name());
    }
}
