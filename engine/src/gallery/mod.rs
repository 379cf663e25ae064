//! The gallery: the durable [`store`](crate::store) plus search over it — exact 1:N
//! identification and 1:1 verification against enrolled records — with calibrated score fusion
//! across impressions, fingers and modalities ([`fusion`]).
//!
//! Every live record of the snapshot taken when a search starts is considered (in parallel over
//! records with rayon). A snapshot contains every insert that was acknowledged before it was
//! taken, so an acknowledged insert is visible to every later search. Up to
//! [`SearchConfig::index_above`] records, every one is scored by the full matcher (exact
//! search); above it, fixed-length finger codes and the face cosines pick a short list of
//! [`SearchConfig::shortlist`] records per index and only those are matched, for probes with a
//! face or at least [`SearchConfig::index_min_fingers`] fingers (on 100,000
//! synthetic people, ten-finger probes lost none of 500 mates: `README.md`). The threshold is
//! always the one for the whole gallery. Prepared finger templates and codes are cached per
//! record (the prepared form only with [`SearchConfig::retain_prepared`]), so a record is
//! prepared once, not on every search.

pub mod fusion;
mod search;

pub use search::{
    Candidate, FaceScorer, Gallery, GalleryError, IdentifyOptions, ModalityEvidence, Probe,
    SearchConfig, Verification,
};
