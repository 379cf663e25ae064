//! The `abis.v1.Abis` gRPC service: MOSIP ABIS semantics over the engine's gallery.
//!
//! Work that burns CPU (extraction, search) or waits on fsync (inserts) runs on the blocking
//! thread pool, never on the async executor's threads.

mod adjudicate;
mod backend;
pub mod call;
mod dedup;
mod document;
mod extract;
mod routed;
mod samples;
mod status;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use abis_engine::gallery::{
    fusion, Candidate as EngineCandidate, IdentifyOptions, ModalityEvidence, Probe,
};
use abis_engine::store::{
    validate_reference_id, FingerEntry, InsertOutcome, Record, MAX_METADATA_ENTRIES,
    MAX_METADATA_KEY_LEN, MAX_METADATA_VALUE_LEN,
};
use abis_engine::template::encode_native;
use abis_proto::v1::{
    abis_server::Abis, identify_batch_result, identify_request, verify_request, BackupRequest,
    BackupResponse, BatchError, Candidate, Decision, DeleteRequest, DeleteResponse, EnrolledFinger,
    ExtractRequest, ExtractResponse, GetRequest, GetResponse, IdentifyBatchRequest,
    IdentifyBatchResponse, IdentifyBatchResult, IdentifyRequest, IdentifyResponse, InsertRequest,
    InsertResponse, InsertStreamResponse, Modality, ModalityDecision, ModalityScore,
    PendingJobsRequest, PendingJobsResponse, ReferenceCountRequest, ReferenceCountResponse,
    VerifyDocumentRequest, VerifyDocumentResponse, VerifyRequest, VerifyResponse,
};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::audit::{AuditRecord, Auditor};
use crate::auth;
use crate::metrics::Metrics;

use abis_cluster::wire::MAX_RESULTS;
use abis_cluster::Identified;
use abis_proto::FailureReason;
pub use backend::{Backend, BackendStats, BoxFuture, LocalBackend};
pub use routed::RoutedBackend;
pub use samples::Engines;
use samples::Item;
pub use samples::MAX_SAMPLES;

/// Default `max_results`; the largest is the cluster's (`wire::MAX_RESULTS`), so that a router
/// never cuts what a single node accepts.
const DEFAULT_MAX_RESULTS: usize = 10;
/// Default MOSIP target FPIR code (1e-3) and default 1:1 FMR.
const DEFAULT_FPIR_CODE: u32 = 30;
const DEFAULT_TARGET_FMR: f64 = 1e-4;
/// Most requests of one IdentifyBatch.
const MAX_BATCH: usize = 256;
/// Records of one `InsertStream` inserted at once.
const STREAM_PIPELINE: usize = 16;

pub struct AbisService {
    engines: Arc<Engines>,
    backend: Arc<dyn Backend>,
    pending: Arc<AtomicU64>,
    auditor: Auditor,
    metrics: Arc<Metrics>,
    /// CSCAs and CRLs of `VerifyDocument` (`with_trust_store`).
    trust_store: Option<Arc<abis_icao::TrustStore>>,
    /// Where hits become adjudication cases, and when (`with_cases`).
    cases: Option<Arc<crate::adjudication::Cases>>,
    open_cases: crate::adjudication::OpenCases,
    /// N:N deduplication jobs of this node's gallery (`with_dedup`; none on a router).
    dedup: Option<Arc<crate::dedup::DedupJobs>>,
    /// Enrolled and probe images (`with_images`, `[store] keep_images`).
    images: Option<Arc<crate::images::ImageStore>>,
}

impl AbisService {
    pub fn new(
        engines: Arc<Engines>,
        backend: Arc<dyn Backend>,
        auditor: Auditor,
        metrics: Arc<Metrics>,
    ) -> Self {
        let service = AbisService {
            engines,
            backend,
            pending: Arc::new(AtomicU64::new(0)),
            auditor,
            metrics,
            trust_store: None,
            cases: None,
            open_cases: crate::adjudication::OpenCases::Never,
            dedup: None,
            images: None,
        };
        service.update_gauges();
        service
    }

    fn update_gauges(&self) {
        let stats = self.backend.stats();
        self.metrics.set_gallery_size("all", stats.records);
        // Records acknowledged in the log but not yet in a segment: what a restart replays.
        self.metrics.set_wal_lag(stats.unflushed);
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
            .node(self.backend.node())
            .refs(refs)
            .decision(decision)
            .outcome(&result);
        self.auditor.record(record).await.map_err(Status::from)?;
        result
    }

