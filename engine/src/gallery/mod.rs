//! The gallery: the durable [`store`](crate::store) with its 1:N finger index, and search over
//! it — 1:N identification and 1:1 verification against enrolled records — with calibrated
//! score fusion across impressions, fingers and modalities ([`fusion`]).
//!
//! A search considers every live record of the snapshot taken when it starts: every insert
//! acknowledged before it is in it. Up to [`SearchConfig::index_above`] records, every one is
//! scored by the full matcher (exhaustive search, with the prepared forms cached). Above it the
//! index picks the records the full matcher scores (`shortlist.rs`): resident finger codes keep
//! [`SearchConfig::code_shortlist`] records, their coarse local structures (LSS-R) keep
//! [`SearchConfig::shortlist`], and the exact int8 face scan keeps as many by face; probes with
//! fewer than [`SearchConfig::index_min_fingers`] fingers skip the codes, and the local
//! similarity sort of every record's forms keeps [`SearchConfig::local_sort_keep`] records for
//! LSS-R instead. The threshold is always
//! the one for the whole gallery. [`Gallery::identify_batch`] runs one pass over the codes for
//! many probes, each answer exactly the one its probe gets alone.
//!
//! The index is persisted with the segments as the store's companion files
//! ([`crate::index::segment_index`]); records still in the log are indexed at insert (or at the
//! first search after a restart). While a damaged or missing segment index is rebuilt
//! ([`Gallery::warm`]), indexed searches fail with [`GalleryError::IndexIncomplete`]: never a
//! search of part of the gallery.
//!
//! Files, lower ones never importing higher ones:
//!
//! | file | concept |
//! |---|---|
//! | `error`, `probe`, `answer`, `fusion` | what can fail; what a search is asked; what it answers; combining scores |
//! | `score` | one record scored by the full matcher |
//! | `shortlist` | the index's stages: which records the full matcher scores |
//! | `cache` | prepared records and the log's index entries, kept between searches |
//! | `open` | the `Gallery` itself: opening, accessors, checkpoint copies |
//! | `write`, `identify`, `verify`, `warm` | what the gallery does (each an `impl Gallery`) |

mod answer;
mod cache;
mod dedup;
mod error;
pub mod fusion;
mod identify;
mod open;
mod probe;
mod score;
mod shortlist;
mod verify;
mod warm;
mod write;

pub use answer::{rank, Candidate, Identified, ModalityEvidence, Verification};
pub use dedup::{duplicate_groups, pair_threshold, DedupScope, DedupSettings, DuplicatePair};
pub use error::GalleryError;
pub use identify::FirstStageProbe;
pub use open::Gallery;
pub use probe::{CodeStage, IdentifyOptions, Probe, SearchConfig};
pub use score::FaceScorer;
