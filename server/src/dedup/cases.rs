//! A finished job's duplicate groups become adjudication cases: the examiner decides each
//! group as they decide a search's hit. A group's case has the group's first record (in id
//! order) as its probe and the other records as its candidates, each with the scores of its
//! pair with the probe (or, for a record joined to the group through another, its best pair),
//! and the finger evidence computed afresh against the probe. Case ids derive from the job and
//! the group (`Cases::open`), so a job resumed after a crash re-opens none twice.

use abis_engine::gallery::{Gallery, Probe};
use abis_engine::template::{FingerPosition, FingerTemplate};
use abis_proto::v1::{Candidate, Modality, ModalityScore};

use super::{Group, StoredPair};
use crate::adjudication::{Cases, Hit, HitRecord};

/// Opens (or finds open) the case of every group of job `job`; returns how many groups.
pub fn open_group_cases(
    cases: &Cases,
    gallery: &Gallery,
    job: &str,
    pair_threshold: f64,
    groups: Vec<Group>,
) -> Result<usize, String> {
    let mut opened = 0;
    for (ids, pairs) in groups {
        let Some((first, rest)) = ids.split_first() else {
            continue;
        };
        let mut candidates = Vec::with_capacity(rest.len());
        for id in rest {
            candidates.push(HitRecord {
                candidate: candidate(id, first, &pairs),
                fingers: fingers_of(gallery, id)?,
            });
        }
        let hit = Hit {
            probe_reference_id: Some(first.clone()),
            probe_fingers: fingers_of(gallery, first)?,
            threshold: pair_threshold,
            candidates,
            dedup_job_id: Some(job.to_string()),
        };
        cases.open(hit).map_err(|s| s.message().to_string())?;
        opened += 1;
    }
    Ok(opened)
}

/// Record `id` as a candidate against `probe`: the scores of their pair, or of `id`'s best.
fn candidate(id: &str, probe: &str, pairs: &[StoredPair]) -> Candidate {
    let joins = |p: &&StoredPair, x: &str| p.a == x || p.b == x;
    let direct = pairs.iter().find(|p| joins(p, id) && joins(p, probe));
    let best = || {
        pairs
            .iter()
            .filter(|p| joins(p, id))
            .max_by(|a, b| a.score.total_cmp(&b.score))
    };
    let mut modalities = Vec::new();
    let mut score = 0.0;
    if let Some(p) = direct.or_else(best) {
        score = p.score;
        if let Some(s) = p.finger_score {
            modalities.push(ModalityScore {
                modality: Modality::Finger as i32,
                score: s,
                finger_positions: p.strong_positions.iter().map(|&q| u32::from(q)).collect(),
            });
        }
        if let Some(s) = p.face_score {
            modalities.push(ModalityScore {
                modality: Modality::Face as i32,
                score: s,
                finger_positions: vec![],
            });
        }
    }
    Candidate {
        reference_id: id.to_string(),
        score,
        modalities,
    }
}

/// A record's fingers (none when it was deleted since the job read it).
fn fingers_of(
    gallery: &Gallery,
    id: &str,
) -> Result<Vec<(FingerPosition, FingerTemplate)>, String> {
    match gallery.store().get(id) {
        Ok(Some(record)) => Probe::from_record(&record)
            .map(|p| p.fingers)
            .map_err(|e| e.to_string()),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}
