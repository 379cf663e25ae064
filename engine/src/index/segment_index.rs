//! The persisted 1:N finger index of one gallery segment, in two files beside `seg-<id>.seg`:
//! `seg-<id>.fcodes` (first stage) and `seg-<id>.fforms` (second stage). They are written when
//! the segment is built or merged, checked and mapped when it is opened, and rebuilt from the
//! segment's templates when missing or damaged (see the store's companion files).
//!
//! # What is resident, and why
//! Per record, the first stage reads ten 160-byte codes (one per ISO finger position, zeros
//! where none is enrolled): 1,600 bytes, person-major, so that a scan streams every person's
//! codes once. Every search touches them, so they are resident: 1.6 KB per person. The second
//! stage's coarse cylinders (about 2.5 KB per finger) are read only for the records the first
//! stage keeps; they stay on disk and in the page cache as the kernel sees fit. Two files, so
//! that each can be written in one sequential pass.
//!
//! # `seg-<id>.fcodes` (little-endian; sections 64-byte aligned)
//!
//! | part        | content                                                                  |
//! |-------------|--------------------------------------------------------------------------|
//! | header (64) | magic `b"ABISFCD\0"`, version u32 = 2, code bytes u32 = 160, segment id u64, records N u64, finger entries F u64, 20 reserved bytes, CRC-32 of bytes 0..60 |
//! | Codes       | N × 10 × 160 bytes, record-major, positions 1..=10                        |
//! | Presence    | N × u16: bit p−1 set when position p has a code                           |
//! | Flags       | N × u8: bit 0 "wide" (an unknown position or a second impression: the first stage cannot rank the record, so the second always sees it) |
//! | footer (64) | CRC-32 of Codes, Presence, Flags (3 × u32), 36 reserved bytes, magic `b"ABISFCE\0"` at 48, CRC-32 of footer bytes 0..56 at 56, 4 reserved |
//!
//! # `seg-<id>.fforms`
//!
//! | part        | content                                                                  |
//! |-------------|--------------------------------------------------------------------------|
//! | header (64) | magic `b"ABISFFM\0"`, then as above                                       |
//! | FormBlob    | per finger entry, in the segment's finger-table order: CRC-32 of the form u32, the form ([`LocalForm::encode`]) |
//! | FormIndex   | (F+1) × u64: entry e is `FormBlob[idx[e]..idx[e+1]]`                      |
//! | footer (64) | FormBlob length u64, CRC-32 of FormIndex u32, 36 reserved, magic `b"ABISFFE\0"` at 48, CRC-32 of footer bytes 0..56 at 56 |
//!
//! Verification: headers, footers, bounds and the checksums of everything a scan reads (Codes,
//! Presence, Flags, FormIndex) at open; each form's own checksum when it is read. A mismatch is
//! an error naming the segment; nothing unverified is searched.

use std::ops::Range;
use std::sync::Arc;

use super::bands::BandTables;
use super::code::{equal_bytes, FingerCode, CHANCE, SLOTS};
use super::local::LocalForm;
use crate::store::{
    Companion, CompanionData, CompanionError, FileBytes, FileSlice, FileWriter, FingerEntry,
    Origin, Record, Resident, SegmentView,
};
use crate::template::{decode_native, FingerPosition, TemplateError};

/// Finger positions per record in the first stage (ISO 1..=10).
pub const POSITIONS: usize = 10;
/// Bytes of one record's codes.
pub const RECORD_CODE_BYTES: usize = POSITIONS * SLOTS;
/// Flag: the record has fingers the first stage cannot place (unknown position, repeated
/// position): searches always pass it to the second stage.
pub const WIDE: u8 = 1;
/// File extensions of the two index files (`seg-<id>.<ext>`).
pub const CODES_EXTENSION: &str = "fcodes";
pub const FORMS_EXTENSION: &str = "fforms";

const CODES_MAGIC: &[u8; 8] = b"ABISFCD\0";
const CODES_END: &[u8; 8] = b"ABISFCE\0";
const FORMS_MAGIC: &[u8; 8] = b"ABISFFM\0";
const FORMS_END: &[u8; 8] = b"ABISFFE\0";
const VERSION: u32 = 2;
const HEADER_LEN: usize = 64;
const FOOTER_LEN: usize = 64;
const ALIGN: usize = 64;

/// Why an index file cannot be used (the store then rebuilds it), or a record cannot be
/// indexed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndexFileError {
    #[error("finger index of segment {segment}: {detail}")]
    Damaged { segment: u64, detail: String },
    #[error("a stored template is unreadable: {0}")]
    Template(#[from] TemplateError),
    #[error("finger index write: {0}")]
    Io(String),
    /// The segment the index is built from could not be read (its own error names why).
    #[error("reading segment {segment} to index it: {detail}")]
    Segment { segment: u64, detail: String },
    #[error("the finger index has three files; {0} given")]
    Files(usize),
}

impl IndexFileError {
    fn segment(view: &SegmentView, e: crate::store::StoreError) -> IndexFileError {
        IndexFileError::Segment {
            segment: view.id(),
            detail: e.to_string(),
        }
    }
}

/// What the index holds of one record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordIndex {
    /// The code of the first impression at each position 1..=10.
    pub codes: [Option<FingerCode>; POSITIONS],
    pub flags: u8,
    /// Every finger entry's form (record order), encoded.
    pub forms: Vec<Vec<u8>>,
}

