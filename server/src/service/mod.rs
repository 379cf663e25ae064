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

use crate::audit::{AuditRecord, Auditor};
use crate::auth;
use crate::metrics::Metrics;

use abis_proto::FailureReason;
pub use samples::Engines;
use samples::Item;

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
    auditor: Auditor,
    metrics: Arc<Metrics>,
}

impl AbisService {
    pub fn new(
        engines: Arc<Engines>,
        gallery: Arc<Gallery>,
        auditor: Auditor,
        metrics: Arc<Metrics>,
    ) -> Self {
        let service = AbisService {
            engines,
            gallery,
            pending: Arc::new(AtomicU64::new(0)),
            auditor,
            metrics,
        };
        service.update_gauges();
        service
    }

    fn update_gauges(&self) {
        let stats = self.gallery.store().stats();
        self.metrics.set_gallery_size("all", stats.records);
        // Records acknowledged in the log but not yet in a segment: what a restart replays.
        self.metrics.set_wal_lag(stats.memtable_records as u64);
    }

    /// Writes the audit entry of a finished request (whatever its outcome) before answering.
    /// If the entry cannot be made durable the request fails: nothing is answered untraced.
    async fn audited<T>(
        &self,
        caller: String,
        rpc: &'static str,
        mut refs: Vec<String>,
        result: Result<T, Status>,
        describe: impl FnOnce(&T, &mut Vec<String>) -> String,
    ) -> Result<T, Status> {
        let decision = match &result {
            Ok(v) => describe(v, &mut refs),
            Err(_) => String::new(),
        };
        let record = AuditRecord::new(caller, rpc)
            .refs(refs)
            .decision(decision)
            .outcome(&result);
        self.auditor.record(record).await.map_err(Status::from)?;
        result
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
        let caller = auth::caller(&request)?.name.clone();
        let req = request.into_inner();
        let id = req.reference_id.clone();
        let result = self.job(move |e, g| insert_one(e, g, req)).await;
        let outcome = self
            .audited(caller, "Insert", vec![id], result, |o, _| {
                if *o == InsertOutcome::AlreadyPresent {
                    "already_present"
                } else {
                    "inserted"
                }
                .into()
            })
            .await?;
        self.update_gauges();
        Ok(Response::new(InsertResponse {
            already_present: outcome == InsertOutcome::AlreadyPresent,
        }))
    }

    async fn insert_stream(
        &self,
        request: Request<Streaming<InsertRequest>>,
    ) -> Result<Response<InsertStreamResponse>, Status> {
        let caller = auth::caller(&request)?.name.clone();
        let mut stream = request.into_inner();
        let mut summary = InsertStreamResponse::default();
        let mut ids = Vec::new();
        let result: Result<(), Status> = async {
            while let Some(req) = stream.message().await? {
                ids.push(req.reference_id.clone());
                match self.job(move |e, g| insert_one(e, g, req)).await? {
                    InsertOutcome::AlreadyPresent => summary.already_present += 1,
                    InsertOutcome::Inserted => summary.inserted += 1,
                }
            }
            Ok(())
        }
        .await;
        let counts = format!(
            "inserted:{} already_present:{}",
            summary.inserted, summary.already_present
        );
        self.audited(caller, "InsertStream", ids, result, |_, _| counts)
            .await?;
        self.update_gauges();
        Ok(Response::new(summary))
    }

    async fn identify(
        &self,
        request: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyResponse>, Status> {
        let caller = auth::caller(&request)?.name.clone();
        let probe_id = match &request.get_ref().probe {
            Some(identify_request::Probe::ReferenceId(id)) => vec![id.clone()],
            _ => vec![],
        };
        let result = self.identify_inner(request.into_inner()).await;
        self.audited(caller, "Identify", probe_id, result, |r, refs| {
            refs.extend(r.candidates.iter().map(|c| c.reference_id.clone()));
            format!("candidates:{}", r.candidates.len())
        })
        .await
        .map(Response::new)
    }

    async fn verify(
        &self,
        request: Request<VerifyRequest>,
    ) -> Result<Response<VerifyResponse>, Status> {
        let caller = auth::caller(&request)?.name.clone();
        let reference = match &request.get_ref().reference {
            Some(verify_request::Reference::ReferenceId(id)) => vec![id.clone()],
            _ => vec![],
        };
        let result = self.verify_inner(request.into_inner()).await;
        self.audited(caller, "Verify", reference, result, |r, _| {
            if r.decision == Decision::Matched as i32 {
                "match"
            } else {
                "no_match"
            }
            .into()
        })
        .await
        .map(Response::new)
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let caller = auth::caller(&request)?.name.clone();
        let id = request.into_inner().reference_id;
        let target = id.clone();
        let result = async {
            reference_id("reference_id", &id)?;
            self.job(move |_, g| g.delete(&id).map_err(status::from_gallery))
                .await
        }
        .await;
        self.audited(caller, "Delete", vec![target], result, |_, _| {
            "deleted".into()
        })
        .await?;
        self.update_gauges();
        Ok(Response::new(DeleteResponse {}))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let caller = auth::caller(&request)?.name.clone();
        let id = request.get_ref().reference_id.clone();
        let result = self.get_inner(request.into_inner()).await;
        self.audited(caller, "Get", vec![id], result, |_, _| "read".into())
            .await
            .map(Response::new)
    }

    // Counts only: nothing about any person is read, so these are not audited.
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
        let caller = auth::caller(&request)?.name.clone();
        let req = request.into_inner();
        let result = self.job(move |e, _| extract::extract(e, req)).await;
        self.audited(caller, "Extract", vec![], result, |r, _| {
            format!("extracted:{}", r.results.len())
        })
        .await
        .map(Response::new)
    }
}

impl AbisService {
    async fn identify_inner(&self, req: IdentifyRequest) -> Result<IdentifyResponse, Status> {
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
        Ok(IdentifyResponse {
            candidates: candidates.into_iter().map(candidate).collect(),
            threshold,
            gallery_size: size,
        })
    }

    async fn verify_inner(&self, req: VerifyRequest) -> Result<VerifyResponse, Status> {
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
        Ok(VerifyResponse {
            decision: overall as i32,
            score: v.score,
            modalities,
        })
    }

    async fn get_inner(&self, req: GetRequest) -> Result<GetResponse, Status> {
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
        Ok(GetResponse {
            reference_id: record.reference_id.clone(),
            fingers: fingers.into_values().collect(),
            faces: record.faces.len() as u32,
            metadata: record.metadata.clone().into_iter().collect(),
        })
    }
}
