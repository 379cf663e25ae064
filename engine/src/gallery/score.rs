//! Scoring one record against a probe with the full matcher: per probe finger the best of the
//! record's compatible impressions, corrected for the number of tries, Fisher-combined across
//! fingers; faces likewise; then the modalities combined ([`super::fusion`]).

use std::sync::Arc;

use super::answer::{Candidate, ModalityEvidence};
use super::error::GalleryError;
use super::fusion;
use super::probe::Probe;
use crate::matcher::{Matcher, PreparedTemplate, Scratch};
use crate::template::FingerPosition;

/// Maps a face similarity (cosine of L2-normalised embeddings) to a calibrated score
/// (`-10 log10(FMR)`). Provided by the face pipeline, whose model it belongs to.
pub type FaceScorer = Arc<dyn Fn(f32) -> f64 + Send + Sync>;

/// Strong per-finger evidence reported in the candidate's positions list.
const STRONG_FINGER_SCORE: f64 = 20.0;

/// A record's (or a probe's) fingers prepared for the matcher, and its faces.
pub(super) struct PreparedRecord {
    pub fingers: Vec<(FingerPosition, PreparedTemplate)>,
    pub faces: Vec<Vec<f32>>,
}

impl PreparedRecord {
    /// A probe's fingers prepared; a template the matcher refuses is the caller's fault.
    pub fn of_probe(matcher: &Matcher, probe: &Probe) -> Result<PreparedRecord, GalleryError> {
        let fingers = probe
            .fingers
            .iter()
            .map(|(pos, t)| Ok((*pos, matcher.prepare(t).map_err(GalleryError::Probe)?)))
            .collect::<Result<_, GalleryError>>()?;
        Ok(PreparedRecord {
            fingers,
            faces: probe.faces.clone(),
        })
    }
}

/// The matcher and face calibration a record is scored with.
pub(super) struct Scoring<'a> {
    pub matcher: &'a Matcher,
    pub face_scorer: Option<&'a FaceScorer>,
}

impl Scoring<'_> {
    /// Scores one record (see the module docs).
    pub fn record(
        &self,
        probe: &PreparedRecord,
        record: &PreparedRecord,
        scratch: &mut Scratch,
        id: &str,
    ) -> Candidate {
        let finger = self.fingers(probe, record, scratch);
        let face = self.face(probe, record);
        let parts: Vec<f64> = finger.iter().chain(face.iter()).map(|m| m.score).collect();
        Candidate {
            reference_id: id.to_owned(),
            score: fusion::combine(&parts),
            finger,
            face,
        }
    }

    fn fingers(
        &self,
        probe: &PreparedRecord,
        record: &PreparedRecord,
        scratch: &mut Scratch,
    ) -> Option<ModalityEvidence> {
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
        (!finger_scores.is_empty()).then(|| ModalityEvidence {
            score: fusion::combine(&finger_scores),
            positions: strong,
        })
    }

    fn face(&self, probe: &PreparedRecord, record: &PreparedRecord) -> Option<ModalityEvidence> {
        let scorer = self.face_scorer?;
        if probe.faces.is_empty() || record.faces.is_empty() {
            return None;
        }
        let best = best_cosine(&probe.faces, &record.faces);
        let tries = probe.faces.len() * record.faces.len();
        Some(ModalityEvidence {
            score: fusion::best_of(scorer(best), tries),
            positions: Vec::new(),
        })
    }
}

/// Whether a probe finger at `p` may be compared with a gallery finger at `g` (an unknown
/// position matches any).
pub(super) fn compatible(p: FingerPosition, g: FingerPosition) -> bool {
    p.code() == 0 || g.code() == 0 || p == g
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
