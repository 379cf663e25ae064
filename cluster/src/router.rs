//! The router: the gRPC service's gallery when `abis serve` runs with `[cluster] role =
//! "router"`. Writes go to the write log, reads fan out to one replica of each shard.
//!
//! # Writes
//!
//! An insert is published to its id's subject `abis.rec.<shard>.<key>` with JetStream's
//! per-subject optimistic concurrency, so that two routers can never both store different
//! content under one id:
//!
//! 1. read the subject's last message from the stream leader;
//!    - an insert of the same content (same canonical bytes): `AlreadyPresent`;
//!    - an insert of other content: `AlreadyExists` (MOSIP 10);
//!    - a delete: the id is free;
//!    - nothing: the id is free, unless the shard's log has been trimmed (KV `trimmed.<shard>`
//!      is set; it is written before each purge) — then a replica of the shard that has applied
//!      the log through the trim point says whether it holds the id (and with what content).
//!      Through the trim point, not the stream's end: any later message of the id would still
//!      be in the log, and waiting for a replica to apply every other id's recent inserts
//!      stalled writes under load;
//!    - an unreadable message: a replica that has applied it decides likewise;
//! 2. publish with `expected-last-subject-sequence` = the sequence read in 1 (0 for an empty
//!    subject). Another writer in between makes the publish fail with "wrong last sequence":
//!    start again at 1 (bounded by the write timeout).
//!
//! The RPC is acknowledged only after the stream's acknowledgement (stored on a majority of
//! the NATS servers). An acknowledgement lost in transit is resolved at the next round of 1:
//! finding its own content there, the router answers `Inserted`. A delete follows the same
//! steps (`NotFound` for an id that is not stored). While the stream has no leader (4-6 s after
//! its leader's server dies) publishes fail fast and are retried until the write timeout.
//!
//! # Reads
//!
//! Every read first takes the stream's last sequence `L` from its leader: every write
//! acknowledged before the call began is at or below `L`. Each shard request carries `L`, and a
//! replica answers only once it has applied its shard's log that far (see
//! [`replica`](crate::replica)), so an Identify sees every Insert acknowledged before it
//! started, whichever router acknowledged it.
//!
//! Every read goes through the shard seam ([`RemoteShard`], which holds the transport, the
//! retries and the reply protocol). Identify and IdentifyBatch run in three stages: **plan**
//! (which shards each probe searches: all of them, or those its restricting list names),
//! **call** every shard (one replica of each answers, see [`RemoteShard`]), **merge** each
//! probe's shard answers at the threshold for the whole gallery ([`merge`](crate::merge)). A
//! shard that does not answer within the request timeout makes the search UNAVAILABLE, naming
//! the shard: never a partial answer. A try that gets no answer within the attempt timeout (a
//! replica killed mid-request) is repeated, and the queue group picks a live replica. Verify
//! and Get go to the id's shard; ReferenceCount sums every shard.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use abis_engine::gallery::{IdentifyOptions, Probe, Verification};
use abis_engine::store::encryption::Keyring;
use abis_engine::store::{InsertOutcome, Record, RecordDefect, StoreError};
use abis_engine::template::decode_native;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::Client;

use crate::catalog::{Catalog, ClusterSpec, OPEN_PATIENCE};
use crate::entry::{self, Entry, EntryError};
use crate::error::ClusterError;
use crate::gallery_shard::{FailureKind, GalleryShard, Identified, RemoteFailure, ShardError};
use crate::merge::merge;
use crate::remote::RemoteShard;
use crate::served::Served;
use crate::shard::{log_subject, shard_of};
use crate::wire;

