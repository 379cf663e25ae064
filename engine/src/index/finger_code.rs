//! Fixed-length fingerprint codes for picking 1:N candidates, and a person-major index of them.
//!
//! # The code
//! Each usable Minutia Cylinder-Code cylinder of a template (see `matcher`) is hashed by
//! [`TABLES`] locality-sensitive functions. Function `t` reads [`SAMPLE_BITS`] fixed cells of the
//! cylinder (chosen once, at random, among the cells near its centre, which are valid in most
//! cylinders); a cylinder whose sampled cells are not all valid gives nothing for `t`, and a
//! pattern with fewer than two set bits (the near-empty pattern every sparse cylinder shares) is
//! skipped. The pattern is hashed to one of [`BLOCK_BITS`] bits of block `t` of the code. A
//! template is thus a Bloom-like set of (function, pattern) pairs: [`CODE_BYTES`] bytes whatever
//! its minutiae count, rotation and translation invariant because cylinders are.
//!
//! Two impressions of a finger share many cylinders whose sampled cells agree, so their codes
//! share bits beyond chance; the similarity is the number of shared bits less the number two
//! unrelated codes with these fill rates would share, over `√(|A|·|B|)`.
//!
//! The idea follows Cappelli, Ferrara & Maltoni's MCC indexing (LSH by bit sampling of
//! cylinders, *IEEE TPAMI* 2011), folded here into a fixed-length bit vector so that a search is
//! a sequential AND-popcount scan (no inverted lists to update on insert or delete).
//!
//! # The index
//! Codes are kept person-major (`[person][finger 1..=10][word]`), so a ten-finger probe reads
//! each person's codes once, contiguously; scores of the probe's fingers are summed over the
//! fingers both sides have (multi-finger fusion), and the best `k` people form the short list
//! that the full matcher then decides on.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;
use thiserror::Error;

use crate::hash::mix;
use crate::matcher::{PreparedTemplate, CYLINDER_LAYERS, CYLINDER_RADIUS, CYLINDER_SIDE};

/// Hash functions (blocks) per code.
pub const TABLES: usize = 64;
/// Bits per block.
pub const BLOCK_BITS: usize = 256;
/// Cells sampled by one hash function.
pub const SAMPLE_BITS: usize = 32;
pub const CODE_WORDS: usize = TABLES * BLOCK_BITS / 64;
pub const CODE_BYTES: usize = CODE_WORDS * 8;
/// Finger positions per person in the index (ISO 1..=10).
pub const FINGERS: usize = 10;

/// One finger's code.
#[derive(Clone, PartialEq, Eq)]
pub struct FingerCode {
    pub words: [u64; CODE_WORDS],
}

impl std::fmt::Debug for FingerCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FingerCode")
            .field("ones", &self.ones())
            .finish_non_exhaustive()
    }
}

impl FingerCode {
    pub fn empty() -> FingerCode {
        FingerCode {
            words: [0; CODE_WORDS],
        }
    }

    pub fn ones(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }

    /// Similarity in about `[-0.1, 1]`: ~0 for unrelated fingers, higher for mates.
    pub fn similarity(&self, other: &FingerCode) -> f32 {
        similarity(
            and_popcount(&self.words, &other.words),
            self.ones(),
            other.ones(),
        )
    }
}

/// Shared bits above chance over `√(|A|·|B|)` (0 when either code is empty).
#[inline]
pub fn similarity(shared: u32, a_ones: u32, b_ones: u32) -> f32 {
    if a_ones == 0 || b_ones == 0 {
        return 0.0;
    }
    let (a, b) = (a_ones as f32, b_ones as f32);
    let chance = a * b / (TABLES * BLOCK_BITS) as f32;
    (shared as f32 - chance) / (a * b).sqrt()
}