impl RecordIndex {
    /// The index entries of a record's finger templates.
    pub fn of(fingers: &[FingerEntry]) -> Result<RecordIndex, TemplateError> {
        let mut codes: [Option<FingerCode>; POSITIONS] = Default::default();
        let mut flags = 0;
        let mut forms = Vec::with_capacity(fingers.len());
        for f in fingers {
            let form = LocalForm::of(&decode_native(&f.template)?);
            let p = usize::from(f.position.code());
            match codes.get_mut(p.wrapping_sub(1)) {
                Some(slot @ None) => *slot = Some(FingerCode::of(&form)),
                _ => flags |= WIDE,
            }
            let mut bytes = Vec::new();
            form.encode(&mut bytes);
            forms.push(bytes);
        }
        Ok(RecordIndex {
            codes,
            flags,
            forms,
        })
    }

    /// The index of a record.
    pub fn of_record(record: &Record) -> Result<RecordIndex, TemplateError> {
        RecordIndex::of(&record.fingers)
    }

    /// Positions with a usable code (bit p−1 for position p).
    pub fn presence(&self) -> u16 {
        self.codes
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_ref().is_some_and(|c| !c.empty))
            .fold(0, |m, (i, _)| m | 1 << i)
    }

    /// Whether the first stage cannot rank this record (see [`WIDE`]).
    pub fn is_wide(&self) -> bool {
        self.flags & WIDE != 0
    }

    /// The first-stage score of this record for `probe`; `None` when the record is wide.
    pub fn code_score(&self, probe: &ProbeCodes) -> Option<f32> {
        (!self.is_wide()).then(|| {
            probe.score(|p| {
                self.codes[p]
                    .as_ref()
                    .filter(|c| !c.empty)
                    .map(|c| &c.bytes[..])
            })
        })
    }

    /// Record-major code bytes as the file stores them.
    pub fn code_bytes(&self) -> [u8; RECORD_CODE_BYTES] {
        let mut out = [0u8; RECORD_CODE_BYTES];
        for (i, c) in self.codes.iter().enumerate() {
            if let Some(c) = c.as_ref().filter(|c| !c.empty) {
                out[i * SLOTS..(i + 1) * SLOTS].copy_from_slice(&c.bytes);
            }
        }
        out
    }
}

/// A probe's first-stage codes: one per probe finger at a known position (1..=10) whose code
/// is not empty. The first stage scores a record by the equal bytes of the codes both sides
/// have, less what chance gives, summed over those positions.
#[derive(Debug, Default, Clone)]
pub struct ProbeCodes(Vec<(usize, FingerCode)>);

impl ProbeCodes {
    /// The codes of a probe's fingers (`forms` in probe order).
    pub fn of(forms: &[(FingerPosition, LocalForm)]) -> ProbeCodes {
        ProbeCodes(
            forms
                .iter()
                .filter(|(p, _)| (1..=POSITIONS).contains(&usize::from(p.code())))
                .map(|(p, f)| (usize::from(p.code()) - 1, FingerCode::of(f)))
                .filter(|(_, c)| !c.empty)
                .collect(),
        )
    }

    /// The codes of a stored record, as a probe (an N:N self-join searches with them).
    pub fn from_record(record: &RecordIndex) -> ProbeCodes {
        ProbeCodes(
            record
                .codes
                .iter()
                .enumerate()
                .filter_map(|(p, c)| c.clone().filter(|c| !c.empty).map(|c| (p, c)))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Probe fingers with a code.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Bit p set for every position index p (0..10) the probe has a code at.
    pub fn mask(&self) -> u16 {
        self.0.iter().fold(0, |m, (p, _)| m | 1 << p)
    }

    /// (position index 0..10, code) of every probe finger with a code.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &FingerCode)> {
        self.0.iter().map(|(p, c)| (*p, c))
    }

    /// The first-stage score of a record whose code at position index `p` (0..10) is
    /// `code_at(p)`.
    fn score<'c>(&self, code_at: impl Fn(usize) -> Option<&'c [u8]>) -> f32 {
        self.0
            .iter()
            .filter_map(|(p, c)| code_at(*p).map(|r| equal_bytes(&c.bytes, r) as f32 - CHANCE))
            .sum()
    }
}

/// `x` rounded up to the 64-byte alignment of every index file's sections.
pub(super) fn round_up(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}

fn header(magic: &[u8; 8], segment: u64, n: usize, f: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(magic);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(SLOTS as u32).to_le_bytes());
    h[16..24].copy_from_slice(&segment.to_le_bytes());
    h[24..32].copy_from_slice(&(n as u64).to_le_bytes());
    h[32..40].copy_from_slice(&(f as u64).to_le_bytes());
    let crc = crc32fast::hash(&h[..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    h
}

fn footer(fields: &[(usize, &[u8])], magic: &[u8; 8]) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    for (at, bytes) in fields {
        f[*at..at + bytes.len()].copy_from_slice(bytes);
    }
    f[48..56].copy_from_slice(magic);
    let crc = crc32fast::hash(&f[..56]);
    f[56..60].copy_from_slice(&crc.to_le_bytes());
    f
}

