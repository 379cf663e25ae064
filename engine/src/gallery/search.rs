//! Identification and verification over a store snapshot.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rayon::prelude::*;
use thiserror::Error;

use super::fusion;
use crate::matcher::{Matcher, PreparedTemplate, Scratch};
use crate::store::{Record, Snapshot, Store, StoreError};
use crate::template::{decode_native, FingerPosition, FingerTemplate, TemplateError};

/// Why a search could not run.
#[derive(Debug, Error)]
pub enum GalleryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored template of a record is unreadable: {0}")]
    StoredTemplate(TemplateError),
    #[error("probe template rejected: {0}")]
    Probe(String),
    #[error("the probe has no biometric data")]
    EmptyProbe,
    #[error("referenceId not found")]
    NotFound,
    #[error("face embedding has {got} dimensions, the gallery stores {expected}")]
    FaceDimension { expected: usize, got: usize },
}

/// Maps a face similarity (cosine of L2-normalised embeddings) to a calibrated score
/// (`-10 log10(FMR)`). Provided by the face pipeline, whose model it belongs to.
pub type FaceScorer = Arc<dyn Fn(f32) -> f64 + Send + Sync>;

/// What is searched with.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub fingers: Vec<(FingerPosition, FingerTemplate)>,
    /// L2-normalised face embeddings.
    pub faces: Vec<Vec<f32>>,
}

impl Probe {
    /// The probe made of a stored record's own data.
    pub fn from_record(record: &Record) -> Result<Probe, GalleryError> {
        let fingers = record
            .fingers
            .iter()
            .map(|f| {
                Ok((
                    f.position,
                    decode_native(&f.template).map_err(GalleryError::StoredTemplate)?,
                ))
            })
            .collect::<Result<_, GalleryError>>()?;
        Ok(Probe {
            fingers,
            faces: record.faces.clone(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.fingers.is_empty() && self.faces.is_empty()
    }
}

/// Search options (MOSIP flags).
#[derive(Debug, Clone)]
pub struct IdentifyOptions {
    pub max_results: usize,
    /// Target false-positive identification rate over the whole search.
    pub target_fpir: f64,
    /// A record never returned (the probe's own).
    pub exclude: Option<String>,
    /// Search only these records (empty: all).
    pub only: Option<HashSet<String>>,
}

impl Default for IdentifyOptions {
    fn default() -> Self {
        IdentifyOptions {
            max_results: 10,
            target_fpir: 1e-3,
            exclude: None,
            only: None,
        }
    }
}

/// One modality's contribution to a record score.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModalityEvidence {
    /// Calibrated score of this modality's combined evidence.
    pub score: f64,
    /// Finger positions whose comparison was strong (FMR <= 1e-2); empty for faces.
    pub positions: Vec<u8>,
}

/// A record that scored above the threshold.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Candidate {
    pub reference_id: String,
    pub score: f64,
    pub finger: Option<ModalityEvidence>,
    pub face: Option<ModalityEvidence>,
}

/// The result of a 1:1 comparison with a decision at a chosen FMR.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verification {
    pub score: f64,
    pub finger: Option<ModalityEvidence>,
    pub face: Option<ModalityEvidence>,
}

/// A record's prepared finger templates, cached.
struct PreparedRecord {
    fingers: Vec<(FingerPosition, PreparedTemplate)>,
    faces: Vec<Vec<f32>>,
}

/// The gallery: a store, a matcher, a face scorer, and a cache of prepared records.
pub struct Gallery {
    store: Store,
    matcher: Matcher,
    face_scorer: Option<FaceScorer>,
    prepared: RwLock<HashMap<String, Arc<PreparedRecord>>>,
    /// Deletions so far. A record prepared from a snapshot taken before a deletion is not
    /// cached: it could be the deleted content of an id that is enrolled again.
    deletions: AtomicU64,
}

/// Strong per-finger evidence reported in the candidate's positions list.
const STRONG_FINGER_SCORE: f64 = 20.0;

impl Gallery {
    pub fn new(store: Store, matcher: Matcher, face_scorer: Option<FaceScorer>) -> Gallery {
        Gallery {
            store,
            matcher,
            face_scorer,
            prepared: RwLock::new(HashMap::new()),
            deletions: AtomicU64::new(0),
        }
    }

