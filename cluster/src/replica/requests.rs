//! Answering the shard's requests: join the shard's queue groups once caught up and prepared,
//! make each request wait until the log is applied as far as it asks (read-your-writes, see
//! the [replica](super) docs), then run it on the local gallery through the shard seam
//! ([`GalleryShard`]) and map the answer to the wire.

use std::sync::Arc;
use std::time::{Duration, Instant};

use abis_proto::cluster::v1 as pb;
use async_nats::Subscriber;
use prost::Message as _;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::StreamExt;

use super::shared::Shared;
use crate::bootstrap;
use crate::error::ClusterError;
use crate::gallery_shard::{FailureKind, GalleryShard, ShardError};
use crate::shard::{queue_group, request_subject, RequestKind};
use crate::wire;

/// Longest a request may make a replica wait for the log.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Applies up to the shard's last message as of now, prepares the records for matching, then
/// joins the shard's queue groups and answers requests.
pub(crate) async fn join_when_caught_up(
    shared: Arc<Shared>,
    serving: watch::Sender<bool>,
) -> Result<(), ClusterError> {
    let target = loop {
        match shared.catalog.shard_last(shared.config.shard).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, "shard's last message not read; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let mut applied = shared.applied.subscribe();
    let _ = applied.wait_for(|p| *p >= target).await;
    // Searches prepare what is left if this fails: serve anyway.
    shared.shard.prepare("replica").await;
    let mut subscriptions = JoinSet::new();
    for kind in RequestKind::ALL {
        let subject = request_subject(kind, shared.config.shard);
        let sub = shared
            .client
            .queue_subscribe(subject, queue_group(shared.config.shard))
            .await
            .map_err(|e| ClusterError::nats("joining a queue group", e))?;
        subscriptions.spawn(answer(Arc::clone(&shared), kind, sub));
    }
    // Make sure the servers know the subscriptions before saying so.
    shared
        .client
        .flush()
        .await
        .map_err(|e| ClusterError::nats("flushing subscriptions", e))?;
    let _ = serving.send(true);
    while let Some(r) = subscriptions.join_next().await {
        if let Ok(Err(e)) = r {
            return Err(e);
        }
    }
    Ok(())
}

/// Answers the requests of one subject, each in its own task.
async fn answer(
    shared: Arc<Shared>,
    kind: RequestKind,
    mut sub: Subscriber,
) -> Result<(), ClusterError> {
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply.clone() else {
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let body = match kind {
                RequestKind::Bootstrap => match bootstrap::offer(&shared, &msg.payload).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, "bootstrap request not served");
                        return;
                    }
                },
                _ => shard_reply(&shared, &msg.payload).await.encode_to_vec(),
            };
            if let Err(e) = shared.client.publish(reply, body.into()).await {
                tracing::warn!(error = %e, "reply not sent");
            }
        });
    }
    Ok(())
}

/// Whether the replica has applied every message of its shard up to `min_position`, waiting
/// at most `wait` (see the module docs).
async fn caught_up(shared: &Shared, min_position: u64, wait: Duration) -> bool {
    let mut applied = shared.applied.subscribe();
    if *applied.borrow() >= min_position {
        return true;
    }
    let deadline = Instant::now() + wait;
    let target =
        match tokio::time::timeout(wait, shared.catalog.shard_last(shared.config.shard)).await {
            Ok(Ok(last)) => last.min(min_position),
            // Without the leader the shard's last message is unknown: only a position at or past
            // the router's proves the replica has everything.
            _ => min_position,
        };
    let left = deadline.saturating_duration_since(Instant::now());
    let reached = tokio::time::timeout(left, applied.wait_for(|p| *p >= target)).await;
    reached.is_ok_and(|r| r.is_ok())
}

fn failed(kind: FailureKind, message: impl Into<String>) -> pb::shard_reply::Body {
    pb::shard_reply::Body::Failure(wire::failure(kind, message))
}

