//! Identification and verification over a store snapshot.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rayon::prelude::*;
use thiserror::Error;

use super::fusion;
use crate::index::finger_code::{and_popcount, similarity, FingerCode, FingerCoder};
use crate::matcher::{Matcher, PreparedTemplate, Scratch};
use crate::store::{Record, ReplicatedOp, ReplicatedOutcome, Snapshot, Store, StoreError};
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

/// A 1:N answer: candidates best first, the threshold they cleared, the number of records
/// searched.
pub type Identified = Result<(Vec<Candidate>, f64, u64), GalleryError>;

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

/// How 1:N picks the records the full matcher scores.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchConfig {
    /// Searches over more records than this go through the indexes (finger codes and face
    /// cosines pick a short list); smaller ones score every record. `usize::MAX`: always
    /// exhaustive.
    pub index_above: usize,
    /// Records each index keeps for the full matcher.
    pub shortlist: usize,
    /// Probes with fewer fingers than this and no face are searched exhaustively even in a
    /// large gallery: one or two fingers' codes lose too many mates to a short list (on 100,000
    /// synthetic people: 12 of 95 with one finger, 4 of 100 with two, 1 of 100 with four).
    pub index_min_fingers: usize,
    /// Keep the matcher's prepared form of every record (~25 KB per finger template) so that
    /// exhaustive search and 1:1 need no preparation; off, only codes (2 KiB per finger) and
    /// faces are kept and the short list is prepared per search.
    pub retain_prepared: bool,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            index_above: 20_000,
            shortlist: 100,
            index_min_fingers: 4,
            retain_prepared: true,
        }
    }
}

/// A record as searches need it, cached: prepared finger templates (empty when not retained),
/// their codes, and the faces.
struct PreparedRecord {
    fingers: Vec<(FingerPosition, PreparedTemplate)>,
    /// Each finger's code and its popcount.
    codes: Vec<(FingerPosition, FingerCode, u32)>,
    faces: Vec<Vec<f32>>,
}

/// Whether a probe finger at `p` may be compared with a gallery finger at `g` (an unknown
/// position matches any).
fn positions_compatible(p: FingerPosition, g: FingerPosition) -> bool {
    p.code() == 0 || g.code() == 0 || p == g
}