    /// Gives the store back (to close it at shutdown).
    pub fn into_store(self) -> Store {
        self.store
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Inserts a record (see [`Store::insert`]).
    pub fn insert(&self, record: Record) -> Result<crate::store::InsertOutcome, GalleryError> {
        // Refuse unreadable templates before they become durable.
        for f in &record.fingers {
            decode_native(&f.template).map_err(|e| GalleryError::Probe(e.to_string()))?;
        }
        Ok(self.store.insert(record)?)
    }

    /// Deletes a record and forgets its prepared form.
    pub fn delete(&self, id: &str) -> Result<(), GalleryError> {
        self.store.delete(id)?;
        // Bump first, then evict (under the cache lock): a search that prepared the old
        // content either inserted it before the bump, and the eviction removes it, or sees the
        // new count and does not insert it.
        self.deletions.fetch_add(1, Ordering::SeqCst);
        self.prepared
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(())
    }

    /// 1:N search. Candidates at or above the threshold for `options.target_fpir` over the
    /// number of records searched, best first, at most `options.max_results`.
    pub fn identify(
        &self,
        probe: &Probe,
        options: &IdentifyOptions,
    ) -> Result<(Vec<Candidate>, f64, u64), GalleryError> {
        if probe.is_empty() {
            return Err(GalleryError::EmptyProbe);
        }
        let prepared_probe = self.prepare_probe(probe)?;
        let epoch = self.deletions.load(Ordering::SeqCst);
        let snapshot = self.store.snapshot();
        let targets = self.targets(&snapshot, options);
        let searched = targets.len() as u64;
        let threshold = fusion::threshold_for_fpir(options.target_fpir, searched);
        let scored: Vec<Candidate> = targets
            .par_iter()
            .map_init(
                Scratch::default,
                |scratch, target| -> Result<Option<Candidate>, GalleryError> {
                    let record = self.prepared_record(target, epoch)?;
                    let c = self.score_record(&prepared_probe, &record, scratch, target.id());
                    Ok((c.score >= threshold).then_some(c))
                },
            )
            .filter_map(|r| r.transpose())
            .collect::<Result<_, _>>()?;
        let mut candidates = scored;
        candidates.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.reference_id.cmp(&b.reference_id))
        });
        candidates.truncate(options.max_results.max(1));
        Ok((candidates, threshold, searched))
    }

    /// 1:1: the probe against one enrolled record.
    pub fn verify(&self, probe: &Probe, reference_id: &str) -> Result<Verification, GalleryError> {
        let epoch = self.deletions.load(Ordering::SeqCst);
        let snapshot = self.store.snapshot();
        let target = Target::find(&snapshot, reference_id).ok_or(GalleryError::NotFound)?;
        let record = self.prepared_record(&target, epoch)?;
        self.verify_prepared(probe, &record)
    }

    /// 1:1: the probe against other samples (nothing stored).
    pub fn verify_samples(
        &self,
        probe: &Probe,
        reference: &Probe,
    ) -> Result<Verification, GalleryError> {
        let record = self.prepare_probe(reference)?;
        self.verify_prepared(probe, &record)
    }

    fn verify_prepared(
        &self,
        probe: &Probe,
        record: &PreparedRecord,
    ) -> Result<Verification, GalleryError> {
        if probe.is_empty() {
            return Err(GalleryError::EmptyProbe);
        }
        let prepared_probe = self.prepare_probe(probe)?;
        let c = self.score_record(&prepared_probe, record, &mut Scratch::default(), "");
        Ok(Verification {
            score: c.score,
            finger: c.finger,
            face: c.face,
        })
    }

    fn prepare_probe(&self, probe: &Probe) -> Result<PreparedRecord, GalleryError> {
        let fingers = probe
            .fingers
            .iter()
            .map(|(pos, t)| {
                Ok((
                    *pos,
                    self.matcher
                        .prepare(t)
                        .map_err(|e| GalleryError::Probe(e.to_string()))?,
                ))
            })
            .collect::<Result<_, GalleryError>>()?;
        let dim = self.store.snapshot().face_dim();
        for f in &probe.faces {
            if f.len() != dim {
                return Err(GalleryError::FaceDimension {
                    expected: dim,
                    got: f.len(),
                });
            }
        }
        Ok(PreparedRecord {
            fingers,
            faces: probe.faces.clone(),
        })
    }

    fn targets<'s>(&self, snapshot: &'s Snapshot, options: &IdentifyOptions) -> Vec<Target<'s>> {
        let keep = |id: &str| {
            options.exclude.as_deref() != Some(id)
                && options.only.as_ref().is_none_or(|only| only.contains(id))
        };
        let mut targets = Vec::with_capacity(snapshot.len() as usize);
        for (s, seg) in snapshot.segments().iter().enumerate() {
            for ord in seg.live_ordinals() {
                let id = seg.reference_id(ord);
                if keep(id) {
                    targets.push(Target::Segment {
                        snapshot,
                        segment: s,
                        ord,
                        id,
                    });
                }
            }
        }
        for r in snapshot.recent() {
            if keep(&r.reference_id) {
                targets.push(Target::Recent(Arc::clone(r)));
            }
        }
        targets
    }

    /// Prepares every record of the gallery ahead of the first search (the matcher's form of a
    /// template costs far more to build than to compare), in parallel. Returns how many.
    pub fn warm(&self) -> Result<usize, GalleryError> {
        let epoch = self.deletions.load(Ordering::SeqCst);
        let snapshot = self.store.snapshot();
        let targets = self.targets(&snapshot, &IdentifyOptions::default());
        targets
            .par_iter()
            .try_for_each(|t| self.prepared_record(t, epoch).map(drop))?;
        Ok(targets.len())
    }

    /// `target` prepared, from the cache or built (and cached unless a deletion happened since
    /// `epoch`, the deletion count read before the target's snapshot).
    fn prepared_record(
        &self,
        target: &Target<'_>,
        epoch: u64,
    ) -> Result<Arc<PreparedRecord>, GalleryError> {
        if let Some(p) = self
            .prepared
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(target.id())
        {
            return Ok(Arc::clone(p));
        }
        let record = target.record()?;
        let fingers = record
            .fingers
            .iter()
            .map(|f| {
                let t = decode_native(&f.template).map_err(GalleryError::StoredTemplate)?;
                let p = self
                    .matcher
                    .prepare(&t)
                    .map_err(|e| GalleryError::Probe(e.to_string()))?;
                Ok((f.position, p))
            })
            .collect::<Result<_, GalleryError>>()?;
        let prepared = Arc::new(PreparedRecord {
            fingers,
            faces: record.faces.clone(),
        });
        let mut cache = self.prepared.write().unwrap_or_else(|p| p.into_inner());
        if self.deletions.load(Ordering::SeqCst) == epoch {
            cache.insert(record.reference_id.clone(), Arc::clone(&prepared));
        }
        Ok(prepared)
    }

    /// Scores one record: per probe finger the best of the record's impressions at that position
    /// (all fingers when a position is unknown), corrected for the number of tries, Fisher-
    /// combined across fingers; faces likewise; then the modalities combined.
    fn score_record(
        &self,
        probe: &PreparedRecord,
        record: &PreparedRecord,
        scratch: &mut Scratch,
        id: &str,
    ) -> Candidate {
        let mut finger_scores = Vec::with_capacity(probe.fingers.len());
        let mut strong = Vec::new();
        for (pos, p) in &probe.fingers {
            let mut best = 0.0f64;
            let mut tries = 0usize;
            for (rpos, r) in &record.fingers {
                if pos.code() != 0 && rpos.code() != 0 && pos != rpos {
                    continue;
                }
                tries += 1;
                best = best.max(f64::from(self.matcher.compare(p, r, scratch).score));
            }
            if tries > 0 {
                let s = fusion::best_of(best, tries);
                if s >= STRONG_FINGER_SCORE {
                    strong.push(pos.code());
                }
                finger_scores.push(s);
            }
        }
        let finger = (!finger_scores.is_empty()).then(|| ModalityEvidence {
            score: fusion::combine(&finger_scores),
            positions: strong,
        });

        let face = match (
            &self.face_scorer,
            probe.faces.is_empty() || record.faces.is_empty(),
        ) {
            (Some(scorer), false) => {
                let mut best = f32::MIN;
                for a in &probe.faces {
                    for b in &record.faces {
                        best = best.max(cosine(a, b));
                    }
                }
                let tries = probe.faces.len() * record.faces.len();
                Some(ModalityEvidence {
                    score: fusion::best_of(scorer(best), tries),
                    positions: Vec::new(),
                })
            }
            _ => None,
        };
        let parts: Vec<f64> = finger.iter().chain(face.iter()).map(|m| m.score).collect();
        Candidate {
            reference_id: id.to_owned(),
            score: fusion::combine(&parts),
            finger,
            face,
        }
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na <= 0.0 || nb <= 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// A record to score: in a segment, or recent (in memory).
enum Target<'s> {
    Segment {
        snapshot: &'s Snapshot,
        segment: usize,
        ord: usize,
        id: &'s str,
    },
    Recent(Arc<Record>),
}

impl<'s> Target<'s> {
    fn find(snapshot: &'s Snapshot, id: &str) -> Option<Target<'s>> {
        if let Some(r) = snapshot.recent().iter().find(|r| r.reference_id == id) {
            return Some(Target::Recent(Arc::clone(r)));
        }
        snapshot.segments().iter().enumerate().find_map(|(s, seg)| {
            seg.find(id).map(|ord| Target::Segment {
                snapshot,
                segment: s,
                ord,
                id: seg.reference_id(ord),
            })
        })
    }

    fn id(&self) -> &str {
        match self {
            Target::Segment { id, .. } => id,
            Target::Recent(r) => &r.reference_id,
        }
    }

    fn record(&self) -> Result<Arc<Record>, GalleryError> {
        match self {
            Target::Segment {
                snapshot,
                segment,
                ord,
                ..
            } => Ok(Arc::new(snapshot.segments()[*segment].record(*ord)?)),
            Target::Recent(r) => Ok(Arc::clone(r)),
        }
    }
}
