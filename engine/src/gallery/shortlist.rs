//! The indexed way to the records a 1:N search scores in full: three stages over a snapshot.
//!
//! 1. **Codes** (fingers, probes with at least `index_min_fingers`): every live record's
//!    resident codes are compared with the probe's (equal bytes less chance, summed over the
//!    positions both sides have); the best `code_shortlist` records go on. Records the codes
//!    cannot rank ("wide": unknown positions, repeated impressions) always go on. A batch of
//!    probes is scored in one pass over the codes.
//! 2. **Local structures** (fingers): each of those records' coarse cylinders are compared with
//!    the probe's by LSS-R ([`LocalForm::similarity`]), per probe finger the best compatible
//!    impression, summed; the best `shortlist` records go on. Probes with fewer fingers skip
//!    stage 1: every live record is ranked first by the local similarity sort
//!    ([`SortProbe::similarity`], LSS-R's pairing without its relaxation, an eighth of its cost),
//!    and its best `local_sort_keep` go through LSS-R.
//! 3. **Faces**: the exact int8 scan of every face row keeps the best `shortlist` records.
//!
//! The union of stages 2 and 3 is what the full matcher scores. Every stage orders ties by
//! location, and a probe's stages depend on that probe only, so a batch gives each probe exactly
//! the short list it would get alone.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;

use rayon::prelude::*;

use super::error::GalleryError;
use super::probe::CodeStage;
use super::probe::Probe;
use super::score::{best_cosine, compatible};
use crate::index::bands::most_voted;
use crate::index::face_scan::{top_k_batch_where, Int8Rows};
use crate::index::local::{LocalForm, LocalScratch};
use crate::index::local_sort::SortProbe;
use crate::index::segment_index::{ProbeCodes, RecentIndex, RecordIndex, SegmentIndex};
use crate::index::IndexError;
use crate::store::{SegmentView, Snapshot};
use crate::template::FingerPosition;

/// A record of a snapshot: ordinal `1` of segment `0`, or recent record `0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Loc {
    Seg(u32, u32),
    Recent(u32),
}

/// Which records of the snapshot a search covers.
pub(super) struct Targets {
    /// `None`: every live record; `Some`: only these.
    pub only: Option<HashSet<Loc>>,
    pub exclude: Option<Loc>,
    pub count: u64,
}

impl Targets {
    pub fn includes(&self, loc: Loc) -> bool {
        self.exclude != Some(loc) && self.only.as_ref().is_none_or(|o| o.contains(&loc))
    }
}

/// What the stages need of a probe.
#[derive(Debug, Default)]
pub(super) struct ProbeIndex {
    /// (position, form) of every probe finger.
    pub forms: Vec<(FingerPosition, LocalForm)>,
    /// The codes of the probe fingers at known positions.
    pub codes: ProbeCodes,
    pub faces: Vec<Vec<f32>>,
}

impl ProbeIndex {
    pub fn of(probe: &Probe) -> ProbeIndex {
        let forms: Vec<(FingerPosition, LocalForm)> = probe
            .fingers
            .iter()
            .map(|(p, t)| (*p, LocalForm::of(t)))
            .collect();
        ProbeIndex {
            codes: ProbeCodes::of(&forms),
            forms,
            faces: probe.faces.clone(),
        }
    }
}

/// How [`Indexed::by_local`] compares a probe finger with a stored form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LocalRanking {
    /// The local similarity sort ([`SortProbe::similarity`]), read from the bytes in place.
    Sort,
    /// LSS-R ([`LocalForm::similarity`]) of the decoded form.
    Relaxed,
}

/// A scored location; orders best first, ties by location (deterministic).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scored(f32, Loc);

