//! The gallery: the durable [`store`](crate::store) plus search over it — exact 1:N
//! identification and 1:1 verification against enrolled records — with calibrated score fusion
//! across impressions, fingers and modalities ([`fusion`]).
//!
//! Every search is exact: every live record of the snapshot taken when the search starts is
//! compared (in parallel over records with rayon). A snapshot contains every insert that was
//! acknowledged before it was taken, so an acknowledged insert is visible to every later search.
//! Prepared finger templates (the matcher's descriptors) are cached per record, so a record is
//! prepared once, not on every search.

pub mod fusion;
mod search;

pub use search::{
    Candidate, FaceScorer, Gallery, GalleryError, IdentifyOptions, ModalityEvidence, Probe,
    Verification,
};
