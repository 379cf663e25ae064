//! A shard of the cluster seen from a router ([`GalleryShard`] over NATS request-reply): each
//! call goes to the shard's queue group, where one replica answers.
//!
//! Three layers, top to bottom:
//! - **operations** (the trait): a typed request in, a typed answer out (proto mapping in
//!   [`wire`]); a search is cut into requests small enough for NATS's message limit;
//! - **retries** ([`RemoteShard::call`]): one request, tried again (another replica, or the same
//!   one later) until it answers or the call's deadline passes;
//! - **protocol** ([`judge`]): what one reply means — an answer, a definite failure, or a reason
//!   to try again (a replica behind the log or busy, a reply from another shard).
//!
//! A replica answers only once it has applied its shard's log up to `min_position` (the log's
//! last sequence when the router's call began: read-your-writes, see [`replica`](crate::replica)).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use abis_engine::gallery::{IdentifyOptions, Probe, Verification};
use abis_engine::store::Record;
use abis_proto::cluster::v1 as pb;
use async_nats::{Client, Request, RequestErrorKind};
use prost::Message;

use crate::gallery_shard::{GalleryShard, Identified, RemoteFailure, ShardError};
use crate::served::Served;
use crate::shard::{request_subject, RequestKind};
use crate::wire;

/// A search request's budget for its own bytes and its reply's (NATS's default message limit
/// is 1 MiB).
const REQUEST_BUDGET: usize = 512 << 10;
/// Reply bytes set aside per result a query may return (a candidate is well under this).
const REPLY_BYTES_PER_RESULT: usize = 160;

/// One shard, for one call of a router.
pub struct RemoteShard<'a> {
    pub(crate) client: &'a Client,
    pub(crate) shard: u32,
    pub(crate) shards: u32,
    /// The replica must have applied the shard's log through this position.
    pub(crate) min_position: u64,
    /// One try: a replica killed mid-request costs this much before another one is asked.
    pub(crate) attempt_timeout: Duration,
    pub(crate) deadline: Instant,
    /// Who answered, for the call's audit entry.
    pub(crate) served: &'a Mutex<Served>,
}

/// What one try gave.
enum Attempt {
    Answer(pb::ShardReply),
    Failed(RemoteFailure),
    /// Try again after `pause`; `why` is reported if no later try answers.
    Retry {
        why: String,
        pause: Duration,
    },
}

/// What a reply means (see the module docs).
fn judge(shard: u32, payload: &[u8]) -> Attempt {
    let retry = |why: String| Attempt::Retry {
        why,
        pause: Duration::from_millis(20),
    };
    let reply = match wire::decode_reply(payload) {
        Ok(reply) => reply,
        Err(e) => return retry(e.to_string()),
    };
    if reply.shard != shard {
        return retry("a reply from another shard".into());
    }
    match &reply.body {
        Some(pb::shard_reply::Body::Failure(f))
            if f.kind == pb::FailureKind::Behind as i32
                || f.kind == pb::FailureKind::Unavailable as i32 =>
        {
            retry(format!("{}: {}", reply.node, f.message))
        }
        Some(pb::shard_reply::Body::Failure(f)) => Attempt::Failed(wire::failure_from_wire(f)),
        None => retry("an empty reply".into()),
        Some(_) => Attempt::Answer(reply),
    }
}

