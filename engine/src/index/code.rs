//! The first stage of the 1:N index: a 160-byte code per finger, resident in memory, compared by
//! counting equal bytes.
//!
//! # The code
//! Each coarse cylinder of a finger ([`super::local`]) is hashed by [`FUNCTIONS`]
//! locality-sensitive functions; function `t` reads [`SAMPLE_BITS`] fixed cells of the cylinder
//! (chosen once among the cells within 80 % of its radius) and gives a token when all of them
//! are valid and at least two are set. Two impressions of a finger share many tokens; two
//! fingers rarely do (bit sampling of Minutia Cylinder-Codes, as in Cappelli, Ferrara & Maltoni's
//! MCC indexing, *IEEE TPAMI* 2011).
//!
//! The set of tokens is summarised by one-permutation MinHash ([`SLOTS`] bins, the minimum hash
//! of the tokens in each bin, empty bins filled from the next non-empty one; Li, Owen & Zhang,
//! NIPS 2012; Shrivastava & Li, ICML 2014) keeping 8 bits of each minimum: the share of equal
//! bytes estimates the Jaccard similarity of the two token sets, plus 1/256 by chance. Measured
//! on synthetic people (ten fingers, 5,000 in the gallery): every ten-finger mate is ranked
//! first; four fingers (thumbs and index fingers) put 1 mate in 200 outside the best 1 %. One
//! finger alone is a weak filter, which is why a search with fewer than four fingers skips this
//! stage and goes to the second one ([`super::local`]) directly.
//!
//! Codes are equal bytes compared, so a scan is one byte-compare and one popcount per 64 bytes
//! (AVX-512BW or AVX2 chosen at run time, same counts on every path).

use std::sync::OnceLock;

use super::local::LocalForm;
use crate::hash::mix;

/// Bytes (MinHash bins) of one finger's code.
pub const SLOTS: usize = 160;
/// Locality-sensitive functions per cylinder.
pub const FUNCTIONS: usize = 64;
/// Cells one function samples.
pub const SAMPLE_BITS: usize = 24;
/// Equal bytes two unrelated codes share by chance, on average.
pub const CHANCE: f32 = SLOTS as f32 / 256.0;

/// One finger's code. `empty` codes (no usable cylinder) match nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct FingerCode {
    pub bytes: [u8; SLOTS],
    pub empty: bool,
}

impl std::fmt::Debug for FingerCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FingerCode")
            .field("empty", &self.empty)
            .finish_non_exhaustive()
    }
}

/// What one function reads of a cylinder: the cells that must be valid, and per direction
/// layer the bits it samples.
struct Sampler {
    cells: u64,
    layers: [u64; 6],
}

/// The sampled (layer·64 + cell) bits of each function, fixed by a constant seed so that codes
/// from every build agree (a persisted index depends on it), as masks.
fn samplers() -> &'static [Sampler; FUNCTIONS] {
    static SAMPLERS: OnceLock<[Sampler; FUNCTIONS]> = OnceLock::new();
    SAMPLERS.get_or_init(|| {
        let side = 8usize;
        let cell = 2.0 * 70.0 / side as f32;
        let inner: Vec<u16> = (0..side * side)
            .filter(|&c| {
                let h = (side as f32 - 1.0) / 2.0;
                let (i, j) = ((c % side) as f32 - h, (c / side) as f32 - h);
                (i * cell).hypot(j * cell) <= 0.8 * 70.0
            })
            .map(|c| c as u16)
            .collect();
        let mut state = 0x1DE7_C0DE_u64;
        let mut next = |n: usize| {
            state = mix(state);
            (((state >> 32) * n as u64) >> 32) as usize
        };
        std::array::from_fn(|_| {
            let mut s = Sampler {
                cells: 0,
                layers: [0; 6],
            };
            let mut k = 0;
            while k < SAMPLE_BITS {
                let (layer, c) = (next(6), inner[next(inner.len())]);
                if s.layers[layer] >> c & 1 == 0 {
                    s.layers[layer] |= 1 << c;
                    s.cells |= 1 << c;
                    k += 1;
                }
            }
            s
        })
    })
}

