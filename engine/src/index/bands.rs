//! The first stage of a ten-print search: hash tables over the finger codes (LSH banding), so
//! that finding the people whose codes look like the probe's reads only the records that share
//! a key with it. With two-byte keys a key is shared by about N/65,536 records of a position, so
//! that still grows linearly with the gallery, from a far smaller base than the scan of every
//! code (docs/scale.md: 4.3 ms at 100,000 people, 36 ms at 1,000,000).
//!
//! # Banding
//! A finger's 160-byte code ([`super::code`]) is cut into [`BANDS`] bands of two adjacent
//! bytes; a band's two bytes are a 16-bit key. There is one table per (finger position, band):
//! 800 tables, each mapping a key to the ordinals of the records whose code at that position has
//! that key in that band. A probe looks up its own keys (one per band and probe finger) and every
//! record found gets a vote; the records with the most votes are then ranked by their full code
//! score, exactly as the exhaustive scan ranks them. Two impressions of a finger agree on a band
//! when they agree on both bytes (about one band in sixty for a median mate pair, far less for
//! strangers), so the votes of a person's fingers add up: measured with `abis-bench bands-eval`
//! on 10,000 synthetic people, every ten-finger mate of 300 had four votes or more, and every
//! four-finger mate at least one. All 80 bands are kept because four-finger probes need them
//! (32 bands lost 5 % of four-finger mates); two-byte keys because one byte lets through a
//! large share of strangers and three bytes too few mates.
//!
//! # Chunks
//! The tables must stay in memory (they are looked up at random by every search, so an encrypted
//! gallery decrypts them at open), so their size is the node's memory: the records of a segment
//! are cut into chunks of [`CHUNK`] (65,536) records, and each chunk has its own 800 tables, so
//! that a posting is a two-byte ordinal within its chunk and a key's offset two bytes too. At a
//! million people this halved the postings (4.4 GB of tables with four-byte postings and
//! offsets); the keys are repeated per chunk, which costs less than two more bytes per posting.
//! A search votes chunk by chunk, so its votes stay within 64 KiB at a time. A band file of an
//! older format (or damaged) is written again from the segment's codes file alone, without
//! recomputing any record's entries (`Companion::derived` in [`super::segment_index`]).
//!
//! # `seg-<id>.fbands` (little-endian; sections 64-byte aligned)
//!
//! | part        | content                                                                  |
//! |-------------|--------------------------------------------------------------------------|
//! | header (64) | magic `b"ABISFBD\0"`, version u32 = 3, bands u32 = 80, segment id u64, records N u64, records per chunk C u32, 24 reserved bytes, CRC-32 of bytes 0..60 |
//! | Postings    | P × u16 ordinals within the chunk: per chunk, per table, per key (ascending), the ordinals (ascending) |
//! | Keys        | K × u16: per chunk and table, its distinct keys, ascending                |
//! | Offsets     | K × u16: where a key's postings start, from its table's first posting     |
//! | Tables      | (⌈N/C⌉ × 800 + 1) × (u64 first key, u64 first posting), chunk-major       |
//! | footer (64) | CRC-32 of Postings, Keys, Offsets, Tables (4 × u32), postings P u64, distinct keys K u64, 16 reserved, magic `b"ABISFBE\0"` at 48, CRC-32 of footer bytes 0..56 at 56, 4 reserved |
//!
//! At open every table of 512 keys or more also gets a key directory in memory (where the keys
//! of each high byte start), so that a lookup searches a 256th of its table's keys.
//!
//! Everything is checksummed and verified at open, the tables' and keys' order too; a posting
//! that names no record of the segment is an error when it is read. Wide records (see
//! [`super::segment_index::WIDE`]) and absent or empty codes have no entries.

use rayon::prelude::*;

use super::code::SLOTS;
use super::segment_index::{
    round_up, u32_at, u64_at, IndexFileError, ProbeCodes, POSITIONS, RECORD_CODE_BYTES, WIDE,
};
use crate::store::Resident;

