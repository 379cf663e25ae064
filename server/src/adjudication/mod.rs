//! Adjudication: an examiner decides each identification hit.
//!
//! A search that returns candidates can open a **case** (the Identify request's `open_case`,
//! or `[adjudication] open_cases = "on_hit"` for every search): the probe, the candidates, their
//! scores per modality and per finger, and for each finger the two prints' minutiae with the
//! mated pairs the matcher's score rests on ([`evidence`]). Cases are durable ([`store`]: a file
//! per case, replaced atomically, so an acknowledged case or decision survives SIGKILL). The
//! desk ([`cases`]) opens, reads and decides them; decisions (duplicate, distinct,
//! inconclusive, with the examiner's key name, the time and a comment) are written to the
//! hash-chained audit log before the case file. Two ways in, one policy: the
//! `abis.v1.Adjudication` gRPC service ([`grpc`]) and the examiner's web page ([`page`]), both
//! for callers with the `adjudicator` role. Case ids are random: no personal identifier
//! appears in a URL or a log line.

pub mod cases;
pub mod evidence;
pub mod grpc;
pub mod page;
pub mod store;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use cases::{Cases, Hit, HitRecord};
pub use grpc::AdjudicationService;
pub use store::{CaseStore, CaseStoreError};

/// When a search opens a case.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenCases {
    /// Only when the request asks (`open_case`).
    #[default]
    Never,
    /// Every search with at least one candidate.
    OnHit,
}

/// `[adjudication]` (documented in `server/config/default.toml`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdjudicationConfig {
    pub open_cases: OpenCases,
    /// The examiner's page (HTTP, or HTTPS with `[tls]`); absent: no page.
    pub listen: Option<SocketAddr>,
    /// How long a page login lasts.
    pub session_minutes: u64,
}

impl Default for AdjudicationConfig {
    fn default() -> Self {
        AdjudicationConfig {
            open_cases: OpenCases::Never,
            listen: None,
            session_minutes: 480,
        }
    }
}