/// `popcount(a & b)` over equal-length slices: AVX-512 VPOPCNTDQ, else the popcnt
/// instruction, else a portable loop, chosen at run time. Same result on every path.
#[inline]
pub fn and_popcount(a: &[u64], b: &[u64]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512vpopcntdq") {
            // SAFETY: the CPU has AVX-512F and VPOPCNTDQ (checked just above).
            return unsafe { and_popcount_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has popcnt (checked just above).
            return unsafe { and_popcount_popcnt(a, b) };
        }
    }
    and_popcount_portable(a, b)
}

/// Eight words per step; the remainder (codes are whole steps, other callers may not be) by
/// popcnt.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
unsafe fn and_popcount_avx512(a: &[u64], b: &[u64]) -> u32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let full = n / 8 * 8;
    let mut acc = _mm512_setzero_si512();
    let mut i = 0;
    while i < full {
        // SAFETY: i + 8 <= full <= n, the length of both slices.
        let (x, y) = unsafe {
            (
                _mm512_loadu_si512(a.as_ptr().add(i).cast()),
                _mm512_loadu_si512(b.as_ptr().add(i).cast()),
            )
        };
        acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_and_si512(x, y)));
        i += 8;
    }
    let tail: u32 = a[full..n]
        .iter()
        .zip(&b[full..n])
        .map(|(x, y)| (x & y).count_ones())
        .sum();
    _mm512_reduce_add_epi64(acc) as u32 + tail
}

fn and_popcount_portable(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x & y).count_ones()).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn and_popcount_popcnt(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x & y).count_ones()).sum()
}

/// Computes codes from prepared templates. The sampled cells are fixed by a constant seed: codes
/// from any build of the engine are comparable.
#[derive(Debug, Clone)]
pub struct FingerCoder {
    /// Per function: (bit index in the cylinder, cell index for the mask).
    samples: Vec<[(u16, u16); SAMPLE_BITS]>,
}

impl Default for FingerCoder {
    fn default() -> Self {
        FingerCoder::new()
    }
}

impl FingerCoder {
    pub fn new() -> FingerCoder {
        let side = CYLINDER_SIDE;
        let cell = 2.0 * CYLINDER_RADIUS / side as f32;
        // Cells whose centre lies within 60 % of the radius: valid in nearly every cylinder.
        let inner: Vec<u16> = (0..side * side)
            .filter(|&c| {
                let (i, j) = ((c % side) as f32, (c / side) as f32);
                let h = (side as f32 - 1.0) / 2.0;
                ((i - h) * cell).hypot((j - h) * cell) <= 0.6 * CYLINDER_RADIUS
            })
            .map(|c| c as u16)
            .collect();
        let mut state = 0xC0DE_5EED_u64;
        let mut next = |n: usize| {
            state = mix(state);
            (((state >> 32) * n as u64) >> 32) as usize
        };
        let samples = (0..TABLES)
            .map(|_| {
                let mut s = [(0u16, 0u16); SAMPLE_BITS];
                let mut k = 0;
                while k < SAMPLE_BITS {
                    let c = inner[next(inner.len())];
                    let layer = next(CYLINDER_LAYERS) as u16;
                    let bit = layer * (side * side) as u16 + c;
                    if s[..k].iter().all(|&(b, _)| b != bit) {
                        s[k] = (bit, c);
                        k += 1;
                    }
                }
                s
            })
            .collect();
        FingerCoder { samples }
    }

    /// The code of a prepared template.
    pub fn encode(&self, template: &PreparedTemplate) -> FingerCode {
        let mut code = FingerCode::empty();
        let get = |words: &[u64], i: u16| (words[usize::from(i) / 64] >> (i % 64)) & 1;
        for (bits, mask) in template.cylinder_words() {
            for (t, sample) in self.samples.iter().enumerate() {
                if sample.iter().any(|&(_, c)| get(mask, c) == 0) {
                    continue;
                }
                let pattern = sample
                    .iter()
                    .enumerate()
                    .fold(0u64, |p, (k, &(b, _))| p | get(bits, b) << k);
                if pattern.count_ones() < 2 {
                    continue;
                }
                let slot = (mix(pattern ^ (t as u64) << 32) % BLOCK_BITS as u64) as usize;
                let bit = t * BLOCK_BITS + slot;
                code.words[bit / 64] |= 1 << (bit % 64);
            }
        }
        code
    }
}

