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
//! Identify and IdentifyBatch send one search request per shard (queue group: one replica
//! answers), each shard returns its candidates at or above the threshold for its own size, and
//! the answers are merged at the threshold for the whole gallery ([`merge`](crate::merge)). A
//! shard that does not answer within the request timeout makes the search UNAVAILABLE, naming
//! the shard: never a partial answer. A try that gets no answer within the attempt timeout (a
//! replica killed mid-request) is repeated, and the queue group picks a live replica. Verify
//! and Get go to the id's shard; ReferenceCount sums every shard.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use abis_engine::gallery::{IdentifyOptions, Probe, Verification};
use abis_engine::store::encryption::Keyring;
use abis_engine::store::{InsertOutcome, Record, RecordDefect, StoreError};
use abis_engine::template::decode_native;
use abis_proto::cluster::v1 as pb;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::{Client, Request, RequestErrorKind};
use prost::Message;

use crate::catalog::{Catalog, ClusterSpec, OPEN_PATIENCE};
use crate::entry::{self, Entry};
use crate::error::ClusterError;
use crate::merge::{merge, Merged, ShardAnswer};
use crate::shard::{log_subject, request_subject, shard_of, RequestKind};
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
    /// The write log (stream leader) could not be reached in time.
    #[error("the write log is unavailable: {0}")]
    LogUnavailable(String),
    #[error("{0}")]
    Internal(String),
}

fn list(shards: &[u32]) -> String {
    shards
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which replica served which shard of a call (and the log position of a write), for the
/// audit log: `s0:replica-a s1:replica-c`, `log:1234`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Served(BTreeMap<u32, String>, Option<u64>);

impl Served {
    fn replica(&mut self, shard: u32, node: &str) {
        self.0.insert(shard, node.to_owned());
    }

    fn log(&mut self, position: u64) {
        self.1 = Some(position);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty() && self.1.is_none()
    }

    /// `s<shard>:<node>` per shard, then `log:<position>`.
    pub fn tokens(&self) -> Vec<String> {
        let mut parts: Vec<String> = self.0.iter().map(|(s, n)| format!("s{s}:{n}")).collect();
        if let Some(p) = self.1 {
            parts.push(format!("log:{p}"));
        }
        parts
    }
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tokens().join(" "))
    }
}

