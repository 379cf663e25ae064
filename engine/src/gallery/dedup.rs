//! N:N deduplication: every record of the gallery against every other, as when a registry
//! cleans the duplicates its legacy data already holds.
//!
//! Running a 1:N search per record would cost N searches through every stage. Instead the job
//! is a self-join over the band tables ([`crate::index::bands`]), in named stages per record:
//!
//! 1. **Votes**: the record's own finger codes look up their band keys in every segment's
//!    tables; the `band_candidates` most voted live records go on.
//! 2. **Code floor**: a pair goes on only when its code score (equal bytes less chance, summed
//!    over the positions both records have) reaches `code_floor_per_finger` times the number of
//!    those positions — the pair-level filter that replaces the short lists of a search.
//! 3. **Pair order**: each pair is kept from one side only (the record whose id is smaller),
//!    so that no pair is scored or reported twice.
//! 4. **Full matcher**: the fused score of the two records; pairs at or above the pair
//!    threshold are duplicates.
//!
//! **Pair threshold.** N:N over N people makes N(N−1)/2 comparisons, so a per-pair false match
//! rate that suits one search (FPIR over N records) would report thousands of false pairs. The
//! threshold is set so that the whole job expects `expected_false_pairs` false pairs:
//! FMR per pair = E / (N(N−1)/2), score = −10·log10 of it ([`pair_threshold`]); at a million
//! people and E = 1 that is 117 (ten-finger mates score in the hundreds).
//!
//! The job covers a **scope**: the ids live when it started, sorted. Work is cut into blocks of
//! the scope; a block's answer depends only on the gallery and the scope, so a job resumed after
//! a crash reports exactly what an uninterrupted one does. Records without finger codes
//! (face-only, or only unknown positions) are not joined by this stage.

use std::collections::HashMap;

use rayon::prelude::*;

use super::answer::ModalityEvidence;
use super::error::GalleryError;
use super::open::Gallery;
use super::shortlist::{self, Indexed, Loc};
use crate::index::segment_index::ProbeCodes;
use crate::matcher::Scratch;
use crate::store::Snapshot;
use crate::template::FingerPosition;

/// How a deduplication job finds and keeps pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct DedupSettings {
    /// Per record and segment, the most voted records whose codes are compared.
    pub band_candidates: usize,
    /// Code score per finger position both records have that a pair needs to be matched.
    pub code_floor_per_finger: f32,
    /// Fused score a pair needs to be reported (see [`pair_threshold`]).
    pub pair_threshold: f64,
}

impl DedupSettings {
    /// Settings for a scope of `records`, expecting `expected_false_pairs` false pairs over the
    /// whole job.
    pub fn for_scope(records: u64, expected_false_pairs: f64) -> DedupSettings {
        DedupSettings {
            band_candidates: 1024,
            code_floor_per_finger: 10.0,
            pair_threshold: pair_threshold(records, expected_false_pairs),
        }
    }
}

/// The fused score at which a job over `records` records expects `expected_false_pairs` false
/// pairs: −10·log10(E / (N(N−1)/2)).
pub fn pair_threshold(records: u64, expected_false_pairs: f64) -> f64 {
    let n = records.max(2) as f64;
    let pairs = n * (n - 1.0) / 2.0;
    -10.0 * (expected_false_pairs.max(1e-9) / pairs).min(1.0).log10()
}

/// The records a job covers: the ids live at its start, sorted and distinct.
#[derive(Debug, Clone, PartialEq)]
pub struct DedupScope {
    ids: Vec<String>,
}

impl DedupScope {
    /// A scope from ids (sorted and deduplicated here).
    pub fn from_ids(mut ids: Vec<String>) -> DedupScope {
        ids.sort_unstable();
        ids.dedup();
        DedupScope { ids }
    }

    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.binary_search_by(|i| i.as_str().cmp(id)).is_ok()
    }
}