/// A probe for [`CodeIndex::search`]: the code of each finger position it has.
#[derive(Debug, Clone, Default)]
pub struct CodeProbe {
    fingers: Vec<(usize, FingerCode, u32)>,
}

impl CodeProbe {
    /// Adds the code of ISO `position` (1..=10; others are ignored: an unknown position cannot
    /// be looked up person-major).
    pub fn add(&mut self, position: u8, code: FingerCode) {
        if (1..=FINGERS as u8).contains(&position) {
            let ones = code.ones();
            self.fingers.push((usize::from(position) - 1, code, ones));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.fingers.is_empty()
    }
}

/// A person on the short list: index in the code index and fused code similarity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodeHit {
    pub person: u32,
    pub score: f32,
}

impl Eq for CodeHit {}
impl Ord for CodeHit {
    /// Reversed, so that `BinaryHeap` keeps the worst of the best `k` on top.
    fn cmp(&self, o: &Self) -> Ordering {
        o.score
            .total_cmp(&self.score)
            .then(self.person.cmp(&o.person))
    }
}
impl PartialOrd for CodeHit {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Adds `hit` to `heap` if it is among the best `k` seen (the heap's top is the worst kept).
fn keep_best(heap: &mut BinaryHeap<CodeHit>, hit: CodeHit, k: usize) {
    if heap.len() < k {
        heap.push(hit);
    } else if heap.peek().is_some_and(|w| hit < *w) {
        heap.pop();
        heap.push(hit);
    }
}

/// Codes of many people, person-major, with each code's popcount.
#[derive(Debug, Clone, Default)]
pub struct CodeIndex {
    words: Vec<u64>,
    ones: Vec<u32>,
}

/// Why a saved code index cannot be read.
#[derive(Debug, Error)]
pub enum CodeIndexError {
    #[error("code index: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a code index of this layout ({0})")]
    Format(&'static str),
    #[error("code index is damaged (checksum mismatch)")]
    Checksum,
}

const FILE_MAGIC: &[u8; 8] = b"ABISFCX1";
/// Largest index the reader accepts (people); bounds the allocation a header can ask for.
const MAX_FILE_PEOPLE: u64 = 1 << 28;

/// People per parallel work item.
const CHUNK_PEOPLE: usize = 2048;

impl CodeIndex {
    pub fn new() -> CodeIndex {
        CodeIndex::default()
    }

    pub fn len(&self) -> usize {
        self.ones.len() / FINGERS
    }

    pub fn is_empty(&self) -> bool {
        self.ones.is_empty()
    }

    /// Appends a person (`codes[p]` is ISO position `p + 1`; `None` for a finger not enrolled).
    /// Returns the person's index.
    pub fn push(&mut self, codes: &[Option<FingerCode>; FINGERS]) -> u32 {
        for c in codes {
            match c {
                Some(c) => {
                    self.words.extend_from_slice(&c.words);
                    self.ones.push(c.ones());
                }
                None => {
                    self.words.extend(std::iter::repeat_n(0, CODE_WORDS));
                    self.ones.push(0);
                }
            }
        }
        (self.len() - 1) as u32
    }

    /// Writes the index: magic, layout, people, popcounts, words, CRC-32 of everything before.
    pub fn write_to(&self, out: &mut impl std::io::Write) -> Result<(), CodeIndexError> {
        let mut crc = crc32fast::Hasher::new();
        let mut put = |b: &[u8]| -> Result<(), CodeIndexError> {
            crc.update(b);
            out.write_all(b)?;
            Ok(())
        };
        put(FILE_MAGIC)?;
        for v in [TABLES, BLOCK_BITS, SAMPLE_BITS] {
            put(&(v as u32).to_le_bytes())?;
        }
        put(&(self.len() as u64).to_le_bytes())?;
        for o in &self.ones {
            put(&o.to_le_bytes())?;
        }
        for chunk in self.words.chunks(4096) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|w| w.to_le_bytes()).collect();
            put(&bytes)?;
        }
        let sum = crc.finalize();
        out.write_all(&sum.to_le_bytes())?;
        Ok(())
    }

    /// Reads what [`CodeIndex::write_to`] wrote; any other bytes are a typed error.
    pub fn read_from(bytes: &[u8]) -> Result<CodeIndex, CodeIndexError> {
        let body_len = bytes
            .len()
            .checked_sub(4)
            .ok_or(CodeIndexError::Format("too short"))?;
        let (body, sum) = bytes.split_at(body_len);
        if body.len() < 28 || &body[..8] != FILE_MAGIC {
            return Err(CodeIndexError::Format("magic"));
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([body[o], body[o + 1], body[o + 2], body[o + 3]]);
        if [u32_at(8), u32_at(12), u32_at(16)]
            != [TABLES as u32, BLOCK_BITS as u32, SAMPLE_BITS as u32]
        {
            return Err(CodeIndexError::Format("code layout"));
        }
        let mut people = [0u8; 8];
        people.copy_from_slice(&body[20..28]);
        let people = u64::from_le_bytes(people);
        if people > MAX_FILE_PEOPLE {
            return Err(CodeIndexError::Format("people count"));
        }
        let slots = people as usize * FINGERS;
        if body.len() != 28 + slots * (4 + CODE_BYTES) {
            return Err(CodeIndexError::Format("length"));
        }
        if crc32fast::hash(body).to_le_bytes() != sum {
            return Err(CodeIndexError::Checksum);
        }
        let ones_end = 28 + slots * 4;
        let ones = body[28..ones_end]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let words = body[ones_end..]
            .chunks_exact(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                u64::from_le_bytes(w)
            })
            .collect();
        Ok(CodeIndex { words, ones })
    }

    /// Fused code similarity of `probe` with person `p`: the sum over the probe's fingers.
    fn score(&self, probe: &CodeProbe, p: usize) -> f32 {
        probe
            .fingers
            .iter()
            .map(|(f, code, ones)| {
                let slot = p * FINGERS + f;
                let g = &self.words[slot * CODE_WORDS..][..CODE_WORDS];
                similarity(and_popcount(&code.words, g), *ones, self.ones[slot])
            })
            .sum()
    }

    /// For each person `p` in `block`, the `k` people after it in the index (`q > p`) whose
    /// codes are most similar to `p`'s, best first: one block of a gallery-wide duplicate search
    /// that looks at every pair once. The block's codes stay in cache while the rest of the
    /// index streams past them once.
    pub fn neighbours(&self, block: std::ops::Range<usize>, k: usize) -> Vec<Vec<CodeHit>> {
        let n = self.len();
        let block = block.start.min(n)..block.end.min(n);
        if k == 0 || block.is_empty() {
            return vec![Vec::new(); block.len()];
        }
        let probes: Vec<CodeProbe> = block
            .clone()
            .map(|p| {
                let mut probe = CodeProbe::default();
                for f in 0..FINGERS {
                    let slot = p * FINGERS + f;
                    if self.ones[slot] > 0 {
                        let mut code = FingerCode::empty();
                        code.words
                            .copy_from_slice(&self.words[slot * CODE_WORDS..][..CODE_WORDS]);
                        probe.add(f as u8 + 1, code);
                    }
                }
                probe
            })
            .collect();
        let first = block.start + 1;
        let heaps: Vec<Vec<BinaryHeap<CodeHit>>> = (first..n)
            .step_by(CHUNK_PEOPLE)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|start| {
                let mut heaps = vec![BinaryHeap::with_capacity(k + 1); probes.len()];
                for q in start..(start + CHUNK_PEOPLE).min(n) {
                    for (i, probe) in probes.iter().enumerate() {
                        if q <= block.start + i {
                            continue;
                        }
                        let hit = CodeHit {
                            person: q as u32,
                            score: self.score(probe, q),
                        };
                        keep_best(&mut heaps[i], hit, k);
                    }
                }
                heaps
            })
            .collect();
        (0..probes.len())
            .map(|i| {
                let mut all: Vec<CodeHit> =
                    heaps.iter().flat_map(|h| h[i].iter().copied()).collect();
                all.sort();
                all.truncate(k);
                all
            })
            .collect()
    }