/// A sink for one file's bytes (the store's file writers).
pub type Sink<'a> = dyn FnMut(&[u8]) -> std::io::Result<()> + 'a;

/// Writes the three index files of a segment, record by record, in one sequential pass each:
/// codes go straight to the codes file, forms to the forms file; presence, flags, the forms'
/// offsets and a copy of the codes (1.6 KB a record) wait in memory for the end, where the
/// band tables are built from the codes ([`super::bands`]).
pub struct IndexWriter<'a> {
    segment: u64,
    n: usize,
    f: usize,
    codes: &'a mut Sink<'a>,
    forms: &'a mut Sink<'a>,
    bands: &'a mut Sink<'a>,
    all_codes: Vec<u8>,
    codes_crc: crc32fast::Hasher,
    presence: Vec<u8>,
    flags: Vec<u8>,
    form_index: Vec<u8>,
    blob_len: u64,
    records: usize,
}

impl<'a> IndexWriter<'a> {
    /// Starts the files of segment `segment`, which has `n` records and `f` finger entries;
    /// `sinks` are the codes, forms and band files.
    pub fn start(
        segment: u64,
        n: usize,
        f: usize,
        [codes, forms, bands]: [&'a mut Sink<'a>; 3],
    ) -> Result<IndexWriter<'a>, IndexFileError> {
        let io = |e: std::io::Error| IndexFileError::Io(e.to_string());
        codes(&header(CODES_MAGIC, segment, n, f)).map_err(io)?;
        forms(&header(FORMS_MAGIC, segment, n, f)).map_err(io)?;
        let mut form_index = Vec::with_capacity((f + 1) * 8);
        form_index.extend_from_slice(&0u64.to_le_bytes());
        Ok(IndexWriter {
            segment,
            n,
            f,
            codes,
            forms,
            bands,
            all_codes: Vec::with_capacity(n * RECORD_CODE_BYTES),
            codes_crc: crc32fast::Hasher::new(),
            presence: Vec::with_capacity(n * 2),
            flags: Vec::with_capacity(n),
            form_index,
            blob_len: 0,
            records: 0,
        })
    }

    /// Adds the next record (ordinal order).
    pub fn push(&mut self, r: &RecordIndex) -> Result<(), IndexFileError> {
        let io = |e: std::io::Error| IndexFileError::Io(e.to_string());
        let codes = r.code_bytes();
        self.codes_crc.update(&codes);
        (self.codes)(&codes).map_err(io)?;
        self.all_codes.extend_from_slice(&codes);
        self.presence.extend_from_slice(&r.presence().to_le_bytes());
        self.flags.push(r.flags);
        for form in &r.forms {
            let mut entry = Vec::with_capacity(4 + form.len());
            entry.extend_from_slice(&crc32fast::hash(form).to_le_bytes());
            entry.extend_from_slice(form);
            (self.forms)(&entry).map_err(io)?;
            self.blob_len += entry.len() as u64;
            self.form_index
                .extend_from_slice(&self.blob_len.to_le_bytes());
        }
        self.records += 1;
        Ok(())
    }

    /// Writes the trailing sections and footers.
    pub fn finish(self) -> Result<(), IndexFileError> {
        let IndexWriter {
            segment,
            n,
            f,
            codes,
            forms,
            bands,
            all_codes,
            codes_crc,
            presence,
            flags,
            form_index,
            blob_len,
            records,
        } = self;
        let entries = form_index.len() / 8 - 1;
        if records != n || entries != f {
            return Err(IndexFileError::Damaged {
                segment,
                detail: format!("{records} records and {entries} forms for {n} and {f}"),
            });
        }
        let io = |e: std::io::Error| IndexFileError::Io(e.to_string());
        let zeros = |len: usize| vec![0u8; len];
        // Codes file: codes end at HEADER + n·1600 (a multiple of 64).
        let mut pos = HEADER_LEN + n * RECORD_CODE_BYTES;
        let pres_at = round_up(pos);
        codes(&zeros(pres_at - pos)).map_err(io)?;
        codes(&presence).map_err(io)?;
        pos = pres_at + presence.len();
        let flags_at = round_up(pos);
        codes(&zeros(flags_at - pos)).map_err(io)?;
        codes(&flags).map_err(io)?;
        pos = flags_at + flags.len();
        codes(&zeros(round_up(pos) - pos)).map_err(io)?;
        let crcs = [
            codes_crc.finalize(),
            crc32fast::hash(&presence),
            crc32fast::hash(&flags),
        ];
        let fields: Vec<(usize, [u8; 4])> = crcs
            .iter()
            .enumerate()
            .map(|(i, c)| (i * 4, c.to_le_bytes()))
            .collect();
        let refs: Vec<(usize, &[u8])> = fields.iter().map(|(a, b)| (*a, &b[..])).collect();
        codes(&footer(&refs, CODES_END)).map_err(io)?;
        // Forms file.
        let pos = HEADER_LEN + blob_len as usize;
        let index_at = round_up(pos);
        forms(&zeros(index_at - pos)).map_err(io)?;
        forms(&form_index).map_err(io)?;
        let pos = index_at + form_index.len();
        forms(&zeros(round_up(pos) - pos)).map_err(io)?;
        let crc = crc32fast::hash(&form_index).to_le_bytes();
        forms(&footer(
            &[(0, &blob_len.to_le_bytes()[..]), (8, &crc[..])],
            FORMS_END,
        ))
        .map_err(io)?;
        let all = super::bands::SegmentCodes {
            codes: &all_codes,
            presence: &presence,
            flags: &flags,
        };
        super::bands::write(segment, &all, bands)
    }
}