/// The gallery: a store, a matcher, a face scorer, and a cache of prepared records.
pub struct Gallery {
    store: Store,
    matcher: Matcher,
    face_scorer: Option<FaceScorer>,
    search: SearchConfig,
    coder: FingerCoder,
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
            search: SearchConfig::default(),
            coder: FingerCoder::new(),
            prepared: RwLock::new(HashMap::new()),
            deletions: AtomicU64::new(0),
        }
    }

    /// The same gallery with another search configuration (set before the first search: the
    /// cache keeps whatever form was prepared first).
    pub fn with_search(mut self, search: SearchConfig) -> Gallery {
        self.search = search;
        self
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

    /// Applies operations of a replicated log (see [`Store::apply_replicated`]): a record whose
    /// templates do not decode is rejected like an invalid one (the position still moves), and
    /// deleted records are forgotten by the caches.
    pub fn apply_replicated(
        &self,
        ops: Vec<(u64, ReplicatedOp)>,
    ) -> Result<Vec<ReplicatedOutcome>, GalleryError> {
        let mut rejected = Vec::new();
        let ops = ops
            .into_iter()
            .enumerate()
            .map(|(i, (position, op))| match op {
                ReplicatedOp::Insert(r) => {
                    match r
                        .fingers
                        .iter()
                        .try_for_each(|f| decode_native(&f.template).map(drop))
                    {
                        Ok(()) => (position, ReplicatedOp::Insert(r)),
                        Err(e) => {
                            rejected.push((i, e.to_string()));
                            (position, ReplicatedOp::Skip)
                        }
                    }
                }
                other => (position, other),
            })
            .collect::<Vec<_>>();
        let deleted: Vec<String> = ops
            .iter()
            .filter_map(|(_, op)| match op {
                ReplicatedOp::Delete(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        let mut outcomes = self.store.apply_replicated(ops)?;
        for (i, why) in rejected {
            if outcomes[i] != ReplicatedOutcome::AlreadyApplied {
                outcomes[i] = ReplicatedOutcome::Rejected(why);
            }
        }
        if !deleted.is_empty() {
            self.deletions.fetch_add(1, Ordering::SeqCst);
            let mut cache = self.prepared.write().unwrap_or_else(|p| p.into_inner());
            for id in &deleted {
                cache.remove(id);
            }
        }
        Ok(outcomes)
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
        // The threshold stays the one for all `searched` records: the short list only skips
        // records the indexes judge hopeless, it does not shrink the search's FPIR budget.
        let positions: Vec<FingerPosition> =
            prepared_probe.fingers.iter().map(|(p, _)| *p).collect();
        let indexable = !prepared_probe.faces.is_empty()
            || prepared_probe.fingers.len() >= self.search.index_min_fingers;
        let targets = if indexable && targets.len() > self.search.index_above {
            self.shortlist(&prepared_probe, targets, epoch)?
        } else {
            targets
        };
        let scored: Vec<Candidate> = targets
            .par_iter()
            .map_init(
                Scratch::default,
                |scratch, target| -> Result<Option<Candidate>, GalleryError> {
                    let record = self.full_record(target, epoch, &positions)?;
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

    /// Searches several probes; each answer is exactly what [`Gallery::identify`] gives for
    /// that probe alone.
    pub fn identify_batch(&self, probes: &[(Probe, IdentifyOptions)]) -> Vec<Identified> {
        probes
            .iter()
            .map(|(probe, options)| self.identify(probe, options))
            .collect()
    }

    /// The targets the indexes keep: the best `shortlist` by fused finger-code similarity and
    /// the best `shortlist` by face cosine (exact, on the cached rows), merged.
    fn shortlist<'s>(
        &self,
        probe: &PreparedRecord,
        targets: Vec<Target<'s>>,
        epoch: u64,
    ) -> Result<Vec<Target<'s>>, GalleryError> {
        let k = self.search.shortlist.max(1);
        let records: Vec<Arc<PreparedRecord>> = targets
            .par_iter()
            .map(|t| self.prepared_record(t, epoch))
            .collect::<Result<_, _>>()?;
        let mut keep = vec![false; targets.len()];
        let mut mark_best = |scores: Vec<f32>| {
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            for &i in order.iter().take(k) {
                keep[i] = true;
            }
        };
        if !probe.codes.is_empty() {
            mark_best(records.par_iter().map(|r| code_score(probe, r)).collect());
        }
        if !probe.faces.is_empty() {
            mark_best(
                records
                    .par_iter()
                    .map(|r| best_cosine(&probe.faces, &r.faces))
                    .collect(),
            );
        }
        Ok(targets
            .into_iter()
            .zip(keep)
            .filter_map(|(t, k)| k.then_some(t))
            .collect())
    }

    /// `target` with its prepared fingers: the cached form, or (when the cache keeps only codes)
    /// the fingers a probe with fingers at `positions` can be compared with, prepared now and
    /// not kept (the others would not be scored anyway).
    fn full_record(
        &self,
        target: &Target<'_>,
        epoch: u64,
        positions: &[FingerPosition],
    ) -> Result<Arc<PreparedRecord>, GalleryError> {
        let cached = self.prepared_record(target, epoch)?;
        if self.search.retain_prepared || cached.codes.is_empty() {
            return Ok(cached);
        }
        let record = target.record()?;
        let wanted = |g: FingerPosition| positions.iter().any(|&p| positions_compatible(p, g));
        Ok(Arc::new(PreparedRecord {
            fingers: self.prepare_fingers(&record, wanted)?,
            codes: Vec::new(),
            faces: cached.faces.clone(),
        }))
    }

    /// The record's finger templates at the positions `wanted` accepts, prepared.
    fn prepare_fingers(
        &self,
        record: &Record,
        wanted: impl Fn(FingerPosition) -> bool,
    ) -> Result<Vec<(FingerPosition, PreparedTemplate)>, GalleryError> {
        record
            .fingers
            .iter()
            .filter(|f| wanted(f.position))
            .map(|f| {
                let t = decode_native(&f.template).map_err(GalleryError::StoredTemplate)?;
                let p = self
                    .matcher
                    .prepare(&t)
                    .map_err(|e| GalleryError::Probe(e.to_string()))?;
                Ok((f.position, p))
            })
            .collect()
    }

    fn codes_of(
        &self,
        fingers: &[(FingerPosition, PreparedTemplate)],
    ) -> Vec<(FingerPosition, FingerCode, u32)> {
        fingers
            .iter()
            .map(|(pos, p)| {
                let code = self.coder.encode(p);
                let ones = code.ones();
                (*pos, code, ones)
            })
            .collect()
    }

    /// 1:1: the probe against one enrolled record.
    pub fn verify(&self, probe: &Probe, reference_id: &str) -> Result<Verification, GalleryError> {
        let epoch = self.deletions.load(Ordering::SeqCst);
        let snapshot = self.store.snapshot();
        let target = Target::find(&snapshot, reference_id).ok_or(GalleryError::NotFound)?;
        let positions: Vec<FingerPosition> = probe.fingers.iter().map(|(p, _)| *p).collect();
        let record = self.full_record(&target, epoch, &positions)?;
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
        let fingers: Vec<(FingerPosition, PreparedTemplate)> = probe
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
            codes: self.codes_of(&fingers),
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
        let fingers = self.prepare_fingers(&record, |_| true)?;
        let prepared = Arc::new(PreparedRecord {
            codes: self.codes_of(&fingers),
            fingers: if self.search.retain_prepared {
                fingers
            } else {
                Vec::new()
            },
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
                if !positions_compatible(*pos, *rpos) {
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
                let best = best_cosine(&probe.faces, &record.faces);
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

/// Fused finger-code similarity of a record to the probe: per probe finger the best code
/// among the record's compatible fingers, summed.
fn code_score(probe: &PreparedRecord, record: &PreparedRecord) -> f32 {
    probe
        .codes
        .iter()
        .map(|(pos, code, ones)| {
            record
                .codes
                .iter()
                .filter(|(rpos, _, _)| positions_compatible(*pos, *rpos))
                .map(|(_, rc, r_ones)| {
                    similarity(and_popcount(&code.words, &rc.words), *ones, *r_ones)
                })
                .fold(0f32, f32::max)
        })
        .sum()
}

/// The highest cosine between any probe face and any record face (`f32::MIN` when either side
/// has none).
fn best_cosine(probe: &[Vec<f32>], record: &[Vec<f32>]) -> f32 {
    probe
        .iter()
        .flat_map(|a| record.iter().map(move |b| cosine(a, b)))
        .fold(f32::MIN, f32::max)
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
