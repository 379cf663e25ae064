//! Synthetic records and galleries for tests, benches and the scale harness (not biometric
//! data: random minutiae and random embeddings, deterministic in a seed).

use std::path::Path;
use std::sync::Arc;

use crate::hash::mix;
use crate::template::{
    encode_native, FingerPosition, FingerTemplate, Impression, Minutia, MinutiaKind,
};

use super::bitmap::DeletionBitmap;
use super::companion::{self, Companion, Origin};
use super::dir::Directory;
use super::error::{Result, StoreError};
use super::meta::{Meta, SegmentMeta};
use super::record::{FingerEntry, Record};
use super::segment::{build_segment, fill_from_record, RecordBuf, Segment, SegmentSource, Want};
use super::snapshot::SegmentView;

/// A valid native template with `minutiae` random minutiae at ISO `position` (0..=10).
pub fn synthetic_template(seed: u64, position: u8, minutiae: usize) -> Vec<u8> {
    let mut s = seed;
    let mut next = || {
        s = mix(s);
        s
    };
    let t = FingerTemplate {
        width: 500,
        height: 550,
        ppi: 500,
        position: FingerPosition::new(position.min(10)).unwrap_or_default(),
        impression: Impression::LivePlain,
        quality: (next() % 101) as u8,
        minutiae: (0..minutiae.min(255))
            .map(|_| Minutia {
                x: (next() % 500) as u16,
                y: (next() % 550) as u16,
                direction: (next() % 65536) as f32 * (std::f32::consts::TAU / 65536.0),
                kind: if next() % 2 == 0 {
                    MinutiaKind::Ending
                } else {
                    MinutiaKind::Bifurcation
                },
                quality: (next() % 101) as u8,
            })
            .collect(),
    };
    encode_native(&t).unwrap_or_default()
}

/// Random embedding values in [-1, 1).
pub fn synthetic_face(seed: u64, dim: usize, out: &mut Vec<f32>) {
    let mut s = seed;
    for _ in 0..dim {
        s = mix(s);
        out.push(((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0);
    }
}

/// A valid record: `fingers` templates (positions cycling 1..=10), `faces` embeddings of `dim`.
pub fn synthetic_record(id: &str, seed: u64, fingers: usize, faces: usize, dim: usize) -> Record {
    let mut r = Record {
        reference_id: id.to_owned(),
        ..Record::default()
    };
    for j in 0..fingers {
        let pos = (j % 10) as u8 + 1;
        let s = mix(seed ^ (j as u64 + 1));
        r.fingers.push(FingerEntry {
            position: FingerPosition::new(pos).unwrap_or_default(),
            template: synthetic_template(s, pos, 10 + (s % 40) as usize),
        });
    }
    for k in 0..faces {
        let mut f = Vec::with_capacity(dim);
        synthetic_face(mix(seed ^ (0xFACE + k as u64)), dim, &mut f);
        r.faces.push(f);
    }
    r.metadata
        .insert("source".to_owned(), format!("synthetic-{}", seed % 7));
    r
}

struct Synth {
    n: usize,
    dim: usize,
    fingers: usize,
    seed: u64,
    templates: Vec<Vec<u8>>,
}

const SYNTH_TEMPLATES: usize = 64;

impl SegmentSource for Synth {
    fn len(&self) -> usize {
        self.n
    }
    fn fill(&self, i: usize, want: Want, b: &mut RecordBuf) -> Result<()> {
        b.id.clear();
        b.finger_pos.clear();
        b.finger_len.clear();
        b.finger_bytes.clear();
        b.faces.clear();
        b.meta.clear();
        use std::io::Write;
        let _ = write!(&mut b.id, "SYN{i:012}");
        for j in 0..self.fingers {
            let t = &self.templates[(i * 7 + j) % SYNTH_TEMPLATES];
            b.finger_pos.push((j % 10) as u8 + 1);
            b.finger_len.push(t.len() as u32);
            if want == Want::FingerBytes {
                b.finger_bytes.extend_from_slice(t);
            }
        }
        b.n_faces = usize::from(self.dim > 0);
        match want {
            Want::Faces if self.dim > 0 => {
                synthetic_face(mix(self.seed ^ i as u64), self.dim, &mut b.faces)
            }
            Want::Meta => b.meta.push(0),
            _ => {}
        }
        Ok(())
    }
}

/// Writes a fresh store at `path` holding one segment of `n` synthetic records (ids
/// `SYN000000000000`…, one face of `dim` each, `fingers` templates each drawn from a pool of 64),
/// without going through the log: the fast way to make a large gallery for open-time and scan
/// benchmarks. `path` must not hold a store.
pub fn build_synthetic_gallery(
    path: &Path,
    n: usize,
    dim: usize,
    fingers: usize,
    seed: u64,
) -> Result<u64> {
    let templates = (0..SYNTH_TEMPLATES)
        .map(|k| synthetic_template(mix(seed ^ k as u64), (k % 10) as u8 + 1, 30 + k % 20))
        .collect();
    let src = Synth {
        n,
        dim,
        fingers,
        seed,
        templates,
    };
    let mut w = GalleryWriter::create(path, dim, None)?;
    let built = build_segment(&*w.dir, 1, dim, &src)?;
    w.meta.segments.push(SegmentMeta {
        id: 1,
        records: src.len() as u64,
        file_len: built.file_len as u64,
        deletions_gen: None,
        deleted: 0,
    });
    w.meta.next_segment_id = 2;
    w.bytes = built.file_len as u64;
    w.finish()
}

/// In-memory records, already in strictly increasing id order.
struct Sorted<'a>(&'a [Arc<Record>]);

impl SegmentSource for Sorted<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn fill(&self, i: usize, want: Want, b: &mut RecordBuf) -> Result<()> {
        fill_from_record(&self.0[i], want, b)
    }
}

