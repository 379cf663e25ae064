//! The `abis.v1.Abis` gRPC service: MOSIP ABIS semantics over the engine's gallery.
//!
//! Work that burns CPU (extraction, search) or waits on fsync (inserts) runs on the blocking
//! thread pool, never on the async executor's threads.

mod extract;
mod samples;
mod status;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use abis_engine::gallery::{
    fusion, Candidate as EngineCandidate, Gallery, IdentifyOptions, ModalityEvidence, Probe,
};
use abis_engine::store::{validate_reference_id, FingerEntry, InsertOutcome, Record};
use abis_engine::template::encode_native;
use abis_proto::v1::{
    abis_server::Abis, identify_request, verify_request, Candidate, Decision, DeleteRequest,
    DeleteResponse, EnrolledFinger, ExtractRequest, ExtractResponse, GetRequest, GetResponse,
    IdentifyRequest, IdentifyResponse, InsertRequest, InsertResponse, InsertStreamResponse,
    Modality, ModalityDecision, ModalityScore, PendingJobsRequest, PendingJobsResponse,
    ReferenceCountRequest, ReferenceCountResponse, VerifyRequest, VerifyResponse,
};
use tonic::{Code, Request, Response, Status, Streaming};

pub use samples::Engines;
use samples::Item;
use status::FailureReason;

/// Metadata bounds: small annotations, never a side channel for personal data.
const MAX_METADATA_ENTRIES: usize = 16;
const MAX_METADATA_BYTES: usize = 256;
/// Default and largest `max_results`.
const DEFAULT_MAX_RESULTS: usize = 10;
const MAX_RESULTS: usize = 1000;
/// Default MOSIP target FPIR code (1e-3) and default 1:1 FMR.
const DEFAULT_FPIR_CODE: u32 = 30;
const DEFAULT_TARGET_FMR: f64 = 1e-4;

pub struct AbisService {
    engines: Arc<Engines>,
    gallery: Arc<Gallery>,
    pending: Arc<AtomicU64>,
}

impl AbisService {
    pub fn new(engines: Arc<Engines>, gallery: Arc<Gallery>) -> Self {
        AbisService {
            engines,
            gallery,
            pending: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Runs `f` on the blocking pool, counted as a pending job while it runs.
    async fn job<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engines, &Gallery) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let engines = Arc::clone(&self.engines);
        let gallery = Arc::clone(&self.gallery);
        let pending = Arc::clone(&self.pending);
        pending.fetch_add(1, Ordering::SeqCst);
        let _done = PendingGuard(pending);
        tokio::task::spawn_blocking(move || f(&engines, &gallery))
            .await
            .map_err(|_| {
                status::status(
                    Code::Internal,
                    FailureReason::Unexpected,
                    "request task failed",
                )
            })?
    }
}

struct PendingGuard(Arc<AtomicU64>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn reference_id(field: &str, id: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(status::status(
            Code::InvalidArgument,
            FailureReason::MissingReferenceId,
            format!("{field}: missing"),
        ));
    }
    validate_reference_id(id).map_err(|e| status::invalid(field, e))
}

/// Builds the record an insert stores: finger templates in the native encoding, face embeddings.
fn build_record(engines: &Engines, req: InsertRequest) -> Result<Record, Status> {
    reference_id("reference_id", &req.reference_id)?;
    if req.metadata.len() > MAX_METADATA_ENTRIES
        || req
            .metadata
            .iter()
            .any(|(k, v)| k.len() + v.len() > MAX_METADATA_BYTES)
    {
        return Err(status::invalid(
            "metadata",
            format!("at most {MAX_METADATA_ENTRIES} entries of {MAX_METADATA_BYTES} bytes"),
        ));
    }
    samples::check_count("samples", req.samples.len())?;
    let mut record = Record {
        reference_id: req.reference_id,
        metadata: req.metadata.into_iter().collect::<BTreeMap<_, _>>(),
        ..Default::default()
    };
    for (i, s) in req.samples.into_iter().enumerate() {
        let field = format!("samples[{i}]");
        match engines.convert(&field, s)? {
            Item::Finger {
                position, template, ..
            } => {
                let bytes =
                    encode_native(&template).map_err(|e| status::from_template(&field, e))?;
                record.fingers.push(FingerEntry {
                    position,
                    template: bytes,
                });
            }
            Item::Face(t) => record.faces.push(t.embedding),
        }
    }
    Ok(record)
}

