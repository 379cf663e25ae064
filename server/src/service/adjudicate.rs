//! Identification hits become adjudication cases (`crate::adjudication`): the service knows
//! the probe and can read the candidates' stored fingers; the desk builds and keeps the case.

use std::sync::Arc;

use abis_engine::gallery::Probe;
use abis_engine::template::{FingerPosition, FingerTemplate};
use abis_proto::v1::IdentifyResponse;
use tonic::Status;

use super::{status, AbisService};
use crate::adjudication::{Cases, Hit, HitRecord, OpenCases};

impl AbisService {
    /// Cases are opened by `cases` when a search asks (`open_case`) or the policy is `on_hit`.
    pub fn with_cases(mut self, cases: Arc<Cases>, policy: OpenCases) -> Self {
        self.cases = Some(cases);
        self.open_cases = policy;
        self
    }

    /// Whether this search opens a case when it has candidates; asking a server that keeps
    /// no cases is FAILED_PRECONDITION.
    pub(super) fn wants_case(&self, requested: bool) -> Result<bool, Status> {
        match (&self.cases, requested) {
            (None, true) => Err(Status::failed_precondition(
                "open_case: this server keeps no adjudication cases",
            )),
            (None, false) => Ok(false),
            (Some(_), _) => Ok(requested || self.open_cases == OpenCases::OnHit),
        }
    }

    /// Opens the case of a search that found candidates; returns its id.
    pub(super) async fn open_case(
        &self,
        probe_reference_id: Option<String>,
        probe_fingers: Vec<(FingerPosition, FingerTemplate)>,
        response: &IdentifyResponse,
    ) -> Result<String, Status> {
        let Some(cases) = self.cases.clone() else {
            return Err(status::internal("no case store"));
        };
        let mut candidates = Vec::with_capacity(response.candidates.len());
        for c in &response.candidates {
            // A record deleted since the search is still a candidate; its prints are gone.
            let fingers = match self.backend.get(c.reference_id.clone()).await? {
                Some(record) => {
                    Probe::from_record(&record)
                        .map_err(status::from_gallery)?
                        .fingers
                }
                None => Vec::new(),
            };
            candidates.push(HitRecord {
                candidate: c.clone(),
                fingers,
            });
        }
        let hit = Hit {
            probe_reference_id,
            probe_fingers,
            threshold: response.threshold,
            candidates,
        };
        tokio::task::spawn_blocking(move || cases.open(hit))
            .await
            .map_err(|_| status::internal("case task failed"))?
    }
}