/// Writes a fresh store segment by segment, without the log: how the scale harness lays down a
/// gallery of millions in bounded memory. Each [`GalleryWriter::append`] writes one segment (and
/// its companion files, when a companion is given); [`GalleryWriter::finish`] writes the meta
/// file that makes them a store. A run stopped before `finish` leaves a directory the store
/// refuses to open (segments without a meta), never a partial gallery.
pub struct GalleryWriter {
    dir: Arc<dyn Directory>,
    dim: usize,
    companion: Option<Arc<dyn Companion>>,
    meta: Meta,
    last_id: Option<String>,
    bytes: u64,
}

impl GalleryWriter {
    /// Starts a store at `path`, which must not hold one.
    pub fn create(
        path: &Path,
        dim: usize,
        companion: Option<Arc<dyn Companion>>,
    ) -> Result<GalleryWriter> {
        let dir = super::open_fs_directory(path)?;
        let names = dir
            .list()
            .map_err(|e| StoreError::io("list", path.display().to_string(), e))?;
        if names.iter().any(|n| n != super::dir::LOCK_FILE) {
            return Err(StoreError::Incompatible {
                detail: "gallery target is not empty".into(),
            });
        }
        Ok(GalleryWriter {
            dir: Arc::new(dir),
            dim,
            companion,
            meta: Meta::new(dim as u32),
            last_id: None,
            bytes: 0,
        })
    }

    /// Writes `records` (ids strictly increasing, above every id appended before) as the next
    /// segment. Returns the bytes written so far.
    pub fn append(&mut self, records: Vec<Record>) -> Result<u64> {
        let ordered = records
            .windows(2)
            .all(|w| w[0].reference_id < w[1].reference_id)
            && records
                .first()
                .is_none_or(|r| self.last_id.as_ref().is_none_or(|l| *l < r.reference_id));
        if !ordered {
            // Positions, not ids: ids are personal identifiers and stay out of messages.
            return Err(StoreError::Incompatible {
                detail: "gallery ids not strictly increasing across the appended records".into(),
            });
        }
        if records.is_empty() {
            return Ok(self.bytes);
        }
        for r in &records {
            r.validate(self.dim)?;
        }
        self.last_id = records.last().map(|r| r.reference_id.clone());
        let records: Vec<Arc<Record>> = records.into_iter().map(Arc::new).collect();
        let id = self.meta.next_segment_id;
        let built = build_segment(&*self.dir, id, self.dim, &Sorted(&records))?;
        if let Some(c) = self.companion.as_deref() {
            let seg = Arc::new(Segment::open(&*self.dir, id, self.dim)?);
            let view = SegmentView {
                deleted: Arc::new(DeletionBitmap::new(seg.len())),
                seg,
                companion: None,
            };
            let origin = |o: usize| match records.get(o) {
                Some(r) => Origin::Memory(r),
                None => Origin::Rebuild,
            };
            for name in companion::build(&*self.dir, c, &view, &origin, "")? {
                self.bytes += self.dir.map(&name).map_or(0, |b| b.len() as u64);
            }
        }
        self.meta.segments.push(SegmentMeta {
            id,
            records: records.len() as u64,
            file_len: built.file_len as u64,
            deletions_gen: None,
            deleted: 0,
        });
        self.meta.next_segment_id = id + 1;
        self.bytes += built.file_len as u64;
        Ok(self.bytes)
    }

    /// Makes the appended segments a store (log file, meta file, directory fsync).
    pub fn finish(self) -> Result<u64> {
        self.dir
            .sync_dir()
            .map_err(|e| StoreError::io("fsync directory", ".", e))?;
        super::create_wal(&*self.dir, 1)?;
        super::write_meta(&*self.dir, &self.meta)?;
        Ok(self.bytes)
    }
}

/// Writes `records` (ids strictly increasing, faces of `dim`) as a fresh store at `path` in one
/// segment, without the log. Returns the bytes written. `path` must not hold a store.
pub fn write_gallery(
    path: &Path,
    dim: usize,
    records: Vec<Record>,
    companion: Option<Arc<dyn Companion>>,
) -> Result<u64> {
    let mut w = GalleryWriter::create(path, dim, companion)?;
    w.append(records)?;
    w.finish()
}