/// The tokens of a form: one per (cylinder, function) whose sampled cells are all valid and at
/// least two of them set, hashed from the function and the sampled bits.
fn tokens(form: &LocalForm) -> impl Iterator<Item = u64> + '_ {
    let samplers = samplers();
    form.cylinders.iter().flat_map(move |c| {
        samplers.iter().enumerate().filter_map(move |(t, s)| {
            if c.mask & s.cells != s.cells {
                return None;
            }
            let mut ones = 0;
            let mut h = (t as u64) << 40;
            for (bits, sampled) in c.bits.iter().zip(&s.layers) {
                let w = bits & sampled;
                ones += w.count_ones();
                h = mix(h ^ w);
            }
            (ones >= 2).then_some(h)
        })
    })
}

impl FingerCode {
    /// The code of a finger's coarse form.
    pub fn of(form: &LocalForm) -> FingerCode {
        const NONE: u32 = u32::MAX;
        let mut mins = [NONE; SLOTS];
        for t in tokens(form) {
            let h = mix(t ^ 0x0B5E_55ED);
            let bin = (((h >> 32) * SLOTS as u64) >> 32) as usize;
            let v = h as u32;
            if v < mins[bin] {
                mins[bin] = v;
            }
        }
        if mins.iter().all(|&m| m == NONE) {
            return FingerCode {
                bytes: [0xFF; SLOTS],
                empty: true,
            };
        }
        // Densification: an empty bin takes the next non-empty bin's minimum, shifted by the
        // distance, so two codes agree on a filled-in bin only when they would on its source.
        let mut bytes = [0u8; SLOTS];
        for (i, b) in bytes.iter_mut().enumerate() {
            let (j, m) = (0..SLOTS)
                .map(|d| (d, mins[(i + d) % SLOTS]))
                .find(|&(_, m)| m != NONE)
                .unwrap_or((0, 0));
            *b = mix(u64::from(m) ^ ((j as u64) << 33)) as u8;
        }
        FingerCode {
            bytes,
            empty: false,
        }
    }

    /// Equal bytes less those two unrelated codes share by chance (0 with an empty code).
    pub fn similarity(&self, other: &FingerCode) -> f32 {
        if self.empty || other.empty {
            return 0.0;
        }
        equal_bytes(&self.bytes, &other.bytes) as f32 - CHANCE
    }
}

/// How many bytes of `a` and `b` are equal (same length), with the widest kernel the CPU has.
#[inline]
pub fn equal_bytes(a: &[u8], b: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if kernels().avx512 {
            // SAFETY: the CPU has AVX-512F and AVX-512BW (checked once, at first use).
            return unsafe { equal_bytes_avx512(a, b) };
        }
        if kernels().avx2 {
            // SAFETY: the CPU has AVX2 (checked once, at first use).
            return unsafe { equal_bytes_avx2(a, b) };
        }
    }
    equal_bytes_scalar(a, b)
}

struct Kernels {
    avx512: bool,
    avx2: bool,
}

fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            Kernels {
                avx512: std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw"),
                avx2: std::arch::is_x86_feature_detected!("avx2"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Kernels {
            avx512: false,
            avx2: false,
        }
    })
}

/// The name of the kernel [`equal_bytes`] uses on this CPU.
pub fn kernel_name() -> &'static str {
    let k = kernels();
    if k.avx512 {
        "avx512bw"
    } else if k.avx2 {
        "avx2"
    } else {
        "scalar"
    }
}