    /// The `k` people most similar to `probe` (best first), scanning every person on all cores.
    pub fn search(&self, probe: &CodeProbe, k: usize) -> Vec<CodeHit> {
        if k == 0 || probe.is_empty() {
            return Vec::new();
        }
        let n = self.len();
        let heaps: Vec<BinaryHeap<CodeHit>> = (0..n.div_ceil(CHUNK_PEOPLE))
            .into_par_iter()
            .map(|c| {
                let mut heap = BinaryHeap::with_capacity(k + 1);
                for p in c * CHUNK_PEOPLE..((c + 1) * CHUNK_PEOPLE).min(n) {
                    let hit = CodeHit {
                        person: p as u32,
                        score: self.score(probe, p),
                    };
                    keep_best(&mut heap, hit, k);
                }
                heap
            })
            .collect();
        let mut all: Vec<CodeHit> = heaps.into_iter().flatten().collect();
        all.sort();
        all.truncate(k);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::Matcher;
    use crate::synth::{person_seed, MasterFinger};

    #[test]
    fn portable_and_dispatched_popcounts_agree() {
        let a: Vec<u64> = (0..CODE_WORDS as u64).map(mix).collect();
        let b: Vec<u64> = (0..CODE_WORDS as u64).map(|i| mix(i + 999)).collect();
        assert_eq!(and_popcount(&a, &b), and_popcount_portable(&a, &b));
        for len in [0, 1, 7, 8, 9, 63, CODE_WORDS] {
            let want = and_popcount_portable(&a[..len], &b[..len]);
            assert_eq!(and_popcount(&a[..len], &b[..len]), want, "length {len}");
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("popcnt") {
                    // SAFETY: checked just above.
                    assert_eq!(unsafe { and_popcount_popcnt(&a[..len], &b[..len]) }, want);
                }
                if std::arch::is_x86_feature_detected!("avx512vpopcntdq") {
                    // SAFETY: checked just above.
                    assert_eq!(unsafe { and_popcount_avx512(&a[..len], &b[..len]) }, want);
                }
            }
        }
        assert_eq!(
            and_popcount(&a, &a),
            a.iter().map(|w| w.count_ones()).sum::<u32>()
        );
    }