/// Checks the body of a codes file whose header is checked: its length and its sections'
/// checksums. Returns where the presence masks and the flags start.
fn check_codes_body(
    c: &[u8],
    n: usize,
    damaged: &dyn Fn(&str) -> IndexFileError,
) -> Result<(usize, usize), IndexFileError> {
    let cf = read_footer(c, CODES_END, damaged)?;
    let codes_len = n * RECORD_CODE_BYTES;
    let presence_at = round_up(HEADER_LEN + codes_len);
    let flags_at = round_up(presence_at + 2 * n);
    if round_up(flags_at + n) + FOOTER_LEN != c.len() {
        return Err(damaged("codes file length"));
    }
    let sections = [(HEADER_LEN, codes_len), (presence_at, 2 * n), (flags_at, n)];
    for (i, (at, len)) in sections.into_iter().enumerate() {
        if crc32fast::hash(&c[at..at + len]) != u32_at(cf, i * 4) {
            return Err(damaged("codes checksum mismatch"));
        }
    }
    Ok((presence_at, flags_at))
}

/// Writes the band tables of segment `segment` (`n` records, `f` finger entries) from its codes
/// file, checked first: how a band file of an older format, or damaged, is replaced without
/// recomputing any record's entries.
fn bands_from_codes(
    codes: FileBytes,
    segment: u64,
    n: usize,
    f: usize,
    sink: &mut Sink<'_>,
) -> Result<(), IndexFileError> {
    let damaged = |d: &str| IndexFileError::Damaged {
        segment,
        detail: d.to_string(),
    };
    let codes = Resident::whole(Arc::new(codes)).map_err(|e| damaged(&e.to_string()))?;
    let c: &[u8] = &codes;
    check_header(c, CODES_MAGIC, segment, n, f, &damaged)?;
    let (presence_at, flags_at) = check_codes_body(c, n, &damaged)?;
    let all = super::bands::SegmentCodes {
        codes: &c[HEADER_LEN..HEADER_LEN + n * RECORD_CODE_BYTES],
        presence: &c[presence_at..presence_at + 2 * n],
        flags: &c[flags_at..flags_at + n],
    };
    super::bands::write(segment, &all, sink)
}

/// Checks a file's header against the segment it should index; returns (records, entries).
fn check_header(
    b: &[u8],
    magic: &[u8; 8],
    segment: u64,
    n: usize,
    f: usize,
    damaged: &dyn Fn(&str) -> IndexFileError,
) -> Result<(), IndexFileError> {
    if b.len() < HEADER_LEN + FOOTER_LEN || &b[0..8] != magic {
        return Err(damaged("not a finger index file"));
    }
    if b[..HEADER_LEN] != header(magic, segment, n, f) {
        let h = &b[..HEADER_LEN];
        let crc_ok = u32::from_le_bytes([h[60], h[61], h[62], h[63]]) == crc32fast::hash(&h[..60]);
        return Err(damaged(if crc_ok {
            "written for another segment or index version"
        } else {
            "header checksum mismatch"
        }));
    }
    Ok(())
}

fn read_footer<'b>(
    b: &'b [u8],
    magic: &[u8; 8],
    damaged: &dyn Fn(&str) -> IndexFileError,
) -> Result<&'b [u8], IndexFileError> {
    let f = &b[b.len() - FOOTER_LEN..];
    let crc = u32::from_le_bytes([f[56], f[57], f[58], f[59]]);
    if &f[48..56] != magic || crc != crc32fast::hash(&f[..56]) {
        return Err(damaged("footer damaged or file incomplete"));
    }
    Ok(f)
}

pub(super) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(super) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// An opened, verified segment index.
#[derive(Clone)]
pub struct SegmentIndex {
    codes: Resident,
    /// Read on demand: only the records a search shortlists are touched.
    forms: Arc<FileBytes>,
    /// (F+1) offsets of the forms in the blob.
    form_index: Resident,
    bands: BandTables,
    n: usize,
    f: usize,
    presence_at: usize,
    flags_at: usize,
    blob_len: usize,
    segment: u64,
}

impl std::fmt::Debug for SegmentIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SegmentIndex(segment {}, {} records)",
            self.segment, self.n
        )
    }
}