pub fn equal_bytes_scalar(a: &[u8], b: &[u8]) -> u32 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as u32
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,popcnt")]
unsafe fn equal_bytes_avx512(a: &[u8], b: &[u8]) -> u32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let mut count = 0u32;
    let mut i = 0;
    while i + 64 <= n {
        // SAFETY: i + 64 <= n, the length of both slices.
        let (x, y) = unsafe {
            (
                _mm512_loadu_si512(a.as_ptr().add(i).cast()),
                _mm512_loadu_si512(b.as_ptr().add(i).cast()),
            )
        };
        count += _mm512_cmpeq_epi8_mask(x, y).count_ones();
        i += 64;
    }
    if i < n {
        let mask: u64 = u64::MAX >> (64 - (n - i));
        // SAFETY: masked loads read only the `n - i` bytes left in both slices.
        let (x, y) = unsafe {
            (
                _mm512_maskz_loadu_epi8(mask, a.as_ptr().add(i).cast()),
                _mm512_maskz_loadu_epi8(mask, b.as_ptr().add(i).cast()),
            )
        };
        count += (_mm512_cmpeq_epi8_mask(x, y) & mask).count_ones();
    }
    count
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn equal_bytes_avx2(a: &[u8], b: &[u8]) -> u32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let mut count = 0u32;
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: i + 32 <= n, the length of both slices.
        let (x, y) = unsafe {
            (
                _mm256_loadu_si256(a.as_ptr().add(i).cast()),
                _mm256_loadu_si256(b.as_ptr().add(i).cast()),
            )
        };
        count += (_mm256_movemask_epi8(_mm256_cmpeq_epi8(x, y)) as u32).count_ones();
        i += 32;
    }
    count + equal_bytes_scalar(&a[i..n], &b[i..n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{person_seed, MasterFinger};

    fn code(person: u64, capture: u64) -> FingerCode {
        let t = MasterFinger::generate(person_seed(11, person), 7).impression(capture);
        FingerCode::of(&LocalForm::of(&t))
    }

    #[test]
    fn every_kernel_counts_alike() {
        let a: Vec<u8> = (0..300u64).map(|i| mix(i) as u8 % 4).collect();
        let b: Vec<u8> = (0..300u64).map(|i| mix(i + 7) as u8 % 4).collect();
        for len in [0, 1, 31, 32, 33, 63, 64, 65, 100, 160, 300] {
            let want = equal_bytes_scalar(&a[..len], &b[..len]);
            assert_eq!(equal_bytes(&a[..len], &b[..len]), want, "length {len}");
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: checked just above.
                    assert_eq!(unsafe { equal_bytes_avx2(&a[..len], &b[..len]) }, want);
                }
                if std::arch::is_x86_feature_detected!("avx512bw") {
                    // SAFETY: checked just above.
                    assert_eq!(unsafe { equal_bytes_avx512(&a[..len], &b[..len]) }, want);
                }
            }
        }
    }

    #[test]
    fn mates_share_more_bytes_than_strangers() {
        let mut wins = 0;
        for p in 0..40 {
            let (a, mate, stranger) = (code(p, 1), code(p, 2), code(p + 500, 2));
            assert!(!a.empty);
            if a.similarity(&mate) > a.similarity(&stranger) {
                wins += 1;
            }
        }
        assert!(wins >= 36, "mate beat stranger {wins} of 40");
    }

    #[test]
    fn codes_are_frozen_across_builds() {
        // A persisted index stays valid only while the encoding is this exact function (of a
        // fixed form, independent of the synthetic generator).
        let form = LocalForm {
            cylinders: (0..30u64)
                .map(|i| {
                    let mask = mix(i) | mix(i + 1000);
                    crate::index::local::LocalCylinder {
                        bits: std::array::from_fn(|l| mix(i * 8 + l as u64) & mask),
                        mask,
                        x: i as f32,
                        y: 0.0,
                        dir: 0.0,
                    }
                })
                .collect(),
        };
        let c = FingerCode::of(&form);
        let sum: u64 = c
            .bytes
            .iter()
            .enumerate()
            .map(|(i, &b)| (i as u64 + 1) * u64::from(b))
            .sum();
        assert!(FingerCode::of(&LocalForm::default()).empty);
        assert_eq!(
            sum, FROZEN_CHECKSUM,
            "the finger code changed: bump the index version"
        );
    }

    const FROZEN_CHECKSUM: u64 = 1_602_142;
}
