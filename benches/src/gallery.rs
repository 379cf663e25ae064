//! The harness's view of a `gen` gallery: records by harness number, their prepared fingers
//! and face rows, the finger code index, and the scoring shared by `search` and `dedup`.

use std::path::Path;
use std::sync::Arc;

use abis_engine::face::{Calibration, FaceManifest};
use abis_engine::gallery::fusion::combine;
use abis_engine::index::finger_code::CodeIndex;
use abis_engine::matcher::{Matcher, PreparedTemplate, Scratch};
use abis_engine::store::{Snapshot, Store, StoreConfig};
use abis_engine::synth::FACE_DIM;
use abis_engine::template::decode_native;
use anyhow::{bail, Context, Result};

use crate::population::{codes_path, store_dir, Population};

/// Where record `r` lives: (segment, ordinal).
type Location = (usize, usize);

pub struct Gallery {
    pub snapshot: Arc<Snapshot>,
    pub records: Vec<Option<Location>>,
    pub codes: CodeIndex,
    /// Exhaustive mode only: every record's prepared fingers.
    pub prepared: Vec<Vec<(u8, PreparedTemplate)>>,
}

impl Gallery {
    pub fn open(data: &Path, pop: &Population, need_codes: bool) -> Result<(Store, Self)> {
        let (store, _) = Store::open(store_dir(data), StoreConfig::new(FACE_DIM))
            .with_context(|| format!("opening the gallery in {}", data.display()))?;
        let snapshot = store.snapshot();
        let mut records = vec![None; pop.records() as usize];
        for (s, seg) in snapshot.segments().iter().enumerate() {
            for ord in seg.live_ordinals() {
                if let Some(r) = Population::record_of(seg.reference_id(ord)) {
                    if let Some(slot) = records.get_mut(r as usize) {
                        *slot = Some((s, ord));
                    }
                }
            }
        }
        let codes = if need_codes {
            let bytes = std::fs::read(codes_path(data))?;
            let codes = CodeIndex::read_from(&bytes)?;
            if codes.len() as u64 != pop.records() {
                bail!(
                    "the code index holds {} records, the population {}: regenerate the gallery",
                    codes.len(),
                    pop.records()
                );
            }
            codes
        } else {
            CodeIndex::new()
        };
        Ok((
            store,
            Gallery {
                snapshot,
                records,
                codes,
                prepared: Vec::new(),
            },
        ))
    }

    /// Record `record`'s fingers at the positions `wanted` accepts, prepared for matching.
    pub fn fingers_of(
        &self,
        m: &Matcher,
        record: u64,
        wanted: impl Fn(u8) -> bool,
    ) -> Result<Vec<(u8, PreparedTemplate)>> {
        let Some(Some((s, ord))) = self.records.get(record as usize) else {
            return Ok(Vec::new());
        };
        let fingers = self.snapshot.segments()[*s].fingers()?;
        fingers
            .of_record(*ord)
            .filter(|(pos, _)| wanted(pos.code()))
            .map(|(pos, bytes)| Ok((pos.code(), m.prepare(&decode_native(bytes)?)?)))
            .collect()
    }

    pub fn face_of(&self, record: u64) -> Result<Option<Vec<f32>>> {
        let Some(Some((s, ord))) = self.records.get(record as usize) else {
            return Ok(None);
        };
        let faces = self.snapshot.segments()[*s].faces()?;
        Ok(faces
            .record_rows(*ord)
            .next()
            .map(|r| faces.row(r).to_vec()))
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Fused finger score of a probe against one person's prepared fingers (same positions only).
pub fn finger_score(
    m: &Matcher,
    probe: &[(u8, PreparedTemplate)],
    person: &[(u8, PreparedTemplate)],
    scratch: &mut Scratch,
) -> f64 {
    let scores: Vec<f64> = probe
        .iter()
        .filter_map(|(pos, p)| {
            let (_, g) = person.iter().find(|(q, _)| q == pos)?;
            Some(f64::from(m.compare(p, g, scratch).score))
        })
        .collect();
    combine(&scores)
}

pub fn face_calibration(path: &Path) -> Result<Calibration> {
    let manifest = FaceManifest::load(path)?;
    let spec = manifest
        .model(&manifest.face.embedder)?
        .calibration
        .clone()
        .context("the face embedder has no calibration in the manifest")?;
    Ok(Calibration::from_spec(&spec)?)
}

pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

pub fn dir_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|d| {
            d.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