/// A shard request that did not give an answer.
enum ShardFailure {
    /// No replica answered in time (the reason of the last try).
    Unavailable(String),
    /// A replica answered with a definite failure.
    Failed(pb::Failure),
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
        &self.catalog.spec
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn node(&self) -> &str {
        &self.config.node
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
        let mut last = String::from("timed out");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RouteError::LogUnavailable(last));
            }
            match tokio::time::timeout(left, self.catalog.last_sequence()).await {
                Ok(Ok(s)) => return Ok(s),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "timed out".into(),
            }
            tokio::time::sleep(Duration::from_millis(100).min(left)).await;
        }
    }

    /// One request to one replica of `shard`, retried (another replica, or the same one later)
    /// until it answers or `deadline` passes.
    async fn shard_call(
        &self,
        kind: RequestKind,
        shard: u32,
        body: pb::shard_request::Body,
        min_position: u64,
        deadline: Instant,
    ) -> Result<pb::ShardReply, ShardFailure> {
        let subject = request_subject(kind, shard);
        let mut last = String::from("timed out");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ShardFailure::Unavailable(last));
            }
            let attempt = left.min(self.config.attempt_timeout);
            let request = pb::ShardRequest {
                min_position,
                // Leave the reply time to travel back within the try.
                wait_ms: (attempt.as_millis() as u64 * 3 / 4).min(u64::from(u32::MAX)) as u32,
                body: Some(body.clone()),
            };
            let sent = self.client.send_request(
                subject.clone(),
                Request::new()
                    .payload(request.encode_to_vec().into())
                    .timeout(Some(attempt)),
            );
            let pause = match tokio::time::timeout(attempt, sent).await {
                Ok(Ok(msg)) => match wire::decode_reply(&msg.payload) {
                    Ok(reply) if reply.shard != shard => {
                        last = "a reply from another shard".into();
                        Duration::from_millis(20)
                    }
                    Ok(reply) => match &reply.body {
                        Some(pb::shard_reply::Body::Failure(f))
                            if f.kind == pb::FailureKind::Behind as i32
                                || f.kind == pb::FailureKind::Unavailable as i32 =>
                        {
                            last = format!("{}: {}", reply.node, f.message);
                            Duration::from_millis(20)
                        }
                        Some(pb::shard_reply::Body::Failure(f)) => {
                            return Err(ShardFailure::Failed(f.clone()))
                        }
                        None => {
                            last = "an empty reply".into();
                            Duration::from_millis(20)
                        }
                        Some(_) => return Ok(reply),
                    },
                    Err(e) => {
                        last = e.to_string();
                        Duration::from_millis(20)
                    }
                },
                Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => {
                    last = "no replica of the shard is serving".into();
                    Duration::from_millis(50)
                }
                Ok(Err(e)) => {
                    last = e.to_string();
                    Duration::from_millis(20)
                }
                Err(_) => {
                    last = "timed out".into();
                    Duration::ZERO
                }
            };
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// What the replicas of `shard` (caught up to its last message) hold under `id`: its
    /// canonical bytes, or `None`.
    async fn stored(
        &self,
        shard: u32,
        id: &str,
        deadline: Instant,
        served: &mut Served,
    ) -> Result<Option<Vec<u8>>, RouteError> {
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
        served: &mut Served,
    ) -> Result<Option<Vec<u8>>, RouteError> {
        let reply = self
            .shard_call(
                RequestKind::Get,
                shard,
                pb::shard_request::Body::Get(pb::GetRequest {
                    reference_id: id.to_owned(),
                }),
                position,
                deadline,
            )
            .await
            .map_err(|f| unavailable(shard, f))?;
        served.replica(shard, &reply.node);
        match reply.body {
            Some(pb::shard_reply::Body::Get(g)) if g.record.is_empty() => Ok(None),
            Some(pb::shard_reply::Body::Get(g)) => {
                let record = Record::decode(&g.record)
                    .map_err(|e| RouteError::Internal(format!("a replica's record: {e}")))?;
                if record.reference_id != id {
                    return Err(RouteError::Internal(
                        "a replica returned another record".into(),
                    ));
                }
                Ok(Some(g.record))
            }
            _ => Err(RouteError::Internal("unexpected reply to a get".into())),
        }
    }

    /// The subject's last message: its sequence and what it says about the id.
    async fn presence(&self, subject: &str, shard: u32) -> Result<(u64, Presence), String> {
        match self
            .catalog
            .stream
            .get_last_raw_message_by_subject(subject)
            .await
        {
            Ok(m) => Ok((
                m.sequence,
                match entry::decode(self.config.keys.as_ref(), subject, &m.payload) {
                    Ok(Entry::Insert { canonical, .. }) => Presence::Stored(canonical),
                    Ok(Entry::Delete(_)) => Presence::Absent,
                    Err(e) if e.is_configuration() => return Err(e.to_string()),
                    Err(e) => {
                        tracing::warn!(shard, position = m.sequence, error = %e, "unreadable log entry");
                        Presence::Unknown {
                            through: m.sequence,
                        }
                    }
                },
            )),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                let trimmed = self.catalog.trim(shard).await.map_err(|e| e.to_string())?;
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
            Err(e) => Err(e.to_string()),
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
    ) -> Result<Option<u64>, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, self.publish_once(subject, payload, expected))
            .await
            .unwrap_or_else(|_| Err("no acknowledgement in time".into()))
    }

    async fn publish_once(
        &self,
        subject: &str,
        payload: Vec<u8>,
        expected: u64,
    ) -> Result<Option<u64>, String> {
        let ack = self
            .catalog
            .js
            .send_publish(
                subject.to_owned(),
                PublishMessage::build()
                    .payload(payload.into())
                    .expected_last_subject_sequence(expected),
            )
            .await
            .map_err(|e| e.to_string())?;
        match ack.await {
            Ok(a) => Ok(Some(a.sequence)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
            Err(e) => Err(e.to_string()),
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
        let subject = log_subject(&id, self.catalog.spec.shards);
        let payload = entry::encode_insert(self.config.keys.as_ref(), &subject, &canonical)
            .map_err(|e| RouteError::Internal(e.to_string()))?;
        self.check_size(payload.len())?;
        let deadline = self.deadline(self.config.write_timeout, caller_deadline);
        let mut served = Served::default();
        let outcome = self
            .write(
                &id,
                payload,
                deadline,
                &mut served,
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
        Ok((outcome.unwrap_or(InsertOutcome::Inserted), served))
    }

    /// Deletes a record (see the module docs).
    pub async fn delete(
        &self,
        id: &str,
        caller_deadline: Option<Instant>,
    ) -> Result<Served, RouteError> {
        abis_engine::store::validate_reference_id(id).map_err(invalid_record)?;
        let subject = log_subject(id, self.catalog.spec.shards);
        let payload = entry::encode_delete(self.config.keys.as_ref(), &subject, id)
            .map_err(|e| RouteError::Internal(e.to_string()))?;
        let deadline = self.deadline(self.config.write_timeout, caller_deadline);
        let mut served = Served::default();
        self.write(
            id,
            payload,
            deadline,
            &mut served,
            |stored, published| match (stored, published) {
                (Some(_), _) => Ok(Step::Publish),
                (None, true) => Ok(Step::Answer(())),
                (None, false) => Err(RouteError::NotFound),
            },
        )
        .await?;
        Ok(served)
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
        served: &mut Served,
        decide: impl Fn(Option<Vec<u8>>, bool) -> Result<Step<T>, RouteError>,
    ) -> Result<Option<T>, RouteError> {
        let shards = self.catalog.spec.shards;
        let (shard, subject) = (shard_of(id, shards), log_subject(id, shards));
        let mut published = false;
        let mut last = String::from("timed out");
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
                Presence::Unknown { through } => {
                    self.stored_as_of(shard, id, through, deadline, served)
                        .await?
                }
            };
            if let Step::Answer(answer) = decide(stored, published)? {
                return Ok(Some(answer));
            }
            match self
                .publish(&subject, payload.clone(), expected, deadline)
                .await
            {
                Ok(Some(position)) => {
                    served.log(position);
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
        Err(RouteError::LogUnavailable(last))
    }

    /// The record stored under `id`, as of the call's start.
    pub async fn get(
        &self,
        id: &str,
        caller_deadline: Option<Instant>,
    ) -> Result<(Option<Record>, Served), RouteError> {
        abis_engine::store::validate_reference_id(id).map_err(invalid_record)?;
        let deadline = self.deadline(self.config.request_timeout, caller_deadline);
        let shard = shard_of(id, self.catalog.spec.shards);
        let mut served = Served::default();
        let record = self
            .stored(shard, id, deadline, &mut served)
            .await?
            .map(|bytes| Record::decode(&bytes))
            .transpose()
            .map_err(|e| RouteError::Internal(e.to_string()))?;
        Ok((record, served))
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
        let shard = shard_of(id, self.catalog.spec.shards);
        let body = pb::shard_request::Body::Verify(pb::VerifyRequest {
            probe: Some(wire::probe_to_wire(probe)),
            reference: Some(pb::verify_request::Reference::ReferenceId(id.to_owned())),
        });
        self.verify_on(shard, body, position, deadline).await
    }

    /// 1:1 of two sets of samples (nothing stored): computed by a replica of any shard.
    pub async fn verify_samples(
        &self,
        probe: &Probe,
        reference: &Probe,
        caller_deadline: Option<Instant>,
    ) -> Result<(Verification, Served), RouteError> {
        let deadline = self.deadline(self.config.request_timeout, caller_deadline);
        let shards = self.catalog.spec.shards;
        let body = pb::shard_request::Body::Verify(pb::VerifyRequest {
            probe: Some(wire::probe_to_wire(probe)),
            reference: Some(pb::verify_request::Reference::Samples(wire::probe_to_wire(
                reference,
            ))),
        });
        let first = self.next_any.fetch_add(1, Ordering::Relaxed) % shards;
        let mut failed = Vec::new();
        // Try each shard in turn, sharing the budget: any live replica can answer.
        for k in 0..shards {
            let shard = (first + k) % shards;
            let left = deadline.saturating_duration_since(Instant::now());
            let share = left / (shards - k);
            match self
                .verify_on(shard, body.clone(), 0, Instant::now() + share)
                .await
            {
                Err(RouteError::Unavailable { .. }) => failed.push(shard),
                other => return other,
            }
        }
        Err(RouteError::Unavailable {
            shards: failed,
            detail: "no replica of any shard answered".into(),
        })
    }

    async fn verify_on(
        &self,
        shard: u32,
        body: pb::shard_request::Body,
        position: u64,
        deadline: Instant,
    ) -> Result<(Verification, Served), RouteError> {
        let reply = self
            .shard_call(RequestKind::Verify, shard, body, position, deadline)
            .await
            .map_err(|f| unavailable(shard, f))?;
        let mut served = Served::default();
        served.replica(shard, &reply.node);
        match reply.body {
            Some(pb::shard_reply::Body::Verify(v)) => Ok((
                wire::verification_from_wire(v).map_err(|e| RouteError::Internal(e.to_string()))?,
                served,
            )),
            _ => Err(RouteError::Internal("unexpected reply to a verify".into())),
        }
    }

    /// Records in the whole gallery.
    pub async fn count(
        &self,
        caller_deadline: Option<Instant>,
    ) -> Result<(u64, Served), RouteError> {
        let deadline = self.deadline(self.config.request_timeout, caller_deadline);
        let position = self.log_position(deadline).await?;
        let shards = self.catalog.spec.shards;
        let calls = (0..shards).map(|shard| async move {
            let r = self
                .shard_call(
                    RequestKind::Count,
                    shard,
                    pb::shard_request::Body::Count(pb::CountRequest {}),
                    position,
                    deadline,
                )
                .await;
            (shard, r)
        });
        let mut served = Served::default();
        let mut total = 0u64;
        let mut missing = Vec::new();
        let mut detail = String::new();
        for (shard, r) in futures_util::future::join_all(calls).await {
            match r {
                Ok(reply) => match reply.body {
                    Some(pb::shard_reply::Body::Count(c)) => {
                        served.replica(shard, &reply.node);
                        total += c.records;
                    }
                    _ => return Err(RouteError::Internal("unexpected reply to a count".into())),
                },
                Err(f) => {
                    missing.push(shard);
                    detail = failure_text(f);
                }
            }
        }
        if !missing.is_empty() {
            return Err(RouteError::Unavailable {
                shards: missing,
                detail,
            });
        }
        Ok((total, served))
    }

    /// Searches each probe over the whole cluster; each answer is what one node holding every
    /// record would give, or an error (never a partial answer).
    pub async fn identify(
        &self,
        probes: &[(Probe, IdentifyOptions)],
        caller_deadline: Option<Instant>,
    ) -> (Vec<Result<Merged, RouteError>>, Served) {
        let mut served = Served::default();
        if probes.is_empty() {
            return (Vec::new(), served);
        }
        let deadline = self.deadline(self.config.request_timeout, caller_deadline);
        let position = match self.log_position(deadline).await {
            Ok(p) => p,
            Err(e) => return (probes.iter().map(|_| Err(e.clone())).collect(), served),
        };
        let shards = self.catalog.spec.shards;
        let wired: Vec<pb::Probe> = probes.iter().map(|(p, _)| wire::probe_to_wire(p)).collect();
        // Per shard: its requests, each a list of (query index, query), cut so that a request
        // and its reply stay well under NATS's message limit.
        let mut calls = Vec::new();
        let mut sent: Vec<Vec<u32>> = probes.iter().map(|_| Vec::new()).collect();
        for shard in 0..shards {
            let mut batch: Vec<(usize, pb::Query)> = Vec::new();
            let mut bytes = 0usize;
            for (i, (wp, (_, options))) in wired.iter().zip(probes).enumerate() {
                let Some(q) = wire::query_to_wire(wp, options, shard, shards) else {
                    continue;
                };
                let cost = q.encoded_len() + q.max_results as usize * REPLY_BYTES_PER_RESULT;
                if !batch.is_empty() && bytes + cost > REQUEST_BUDGET {
                    calls.push((shard, std::mem::take(&mut batch)));
                    bytes = 0;
                }
                bytes += cost;
                sent[i].push(shard);
                batch.push((i, q));
            }
            if !batch.is_empty() {
                calls.push((shard, batch));
            }
        }
        let futures = calls.into_iter().map(|(shard, batch)| async move {
            let (index, queries): (Vec<usize>, Vec<pb::Query>) = batch.into_iter().unzip();
            let r = self
                .shard_call(
                    RequestKind::Search,
                    shard,
                    pb::shard_request::Body::Search(pb::SearchRequest { queries }),
                    position,
                    deadline,
                )
                .await;
            (shard, index, r)
        });
        // Per query: the shards' answers, or the first failure.
        let mut answers: Vec<Result<Vec<ShardAnswer>, RouteError>> =
            probes.iter().map(|_| Ok(Vec::new())).collect();
        let mut missing: BTreeMap<u32, String> = BTreeMap::new();
        for (shard, index, r) in futures_util::future::join_all(futures).await {
            let reply = match r {
                Ok(reply) => reply,
                Err(ShardFailure::Unavailable(why)) => {
                    missing.insert(shard, why);
                    continue;
                }
                Err(ShardFailure::Failed(f)) => {
                    let e = route_failure(f);
                    for i in index {
                        answers[i] = Err(e.clone());
                    }
                    continue;
                }
            };
            served.replica(shard, &reply.node);
            let results = match reply.body {
                Some(pb::shard_reply::Body::Search(s)) if s.results.len() == index.len() => {
                    s.results
                }
                _ => {
                    let e = RouteError::Internal(format!("shard {shard}: unexpected search reply"));
                    for i in index {
                        answers[i] = Err(e.clone());
                    }
                    continue;
                }
            };
            for (i, result) in index.into_iter().zip(results) {
                let Ok(list) = &mut answers[i] else {
                    continue;
                };
                match result.outcome {
                    Some(pb::query_result::Outcome::Found(found)) => {
                        let candidates = found
                            .candidates
                            .into_iter()
                            .enumerate()
                            .map(|(k, c)| wire::candidate_from_wire(&format!("candidates[{k}]"), c))
                            .collect::<Result<Vec<_>, _>>();
                        match candidates {
                            Ok(candidates) => list.push(ShardAnswer {
                                candidates,
                                searched: found.searched,
                            }),
                            Err(e) => answers[i] = Err(RouteError::Internal(e.to_string())),
                        }
                    }
                    Some(pb::query_result::Outcome::Failure(f)) => {
                        answers[i] = Err(route_failure(f))
                    }
                    None => answers[i] = Err(RouteError::Internal("an empty search result".into())),
                }
            }
        }
        let results = answers
            .into_iter()
            .zip(probes)
            .zip(sent)
            .map(|((a, (_, options)), sent)| {
                let absent: Vec<u32> = sent
                    .into_iter()
                    .filter(|s| missing.contains_key(s))
                    .collect();
                if let Some(first) = absent.first() {
                    return Err(RouteError::Unavailable {
                        detail: missing.get(first).cloned().unwrap_or_default(),
                        shards: absent,
                    });
                }
                a.map(|list| merge(list, options.target_fpir, options.max_results))
            })
            .collect();
        (results, served)
    }
}

/// A search request's budget for its own bytes and its reply's (NATS's default message limit
/// is 1 MiB).
const REQUEST_BUDGET: usize = 512 << 10;
/// Reply bytes set aside per result a query may return (a candidate is well under this).
const REPLY_BYTES_PER_RESULT: usize = 160;

fn invalid_record(e: StoreError) -> RouteError {
    RouteError::InvalidRecord {
        defect: e.record_defect(),
        message: e.to_string(),
    }
}

fn failure_text(f: ShardFailure) -> String {
    match f {
        ShardFailure::Unavailable(why) => why,
        ShardFailure::Failed(f) => f.message,
    }
}

fn unavailable(shard: u32, f: ShardFailure) -> RouteError {
    match f {
        ShardFailure::Unavailable(detail) => RouteError::Unavailable {
            shards: vec![shard],
            detail,
        },
        ShardFailure::Failed(f) => route_failure(f),
    }
}

fn route_failure(f: pb::Failure) -> RouteError {
    match pb::FailureKind::try_from(f.kind).unwrap_or(pb::FailureKind::Unspecified) {
        pb::FailureKind::NotFound => RouteError::NotFound,
        pb::FailureKind::EmptyProbe => RouteError::EmptyProbe,
        pb::FailureKind::Invalid => RouteError::Invalid(f.message),
        _ => RouteError::Internal(f.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_names_shards_and_log_positions() {
        let mut s = Served::default();
        assert!(s.is_empty());
        s.replica(1, "replica-c");
        s.replica(0, "replica-a");
        assert_eq!(s.to_string(), "s0:replica-a s1:replica-c");
        s.log(42);
        assert_eq!(s.to_string(), "s0:replica-a s1:replica-c log:42");
        let e = RouteError::Unavailable {
            shards: vec![2, 5],
            detail: "timed out".into(),
        };
        assert_eq!(
            e.to_string(),
            "shard(s) 2, 5 did not answer in time: timed out"
        );
    }
}
