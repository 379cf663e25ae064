//! The consumer: one STOMP session at a time (reconnecting when the broker goes away), requests
//! handed to at most `workers` concurrent tasks, each answered in the message type it came in
//! (MOSIP reads answers of the type it sends) and acknowledged only after its answer is
//! recorded and sent. [`Adapter::drain`] (on SIGTERM) stops taking messages, lets the requests
//! in hand finish and be acknowledged, then disconnects: the broker keeps the rest for the next
//! start, and nothing is answered twice.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use abis_mosip::cbeff;
use abis_mosip::message::{
    Answer, Candidate, ModalityAnalytics, Operation, Request, RequestError, Response,
};
use abis_mosip::stomp::{
    queue_statistics, Client, ClientError, Config as StompConfig, Message, Messages,
};
use abis_proto::v1::abis_server::Abis;
use abis_proto::v1::{
    identify_request, Candidate as GrpcCandidate, DeleteRequest, IdentifyRequest, InsertRequest,
    Modality, ReferenceCountRequest, Sample, SampleList,
};
use abis_proto::FailureReason;
use tokio::sync::watch;
use tonic::{Code, Status};

use super::datashare::{Datashare, FetchError};
use super::ledger::{Ledger, LedgerError, Seen};
use super::{samples, MosipConfig};
use crate::access::Roles;
use crate::auth::{AuthMethod, Caller};
use crate::service::{call, AbisService};

/// Errors that stop the adapter from starting.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("[mosip]: {0}")]
    Config(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Datashare(#[from] FetchError),
}

/// What every request task shares.
struct Context {
    service: Arc<AbisService>,
    config: MosipConfig,
    ledger: Ledger,
    datashare: Datashare,
    limits: cbeff::Limits,
    order: Order,
    /// Requests received and not yet answered (PendingJobs without broker statistics).
    in_flight: AtomicU64,
    stomp: StompConfig,
}

/// The running adapter.
pub struct Adapter {
    stop: Stopper,
    task: tokio::task::JoinHandle<()>,
}

/// When the adapter was first told to stop (`None` while it runs).
type Stopped = Option<std::time::Instant>;

/// Tells the adapter to take no more messages (from a signal handler, say).
#[derive(Clone)]
pub struct Stopper(Arc<watch::Sender<Stopped>>);

impl Stopper {
    /// Idempotent: the first call's moment is what [`Adapter::drain`]'s grace counts from.
    pub fn stop(&self) {
        self.0.send_if_modified(|stopped| {
            let first = stopped.is_none();
            stopped.get_or_insert_with(std::time::Instant::now);
            first
        });
    }
}

impl Adapter {
    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    /// Stops taking messages (if the stopper has not already) and waits until every request in
    /// hand is answered and acknowledged and the session closed, at most `grace` after the
    /// first stop (the signal, not this call, which comes after gRPC's own drain). False when
    /// `grace` ran out first.
    pub async fn drain(self, grace: std::time::Duration) -> bool {
        self.stop.stop();
        let since = self
            .stop
            .0
            .borrow()
            .map_or(std::time::Duration::ZERO, |t| t.elapsed());
        tokio::time::timeout(grace.saturating_sub(since), self.task)
            .await
            .is_ok()
    }
}

/// Starts the adapter on the current runtime: checks the configuration, opens the ledger under
/// `data_dir/mosip`, then consumes until drained.
pub fn spawn(
    service: Arc<AbisService>,
    config: &MosipConfig,
    data_dir: &Path,
) -> Result<Adapter, AdapterError> {
    config.validate().map_err(AdapterError::Config)?;
    let mut stomp = StompConfig::new(config.broker_addr().map_err(AdapterError::Config)?);
    stomp.heartbeat = config.heartbeat();
    if let (Some(login), Some(file)) = (&config.login, &config.passcode_file) {
        let pass = std::fs::read_to_string(file)
            .map_err(|e| AdapterError::Config(format!("passcode_file {}: {e}", file.display())))?;
        stomp.login = Some(login.clone());
        stomp.passcode = Some(pass.trim().to_string());
    }
    let ctx = Arc::new(Context {
        service,
        ledger: Ledger::open(&data_dir.join("mosip/requests.jsonl"))?,
        datashare: Datashare::new(config.datashare.clone())?,
        limits: cbeff::Limits {
            max_bytes: config.datashare.max_bytes,
            max_birs: config.max_cbeff_birs,
            ..cbeff::Limits::default()
        },
        config: config.clone(),
        order: Order::new(),
        in_flight: AtomicU64::new(0),
        stomp,
    });
    let (stop, stopping) = watch::channel(None);
    let task = tokio::spawn(consume(ctx, stopping));
    Ok(Adapter {
        stop: Stopper(Arc::new(stop)),
        task,
    })
}

async fn consume(ctx: Arc<Context>, mut stop: watch::Receiver<Stopped>) {
    let pause = std::time::Duration::from_millis(ctx.config.reconnect_ms);
    let stomp = &ctx.stomp;
    while stop.borrow().is_none() {
        match Client::connect(stomp).await {
            Ok((client, messages)) => {
                tracing::info!(broker = %stomp.addr, queue = %ctx.config.request_queue, "MOSIP adapter connected");
                match session(&ctx, client, messages, &mut stop).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "MOSIP adapter lost the broker; reconnecting")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, broker = %stomp.addr, "MOSIP adapter cannot reach the broker")
            }
        }
        let _ = tokio::time::timeout(pause, stop.wait_for(Option::is_some)).await;
    }
}