/// How a router behaves.
#[derive(Clone)]
pub struct RouterConfig {
    /// This router's name (audit entries).
    pub node: String,
    /// The gallery key: log entries are sealed with it when set.
    pub keys: Option<Keyring>,
    /// Face embedding dimension of the cluster's galleries (records are checked against it
    /// before they are published).
    pub face_dim: usize,
    /// Budget of a read (every shard, retries included) when the caller sets no shorter one.
    pub request_timeout: Duration,
    /// One try of a shard request: a replica killed mid-request costs this much before another
    /// one is asked. Must exceed the slowest search of a shard.
    pub attempt_timeout: Duration,
    /// Budget of a write (retries through a stream leader election included).
    pub write_timeout: Duration,
}

/// Why a routed call failed. The server maps each to a gRPC status and MOSIP reason.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    #[error("referenceId already exists")]
    AlreadyExists,
    #[error("referenceId not found")]
    NotFound,
    #[error("the probe has no biometric data")]
    EmptyProbe,
    /// The probe or request is malformed (a replica's words, naming the field).
    #[error("{0}")]
    Invalid(String),
    /// The record breaks the data model: which part, and the store's words (naming the field).
    #[error("{message}")]
    InvalidRecord {
        defect: Option<RecordDefect>,
        message: String,
    },
    #[error("the record's log entry is {bytes} bytes, more than the NATS limit of {max}")]
    TooLarge { bytes: usize, max: usize },
    /// Shards that did not answer in time.
    #[error("shard(s) {} did not answer in time: {detail}", list(.shards))]
    Unavailable { shards: Vec<u32>, detail: String },
    /// The write log (stream leader) could not be reached in time: the last reason.
    #[error("the write log is unavailable: {0}")]
    LogUnavailable(Arc<LogError>),
    #[error(transparent)]
    Internal(Arc<InternalError>),
}

