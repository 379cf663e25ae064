//! What a search answers: candidates with their per-modality evidence, a 1:N answer, a 1:1
//! verification, and the order of candidates.

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
/// searched. A cluster's router merges its shards' answers into one of these too.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Identified {
    pub candidates: Vec<Candidate>,
    /// The score a candidate had to reach: `-10 log10(FPIR / searched)`.
    pub threshold: f64,
    /// Records searched (the whole gallery, or the listed ones, less the probe's own).
    pub searched: u64,
}

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
