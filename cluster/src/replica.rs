//! A shard replica: its own gallery store, kept equal to its shard of the write log, answering
//! the shard's searches.
//!
//! # Life of a replica
//!
//! 1. Open the store; its replicated position `p` survived any crash exactly (it is written in
//!    the same WAL entry as each operation).
//! 2. If the shard's trim point `t` (KV `trimmed.<shard>`) is above `p + 1`, messages it has not
//!    applied may have been purged: copy a live peer's store instead ([`bootstrap`]) and go to 1.
//! 3. Read the shard's subjects (`abis.rec.<shard>.>`) from `p + 1` with an ordered consumer
//!    and apply them in stream order, in batches, through `Gallery::apply_replicated`;
//!    redeliveries are skipped by position, so applying is idempotent.
//! 4. Once applied up to the shard's last message as of the start, prepare the records for
//!    matching, then join the shard's queue groups (`abis.{search,verify,get,count,bootstrap}.<shard>`).
//! 5. Heartbeat into the `abis_replicas` bucket; if the trim point ever passes the replica (it
//!    was silent longer than the grace), or moves past where it started reading without naming
//!    it (retention decided without its heartbeat), leave the queue groups and go to 1.
//!
//! # Read-your-writes
//!
//! A request carries `min_position`, the stream's last sequence when the router's call began.
//! Before answering, the replica makes sure it has applied every message of its shard up to
//! that point: when its position is below it, it asks the stream leader for the shard's last
//! message `s` and waits (up to the request's `wait_ms`) until it has applied
//! `min(s, min_position)` — which covers every message of the shard acknowledged before the
//! call began. Otherwise it answers `BEHIND` and the router tries again.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abis_engine::gallery::{FaceScorer, Gallery, GalleryError, SearchConfig};
use abis_engine::matcher::Matcher;
use abis_engine::store::encryption::Keyring;
use abis_engine::store::{ReplicatedOp, ReplicatedOutcome, StoreConfig};
use abis_proto::cluster::v1 as pb;
use async_nats::jetstream::consumer::{push, DeliverPolicy};
use async_nats::{Client, Subscriber};
use prost::Message as _;
use tokio::sync::{mpsc, watch, Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio_stream::StreamExt;

use crate::bootstrap;
use crate::catalog::{Catalog, Trim, OPEN_PATIENCE};
use crate::entry::{self, Entry};
use crate::error::ClusterError;
use crate::membership::{self, Heartbeat, ReplicaState};
use crate::shard::{log_filter, log_subject, queue_group, request_subject, RequestKind};
use crate::wire;

/// How a replica runs.
#[derive(Clone)]
pub struct ReplicaConfig {
    /// This replica's name (unique in the cluster): heartbeats, replies, audit entries.
    pub node: String,
    pub shard: u32,
    /// The store directory (`<data>/gallery`).
    pub gallery_dir: PathBuf,
    pub store: StoreConfig,
    pub search: SearchConfig,
    pub face_scorer: Option<FaceScorer>,
    pub heartbeat: Duration,
    /// Most log messages applied in one group commit.
    pub max_batch: usize,
    /// Searches run at once (each already uses every core).
    pub max_searches: usize,
}

impl ReplicaConfig {
    fn keys(&self) -> Option<&Keyring> {
        self.store.encryption.as_ref()
    }
}

/// One log message as the consumer delivered it.
struct Delivered {
    position: u64,
    subject: String,
    payload: bytes::Bytes,
    /// Messages of the shard the server had not delivered yet.
    pending: u64,
}

/// What one serving period of a replica shares between its tasks.
pub(crate) struct Shared {
    pub(crate) config: ReplicaConfig,
    pub(crate) catalog: Catalog,
    pub(crate) client: Client,
    pub(crate) gallery: Arc<Gallery>,
    /// The store's replicated position after each applied batch.
    applied: watch::Sender<u64>,
    pending: AtomicU64,
    /// Held by the applier for each batch and by a bootstrap session for its whole length (the
    /// files a peer copies must not change under it).
    pub(crate) gate: Arc<Mutex<()>>,
    searches: Semaphore,
    /// One bootstrap session at a time.
    pub(crate) serving_bootstrap: Arc<Mutex<()>>,
}

/// Why a serving period ended.
enum End {
    Shutdown,
    /// The shard's trim point passed this replica: bootstrap.
    Gap,
    Failed(ClusterError),
}

/// Runs a replica until `shutdown` turns true. Reports its state on `state`. Errors are the
/// ones it cannot get past alone (a storage failure, a log entry sealed with a key it lacks).
pub async fn run(
    config: ReplicaConfig,
    client: Client,
    state: watch::Sender<ReplicaState>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ClusterError> {
    wire::check_node_name(&config.node).map_err(|e| ClusterError::Config(e.to_string()))?;
    let catalog = Catalog::open(crate::catalog::context(client.clone()), OPEN_PATIENCE).await?;
    if config.shard >= catalog.spec.shards {
        return Err(ClusterError::NoSuchShard {
            shard: config.shard,
            shards: catalog.spec.shards,
        });
    }
    bootstrap::recover_dirs(&config.gallery_dir)?;
    loop {
        let _ = state.send(ReplicaState::Starting);
        let gallery = open_gallery(&config).await?;
        let position = gallery.store().replicated_position();
        let trim = until_ok(&mut shutdown, || catalog.trim(config.shard)).await;
        let Some(trim) = trim else {
            return close(gallery).await;
        };
        if trim.below > position + 1 {
            tracing::warn!(
                shard = config.shard,
                position,
                trimmed = trim.below,
                "this replica is behind the shard's trimmed log: copying a peer's store"
            );
            let _ = state.send(ReplicaState::Bootstrapping);
            release(gallery).await;
            let fetched = tokio::select! {
                r = bootstrap::fetch(&config, &client) => r,
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
            };
            fetched?;
            continue;
        }
        let shared = Arc::new(Shared {
            config: config.clone(),
            catalog: catalog.clone(),
            client: client.clone(),
            applied: watch::Sender::new(position),
            pending: AtomicU64::new(0),
            gate: Arc::new(Mutex::new(())),
            searches: Semaphore::new(config.max_searches.max(1)),
            serving_bootstrap: Arc::new(Mutex::new(())),
            gallery,
        });
        let end = serve(Arc::clone(&shared), &state, &mut shutdown).await;
        let gallery = Arc::clone(&shared.gallery);
        drop(shared);
        match end {
            End::Shutdown => {
                // Best effort: status stops showing it at once (else the grace removes it).
                let withdraw = membership::withdraw(&catalog.replicas, config.shard, &config.node);
                let _ = tokio::time::timeout(Duration::from_secs(2), withdraw).await;
                return close(gallery).await;
            }
            End::Gap => {
                tracing::warn!(shard = config.shard, "trim point passed this replica");
                release(gallery).await;
            }
            End::Failed(e) => {
                let _ = state.send(ReplicaState::Failed);
                release(gallery).await;
                return Err(e);
            }
        }
    }
}

/// Retries `f` every second until it succeeds; `None` if shutdown comes first.
async fn until_ok<T, F, Fut>(shutdown: &mut watch::Receiver<bool>, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClusterError>>,
{
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) => tracing::warn!(error = %e, "retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|s| *s) => return None,
        }
    }
}

/// Opens the store under `gallery_dir` (recovering from its log) as a gallery.
pub(crate) async fn open_gallery(config: &ReplicaConfig) -> Result<Arc<Gallery>, ClusterError> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let (gallery, report) = Gallery::open(
            &config.gallery_dir,
            config.store.clone(),
            Matcher::new(),
            config.face_scorer.clone(),
        )
        .map_err(|e| ClusterError::Store {
            path: config.gallery_dir.clone(),
            detail: e.to_string(),
        })?;
        tracing::info!(
            shard = config.shard,
            records = gallery.store().count(),
            position = gallery.store().replicated_position(),
            replayed = report.entries_replayed,
            indexes_to_rebuild = report.companions_missing,
            "replica store open"
        );
        Ok(Arc::new(gallery.with_search(config.search.clone())))
    })
    .await
    .map_err(|e| ClusterError::Config(format!("opening the store: {e}")))?
}