/// One broker session, until the connection fails (an error) or the adapter is drained.
async fn session(
    ctx: &Arc<Context>,
    client: Client,
    mut messages: Messages,
    stop: &mut watch::Receiver<Stopped>,
) -> Result<(), ClientError> {
    let workers = ctx.config.workers;
    client
        .subscribe(&ctx.config.request_queue, "abis-requests", workers as u32)
        .await?;
    let permits = Arc::new(tokio::sync::Semaphore::new(workers));
    loop {
        // A message taken but not started when the drain begins is left unacknowledged: the
        // broker hands it to the next session.
        let next = async {
            let message = messages.next().await?;
            let permit = Arc::clone(&permits).acquire_owned().await.ok()?;
            Some((message, permit))
        };
        let (message, permit) = tokio::select! {
            taken = next => taken.ok_or(ClientError::Closed)?,
            _ = stop.wait_for(Option::is_some) => break,
        };
        let parsed = Request::parse(&message.body);
        // Sequenced in arrival order, before any task runs: an Identify waits for earlier writes.
        let write = matches!(&parsed, Ok(r) if is_write(r.operation));
        let seq = ctx.order.admit(write);
        ctx.in_flight.fetch_add(1, Ordering::SeqCst);
        let (ctx, client) = (Arc::clone(ctx), client.clone());
        tokio::spawn(async move {
            let mut unanswered = Unanswered(Some(&ctx.in_flight));
            handle(&ctx, &client, message, parsed, seq, &mut unanswered).await;
            drop(unanswered);
            ctx.order.finish(seq);
            drop(permit);
        });
    }
    tracing::info!("MOSIP adapter draining: finishing the requests in hand");
    let _ = permits.acquire_many(workers as u32).await;
    client.disconnect().await
}

/// A request counted in `in_flight` until its answer is sent, or until its task ends unanswered.
/// Why not until acknowledged: the caller has the answer before the acknowledgement's receipt
/// comes back, and a PendingJobs sent right after must not count the request it already has.
struct Unanswered<'a>(Option<&'a AtomicU64>);

impl Unanswered<'_> {
    fn answered(&mut self) {
        if let Some(count) = self.0.take() {
            count.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        self.answered();
    }
}

fn is_write(op: Operation) -> bool {
    matches!(op, Operation::Insert | Operation::Delete)
}

/// One message, start to acknowledgement. Failures to answer leave it unacknowledged: the
/// broker redelivers it (to this process after a reconnect, or to the next one).
async fn handle(
    ctx: &Context,
    client: &Client,
    message: Message,
    parsed: Result<Request, RequestError>,
    seq: u64,
    unanswered: &mut Unanswered<'_>,
) {
    let request = match parsed {
        Ok(r) => r,
        Err(e) => return reject(ctx, client, &message, &e, unanswered).await,
    };
    let answer = match answer(ctx, &request, seq).await {
        Ok(json) => json,
        Err(e) => {
            // The ledger cannot record: answer nothing, and let the broker redeliver later.
            tracing::error!(error = %e, "MOSIP request not answered");
            client.abort().await;
            return;
        }
    };
    let sent = client
        .send(&ctx.config.response_queue, answer.as_bytes(), message.kind)
        .await;
    unanswered.answered();
    let acked = match sent {
        Ok(()) => client.ack(&message).await,
        Err(e) => Err(e),
    };
    if let Err(e) = acked {
        tracing::warn!(error = %e, "MOSIP answer or acknowledgement not confirmed; the request will be redelivered");
    }
}

