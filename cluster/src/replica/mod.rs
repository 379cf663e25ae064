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
//!
//! # Parts
//!
//! [`shared`]: the configuration and what a serving period shares (a leaf, also used by
//! [`bootstrap`]); [`log`]: reading and applying the log; [`heartbeat`]: heartbeats and the
//! trim point; [`requests`]: the queue groups and the requests, answered from the local gallery
//! through the shard seam ([`LocalShard`]).

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::bootstrap;
use crate::catalog::{Catalog, OPEN_PATIENCE};
use crate::error::ClusterError;
use crate::local::LocalShard;
use crate::membership::{self, ReplicaState};
use crate::wire;

mod heartbeat;
mod log;
mod requests;
pub(crate) mod shared;

pub use shared::ReplicaConfig;
use shared::Shared;

/// How long a closing replica waits for requests still running.
const CLOSE_PATIENCE: Duration = Duration::from_secs(10);
/// How long a replica about to copy a peer waits for requests still running.
const RELEASE_PATIENCE: Duration = Duration::from_secs(60);

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
    let catalog = open_catalog(&config, &client).await?;
    bootstrap::recover_dirs(&config.gallery.dir)?;
    loop {
        let _ = state.send(ReplicaState::Starting);
        let shard = open(&config).await?;
        let position = shard.gallery().store().replicated_position();
        // Where it resumes: after a restore from a backup, the backup's position.
        tracing::info!(shard = config.shard, position, "replica store opened");
        let Some(trim) = until_ok(&mut shutdown, || catalog.trim(config.shard)).await else {
            shard.close(CLOSE_PATIENCE).await;
            return Ok(());
        };
        if trim.below > position + 1 {
            tracing::warn!(
                shard = config.shard,
                position,
                trimmed = trim.below,
                "this replica is behind the shard's trimmed log: copying a peer's store"
            );
            let _ = state.send(ReplicaState::Bootstrapping);
            shard.release(RELEASE_PATIENCE).await;
            tokio::select! {
                r = bootstrap::fetch(&config, &client) => r?,
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
            };
            continue;
        }
        let shared = Arc::new(Shared::new(&config, &catalog, &client, shard));
        let end = serve(Arc::clone(&shared), &state, &mut shutdown).await;
        let shard = shared.shard.clone();
        drop(shared);
        if let Some(done) = after(end, shard, &catalog, &config, &state).await {
            return done;
        }
    }
}

/// The cluster, checked against this replica's configuration.
async fn open_catalog(config: &ReplicaConfig, client: &Client) -> Result<Catalog, ClusterError> {
    wire::check_node_name(&config.node).map_err(|e| ClusterError::Config(e.to_string()))?;
    let catalog = Catalog::open(crate::catalog::context(client.clone()), OPEN_PATIENCE).await?;
    let shards = catalog.spec().shards;
    if config.shard >= shards {
        return Err(ClusterError::NoSuchShard {
            shard: config.shard,
            shards,
        });
    }
    Ok(catalog)
}

/// Opens the replica's gallery (recovering from its log).
async fn open(config: &ReplicaConfig) -> Result<LocalShard, ClusterError> {
    let options = config.gallery.clone();
    let path = options.dir.clone();
    tokio::task::spawn_blocking(move || LocalShard::open("replica store", &options))
        .await
        .map_err(|_| ClusterError::Task("opening the store"))?
        .map_err(|e| ClusterError::Gallery {
            path,
            source: e.into(),
        })
}

/// What follows a serving period: `Some` ends the replica, `None` starts again (the shard was
/// released: a bootstrap may replace it).
async fn after(
    end: End,
    shard: LocalShard,
    catalog: &Catalog,
    config: &ReplicaConfig,
    state: &watch::Sender<ReplicaState>,
) -> Option<Result<(), ClusterError>> {
    match end {
        End::Shutdown => {
            // Best effort: status stops showing it at once (else the grace removes it).
            let withdraw = membership::withdraw(catalog.heartbeats(), config.shard, &config.node);
            let _ = tokio::time::timeout(Duration::from_secs(2), withdraw).await;
            shard.close(CLOSE_PATIENCE).await;
            Some(Ok(()))
        }
        End::Gap => {
            tracing::warn!(shard = config.shard, "trim point passed this replica");
            shard.release(RELEASE_PATIENCE).await;
            None
        }
        End::Failed(e) => {
            let _ = state.send(ReplicaState::Failed);
            shard.release(RELEASE_PATIENCE).await;
            Some(Err(e))
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

/// One serving period: read and apply the log, catch up, join the queue groups, heartbeat.
async fn serve(
    shared: Arc<Shared>,
    state: &watch::Sender<ReplicaState>,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    let _ = state.send(ReplicaState::CatchingUp);
    let (log_tx, log_rx) = mpsc::channel(4 * shared.config.max_batch.max(16));
    let (gap_tx, mut gap_rx) = mpsc::channel::<()>(1);
    let (serving_tx, mut serving_rx) = watch::channel(false);
    let mut tasks: JoinSet<Result<(), ClusterError>> = JoinSet::new();
    let start = *shared.applied.borrow() + 1;
    tasks.spawn(log::read_log(Arc::clone(&shared), start, log_tx));
    tasks.spawn(log::apply_log(Arc::clone(&shared), log_rx));
    tasks.spawn(heartbeat::heartbeat(
        Arc::clone(&shared),
        state.subscribe(),
        gap_tx,
    ));
    tasks.spawn(requests::join_when_caught_up(
        Arc::clone(&shared),
        serving_tx,
    ));
    tasks.spawn(log::prepare_applied(Arc::clone(&shared)));
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
                Some(Err(_)) => break End::Failed(ClusterError::Task("a replica task")),
                None => break End::Failed(ClusterError::Task("the replica's tasks")),
            }
        }
    };
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    end
}