/// Two-byte bands per finger code.
pub const BANDS: usize = SLOTS / 2;
/// One table per (finger position, band).
pub const TABLES: usize = POSITIONS * BANDS;
/// File extension (`seg-<id>.fbands`).
pub const EXTENSION: &str = "fbands";
/// Records per chunk: the most a two-byte posting can name.
pub const CHUNK: usize = 1 << 16;

const MAGIC: &[u8; 8] = b"ABISFBD\0";
const END: &[u8; 8] = b"ABISFBE\0";
const VERSION: u32 = 3;
const HEADER_LEN: usize = 64;
const FOOTER_LEN: usize = 64;
const TABLE_ENTRY: usize = 16;
/// Tables built in parallel at a time (each holds one table's postings while being built).
const BUILD_TABLES: usize = 16;

/// The key of band `b` of a code.
#[inline]
fn key(code: &[u8], b: usize) -> u16 {
    u16::from_le_bytes([code[2 * b], code[2 * b + 1]])
}

fn header(segment: u64, n: usize, chunk: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(BANDS as u32).to_le_bytes());
    h[16..24].copy_from_slice(&segment.to_le_bytes());
    h[24..32].copy_from_slice(&(n as u64).to_le_bytes());
    h[32..36].copy_from_slice(&(chunk as u32).to_le_bytes());
    let crc = crc32fast::hash(&h[..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The codes of a segment's records as the codes file holds them, which the tables are built
/// from.
pub struct SegmentCodes<'a> {
    /// N × [`RECORD_CODE_BYTES`], record-major.
    pub codes: &'a [u8],
    /// N × u16 little-endian presence masks.
    pub presence: &'a [u8],
    /// N flags.
    pub flags: &'a [u8],
}

impl SegmentCodes<'_> {
    fn len(&self) -> usize {
        self.flags.len()
    }

    /// The code of record `o` at position index `p`, when the table should hold it.
    #[inline]
    fn code(&self, o: usize, p: usize) -> Option<&[u8]> {
        let presence = u16::from_le_bytes([self.presence[2 * o], self.presence[2 * o + 1]]);
        (self.flags[o] & WIDE == 0 && presence >> p & 1 == 1)
            .then(|| &self.codes[o * RECORD_CODE_BYTES + p * SLOTS..][..SLOTS])
    }
}

/// One table of one chunk, built: its distinct keys, where each key's postings start, and the
/// postings (ordinals within the chunk).
struct Table {
    keys: Vec<u16>,
    offsets: Vec<u16>,
    postings: Vec<u16>,
}

/// Counting sort of the records `chunk` by their key in table `t`: postings grouped by key,
/// ascending ordinals within a key. `chunk` holds at most [`CHUNK`] records.
fn build_table(codes: &SegmentCodes<'_>, chunk: std::ops::Range<usize>, t: usize) -> Table {
    let (p, b) = (t / BANDS, t % BANDS);
    let mut counts = vec![0u32; 1 << 16];
    for o in chunk.clone() {
        if let Some(c) = codes.code(o, p) {
            counts[usize::from(key(c, b))] += 1;
        }
    }
    let (mut keys, mut offsets) = (Vec::new(), Vec::new());
    let mut cursor = vec![0u32; 1 << 16];
    let mut total = 0u32;
    for (k, &c) in counts.iter().enumerate() {
        if c > 0 {
            keys.push(k as u16);
            // Below the chunk's record count, so below 65,536.
            offsets.push(total as u16);
            cursor[k] = total;
            total += c;
        }
    }
    let mut postings = vec![0u16; total as usize];
    for o in chunk.clone() {
        if let Some(c) = codes.code(o, p) {
            let slot = &mut cursor[usize::from(key(c, b))];
            postings[*slot as usize] = (o - chunk.start) as u16;
            *slot += 1;
        }
    }
    Table {
        keys,
        offsets,
        postings,
    }
}

fn io(e: std::io::Error) -> IndexFileError {
    IndexFileError::Io(e.to_string())
}

fn pad(sink: &mut super::segment_index::Sink<'_>, written: usize) -> Result<usize, IndexFileError> {
    let to = round_up(written);
    sink(&vec![0u8; to - written]).map_err(io)?;
    Ok(to)
}