/// Waits (a bounded time) for requests still holding the gallery, then drops it so that its
/// directory lock is released.
async fn release(gallery: Arc<Gallery>) {
    let t0 = Instant::now();
    while Arc::strong_count(&gallery) > 1 && t0.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = tokio::task::spawn_blocking(move || drop(gallery)).await;
}

/// Checkpoints the store at shutdown (a faster next start), when no request holds it.
async fn close(gallery: Arc<Gallery>) -> Result<(), ClusterError> {
    let t0 = Instant::now();
    while Arc::strong_count(&gallery) > 1 && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = tokio::task::spawn_blocking(move || match Arc::try_unwrap(gallery) {
        Ok(g) => {
            if let Err(e) = g.into_store().close() {
                tracing::warn!(error = %e, "checkpoint at shutdown failed; the log will be replayed");
            }
        }
        Err(_) => tracing::warn!("requests still running at exit; the log will be replayed"),
    })
    .await;
    Ok(())
}

/// One serving period: read and apply the log, catch up, join the queue groups, heartbeat.
async fn serve(
    shared: Arc<Shared>,
    state: &watch::Sender<ReplicaState>,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    let _ = state.send(ReplicaState::CatchingUp);
    let (log_tx, log_rx) = mpsc::channel::<Delivered>(4 * shared.config.max_batch.max(16));
    let (gap_tx, mut gap_rx) = mpsc::channel::<()>(1);
    let (serving_tx, serving_rx) = watch::channel(false);
    let mut tasks: JoinSet<Result<(), ClusterError>> = JoinSet::new();
    let start = shared.gallery.store().replicated_position() + 1;
    tasks.spawn(read_log(Arc::clone(&shared), start, log_tx));
    tasks.spawn(apply_log(Arc::clone(&shared), log_rx));
    tasks.spawn(heartbeat(Arc::clone(&shared), state.subscribe(), gap_tx));
    tasks.spawn(join_when_caught_up(Arc::clone(&shared), serving_tx));
    tasks.spawn(prepare_applied(Arc::clone(&shared)));
    let mut serving_rx = serving_rx;
    let end = loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break End::Shutdown,
            _ = gap_rx.recv() => break End::Gap,
            r = serving_rx.changed() => {
                if r.is_ok() && *serving_rx.borrow() {
                    let _ = state.send(ReplicaState::Serving);
                    tracing::info!(shard = shared.config.shard, node = %shared.config.node, "replica serving");
                }
            }
            done = tasks.join_next() => match done {
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => break End::Failed(e),
                Some(Err(e)) => break End::Failed(ClusterError::Config(format!("replica task: {e}"))),
                None => break End::Failed(ClusterError::Config("replica tasks ended".into())),
            }
        }
    };
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    end
}