    /// Runs `work` counted as a pending job while it runs.
    async fn job<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        let pending = Arc::clone(&self.pending);
        pending.fetch_add(1, Ordering::SeqCst);
        let _done = PendingGuard(pending);
        work.await
    }

    /// Runs extraction `f` on the blocking pool (models burn CPU).
    async fn extract<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engines) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let engines = Arc::clone(&self.engines);
        tokio::task::spawn_blocking(move || f(&engines))
            .await
            .map_err(|_| {
                status::status(
                    Code::Internal,
                    FailureReason::Unexpected,
                    "request task failed",
                )
            })?
    }

    async fn insert_one(&self, req: InsertRequest) -> Result<InsertOutcome, Status> {
        let kept = match &self.images {
            Some(_) => crate::images::from_samples(&req.samples),
            None => Vec::new(),
        };
        let record = self.extract(move |e| build_record(e, req)).await?;
        match &self.images {
            Some(store) if !kept.is_empty() => store
                .insert_with(&record, kept, self.backend.insert(record.clone()))
                .await
                .map_err(adjudicate::image_status)?,
            _ => self.backend.insert(record).await,
        }
    }

    /// Deletes a record, and its kept images with it.
    async fn delete_one(&self, id: String) -> Result<(), Status> {
        match &self.images {
            Some(store) => store
                .delete_with(&id.clone(), self.backend.delete(id))
                .await
                .map_err(adjudicate::image_status)?,
            None => self.backend.delete(id).await,
        }
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
    // The record's own limits (the data model's; checked again when it is stored), before any
    // extraction work.
    if req.metadata.len() > MAX_METADATA_ENTRIES
        || req.metadata.iter().any(|(k, v)| {
            k.is_empty() || k.len() > MAX_METADATA_KEY_LEN || v.len() > MAX_METADATA_VALUE_LEN
        })
    {
        return Err(status::invalid(
            "metadata",
            format!(
                "at most {MAX_METADATA_ENTRIES} entries, keys of 1..={MAX_METADATA_KEY_LEN} \
                 bytes, values of at most {MAX_METADATA_VALUE_LEN} bytes"
            ),
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

fn identify_response(found: Identified) -> IdentifyResponse {
    IdentifyResponse {
        candidates: found.candidates.into_iter().map(candidate).collect(),
        threshold: found.threshold,
        gallery_size: found.searched,
        case_id: String::new(),
    }
}

/// A request's `target_fmr`: 0 means the default 1e-4.
fn target_fmr(value: f64) -> Result<f64, Status> {
    let target_fmr = if value == 0.0 {
        DEFAULT_TARGET_FMR
    } else {
        value
    };
    if !(target_fmr > 0.0 && target_fmr < 1.0) {
        return Err(status::invalid("target_fmr", "must be in (0, 1)"));
    }
    Ok(target_fmr)
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
        let result = self.job(self.insert_one(req)).await;
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
        // Up to STREAM_PIPELINE records of the stream are inserted at once, so that one
        // record's extraction overlaps another's commit (and the store syncs its log once for
        // several); after an error no more records are read, those already started finish and
        // are counted, and the first error is the answer.
        let mut in_flight = FuturesUnordered::new();
        let (mut open, mut failed) = (true, None);
        loop {
            tokio::select! {
                message = stream.message(), if open && in_flight.len() < STREAM_PIPELINE => {
                    match message {
                        Ok(Some(req)) => {
                            ids.push(req.reference_id.clone());
                            in_flight.push(self.job(self.insert_one(req)));
                        }
                        Ok(None) => open = false,
                        Err(e) => {
                            open = false;
                            failed.get_or_insert(e);
                        }
                    }
                }
                Some(done) = in_flight.next(), if !in_flight.is_empty() => match done {
                    Ok(InsertOutcome::AlreadyPresent) => summary.already_present += 1,
                    Ok(InsertOutcome::Inserted) => summary.inserted += 1,
                    Err(e) => {
                        open = false;
                        failed.get_or_insert(e);
                    }
                },
                else => break,
            }
        }
        let result: Result<(), Status> = failed.map_or(Ok(()), Err);
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
        let result = self.job(self.identify_inner(request.into_inner())).await;
        self.audited(caller, "Identify", probe_id, result, |r, refs| {
            refs.extend(r.candidates.iter().map(|c| c.reference_id.clone()));
            match r.case_id.as_str() {
                "" => format!("candidates:{}", r.candidates.len()),
                case => format!("candidates:{} case:{case}", r.candidates.len()),
            }
        })
        .await
        .map(Response::new)
    }

    async fn identify_batch(
        &self,
        request: Request<IdentifyBatchRequest>,
    ) -> Result<Response<IdentifyBatchResponse>, Status> {
        let caller = auth::caller(&request)?.name.clone();
        let probe_ids: Vec<String> = request
            .get_ref()
            .requests
            .iter()
            .filter_map(|r| match &r.probe {
                Some(identify_request::Probe::ReferenceId(id)) => Some(id.clone()),
                _ => None,
            })
            .collect();
        let result = self
            .job(self.identify_batch_inner(request.into_inner()))
            .await;
        self.audited(caller, "IdentifyBatch", probe_ids, result, |r, refs| {
            let mut candidates = 0;
            for res in &r.results {
                if let Some(identify_batch_result::Outcome::Response(resp)) = &res.outcome {
                    candidates += resp.candidates.len();
                    refs.extend(resp.candidates.iter().map(|c| c.reference_id.clone()));
                }
            }
            format!("requests:{} candidates:{candidates}", r.results.len())
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
        let result = self.job(self.verify_inner(request.into_inner())).await;
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
            self.job(self.delete_one(id)).await
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
        let result = self.job(self.get_inner(request.into_inner())).await;
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
            count: self.backend.count().await?,
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
        let result = self
            .job(self.extract(move |e| extract::extract(e, req)))
            .await;
        self.audited(caller, "Extract", vec![], result, |r, _| {
            format!("extracted:{}", r.results.len())
        })
        .await
        .map(Response::new)
    }

    async fn verify_document(
        &self,
        request: Request<VerifyDocumentRequest>,
    ) -> Result<Response<VerifyDocumentResponse>, Status> {
        self.verify_document_rpc(request).await
    }

    async fn start_deduplication(
        &self,
        request: Request<abis_proto::v1::StartDeduplicationRequest>,
    ) -> Result<Response<abis_proto::v1::DeduplicationStatus>, Status> {
        self.start_deduplication_rpc(request).await
    }

    async fn get_deduplication(
        &self,
        request: Request<abis_proto::v1::GetDeduplicationRequest>,
    ) -> Result<Response<abis_proto::v1::DeduplicationStatus>, Status> {
        self.get_deduplication_rpc(request).await
    }

    type ListDuplicatesStream = dedup::GroupStream;

    async fn list_duplicates(
        &self,
        request: Request<abis_proto::v1::ListDuplicatesRequest>,
    ) -> Result<Response<Self::ListDuplicatesStream>, Status> {
        self.list_duplicates_rpc(request).await
    }

    async fn cancel_deduplication(
        &self,
        request: Request<abis_proto::v1::CancelDeduplicationRequest>,
    ) -> Result<Response<abis_proto::v1::DeduplicationStatus>, Status> {
        self.cancel_deduplication_rpc(request).await
    }

    async fn backup(
        &self,
        request: Request<BackupRequest>,
    ) -> Result<Response<BackupResponse>, Status> {
        let caller = auth::caller(&request)?.name.clone();
        let destination = request.into_inner().destination;
        let result = async {
            let path = backup_destination(&destination)?;
            let m = self.job(self.backend.backup(path)).await?;
            Ok(BackupResponse {
                files: m.files.len() as u32,
                bytes: m.bytes(),
                position: m.position,
            })
        }
        .await;
        self.audited(caller, "Backup", vec![], result, |r, _| {
            format!("files:{} bytes:{}", r.files, r.bytes)
        })
        .await
        .map(Response::new)
    }
}

/// The directory a backup is written into: an absolute path that does not exist yet, in a
/// directory that does.
fn backup_destination(destination: &str) -> Result<std::path::PathBuf, Status> {
    let path = std::path::PathBuf::from(destination);
    if destination.is_empty() || !path.is_absolute() {
        return Err(status::invalid(
            "destination",
            "an absolute path on the server is required",
        ));
    }
    if path.exists() {
        return Err(status::status(
            Code::FailedPrecondition,
            FailureReason::Internal,
            "destination: already exists; a backup goes into a new directory",
        ));
    }
    if !path.parent().is_some_and(|p| p.is_dir()) {
        return Err(status::status(
            Code::FailedPrecondition,
            FailureReason::Internal,
            "destination: its parent directory does not exist",
        ));
    }
    Ok(path)
}

impl AbisService {
    /// Checks an Identify request and turns it into a probe and options (a stored probe record
    /// is read from the backend).
    async fn identify_request(
        &self,
        field: &str,
        req: IdentifyRequest,
    ) -> Result<(Probe, IdentifyOptions), Status> {
        let max_results = match req.max_results as usize {
            0 => DEFAULT_MAX_RESULTS,
            n if n > MAX_RESULTS => {
                return Err(status::invalid(
                    &format!("{field}max_results"),
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
                    &format!("{field}target_fpir"),
                    format!("{c} is not a MOSIP FPIR code (e.g. 30, 40, 50)"),
                ))
            }
        };
        for (i, id) in req.gallery_reference_ids.iter().enumerate() {
            reference_id(&format!("{field}gallery_reference_ids[{i}]"), id)?;
        }
        let only = (!req.gallery_reference_ids.is_empty()).then(|| {
            req.gallery_reference_ids
                .into_iter()
                .collect::<HashSet<_>>()
        });
        let probe_spec = req.probe.ok_or_else(|| {
            status::invalid(
                &format!("{field}probe"),
                "a reference_id or samples is required",
            )
        })?;
        let (probe, exclude) = match probe_spec {
            identify_request::Probe::ReferenceId(id) => {
                reference_id(&format!("{field}reference_id"), &id)?;
                let record = self.backend.get(id.clone()).await?.ok_or_else(|| {
                    status::status(
                        Code::NotFound,
                        FailureReason::ReferenceIdNotFound,
                        format!("{field}reference_id: not found"),
                    )
                })?;
                (
                    Probe::from_record(&record).map_err(status::from_gallery)?,
                    Some(id),
                )
            }
            identify_request::Probe::Samples(list) => {
                let list_field = format!("{field}samples");
                let probe = self
                    .extract(move |e| e.probe(&list_field, list.samples))
                    .await?;
                (probe, None)
            }
        };
        let options = IdentifyOptions {
            max_results,
            target_fpir: fusion::fpir_from_mosip(fpir_code),
            exclude,
            only,
        };
        Ok((probe, options))
    }

    async fn identify_inner(&self, req: IdentifyRequest) -> Result<IdentifyResponse, Status> {
        let wants_case = self.wants_case(req.open_case)?;
        let probe_id = match &req.probe {
            Some(identify_request::Probe::ReferenceId(id)) => Some(id.clone()),
            _ => None,
        };
        let probe_images = match (&req.probe, &self.images) {
            (Some(identify_request::Probe::Samples(list)), Some(_)) if wants_case => {
                crate::images::from_samples(&list.samples)
            }
            _ => Vec::new(),
        };
        let probe = self.identify_request("", req).await?;
        let probe_fingers = wants_case.then(|| probe.0.fingers.clone());
        let result = self.backend.identify(vec![probe]).await.pop();
        let mut response = result
            .unwrap_or_else(|| Err(status::internal("no search result")))
            .map(identify_response)?;
        if let Some(fingers) = probe_fingers.filter(|_| !response.candidates.is_empty()) {
            response.case_id = self
                .open_case(probe_id, fingers, probe_images, &response)
                .await?;
        }
        Ok(response)
    }

    /// Every request checked and its probe prepared, then one backend pass for all that are
    /// valid; each request's outcome in its place.
    async fn identify_batch_inner(
        &self,
        req: IdentifyBatchRequest,
    ) -> Result<IdentifyBatchResponse, Status> {
        if req.requests.is_empty() || req.requests.len() > MAX_BATCH {
            return Err(status::invalid(
                "requests",
                format!("between 1 and {MAX_BATCH} requests"),
            ));
        }
        let mut prepared = Vec::with_capacity(req.requests.len());
        for (i, r) in req.requests.into_iter().enumerate() {
            prepared.push(self.identify_request(&format!("requests[{i}]."), r).await);
        }
        let valid: Vec<(Probe, IdentifyOptions)> = prepared
            .iter()
            .filter_map(|p| p.as_ref().ok().cloned())
            .collect();
        let mut searched = self.backend.identify(valid).await.into_iter();
        let results = prepared
            .into_iter()
            .map(|p| {
                let outcome = p.and_then(|_| {
                    searched
                        .next()
                        .unwrap_or_else(|| Err(status::internal("no search result")))
                });
                IdentifyBatchResult {
                    outcome: Some(match outcome {
                        Ok(found) => {
                            identify_batch_result::Outcome::Response(identify_response(found))
                        }
                        Err(s) => identify_batch_result::Outcome::Error(BatchError {
                            code: s.code() as i32,
                            message: s.message().to_string(),
                            failure_reason: FailureReason::of(&s).map_or(0, |r| r.code()),
                        }),
                    }),
                }
            })
            .collect();
        Ok(IdentifyBatchResponse { results })
    }

    async fn verify_inner(&self, req: VerifyRequest) -> Result<VerifyResponse, Status> {
        let target_fmr = target_fmr(req.target_fmr)?;
        let reference = req
            .reference
            .ok_or_else(|| status::invalid("reference", "a reference_id or samples is required"))?;
        let probe_samples = req.probe;
        let choice = samples::face_choice("face_choice", req.face_choice)?;
        let probe = self
            .extract(move |e| e.probe_with("probe", probe_samples, choice))
            .await?;
        let v = match reference {
            verify_request::Reference::ReferenceId(id) => {
                reference_id("reference_id", &id)?;
                self.backend.verify(probe, id).await?
            }
            verify_request::Reference::Samples(list) => {
                let other = self
                    .extract(move |e| e.probe_with("samples", list.samples, choice))
                    .await?;
                self.backend.verify_samples(probe, other).await?
            }
        };
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
        let record = self.backend.get(id).await?.ok_or_else(|| {
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
