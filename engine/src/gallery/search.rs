//! Identification and verification over a store snapshot.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rayon::prelude::*;
use thiserror::Error;

use super::fusion;
use super::shortlist::{self, compatible, Indexed, Loc, ProbeIndex, Targets};
use crate::index::code::FingerCode;
use crate::index::local::LocalForm;
use crate::index::segment_index::FingerIndexFiles;
use crate::matcher::{Matcher, PreparedTemplate, Scratch};
use crate::store::{
    Directory, InsertOutcome, Record, RecoveryReport, ReplicatedOp, ReplicatedOutcome, Snapshot,
    Store, StoreConfig, StoreError,
};
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
    /// A segment's index is missing or being rebuilt: no 1:N search runs on part of it.
    #[error("the 1:N index is being rebuilt; searches resume when it is complete")]
    IndexIncomplete,
    #[error("1:N index: {0}")]
    Index(String),
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

/// A 1:N answer: candidates best first, the threshold they cleared, the number of records
/// searched.
pub type Identified = Result<(Vec<Candidate>, f64, u64), GalleryError>;

/// The order of a 1:N answer: score descending, then referenceId; at most `max_results` (at
/// least one). A cluster's router orders the shards' merged candidates with it too.
pub fn rank(candidates: &mut Vec<Candidate>, max_results: usize) {
    candidates.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.reference_id.cmp(&b.reference_id))
    });
    candidates.truncate(max_results.max(1));
}

/// How 1:N picks the records the full matcher scores.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchConfig {
    /// Searches over more records than this go through the index; smaller ones score every
    /// record with the full matcher. `usize::MAX`: always exhaustive.
    pub index_above: usize,
    /// Records the first stage (codes) passes to the second (local structures).
    pub code_shortlist: usize,
    /// Records the second stage, and the face scan, each pass to the full matcher.
    pub shortlist: usize,
    /// Probes with fewer fingers than this (and no face) skip the first stage: one or two
    /// fingers' codes are too weak a filter, so every record's local structures are compared.
    pub index_min_fingers: usize,
    /// Keep the matcher's prepared form of every record (~25 KB per finger template) while the
    /// gallery is searched exhaustively, so that searches need no preparation.
    pub retain_prepared: bool,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            index_above: 20_000,
            code_shortlist: 256,
            shortlist: 32,
            index_min_fingers: 4,
            retain_prepared: true,
        }
    }
}

/// A record's fingers prepared for the matcher, and its faces.
struct PreparedRecord {
    fingers: Vec<(FingerPosition, PreparedTemplate)>,
    faces: Vec<Vec<f32>>,
}

/// A probe ready for every stage.
struct ReadyProbe {
    prepared: PreparedRecord,
    index: ProbeIndex,
    positions: Vec<FingerPosition>,
}

/// The gallery: a store with its finger index, a matcher, a face scorer, and (while searched
/// exhaustively) a cache of prepared records.
pub struct Gallery {
    store: Store,
    matcher: Matcher,
    face_scorer: Option<FaceScorer>,
    search: SearchConfig,
    index: Arc<FingerIndexFiles>,
    prepared: RwLock<HashMap<String, Arc<PreparedRecord>>>,
    /// Deletions so far. A record prepared from a snapshot taken before a deletion is not
    /// cached: it could be the deleted content of an id that is enrolled again.
    deletions: AtomicU64,
}

/// Cached index entries of records no longer in the log tolerated before a search prunes them.
const RECENT_SLACK: usize = 1024;

/// Strong per-finger evidence reported in the candidate's positions list.
const STRONG_FINGER_SCORE: f64 = 20.0;

impl Gallery {
    /// Opens (or creates) the gallery in `path`: the store with the finger index as its
    /// companion files (`cfg.companion` is replaced).
    pub fn open(
        path: impl AsRef<Path>,
        cfg: StoreConfig,
        matcher: Matcher,
        face_scorer: Option<FaceScorer>,
    ) -> Result<(Gallery, RecoveryReport), GalleryError> {
        Self::open_with(cfg, matcher, face_scorer, |cfg| Store::open(path, cfg))
    }