/// Delivers the shard's log messages from `start` on, in order, recreating the consumer after
/// an error from the last position delivered.
async fn read_log(
    shared: Arc<Shared>,
    start: u64,
    tx: mpsc::Sender<Delivered>,
) -> Result<(), ClusterError> {
    let mut next = start;
    loop {
        let created = shared
            .catalog
            .stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: shared.client.new_inbox(),
                filter_subject: log_filter(shared.config.shard),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: next,
                },
                ..Default::default()
            })
            .await;
        let messages = match created {
            Ok(c) => c.messages().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match messages {
            Err(e) => tracing::warn!(shard = shared.config.shard, error = %e, "log consumer"),
            Ok(mut messages) => {
                let mut stalled_since: Option<Instant> = None;
                loop {
                    let m = match tokio::time::timeout(QUIET, messages.next()).await {
                        Ok(Some(Ok(m))) => m,
                        Ok(Some(Err(e))) => {
                            tracing::warn!(shard = shared.config.shard, error = %e, "log consumer");
                            break;
                        }
                        Ok(None) => break,
                        Err(_) => {
                            // Quiet: nothing new, or a consumer that died with its NATS server
                            // (the client would notice only after two missed 5 s heartbeats).
                            // The stream leader knows whether the shard has more.
                            match shared.catalog.shard_last(shared.config.shard).await {
                                Ok(last) if last >= next => {
                                    let since = *stalled_since.get_or_insert_with(Instant::now);
                                    if since.elapsed() >= STALLED {
                                        tracing::warn!(
                                            shard = shared.config.shard,
                                            "log consumer stalled behind the stream: recreating it"
                                        );
                                        break;
                                    }
                                }
                                Ok(_) => stalled_since = None,
                                Err(_) => {}
                            }
                            continue;
                        }
                    };
                    stalled_since = None;
                    let Ok((position, pending)) = m.info().map(|i| (i.stream_sequence, i.pending))
                    else {
                        continue;
                    };
                    let d = Delivered {
                        position,
                        subject: m.message.subject.to_string(),
                        payload: m.message.payload.clone(),
                        pending,
                    };
                    if tx.send(d).await.is_err() {
                        return Ok(());
                    }
                    next = position + 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Applies delivered messages in batches (one group commit each).
async fn apply_log(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Delivered>,
) -> Result<(), ClusterError> {
    let max = shared.config.max_batch.max(1);
    let shards = shared.catalog.spec.shards;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        let pending = batch.last().map_or(0, |d| d.pending);
        let mut ops = Vec::with_capacity(batch.len());
        let mut skipped = 0usize;
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
        let outcomes = {
            let _gate = shared.gate.lock().await;
            let gallery = Arc::clone(&shared.gallery);
            tokio::task::spawn_blocking(move || gallery.apply_replicated(ops))
                .await
                .map_err(|e| ClusterError::Config(format!("apply task: {e}")))?
                .map_err(|e| ClusterError::Store {
                    path: shared.config.gallery_dir.clone(),
                    detail: e.to_string(),
                })?
        };
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
        shared.pending.store(pending, Ordering::Relaxed);
        let _ = shared
            .applied
            .send(shared.gallery.store().replicated_position());
    }
    Ok(())
}

/// Prepares newly applied records for matching, off the search path: otherwise the first
/// search after a burst of inserts would prepare them all while the caller waits (and on a
/// shard fed by a steady insert stream, every search would). Coalesces: one pass at a time,
/// at most four a second, each preparing whatever arrived since the last.
async fn prepare_applied(shared: Arc<Shared>) -> Result<(), ClusterError> {
    let mut applied = shared.applied.subscribe();
    loop {
        if applied.changed().await.is_err() {
            return Ok(());
        }
        let gallery = Arc::clone(&shared.gallery);
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || gallery.warm()).await {
            tracing::warn!(error = %e, "preparing applied records failed; searches prepare them");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether a trim point means this replica may have missed log messages: it has applied less
/// than the purged range, or it was reading inside that range (from `start`) without having
/// been counted by the retention that purged it.
fn missed(trim: &Trim, node: &str, start: u64, applied: u64) -> bool {
    trim.below > applied + 1 || (trim.below > start && !trim.replicas.iter().any(|r| r == node))
}

/// Puts a heartbeat every interval and watches the shard's trim point.
async fn heartbeat(
    shared: Arc<Shared>,
    state: watch::Receiver<ReplicaState>,
    gap: mpsc::Sender<()>,
) -> Result<(), ClusterError> {
    // Where this serving period started reading the log.
    let start = *shared.applied.borrow() + 1;
    let mut tick = tokio::time::interval(shared.config.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // During a bucket's leader election every put fails for seconds: say so once.
    let mut failing = false;
    loop {
        tick.tick().await;
        let applied = *shared.applied.borrow();
        let beat = Heartbeat {
            node: shared.config.node.clone(),
            shard: shared.config.shard,
            state: *state.borrow(),
            applied,
            records: shared.gallery.store().count(),
            pending: shared.pending.load(Ordering::Relaxed),
            time_ms: membership::now_ms(),
        };
        let published = membership::publish(&shared.catalog.replicas, &beat).await;
        let trimmed = shared.catalog.trim(shared.config.shard).await;
        match (&published, &trimmed) {
            (Err(e), _) | (_, Err(e)) if !failing => {
                tracing::warn!(error = %e, "heartbeat or trim point: NATS not answering");
                failing = true;
            }
            (Ok(()), Ok(_)) if failing => {
                tracing::info!("heartbeats stored again");
                failing = false;
            }
            _ => {}
        }
        if let Ok(trim) = trimmed {
            if missed(&trim, &shared.config.node, start, applied) {
                let _ = gap.send(()).await;
                return Ok(());
            }
        }
    }
}

/// Applies up to the shard's last message as of now, prepares the records for matching, then
/// joins the shard's queue groups and answers requests.
async fn join_when_caught_up(
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
    let gallery = Arc::clone(&shared.gallery);
    let t0 = Instant::now();
    match tokio::task::spawn_blocking(move || gallery.warm()).await {
        Ok(Ok(n)) => tracing::info!(
            records = n,
            ms = t0.elapsed().as_millis() as u64,
            "replica prepared for matching"
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, "preparing records failed; searches prepare them"),
        Err(e) => tracing::warn!(error = %e, "preparing records panicked"),
    }
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

fn failure(kind: pb::FailureKind, message: impl Into<String>) -> pb::shard_reply::Body {
    pb::shard_reply::Body::Failure(pb::Failure {
        kind: kind as i32,
        message: message.into(),
    })
}

fn gallery_failure(e: &GalleryError) -> pb::Failure {
    let kind = match e {
        GalleryError::NotFound => pb::FailureKind::NotFound,
        GalleryError::EmptyProbe => pb::FailureKind::EmptyProbe,
        GalleryError::Probe(_) | GalleryError::Template(_) | GalleryError::FaceDimension { .. } => {
            pb::FailureKind::Invalid
        }
        // Another replica of the shard may have its index: let the router ask again.
        GalleryError::IndexIncomplete => pb::FailureKind::Unavailable,
        GalleryError::Store(_)
        | GalleryError::StoredTemplate(_)
        | GalleryError::StoredRecord(_)
        | GalleryError::Index(_) => {
            tracing::error!(error = %e, "replica gallery failure");
            pb::FailureKind::Internal
        }
    };
    let message = match kind {
        pb::FailureKind::Internal => "the replica's gallery failed".to_string(),
        _ => e.to_string(),
    };
    pb::Failure {
        kind: kind as i32,
        message,
    }
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

/// A consumer silent this long is asked about (is the shard ahead of it?)...
const QUIET: Duration = Duration::from_secs(1);
/// ...and recreated when the shard has been ahead of it for this long.
const STALLED: Duration = Duration::from_secs(2);

/// Longest a request may make a replica wait for the log.
const MAX_WAIT: Duration = Duration::from_secs(60);

async fn shard_reply(shared: &Shared, payload: &[u8]) -> pb::ShardReply {
    let body = match wire::decode_request(payload) {
        Err(e) => failure(pb::FailureKind::Invalid, e.to_string()),
        Ok(req) => {
            let wait = Duration::from_millis(u64::from(req.wait_ms)).min(MAX_WAIT);
            if !caught_up(shared, req.min_position, wait).await {
                failure(
                    pb::FailureKind::Behind,
                    format!(
                        "shard {} has not applied the log that far",
                        shared.config.shard
                    ),
                )
            } else {
                match req.body {
                    None => failure(pb::FailureKind::Invalid, "request without a body"),
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

async fn run_request(
    shared: &Shared,
    body: pb::shard_request::Body,
    wait: Duration,
) -> pb::shard_reply::Body {
    use pb::shard_request::Body as B;
    let gallery = Arc::clone(&shared.gallery);
    match body {
        B::Count(_) => pb::shard_reply::Body::Count(pb::CountReply {
            records: gallery.store().count(),
        }),
        B::Get(g) => {
            match tokio::task::spawn_blocking(move || gallery.store().get(&g.reference_id)).await {
                Ok(Ok(Some(record))) => match record.encode() {
                    Ok(bytes) => pb::shard_reply::Body::Get(pb::GetReply { record: bytes }),
                    Err(e) => failure(pb::FailureKind::Internal, e.to_string()),
                },
                Ok(Ok(None)) => pb::shard_reply::Body::Get(pb::GetReply { record: Vec::new() }),
                Ok(Err(e)) => failure(pb::FailureKind::Invalid, e.to_string()),
                Err(_) => failure(pb::FailureKind::Internal, "request task failed"),
            }
        }
        B::Verify(v) => {
            let probe = match v.probe.map(|p| wire::probe_from_wire("probe", p)) {
                Some(Ok(p)) => p,
                Some(Err(e)) => return failure(pb::FailureKind::Invalid, e.to_string()),
                None => return failure(pb::FailureKind::Invalid, "probe is missing"),
            };
            let reference = match v.reference {
                Some(pb::verify_request::Reference::ReferenceId(id)) => Ok(id),
                Some(pb::verify_request::Reference::Samples(p)) => {
                    match wire::probe_from_wire("samples", p) {
                        Ok(p) => Err(p),
                        Err(e) => return failure(pb::FailureKind::Invalid, e.to_string()),
                    }
                }
                None => return failure(pb::FailureKind::Invalid, "reference is missing"),
            };
            let result = tokio::task::spawn_blocking(move || match reference {
                Ok(id) => gallery.verify(&probe, &id),
                Err(other) => gallery.verify_samples(&probe, &other),
            })
            .await;
            match result {
                Ok(Ok(v)) => pb::shard_reply::Body::Verify(wire::verification_to_wire(&v)),
                Ok(Err(e)) => pb::shard_reply::Body::Failure(gallery_failure(&e)),
                Err(_) => failure(pb::FailureKind::Internal, "request task failed"),
            }
        }
        B::Search(s) => {
            if s.queries.len() > wire::MAX_QUERIES {
                return failure(pb::FailureKind::Invalid, "too many queries");
            }
            let Ok(Ok(_permit)) = tokio::time::timeout(
                wait.max(Duration::from_millis(1)),
                shared.searches.acquire(),
            )
            .await
            else {
                return failure(pb::FailureKind::Unavailable, "replica busy");
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
            let searched =
                tokio::task::spawn_blocking(move || gallery.identify_batch(&valid)).await;
            let Ok(searched) = searched else {
                return failure(pb::FailureKind::Internal, "search task failed");
            };
            let mut searched = searched.into_iter();
            let results = checked
                .into_iter()
                .map(|c| {
                    let outcome = match c {
                        Err(e) => pb::query_result::Outcome::Failure(pb::Failure {
                            kind: pb::FailureKind::Invalid as i32,
                            message: e.to_string(),
                        }),
                        Ok(_) => match searched.next() {
                            Some(Ok(found)) => pb::query_result::Outcome::Found(pb::Found {
                                candidates: found
                                    .candidates
                                    .iter()
                                    .map(wire::candidate_to_wire)
                                    .collect(),
                                threshold: found.threshold,
                                searched: found.searched,
                            }),
                            Some(Err(e)) => pb::query_result::Outcome::Failure(gallery_failure(&e)),
                            None => pb::query_result::Outcome::Failure(pb::Failure {
                                kind: pb::FailureKind::Internal as i32,
                                message: "no search result".into(),
                            }),
                        },
                    };
                    pb::QueryResult {
                        outcome: Some(outcome),
                    }
                })
                .collect();
            pb::shard_reply::Body::Search(pb::SearchReply { results })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trim(below: u64, replicas: &[&str]) -> Trim {
        Trim {
            below,
            replicas: replicas.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn a_replica_knows_when_the_trimmed_log_may_have_skipped_it() {
        // Never trimmed, or trimmed below where it started: nothing missed.
        assert!(!missed(&trim(0, &[]), "r", 1, 0));
        assert!(!missed(&trim(40, &[]), "r", 41, 60));
        // Trimmed past what it applied.
        assert!(missed(&trim(50, &["r"]), "r", 1, 30));
        // Trimmed inside the range it was reading, counted: its position allowed it.
        assert!(!missed(&trim(50, &["r", "s"]), "r", 10, 60));
        // ... not counted: it may have missed what the purge took before it read it.
        assert!(missed(&trim(50, &["s"]), "r", 10, 60));
    }
}