    #[test]
    fn mates_share_more_of_their_code_than_strangers() {
        let m = Matcher::new();
        let coder = FingerCoder::new();
        let code = |seed, imp| {
            let t = MasterFinger::generate(seed, 3).impression(imp);
            coder.encode(&m.prepare(&t).unwrap())
        };
        let mut wins = 0;
        for p in 0..40 {
            let a = code(person_seed(5, p), 1);
            let mate = code(person_seed(5, p), 2);
            let stranger = code(person_seed(5, p + 100), 2);
            assert!(a.ones() > 30, "{a:?}");
            if a.similarity(&mate) > a.similarity(&stranger) {
                wins += 1;
            }
        }
        assert!(wins >= 38, "mate beat stranger {wins} times of 40");
    }

    #[test]
    fn neighbours_pair_each_person_with_its_later_duplicate() {
        let m = Matcher::new();
        let coder = FingerCoder::new();
        let mut index = CodeIndex::new();
        // People 0..60, then 60..70 are people 0, 6, .., 54 enrolled again from other captures.
        let person = |r: u64| if r < 60 { (r, 1) } else { ((r - 60) * 6, 2) };
        for r in 0..70u64 {
            let (p, capture) = person(r);
            let mut codes: [Option<FingerCode>; FINGERS] = Default::default();
            for f in [2u8, 7] {
                let t = MasterFinger::generate(person_seed(4, p), f).impression(capture);
                codes[usize::from(f) - 1] = Some(coder.encode(&m.prepare(&t).unwrap()));
            }
            index.push(&codes);
        }
        let all = index.neighbours(0..70, 3);
        assert_eq!(all.len(), 70);
        for (r, hits) in all.iter().enumerate() {
            assert!(
                hits.iter().all(|h| h.person as usize > r),
                "only later people"
            );
            if r < 60 && r % 6 == 0 {
                let dup = 60 + r as u32 / 6;
                assert_eq!(
                    hits.first().map(|h| h.person),
                    Some(dup),
                    "record {r}: {hits:?}"
                );
            }
        }
        // A block gives the same answer as the whole range.
        assert_eq!(index.neighbours(12..20, 3), all[12..20].to_vec());
    }