impl RemoteShard<'_> {
    /// One request to one replica of the shard, retried until it answers or the deadline
    /// passes. Notes the replica that answered.
    async fn call(
        &self,
        kind: RequestKind,
        body: pb::shard_request::Body,
    ) -> Result<pb::shard_reply::Body, RemoteFailure> {
        let subject = request_subject(kind, self.shard);
        let mut last = String::from("timed out");
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RemoteFailure::Unavailable(last));
            }
            let attempt = left.min(self.attempt_timeout);
            match self.attempt(&subject, &body, attempt).await {
                Attempt::Answer(reply) => {
                    if let Ok(mut served) = self.served.lock() {
                        served.replica(self.shard, &reply.node);
                    }
                    return reply.body.ok_or_else(|| self.unusable("an empty reply"));
                }
                Attempt::Failed(f) => return Err(f),
                Attempt::Retry { why, pause } => {
                    last = why;
                    let left = self.deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(pause.min(left)).await;
                }
            }
        }
    }

    /// One try, waiting at most `attempt` (transport).
    async fn attempt(
        &self,
        subject: &str,
        body: &pb::shard_request::Body,
        attempt: Duration,
    ) -> Attempt {
        let request = pb::ShardRequest {
            min_position: self.min_position,
            // Leave the reply time to travel back within the try.
            wait_ms: (attempt.as_millis() as u64 * 3 / 4).min(u64::from(u32::MAX)) as u32,
            body: Some(body.clone()),
        };
        let sent = self.client.send_request(
            subject.to_owned(),
            Request::new()
                .payload(request.encode_to_vec().into())
                .timeout(Some(attempt)),
        );
        match tokio::time::timeout(attempt, sent).await {
            Ok(Ok(msg)) => judge(self.shard, &msg.payload),
            Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => Attempt::Retry {
                why: "no replica of the shard is serving".into(),
                pause: Duration::from_millis(50),
            },
            Ok(Err(e)) => Attempt::Retry {
                why: e.to_string(),
                pause: Duration::from_millis(20),
            },
            Err(_) => Attempt::Retry {
                why: "timed out".into(),
                pause: Duration::ZERO,
            },
        }
    }

    fn unusable(&self, what: impl Into<String>) -> RemoteFailure {
        RemoteFailure::Reply(what.into())
    }

    /// The queries of a search as requests that stay well under NATS's message limit: per
    /// request, the queries' positions in `queries` and the queries themselves.
    fn cut(&self, queries: &[(Probe, IdentifyOptions)]) -> Vec<(Vec<usize>, Vec<pb::Query>)> {
        let mut requests = Vec::new();
        let (mut index, mut batch, mut bytes) = (Vec::new(), Vec::new(), 0usize);
        for (i, (probe, options)) in queries.iter().enumerate() {
            let wired = wire::probe_to_wire(probe);
            let Some(q) = wire::query_to_wire(&wired, options, self.shard, self.shards) else {
                continue;
            };
            let cost = q.encoded_len() + q.max_results as usize * REPLY_BYTES_PER_RESULT;
            if !batch.is_empty() && bytes + cost > REQUEST_BUDGET {
                requests.push((std::mem::take(&mut index), std::mem::take(&mut batch)));
                bytes = 0;
            }
            bytes += cost;
            index.push(i);
            batch.push(q);
        }
        if !batch.is_empty() {
            requests.push((index, batch));
        }
        requests
    }

    /// One search request: an answer per query, or one failure for all of them.
    async fn search(
        &self,
        queries: Vec<pb::Query>,
    ) -> Result<Vec<Result<Identified, RemoteFailure>>, RemoteFailure> {
        let n = queries.len();
        let body = pb::shard_request::Body::Search(pb::SearchRequest { queries });
        match self.call(RequestKind::Search, body).await? {
            pb::shard_reply::Body::Search(s) if s.results.len() == n => Ok(s
                .results
                .into_iter()
                .map(|r| {
                    wire::found_from_wire(r).unwrap_or_else(|e| Err(self.unusable(e.to_string())))
                })
                .collect()),
            _ => Err(self.unusable("unexpected search reply")),
        }
    }

    async fn verify_with(&self, request: pb::VerifyRequest) -> Result<Verification, ShardError> {
        match self
            .call(
                RequestKind::Verify,
                pb::shard_request::Body::Verify(request),
            )
            .await?
        {
            pb::shard_reply::Body::Verify(v) => {
                wire::verification_from_wire(v).map_err(|e| self.unusable(e.to_string()).into())
            }
            _ => Err(self.unusable("unexpected reply to a verify").into()),
        }
    }
}

impl GalleryShard for RemoteShard<'_> {
    async fn identify_batch(
        &self,
        queries: Vec<(Probe, IdentifyOptions)>,
    ) -> Vec<Result<Identified, ShardError>> {
        let requests = self.cut(&queries);
        // A query with nothing to search here (its restricting list names no id of the shard).
        let mut answers: Vec<Result<Identified, ShardError>> = queries
            .iter()
            .map(|_| {
                Ok(Identified {
                    candidates: Vec::new(),
                    threshold: 0.0,
                    searched: 0,
                })
            })
            .collect();
        let calls = requests
            .into_iter()
            .map(|(index, batch)| async move { (index, self.search(batch).await) });
        for (index, result) in futures_util::future::join_all(calls).await {
            match result {
                Ok(found) => {
                    for (i, r) in index.into_iter().zip(found) {
                        answers[i] = r.map_err(ShardError::from);
                    }
                }
                Err(f) => {
                    for i in index {
                        answers[i] = Err(f.clone().into());
                    }
                }
            }
        }
        answers
    }

    async fn verify(&self, probe: Probe, id: String) -> Result<Verification, ShardError> {
        self.verify_with(pb::VerifyRequest {
            probe: Some(wire::probe_to_wire(&probe)),
            reference: Some(pb::verify_request::Reference::ReferenceId(id)),
        })
        .await
    }

    async fn verify_samples(
        &self,
        probe: Probe,
        reference: Probe,
    ) -> Result<Verification, ShardError> {
        self.verify_with(pb::VerifyRequest {
            probe: Some(wire::probe_to_wire(&probe)),
            reference: Some(pb::verify_request::Reference::Samples(wire::probe_to_wire(
                &reference,
            ))),
        })
        .await
    }

    async fn get(&self, id: String) -> Result<Option<Record>, ShardError> {
        let body = pb::shard_request::Body::Get(pb::GetRequest {
            reference_id: id.clone(),
        });
        match self.call(RequestKind::Get, body).await? {
            pb::shard_reply::Body::Get(g) if g.record.is_empty() => Ok(None),
            pb::shard_reply::Body::Get(g) => {
                let record = Record::decode(&g.record)
                    .map_err(|e| self.unusable(format!("a replica's record: {e}")))?;
                if record.reference_id != id {
                    return Err(self.unusable("a replica returned another record").into());
                }
                Ok(Some(record))
            }
            _ => Err(self.unusable("unexpected reply to a get").into()),
        }
    }

    async fn count(&self) -> Result<u64, ShardError> {
        let body = pb::shard_request::Body::Count(pb::CountRequest {});
        match self.call(RequestKind::Count, body).await? {
            pb::shard_reply::Body::Count(c) => Ok(c.records),
            _ => Err(self.unusable("unexpected reply to a count").into()),
        }
    }
}
