//! Reading the shard's log and applying it: an ordered consumer from the replica's position
//! (recreated from the last position delivered when it fails or stalls), and batches applied in
//! stream order, one group commit each.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use abis_engine::store::{ReplicatedOp, ReplicatedOutcome};
use async_nats::jetstream::consumer::push::{self, Ordered};
use async_nats::jetstream::consumer::DeliverPolicy;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::shared::Shared;
use crate::entry::{self, Entry};
use crate::error::ClusterError;
use crate::shard::{log_filter, log_subject};

/// One log message as the consumer delivered it.
pub(crate) struct Delivered {
    position: u64,
    subject: String,
    payload: bytes::Bytes,
    /// Messages of the shard the server had not delivered yet.
    pending: u64,
}

/// A consumer silent this long is asked about (is the shard ahead of it?)...
const QUIET: Duration = Duration::from_secs(1);
/// ...and recreated when the shard has been ahead of it for this long.
const STALLED: Duration = Duration::from_secs(2);

/// Delivers the shard's log messages from `start` on, in order, recreating the consumer after
/// an error from the last position delivered.
pub(crate) async fn read_log(
    shared: Arc<Shared>,
    start: u64,
    tx: mpsc::Sender<Delivered>,
) -> Result<(), ClusterError> {
    let mut next = start;
    loop {
        match consumer(&shared, next).await {
            Err(e) => tracing::warn!(shard = shared.config.shard, error = %e, "log consumer"),
            Ok(messages) => {
                if !deliver(&shared, messages, &mut next, &tx).await {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// An ordered consumer of the shard's subjects from `next`.
async fn consumer(shared: &Shared, next: u64) -> Result<Ordered, String> {
    let created = shared
        .catalog
        .stream()
        .create_consumer(push::OrderedConfig {
            deliver_subject: shared.client.new_inbox(),
            filter_subject: log_filter(shared.config.shard),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: next,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    created.messages().await.map_err(|e| e.to_string())
}

/// Sends what `messages` delivers until it fails or stalls (`true`: make a new consumer) or the
/// applier is gone (`false`).
async fn deliver(
    shared: &Shared,
    mut messages: Ordered,
    next: &mut u64,
    tx: &mpsc::Sender<Delivered>,
) -> bool {
    let mut stalled_since: Option<Instant> = None;
    loop {
        let m = match tokio::time::timeout(QUIET, messages.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => {
                tracing::warn!(shard = shared.config.shard, error = %e, "log consumer");
                return true;
            }
            Ok(None) => return true,
            Err(_) => {
                if stalled(shared, *next, &mut stalled_since).await {
                    return true;
                }
                continue;
            }
        };
        stalled_since = None;
        let Ok((position, pending)) = m.info().map(|i| (i.stream_sequence, i.pending)) else {
            continue;
        };
        let d = Delivered {
            position,
            subject: m.message.subject.to_string(),
            payload: m.message.payload.clone(),
            pending,
        };
        if tx.send(d).await.is_err() {
            return false;
        }
        *next = position + 1;
    }
}

/// After a quiet second: whether the consumer has stalled. Quiet means nothing new, or a
/// consumer that died with its NATS server (the client would notice only after two missed 5 s
/// heartbeats); the stream leader knows whether the shard has more.
async fn stalled(shared: &Shared, next: u64, since: &mut Option<Instant>) -> bool {
    match shared.catalog.shard_last(shared.config.shard).await {
        Ok(last) if last >= next => {
            if since.get_or_insert_with(Instant::now).elapsed() >= STALLED {
                tracing::warn!(
                    shard = shared.config.shard,
                    "log consumer stalled behind the stream: recreating it"
                );
                return true;
            }
        }
        Ok(_) => *since = None,
        Err(_) => {}
    }
    false
}

/// Applies delivered messages in batches (one group commit each).
pub(crate) async fn apply_log(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Delivered>,
) -> Result<(), ClusterError> {
    let max = shared.config.max_batch.max(1);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        let pending = batch.last().map_or(0, |d| d.pending);
        let ops = decode_batch(&shared, batch)?;
        let outcomes = shared
            .shard
            .apply(ops)
            .await
            .map_err(|source| ClusterError::Gallery {
                path: shared.config.gallery.dir.clone(),
                source,
            })?;
        report_conflicts(&shared, &outcomes);
        shared.pending.store(pending, Ordering::Relaxed);
        let _ = shared
            .applied
            .send(shared.shard.gallery().store().replicated_position());
    }
    Ok(())
}

/// The operations of a batch; an entry that is unreadable or on a subject that is not its id's
/// is skipped (its position still counts). An entry sealed with a key this replica lacks stops
/// it: skipping would lose the record.
fn decode_batch(
    shared: &Shared,
    batch: Vec<Delivered>,
) -> Result<Vec<(u64, ReplicatedOp)>, ClusterError> {
    let shards = shared.catalog.spec().shards;
    let mut skipped = 0usize;
    let mut ops = Vec::with_capacity(batch.len());
    for d in batch {
        let op = match entry::decode(shared.config.keys(), &d.subject, &d.payload) {
            Ok(Entry::Insert { record, .. })
                if log_subject(&record.reference_id, shards) == d.subject =>
            {
                ReplicatedOp::Insert(record)
            }
            Ok(Entry::Delete(id)) if log_subject(&id, shards) == d.subject => {
                ReplicatedOp::Delete(id)
            }
            Ok(_) => {
                skipped += 1;
                ReplicatedOp::Skip
            }
            Err(e) if e.is_configuration() => return Err(e.into()),
            Err(e) => {
                tracing::warn!(shard = shared.config.shard, position = d.position, error = %e, "unreadable log entry skipped");
                skipped += 1;
                ReplicatedOp::Skip
            }
        };
        ops.push((d.position, op));
    }
    if skipped > 0 {
        tracing::warn!(
            shard = shared.config.shard,
            skipped,
            "log entries not applied (unreadable, or on a subject that is not their id's)"
        );
    }
    Ok(ops)
}

fn report_conflicts(shared: &Shared, outcomes: &[ReplicatedOutcome]) {
    let conflicts = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                ReplicatedOutcome::Conflict | ReplicatedOutcome::Rejected(_)
            )
        })
        .count();
    if conflicts > 0 {
        // The router's per-subject check makes this impossible for its own writes.
        tracing::warn!(
            shard = shared.config.shard,
            conflicts,
            "log inserts not applied (another record under the id, or invalid)"
        );
    }
}

/// Prepares newly applied records for matching, off the search path: otherwise the first
/// search after a burst of inserts would prepare them all while the caller waits (and on a
/// shard fed by a steady insert stream, every search would). Coalesces: one pass at a time,
/// at most four a second, each preparing whatever arrived since the last.
pub(crate) async fn prepare_applied(shared: Arc<Shared>) -> Result<(), ClusterError> {
    let mut applied = shared.applied.subscribe();
    loop {
        if applied.changed().await.is_err() {
            return Ok(());
        }
        shared.shard.prepare_new().await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
