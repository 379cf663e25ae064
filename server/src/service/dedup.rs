//! The N:N deduplication RPCs over this node's jobs ([`crate::dedup`]). Each call is audited
//! with the job id and counts, never a reference id.

use std::pin::Pin;
use std::sync::Arc;

use abis_proto::v1::{
    CancelDeduplicationRequest, DeduplicationState, DeduplicationStatus, DuplicateGroup,
    DuplicatePair, GetDeduplicationRequest, ListDuplicatesRequest, StartDeduplicationRequest,
};
use abis_proto::FailureReason;
use tonic::{Code, Request, Response, Status};

use super::{status, AbisService};
use crate::auth;
use crate::dedup::{DedupError, DedupJobs, Job, JobState, StoredPair};

/// The stream `ListDuplicates` answers with.
pub type GroupStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<DuplicateGroup, Status>> + Send + 'static>>;

fn from_dedup(e: DedupError) -> Status {
    let code = match &e {
        DedupError::AlreadyRunning(_) | DedupError::NotRunning(_) => Code::FailedPrecondition,
        DedupError::NotFound(_) => Code::NotFound,
        DedupError::Invalid(_) => Code::InvalidArgument,
        DedupError::Io(_) | DedupError::Gallery(_) => Code::Internal,
    };
    let reason = match code {
        Code::InvalidArgument => FailureReason::InvalidRequest,
        _ => FailureReason::Internal,
    };
    status::status(code, reason, e.to_string())
}

fn state(s: JobState) -> DeduplicationState {
    match s {
        JobState::Running => DeduplicationState::Running,
        JobState::Finished => DeduplicationState::Finished,
        JobState::Cancelled => DeduplicationState::Cancelled,
        JobState::Failed => DeduplicationState::Failed,
    }
}

fn job_status(job: &Job) -> DeduplicationStatus {
    let p = job.progress();
    DeduplicationStatus {
        job_id: job.id.clone(),
        state: state(p.state) as i32,
        records_total: job.spec.records,
        records_done: p.records_done,
        pairs_found: p.pairs,
        pair_threshold: job.spec.pair_threshold,
        elapsed_s: p.elapsed_s,
        remaining_s: p.remaining_s,
        error: p.error,
    }
}

fn pair(p: StoredPair) -> DuplicatePair {
    DuplicatePair {
        reference_id_a: p.a,
        reference_id_b: p.b,
        score: p.score,
        finger_score: p.finger_score.unwrap_or(0.0),
        face_score: p.face_score.unwrap_or(0.0),
        strong_positions: p.strong_positions.into_iter().map(u32::from).collect(),
        code_score: f64::from(p.code_score),
    }
}

fn job_id(id: &str) -> Result<&str, Status> {
    if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(status::invalid(
            "job_id",
            "16 hexadecimal digits are required",
        ))
    }
}

impl AbisService {
    /// Runs deduplication jobs over this node's gallery (`None`: a router, which has none).
    pub fn with_dedup(mut self, jobs: Option<Arc<DedupJobs>>) -> Self {
        self.dedup = jobs;
        self
    }

    fn dedup_jobs(&self) -> Result<&Arc<DedupJobs>, Status> {
        self.dedup.as_ref().ok_or_else(|| {
            status::status(
                Code::FailedPrecondition,
                FailureReason::Internal,
                "deduplication jobs run on a node that holds a gallery, not on a cluster router",
            )
        })
    }

    pub(super) async fn start_deduplication_rpc(
        &self,
        request: Request<StartDeduplicationRequest>,
    ) -> Result<Response<DeduplicationStatus>, Status> {
        let caller = auth::caller(&request)?.name.clone();
        let expected = request.into_inner().expected_false_pairs;
        let result = async {
            let jobs = Arc::clone(self.dedup_jobs()?);
            // Taking the scope reads every id: off the async threads.
            let job = tokio::task::spawn_blocking(move || jobs.start(expected))
                .await
                .map_err(|_| status::internal("deduplication start failed"))?
                .map_err(from_dedup)?;
            Ok(job_status(&job))
        }
        .await;
        self.audited(caller, "StartDeduplication", vec![], result, |r, _| {
            format!("job:{} records:{}", r.job_id, r.records_total)
        })
        .await
        .map(Response::new)
    }

    pub(super) async fn get_deduplication_rpc(
        &self,
        request: Request<GetDeduplicationRequest>,
    ) -> Result<Response<DeduplicationStatus>, Status> {
        let caller = auth::caller(&request)?.name.clone();
        let req = request.into_inner();
        let result = (|| {
            let job = self
                .dedup_jobs()?
                .get(job_id(&req.job_id)?)
                .map_err(from_dedup)?;
            Ok(job_status(&job))
        })();
        self.audited(caller, "GetDeduplication", vec![], result, |r, _| {
            format!("job:{} done:{}", r.job_id, r.records_done)
        })
        .await
        .map(Response::new)
    }

    pub(super) async fn cancel_deduplication_rpc(
        &self,
        request: Request<CancelDeduplicationRequest>,
    ) -> Result<Response<DeduplicationStatus>, Status> {
        let caller = auth::caller(&request)?.name.clone();
        let req = request.into_inner();
        let result = (|| {
            let job = self
                .dedup_jobs()?
                .cancel(job_id(&req.job_id)?)
                .map_err(from_dedup)?;
            Ok(job_status(&job))
        })();
        self.audited(caller, "CancelDeduplication", vec![], result, |r, _| {
            format!("job:{} done:{}", r.job_id, r.records_done)
        })
        .await
        .map(Response::new)
    }

    pub(super) async fn list_duplicates_rpc(
        &self,
        request: Request<ListDuplicatesRequest>,
    ) -> Result<Response<GroupStream>, Status> {
        let caller = auth::caller(&request)?.name.clone();
        let req = request.into_inner();
        let result = async {
            let jobs = Arc::clone(self.dedup_jobs()?);
            let id = job_id(&req.job_id)?.to_owned();
            tokio::task::spawn_blocking(move || jobs.groups(&id))
                .await
                .map_err(|_| status::internal("listing duplicates failed"))?
                .map_err(from_dedup)
        }
        .await;
        let result = self
            .audited(caller, "ListDuplicates", vec![], result, |g, _| {
                format!("job:{} groups:{}", req.job_id, g.len())
            })
            .await?;
        let groups = result.into_iter().map(|(ids, pairs)| {
            Ok(DuplicateGroup {
                reference_ids: ids,
                pairs: pairs.into_iter().map(pair).collect(),
            })
        });
        let stream: GroupStream = Box::pin(tokio_stream::iter(groups));
        Ok(Response::new(stream))
    }
}
