//! 1:N identification over a store snapshot: probes made ready for every stage, short lists
//! from the index (or every record of a small gallery), the full matcher on them, and the
//! threshold for the target FPIR over the records searched.

use std::collections::HashMap;

use rayon::prelude::*;

use super::answer::{rank, Candidate, Identified};
use super::cache::prune_recent;
use super::error::GalleryError;
use super::fusion;
use super::open::Gallery;
use super::probe::{IdentifyOptions, Probe};
use super::score::PreparedRecord;
use super::shortlist::{self, Indexed, Loc, LocalRanking, ProbeIndex, Targets};
use crate::matcher::Scratch;
use crate::store::Snapshot;
use crate::template::FingerPosition;

/// A probe ready for every stage.
struct ReadyProbe {
    prepared: PreparedRecord,
    index: ProbeIndex,
    positions: Vec<FingerPosition>,
}

/// One probe's search: what it covers, whether it goes through the index, its short list.
struct Plan {
    targets: Targets,
    indexed: bool,
}

impl Gallery {
    /// 1:N search. Candidates at or above the threshold for `options.target_fpir` over the
    /// number of records searched, best first, at most `options.max_results`.
    pub fn identify(
        &self,
        probe: &Probe,
        options: &IdentifyOptions,
    ) -> Result<Identified, GalleryError> {
        self.identify_batch(std::slice::from_ref(&(probe.clone(), options.clone())))
            .pop()
            .unwrap_or(Err(GalleryError::EmptyProbe))
    }

    /// Several searches in one pass over the index: each answer is exactly what
    /// [`Gallery::identify`] gives for that probe alone.
    pub fn identify_batch(
        &self,
        probes: &[(Probe, IdentifyOptions)],
    ) -> Vec<Result<Identified, GalleryError>> {
        let epoch = self.prepared.epoch();
        let snapshot = self.store.snapshot();
        let ready: Vec<Result<ReadyProbe, GalleryError>> = probes
            .par_iter()
            .map(|(p, _)| self.ready(p, snapshot.face_dim()))
            .collect();
        let plans: Vec<Plan> = probes
            .iter()
            .map(|(_, o)| {
                let targets = shortlist::targets(&snapshot, o.only.as_ref(), o.exclude.as_deref());
                let indexed = targets.count as usize > self.search.index_above;
                Plan { targets, indexed }
            })
            .collect();
        let indexed = plans
            .iter()
            .any(|p| p.indexed)
            .then(|| self.indexed(&snapshot));
        let shortlists = self.shortlists(&ready, &plans, indexed.as_ref());
        probes
            .iter()
            .zip(ready)
            .zip(plans)
            .zip(shortlists)
            .map(|((((_, options), ready), plan), shortlist)| {
                let ready = ready?;
                let locs = match shortlist {
                    Some(s) => s?,
                    None => shortlist::live_targets(&snapshot, &plan.targets),
                };
                self.answer(&snapshot, &ready, &locs, (epoch, &plan), options)
            })
            .collect()
    }

