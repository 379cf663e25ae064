//! Immutable segment files: a flat layout read in place through a memory map.
//!
//! A sealed segment (encryption at rest, [`super::encryption`]) has the same layout in its
//! plaintext: its templates, f32 face rows and metadata are read in authenticated blocks on
//! demand, its other sections decrypted once at open ([`is_on_demand`]).
//!
//! `seg-<id>.seg`, all integers **little-endian**, every section starting at a 64-byte aligned
//! offset (so `f32`/`u64` views of the map are aligned, and a SIMD scan can read face rows in
//! place). Records are stored in **increasing referenceId order**; a record's position in that
//! order is its *ordinal*.
//!
//! | part          | content                                                                |
//! |---------------|------------------------------------------------------------------------|
//! | header (64 B) | magic `b"ABISSEG\0"`, version u32 = 1, face dim D u32, segment id u64, record count N u64, chunk size u32 = 262144, 24 reserved bytes, CRC-32 of bytes 0..60 |
//! | IdOffsets     | (N+1) × u64: id of ordinal i is `IdBlob[off[i]..off[i+1]]`              |
//! | IdBlob        | ids, concatenated, strictly increasing                                 |
//! | FingerIndex   | (N+1) × u64: finger entries of ordinal i are rows `idx[i]..idx[i+1]`    |
//! | FingerTable   | F × 16 B: blob offset u64, length u32, ISO position u8, 3 reserved     |
//! | FingerBlob    | native templates (`ABFT`), concatenated                                |
//! | FaceIndex     | (N+1) × u64: face rows of ordinal i are `idx[i]..idx[i+1]`              |
//! | FaceF32       | R rows × S floats (S = D rounded up to 16, zero padded): one 64-byte aligned row per embedding |
//! | FaceI8        | R rows × S8 bytes (S8 = D rounded up to 64): int8 quantisation, `x ≈ q · scale` |
//! | FaceScale     | R × f32: per-row scale = max\|x\| / 127                                 |
//! | MetaOffsets   | (N+1) × u64 into MetaBlob                                              |
//! | MetaBlob      | per record: metadata block (count u8, key len u8, key, value len u16, value) |
//! | ChunkCrcs     | CRC-32 of every 256 KiB chunk of every section above, in order         |
//! | footer (312 B)| per section: offset u64, length u64, first chunk u64; then R u64, F u64, S u32, S8 u32, ChunkCrcs offset u64, chunk count u64, CRC-32 of ChunkCrcs u32, reserved u32 |
//! | trailer (16 B)| footer length u32, CRC-32 of the footer u32, magic `b"ABISEND\0"`      |
//!
//! Verification: opening checks the header, trailer, footer and chunk table checksums, every
//! section's bounds and size against N, R, F, D, and then verifies the id sections completely
//! (they serve every lookup). The large sections (templates, embeddings) are verified per 256 KiB
//! chunk the first time a chunk is read by a random access, or whole and in parallel (rayon)
//! the first time a scan asks for a section view. A mismatch anywhere is
//! [`StoreError::Corrupt`] naming the file and section; nothing unverified is ever returned.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;

use crate::template::FingerPosition;

use super::dir::{Directory, FileBytes, FileSlice, FileWriter, Resident};
use super::error::{Result, StoreError};
use super::record::{
    decode_metadata, encode_metadata, FingerEntry, Record, MAX_FACE_DIM, MAX_REFERENCE_ID_LEN,
};

#[cfg(target_endian = "big")]
compile_error!(
    "the gallery store reads little-endian sections in place; big-endian hosts are not supported"
);

const MAGIC: &[u8; 8] = b"ABISSEG\0";
const END_MAGIC: &[u8; 8] = b"ABISEND\0";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 64;
/// Bytes covered by one checksum of the chunk table.
pub(crate) const CHUNK: usize = 256 * 1024;
const ALIGN: usize = 64;
const NSEC: usize = 11;
const FOOTER_LEN: usize = NSEC * 24 + 48;
const TRAILER_LEN: usize = 16;
const FINGER_ROW: usize = 16;

/// Quantises `v` into `out` (same length) as `v ≈ out · scale` with `scale = max|v| / 127`: the
/// int8 face rows of a segment (and the queries scanned against them); returns `scale` (0 for an
/// all-zero vector).
pub fn quantise(v: &[f32], out: &mut [i8]) -> f32 {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 0.0 };
    for (o, x) in out.iter_mut().zip(v) {
        *o = if scale > 0.0 {
            (x / scale).round().clamp(-127.0, 127.0) as i8
        } else {
            0
        };
    }
    scale
}