/// A request that can never succeed: answered with its failure; a malformed one is NACKed (to
/// the broker's dead-letter queue), a well-formed one with a missing part acknowledged.
async fn reject(
    ctx: &Context,
    client: &Client,
    message: &Message,
    error: &RequestError,
    unanswered: &mut Unanswered<'_>,
) {
    tracing::warn!(error = %error, "MOSIP request rejected");
    let mut json = error.answer().at(now()).to_json();
    // A well-formed request is redelivered like any other: it gets the answer recorded first.
    let request_id = error.request_id();
    if !request_id.is_empty() {
        match ctx.ledger.answered(request_id, json) {
            Ok(recorded) => json = recorded,
            Err(e) => {
                tracing::error!(error = %e, "MOSIP rejection not recorded");
                return client.abort().await;
            }
        }
    }
    let poison = matches!(
        error,
        RequestError::NotJson(_)
            | RequestError::MissingRequestId { .. }
            | RequestError::UnknownOperation { .. }
    );
    let sent = client
        .send(&ctx.config.response_queue, json.as_bytes(), message.kind)
        .await;
    unanswered.answered();
    let settled = match sent {
        Ok(()) if poison => client.nack(message).await,
        Ok(()) => client.ack(message).await,
        Err(e) => Err(e),
    };
    if let Err(e) = settled {
        tracing::warn!(error = %e, "MOSIP rejection not confirmed");
    }
}

/// The recorded answer of a request: the one recorded earlier for its `requestId`, else a new
/// one, recorded before it is returned.
async fn answer(ctx: &Context, request: &Request, seq: u64) -> Result<String, LedgerError> {
    let id = &request.request_id;
    let seen = ctx.ledger.seen(id);
    if let Seen::Answered(json) = &seen {
        return Ok(json.clone());
    }
    if request.operation == Operation::Delete {
        // An Insert needs no such line: run again, it stores the same content, which succeeds.
        ctx.ledger.started(id)?;
    } else if matches!(
        request.operation,
        Operation::Identify | Operation::ReferenceCount
    ) {
        ctx.order.wait_for_writes_before(seq).await;
    }
    let retried = seen == Seen::Started;
    let outcome = call::scope(None, execute(ctx, request, retried)).await;
    let response = match outcome {
        Ok(answer) => Response::success(request.operation.id(), id.clone(), answer),
        Err(reason) => Response::failed(request.operation.id(), id.clone(), reason),
    };
    ctx.ledger.answered(id, response.at(now()).to_json())
}

async fn execute(ctx: &Context, request: &Request, retried: bool) -> Result<Answer, FailureReason> {
    let service = ctx.service.as_ref();
    match request.operation {
        Operation::Ping => Ok(Answer::Done),
        Operation::PendingJobs => Ok(Answer::JobsCount(pending_jobs(ctx).await)),
        Operation::ReferenceCount => {
            let r = service
                .reference_count(grpc(ReferenceCountRequest {}))
                .await;
            r.map(|r| Answer::Count(r.into_inner().count))
                .map_err(|s| reason(&s))
        }
        Operation::Insert => insert(ctx, request).await,
        Operation::Identify => identify(ctx, request).await,
        Operation::Delete => {
            let id = request.reference_id.clone().unwrap_or_default();
            match service
                .delete(grpc(DeleteRequest { reference_id: id }))
                .await
            {
                Ok(_) => Ok(Answer::Done),
                // The first delivery deleted it before the process died.
                Err(s) if retried && s.code() == Code::NotFound => Ok(Answer::Done),
                Err(s) => Err(reason(&s)),
            }
        }
    }
}

/// The backlog, this request excluded: with broker statistics every request of the queue not
/// yet acknowledged (waiting in the broker, or in flight here); without them, or when the broker
/// does not answer, only those received here and not yet answered.
async fn pending_jobs(ctx: &Context) -> u64 {
    let received = ctx.in_flight.load(Ordering::SeqCst).saturating_sub(1);
    if !ctx.config.broker_statistics {
        return received;
    }
    let queue = &ctx.config.request_queue;
    match queue_statistics(&ctx.stomp, queue, ctx.config.statistics_timeout()).await {
        Ok(stats) => stats.size.saturating_sub(1),
        Err(e) => {
            tracing::warn!(error = %e, "MOSIP PendingJobs: no broker statistics; answering the requests received here");
            received
        }
    }
}

async fn insert(ctx: &Context, request: &Request) -> Result<Answer, FailureReason> {
    let samples = fetch_samples(ctx, request.reference_url.as_deref().unwrap_or_default()).await?;
    let req = InsertRequest {
        reference_id: request.reference_id.clone().unwrap_or_default(),
        samples,
        metadata: Default::default(),
    };
    ctx.service
        .insert(grpc(req))
        .await
        .map(|_| Answer::Done)
        .map_err(|s| reason(&s))
}