    /// [`Gallery::open`] in any [`Directory`].
    pub fn open_in(
        dir: Arc<dyn Directory>,
        cfg: StoreConfig,
        matcher: Matcher,
        face_scorer: Option<FaceScorer>,
    ) -> Result<(Gallery, RecoveryReport), GalleryError> {
        Self::open_with(cfg, matcher, face_scorer, |cfg| Store::open_in(dir, cfg))
    }

    fn open_with(
        mut cfg: StoreConfig,
        matcher: Matcher,
        face_scorer: Option<FaceScorer>,
        open_store: impl FnOnce(StoreConfig) -> Result<(Store, RecoveryReport), StoreError>,
    ) -> Result<(Gallery, RecoveryReport), GalleryError> {
        let index = Arc::new(FingerIndexFiles::default());
        cfg.companion = Some(index.clone());
        let (store, report) = open_store(cfg)?;
        Ok((
            Gallery::assemble(store, matcher, face_scorer, index),
            report,
        ))
    }

    fn assemble(
        store: Store,
        matcher: Matcher,
        face_scorer: Option<FaceScorer>,
        index: Arc<FingerIndexFiles>,
    ) -> Gallery {
        Gallery {
            store,
            matcher,
            face_scorer,
            search: SearchConfig::default(),
            index,
            prepared: RwLock::new(HashMap::new()),
            deletions: AtomicU64::new(0),
        }
    }

    /// The companion files a store must be opened with for [`Gallery`] to search it (for tools
    /// that write galleries directly, such as the scale harness).
    pub fn index_files() -> Arc<dyn crate::store::Companion> {
        Arc::new(FingerIndexFiles::default())
    }

    /// The same gallery with another search configuration (set before the first search: the
    /// cache keeps whatever form was prepared first).
    pub fn with_search(mut self, search: SearchConfig) -> Gallery {
        self.search = search;
        self
    }

    pub fn search_config(&self) -> &SearchConfig {
        &self.search
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

    /// Whether every segment's index is usable (after an unclean start it may be rebuilding).
    pub fn index_ready(&self) -> bool {
        self.store.missing_companions() == 0
    }

    /// Inserts a record (see [`Store::insert`]). Its index entries are computed first, so that
    /// an unreadable template is refused before it becomes durable and the first search finds
    /// them ready.
    pub fn insert(&self, record: Record) -> Result<InsertOutcome, GalleryError> {
        self.index
            .recent
            .get_or_compute(&record)
            .map_err(|e| GalleryError::Probe(e.to_string()))?;
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
                ReplicatedOp::Insert(r) => match self.index.recent.get_or_compute(&r) {
                    Ok(_) => (position, ReplicatedOp::Insert(r)),
                    Err(e) => {
                        rejected.push((i, e.to_string()));
                        (position, ReplicatedOp::Skip)
                    }
                },
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
            self.forget(&deleted);
        }
        Ok(outcomes)
    }

    /// Deletes a record and forgets its prepared form.
    pub fn delete(&self, id: &str) -> Result<(), GalleryError> {
        self.store.delete(id)?;
        self.forget(&[id.to_owned()]);
        Ok(())
    }