pub(crate) fn segment_name(id: u64) -> String {
    format!("seg-{id:010}.seg")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
enum Sec {
    IdOffsets = 0,
    IdBlob,
    FingerIndex,
    FingerTable,
    FingerBlob,
    FaceIndex,
    FaceF32,
    FaceI8,
    FaceScale,
    MetaOffsets,
    MetaBlob,
}

const SEC_NAMES: [&str; NSEC] = [
    "id offsets",
    "id blob",
    "finger index",
    "finger table",
    "finger blob",
    "face index",
    "face f32 matrix",
    "face int8 matrix",
    "face scales",
    "metadata offsets",
    "metadata blob",
];

#[derive(Clone, Copy, Debug, Default)]
struct SecInfo {
    offset: usize,
    len: usize,
    first_chunk: usize,
}

impl SecInfo {
    fn chunks(&self) -> usize {
        self.len.div_ceil(CHUNK)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

mod pod {
    /// Types for which every bit pattern is a valid value, with no padding and no pointers.
    ///
    /// # Safety
    /// Implement only for such types: [`super::cast`] reinterprets file bytes as them.
    pub unsafe trait Pod: Copy {}
    // SAFETY: plain integers and floats; every bit pattern is a value (NaNs included).
    unsafe impl Pod for u64 {}
    // SAFETY: as above.
    unsafe impl Pod for f32 {}
    // SAFETY: as above.
    unsafe impl Pod for i8 {}
}

/// Views aligned little-endian bytes as `T` in place; empty if misaligned (checked at open).
fn cast<T: pod::Pod>(b: &[u8]) -> &[T] {
    // SAFETY: T is a plain number type for which every bit pattern is valid (pod::Pod);
    // align_to only yields the correctly aligned middle part.
    let (pre, mid, post) = unsafe { b.align_to::<T>() };
    if pre.is_empty() && post.is_empty() {
        mid
    } else {
        &[]
    }
}

/// Reusable buffers a [`SegmentSource`] fills for one record. `id`, `finger_pos`,
/// `finger_len` and `n_faces` are always filled; the rest when asked for.
#[derive(Default)]
pub(crate) struct RecordBuf {
    pub id: Vec<u8>,
    pub finger_pos: Vec<u8>,
    pub finger_len: Vec<u32>,
    pub finger_bytes: Vec<u8>,
    pub n_faces: usize,
    pub faces: Vec<f32>,
    pub meta: Vec<u8>,
}

impl RecordBuf {
    fn clear(&mut self) {
        self.id.clear();
        self.finger_pos.clear();
        self.finger_len.clear();
        self.finger_bytes.clear();
        self.n_faces = 0;
        self.faces.clear();
        self.meta.clear();
    }
}

/// Which heavy parts a pass needs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    Shape,
    FingerBytes,
    Faces,
    Meta,
}

/// Records to write into a segment, in strictly increasing id order.
pub(crate) trait SegmentSource: Sync {
    fn len(&self) -> usize;
    fn fill(&self, i: usize, want: Want, buf: &mut RecordBuf) -> Result<()>;
}

/// Fills `buf` from an in-memory record.
pub(crate) fn fill_from_record(r: &Record, want: Want, buf: &mut RecordBuf) -> Result<()> {
    buf.clear();
    buf.id.extend_from_slice(r.reference_id.as_bytes());
    for f in &r.fingers {
        buf.finger_pos.push(f.position.code());
        buf.finger_len.push(f.template.len() as u32);
        if want == Want::FingerBytes {
            buf.finger_bytes.extend_from_slice(&f.template);
        }
    }
    buf.n_faces = r.faces.len();
    match want {
        Want::Faces => r.faces.iter().for_each(|f| buf.faces.extend_from_slice(f)),
        Want::Meta => encode_metadata(&r.metadata, &mut buf.meta)?,
        _ => {}
    }
    Ok(())
}

/// Sequential section writer: pads to alignment, checksums 256 KiB chunks, buffers output.
struct SecWriter {
    out: Box<dyn FileWriter>,
    name: String,
    buf: Vec<u8>,
    pos: usize,
    crcs: Vec<u32>,
    chunk: crc32fast::Hasher,
    chunk_fill: usize,
    secs: Vec<SecInfo>,
    cur: SecInfo,
}

impl SecWriter {
    fn io(&self, e: std::io::Error) -> StoreError {
        StoreError::io("write", self.name.clone(), e)
    }

    fn raw(&mut self, b: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(b);
        self.pos += b.len();
        if self.buf.len() >= 1 << 20 {
            let r = self.out.write_all(&self.buf);
            r.map_err(|e| self.io(e))?;
            self.buf.clear();
        }
        Ok(())
    }

    fn pad(&mut self) -> Result<()> {
        let n = round_up(self.pos, ALIGN) - self.pos;
        self.raw(&[0u8; ALIGN][..n])
    }

    fn begin(&mut self) -> Result<()> {
        self.pad()?;
        self.cur = SecInfo {
            offset: self.pos,
            len: 0,
            first_chunk: self.crcs.len(),
        };
        self.chunk = crc32fast::Hasher::new();
        self.chunk_fill = 0;
        Ok(())
    }

    fn put(&mut self, mut b: &[u8]) -> Result<()> {
        while !b.is_empty() {
            let n = (CHUNK - self.chunk_fill).min(b.len());
            self.chunk.update(&b[..n]);
            self.chunk_fill += n;
            if self.chunk_fill == CHUNK {
                let h = std::mem::take(&mut self.chunk);
                self.crcs.push(h.finalize());
                self.chunk_fill = 0;
            }
            self.raw(&b[..n])?;
            b = &b[n..];
        }
        Ok(())
    }

    fn end(&mut self) {
        if self.chunk_fill > 0 {
            let h = std::mem::take(&mut self.chunk);
            self.crcs.push(h.finalize());
            self.chunk_fill = 0;
        }
        self.cur.len = self.pos - self.cur.offset;
        self.secs.push(self.cur);
    }

    fn finish(mut self) -> Result<usize> {
        let out = std::mem::take(&mut self.buf);
        self.out.write_all(&out).map_err(|e| self.io(e))?;
        self.out
            .sync()
            .map_err(|e| StoreError::io("fsync", self.name.clone(), e))?;
        Ok(self.pos)
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub(crate) struct Built {
    pub records: usize,
    pub file_len: usize,
}

/// Writes segment `id` from `src` and fsyncs it (the caller fsyncs the directory): the header,
/// then the sections in the order of the module docs' table, then the chunk table, footer and
/// trailer.
pub(crate) fn build_segment(
    dir: &dyn Directory,
    id: u64,
    dim: usize,
    src: &dyn SegmentSource,
) -> Result<Built> {
    let name = segment_name(id);
    let n = src.len();
    let out = dir
        .create(&name)
        .map_err(|e| StoreError::io("create", name.clone(), e))?;
    let mut w = SecWriter {
        out,
        name: name.clone(),
        buf: Vec::with_capacity(1 << 21),
        pos: 0,
        crcs: Vec::new(),
        chunk: crc32fast::Hasher::new(),
        chunk_fill: 0,
        secs: Vec::with_capacity(NSEC),
        cur: SecInfo::default(),
    };
    let bug = |d: &str| StoreError::corrupt(name.clone(), format!("segment builder: {d}"));
    w.raw(&header(id, dim, n))?;
    let mut b = RecordBuf::default();
    write_ids(&mut w, src, &mut b, &bug)?;
    let fingers = write_fingers(&mut w, src, &mut b, &bug)?;
    let rows = write_faces(&mut w, src, &mut b, dim, &bug)?;
    write_metadata(&mut w, src, &mut b)?;
    write_tail(&mut w, rows, fingers, dim)?;
    let file_len = w.finish()?;
    Ok(Built {
        records: n,
        file_len,
    })
}

type Bug<'a> = dyn Fn(&str) -> StoreError + 'a;

fn header(id: u64, dim: usize, n: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(dim as u32).to_le_bytes());
    h[16..24].copy_from_slice(&id.to_le_bytes());
    h[24..32].copy_from_slice(&(n as u64).to_le_bytes());
    h[32..36].copy_from_slice(&(CHUNK as u32).to_le_bytes());
    let crc = crc32fast::hash(&h[..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    h
}

/// IdOffsets (checking the order on the way) and IdBlob.
fn write_ids(
    w: &mut SecWriter,
    src: &dyn SegmentSource,
    b: &mut RecordBuf,
    bug: &Bug<'_>,
) -> Result<()> {
    let n = src.len();
    w.begin()?;
    let mut off = 0u64;
    w.put(&off.to_le_bytes())?;
    let mut prev: Vec<u8> = Vec::new();
    for i in 0..n {
        src.fill(i, Want::Shape, b)?;
        if i > 0 && b.id <= prev {
            return Err(bug("ids not strictly increasing"));
        }
        prev.clone_from(&b.id);
        off += b.id.len() as u64;
        w.put(&off.to_le_bytes())?;
    }
    w.end();
    w.begin()?;
    for i in 0..n {
        src.fill(i, Want::Shape, b)?;
        w.put(&b.id)?;
    }
    w.end();
    Ok(())
}

/// FingerIndex, FingerTable and FingerBlob; returns the number of finger entries.
fn write_fingers(
    w: &mut SecWriter,
    src: &dyn SegmentSource,
    b: &mut RecordBuf,
    bug: &Bug<'_>,
) -> Result<u64> {
    let n = src.len();
    w.begin()?;
    let mut fingers = 0u64;
    w.put(&fingers.to_le_bytes())?;
    for i in 0..n {
        src.fill(i, Want::Shape, b)?;
        fingers += b.finger_pos.len() as u64;
        w.put(&fingers.to_le_bytes())?;
    }
    w.end();
    w.begin()?;
    let mut blob = 0u64;
    for i in 0..n {
        src.fill(i, Want::Shape, b)?;
        for (&pos, &len) in b.finger_pos.iter().zip(&b.finger_len) {
            let mut row = [0u8; FINGER_ROW];
            row[0..8].copy_from_slice(&blob.to_le_bytes());
            row[8..12].copy_from_slice(&len.to_le_bytes());
            row[12] = pos;
            w.put(&row)?;
            blob += u64::from(len);
        }
    }
    w.end();
    w.begin()?;
    for i in 0..n {
        src.fill(i, Want::FingerBytes, b)?;
        w.put(&b.finger_bytes)?;
    }
    w.end();
    if w.secs[Sec::FingerBlob as usize].len as u64 != blob {
        return Err(bug("finger bytes disagree with lengths"));
    }
    Ok(fingers)
}

/// FaceIndex, then FaceF32, FaceI8 and FaceScale in one pass each over the embeddings; returns
/// the number of face rows.
fn write_faces(
    w: &mut SecWriter,
    src: &dyn SegmentSource,
    b: &mut RecordBuf,
    dim: usize,
    bug: &Bug<'_>,
) -> Result<u64> {
    let n = src.len();
    w.begin()?;
    let mut rows = 0u64;
    w.put(&rows.to_le_bytes())?;
    for i in 0..n {
        src.fill(i, Want::Shape, b)?;
        rows += b.n_faces as u64;
        w.put(&rows.to_le_bytes())?;
    }
    w.end();
    if rows > 0 && dim == 0 {
        return Err(bug("faces in a gallery without face dimension"));
    }
    let mut row_bytes = vec![0u8; round_up(dim, 16) * 4];
    let mut row_i8 = vec![0i8; round_up(dim, 64)];
    let mut row_i8_bytes = vec![0u8; round_up(dim, 64)];
    for pass in [Sec::FaceF32, Sec::FaceI8, Sec::FaceScale] {
        w.begin()?;
        let mut seen = 0u64;
        for i in 0..n {
            src.fill(i, Want::Faces, b)?;
            if b.faces.len() != b.n_faces * dim {
                return Err(bug("face data disagrees with its count"));
            }
            for face in b.faces.chunks_exact(dim.max(1)) {
                seen += 1;
                match pass {
                    Sec::FaceF32 => {
                        for (d, v) in row_bytes.chunks_exact_mut(4).zip(face) {
                            d.copy_from_slice(&v.to_bits().to_le_bytes());
                        }
                        w.put(&row_bytes)?;
                    }
                    Sec::FaceI8 => {
                        quantise(face, &mut row_i8[..face.len()]);
                        for (d, &q) in row_i8_bytes.iter_mut().zip(&row_i8) {
                            *d = q as u8;
                        }
                        w.put(&row_i8_bytes)?;
                    }
                    _ => {
                        let scale = quantise(face, &mut row_i8[..face.len()]);
                        w.put(&scale.to_bits().to_le_bytes())?
                    }
                }
            }
        }
        w.end();
        if seen != rows {
            return Err(bug("face rows disagree with the index"));
        }
    }
    Ok(rows)
}

/// MetaOffsets and MetaBlob.
fn write_metadata(w: &mut SecWriter, src: &dyn SegmentSource, b: &mut RecordBuf) -> Result<()> {
    let n = src.len();
    w.begin()?;
    let mut moff = 0u64;
    w.put(&moff.to_le_bytes())?;
    for i in 0..n {
        src.fill(i, Want::Meta, b)?;
        moff += b.meta.len() as u64;
        w.put(&moff.to_le_bytes())?;
    }
    w.end();
    w.begin()?;
    for i in 0..n {
        src.fill(i, Want::Meta, b)?;
        w.put(&b.meta)?;
    }
    w.end();
    Ok(())
}

/// The chunk table, the footer (every section's place, the counts, the table's checksum) and
/// the trailer (footer length, footer checksum, end magic).
fn write_tail(w: &mut SecWriter, rows: u64, fingers: u64, dim: usize) -> Result<()> {
    w.pad()?;
    let table_off = w.pos;
    let crcs = std::mem::take(&mut w.crcs);
    let table: Vec<u8> = crcs.iter().flat_map(|c| c.to_le_bytes()).collect();
    w.raw(&table)?;
    let mut f = Vec::with_capacity(FOOTER_LEN);
    for s in &w.secs {
        f.extend_from_slice(&(s.offset as u64).to_le_bytes());
        f.extend_from_slice(&(s.len as u64).to_le_bytes());
        f.extend_from_slice(&(s.first_chunk as u64).to_le_bytes());
    }
    f.extend_from_slice(&rows.to_le_bytes());
    f.extend_from_slice(&fingers.to_le_bytes());
    f.extend_from_slice(&(round_up(dim, 16) as u32).to_le_bytes());
    f.extend_from_slice(&(round_up(dim, 64) as u32).to_le_bytes());
    f.extend_from_slice(&(table_off as u64).to_le_bytes());
    f.extend_from_slice(&(crcs.len() as u64).to_le_bytes());
    f.extend_from_slice(&crc32fast::hash(&table).to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    debug_assert_eq!(f.len(), FOOTER_LEN);
    w.raw(&f)?;
    let mut t = [0u8; TRAILER_LEN];
    t[0..4].copy_from_slice(&(FOOTER_LEN as u32).to_le_bytes());
    t[4..8].copy_from_slice(&crc32fast::hash(&f).to_le_bytes());
    t[8..16].copy_from_slice(END_MAGIC);
    w.raw(&t)
}

/// An open, verified-on-demand segment.
pub(crate) struct Segment {
    pub(crate) name: String,
    pub(crate) id: u64,
    n: usize,
    dim: usize,
    rows: usize,
    fingers: usize,
    stride_f: usize,
    stride_8: usize,
    data: Arc<FileBytes>,
    /// Each section held in place (mapped or heap) or, for a sealed file, decrypted once; `None`
    /// for the large sections of a sealed file (see [`is_on_demand`]), read through the block
    /// cache.
    parts: [Option<Resident>; NSEC],
    secs: [SecInfo; NSEC],
    crcs: Vec<u32>,
    verified: Vec<AtomicU64>,
    full: [OnceLock<Result<(), String>>; NSEC],
    faces_ok: OnceLock<Result<(), String>>,
    fingers_ok: OnceLock<Result<(), String>>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Segment({}, {} records)", self.name, self.n)
    }
}

/// The footer's description of a segment file: where every section lies, the counts that size
/// them, and the chunk checksum table.
struct Footer {
    secs: [SecInfo; NSEC],
    rows: usize,
    fingers: usize,
    stride_f: usize,
    stride_8: usize,
    table_off: usize,
    nchunks: usize,
    table_crc: u32,
}

/// Checks the header of a segment file and returns its record count.
fn read_header(h: &[u8], id: u64, dim: usize, bad: &dyn Fn(String) -> StoreError) -> Result<usize> {
    if &h[0..8] != MAGIC {
        return Err(bad("bad magic".into()));
    }
    if u32_at(h, 60) != crc32fast::hash(&h[..60]) {
        return Err(bad("header checksum mismatch".into()));
    }
    if u32_at(h, 8) != VERSION {
        return Err(StoreError::Incompatible {
            detail: format!("segment version {}", u32_at(h, 8)),
        });
    }
    let hdim = u32_at(h, 12) as usize;
    if hdim != dim {
        return Err(bad(format!(
            "face dimension {hdim}, the gallery uses {dim}"
        )));
    }
    if u64_at(h, 16) != id {
        return Err(bad("header names another segment".into()));
    }
    if u32_at(h, 32) as usize != CHUNK {
        return Err(bad("unexpected chunk size".into()));
    }
    usize::try_from(u64_at(h, 24)).map_err(|_| bad("record count".into()))
}

/// Reads the trailer and footer (`tail`: the last `FOOTER_LEN + TRAILER_LEN` bytes of a file of
/// `len` bytes) and checks that the sections and the chunk table lie in order, aligned, within
/// the file.
fn read_footer(tail: &[u8], len: usize, bad: &dyn Fn(String) -> StoreError) -> Result<Footer> {
    if len < HEADER_LEN + FOOTER_LEN + TRAILER_LEN || tail.len() != FOOTER_LEN + TRAILER_LEN {
        return Err(bad(format!("{len} bytes, too short for a segment")));
    }
    let t = &tail[FOOTER_LEN..];
    if &t[8..16] != END_MAGIC || u32_at(t, 0) as usize != FOOTER_LEN {
        return Err(bad("bad trailer (incomplete file?)".into()));
    }
    let foot_at = len - TRAILER_LEN - FOOTER_LEN;
    let f = &tail[..FOOTER_LEN];
    if u32_at(t, 4) != crc32fast::hash(f) {
        return Err(bad("footer checksum mismatch".into()));
    }
    let big = |v: u64| usize::try_from(v).map_err(|_| bad("footer value too large".into()));
    let mut secs = [SecInfo::default(); NSEC];
    let mut end = HEADER_LEN;
    let mut chunk_sum = 0usize;
    for (k, s) in secs.iter_mut().enumerate() {
        *s = SecInfo {
            offset: big(u64_at(f, k * 24))?,
            len: big(u64_at(f, k * 24 + 8))?,
            first_chunk: big(u64_at(f, k * 24 + 16))?,
        };
        let s_end = s.offset.checked_add(s.len).filter(|&e| e <= foot_at);
        if s.offset % ALIGN != 0 || s.offset < end || s_end.is_none() {
            return Err(bad(format!("section {} out of place", SEC_NAMES[k])));
        }
        if s.first_chunk != chunk_sum {
            return Err(bad(format!("section {} chunk numbering", SEC_NAMES[k])));
        }
        chunk_sum += s.chunks();
        end = s_end.unwrap_or(foot_at);
    }
    let g = NSEC * 24;
    let footer = Footer {
        secs,
        rows: big(u64_at(f, g))?,
        fingers: big(u64_at(f, g + 8))?,
        stride_f: u32_at(f, g + 16) as usize,
        stride_8: u32_at(f, g + 20) as usize,
        table_off: big(u64_at(f, g + 24))?,
        nchunks: big(u64_at(f, g + 32))?,
        table_crc: u32_at(f, g + 40),
    };
    if footer.nchunks != chunk_sum
        || !footer.table_off.is_multiple_of(ALIGN)
        || footer.table_off < end
        || footer
            .table_off
            .checked_add(footer.nchunks.saturating_mul(4))
            != Some(foot_at)
    {
        return Err(bad("chunk table out of place".into()));
    }
    Ok(footer)
}

/// Alignment padding between the parts must be zero: every byte of the file is accounted for.
fn check_padding(
    data: &FileBytes,
    footer: &Footer,
    bad: &dyn Fn(String) -> StoreError,
) -> Result<()> {
    let mut prev_end = HEADER_LEN;
    let mut gaps: Vec<Range<usize>> = Vec::with_capacity(NSEC + 1);
    for s in &footer.secs {
        gaps.push(prev_end..s.offset);
        prev_end = s.offset + s.len;
    }
    gaps.push(prev_end..footer.table_off);
    for g in gaps {
        let gap = data
            .read(g)
            .map_err(|e| bad(format!("padding between sections: {e}")))?;
        if gap.iter().any(|&b| b != 0) {
            return Err(bad("non-zero padding between sections".into()));
        }
    }
    Ok(())
}

/// Each section's length must be the one its counts imply (records `n`, face rows, finger
/// entries, dimension `dim`), so no later read can run past a section.
fn check_section_sizes(
    footer: &Footer,
    n: usize,
    dim: usize,
    bad: &dyn Fn(String) -> StoreError,
) -> Result<()> {
    let Footer {
        secs,
        rows,
        fingers,
        stride_f,
        stride_8,
        ..
    } = footer;
    if dim > MAX_FACE_DIM || *stride_f != round_up(dim, 16) || *stride_8 != round_up(dim, 64) {
        return Err(bad("face geometry".into()));
    }
    let expect = |k: Sec, want: Option<usize>| -> Result<()> {
        if want != Some(secs[k as usize].len) {
            return Err(bad(format!(
                "section {} has {} bytes, the counts imply {want:?}",
                SEC_NAMES[k as usize], secs[k as usize].len
            )));
        }
        Ok(())
    };
    let idx_len = n.checked_add(1).and_then(|x| x.checked_mul(8));
    expect(Sec::IdOffsets, idx_len)?;
    expect(Sec::FingerIndex, idx_len)?;
    expect(Sec::FaceIndex, idx_len)?;
    expect(Sec::MetaOffsets, idx_len)?;
    expect(Sec::FingerTable, fingers.checked_mul(FINGER_ROW))?;
    expect(
        Sec::FaceF32,
        rows.checked_mul(*stride_f).and_then(|x| x.checked_mul(4)),
    )?;
    expect(Sec::FaceI8, rows.checked_mul(*stride_8))?;
    expect(Sec::FaceScale, rows.checked_mul(4))?;
    if dim == 0 && *rows != 0 {
        return Err(bad("face rows without a face dimension".into()));
    }
    Ok(())
}

/// Where each part of a segment file lies, by name (`"header"`, each section of the module
/// docs' table, `"chunk table"`, `"footer"`, `"trailer"`), read from its footer. For tools
/// and tests that need to point into a file; the footer is checked, the data is not.
pub fn layout(file: &[u8]) -> std::result::Result<Vec<(&'static str, Range<usize>)>, String> {
    let len = file.len();
    let tail = file
        .get(len.saturating_sub(FOOTER_LEN + TRAILER_LEN)..)
        .unwrap_or(&[]);
    let footer = read_footer(tail, len, &|d| StoreError::corrupt("segment", d))
        .map_err(|e| e.to_string())?;
    let mut parts = vec![("header", 0..HEADER_LEN)];
    for (k, s) in footer.secs.iter().enumerate() {
        parts.push((SEC_NAMES[k], s.offset..s.offset + s.len));
    }
    let foot_at = len - TRAILER_LEN - FOOTER_LEN;
    parts.push(("chunk table", footer.table_off..foot_at));
    parts.push(("footer", foot_at..len - TRAILER_LEN));
    parts.push(("trailer", len - TRAILER_LEN..len));
    Ok(parts)
}

impl Segment {
    /// Maps and checks segment `id` (see the module docs for what is verified when): header,
    /// footer, padding, section sizes and the chunk table at once; the id sections in full.
    pub(crate) fn open(dir: &dyn Directory, id: u64, dim: usize) -> Result<Segment> {
        let name = segment_name(id);
        let data = dir
            .map(&name)
            .map_err(|e| StoreError::io("map", name.clone(), e))?;
        let bad = |d: String| StoreError::corrupt(name.clone(), d);
        let len = data.len();
        if len < HEADER_LEN + FOOTER_LEN + TRAILER_LEN {
            return Err(bad(format!("{len} bytes, too short for a segment")));
        }
        if data
            .whole()
            .is_some_and(|w| !(w.as_ptr() as usize).is_multiple_of(ALIGN))
        {
            return Err(bad("file bytes not 64-byte aligned in memory".into()));
        }
        let read = |r: Range<usize>| data.read(r).map_err(|e| bad(e.to_string()));
        let n = read_header(&read(0..HEADER_LEN)?, id, dim, &bad).map_err(|e| match e {
            StoreError::Incompatible { detail } => StoreError::Incompatible {
                detail: format!("{name}: {detail}"),
            },
            other => other,
        })?;
        let foot_at = len - TRAILER_LEN - FOOTER_LEN;
        let footer = read_footer(&read(foot_at..len)?, len, &bad)?;
        check_padding(&data, &footer, &bad)?;
        let table = read(footer.table_off..foot_at)?;
        if crc32fast::hash(&table) != footer.table_crc {
            return Err(bad("chunk table checksum mismatch".into()));
        }
        let crcs: Vec<u32> = table
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        drop(table);
        check_section_sizes(&footer, n, dim, &bad)?;
        let verified = (0..footer.nchunks.div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        let data = Arc::new(data);
        let sealed = data.whole().is_none();
        let mut parts: [Option<Resident>; NSEC] = Default::default();
        for (k, part) in parts.iter_mut().enumerate() {
            if sealed && is_on_demand(k) {
                continue;
            }
            let i = footer.secs[k];
            *part = Some(
                Resident::part(&data, i.offset..i.offset + i.len)
                    .map_err(|e| bad(format!("section {}: {e}", SEC_NAMES[k])))?,
            );
        }
        let seg = Segment {
            name,
            id,
            n,
            dim,
            rows: footer.rows,
            fingers: footer.fingers,
            stride_f: footer.stride_f,
            stride_8: footer.stride_8,
            data,
            parts,
            secs: footer.secs,
            crcs,
            verified,
            full: Default::default(),
            faces_ok: OnceLock::new(),
            fingers_ok: OnceLock::new(),
        };
        seg.verify_section(Sec::IdOffsets)?;
        seg.verify_section(Sec::IdBlob)?;
        seg.check_ids()?;
        Ok(seg)
    }

    fn corrupt(&self, d: impl Into<String>) -> StoreError {
        StoreError::corrupt(self.name.clone(), d)
    }

    fn check_ids(&self) -> Result<()> {
        let off = self.u64s(Sec::IdOffsets);
        let blob = self.bytes(Sec::IdBlob);
        if off.first() != Some(&0) || off.last().copied() != Some(blob.len() as u64) {
            return Err(self.corrupt("id offsets do not span the id blob"));
        }
        let mut prev: &[u8] = &[];
        for w in off.windows(2) {
            let (a, b) = (w[0] as usize, w[1] as usize);
            if a >= b || b - a > MAX_REFERENCE_ID_LEN || b > blob.len() {
                return Err(self.corrupt("id offsets not increasing or an id too long"));
            }
            let id = &blob[a..b];
            if !id.iter().all(u8::is_ascii_graphic) || id <= prev {
                return Err(self.corrupt("ids not printable or not strictly increasing"));
            }
            prev = id;
        }
        Ok(())
    }

    /// A section held resident (every section but the on-demand ones of a sealed file; those
    /// read as empty here and go through [`Segment::read`]).
    fn bytes(&self, s: Sec) -> &[u8] {
        self.parts[s as usize].as_deref().unwrap_or(&[])
    }

    /// Whether section `s` is read on demand (a large section of a sealed file).
    fn on_demand(&self, s: Sec) -> bool {
        self.parts[s as usize].is_none()
    }

    /// Bytes `range` of section `s`, in place or decrypted through the block cache (not
    /// checksum-verified: see [`Segment::verify_range`]).
    fn read(&self, s: Sec, range: Range<usize>) -> Result<FileSlice<'_>> {
        let info = self.secs[s as usize];
        if range.start > range.end || range.end > info.len {
            return Err(self.corrupt(format!(
                "reference past the end of section {}",
                SEC_NAMES[s as usize]
            )));
        }
        if let Some(p) = &self.parts[s as usize] {
            return Ok(FileSlice::Borrowed(&p[range]));
        }
        self.data
            .read(info.offset + range.start..info.offset + range.end)
            .map_err(|e| self.corrupt(format!("section {}: {e}", SEC_NAMES[s as usize])))
    }

    /// Verified bytes `range` of section `s`.
    fn read_verified(&self, s: Sec, range: Range<usize>) -> Result<FileSlice<'_>> {
        self.verify_range(s, range.clone())?;
        self.read(s, range)
    }

    /// Face rows `rows` as `dim` floats each, verified.
    fn face_rows(&self, rows: Range<usize>, out: &mut Vec<f32>) -> Result<()> {
        let row_bytes = self.stride_f * 4;
        if rows.is_empty() || row_bytes == 0 {
            return Ok(());
        }
        let bytes =
            self.read_verified(Sec::FaceF32, rows.start * row_bytes..rows.end * row_bytes)?;
        for row in bytes.chunks_exact(row_bytes) {
            out.extend(
                row[..self.dim * 4]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
        Ok(())
    }

    fn u64s(&self, s: Sec) -> &[u64] {
        cast(self.bytes(s))
    }

    fn verify_chunk(&self, s: Sec, c: usize) -> Result<(), String> {
        let info = self.secs[s as usize];
        let g = info.first_chunk + c;
        let bit = 1u64 << (g % 64);
        let word = &self.verified[g / 64];
        if word.load(Ordering::Acquire) & bit != 0 {
            return Ok(());
        }
        let start = c * CHUNK;
        let end = (start + CHUNK).min(info.len);
        let bytes = self.read(s, start..end).map_err(|e| e.to_string())?;
        if crc32fast::hash(&bytes) != self.crcs[g] {
            return Err(format!(
                "checksum mismatch in section {} at bytes {start}..{end}",
                SEC_NAMES[s as usize]
            ));
        }
        word.fetch_or(bit, Ordering::AcqRel);
        Ok(())
    }

    /// Verifies the chunks covering `range` (bytes within the section).
    fn verify_range(&self, s: Sec, range: Range<usize>) -> Result<()> {
        if range.start >= range.end {
            return Ok(());
        }
        if range.end > self.secs[s as usize].len {
            return Err(self.corrupt(format!(
                "reference past the end of section {}",
                SEC_NAMES[s as usize]
            )));
        }
        for c in range.start / CHUNK..=(range.end - 1) / CHUNK {
            self.verify_chunk(s, c).map_err(|d| self.corrupt(d))?;
        }
        Ok(())
    }

    fn verify_section(&self, s: Sec) -> Result<()> {
        let r = self.full[s as usize].get_or_init(|| {
            (0..self.secs[s as usize].chunks())
                .into_par_iter()
                .try_for_each(|c| self.verify_chunk(s, c))
        });
        r.clone().map_err(|d| self.corrupt(d))
    }

    /// Verifies every section (compaction input, `Store::verify`).
    pub(crate) fn verify_all(&self) -> Result<()> {
        self.face_matrix()?;
        self.finger_templates()?;
        // Sealed on-demand sections are otherwise verified chunk by chunk as they are read.
        self.verify_section(Sec::FaceF32)?;
        self.verify_section(Sec::FingerBlob)?;
        self.verify_section(Sec::MetaOffsets)?;
        self.verify_section(Sec::MetaBlob)?;
        self.check_index(Sec::MetaOffsets, self.secs[Sec::MetaBlob as usize].len)
            .map_err(|d| self.corrupt(d))
    }

    fn check_index(&self, s: Sec, total: usize) -> Result<(), String> {
        let idx = self.u64s(s);
        if idx.first() != Some(&0) || idx.last().copied() != Some(total as u64) {
            return Err(format!("{} does not span its data", SEC_NAMES[s as usize]));
        }
        if idx.par_windows(2).any(|w| w[0] > w[1]) {
            return Err(format!("{} not monotonic", SEC_NAMES[s as usize]));
        }
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.n
    }

    pub(crate) fn file_len(&self) -> usize {
        self.data.len()
    }

    pub(crate) fn is_mapped(&self) -> bool {
        self.data.is_mapped()
    }

    /// Reference id of `ord` (ids were verified at open).
    pub(crate) fn id(&self, ord: usize) -> &str {
        let off = self.u64s(Sec::IdOffsets);
        let blob = self.bytes(Sec::IdBlob);
        match (off.get(ord), off.get(ord + 1)) {
            (Some(&a), Some(&b)) => {
                std::str::from_utf8(blob.get(a as usize..b as usize).unwrap_or(&[]))
                    .unwrap_or_default()
            }
            _ => "",
        }
    }

    /// Ordinal of `id`, if stored (deleted or not).
    pub(crate) fn find(&self, id: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.id(mid).cmp(id) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// Reads `ord`'s range from an (N+1) index section, verifying the chunks read.
    fn index_range(&self, s: Sec, ord: usize, limit: usize) -> Result<Range<usize>> {
        self.verify_range(s, ord * 8..ord * 8 + 16)?;
        let idx = self.u64s(s);
        let (a, b) = match (idx.get(ord), idx.get(ord + 1)) {
            (Some(&a), Some(&b)) => (a as usize, b as usize),
            _ => return Err(self.corrupt("ordinal out of range")),
        };
        if a > b || b > limit {
            return Err(self.corrupt(format!("bad range in {}", SEC_NAMES[s as usize])));
        }
        Ok(a..b)
    }

    fn finger_row(&self, e: usize) -> Result<(u8, Range<usize>)> {
        self.verify_range(Sec::FingerTable, e * FINGER_ROW..(e + 1) * FINGER_ROW)?;
        let t = self.bytes(Sec::FingerTable);
        let at = e * FINGER_ROW;
        let off = u64_at(t, at) as usize;
        let len = u32_at(t, at + 8) as usize;
        let pos = t[at + 12];
        let blob_len = self.secs[Sec::FingerBlob as usize].len;
        match off.checked_add(len) {
            Some(end) if end <= blob_len && pos <= 10 => Ok((pos, off..end)),
            _ => Err(self.corrupt("finger table entry out of range")),
        }
    }

    /// Copies record `ord` out, verifying every chunk it reads.
    pub(crate) fn record(&self, ord: usize) -> Result<Record> {
        let mut buf = RecordBuf::default();
        let mut r = Record {
            reference_id: self.id(ord).to_owned(),
            ..Record::default()
        };
        for e in self.index_range(Sec::FingerIndex, ord, self.fingers)? {
            let (pos, range) = self.finger_row(e)?;
            r.fingers.push(FingerEntry {
                position: FingerPosition::new(pos).unwrap_or(FingerPosition::UNKNOWN),
                template: self.read_verified(Sec::FingerBlob, range)?.into_vec(),
            });
        }
        let rows = self.index_range(Sec::FaceIndex, ord, self.rows)?;
        let mut floats = Vec::with_capacity(rows.len() * self.dim);
        self.face_rows(rows, &mut floats)?;
        r.faces = floats
            .chunks_exact(self.dim.max(1))
            .map(<[f32]>::to_vec)
            .collect();
        let mrange =
            self.index_range(Sec::MetaOffsets, ord, self.secs[Sec::MetaBlob as usize].len)?;
        buf.meta
            .extend_from_slice(&self.read_verified(Sec::MetaBlob, mrange)?);
        r.metadata = decode_metadata(&buf.meta)
            .map_err(|e| self.corrupt(format!("metadata of a record: {e}")))?;
        Ok(r)
    }

    /// Fills a builder buffer from `ord` (compaction); the caller ran [`Segment::verify_all`].
    pub(crate) fn fill(&self, ord: usize, want: Want, buf: &mut RecordBuf) -> Result<()> {
        buf.clear();
        buf.id.extend_from_slice(self.id(ord).as_bytes());
        for e in self.index_range(Sec::FingerIndex, ord, self.fingers)? {
            let (pos, range) = self.finger_row(e)?;
            buf.finger_pos.push(pos);
            buf.finger_len.push(range.len() as u32);
            if want == Want::FingerBytes {
                buf.finger_bytes
                    .extend_from_slice(&self.read_verified(Sec::FingerBlob, range)?);
            }
        }
        let rows = self.index_range(Sec::FaceIndex, ord, self.rows)?;
        buf.n_faces = rows.len();
        match want {
            Want::Faces => self.face_rows(rows, &mut buf.faces)?,
            Want::Meta => {
                let mrange =
                    self.index_range(Sec::MetaOffsets, ord, self.secs[Sec::MetaBlob as usize].len)?;
                buf.meta
                    .extend_from_slice(&self.read_verified(Sec::MetaBlob, mrange)?);
            }
            _ => {}
        }
        Ok(())
    }

    /// The face matrices, after verifying the face sections in full (once).
    pub(crate) fn face_matrix(&self) -> Result<FaceMatrix<'_>> {
        let ok = self.faces_ok.get_or_init(|| {
            for s in [Sec::FaceIndex, Sec::FaceF32, Sec::FaceI8, Sec::FaceScale] {
                if !self.on_demand(s) {
                    self.verify_section(s).map_err(|e| e.to_string())?;
                }
            }
            self.check_index(Sec::FaceIndex, self.rows)
        });
        ok.clone().map_err(|d| self.corrupt(d))?;
        Ok(FaceMatrix {
            seg: self,
            dim: self.dim,
            stride: self.stride_f,
            stride_i8: self.stride_8,
            f32s: (!self.on_demand(Sec::FaceF32)).then(|| cast(self.bytes(Sec::FaceF32))),
            i8s: cast(self.bytes(Sec::FaceI8)),
            scales: cast(self.bytes(Sec::FaceScale)),
            index: self.u64s(Sec::FaceIndex),
        })
    }

    /// The finger templates, after verifying the finger sections in full (once).
    pub(crate) fn finger_templates(&self) -> Result<FingerTemplates<'_>> {
        let ok = self.fingers_ok.get_or_init(|| {
            for s in [Sec::FingerIndex, Sec::FingerTable, Sec::FingerBlob] {
                if !self.on_demand(s) {
                    self.verify_section(s).map_err(|e| e.to_string())?;
                }
            }
            self.check_index(Sec::FingerIndex, self.fingers)?;
            let blob_len = self.secs[Sec::FingerBlob as usize].len as u64;
            let bad = self
                .bytes(Sec::FingerTable)
                .par_chunks_exact(FINGER_ROW)
                .any(|r| {
                    let end = u64_at(r, 0).checked_add(u64::from(u32_at(r, 8)));
                    end.is_none_or(|e| e > blob_len) || r[12] > 10 || r[13..16] != [0, 0, 0]
                });
            if bad {
                return Err("finger table entry out of range".into());
            }
            Ok(())
        });
        ok.clone().map_err(|d| self.corrupt(d))?;
        Ok(FingerTemplates {
            seg: self,
            index: self.u64s(Sec::FingerIndex),
            table: self.bytes(Sec::FingerTable),
            blob: (!self.on_demand(Sec::FingerBlob)).then(|| self.bytes(Sec::FingerBlob)),
        })
    }
}

/// The face embeddings of one segment: contiguous 64-byte aligned `f32` rows (in place, or read
/// on demand when the file is sealed), their int8 quantisation and per-row scales (always in
/// memory: the scan reads them). Row `r` belongs to the record whose
/// [`FaceMatrix::record_rows`] contains it ([`FaceMatrix::row_owner`]).
#[derive(Clone, Copy)]
pub struct FaceMatrix<'a> {
    seg: &'a Segment,
    dim: usize,
    stride: usize,
    stride_i8: usize,
    f32s: Option<&'a [f32]>,
    i8s: &'a [i8],
    scales: &'a [f32],
    index: &'a [u64],
}

impl<'a> FaceMatrix<'a> {
    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Number of face rows (embeddings) in the segment.
    pub fn rows(&self) -> usize {
        self.scales.len()
    }
    /// Row `r` as `dim` floats: in place, or read and verified when the file is sealed.
    pub fn row(&self, r: usize) -> Result<std::borrow::Cow<'a, [f32]>> {
        if let Some(m) = self.f32s {
            return m
                .get(r * self.stride..r * self.stride + self.dim)
                .map(std::borrow::Cow::Borrowed)
                .ok_or_else(|| self.seg.corrupt("face row out of range"));
        }
        let mut out = Vec::with_capacity(self.dim);
        self.seg.face_rows(r..r + 1, &mut out)?;
        Ok(std::borrow::Cow::Owned(out))
    }
    /// Row `r` quantised: `row[i] ≈ row_i8[i] as f32 * scale(r)`.
    #[inline]
    pub fn row_i8(&self, r: usize) -> &'a [i8] {
        &self.i8s[r * self.stride_i8..r * self.stride_i8 + self.dim]
    }
    #[inline]
    pub fn scale(&self, r: usize) -> f32 {
        self.scales[r]
    }
    /// The whole f32 matrix in place and its row stride in floats (≥ dim, a multiple of 16);
    /// `None` when the file is sealed (rows are read one by one, [`FaceMatrix::row`]).
    pub fn f32_matrix(&self) -> Option<(&'a [f32], usize)> {
        self.f32s.map(|m| (m, self.stride))
    }
    /// The whole int8 matrix and its row stride in bytes (≥ dim, a multiple of 64).
    pub fn i8_matrix(&self) -> (&'a [i8], usize) {
        (self.i8s, self.stride_i8)
    }
    /// All per-row scales.
    pub fn scales(&self) -> &'a [f32] {
        self.scales
    }
    /// Face rows of record ordinal `ord`.
    pub fn record_rows(&self, ord: usize) -> Range<usize> {
        match (self.index.get(ord), self.index.get(ord + 1)) {
            (Some(&a), Some(&b)) => a as usize..b as usize,
            _ => 0..0,
        }
    }
    /// Record ordinal that row `r` belongs to.
    pub fn row_owner(&self, r: usize) -> usize {
        self.index
            .partition_point(|&x| x <= r as u64)
            .saturating_sub(1)
    }
}

/// The finger templates of one segment, read in place (or on demand when the file is sealed).
#[derive(Clone, Copy)]
pub struct FingerTemplates<'a> {
    seg: &'a Segment,
    index: &'a [u64],
    table: &'a [u8],
    blob: Option<&'a [u8]>,
}