/// Two records the job found to be the same person; `a < b`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DuplicatePair {
    pub a: String,
    pub b: String,
    /// Fused score of the full matcher.
    pub score: f64,
    /// The first stage's code score of the pair.
    pub code_score: f32,
    pub finger: Option<ModalityEvidence>,
    pub face: Option<ModalityEvidence>,
}

impl Gallery {
    /// The scope of a job starting now: every live record.
    pub fn dedup_scope(&self) -> DedupScope {
        let snapshot = self.store.snapshot();
        let mut ids: Vec<String> = snapshot
            .segments()
            .iter()
            .flat_map(|v| v.live_ordinals().map(|o| v.reference_id(o).to_owned()))
            .collect();
        ids.extend(snapshot.recent().iter().map(|r| r.reference_id.clone()));
        DedupScope::from_ids(ids)
    }

    /// The pairs found from the records `range` of `scope` (a block of a job), sorted.
    pub fn dedup_block(
        &self,
        scope: &DedupScope,
        range: std::ops::Range<usize>,
        settings: &DedupSettings,
    ) -> Result<Vec<DuplicatePair>, GalleryError> {
        let snapshot = self.store.snapshot();
        let indexed = self.indexed(&snapshot)?;
        let epoch = self.prepared.epoch();
        let ids = scope.ids.get(range).unwrap_or_default();
        let found: Vec<Vec<DuplicatePair>> = ids
            .par_iter()
            .map(|id| self.pairs_of(&indexed, scope, id, settings, epoch))
            .collect::<Result<_, _>>()?;
        let mut pairs: Vec<DuplicatePair> = found.into_iter().flatten().collect();
        pairs.sort_by(|x, y| (&x.a, &x.b).cmp(&(&y.a, &y.b)));
        Ok(pairs)
    }

    /// Stages 1-4 for one record of the scope (none when it was deleted since the start).
    fn pairs_of(
        &self,
        indexed: &Indexed<'_>,
        scope: &DedupScope,
        id: &str,
        settings: &DedupSettings,
        epoch: u64,
    ) -> Result<Vec<DuplicatePair>, GalleryError> {
        let snapshot = indexed.snapshot;
        let Some(me) = shortlist::locate(snapshot, id) else {
            return Ok(Vec::new());
        };
        let codes = record_codes(indexed, me);
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        let partners: Vec<(Loc, f32)> = self
            .code_partners(indexed, &codes, me, settings)?
            .into_iter()
            .filter(|&(loc, _)| {
                let other = shortlist::reference_id(snapshot, loc);
                other > id && scope.contains(other)
            })
            .collect();
        if partners.is_empty() {
            return Ok(Vec::new());
        }
        self.score_pairs(snapshot, (me, id), &partners, settings, epoch)
    }

    /// Stages 1 and 2: records sharing band keys with `codes` whose code score clears the floor.
    fn code_partners(
        &self,
        indexed: &Indexed<'_>,
        codes: &ProbeCodes,
        me: Loc,
        settings: &DedupSettings,
    ) -> Result<Vec<(Loc, f32)>, GalleryError> {
        let mask = codes.mask();
        let floor =
            |presence: u16| settings.code_floor_per_finger * (presence & mask).count_ones() as f32;
        let mut out = Vec::new();
        for (s, idx) in indexed.segments.iter().enumerate() {
            let (s, view) = (s as u32, &indexed.snapshot.segments()[s]);
            let keep = |o: usize| view.is_live(o) && Loc::Seg(s, o as u32) != me;
            for (o, score) in indexed.voted(codes, s, settings.band_candidates, keep)? {
                if score >= floor(idx.presence(o as usize)).max(f32::MIN_POSITIVE) {
                    out.push((Loc::Seg(s, o), score));
                }
            }
        }
        for (r, ri) in indexed.recent.iter().enumerate() {
            let loc = Loc::Recent(r as u32);
            if loc == me {
                continue;
            }
            if let Some(score) = ri.code_score(codes) {
                if score >= floor(ri.presence()).max(f32::MIN_POSITIVE) {
                    out.push((loc, score));
                }
            }
        }
        Ok(out)
    }