impl SegmentIndex {
    /// Checks the three files (codes, forms, bands) as the index of segment `segment` with `n`
    /// records and `f` finger entries, verifying everything a search reads. The codes, the band
    /// tables and the form index are held resident (decrypted once when sealed); the forms
    /// themselves are read on demand, each with its own checksum.
    pub fn open(
        [codes, forms, bands]: [FileBytes; 3],
        segment: u64,
        n: usize,
        f: usize,
    ) -> Result<SegmentIndex, IndexFileError> {
        let damaged = |d: &str| IndexFileError::Damaged {
            segment,
            detail: d.to_string(),
        };
        let unreadable = |e: std::io::Error| IndexFileError::Damaged {
            segment,
            detail: e.to_string(),
        };
        let codes = Resident::whole(Arc::new(codes)).map_err(unreadable)?;
        let forms = Arc::new(forms);
        let c: &[u8] = &codes;
        check_header(c, CODES_MAGIC, segment, n, f, &damaged)?;
        let m_len = forms.len();
        if m_len < HEADER_LEN + FOOTER_LEN {
            return Err(damaged("not a finger index file"));
        }
        let m_head = forms.read(0..HEADER_LEN + FOOTER_LEN).map_err(unreadable)?;
        check_header(&m_head, FORMS_MAGIC, segment, n, f, &damaged)?;
        let (presence_at, flags_at) = check_codes_body(c, n, &damaged)?;
        let m_tail = forms.read(m_len - FOOTER_LEN..m_len).map_err(unreadable)?;
        let ff = read_footer(&m_tail, FORMS_END, &damaged)?;
        let blob_len = usize::try_from(u64_at(ff, 0)).map_err(|_| damaged("blob length"))?;
        let index_at = HEADER_LEN
            .checked_add(blob_len)
            .map(round_up)
            .ok_or_else(|| damaged("blob length"))?;
        let index_len = (f + 1) * 8;
        if index_at
            .checked_add(index_len)
            .map(|e| round_up(e) + FOOTER_LEN)
            != Some(m_len)
        {
            return Err(damaged("forms file length"));
        }
        let form_index =
            Resident::part(&forms, index_at..index_at + index_len).map_err(unreadable)?;
        if crc32fast::hash(&form_index) != u32_at(ff, 8) {
            return Err(damaged("form index checksum mismatch"));
        }
        let bands = Resident::whole(Arc::new(bands)).map_err(unreadable)?;
        let index = SegmentIndex {
            codes,
            forms,
            form_index,
            bands: BandTables::open(bands, segment, n)?,
            n,
            f,
            presence_at,
            flags_at,
            blob_len,
            segment,
        };
        let mut prev = 0;
        for e in 0..=f {
            let o = index.form_offset(e);
            if o < prev || o > blob_len {
                return Err(damaged("form index out of order"));
            }
            prev = o;
        }
        Ok(index)
    }

    /// The index a segment was opened with, when it has one (the store keeps companion data
    /// untyped; this is the one place that knows its type).
    pub fn of(view: &SegmentView) -> Option<&SegmentIndex> {
        view.companion()?.downcast_ref::<SegmentIndex>()
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Whether the first stage cannot rank record `ord` (see [`WIDE`]).
    pub fn is_wide(&self, ord: usize) -> bool {
        self.flags(ord) & WIDE != 0
    }

    /// The first-stage score of record `ord` for `probe`; `None` when the record is wide.
    pub fn code_score(&self, ord: usize, probe: &ProbeCodes) -> Option<f32> {
        if self.is_wide(ord) {
            return None;
        }
        let codes = &self.codes()[ord * RECORD_CODE_BYTES..(ord + 1) * RECORD_CODE_BYTES];
        let presence = self.presence(ord);
        Some(probe.score(|p| (presence >> p & 1 == 1).then(|| &codes[p * SLOTS..(p + 1) * SLOTS])))
    }

    /// The codes of record `ord` as a probe (an N:N self-join searches with them); empty for a
    /// wide record.
    pub fn probe_codes(&self, ord: usize) -> ProbeCodes {
        if self.is_wide(ord) {
            return ProbeCodes::default();
        }
        let presence = self.presence(ord);
        let codes = &self.codes()[ord * RECORD_CODE_BYTES..(ord + 1) * RECORD_CODE_BYTES];
        ProbeCodes(
            (0..POSITIONS)
                .filter(|p| presence >> p & 1 == 1)
                .map(|p| {
                    let mut bytes = [0u8; SLOTS];
                    bytes.copy_from_slice(&codes[p * SLOTS..(p + 1) * SLOTS]);
                    (
                        p,
                        FingerCode {
                            bytes,
                            empty: false,
                        },
                    )
                })
                .collect(),
        )
    }

    /// The segment's band tables (the first stage of ten-print searches).
    pub fn bands(&self) -> &BandTables {
        &self.bands
    }

    /// All records' codes, record-major (`RECORD_CODE_BYTES` each).
    pub fn codes(&self) -> &[u8] {
        &self.codes[HEADER_LEN..HEADER_LEN + self.n * RECORD_CODE_BYTES]
    }

    /// Positions with a code of record `ord` (bit p−1 for position p).
    pub fn presence(&self, ord: usize) -> u16 {
        let at = self.presence_at + ord * 2;
        u16::from_le_bytes([self.codes[at], self.codes[at + 1]])
    }

    pub fn flags(&self, ord: usize) -> u8 {
        self.codes[self.flags_at + ord]
    }

    fn form_offset(&self, e: usize) -> usize {
        u64_at(&self.form_index, e * 8) as usize
    }

    /// Hints the CPU to load finger entry `e`'s form ([`FileBytes::prefetch`]); nothing when
    /// `e` is out of range.
    pub fn prefetch_form(&self, e: usize) {
        if e < self.f {
            let (start, end) = (self.form_offset(e), self.form_offset(e + 1));
            if start <= end {
                self.forms.prefetch(HEADER_LEN + start..HEADER_LEN + end);
            }
        }
    }

    /// The encoded form of finger entry `e` (segment finger-table order), checksum verified.
    pub fn form_bytes(&self, e: usize) -> Result<FileSlice<'_>, IndexFileError> {
        let damaged = |d: &str| IndexFileError::Damaged {
            segment: self.segment,
            detail: d.to_string(),
        };
        if e >= self.f {
            return Err(damaged("finger entry out of range"));
        }
        let (start, end) = (self.form_offset(e), self.form_offset(e + 1));
        if end < start + 4 || end > self.blob_len {
            return Err(damaged("form bounds"));
        }
        let raw = self
            .forms
            .read(HEADER_LEN + start..HEADER_LEN + end)
            .map_err(|err| damaged(&format!("forms: {err}")))?;
        let (crc, form) = raw.split_at(4);
        if crc32fast::hash(form) != u32_at(crc, 0) {
            return Err(damaged("form checksum mismatch"));
        }
        Ok(raw.after(4))
    }