    /// The snapshot with its indexes, the cache of recent records' entries first pruned to it.
    pub(super) fn indexed<'s>(&self, snapshot: &'s Snapshot) -> Result<Indexed<'s>, GalleryError> {
        prune_recent(&self.index.recent, snapshot);
        Indexed::new(snapshot, &self.index.recent)
    }

    /// The full matcher on a probe's short list, at the threshold for the records searched.
    fn answer(
        &self,
        snapshot: &Snapshot,
        ready: &ReadyProbe,
        locs: &[Loc],
        (epoch, plan): (u64, &Plan),
        options: &IdentifyOptions,
    ) -> Result<Identified, GalleryError> {
        let searched = plan.targets.count;
        let threshold = fusion::threshold_for_fpir(options.target_fpir, searched);
        let mut candidates =
            self.score_all(snapshot, ready, locs, (epoch, threshold), plan.indexed)?;
        rank(&mut candidates, options.max_results);
        Ok(Identified {
            candidates,
            threshold,
            searched,
        })
    }

    /// Per probe: `None` to score every target (small gallery), else its short list.
    fn shortlists(
        &self,
        ready: &[Result<ReadyProbe, GalleryError>],
        plans: &[Plan],
        indexed: Option<&Result<Indexed<'_>, GalleryError>>,
    ) -> Vec<Option<Result<Vec<Loc>, GalleryError>>> {
        let Some(indexed) = indexed else {
            return ready.iter().map(|_| None).collect();
        };
        let indexed = match indexed {
            Ok(i) => i,
            Err(_) => {
                return plans
                    .iter()
                    .map(|p| p.indexed.then_some(Err(GalleryError::IndexIncomplete)))
                    .collect()
            }
        };
        let mut by_codes = self.stage_one(indexed, ready, plans);
        (0..ready.len())
            .map(|i| {
                if !plans[i].indexed {
                    return None;
                }
                let Ok(r) = &ready[i] else {
                    return Some(Ok(Vec::new()));
                };
                Some(self.shortlist_one(indexed, r, &plans[i].targets, by_codes.remove(&i)))
            })
            .collect()
    }

    /// Stage 1 for every probe that uses it, in one pass over the codes.
    fn stage_one(
        &self,
        indexed: &Indexed<'_>,
        ready: &[Result<ReadyProbe, GalleryError>],
        plans: &[Plan],
    ) -> HashMap<usize, Result<Vec<Loc>, GalleryError>> {
        let coded: Vec<usize> = (0..ready.len())
            .filter(|&i| {
                plans[i].indexed
                    && ready[i].as_ref().is_ok_and(|r| {
                        r.positions.len() >= self.search.index_min_fingers
                            && !r.index.codes.is_empty()
                    })
            })
            .collect();
        // One pass over the codes per list length (ten-prints rank fewer records).
        let mut out = HashMap::new();
        let list_of = |i: usize| {
            let fingers = ready[i].as_ref().map_or(0, |r| r.positions.len());
            self.search.lists(fingers).0
        };
        let mut lengths: Vec<usize> = coded.iter().map(|&i| list_of(i)).collect();
        lengths.sort_unstable();
        lengths.dedup();
        for k in lengths {
            let group: Vec<usize> = coded.iter().copied().filter(|&i| list_of(i) == k).collect();
            let batch: Vec<(&ProbeIndex, &Targets)> = group
                .iter()
                .filter_map(|&i| {
                    ready[i]
                        .as_ref()
                        .ok()
                        .map(|r| (&r.index, &plans[i].targets))
                })
                .collect();
            let found = indexed.by_codes(&batch, k, self.search.code_stage);
            out.extend(group.into_iter().zip(found));
        }
        out
    }

    fn shortlist_one(
        &self,
        indexed: &Indexed<'_>,
        probe: &ReadyProbe,
        targets: &Targets,
        by_codes: Option<Result<Vec<Loc>, GalleryError>>,
    ) -> Result<Vec<Loc>, GalleryError> {
        let by_codes = by_codes.transpose()?;
        let (_, k) = self.search.lists(probe.positions.len());
        let mut locs = Vec::new();
        if !probe.index.forms.is_empty() {
            let candidates = match by_codes {
                Some(found) => found,
                None => indexed.by_local(
                    &probe.index,
                    &shortlist::live_targets(indexed.snapshot, targets),
                    self.search.local_sort_keep.max(k),
                    LocalRanking::Sort,
                )?,
            };
            locs.extend(indexed.by_local(&probe.index, &candidates, k, LocalRanking::Relaxed)?);
        }
        locs.extend(indexed.by_face(&probe.index, targets, self.search.shortlist.max(1))?);
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
        (epoch, threshold): (u64, f64),
        indexed: bool,
    ) -> Result<Vec<Candidate>, GalleryError> {
        let keep = self.search.retain_prepared && !indexed;
        let scoring = self.scoring();
        locs.par_iter()
            .map_init(Scratch::default, |scratch, &loc| {
                let (id, record) = self.prepared.prepared_at(
                    &self.matcher,
                    snapshot,
                    (loc, epoch),
                    &probe.positions,
                    keep,
                )?;
                let c = scoring.record(&probe.prepared, &record, scratch, &id);
                Ok((c.score >= threshold).then_some(c))
            })
            .filter_map(|r| r.transpose())
            .collect()
    }

    /// A probe checked and prepared for every stage.
    fn ready(&self, probe: &Probe, dim: usize) -> Result<ReadyProbe, GalleryError> {
        probe.check(dim)?;
        Ok(ReadyProbe {
            positions: probe.fingers.iter().map(|(p, _)| *p).collect(),
            prepared: PreparedRecord::of_probe(&self.matcher, probe)?,
            index: ProbeIndex::of(probe),
        })
    }
}

/// A probe's first-stage form (its finger codes), computed once so that the first stage can be
/// timed alone (`abis-bench search` reports it).
pub struct FirstStageProbe(ProbeIndex);

impl Gallery {
    pub fn first_stage_probe(&self, probe: &Probe) -> FirstStageProbe {
        FirstStageProbe(ProbeIndex::of(probe))
    }

    /// The first stage alone over the whole gallery (band tables or scan, as configured, and
    /// the records it always passes on): the number of records it passes to the second stage.
    pub fn first_stage(&self, probe: &FirstStageProbe) -> Result<usize, GalleryError> {
        let snapshot = self.store.snapshot();
        let indexed = self.indexed(&snapshot)?;
        let targets = shortlist::targets(&snapshot, None, None);
        indexed
            .by_codes(
                &[(&probe.0, &targets)],
                self.search.lists(probe.0.codes.len()).0,
                self.search.code_stage,
            )
            .pop()
            .unwrap_or(Ok(Vec::new()))
            .map(|l| l.len())
    }
}
