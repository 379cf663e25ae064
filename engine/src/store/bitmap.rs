//! Deletion bitmaps: one bit per record ordinal of a segment, 1 = deleted.
//!
//! Kept in memory (an `Arc` shared copy-on-write with snapshots) and persisted at checkpoints
//! as `del-<segment>-<generation>.bits`, a new file per generation that the meta file names, so
//! replacing it is atomic with the meta. Layout, little-endian:
//!
//! | offset | size    | field                                  |
//! |-------:|--------:|----------------------------------------|
//! | 0      | 8       | magic `b"ABISDEL\0"`                   |
//! | 8      | 4       | version, `1`                           |
//! | 12     | 4       | reserved, 0                            |
//! | 16     | 8       | segment id                             |
//! | 24     | 8       | number of bits N (= segment records)   |
//! | 32     | 8·⌈N/64⌉| bit words, bit i of word w = ordinal 64w+i |
//! | end-4  | 4       | CRC-32 of everything before            |

const MAGIC: &[u8; 8] = b"ABISDEL\0";
const VERSION: u32 = 1;
const HEADER: usize = 32;

pub(crate) fn bitmap_name(segment: u64, gen: u64) -> String {
    format!("del-{segment:010}-{gen:010}.bits")
}

/// Deleted ordinals of one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletionBitmap {
    words: Vec<u64>,
    len: usize,
    deleted: usize,
}

impl DeletionBitmap {
    pub(crate) fn new(len: usize) -> Self {
        DeletionBitmap {
            words: vec![0; len.div_ceil(64)],
            len,
            deleted: 0,
        }
    }

    /// Number of ordinals covered.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of deleted ordinals.
    pub fn deleted(&self) -> usize {
        self.deleted
    }

    /// Whether ordinal `i` is deleted (out of range counts as deleted).
    #[inline]
    pub fn is_deleted(&self, i: usize) -> bool {
        i >= self.len
            || self
                .words
                .get(i / 64)
                .is_none_or(|w| (w >> (i % 64)) & 1 == 1)
    }

    /// Marks `i` deleted; false if it already was (or is out of range).
    pub(crate) fn set(&mut self, i: usize) -> bool {
        if i >= self.len {
            return false;
        }
        let w = &mut self.words[i / 64];
        let bit = 1u64 << (i % 64);
        if *w & bit != 0 {
            return false;
        }
        *w |= bit;
        self.deleted += 1;
        true
    }

    pub(crate) fn encode(&self, segment: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.words.len() * 8 + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&segment.to_le_bytes());
        out.extend_from_slice(&(self.len as u64).to_le_bytes());
        for w in &self.words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a bitmap file for `segment` of `len` records. `Err` carries the detail.
    pub(crate) fn decode(bytes: &[u8], segment: u64, len: usize) -> Result<Self, String> {
        let words = len.div_ceil(64);
        let expected = HEADER + words * 8 + 4;
        if bytes.len() != expected {
            return Err(format!(
                "{} bytes, expected {expected} for {len} records",
                bytes.len()
            ));
        }
        let (body, crc) = bytes.split_at(expected - 4);
        let u32_at = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let u64_at = |b: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[..8]);
            u64::from_le_bytes(a)
        };
        if crc32fast::hash(body) != u32_at(crc) {
            return Err("checksum mismatch".into());
        }
        if &body[..8] != MAGIC || u32_at(&body[8..12]) != VERSION {
            return Err("bad magic or version".into());
        }
        if u64_at(&body[16..24]) != segment || u64_at(&body[24..32]) != len as u64 {
            return Err("belongs to another segment".into());
        }
        let words: Vec<u64> = body[HEADER..].chunks_exact(8).map(u64_at).collect();
        let tail_bits = len % 64;
        if tail_bits != 0 && words.last().is_some_and(|w| w >> tail_bits != 0) {
            return Err("bits set beyond the last record".into());
        }
        let deleted = words.iter().map(|w| w.count_ones() as usize).sum();
        Ok(DeletionBitmap {
            words,
            len,
            deleted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_bitmap_round_trip() {
        let mut b = DeletionBitmap::new(130);
        assert!(b.set(0) && b.set(129) && !b.set(129) && !b.set(130));
        assert!(b.is_deleted(129) && !b.is_deleted(128) && b.is_deleted(500));
        let e = b.encode(7);
        assert_eq!(DeletionBitmap::decode(&e, 7, 130).unwrap(), b);
        assert!(DeletionBitmap::decode(&e, 8, 130).is_err());
        let mut bad = e.clone();
        bad[40] ^= 1;
        assert!(DeletionBitmap::decode(&bad, 7, 130).is_err());
        for cut in 0..e.len() {
            assert!(DeletionBitmap::decode(&e[..cut], 7, 130).is_err());
        }
    }
}