fn le_bytes<T: Copy, const W: usize>(v: &[T], f: impl Fn(T) -> [u8; W]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

/// Writes the band tables of `segment` (see the module docs) in one sequential pass: postings
/// table by table as they are built, then the keys, offsets and table directory kept meanwhile.
pub fn write(
    segment: u64,
    codes: &SegmentCodes<'_>,
    sink: &mut super::segment_index::Sink<'_>,
) -> Result<(), IndexFileError> {
    write_chunked(segment, codes, CHUNK, sink)
}

/// [`write`] with `chunk` records per chunk (tests use small chunks).
fn write_chunked(
    segment: u64,
    codes: &SegmentCodes<'_>,
    chunk: usize,
    sink: &mut super::segment_index::Sink<'_>,
) -> Result<(), IndexFileError> {
    assert!((1..=CHUNK).contains(&chunk), "chunk of {chunk} records");
    let n = codes.len();
    sink(&header(segment, n, chunk)).map_err(io)?;
    let (mut all_keys, mut all_offsets) = (Vec::new(), Vec::new());
    let mut directory = Vec::with_capacity((n.div_ceil(chunk) * TABLES + 1) * 2);
    let mut crc = crc32fast::Hasher::new();
    let mut posted = 0u64;
    for start in (0..n).step_by(chunk) {
        let records = start..(start + chunk).min(n);
        for first in (0..TABLES).step_by(BUILD_TABLES) {
            let built: Vec<Table> = (first..(first + BUILD_TABLES).min(TABLES))
                .into_par_iter()
                .map(|t| build_table(codes, records.clone(), t))
                .collect();
            for table in built {
                directory.extend([all_keys.len() as u64, posted]);
                let bytes = le_bytes(&table.postings, u16::to_le_bytes);
                crc.update(&bytes);
                sink(&bytes).map_err(io)?;
                posted += table.postings.len() as u64;
                all_keys.extend(table.keys);
                all_offsets.extend(table.offsets);
            }
        }
    }
    directory.extend([all_keys.len() as u64, posted]);
    let mut at = pad(sink, HEADER_LEN + 2 * posted as usize)?;
    let mut crcs = vec![crc.finalize()];
    for section in [
        le_bytes(&all_keys, u16::to_le_bytes),
        le_bytes(&all_offsets, u16::to_le_bytes),
        le_bytes(&directory, u64::to_le_bytes),
    ] {
        crcs.push(crc32fast::hash(&section));
        sink(&section).map_err(io)?;
        at = pad(sink, at + section.len())?;
    }
    sink(&footer(&crcs, posted, all_keys.len() as u64)).map_err(io)
}

/// The footer: the sections' checksums, then the totals (known only once every table is
/// written, so that the file is written in one pass).
fn footer(crcs: &[u32], postings: u64, keys: u64) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    for (i, c) in crcs.iter().enumerate() {
        f[i * 4..i * 4 + 4].copy_from_slice(&c.to_le_bytes());
    }
    f[16..24].copy_from_slice(&postings.to_le_bytes());
    f[24..32].copy_from_slice(&keys.to_le_bytes());
    f[48..56].copy_from_slice(END);
    let crc = crc32fast::hash(&f[..56]);
    f[56..60].copy_from_slice(&crc.to_le_bytes());
    f
}

/// Where the sections of a band file lie.
#[derive(Debug, Clone, Copy)]
struct Layout {
    postings: usize,
    keys_at: usize,
    keys: usize,
    offsets_at: usize,
    tables_at: usize,
    /// Tables of all chunks (the directory has one more entry: the totals).
    tables: usize,
}

impl Layout {
    fn of(postings: usize, keys: usize, tables: usize) -> Option<Layout> {
        let keys_at = round_up(HEADER_LEN.checked_add(postings.checked_mul(2)?)?);
        let offsets_at = round_up(keys_at.checked_add(keys.checked_mul(2)?)?);
        let tables_at = round_up(offsets_at.checked_add(keys.checked_mul(2)?)?);
        tables.checked_add(1)?.checked_mul(TABLE_ENTRY)?;
        Some(Layout {
            postings,
            keys_at,
            keys,
            offsets_at,
            tables_at,
            tables,
        })
    }