    /// A record's index read back (to copy it into a merged segment's index); `entries` are
    /// its finger entries.
    pub fn record_index(
        &self,
        ord: usize,
        entries: Range<usize>,
    ) -> Result<RecordIndex, IndexFileError> {
        let presence = self.presence(ord);
        let all = self.codes();
        let codes = std::array::from_fn(|i| {
            (presence >> i & 1 == 1).then(|| {
                let mut bytes = [0u8; SLOTS];
                bytes.copy_from_slice(&all[ord * RECORD_CODE_BYTES + i * SLOTS..][..SLOTS]);
                FingerCode {
                    bytes,
                    empty: false,
                }
            })
        });
        let forms = entries
            .map(|e| self.form_bytes(e).map(FileSlice::into_vec))
            .collect::<Result<_, _>>()?;
        Ok(RecordIndex {
            codes,
            flags: self.flags(ord),
            forms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::synth::synthetic_record;

    fn build(records: &[RecordIndex], segment: u64) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let f = records.iter().map(|r| r.forms.len()).sum();
        let (mut c, mut m, mut b) = (Vec::new(), Vec::new(), Vec::new());
        {
            let mut cs = |x: &[u8]| {
                c.extend_from_slice(x);
                Ok(())
            };
            let mut ms = |x: &[u8]| {
                m.extend_from_slice(x);
                Ok(())
            };
            let mut bs = |x: &[u8]| {
                b.extend_from_slice(x);
                Ok(())
            };
            let mut w =
                IndexWriter::start(segment, records.len(), f, [&mut cs, &mut ms, &mut bs]).unwrap();
            for r in records {
                w.push(r).unwrap();
            }
            w.finish().unwrap();
        }
        (c, m, b)
    }

    fn open(
        c: &[u8],
        m: &[u8],
        b: &[u8],
        segment: u64,
        n: usize,
        f: usize,
    ) -> Result<SegmentIndex, IndexFileError> {
        SegmentIndex::open([c, m, b].map(FileBytes::from_slice), segment, n, f)
    }

    #[test]
    fn written_index_reads_back_and_damage_is_refused() {
        let records: Vec<RecordIndex> = (0..12u64)
            .map(|i| {
                let r = synthetic_record(&format!("id{i}"), i, 1 + (i % 4) as usize, 0, 0);
                RecordIndex::of_record(&r).unwrap()
            })
            .collect();
        let f: usize = records.iter().map(|r| r.forms.len()).sum();
        let (c, m, b) = build(&records, 7);
        let index = open(&c, &m, &b, 7, records.len(), f).unwrap();
        let mut e = 0;
        for (ord, r) in records.iter().enumerate() {
            let back = index.record_index(ord, e..e + r.forms.len()).unwrap();
            assert_eq!(back.forms, r.forms);
            assert_eq!(back.presence(), r.presence());
            assert_eq!(back.code_bytes(), r.code_bytes());
            e += r.forms.len();
        }
        assert!(
            open(&c, &m, &b, 8, records.len(), f).is_err(),
            "other segment"
        );
        assert!(
            open(&c, &m, &b, 7, records.len() + 1, f).is_err(),
            "other count"
        );
        for at in (0..c.len()).step_by(37) {
            let mut bad = c.clone();
            bad[at] ^= 0x20;
            // Padding is not checked, everything else is.
            if let Ok(i) = open(&bad, &m, &b, 7, records.len(), f) {
                assert_eq!(
                    i.codes(),
                    index.codes(),
                    "flip at {at} changed what a scan reads"
                );
            }
        }
        for at in (0..m.len()).step_by(41) {
            let mut bad = m.clone();
            bad[at] ^= 0x20;
            if let Ok(i) = open(&c, &bad, &b, 7, records.len(), f) {
                for e in 0..f {
                    if let Ok(form) = i.form_bytes(e) {
                        assert_eq!(&form[..], &index.form_bytes(e).unwrap()[..], "flip at {at}");
                    }
                }
            }
        }
        assert!(open(&c[..c.len() - 1], &m, &b, 7, records.len(), f).is_err());
    }

    #[test]
    fn a_segment_copies_cached_entries_which_stay_until_pruned() {
        let recent = RecentIndex::default();
        let a = synthetic_record("a", 1, 2, 0, 0);
        let b = synthetic_record("b", 2, 2, 0, 0);
        let cached = recent.get_or_compute(&a).unwrap();
        assert_eq!(recent.len(), 1);
        assert!(Arc::ptr_eq(&recent.for_segment(&a).unwrap(), &cached));
        // Still cached: a search on an older snapshot finds it without computing it again.
        assert!(Arc::ptr_eq(&recent.get_or_compute(&a).unwrap(), &cached));
        // Not cached (a written gallery, or entries pruned): computed, and still not cached.
        let computed = recent.for_segment(&b).unwrap();
        assert_eq!(
            computed.code_bytes(),
            RecordIndex::of_record(&b).unwrap().code_bytes()
        );
        assert_eq!(recent.len(), 1);
        recent.retain(&std::collections::HashSet::new());
        assert!(recent.is_empty(), "pruning keeps only the given ids");
        // Same id, other templates: the stale entry is not handed out.
        recent.get_or_compute(&a).unwrap();
        let mut a2 = synthetic_record("a", 3, 2, 0, 0);
        a2.reference_id = "a".into();
        let fresh = recent.for_segment(&a2).unwrap();
        assert_eq!(
            fresh.code_bytes(),
            RecordIndex::of_record(&a2).unwrap().code_bytes()
        );
    }
}

/// The index entries of records not yet in a segment, computed once (at insert, or at the first
/// search after a restart) and copied into the segment index when their segment is written.
/// Keyed by referenceId, checked against a fingerprint of the templates (an id deleted and
/// enrolled again with other fingers must not reuse the old entry).
#[derive(Debug, Default)]
pub struct RecentIndex {
    entries: std::sync::RwLock<std::collections::HashMap<String, (u32, Arc<RecordIndex>)>>,
    /// The checkpoint epoch of the last [`RecentIndex::prune_retiring`] and the ids it retired.
    retired: std::sync::Mutex<(u64, std::collections::HashSet<String>)>,
}

/// A fingerprint of a record's finger templates.
fn fingerprint(record: &Record) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for f in &record.fingers {
        h.update(&[f.position.code()]);
        h.update(&(f.template.len() as u32).to_le_bytes());
        h.update(&f.template);
    }
    h.finalize()
}

impl RecentIndex {
    /// The record's index entries: cached, or computed now (and cached).
    pub fn get_or_compute(&self, record: &Record) -> Result<Arc<RecordIndex>, TemplateError> {
        let fp = fingerprint(record);
        if let Some(hit) = self.get(record, fp) {
            return Ok(hit);
        }
        let computed = Arc::new(RecordIndex::of_record(record)?);
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(record.reference_id.clone(), (fp, Arc::clone(&computed)));
        Ok(computed)
    }