impl<'a> FingerTemplates<'a> {
    /// Number of finger entries in the segment.
    pub fn len(&self) -> usize {
        self.table.len() / FINGER_ROW
    }
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
    /// Finger entries of record ordinal `ord`.
    pub fn record_entries(&self, ord: usize) -> Range<usize> {
        match (self.index.get(ord), self.index.get(ord + 1)) {
            (Some(&a), Some(&b)) => a as usize..b as usize,
            _ => 0..0,
        }
    }
    /// Position of entry `e`.
    #[inline]
    pub fn position(&self, e: usize) -> FingerPosition {
        FingerPosition::new(self.table[e * FINGER_ROW + 12]).unwrap_or(FingerPosition::UNKNOWN)
    }
    /// Native template bytes of entry `e` (the table was checked against the blob's bounds).
    pub fn template(&self, e: usize) -> Result<FileSlice<'a>> {
        let at = e * FINGER_ROW;
        let off = u64_at(self.table, at) as usize;
        let len = u32_at(self.table, at + 8) as usize;
        match self.blob {
            Some(b) => b
                .get(off..off + len)
                .map(FileSlice::Borrowed)
                .ok_or_else(|| self.seg.corrupt("finger table entry out of range")),
            None => self.seg.read_verified(Sec::FingerBlob, off..off + len),
        }
    }
    /// `(position, template)` of record `ord`, in insertion order.
    pub fn of_record(
        &self,
        ord: usize,
    ) -> impl Iterator<Item = Result<(FingerPosition, FileSlice<'a>)>> + '_ {
        self.record_entries(ord)
            .map(move |e| Ok((self.position(e), self.template(e)?)))
    }
}