    fn len(&self) -> usize {
        round_up(self.tables_at + (self.tables + 1) * TABLE_ENTRY) + FOOTER_LEN
    }

    /// (offset, length) of the four checksummed sections, in footer order.
    fn sections(&self) -> [(usize, usize); 4] {
        [
            (HEADER_LEN, 2 * self.postings),
            (self.keys_at, 2 * self.keys),
            (self.offsets_at, 2 * self.keys),
            (self.tables_at, (self.tables + 1) * TABLE_ENTRY),
        ]
    }
}

/// An opened, verified band file.
#[derive(Clone)]
pub struct BandTables {
    bytes: Resident,
    layout: Layout,
    n: usize,
    /// Records per chunk.
    chunk: usize,
    segment: u64,
    /// Per table, where its key directory ([`DIRECTORY_ENTRIES`]) starts in `directory`
    /// ([`NO_DIRECTORY`]: a table too small to need one).
    directory_of: Vec<u32>,
    directory: Vec<u32>,
}

/// A table's key directory: entry `h` (0..=256) is the index, from the table's first key, of
/// its first key whose high byte is at least `h`. Built at open from the keys (nothing on
/// disk), it narrows a lookup to the keys sharing the probe key's high byte.
///
/// Why: a lookup was a binary search over all of a table's distinct keys (tens of thousands,
/// tens of KB, nowhere near the cache when 800 tables per segment are looked up once each), and
/// its cache misses were half of the votes' time (`perf annotate`); the directory's entry and
/// a search within ~1/256 of the keys cost one or two misses instead of a dozen.
const DIRECTORY_ENTRIES: usize = 257;
/// Tables with fewer keys are searched whole (a few cache lines): no directory.
const DIRECTORY_MIN_KEYS: usize = 512;
const NO_DIRECTORY: u32 = u32::MAX;

impl std::fmt::Debug for BandTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BandTables(segment {})", self.segment)
    }
}

impl BandTables {
    /// Checks `bytes` as the band tables of segment `segment` with `n` records.
    pub fn open(bytes: Resident, segment: u64, n: usize) -> Result<BandTables, IndexFileError> {
        Self::open_with(bytes, segment, n, DIRECTORY_MIN_KEYS)
    }

    /// [`BandTables::open`] with key directories for the tables of `directory_min_keys` keys or
    /// more (tests use 0: every lookup through a directory).
    fn open_with(
        bytes: Resident,
        segment: u64,
        n: usize,
        directory_min_keys: usize,
    ) -> Result<BandTables, IndexFileError> {
        let damaged = |d: &str| IndexFileError::Damaged {
            segment,
            detail: format!("band tables: {d}"),
        };
        let b: &[u8] = &bytes;
        if b.len() < HEADER_LEN + FOOTER_LEN || &b[0..8] != MAGIC {
            return Err(damaged("not a band table file"));
        }
        let chunk = u32_at(b, 32) as usize;
        if !(1..=CHUNK).contains(&chunk) || b[..HEADER_LEN] != header(segment, n, chunk) {
            return Err(damaged(
                "header checksum, segment, version, record count or chunk size",
            ));
        }
        let f = &b[b.len() - FOOTER_LEN..];
        if &f[48..56] != END || u32_at(f, 56) != crc32fast::hash(&f[..56]) {
            return Err(damaged("footer damaged or file incomplete"));
        }
        let (Ok(postings), Ok(keys)) = (
            usize::try_from(u64_at(f, 16)),
            usize::try_from(u64_at(f, 24)),
        ) else {
            return Err(damaged("totals"));
        };
        let tables = n.div_ceil(chunk) * TABLES;
        let layout = Layout::of(postings, keys, tables).ok_or_else(|| damaged("sizes"))?;
        if layout.len() != b.len() {
            return Err(damaged("file length"));
        }
        for (i, (at, len)) in layout.sections().into_iter().enumerate() {
            if crc32fast::hash(&b[at..at + len]) != u32_at(f, i * 4) {
                return Err(damaged("checksum mismatch"));
            }
        }
        let mut tables = BandTables {
            bytes: bytes.clone(),
            layout,
            n,
            chunk,
            segment,
            directory_of: Vec::new(),
            directory: Vec::new(),
        };
        let (directory_of, directory) = tables.check_order(directory_min_keys).map_err(damaged)?;
        tables.directory_of = directory_of;
        tables.directory = directory;
        Ok(tables)
    }