    /// The record's index entries for its segment: the cached ones, or computed now and not
    /// cached. Cached entries stay until pruned ([`RecentIndex::retain`]): searches that took
    /// their snapshot before the segment was published still count the record as recent, and
    /// would otherwise compute the entries of every record of the flush again (seconds of CPU
    /// for a flush of 8,192 ten-finger records).
    pub fn for_segment(&self, record: &Record) -> Result<Arc<RecordIndex>, TemplateError> {
        match self.get(record, fingerprint(record)) {
            Some(hit) => Ok(hit),
            None => Ok(Arc::new(RecordIndex::of_record(record)?)),
        }
    }

    fn get(&self, record: &Record, fp: u32) -> Option<Arc<RecordIndex>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&record.reference_id)
            .filter(|(f, _)| *f == fp)
            .map(|(_, r)| Arc::clone(r))
    }

    /// Drops entries of records a checkpoint wrote, one checkpoint late: at the first call
    /// with a new `epoch` (a newer checkpoint), entries not among `live()` are retired, and
    /// those retired by an earlier epoch's call are dropped. A search whose snapshot predates
    /// the checkpoint that wrote a record still finds its entry (it would otherwise compute
    /// the entries of a whole flush again). At most one pass per epoch.
    pub fn prune_retiring<'a>(
        &self,
        epoch: u64,
        live: impl FnOnce() -> std::collections::HashSet<&'a str>,
    ) {
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        if retired.0 == epoch {
            return;
        }
        let live = live();
        let before = std::mem::take(&mut retired.1);
        let mut now = std::collections::HashSet::new();
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| {
                if live.contains(id.as_str()) {
                    true
                } else if before.contains(id) {
                    false
                } else {
                    now.insert(id.clone());
                    true
                }
            });
        *retired = (epoch, now);
    }

    /// The epoch of the last [`RecentIndex::prune_retiring`] pass.
    pub fn pruned_epoch(&self) -> u64 {
        self.retired.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Keeps only the entries of these ids (the records still outside segments).
    pub fn retain(&self, ids: &std::collections::HashSet<&str>) {
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| ids.contains(id.as_str()));
    }

    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The segment index as the store's companion files: built with each segment (copying what the
/// merged segments' indexes and the recent records' entries hold, computing the rest), opened
/// and checked with it.
#[derive(Debug, Default)]
pub struct FingerIndexFiles {
    pub recent: Arc<RecentIndex>,
}

/// Records indexed per parallel batch while building.
const BUILD_BATCH: usize = 512;