/// Input for a build: records from memory and from older segments, merged by id.
pub(crate) enum Item {
    Mem(Arc<Record>),
    Seg(usize, usize),
}

pub(crate) struct MergeSource<'a> {
    pub items: &'a [Item],
    pub segs: &'a [Arc<Segment>],
}

impl SegmentSource for MergeSource<'_> {
    fn len(&self) -> usize {
        self.items.len()
    }
    fn fill(&self, i: usize, want: Want, buf: &mut RecordBuf) -> Result<()> {
        match &self.items[i] {
            Item::Mem(r) => fill_from_record(r, want, buf),
            Item::Seg(k, ord) => self.segs[*k].fill(*ord, want, buf),
        }
    }
}

/// Whether section `k` of a sealed segment is read on demand rather than decrypted at open:
/// the templates and the f32 face rows (most of the file, read only for the few records a
/// search shortlists) and the metadata (read when a record is copied out).
fn is_on_demand(k: usize) -> bool {
    [Sec::FingerBlob, Sec::FaceF32, Sec::MetaBlob]
        .iter()
        .any(|&s| s as usize == k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memdir::MemDirectory;
    use crate::store::synth::synthetic_record;
    use proptest::prelude::*;

    const DIM: usize = 20;

    fn build(dir: &MemDirectory, n: usize) -> Vec<Arc<Record>> {
        let recs: Vec<Arc<Record>> = (0..n)
            .map(|i| {
                Arc::new(synthetic_record(
                    &format!("id{i:04}"),
                    i as u64,
                    i % 4,
                    1 + i % 2,
                    DIM,
                ))
            })
            .collect();
        let items: Vec<Item> = recs.iter().map(|r| Item::Mem(Arc::clone(r))).collect();
        build_segment(
            dir,
            1,
            DIM,
            &MergeSource {
                items: &items,
                segs: &[],
            },
        )
        .unwrap();
        recs
    }

    fn read_all(dir: &MemDirectory, n: usize) -> Result<Vec<Record>> {
        let s = Segment::open(dir, 1, DIM)?;
        s.verify_all()?;
        (0..n).map(|o| s.record(o)).collect()
    }

    #[test]
    fn store_segment_round_trip_and_layout() {
        let dir = MemDirectory::new();
        let recs = build(&dir, 30);
        let s = Segment::open(&dir, 1, DIM).unwrap();
        assert_eq!(s.len(), 30);
        assert_eq!(s.find("id0007"), Some(7));
        assert_eq!(s.find("id00070"), None);
        for (o, r) in recs.iter().enumerate() {
            assert!(s.record(o).unwrap().same_content(r));
        }
        let bytes = dir.read(&segment_name(1)).unwrap();
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(&bytes[bytes.len() - 8..], END_MAGIC);
        for sec in &s.secs {
            assert_eq!(sec.offset % 64, 0);
        }
        assert!(Segment::open(&dir, 1, DIM + 1).is_err());
        assert!(Segment::open(&dir, 2, DIM).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Every byte of the file is covered: any single flipped byte is refused at open or by
        /// full verification, and nothing panics.
        #[test]
        fn store_segment_any_flipped_byte_is_detected(at in any::<usize>(), x in 1u8..) {
            let dir = MemDirectory::new();
            build(&dir, 12);
            let name = segment_name(1);
            let len = dir.file_len(&name).unwrap();
            dir.corrupt_byte(&name, at % len, x).unwrap();
            prop_assert!(read_all(&dir, 12).is_err());
        }

        #[test]
        fn store_segment_truncated_or_random_never_panics(cut in any::<usize>(), junk in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let dir = MemDirectory::new();
            build(&dir, 5);
            let name = segment_name(1);
            let bytes = dir.read(&name).unwrap();
            let keep = cut % bytes.len();
            let mut w = dir.create(&name).unwrap();
            w.write_all(&bytes[..keep]).unwrap();
            prop_assert!(read_all(&dir, 5).is_err());
            let mut w = dir.create(&name).unwrap();
            w.write_all(&junk).unwrap();
            prop_assert!(read_all(&dir, 5).is_err());
        }
    }
}
