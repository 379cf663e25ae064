//! Identification hits become adjudication cases (`crate::adjudication`): the service knows
//! the probe and can read the candidates' stored fingers; the desk builds and keeps the case.

use std::sync::Arc;

use abis_engine::gallery::Probe;
use abis_engine::template::{FingerPosition, FingerTemplate};
use abis_proto::v1::IdentifyResponse;
use tonic::Status;

use super::{status, AbisService};
use crate::adjudication::{Cases, Hit, HitRecord, OpenCases};
use crate::images::{ImageStore, ImageStoreError, KeptImage, RecordImages};

/// The image store failed: logged with its path, answered without it.
pub(super) fn image_status(e: ImageStoreError) -> Status {
    tracing::error!(error = %e, "image store");
    Status::unavailable("the image store cannot write")
}

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

    /// Keeps enrolled images in `images` (`[store] keep_images`): with their records, and the
    /// probe images of the cases searches open.
    pub fn with_images(mut self, images: Option<Arc<ImageStore>>) -> Self {
        self.images = images;
        self
    }

    /// Opens the case of a search that found candidates, keeping the probe's images with it;
    /// returns its id.
    pub(super) async fn open_case(
        &self,
        probe_reference_id: Option<String>,
        probe_fingers: Vec<(FingerPosition, FingerTemplate)>,
        probe_images: Vec<KeptImage>,
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
            dedup_job_id: None,
        };
        let images = self.images.clone().filter(|_| !probe_images.is_empty());
        tokio::task::spawn_blocking(move || {
            let id = cases.open(hit)?;
            if let Some(store) = images {
                let kept = RecordImages {
                    images: probe_images,
                    ..Default::default()
                };
                store.put_case(&id, &kept).map_err(image_status)?;
            }
            Ok(id)
        })
        .await
        .map_err(|_| status::internal("case task failed"))?
    }
}