/// A record's index entries computed from its finger templates in a segment.
fn from_templates(
    segment: u64,
    fingers: &crate::store::FingerTemplates<'_>,
    ord: usize,
) -> Result<Arc<RecordIndex>, IndexFileError> {
    let entries: Vec<FingerEntry> = fingers
        .of_record(ord)
        .map(|r| {
            r.map(|(position, t)| FingerEntry {
                position,
                template: t.into_vec(),
            })
        })
        .collect::<Result<_, _>>()
        .map_err(|e| IndexFileError::Segment {
            segment,
            detail: e.to_string(),
        })?;
    Ok(Arc::new(RecordIndex::of(&entries)?))
}

impl FingerIndexFiles {
    /// One record's entries for the segment being built: copied from where the record came
    /// from when that place already holds them, computed from templates otherwise.
    fn entry(
        &self,
        segment: u64,
        fingers: &crate::store::FingerTemplates<'_>,
        ord: usize,
        origin: Origin<'_>,
    ) -> Result<Arc<RecordIndex>, IndexFileError> {
        match origin {
            Origin::Segment(view, o) => {
                let old_fingers = view
                    .fingers()
                    .map_err(|e| IndexFileError::segment(view, e))?;
                match SegmentIndex::of(view) {
                    Some(old) => old
                        .record_index(o, old_fingers.record_entries(o))
                        .map(Arc::new),
                    None => from_templates(view.id(), &old_fingers, o),
                }
            }
            Origin::Memory(r) => Ok(self.recent.for_segment(r)?),
            Origin::Rebuild => from_templates(segment, fingers, ord),
        }
    }
}

impl Companion for FingerIndexFiles {
    fn extensions(&self) -> &'static [&'static str] {
        &[CODES_EXTENSION, FORMS_EXTENSION, super::bands::EXTENSION]
    }

    fn build<'a>(
        &self,
        segment: &SegmentView,
        origin: &(dyn Fn(usize) -> Origin<'a> + Sync + 'a),
        outs: &mut [Box<dyn FileWriter>],
    ) -> Result<(), CompanionError> {
        self.write(segment, origin, outs)
            .map_err(CompanionError::new)
    }

    fn open(
        &self,
        segment: &SegmentView,
        files: Vec<FileBytes>,
    ) -> Result<CompanionData, CompanionError> {
        let fingers = finger_entries(segment)?;
        let files: [FileBytes; 3] = files
            .try_into()
            .map_err(|f: Vec<FileBytes>| CompanionError::new(IndexFileError::Files(f.len())))?;
        SegmentIndex::open(files, segment.id(), segment.len(), fingers)
            .map(|i| Arc::new(i) as CompanionData)
            .map_err(CompanionError::new)
    }

    /// The band tables: derived from the codes alone.
    fn derived(&self) -> Option<usize> {
        Some(2)
    }

    fn derive(
        &self,
        segment: &SegmentView,
        others: Vec<FileBytes>,
        out: &mut dyn FileWriter,
    ) -> Result<(), CompanionError> {
        let fingers = finger_entries(segment)?;
        let Some(codes) = others.into_iter().next() else {
            return Err(CompanionError::new(IndexFileError::Files(0)));
        };
        let mut sink = |b: &[u8]| out.write_all(b);
        bands_from_codes(codes, segment.id(), segment.len(), fingers, &mut sink)
            .map_err(CompanionError::new)
    }
}

/// How many finger entries `segment` has (what the index files' headers carry).
fn finger_entries(segment: &SegmentView) -> Result<usize, CompanionError> {
    segment
        .fingers()
        .map(|f| f.len())
        .map_err(|e| CompanionError::new(IndexFileError::segment(segment, e)))
}

impl FingerIndexFiles {
    /// Writes the two files of `segment` (see the module docs), records in ordinal order,
    /// each record's entries copied from where it came from or computed.
    fn write<'a>(
        &self,
        segment: &SegmentView,
        origin: &(dyn Fn(usize) -> Origin<'a> + Sync + 'a),
        outs: &mut [Box<dyn FileWriter>],
    ) -> Result<(), IndexFileError> {
        use rayon::prelude::*;
        let fingers = segment
            .fingers()
            .map_err(|e| IndexFileError::segment(segment, e))?;
        let (n, f) = (segment.len(), fingers.len());
        let [codes_out, forms_out, bands_out] = outs else {
            return Err(IndexFileError::Files(outs.len()));
        };
        let mut codes_sink = |b: &[u8]| codes_out.write_all(b);
        let mut forms_sink = |b: &[u8]| forms_out.write_all(b);
        let mut bands_sink = |b: &[u8]| bands_out.write_all(b);
        let sinks: [&mut Sink<'_>; 3] = [&mut codes_sink, &mut forms_sink, &mut bands_sink];
        let mut w = IndexWriter::start(segment.id(), n, f, sinks)?;
        let started = std::time::Instant::now();
        let mut logged = started;
        for start in (0..n).step_by(BUILD_BATCH) {
            let end = (start + BUILD_BATCH).min(n);
            let batch: Vec<Result<Arc<RecordIndex>, IndexFileError>> = (start..end)
                .into_par_iter()
                .map(|o| self.entry(segment.id(), &fingers, o, origin(o)))
                .collect();
            for r in batch {
                w.push(&*r?)?;
            }
            if logged.elapsed().as_secs() >= 10 {
                logged = std::time::Instant::now();
                tracing::info!(
                    segment = segment.id(),
                    done = end,
                    records = n,
                    "building the finger index"
                );
            }
        }
        w.finish()
    }
}