async fn identify(ctx: &Context, request: &Request) -> Result<Answer, FailureReason> {
    // The referenceId is preferred when both are given (ABIS API 0.9).
    let probe = match (&request.reference_id, &request.reference_url) {
        (Some(id), _) => identify_request::Probe::ReferenceId(id.clone()),
        (None, Some(url)) => identify_request::Probe::Samples(SampleList {
            samples: fetch_samples(ctx, url).await?,
        }),
        (None, None) => return Err(FailureReason::MissingReferenceId),
    };
    let req = IdentifyRequest {
        probe: Some(probe),
        gallery_reference_ids: request.gallery.clone().unwrap_or_default(),
        max_results: request.flags.max_results.unwrap_or(0),
        target_fpir: request.flags.target_fpir.unwrap_or(0),
        open_case: false,
    };
    let found = ctx
        .service
        .identify(grpc(req))
        .await
        .map_err(|s| reason(&s))?;
    let candidates = found
        .into_inner()
        .candidates
        .into_iter()
        .map(candidate)
        .collect();
    Ok(Answer::Candidates(candidates))
}

async fn fetch_samples(ctx: &Context, url: &str) -> Result<Vec<Sample>, FailureReason> {
    let body = ctx.datashare.fetch(url).await.map_err(|e| {
        tracing::warn!(error = %e, "MOSIP datashare fetch failed");
        e.reason()
    })?;
    let limits = ctx.limits;
    tokio::task::spawn_blocking(move || samples::from_cbeff(&body, &limits))
        .await
        .map_err(|_| FailureReason::Unexpected)?
        .map_err(|e| {
            tracing::warn!(error = %e, "MOSIP CBEFF unusable");
            e.reason()
        })
}

/// A candidate with MOSIP analytics: the fused calibrated score, and per modality its score
/// (and the matching finger positions).
fn candidate(c: GrpcCandidate) -> Candidate {
    let score = |s: f64| format!("{s:.2}");
    let modalities = c
        .modalities
        .iter()
        .map(|m| {
            let mut analytics = abis_mosip::message::Analytics::new();
            analytics.insert("internalScore".into(), score(m.score));
            if !m.finger_positions.is_empty() {
                let positions: Vec<String> =
                    m.finger_positions.iter().map(u32::to_string).collect();
                analytics.insert("fingerPositions".into(), positions.join(","));
            }
            let biometric_type = if m.modality == Modality::Face as i32 {
                "FID"
            } else {
                "FIR"
            };
            ModalityAnalytics {
                biometric_type: biometric_type.into(),
                analytics,
            }
        })
        .collect();
    Candidate {
        reference_id: c.reference_id,
        analytics: [("internalScore".to_string(), score(c.score))].into(),
        modalities,
    }
}

/// MOSIP's `responsetime` (the audit log's clock format).
fn now() -> String {
    crate::audit::rfc3339_utc(std::time::SystemTime::now())
}

/// A service request made by the adapter (audited as caller `mosip`).
fn grpc<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(Caller {
        name: "mosip".into(),
        roles: Roles::all(),
        method: AuthMethod::Local,
    });
    request
}

/// The MOSIP reason a status carries (every service error has one), else by its code.
fn reason(status: &Status) -> FailureReason {
    FailureReason::of(status).unwrap_or(match status.code() {
        Code::NotFound => FailureReason::ReferenceIdNotFound,
        Code::AlreadyExists => FailureReason::ReferenceIdExists,
        Code::InvalidArgument => FailureReason::InvalidRequest,
        _ => FailureReason::Internal,
    })
}

/// Arrival order of requests, so that an Identify sees every Insert and Delete received
/// before it even when workers run them concurrently.
struct Order {
    next: AtomicU64,
    writes: watch::Sender<BTreeSet<u64>>,
}

impl Order {
    fn new() -> Order {
        Order {
            next: AtomicU64::new(0),
            writes: watch::Sender::new(BTreeSet::new()),
        }
    }

    fn admit(&self, write: bool) -> u64 {
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        if write {
            self.writes.send_modify(|w| {
                w.insert(seq);
            });
        }
        seq
    }

    fn finish(&self, seq: u64) {
        self.writes.send_if_modified(|w| w.remove(&seq));
    }

    async fn wait_for_writes_before(&self, seq: u64) {
        let mut rx = self.writes.subscribe();
        let _ = rx.wait_for(|w| w.range(..seq).next().is_none()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn an_identify_waits_for_earlier_writes_only() {
        let order = Arc::new(Order::new());
        let insert = order.admit(true);
        let identify = order.admit(false);
        let later_insert = order.admit(true);
        let waiting = {
            let order = Arc::clone(&order);
            tokio::spawn(async move { order.wait_for_writes_before(identify).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the earlier insert is still running"
        );
        order.finish(insert);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        order.finish(later_insert);
    }

    #[test]
    fn statuses_map_to_mosip_reasons() {
        assert_eq!(
            reason(&Status::not_found("x")),
            FailureReason::ReferenceIdNotFound
        );
        assert_eq!(reason(&Status::unavailable("x")), FailureReason::Internal);
        let s =
            abis_proto::failure::status(Code::InvalidArgument, FailureReason::NoBiometricData, "x");
        assert_eq!(reason(&s), FailureReason::NoBiometricData);
    }
}