/// Why the write log did not answer (the last reason before the call's deadline).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("timed out")]
    TimedOut,
    #[error("no acknowledgement in time")]
    NoAcknowledgement,
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The subject's last message, from the stream leader.
    #[error("reading the subject's last message: {0}")]
    Read(#[from] async_nats::jetstream::stream::LastRawMessageError),
    #[error("publishing: {0}")]
    Publish(#[from] async_nats::jetstream::context::PublishError),
    /// A log entry this router cannot open (a key it lacks).
    #[error(transparent)]
    Entry(#[from] EntryError),
}

impl From<LogError> for RouteError {
    fn from(e: LogError) -> RouteError {
        RouteError::LogUnavailable(Arc::new(e))
    }
}

/// A failure of the cluster itself (the caller's request was fine).
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    /// A shard's answer that cannot be used, or a failure it reported as its own.
    #[error("shard {shard}: {source}")]
    Shard {
        shard: u32,
        #[source]
        source: ShardError,
    },
    #[error("sealing a log entry: {0}")]
    Entry(#[from] EntryError),
    #[error("a stored record: {0}")]
    Record(#[from] StoreError),
}

impl From<InternalError> for RouteError {
    fn from(e: InternalError) -> RouteError {
        RouteError::Internal(Arc::new(e))
    }
}

impl From<EntryError> for RouteError {
    fn from(e: EntryError) -> RouteError {
        InternalError::from(e).into()
    }
}

impl From<StoreError> for RouteError {
    fn from(e: StoreError) -> RouteError {
        InternalError::from(e).into()
    }
}

fn list(shards: &[u32]) -> String {
    shards
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a shard's failure means for the call.
fn route_error(shard: u32, e: ShardError) -> RouteError {
    if let ShardError::Remote(RemoteFailure::Unavailable(detail)) = e {
        return RouteError::Unavailable {
            shards: vec![shard],
            detail,
        };
    }
    match e.kind() {
        FailureKind::NotFound => RouteError::NotFound,
        FailureKind::EmptyProbe => RouteError::EmptyProbe,
        FailureKind::Invalid => RouteError::Invalid(e.to_string()),
        FailureKind::Unavailable | FailureKind::Internal => {
            InternalError::Shard { shard, source: e }.into()
        }
    }
}

/// Routes the service's calls over the cluster.
pub struct Router {
    client: Client,
    catalog: Catalog,
    config: RouterConfig,
    /// Round robin over shards for 1:1 of samples (any shard computes it).
    next_any: AtomicU32,
}

/// What a write does once it knows what its subject holds.
enum Step<T> {
    Answer(T),
    Publish,
}

/// What a subject's history says about an id.
enum Presence {
    /// Stored with these canonical bytes.
    Stored(Vec<u8>),
    Absent,
    /// The log cannot tell (trimmed or unreadable): ask a replica that has applied the shard's
    /// log through this position — the last message that may have been purged, or the
    /// unreadable one. Not the stream's end: a replica need not catch up on a backlog of other
    /// ids' inserts to answer for this one, whose later messages the log itself would show.
    Unknown {
        through: u64,
    },
}

/// Who served a call, filled by its shard requests.
fn taken(served: Mutex<Served>) -> Served {
    served.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Per shard, the probes it searches (by position): every probe, except one whose restricting
/// list names no id of the shard.
fn plan(probes: &[(Probe, IdentifyOptions)], shards: u32) -> Vec<(u32, Vec<usize>)> {
    (0..shards)
        .map(|shard| {
            let index = probes
                .iter()
                .enumerate()
                .filter(|(_, (_, o))| {
                    o.only
                        .as_ref()
                        .is_none_or(|ids| ids.iter().any(|id| shard_of(id, shards) == shard))
                })
                .map(|(i, _)| i)
                .collect::<Vec<_>>();
            (shard, index)
        })
        .filter(|(_, index)| !index.is_empty())
        .collect()
}

/// One probe's answer from its shards' answers (in shard order): UNAVAILABLE naming every shard
/// that did not answer, else a shard's failure, else the merge at the whole gallery's threshold.
fn merge_probe(
    options: &IdentifyOptions,
    answers: Vec<(u32, Result<Identified, ShardError>)>,
) -> Result<Identified, RouteError> {
    let (mut found, mut absent, mut detail, mut failed) = (Vec::new(), Vec::new(), None, None);
    for (shard, answer) in answers {
        match answer {
            Ok(a) => found.push(a),
            Err(ShardError::Remote(RemoteFailure::Unavailable(why))) => {
                absent.push(shard);
                detail.get_or_insert(why);
            }
            Err(e) => failed = Some(route_error(shard, e)),
        }
    }
    if !absent.is_empty() {
        return Err(RouteError::Unavailable {
            shards: absent,
            detail: detail.unwrap_or_default(),
        });
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(merge(found, options.target_fpir, options.max_results)),
    }
}

impl Router {
    /// Opens the cluster `abis cluster init` created.
    pub async fn open(client: Client, config: RouterConfig) -> Result<Router, ClusterError> {
        wire::check_node_name(&config.node).map_err(|e| ClusterError::Config(e.to_string()))?;
        let catalog = Catalog::open(crate::catalog::context(client.clone()), OPEN_PATIENCE).await?;
        Ok(Router {
            client,
            catalog,
            config,
            next_any: AtomicU32::new(0),
        })
    }

    pub fn spec(&self) -> &ClusterSpec {
        self.catalog.spec()
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn node(&self) -> &str {
        &self.config.node
    }

    fn shards(&self) -> u32 {
        self.catalog.spec().shards
    }

    /// `shard` for one call: its replicas must have applied the log through `min_position`.
    fn remote<'a>(
        &'a self,
        shard: u32,
        min_position: u64,
        deadline: Instant,
        served: &'a Mutex<Served>,
    ) -> RemoteShard<'a> {
        RemoteShard {
            client: &self.client,
            shard,
            shards: self.shards(),
            min_position,
            attempt_timeout: self.config.attempt_timeout,
            deadline,
            served,
        }
    }

    /// The call's deadline: its own budget, or the caller's deadline when sooner — less a
    /// margin, so that UNAVAILABLE naming the shards reaches the caller before its deadline.
    fn deadline(&self, budget: Duration, caller: Option<Instant>) -> Instant {
        let now = Instant::now();
        let own = now + budget;
        caller.map_or(own, |c| {
            let left = c.saturating_duration_since(now);
            let margin = (left / 10).min(Duration::from_millis(200));
            own.min(now + (left - margin))
        })
    }

    /// The stream's last sequence, retried until `deadline`.
    async fn log_position(&self, deadline: Instant) -> Result<u64, RouteError> {
        let mut last = LogError::TimedOut;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(last.into());
            }
            match tokio::time::timeout(left, self.catalog.last_sequence()).await {
                Ok(Ok(s)) => return Ok(s),
                Ok(Err(e)) => last = e.into(),
                Err(_) => last = LogError::TimedOut,
            }
            tokio::time::sleep(Duration::from_millis(100).min(left)).await;
        }
    }

    /// The record the replicas of `shard` hold under `id` once caught up to the log's end.
    async fn stored(
        &self,
        shard: u32,
        id: &str,
        deadline: Instant,
        served: &Mutex<Served>,
    ) -> Result<Option<Record>, RouteError> {
        let position = self.log_position(deadline).await?;
        self.stored_as_of(shard, id, position, deadline, served)
            .await
    }

    /// The record stored under `id` according to a replica that has applied the shard's log at
    /// least through `position`.
    async fn stored_as_of(
        &self,
        shard: u32,
        id: &str,
        position: u64,
        deadline: Instant,
        served: &Mutex<Served>,
    ) -> Result<Option<Record>, RouteError> {
        self.remote(shard, position, deadline, served)
            .get(id.to_owned())
            .await
            .map_err(|e| route_error(shard, e))
    }

    /// The subject's last message: its sequence and what it says about the id.
    async fn presence(&self, subject: &str, shard: u32) -> Result<(u64, Presence), LogError> {
        match self
            .catalog
            .stream()
            .get_last_raw_message_by_subject(subject)
            .await
        {
            Ok(m) => Ok((
                m.sequence,
                match entry::decode(self.config.keys.as_ref(), subject, &m.payload) {
                    Ok(Entry::Insert { canonical, .. }) => Presence::Stored(canonical),
                    Ok(Entry::Delete(_)) => Presence::Absent,
                    Err(e) if e.is_configuration() => return Err(e.into()),
                    Err(e) => {
                        tracing::warn!(shard, position = m.sequence, error = %e, "unreadable log entry");
                        Presence::Unknown {
                            through: m.sequence,
                        }
                    }
                },
            )),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                let trimmed = self.catalog.trim(shard).await?;
                Ok((
                    0,
                    if trimmed.below > 0 {
                        Presence::Unknown {
                            through: trimmed.below - 1,
                        }
                    } else {
                        Presence::Absent
                    },
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Publishes `payload` on `subject` if its last message is still `expected`. `Ok(Some(seq))`:
    /// stored; `Ok(None)`: another write came first; `Err`: outcome unknown (retry).
    async fn publish(
        &self,
        subject: &str,
        payload: Vec<u8>,
        expected: u64,
        deadline: Instant,
    ) -> Result<Option<u64>, LogError> {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, self.publish_once(subject, payload, expected))
            .await
            .unwrap_or(Err(LogError::NoAcknowledgement))
    }

    async fn publish_once(
        &self,
        subject: &str,
        payload: Vec<u8>,
        expected: u64,
    ) -> Result<Option<u64>, LogError> {
        let ack = self
            .catalog
            .js()
            .send_publish(
                subject.to_owned(),
                PublishMessage::build()
                    .payload(payload.into())
                    .expected_last_subject_sequence(expected),
            )
            .await?;
        match ack.await {
            Ok(a) => Ok(Some(a.sequence)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn check_size(&self, bytes: usize) -> Result<(), RouteError> {
        // Subject and headers ride in the same message.
        let max = self.client.server_info().max_payload.saturating_sub(512);
        if bytes > max {
            return Err(RouteError::TooLarge { bytes, max });
        }
        Ok(())
    }

    /// Inserts a record (see the module docs).
    pub async fn insert(
        &self,
        record: Record,
        caller_deadline: Option<Instant>,
    ) -> Result<(InsertOutcome, Served), RouteError> {
        record
            .validate(self.config.face_dim)
            .map_err(invalid_record)?;
        for (i, f) in record.fingers.iter().enumerate() {
            decode_native(&f.template)
                .map_err(|e| RouteError::Invalid(format!("samples[{i}]: {e}")))?;
        }
        let canonical = record.encode().map_err(invalid_record)?;
        let id = record.reference_id;
        let subject = log_subject(&id, self.shards());
        let payload = entry::encode_insert(self.config.keys.as_ref(), &subject, &canonical)?;
        self.check_size(payload.len())?;
        let deadline = self.deadline(self.config.write_timeout, caller_deadline);
        let served = Mutex::new(Served::default());
        let outcome = self
            .write(
                &id,
                payload,
                deadline,
                &served,
                |stored, published| match stored {
                    Some(bytes) if bytes == canonical => Ok(Step::Answer(if published {
                        InsertOutcome::Inserted
                    } else {
                        InsertOutcome::AlreadyPresent
                    })),
                    Some(_) => Err(RouteError::AlreadyExists),
                    None => Ok(Step::Publish),
                },
            )
            .await?;
        Ok((outcome.unwrap_or(InsertOutcome::Inserted), taken(served)))
    }

    /// Deletes a record (see the module docs).
    pub async fn delete(
        &self,
        id: &str,
        caller_deadline: Option<Instant>,
    ) -> Result<Served, RouteError> {
        abis_engine::store::validate_reference_id(id).map_err(invalid_record)?;
        let subject = log_subject(id, self.shards());
        let payload = entry::encode_delete(self.config.keys.as_ref(), &subject, id)?;
        let deadline = self.deadline(self.config.write_timeout, caller_deadline);
        let served = Mutex::new(Served::default());
        self.write(id, payload, deadline, &served, |stored, published| {
            match (stored, published) {
                (Some(_), _) => Ok(Step::Publish),
                (None, true) => Ok(Step::Answer(())),
                (None, false) => Err(RouteError::NotFound),
            }
        })
        .await?;
        Ok(taken(served))
    }

    /// The write loop of Insert and Delete: learn what `id`'s subject holds (from the log, or
    /// from a caught-up replica when the log cannot tell), let `decide` answer from it or
    /// publish `payload` expecting the subject's last sequence as read, and start again when
    /// another writer got there first or an acknowledgement was lost (`published` then tells
    /// `decide` that the content it finds may be this call's own). `Ok(None)`: published, its
    /// log position recorded in `served`.
    async fn write<T>(
        &self,
        id: &str,
        payload: Vec<u8>,
        deadline: Instant,
        served: &Mutex<Served>,
        decide: impl Fn(Option<Vec<u8>>, bool) -> Result<Step<T>, RouteError>,
    ) -> Result<Option<T>, RouteError> {
        let shards = self.shards();
        let (shard, subject) = (shard_of(id, shards), log_subject(id, shards));
        let mut published = false;
        let mut last = LogError::TimedOut;
        while Instant::now() < deadline {
            let (expected, presence) = match self.presence(&subject, shard).await {
                Ok(p) => p,
                Err(e) => {
                    last = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let stored = match presence {
                Presence::Stored(bytes) => Some(bytes),
                Presence::Absent => None,
                Presence::Unknown { through } => self
                    .stored_as_of(shard, id, through, deadline, served)
                    .await?
                    .map(|r| r.encode())
                    .transpose()?,
            };
            if let Step::Answer(answer) = decide(stored, published)? {
                return Ok(Some(answer));
            }
            match self
                .publish(&subject, payload.clone(), expected, deadline)
                .await
            {
                Ok(Some(position)) => {
                    if let Ok(mut served) = served.lock() {
                        served.log(position);
                    }
                    return Ok(None);
                }
                Ok(None) => {}
                Err(e) => {
                    // It may have been stored: the next round finds out.
                    published = true;
                    last = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Err(last.into())
    }

    /// The record stored under `id`, as of the call's start.
    pub async fn get(
        &self,
        id: &str,
        caller_deadline: Option<Instant>,
    ) -> Result<(Option<Record>, Served), RouteError> {
        abis_engine::store::validate_reference_id(id).map_err(invalid_record)?;
        let deadline = self.deadline(self.config.request_timeout, caller_deadline);
        let shard = shard_of(id, self.shards());
        let served = Mutex::new(Served::default());
        let record = self.stored(shard, id, deadline, &served).await?;
        Ok((record, taken(served)))
    }

    /// 1:1 against the stored record `id`.
    pub async fn verify(
        &self,
        probe: &Probe,
        id: &str,
        caller_deadline: Option<Instant>,
    ) -> Result<(Verification, Served), RouteError> {
        let deadline = self.deadline(self.config.request_timeout, caller_deadline);
        let position = self.log_position(deadline).await?;
        let shard = shard_of(id, self.shards());
        let served = Mutex::new(Served::default());
        let verified = self
            .remote(shard, position, deadline, &served)
            .verify(probe.clone(), id.to_owned())
            .await
            .map_err(|e| route_error(shard, e))?;
        Ok((verified, taken(served)))
    }

    /// 1:1 of two sets of samples (nothing stored): computed by a replica of any shard.
    pub async fn verify_samples(
        &self,
        probe: &Probe,
        reference: &Probe,
        caller_deadline: Option<Instant>,
    ) -> Result<(Verification, Served), RouteError> {
        let deadline = self.deadline(self.config.request_timeout, caller_deadline);
        let shards = self.shards();
        let first = self.next_any.fetch_add(1, Ordering::Relaxed) % shards;
        let mut failed = Vec::new();
        // Try each shard in turn, sharing the budget: any live replica can answer.
        for k in 0..shards {
            let shard = (first + k) % shards;
            let share = deadline.saturating_duration_since(Instant::now()) / (shards - k);
            let served = Mutex::new(Served::default());
            let verified = self
                .remote(shard, 0, Instant::now() + share, &served)
                .verify_samples(probe.clone(), reference.clone())
                .await;
            match verified.map_err(|e| route_error(shard, e)) {
                Err(RouteError::Unavailable { .. }) => failed.push(shard),
                other => return other.map(|v| (v, taken(served))),
            }
        }
        Err(RouteError::Unavailable {
            shards: failed,
            detail: "no replica of any shard answered".into(),
        })
    }

    /// Records in the whole gallery.
    pub async fn count(
        &self,
        caller_deadline: Option<Instant>,
    ) -> Result<(u64, Served), RouteError> {
        let deadline = self.deadline(self.config.request_timeout, caller_deadline);
        let position = self.log_position(deadline).await?;
        let served = Mutex::new(Served::default());
        let calls = (0..self.shards()).map(|shard| {
            let remote = self.remote(shard, position, deadline, &served);
            async move { (shard, remote.count().await) }
        });
        let (mut total, mut missing, mut detail) = (0u64, Vec::new(), String::new());
        for (shard, counted) in futures_util::future::join_all(calls).await {
            match counted {
                Ok(n) => total += n,
                Err(e @ ShardError::Remote(RemoteFailure::Reply(_))) => {
                    return Err(InternalError::Shard { shard, source: e }.into())
                }
                Err(e) => {
                    missing.push(shard);
                    detail = e.to_string();
                }
            }
        }
        if !missing.is_empty() {
            return Err(RouteError::Unavailable {
                shards: missing,
                detail,
            });
        }
        Ok((total, taken(served)))
    }

    /// Searches each probe over the whole cluster; each answer is what one node holding every
    /// record would give, or an error (never a partial answer): plan, call every shard, merge.
    pub async fn identify(
        &self,
        probes: &[(Probe, IdentifyOptions)],
        caller_deadline: Option<Instant>,
    ) -> (Vec<Result<Identified, RouteError>>, Served) {
        if probes.is_empty() {
            return (Vec::new(), Served::default());
        }
        let deadline = self.deadline(self.config.request_timeout, caller_deadline);
        let position = match self.log_position(deadline).await {
            Ok(p) => p,
            Err(e) => {
                return (
                    probes.iter().map(|_| Err(e.clone())).collect(),
                    Served::default(),
                )
            }
        };
        let served = Mutex::new(Served::default());
        let answers = self
            .call_shards(
                probes,
                plan(probes, self.shards()),
                position,
                deadline,
                &served,
            )
            .await;
        let results = probes
            .iter()
            .zip(answers)
            .map(|((_, options), answers)| merge_probe(options, answers))
            .collect();
        (results, taken(served))
    }

    /// Sends each shard its probes of `plan`; returns per probe the answers of its shards, in
    /// shard order.
    async fn call_shards(
        &self,
        probes: &[(Probe, IdentifyOptions)],
        plan: Vec<(u32, Vec<usize>)>,
        position: u64,
        deadline: Instant,
        served: &Mutex<Served>,
    ) -> Vec<Vec<(u32, Result<Identified, ShardError>)>> {
        let calls = plan.into_iter().map(|(shard, index)| {
            let remote = self.remote(shard, position, deadline, served);
            let queries: Vec<_> = index.iter().map(|&i| probes[i].clone()).collect();
            async move { (shard, index, remote.identify_batch(queries).await) }
        });
        let mut per_probe: Vec<Vec<_>> = probes.iter().map(|_| Vec::new()).collect();
        for (shard, index, answers) in futures_util::future::join_all(calls).await {
            for (i, answer) in index.into_iter().zip(answers) {
                per_probe[i].push((shard, answer));
            }
        }
        per_probe
    }
}

fn invalid_record(e: StoreError) -> RouteError {
    RouteError::InvalidRecord {
        defect: e.record_defect(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_names_the_shards() {
        let e = RouteError::Unavailable {
            shards: vec![2, 5],
            detail: "timed out".into(),
        };
        assert_eq!(
            e.to_string(),
            "shard(s) 2, 5 did not answer in time: timed out"
        );
    }

    #[test]
    fn a_probe_restricted_to_some_ids_searches_only_their_shards() {
        let ids = ["a", "b", "c", "d", "e", "f"];
        let only = IdentifyOptions {
            only: Some(ids[..2].iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let probes = vec![
            (Probe::default(), IdentifyOptions::default()),
            (Probe::default(), only),
        ];
        let planned = plan(&probes, 4);
        let searching_1: Vec<u32> = planned
            .iter()
            .filter(|(_, index)| index.contains(&1))
            .map(|(s, _)| *s)
            .collect();
        let mut expected: Vec<u32> = ids[..2].iter().map(|id| shard_of(id, 4)).collect();
        expected.dedup();
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(searching_1, expected);
        assert_eq!(planned.iter().filter(|(_, i)| i.contains(&0)).count(), 4);
    }

    #[test]
    fn a_probe_is_unavailable_when_any_of_its_shards_is() {
        let found = || {
            Ok(Identified {
                candidates: Vec::new(),
                threshold: 0.0,
                searched: 10,
            })
        };
        let gone = |why: &str| Err(RemoteFailure::Unavailable(why.into()).into());
        let e = merge_probe(
            &IdentifyOptions::default(),
            vec![(0, found()), (1, gone("first")), (2, gone("second"))],
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "shard(s) 1, 2 did not answer in time: first");
        let m = merge_probe(
            &IdentifyOptions::default(),
            vec![(0, found()), (1, found())],
        )
        .unwrap();
        assert_eq!(m.searched, 20);
    }
}