    /// Stage 4: the full matcher on each pair; those at or above the pair threshold.
    fn score_pairs(
        &self,
        snapshot: &Snapshot,
        (me, id): (Loc, &str),
        partners: &[(Loc, f32)],
        settings: &DedupSettings,
        epoch: u64,
    ) -> Result<Vec<DuplicatePair>, GalleryError> {
        // The unknown position is compatible with every finger: prepare them all.
        let all = [FingerPosition::UNKNOWN];
        let (_, mine) =
            self.prepared
                .prepared_at(&self.matcher, snapshot, (me, epoch), &all, false)?;
        let scoring = self.scoring();
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        for &(loc, code_score) in partners {
            let (other, theirs) =
                self.prepared
                    .prepared_at(&self.matcher, snapshot, (loc, epoch), &all, false)?;
            let c = scoring.record(&mine, &theirs, &mut scratch, &other);
            if c.score >= settings.pair_threshold {
                out.push(DuplicatePair {
                    a: id.to_owned(),
                    b: other,
                    score: c.score,
                    code_score,
                    finger: c.finger,
                    face: c.face,
                });
            }
        }
        Ok(out)
    }
}

/// A record's own finger codes, as a probe.
fn record_codes(indexed: &Indexed<'_>, loc: Loc) -> ProbeCodes {
    match loc {
        Loc::Seg(s, o) => indexed.segments[s as usize].probe_codes(o as usize),
        Loc::Recent(r) => ProbeCodes::from_record(&indexed.recent[r as usize]),
    }
}

/// The duplicate groups of a job: connected components of its pairs of ids (each group's ids
/// sorted, groups ordered by their first id), with the indexes of the pairs inside each group.
pub fn duplicate_groups(pairs: &[(&str, &str)]) -> Vec<(Vec<String>, Vec<usize>)> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    for &(a, b) in pairs {
        for id in [a, b] {
            index.entry(id).or_insert_with(|| {
                names.push(id);
                names.len() - 1
            });
        }
    }
    let mut parent: Vec<usize> = (0..names.len()).collect();
    fn root(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for (a, b) in pairs {
        let (a, b) = (root(&mut parent, index[a]), root(&mut parent, index[b]));
        parent[a.max(b)] = a.min(b);
    }
    let mut groups: HashMap<usize, (Vec<String>, Vec<usize>)> = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().0.push((*name).to_owned());
    }
    for (k, (a, _)) in pairs.iter().enumerate() {
        let r = root(&mut parent, index[a]);
        groups.entry(r).or_default().1.push(k);
    }
    let mut out: Vec<(Vec<String>, Vec<usize>)> = groups
        .into_values()
        .map(|(mut ids, pairs)| {
            ids.sort();
            (ids, pairs)
        })
        .collect();
    out.sort_by(|x, y| x.0.cmp(&y.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_connected_components() {
        let pairs = [("c", "d"), ("a", "b"), ("b", "e"), ("x", "y")];
        let groups = duplicate_groups(&pairs);
        let ids: Vec<Vec<String>> = groups.iter().map(|g| g.0.clone()).collect();
        assert_eq!(
            ids,
            vec![
                vec!["a".to_string(), "b".into(), "e".into()],
                vec!["c".into(), "d".into()],
                vec!["x".into(), "y".into()],
            ]
        );
        assert_eq!(groups[0].1, vec![1, 2]);
    }

    #[test]
    fn the_pair_threshold_grows_with_the_pairs_compared() {
        // A million people: 5e11 pairs, one false pair expected → FMR 2e-12 → 117.
        let t = pair_threshold(1_000_000, 1.0);
        assert!((t - 116.99).abs() < 0.01, "{t}");
        assert!(pair_threshold(1_000, 1.0) < t);
        assert!(pair_threshold(1_000_000, 10.0) < t);
    }
}