fn insert_one(
    engines: &Engines,
    gallery: &Gallery,
    req: InsertRequest,
) -> Result<InsertOutcome, Status> {
    let record = build_record(engines, req)?;
    gallery.insert(record).map_err(status::from_gallery)
}

fn modality_score(modality: Modality, m: &ModalityEvidence) -> ModalityScore {
    ModalityScore {
        modality: modality as i32,
        score: m.score,
        finger_positions: m.positions.iter().map(|&p| p as u32).collect(),
    }
}

fn candidate(c: EngineCandidate) -> Candidate {
    let mut modalities = Vec::new();
    if let Some(f) = &c.finger {
        modalities.push(modality_score(Modality::Finger, f));
    }
    if let Some(f) = &c.face {
        modalities.push(modality_score(Modality::Face, f));
    }
    Candidate {
        reference_id: c.reference_id,
        score: c.score,
        modalities,
    }
}

fn decision(score: f64, target_fmr: f64) -> Decision {
    if score >= fusion::score_of(target_fmr) {
        Decision::Matched
    } else {
        Decision::NotMatched
    }
}

#[tonic::async_trait]
impl Abis for AbisService {
    async fn insert(
        &self,
        request: Request<InsertRequest>,
    ) -> Result<Response<InsertResponse>, Status> {
        let req = request.into_inner();
        let outcome = self.job(move |e, g| insert_one(e, g, req)).await?;
        Ok(Response::new(InsertResponse {
            already_present: outcome == InsertOutcome::AlreadyPresent,
        }))
    }

    async fn insert_stream(
        &self,
        request: Request<Streaming<InsertRequest>>,
    ) -> Result<Response<InsertStreamResponse>, Status> {
        let mut stream = request.into_inner();
        let mut summary = InsertStreamResponse::default();
        while let Some(req) = stream.message().await? {
            match self.job(move |e, g| insert_one(e, g, req)).await? {
                InsertOutcome::AlreadyPresent => summary.already_present += 1,
                _ => summary.inserted += 1,
            }
        }
        Ok(Response::new(summary))
    }