    #[test]
    fn saved_index_reads_back_and_damage_is_refused() {
        let mut index = CodeIndex::new();
        for p in 0..3u64 {
            let mut codes: [Option<FingerCode>; FINGERS] = Default::default();
            let mut c = FingerCode::empty();
            c.words
                .iter_mut()
                .enumerate()
                .for_each(|(i, w)| *w = mix(p * 1000 + i as u64));
            codes[(p % 10) as usize] = Some(c);
            index.push(&codes);
        }
        let mut bytes = Vec::new();
        index.write_to(&mut bytes).unwrap();
        let back = CodeIndex::read_from(&bytes).unwrap();
        assert_eq!(
            (back.words.clone(), back.ones.clone()),
            (index.words, index.ones)
        );
        for i in (0..bytes.len()).step_by(97).chain([bytes.len() - 1]) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(CodeIndex::read_from(&bad).is_err(), "flip at {i} accepted");
        }
        for cut in [0, 3, 27, 28, bytes.len() - 5, bytes.len() - 1] {
            assert!(
                CodeIndex::read_from(&bytes[..cut]).is_err(),
                "cut at {cut} accepted"
            );
        }
    }

    proptest::proptest! {
        /// Arbitrary bytes, and valid files with arbitrary damage, give an error, never a panic
        /// or a wrong index.
        #[test]
        fn reading_arbitrary_bytes_never_panics(
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096),
            at in proptest::prelude::any::<usize>(),
            byte in proptest::prelude::any::<u8>(),
        ) {
            let _ = CodeIndex::read_from(&junk);
            let mut index = CodeIndex::new();
            index.push(&std::array::from_fn(|f| (f % 3 == 0).then(FingerCode::empty)));
            let mut bytes = Vec::new();
            index.write_to(&mut bytes).unwrap();
            let i = at % bytes.len();
            if bytes[i] != byte {
                bytes[i] = byte;
                proptest::prop_assert!(CodeIndex::read_from(&bytes).is_err());
            }
            let mut header = FILE_MAGIC.to_vec();
            header.extend_from_slice(&junk);
            let _ = CodeIndex::read_from(&header);
        }
    }

    #[test]
    fn search_finds_the_person_and_sorts_best_first() {
        let m = Matcher::new();
        let coder = FingerCoder::new();
        let mut index = CodeIndex::new();
        let people = 300u64;
        for p in 0..people {
            let mut codes: [Option<FingerCode>; FINGERS] = Default::default();
            for f in [1u8, 2, 6, 7] {
                let t = MasterFinger::generate(person_seed(9, p), f).impression(1);
                codes[usize::from(f) - 1] = Some(coder.encode(&m.prepare(&t).unwrap()));
            }
            assert_eq!(index.push(&codes), p as u32);
        }
        for p in [0u64, 77, 299] {
            let mut probe = CodeProbe::default();
            for f in [2u8, 7] {
                let t = MasterFinger::generate(person_seed(9, p), f).impression(2);
                probe.add(f, coder.encode(&m.prepare(&t).unwrap()));
            }
            let hits = index.search(&probe, 5);
            assert_eq!(hits.len(), 5);
            assert_eq!(hits[0].person, p as u32, "{hits:?}");
            assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        }
        assert!(index.search(&CodeProbe::default(), 5).is_empty());
    }
}