    /// The directory and every table's keys and offsets ascend and stay in bounds (so that a
    /// lookup never reads outside its table); in the same pass over the keys, the key directory
    /// of every table of `directory_min_keys` keys or more: (`directory_of`, `directory`).
    fn check_order(&self, directory_min_keys: usize) -> Result<(Vec<u32>, Vec<u32>), &'static str> {
        let mut prev = (0, 0);
        for t in 0..=self.layout.tables {
            let (k, p) = self.table(t);
            if k < prev.0 || p < prev.1 {
                return Err("table directory out of order");
            }
            prev = (k, p);
        }
        if prev != (self.layout.keys, self.layout.postings) {
            return Err("table directory does not cover the file");
        }
        let mut directory_of = Vec::with_capacity(self.layout.tables);
        let mut directory = Vec::new();
        for t in 0..self.layout.tables {
            let ((k0, p0), (k1, p1)) = (self.table(t), self.table(t + 1));
            let len = p1 - p0;
            if len > self.chunk {
                return Err("a table with more postings than its chunk has records");
            }
            let directed = k1 - k0 >= directory_min_keys;
            directory_of.push(if directed {
                u32::try_from(directory.len()).map_err(|_| "key directory too large")?
            } else {
                NO_DIRECTORY
            });
            // Next directory entry (high byte) to fill.
            let mut h = 0usize;
            for j in k0..k1 {
                let later = j + 1 < k1;
                if (later && self.key(j) >= self.key(j + 1))
                    || usize::from(self.offset(j)) >= len
                    || (later && self.offset(j) >= self.offset(j + 1))
                    || (j == k0 && self.offset(j) != 0)
                {
                    return Err("keys or offsets out of order");
                }
                if directed {
                    let high = usize::from(self.key(j) >> 8);
                    while h <= high {
                        directory.push((j - k0) as u32);
                        h += 1;
                    }
                }
            }
            if directed {
                directory.resize(directory.len() + DIRECTORY_ENTRIES - h, (k1 - k0) as u32);
            }
        }
        Ok((directory_of, directory))
    }

    /// The keys of table `t` (keys `k0..k1`) that may hold `key`: all of them, or those sharing
    /// its high byte.
    #[inline]
    fn key_range(&self, t: usize, (k0, k1): (usize, usize), key: u16) -> (usize, usize) {
        match self.directory_of[t] {
            NO_DIRECTORY => (k0, k1),
            start => {
                let d = start as usize + usize::from(key >> 8);
                (
                    k0 + self.directory[d] as usize,
                    k0 + self.directory[d + 1] as usize,
                )
            }
        }
    }

    /// (first key, first posting) of table `t` of the chunk-major directory (the last entry:
    /// the totals).
    #[inline]
    fn table(&self, t: usize) -> (usize, usize) {
        let at = self.layout.tables_at + t * TABLE_ENTRY;
        (
            u64_at(&self.bytes, at) as usize,
            u64_at(&self.bytes, at + 8) as usize,
        )
    }

    #[inline]
    fn key(&self, j: usize) -> u16 {
        let at = self.layout.keys_at + 2 * j;
        u16::from_le_bytes([self.bytes[at], self.bytes[at + 1]])
    }

    #[inline]
    fn offset(&self, j: usize) -> u16 {
        let at = self.layout.offsets_at + 2 * j;
        u16::from_le_bytes([self.bytes[at], self.bytes[at + 1]])
    }

    /// The postings of `key` in table `t` (empty when no record has it).
    fn postings(&self, t: usize, key: u16) -> &[u8] {
        let ((k0, p0), (k1, p1)) = (self.table(t), self.table(t + 1));
        let (mut lo, mut hi) = self.key_range(t, (k0, k1), key);
        let end_of_range = hi;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == end_of_range || self.key(lo) != key {
            return &[];
        }
        let start = p0 + self.offset(lo) as usize;
        let end = if lo + 1 < k1 {
            p0 + self.offset(lo + 1) as usize
        } else {
            p1
        };
        &self.bytes[HEADER_LEN + 2 * start..HEADER_LEN + 2 * end]
    }

    /// Adds one vote per (probe finger, band) to every record sharing that band's key
    /// (`votes` has one counter per record, saturating).
    pub fn vote(&self, probe: &ProbeCodes, votes: &mut [u8]) -> Result<(), IndexFileError> {
        if votes.len() != self.n {
            return Err(IndexFileError::Damaged {
                segment: self.segment,
                detail: "band votes sized for another segment".into(),
            });
        }
        for (c, votes) in votes.chunks_mut(self.chunk).enumerate() {
            let tables = c * TABLES;
            for (p, code) in probe.iter() {
                for b in 0..BANDS {
                    for o in self
                        .postings(tables + p * BANDS + b, key(&code.bytes, b))
                        .chunks_exact(2)
                    {
                        let o = usize::from(u16::from_le_bytes([o[0], o[1]]));
                        let v = votes.get_mut(o).ok_or_else(|| IndexFileError::Damaged {
                            segment: self.segment,
                            detail: "band tables name a record the segment does not have".into(),
                        })?;
                        *v = v.saturating_add(1);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The `max` records with the most votes among those `keep` accepts (at least one vote; ties
/// by ordinal), in ordinal order.
pub fn most_voted(votes: &[u8], max: usize, keep: impl Fn(usize) -> bool) -> Vec<u32> {
    let mut histogram = [0usize; 256];
    for &v in votes {
        histogram[usize::from(v)] += 1;
    }
    // The lowest vote count that keeps at most twice `max` records (headroom for those `keep`
    // refuses), never below one vote.
    let mut floor = 255usize;
    let mut above = histogram[255];
    while floor > 1 && above + histogram[floor - 1] <= 2 * max {
        floor -= 1;
        above += histogram[floor];
    }
    let mut found: Vec<(u8, u32)> = votes
        .iter()
        .enumerate()
        .filter(|&(o, &v)| usize::from(v) >= floor && keep(o))
        .map(|(o, &v)| (v, o as u32))
        .collect();
    if found.len() > max {
        found.select_nth_unstable_by(max, |a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        found.truncate(max);
    }
    let mut out: Vec<u32> = found.into_iter().map(|(_, o)| o).collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::segment_index::RecordIndex;
    use crate::store::synth::synthetic_record;

    fn codes_of(records: &[RecordIndex]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let mut c = Vec::new();
        let mut p = Vec::new();
        let mut f = Vec::new();
        for r in records {
            c.extend_from_slice(&r.code_bytes());
            p.extend_from_slice(&r.presence().to_le_bytes());
            f.push(r.flags);
        }
        (c, p, f)
    }

    fn file(records: &[RecordIndex], segment: u64) -> Vec<u8> {
        file_chunked(records, segment, CHUNK)
    }

    fn file_chunked(records: &[RecordIndex], segment: u64, chunk: usize) -> Vec<u8> {
        let (c, p, f) = codes_of(records);
        let codes = SegmentCodes {
            codes: &c,
            presence: &p,
            flags: &f,
        };
        let mut out = Vec::new();
        let mut sink = |b: &[u8]| {
            out.extend_from_slice(b);
            Ok(())
        };
        write_chunked(segment, &codes, chunk, &mut sink).unwrap();
        out
    }

    fn records(n: u64) -> Vec<RecordIndex> {
        (0..n)
            .map(|i| {
                let r = synthetic_record(&format!("id{i}"), i, 1 + (i % 10) as usize, 0, 0);
                RecordIndex::of_record(&r).unwrap()
            })
            .collect()
    }

    fn open(b: &[u8], segment: u64, n: usize) -> Result<BandTables, IndexFileError> {
        BandTables::open(Resident::from_slice(b), segment, n)
    }

    /// Opened with a key directory on every table, so that every lookup goes through one.
    fn open_directed(b: &[u8], segment: u64, n: usize) -> Result<BandTables, IndexFileError> {
        BandTables::open_with(Resident::from_slice(b), segment, n, 0)
    }

    /// The votes a record gets, counted directly from the codes.
    fn direct_votes(probe: &ProbeCodes, r: &RecordIndex) -> usize {
        if r.is_wide() {
            return 0;
        }
        probe
            .iter()
            .filter_map(|(p, c)| r.codes[p].as_ref().filter(|rc| !rc.empty).map(|rc| (c, rc)))
            .map(|(c, rc)| {
                (0..BANDS)
                    .filter(|&b| key(&c.bytes, b) == key(&rc.bytes, b))
                    .count()
            })
            .sum()
    }

    #[test]
    fn votes_equal_the_keys_shared_with_each_record() {
        let records = records(40);
        // One chunk, chunks that divide the records, and a short last chunk.
        for chunk in [CHUNK, 8, 7, 1] {
            let bytes = file_chunked(&records, 3, chunk);
            // Lookups by binary search over a table's keys, and through key directories.
            for tables in [
                open(&bytes, 3, records.len()).unwrap(),
                open_directed(&bytes, 3, records.len()).unwrap(),
            ] {
                for probe_record in records.iter().step_by(7) {
                    let probe = ProbeCodes::from_record(probe_record);
                    let mut votes = vec![0u8; records.len()];
                    tables.vote(&probe, &mut votes).unwrap();
                    for (o, r) in records.iter().enumerate() {
                        assert_eq!(
                            usize::from(votes[o]),
                            direct_votes(&probe, r).min(255),
                            "record {o}, chunks of {chunk}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn chunks_make_postings_two_bytes() {
        let records = records(40);
        let one = file_chunked(&records, 3, CHUNK);
        let postings = u64_at(&one, one.len() - FOOTER_LEN + 16) as usize;
        let keys = u64_at(&one, one.len() - FOOTER_LEN + 24) as usize;
        assert_eq!(
            one.len(),
            Layout::of(postings, keys, TABLES).unwrap().len(),
            "two bytes a posting, key and offset"
        );
        let empty = file(&[], 4);
        assert!(open(&empty, 4, 0).is_ok(), "a segment of no records");
    }

    #[test]
    fn damage_anywhere_is_refused_or_harmless() {
        let records = records(16);
        let bytes = file_chunked(&records, 5, 6);
        assert!(open(&bytes, 6, records.len()).is_err(), "other segment");
        assert!(open(&bytes, 5, records.len() + 1).is_err(), "other count");
        assert!(open(&bytes[..bytes.len() - 1], 5, records.len()).is_err());
        let good = open(&bytes, 5, records.len()).unwrap();
        let probe = ProbeCodes::from_record(&records[3]);
        let mut want = vec![0u8; records.len()];
        good.vote(&probe, &mut want).unwrap();
        for at in (0..bytes.len()).step_by(13) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            // Padding is not checked, everything else is.
            if let Ok(t) = open(&bad, 5, records.len()) {
                let mut got = vec![0u8; records.len()];
                t.vote(&probe, &mut got).unwrap();
                assert_eq!(got, want, "flip at {at} changed the votes");
            }
        }
    }

    #[test]
    fn most_voted_keeps_the_best_with_ties_by_ordinal() {
        let votes = [0u8, 3, 1, 3, 0, 2, 5, 1];
        assert_eq!(most_voted(&votes, 3, |_| true), vec![1, 3, 6]);
        assert_eq!(most_voted(&votes, 3, |o| o != 3), vec![1, 5, 6]);
        assert_eq!(most_voted(&votes, 100, |_| true), vec![1, 2, 3, 5, 6, 7]);
        assert!(most_voted(&[0, 0], 4, |_| true).is_empty());
    }
}