    async fn identify(
        &self,
        request: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyResponse>, Status> {
        let req = request.into_inner();
        let max_results = match req.max_results as usize {
            0 => DEFAULT_MAX_RESULTS,
            n if n > MAX_RESULTS => {
                return Err(status::invalid(
                    "max_results",
                    format!("at most {MAX_RESULTS}"),
                ))
            }
            n => n,
        };
        let fpir_code = match req.target_fpir {
            0 => DEFAULT_FPIR_CODE,
            c @ 1..=200 => c,
            c => {
                return Err(status::invalid(
                    "target_fpir",
                    format!("{c} is not a MOSIP FPIR code (e.g. 30, 40, 50)"),
                ))
            }
        };
        for (i, id) in req.gallery_reference_ids.iter().enumerate() {
            reference_id(&format!("gallery_reference_ids[{i}]"), id)?;
        }
        let only = (!req.gallery_reference_ids.is_empty()).then(|| {
            req.gallery_reference_ids
                .into_iter()
                .collect::<HashSet<_>>()
        });
        let probe_spec = req
            .probe
            .ok_or_else(|| status::invalid("probe", "a reference_id or samples is required"))?;
        let (candidates, threshold, size) = self
            .job(move |engines, gallery| {
                let (probe, exclude) = match probe_spec {
                    identify_request::Probe::ReferenceId(id) => {
                        reference_id("reference_id", &id)?;
                        let record = gallery
                            .store()
                            .get(&id)
                            .map_err(status::from_store)?
                            .ok_or_else(|| {
                                status::status(
                                    Code::NotFound,
                                    FailureReason::ReferenceIdNotFound,
                                    "reference_id: not found",
                                )
                            })?;
                        (
                            Probe::from_record(&record).map_err(status::from_gallery)?,
                            Some(id),
                        )
                    }
                    identify_request::Probe::Samples(list) => {
                        (engines.probe("samples", list.samples)?, None)
                    }
                };
                let options = IdentifyOptions {
                    max_results,
                    target_fpir: fusion::fpir_from_mosip(fpir_code),
                    exclude,
                    only,
                };
                gallery
                    .identify(&probe, &options)
                    .map_err(status::from_gallery)
            })
            .await?;
        Ok(Response::new(IdentifyResponse {
            candidates: candidates.into_iter().map(candidate).collect(),
            threshold,
            gallery_size: size,
        }))
    }

    async fn verify(
        &self,
        request: Request<VerifyRequest>,
    ) -> Result<Response<VerifyResponse>, Status> {
        let req = request.into_inner();
        let target_fmr = if req.target_fmr == 0.0 {
            DEFAULT_TARGET_FMR
        } else {
            req.target_fmr
        };
        if !(target_fmr > 0.0 && target_fmr < 1.0) {
            return Err(status::invalid("target_fmr", "must be in (0, 1)"));
        }
        let reference = req
            .reference
            .ok_or_else(|| status::invalid("reference", "a reference_id or samples is required"))?;
        let probe_samples = req.probe;
        let v = self
            .job(move |engines, gallery| {
                let probe = engines.probe("probe", probe_samples)?;
                match reference {
                    verify_request::Reference::ReferenceId(id) => {
                        reference_id("reference_id", &id)?;
                        gallery.verify(&probe, &id).map_err(status::from_gallery)
                    }
                    verify_request::Reference::Samples(list) => {
                        let other = engines.probe("samples", list.samples)?;
                        gallery
                            .verify_samples(&probe, &other)
                            .map_err(status::from_gallery)
                    }
                }
            })
            .await?;
        let mut modalities = Vec::new();
        for (modality, evidence) in [(Modality::Finger, &v.finger), (Modality::Face, &v.face)] {
            if let Some(m) = evidence {
                modalities.push(ModalityDecision {
                    modality: modality as i32,
                    decision: decision(m.score, target_fmr) as i32,
                    score: m.score,
                });
            }
        }
        let overall = if modalities.is_empty() {
            Decision::Error
        } else {
            decision(v.score, target_fmr)
        };
        Ok(Response::new(VerifyResponse {
            decision: overall as i32,
            score: v.score,
            modalities,
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let id = request.into_inner().reference_id;
        reference_id("reference_id", &id)?;
        self.job(move |_, g| g.delete(&id).map_err(status::from_gallery))
            .await?;
        Ok(Response::new(DeleteResponse {}))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let req = request.into_inner();
        reference_id("reference_id", &req.reference_id)?;
        let id = req.reference_id.clone();
        let record = self
            .job(move |_, g| g.store().get(&id).map_err(status::from_store))
            .await?
            .ok_or_else(|| {
                status::status(
                    Code::NotFound,
                    FailureReason::ReferenceIdNotFound,
                    "reference_id: not found",
                )
            })?;
        let mut fingers: BTreeMap<u8, EnrolledFinger> = BTreeMap::new();
        for f in &record.fingers {
            let e = fingers
                .entry(f.position.code())
                .or_insert_with(|| EnrolledFinger {
                    finger_position: f.position.code() as u32,
                    ..Default::default()
                });
            e.impressions += 1;
            if req.include_templates {
                e.templates.push(f.template.clone());
            }
        }
        Ok(Response::new(GetResponse {
            reference_id: record.reference_id.clone(),
            fingers: fingers.into_values().collect(),
            faces: record.faces.len() as u32,
            metadata: record.metadata.clone().into_iter().collect(),
        }))
    }

    async fn reference_count(
        &self,
        _: Request<ReferenceCountRequest>,
    ) -> Result<Response<ReferenceCountResponse>, Status> {
        Ok(Response::new(ReferenceCountResponse {
            count: self.gallery.store().count(),
        }))
    }

    async fn pending_jobs(
        &self,
        _: Request<PendingJobsRequest>,
    ) -> Result<Response<PendingJobsResponse>, Status> {
        Ok(Response::new(PendingJobsResponse {
            pending: self.pending.load(Ordering::SeqCst),
        }))
    }

    async fn extract(
        &self,
        request: Request<ExtractRequest>,
    ) -> Result<Response<ExtractResponse>, Status> {
        let req = request.into_inner();
        Ok(Response::new(
            self.job(move |e, _| extract::extract(e, req)).await?,
        ))
    }
}