    fn forget(&self, ids: &[String]) {
        // Bump first, then evict (under the cache lock): a search that prepared the old
        // content either inserted it before the bump, and the eviction removes it, or sees the
        // new count and does not insert it.
        self.deletions.fetch_add(1, Ordering::SeqCst);
        let mut cache = self.prepared.write().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            cache.remove(id);
        }
    }

    /// 1:N search. Candidates at or above the threshold for `options.target_fpir` over the
    /// number of records searched, best first, at most `options.max_results`.
    pub fn identify(&self, probe: &Probe, options: &IdentifyOptions) -> Identified {
        let batch = [(probe.clone(), options.clone())];
        self.identify_batch(&batch)
            .pop()
            .unwrap_or(Err(GalleryError::EmptyProbe))
    }

    /// Several searches in one pass over the index: each answer is exactly what
    /// [`Gallery::identify`] gives for that probe alone.
    pub fn identify_batch(&self, probes: &[(Probe, IdentifyOptions)]) -> Vec<Identified> {
        let epoch = self.deletions.load(Ordering::SeqCst);
        let snapshot = self.store.snapshot();
        let ready: Vec<Result<ReadyProbe, GalleryError>> = probes
            .par_iter()
            .map(|(p, _)| self.ready(p, snapshot.face_dim()))
            .collect();
        let targets: Vec<Targets> = probes
            .iter()
            .map(|(_, o)| shortlist::targets(&snapshot, o.only.as_ref(), o.exclude.as_deref()))
            .collect();
        let indexed_search: Vec<bool> = targets
            .iter()
            .map(|t| t.count as usize > self.search.index_above)
            .collect();
        let indexed = if indexed_search.iter().any(|&i| i) {
            self.prune_recent(&snapshot);
            Some(Indexed::new(&snapshot, &self.index.recent))
        } else {
            None
        };
        let shortlists = self.shortlists(&ready, &targets, &indexed_search, indexed.as_ref());
        probes
            .iter()
            .zip(ready)
            .zip(targets)
            .zip(shortlists)
            .zip(indexed_search)
            .map(|(((((_, options), ready), targets), shortlist), indexed)| {
                let ready = ready?;
                let locs = match shortlist {
                    Some(s) => s?,
                    None => shortlist::live_targets(&snapshot, &targets),
                };
                let threshold = fusion::threshold_for_fpir(options.target_fpir, targets.count);
                let mut candidates =
                    self.score_all(&snapshot, &ready, &locs, epoch, threshold, indexed)?;
                rank(&mut candidates, options.max_results);
                Ok((candidates, threshold, targets.count))
            })
            .collect()
    }

    /// Per probe: `None` to score every target (small gallery), else its short list.
    fn shortlists(
        &self,
        ready: &[Result<ReadyProbe, GalleryError>],
        targets: &[Targets],
        indexed_search: &[bool],
        indexed: Option<&Result<Indexed<'_>, GalleryError>>,
    ) -> Vec<Option<Result<Vec<Loc>, GalleryError>>> {
        let Some(indexed) = indexed else {
            return ready.iter().map(|_| None).collect();
        };
        let indexed = match indexed {
            Ok(i) => i,
            Err(_) => {
                return indexed_search
                    .iter()
                    .map(|&i| i.then_some(Err(GalleryError::IndexIncomplete)))
                    .collect()
            }
        };
        // Stage 1 for every probe that uses it, in one pass.
        let coded: Vec<usize> = (0..ready.len())
            .filter(|&i| {
                indexed_search[i]
                    && ready[i].as_ref().is_ok_and(|r| {
                        r.positions.len() >= self.search.index_min_fingers
                            && !r.index.codes.is_empty()
                    })
            })
            .collect();
        let batch: Vec<(&ProbeIndex, &Targets)> = coded
            .iter()
            .filter_map(|&i| ready[i].as_ref().ok().map(|r| (&r.index, &targets[i])))
            .collect();
        let mut by_codes: HashMap<usize, Vec<Loc>> = coded
            .iter()
            .copied()
            .zip(indexed.by_codes(&batch, self.search.code_shortlist.max(1)))
            .collect();
        (0..ready.len())
            .map(|i| {
                if !indexed_search[i] {
                    return None;
                }
                let Ok(r) = &ready[i] else {
                    return Some(Ok(Vec::new()));
                };
                Some(self.shortlist_one(indexed, r, &targets[i], by_codes.remove(&i)))
            })
            .collect()
    }

    fn shortlist_one(
        &self,
        indexed: &Indexed<'_>,
        probe: &ReadyProbe,
        targets: &Targets,
        by_codes: Option<Vec<Loc>>,
    ) -> Result<Vec<Loc>, GalleryError> {
        let k = self.search.shortlist.max(1);
        let mut locs = Vec::new();
        if !probe.index.forms.is_empty() {
            let candidates =
                by_codes.unwrap_or_else(|| shortlist::live_targets(indexed.snapshot, targets));
            locs.extend(indexed.by_local(&probe.index, &candidates, k)?);
        }
        locs.extend(indexed.by_face(&probe.index, targets, k)?);
        locs.sort();
        locs.dedup();
        Ok(locs)
    }

    /// The full matcher on every location; those at or above `threshold`.
    fn score_all(
        &self,
        snapshot: &Snapshot,
        probe: &ReadyProbe,
        locs: &[Loc],
        epoch: u64,
        threshold: f64,
        indexed: bool,
    ) -> Result<Vec<Candidate>, GalleryError> {
        locs.par_iter()
            .map_init(Scratch::default, |scratch, &loc| {
                let (id, record) =
                    self.prepared_at(snapshot, loc, epoch, &probe.positions, indexed)?;
                let c = self.score_record(&probe.prepared, &record, scratch, &id);
                Ok((c.score >= threshold).then_some(c))
            })
            .filter_map(|r| r.transpose())
            .collect()
    }

    /// The record at `loc` prepared for the matcher: from the cache (exhaustive searches of a
    /// small gallery keep every record prepared), or only the fingers a probe with fingers at
    /// `positions` can be compared with, prepared now and not kept.
    fn prepared_at(
        &self,
        snapshot: &Snapshot,
        loc: Loc,
        epoch: u64,
        positions: &[FingerPosition],
        indexed: bool,
    ) -> Result<(String, Arc<PreparedRecord>), GalleryError> {
        let id = match loc {
            Loc::Seg(s, o) => snapshot.segments()[s as usize].reference_id(o as usize),
            Loc::Recent(r) => &snapshot.recent()[r as usize].reference_id,
        };
        let cache = self.search.retain_prepared && !indexed;
        if cache {
            if let Some(p) = self
                .prepared
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(id)
            {
                return Ok((id.to_owned(), Arc::clone(p)));
            }
        }
        let record = match loc {
            Loc::Seg(s, o) => Arc::new(snapshot.segments()[s as usize].record(o as usize)?),
            Loc::Recent(r) => Arc::clone(&snapshot.recent()[r as usize]),
        };
        let wanted = |g: FingerPosition| cache || positions.iter().any(|&p| compatible(p, g));
        let prepared = Arc::new(PreparedRecord {
            fingers: self.prepare_fingers(&record, wanted)?,
            faces: record.faces.clone(),
        });
        if cache {
            let mut c = self.prepared.write().unwrap_or_else(|p| p.into_inner());
            if self.deletions.load(Ordering::SeqCst) == epoch {
                c.insert(record.reference_id.clone(), Arc::clone(&prepared));
            }
        }
        Ok((record.reference_id.clone(), prepared))
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

    /// A probe checked and prepared for every stage.
    fn ready(&self, probe: &Probe, dim: usize) -> Result<ReadyProbe, GalleryError> {
        if probe.is_empty() {
            return Err(GalleryError::EmptyProbe);
        }
        for f in &probe.faces {
            if f.len() != dim {
                return Err(GalleryError::FaceDimension {
                    expected: dim,
                    got: f.len(),
                });
            }
        }
        let prepared = self.prepare_probe(probe)?;
        let forms: Vec<(FingerPosition, LocalForm)> = probe
            .fingers
            .iter()
            .map(|(p, t)| (*p, LocalForm::of(t)))
            .collect();
        let codes = forms
            .iter()
            .filter(|(p, _)| (1..=10).contains(&p.code()))
            .map(|(p, f)| (usize::from(p.code()) - 1, FingerCode::of(f)))
            .filter(|(_, c)| !c.empty)
            .collect();
        Ok(ReadyProbe {
            positions: probe.fingers.iter().map(|(p, _)| *p).collect(),
            prepared,
            index: ProbeIndex {
                forms,
                codes,
                faces: probe.faces.clone(),
            },
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
        Ok(PreparedRecord {
            fingers,
            faces: probe.faces.clone(),
        })
    }

    /// 1:1: the probe against one enrolled record.
    pub fn verify(&self, probe: &Probe, reference_id: &str) -> Result<Verification, GalleryError> {
        let epoch = self.deletions.load(Ordering::SeqCst);
        let snapshot = self.store.snapshot();
        let loc = shortlist::locate(&snapshot, reference_id).ok_or(GalleryError::NotFound)?;
        let positions: Vec<FingerPosition> = probe.fingers.iter().map(|(p, _)| *p).collect();
        let indexed = snapshot.len() as usize > self.search.index_above;
        let (_, record) = self.prepared_at(&snapshot, loc, epoch, &positions, indexed)?;
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
        let dim = self.store.snapshot().face_dim();
        for f in &probe.faces {
            if f.len() != dim {
                return Err(GalleryError::FaceDimension {
                    expected: dim,
                    got: f.len(),
                });
            }
        }
        let prepared_probe = self.prepare_probe(probe)?;
        let c = self.score_record(&prepared_probe, record, &mut Scratch::default(), "");
        Ok(Verification {
            score: c.score,
            finger: c.finger,
            face: c.face,
        })
    }

    /// Drops cached index entries of records that are no longer recent (written to a segment
    /// while a search held an older snapshot, or refused after their entries were computed),
    /// so that the cache stays the size of the log's records. Entries of records inserted
    /// after `snapshot` may go too; a search recomputes them.
    fn prune_recent(&self, snapshot: &Snapshot) {
        if self.index.recent.len() <= snapshot.recent().len() + RECENT_SLACK {
            return;
        }
        self.retain_recent_of(snapshot);
    }

    /// Drops the recent cache's entries of records that are not in `snapshot`'s log records.
    fn retain_recent_of(&self, snapshot: &Snapshot) {
        let live: HashSet<&str> = snapshot
            .recent()
            .iter()
            .map(|r| r.reference_id.as_str())
            .collect();
        self.index.recent.retain(&live);
    }

    /// Makes the gallery ready to search: rebuilds missing segment indexes (after damage or
    /// an upgrade), indexes the records still in the log, and, while the gallery is small
    /// enough to be searched exhaustively, prepares every record for the matcher. Returns the
    /// number of live records.
    pub fn warm(&self) -> Result<usize, GalleryError> {
        self.store.rebuild_companions()?;
        let epoch = self.deletions.load(Ordering::SeqCst);
        let snapshot = self.store.snapshot();
        self.retain_recent_of(&snapshot);
        snapshot
            .recent()
            .par_iter()
            .try_for_each(|r| self.index.recent.get_or_compute(r).map(drop))
            .map_err(GalleryError::StoredTemplate)?;
        let everything = shortlist::targets(&snapshot, None, None);
        let count = everything.count as usize;
        if self.search.retain_prepared && count <= self.search.index_above {
            shortlist::live_targets(&snapshot, &everything)
                .par_iter()
                .try_for_each(|&loc| {
                    self.prepared_at(&snapshot, loc, epoch, &[], false)
                        .map(drop)
                })?;
        }
        Ok(count)
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
                if !compatible(*pos, *rpos) {
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

/// The highest cosine between any probe face and any record face (`f32::MIN` when either side
/// has none).
pub(super) fn best_cosine(probe: &[Vec<f32>], record: &[Vec<f32>]) -> f32 {
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