/// The reply to one request (protocol: decode, wait for the log, run).
async fn shard_reply(shared: &Shared, payload: &[u8]) -> pb::ShardReply {
    let body = match wire::decode_request(payload) {
        Err(e) => failed(FailureKind::Invalid, e.to_string()),
        Ok(req) => {
            let wait = Duration::from_millis(u64::from(req.wait_ms)).min(MAX_WAIT);
            if !caught_up(shared, req.min_position, wait).await {
                pb::shard_reply::Body::Failure(pb::Failure {
                    kind: pb::FailureKind::Behind as i32,
                    message: format!(
                        "shard {} has not applied the log that far",
                        shared.config.shard
                    ),
                })
            } else {
                match req.body {
                    None => failed(FailureKind::Invalid, "request without a body"),
                    Some(body) => run_request(shared, body, wait).await,
                }
            }
        }
    };
    pb::ShardReply {
        node: shared.config.node.clone(),
        shard: shared.config.shard,
        applied: *shared.applied.borrow(),
        body: Some(body),
    }
}

/// Runs one request on the local gallery.
async fn run_request(
    shared: &Shared,
    body: pb::shard_request::Body,
    wait: Duration,
) -> pb::shard_reply::Body {
    use pb::shard_request::Body as B;
    let shard = &shared.shard;
    match body {
        B::Count(_) => match shard.count().await {
            Ok(records) => pb::shard_reply::Body::Count(pb::CountReply { records }),
            Err(e) => pb::shard_reply::Body::Failure(wire::failure_to_wire(&e)),
        },
        B::Get(g) => get(shared, g.reference_id).await,
        B::Verify(v) => verify(shared, v).await,
        B::Search(s) => search(shared, s, wait).await,
    }
}

async fn get(shared: &Shared, id: String) -> pb::shard_reply::Body {
    let record = match shared.shard.get(id).await {
        Ok(None) => Vec::new(),
        Ok(Some(record)) => match record.encode() {
            Ok(bytes) => bytes,
            Err(e) => return failed(FailureKind::Internal, e.to_string()),
        },
        Err(e) => return pb::shard_reply::Body::Failure(wire::failure_to_wire(&e)),
    };
    pb::shard_reply::Body::Get(pb::GetReply { record })
}

async fn verify(shared: &Shared, v: pb::VerifyRequest) -> pb::shard_reply::Body {
    let probe = match v.probe.map(|p| wire::probe_from_wire("probe", p)) {
        Some(Ok(p)) => p,
        Some(Err(e)) => return failed(FailureKind::Invalid, e.to_string()),
        None => return failed(FailureKind::Invalid, "probe is missing"),
    };
    let verified = match v.reference {
        Some(pb::verify_request::Reference::ReferenceId(id)) => {
            shared.shard.verify(probe, id).await
        }
        Some(pb::verify_request::Reference::Samples(p)) => {
            match wire::probe_from_wire("samples", p) {
                Ok(other) => shared.shard.verify_samples(probe, other).await,
                Err(e) => return failed(FailureKind::Invalid, e.to_string()),
            }
        }
        None => return failed(FailureKind::Invalid, "reference is missing"),
    };
    match verified {
        Ok(v) => pb::shard_reply::Body::Verify(wire::verification_to_wire(&v)),
        Err(e) => pb::shard_reply::Body::Failure(wire::failure_to_wire(&e)),
    }
}

/// A search: the valid queries run as one batch (at most `max_searches` at once on this
/// replica), each invalid one answers with its own failure.
async fn search(shared: &Shared, s: pb::SearchRequest, wait: Duration) -> pb::shard_reply::Body {
    if s.queries.len() > wire::MAX_QUERIES {
        return failed(FailureKind::Invalid, "too many queries");
    }
    let Ok(Ok(_permit)) = tokio::time::timeout(
        wait.max(Duration::from_millis(1)),
        shared.searches.acquire(),
    )
    .await
    else {
        return failed(FailureKind::Unavailable, "replica busy");
    };
    let checked: Vec<_> = s
        .queries
        .into_iter()
        .enumerate()
        .map(|(i, q)| wire::query_from_wire(&format!("queries[{i}]"), q))
        .collect();
    let valid: Vec<_> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok().cloned())
        .collect();
    let mut searched = shared.shard.identify_batch(valid).await.into_iter();
    let results = checked
        .into_iter()
        .map(|c| match c {
            Err(e) => pb::QueryResult {
                outcome: Some(pb::query_result::Outcome::Failure(wire::failure(
                    FailureKind::Invalid,
                    e.to_string(),
                ))),
            },
            Ok(_) => wire::found_to_wire(searched.next().unwrap_or(Err(ShardError::Task))),
        })
        .collect();
    pb::shard_reply::Body::Search(pb::SearchReply { results })
}