impl Eq for Scored {}
impl Ord for Scored {
    /// Reversed on the score, so that a `BinaryHeap` keeps the worst of the best on top.
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.total_cmp(&self.0).then(self.1.cmp(&o.1))
    }
}
impl PartialOrd for Scored {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

#[derive(Clone)]
struct Best {
    k: usize,
    heap: BinaryHeap<Scored>,
}

impl Best {
    fn new(k: usize) -> Best {
        Best {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    #[inline]
    fn push(&mut self, s: Scored) {
        if self.heap.len() < self.k {
            self.heap.push(s);
        } else if self.heap.peek().is_some_and(|w| s < *w) {
            self.heap.pop();
            self.heap.push(s);
        }
    }

    fn merge(mut self, other: Best) -> Best {
        for s in other.heap {
            self.push(s);
        }
        self
    }

    fn into_locs(self) -> Vec<Loc> {
        let mut v = self.heap.into_vec();
        v.sort();
        v.into_iter().map(|s| s.1).collect()
    }
}

/// The snapshot with its indexes, ready to search.
pub(super) struct Indexed<'s> {
    pub snapshot: &'s Snapshot,
    /// The index of each segment (same order as `snapshot.segments()`).
    pub segments: Vec<&'s SegmentIndex>,
    /// The index entries of each recent record.
    pub recent: Vec<Arc<RecordIndex>>,
}

/// Probe fingers with codes below which stage 1 never goes through the band tables, whatever
/// [`CodeStage::Tables`] says: a weak mate of two or three fingers may share no key at all.
pub(super) const TABLES_MIN_FINGERS: usize = 4;

/// Segment records per parallel work item of a scan.
const CHUNK: usize = 2048;

impl<'s> Indexed<'s> {
    /// The indexes of every segment and recent record; `IndexIncomplete` while a segment's
    /// index is being rebuilt (a search never runs on part of the gallery).
    pub fn new(snapshot: &'s Snapshot, recent: &RecentIndex) -> Result<Indexed<'s>, GalleryError> {
        let segments = snapshot
            .segments()
            .iter()
            .map(|v| SegmentIndex::of(v).ok_or(GalleryError::IndexIncomplete))
            .collect::<Result<Vec<_>, _>>()?;
        let recent = snapshot
            .recent()
            .par_iter()
            .map(|r| {
                recent
                    .get_or_compute(r)
                    .map_err(GalleryError::StoredTemplate)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Indexed {
            snapshot,
            segments,
            recent,
        })
    }

    fn view(&self, s: u32) -> &'s SegmentView {
        &self.snapshot.segments()[s as usize]
    }

    /// Stage 1 for a batch of probes: each probe's best `k` records by code similarity, plus
    /// every wide record. With `stage` [`CodeStage::Tables`] a segment's candidates are the
    /// `band_candidates` records with the most band votes, ranked by their codes; with
    /// [`CodeStage::Scan`] every record's codes are compared (the oracle of the tables).
    pub fn by_codes(
        &self,
        probes: &[(&ProbeIndex, &Targets)],
        k: usize,
        stage: CodeStage,
    ) -> Vec<Result<Vec<Loc>, GalleryError>> {
        if probes.is_empty() {
            return Vec::new();
        }
        let tops = self.tops(probes, k, stage);
        let wide = self.wide();
        probes
            .iter()
            .zip(tops)
            .map(|((probe, targets), top)| {
                let mut top = top?;
                self.recent_codes(probe, targets, &mut top);
                let mut locs = top.into_locs();
                locs.extend(wide.iter().copied().filter(|&l| targets.includes(l)));
                Ok(locs)
            })
            .collect()
    }

    /// Each probe's best records of the segments: through the band tables for probes with
    /// the stage's `min_fingers` codes or more (at least [`TABLES_MIN_FINGERS`]), by the scan
    /// for the others and with [`CodeStage::Scan`].
    fn tops(
        &self,
        probes: &[(&ProbeIndex, &Targets)],
        k: usize,
        stage: CodeStage,
    ) -> Vec<Result<Best, GalleryError>> {
        let CodeStage::Tables {
            band_candidates,
            min_fingers,
        } = stage
        else {
            return self.segment_codes(probes, k).into_iter().map(Ok).collect();
        };
        let min_fingers = min_fingers.max(TABLES_MIN_FINGERS);
        let (tabled, scanned): (Vec<usize>, Vec<usize>) =
            (0..probes.len()).partition(|&i| probes[i].0.codes.len() >= min_fingers);
        let pick = |idx: &[usize]| idx.iter().map(|&i| probes[i]).collect::<Vec<_>>();
        let by_tables = self.segment_tables(&pick(&tabled), k, band_candidates);
        let by_scan = self.segment_codes(&pick(&scanned), k).into_iter().map(Ok);
        let mut tops: Vec<Option<Result<Best, GalleryError>>> =
            (0..probes.len()).map(|_| None).collect();
        for (i, t) in tabled
            .into_iter()
            .zip(by_tables)
            .chain(scanned.into_iter().zip(by_scan))
        {
            tops[i] = Some(t);
        }
        tops.into_iter()
            .map(|t| t.unwrap_or_else(|| Ok(Best::new(k))))
            .collect()
    }

    /// Stage 1 over the records still outside segments (few: always scanned).
    fn recent_codes(&self, probe: &ProbeIndex, targets: &Targets, top: &mut Best) {
        for (r, ri) in self.recent.iter().enumerate() {
            let loc = Loc::Recent(r as u32);
            if targets.includes(loc) {
                if let Some(score) = ri.code_score(&probe.codes) {
                    top.push(Scored(score, loc));
                }
            }
        }
    }

    /// Stage 1 through each segment's band tables: per (probe, segment), votes, the most voted
    /// live records the probe covers, ranked by their codes.
    fn segment_tables(
        &self,
        probes: &[(&ProbeIndex, &Targets)],
        k: usize,
        band_candidates: usize,
    ) -> Vec<Result<Best, GalleryError>> {
        let pairs: Vec<(usize, usize)> = (0..probes.len())
            .flat_map(|p| (0..self.segments.len()).map(move |s| (p, s)))
            .collect();
        let found: Vec<Result<Vec<Scored>, GalleryError>> = pairs
            .par_iter()
            .map(|&(p, s)| self.tables_of_segment(probes[p], s as u32, k, band_candidates))
            .collect();
        let mut tops: Vec<Result<Best, GalleryError>> =
            (0..probes.len()).map(|_| Ok(Best::new(k))).collect();
        for (&(p, _), f) in pairs.iter().zip(found) {
            tops[p] = match (std::mem::replace(&mut tops[p], Ok(Best::new(0))), f) {
                (Ok(mut best), Ok(scored)) => {
                    scored.into_iter().for_each(|s| best.push(s));
                    Ok(best)
                }
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
        }
        tops
    }

    fn tables_of_segment(
        &self,
        (probe, targets): (&ProbeIndex, &Targets),
        s: u32,
        k: usize,
        band_candidates: usize,
    ) -> Result<Vec<Scored>, GalleryError> {
        let view = self.view(s);
        let keep = |o: usize| view.is_live(o) && targets.includes(Loc::Seg(s, o as u32));
        let mut best = Best::new(k);
        for (o, score) in self.voted(&probe.codes, s, band_candidates, keep)? {
            best.push(Scored(score, Loc::Seg(s, o)));
        }
        Ok(best.heap.into_vec())
    }

    /// The records of segment `s` sharing the most band keys with `codes` (at most
    /// `band_candidates`, among those `keep` accepts), with their code scores; wide records,
    /// which have none, left out. What stage 1 and the N:N self-join both start from.
    pub(super) fn voted(
        &self,
        codes: &ProbeCodes,
        s: u32,
        band_candidates: usize,
        keep: impl Fn(usize) -> bool,
    ) -> Result<Vec<(u32, f32)>, GalleryError> {
        let idx = self.segments[s as usize];
        let mut votes = vec![0u8; idx.len()];
        idx.bands()
            .vote(codes, &mut votes)
            .map_err(IndexError::File)?;
        Ok(most_voted(&votes, band_candidates, keep)
            .into_iter()
            .filter_map(|o| idx.code_score(o as usize, codes).map(|score| (o, score)))
            .collect())
    }

    /// Stage 1 over the segments' resident codes, in parallel chunks: each probe's best `k`.
    fn segment_codes(&self, probes: &[(&ProbeIndex, &Targets)], k: usize) -> Vec<Best> {
        let mut work: Vec<(u32, usize)> = Vec::new();
        for (s, idx) in self.segments.iter().enumerate() {
            for start in (0..idx.len()).step_by(CHUNK) {
                work.push((s as u32, start));
            }
        }
        work.par_iter()
            .fold(
                || vec![Best::new(k); probes.len()],
                |mut tops, &(s, start)| {
                    let (idx, view) = (self.segments[s as usize], self.view(s));
                    for o in start..(start + CHUNK).min(idx.len()) {
                        let loc = Loc::Seg(s, o as u32);
                        if !view.is_live(o) || idx.is_wide(o) {
                            continue;
                        }
                        for ((probe, targets), top) in probes.iter().zip(tops.iter_mut()) {
                            if !targets.includes(loc) {
                                continue;
                            }
                            if let Some(score) = idx.code_score(o, &probe.codes) {
                                top.push(Scored(score, loc));
                            }
                        }
                    }
                    tops
                },
            )
            .reduce(
                || vec![Best::new(k); probes.len()],
                |a, b| a.into_iter().zip(b).map(|(x, y)| x.merge(y)).collect(),
            )
    }

    /// Every live record the codes cannot rank.
    fn wide(&self) -> Vec<Loc> {
        let mut out = Vec::new();
        for (s, idx) in self.segments.iter().enumerate() {
            let view = self.view(s as u32);
            for o in 0..idx.len() {
                if view.is_live(o) && idx.is_wide(o) {
                    out.push(Loc::Seg(s as u32, o as u32));
                }
            }
        }
        for (r, ri) in self.recent.iter().enumerate() {
            if ri.is_wide() {
                out.push(Loc::Recent(r as u32));
            }
        }
        out
    }

    /// Each stored form of a record, with its finger position, given to `visit` as bytes
    /// (checksummed, not decoded); forms no probe finger is `compatible` with are not read.
    fn visit_form_bytes(
        &self,
        loc: Loc,
        compatible: impl Fn(FingerPosition) -> bool,
        mut visit: impl FnMut(FingerPosition, &[u8]) -> Result<(), GalleryError>,
    ) -> Result<(), GalleryError> {
        match loc {
            Loc::Seg(s, o) => {
                let idx = self.segments[s as usize];
                for (position, e) in self.form_entries(s, o, compatible)? {
                    visit(position, &idx.form_bytes(e).map_err(IndexError::File)?)?;
                }
            }
            Loc::Recent(r) => {
                let record = &self.snapshot.recent()[r as usize];
                for (f, bytes) in record.fingers.iter().zip(&self.recent[r as usize].forms) {
                    if compatible(f.position) {
                        visit(f.position, bytes)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Hints the CPU to load the stored forms of `loc` that `compatible` accepts (what
    /// [`Self::visit_form_bytes`] will read); nothing for recent records, which are in memory.
    fn prefetch_forms(&self, loc: Loc, compatible: impl Fn(FingerPosition) -> bool) {
        if let Loc::Seg(s, o) = loc {
            if let Ok(entries) = self.form_entries(s, o, compatible) {
                let idx = self.segments[s as usize];
                entries.for_each(|(_, e)| idx.prefetch_form(e));
            }
        }
    }

    /// (position, finger entry) of each finger of segment `s`'s record `o` that `compatible`
    /// accepts.
    fn form_entries<F: Fn(FingerPosition) -> bool>(
        &self,
        s: u32,
        o: u32,
        compatible: F,
    ) -> Result<impl Iterator<Item = (FingerPosition, usize)> + use<'s, F>, GalleryError> {
        let fingers = self.view(s).fingers()?;
        Ok(fingers
            .record_entries(o as usize)
            .map(move |e| (fingers.position(e), e))
            .filter(move |&(position, _)| compatible(position)))
    }

    /// Stage 2 (and, with [`LocalRanking::Sort`], the stage before it for probes that skip
    /// the codes): the best `k` of `candidates` by the stored local forms.
    pub fn by_local(
        &self,
        probe: &ProbeIndex,
        candidates: &[Loc],
        k: usize,
        ranking: LocalRanking,
    ) -> Result<Vec<Loc>, GalleryError> {
        match ranking {
            LocalRanking::Sort => {
                let sorts: Vec<SortProbe> =
                    probe.forms.iter().map(|(_, f)| SortProbe::of(f)).collect();
                self.best_by_fingers(
                    probe,
                    candidates,
                    k,
                    || (),
                    |_, i, g| Ok(sorts[i].similarity(g)),
                )
            }
            LocalRanking::Relaxed => {
                self.best_by_fingers(probe, candidates, k, LocalScratch::default, |s, i, g| {
                    let form = LocalForm::decode(g).map_err(IndexError::Form)?;
                    Ok(probe.forms[i].1.similarity(&form, s))
                })
            }
        }
    }

    /// The best `k` of `candidates` by a finger comparison summed over the probe's fingers,
    /// each probe finger taking its best compatible stored impression. `score(scratch, i,
    /// stored)` compares probe finger `i` with a stored form's bytes; each stored form is read
    /// (and its checksum verified) once, whatever the number of probe fingers it may match.
    fn best_by_fingers<S>(
        &self,
        probe: &ProbeIndex,
        candidates: &[Loc],
        k: usize,
        scratch: impl Fn() -> S + Sync,
        score: impl Fn(&mut S, usize, &[u8]) -> Result<f32, GalleryError> + Sync,
    ) -> Result<Vec<Loc>, GalleryError> {
        if probe.forms.is_empty() || candidates.is_empty() {
            return Ok(Vec::new());
        }
        if candidates.len() <= k {
            return Ok(candidates.to_vec());
        }
        // Short lists (LSS-R after the codes: tens to hundreds) still use every thread.
        let chunk = (candidates.len() / (4 * rayon::current_num_threads())).clamp(1, CHUNK);
        let best = candidates
            .par_chunks(chunk)
            .map(|chunk| {
                let (mut best, mut s) = (Best::new(k), scratch());
                let mut fingers = vec![0f32; probe.forms.len()];
                let matches = |i: usize, g: FingerPosition| compatible(probe.forms[i].0, g);
                let wanted = |g| (0..probe.forms.len()).any(|i| matches(i, g));
                for (j, &loc) in chunk.iter().enumerate() {
                    if let Some(&next) = chunk.get(j + 1) {
                        self.prefetch_forms(next, wanted);
                    }
                    fingers.fill(0.0);
                    self.visit_form_bytes(loc, wanted, |g, stored| {
                        for (i, finger) in fingers.iter_mut().enumerate() {
                            if matches(i, g) {
                                *finger = finger.max(score(&mut s, i, stored)?);
                            }
                        }
                        Ok(())
                    })?;
                    // Summed in probe order, as the fused score always was.
                    best.push(Scored(fingers.iter().fold(0f32, |t, f| t + f), loc));
                }
                Ok::<_, GalleryError>(best)
            })
            .try_reduce(|| Best::new(k), |a, b| Ok(a.merge(b)))?;
        Ok(best.into_locs())
    }

    /// Stage 3: the best `k` records by face cosine (exact int8 scan of every row; recent
    /// records by their f32 rows).
    pub fn by_face(
        &self,
        probe: &ProbeIndex,
        targets: &Targets,
        k: usize,
    ) -> Result<Vec<Loc>, GalleryError> {
        if probe.faces.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let mut best = Best::new(k);
        let queries: Vec<&[f32]> = probe.faces.iter().map(Vec::as_slice).collect();
        for (s, view) in self.snapshot.segments().iter().enumerate() {
            let matrix = view.faces()?;
            if matrix.rows() == 0 {
                continue;
            }
            let rows = Int8Rows::from_matrix(&matrix).map_err(IndexError::from)?;
            let allow = |r: usize| {
                let o = matrix.row_owner(r);
                view.is_live(o) && targets.includes(Loc::Seg(s as u32, o as u32))
            };
            // k rows per query suffice: a record's rows are all in one segment.
            let hits = top_k_batch_where(&rows, &queries, k, &allow).map_err(IndexError::from)?;
            for h in hits.into_iter().flatten() {
                best.push(Scored(
                    h.score,
                    Loc::Seg(s as u32, matrix.row_owner(h.row) as u32),
                ));
            }
        }
        for (r, record) in self.snapshot.recent().iter().enumerate() {
            let loc = Loc::Recent(r as u32);
            if targets.includes(loc) && !record.faces.is_empty() {
                best.push(Scored(best_cosine(&probe.faces, &record.faces), loc));
            }
        }
        // A record may appear once per matching row: keep its best.
        let mut seen = HashSet::new();
        Ok(best
            .into_locs()
            .into_iter()
            .filter(|l| seen.insert(*l))
            .collect())
    }
}

/// The reference id of the record at `loc`.
pub(super) fn reference_id(snapshot: &Snapshot, loc: Loc) -> &str {
    match loc {
        Loc::Seg(s, o) => snapshot.segments()[s as usize].reference_id(o as usize),
        Loc::Recent(r) => &snapshot.recent()[r as usize].reference_id,
    }
}

/// Where the record `id` is in the snapshot (live), if anywhere.
pub(super) fn locate(snapshot: &Snapshot, id: &str) -> Option<Loc> {
    if let Ok(r) = snapshot
        .recent()
        .binary_search_by(|r| r.reference_id.as_str().cmp(id))
    {
        return Some(Loc::Recent(r as u32));
    }
    snapshot
        .segments()
        .iter()
        .enumerate()
        .find_map(|(s, v)| v.find(id).map(|o| Loc::Seg(s as u32, o as u32)))
}

/// Every live record of the snapshot that the search covers, in location order (what stage 2
/// compares without stage 1, and what an exhaustive search scores).
pub(super) fn live_targets(snapshot: &Snapshot, targets: &Targets) -> Vec<Loc> {
    let mut out = Vec::new();
    for (s, view) in snapshot.segments().iter().enumerate() {
        for o in view.live_ordinals() {
            let loc = Loc::Seg(s as u32, o as u32);
            if targets.includes(loc) {
                out.push(loc);
            }
        }
    }
    for r in 0..snapshot.recent().len() {
        let loc = Loc::Recent(r as u32);
        if targets.includes(loc) {
            out.push(loc);
        }
    }
    out
}

/// The targets of a search: every live record, or the listed ones, less the excluded one.
pub(super) fn targets(
    snapshot: &Snapshot,
    only: Option<&HashSet<String>>,
    exclude: Option<&str>,
) -> Targets {
    let exclude = exclude.and_then(|id| locate(snapshot, id));
    match only {
        None => Targets {
            count: snapshot.len() - u64::from(exclude.is_some()),
            only: None,
            exclude,
        },
        Some(ids) => {
            let set: HashSet<Loc> = ids
                .iter()
                .filter_map(|id| locate(snapshot, id))
                .filter(|l| Some(*l) != exclude)
                .collect();
            Targets {
                count: set.len() as u64,
                only: Some(set),
                exclude,
            }
        }
    }
}
