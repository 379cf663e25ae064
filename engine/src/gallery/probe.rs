//! What a search is asked: the probe, the options of a 1:N search (MOSIP flags), and how the
//! gallery picks the records the full matcher scores.

use std::collections::HashSet;

use super::error::GalleryError;
use crate::store::Record;
use crate::template::{decode_native, FingerPosition, FingerTemplate};

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

    /// Checks the probe against a gallery of `dim`-dimensional faces.
    pub(super) fn check(&self, dim: usize) -> Result<(), GalleryError> {
        if self.is_empty() {
            return Err(GalleryError::EmptyProbe);
        }
        match self.faces.iter().find(|f| f.len() != dim) {
            Some(f) => Err(GalleryError::FaceDimension {
                expected: dim,
                got: f.len(),
            }),
            None => Ok(()),
        }
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
    /// Probes with at least this many finger positions (a ten-print; `usize::MAX`: none) use
    /// the shorter lists below: their mates' codes and local structures stand so far above
    /// every stranger's that a few places suffice, and the full matcher, most of a search's
    /// time, then scores a handful of records instead of `shortlist`.
    pub ten_print_min_fingers: usize,
    /// [`SearchConfig::code_shortlist`] of ten-print probes.
    pub ten_print_code_shortlist: usize,
    /// [`SearchConfig::shortlist`] of ten-print probes (the face scan keeps `shortlist`).
    pub ten_print_shortlist: usize,
    /// Probes with fewer fingers than this (and no face) skip the first stage: one to three
    /// fingers' codes are too weak a filter, so every record's local structures are compared,
    /// first by the local similarity sort, then the best `local_sort_keep` by LSS-R.
    pub index_min_fingers: usize,
    /// Records the local similarity sort passes to LSS-R in searches that skip the codes
    /// (fewer than `index_min_fingers` fingers): the sort ranks every record at an eighth of
    /// LSS-R's cost, and LSS-R orders only these. `usize::MAX`: LSS-R on every record.
    pub local_sort_keep: usize,
    /// How the first stage finds its records: the band tables (default) or a scan of every
    /// record's codes (the reference the tables are checked against).
    pub code_stage: CodeStage,
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
            ten_print_min_fingers: 8,
            ten_print_code_shortlist: 32,
            ten_print_shortlist: 4,
            index_min_fingers: 4,
            local_sort_keep: 16_384,
            code_stage: CodeStage::default(),
            retain_prepared: true,
        }
    }
}

impl SearchConfig {
    /// The code and finger short lists of a probe with `fingers` finger positions.
    pub fn lists(&self, fingers: usize) -> (usize, usize) {
        if fingers >= self.ten_print_min_fingers {
            (
                self.ten_print_code_shortlist.max(1),
                self.ten_print_shortlist.max(1),
            )
        } else {
            (self.code_shortlist.max(1), self.shortlist.max(1))
        }
    }
}

/// How the first stage of a search with enough fingers finds the records it ranks by codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeStage {
    /// Per segment, the `band_candidates` records sharing the most band keys with the probe
    /// (what it reads is the postings of the probe's keys: linear in the gallery, far below the
    /// scan), for probes
    /// with at least `min_fingers` finger codes (never fewer than four); the others scan. Four
    /// to seven fingers' bands miss weak mates that their codes would rank: at 100,000
    /// synthetic people the tables lost 24 of 1,000 four-finger mates, the scan 2 (docs/scale.md,
    /// "Ten-print lists"), so by default only ten-prints use them.
    Tables {
        band_candidates: usize,
        min_fingers: usize,
    },
    /// Every record's codes.
    Scan,
}

impl Default for CodeStage {
    fn default() -> Self {
        CodeStage::Tables {
            band_candidates: 8192,
            min_fingers: 8,
        }
    }
}
