//! Where the service's records live and are searched: this process's gallery
//! ([`LocalBackend`], over the cluster crate's [`LocalShard`] — the same shard a replica answers
//! from), or a cluster of shards behind a router. The gRPC layer validates,
//! extracts, audits and answers; a backend stores and searches, and says which node served.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use abis_cluster::{GalleryShard, Identified, LocalShard};
use abis_engine::gallery::{IdentifyOptions, Probe, Verification};
use abis_engine::store::backup::{Manifest, Tree};
use abis_engine::store::{InsertOutcome, Record};
use tonic::Status;

use super::status;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Counts for the service's gauges.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackendStats {
    pub records: u64,
    /// Records acknowledged but not yet in a segment (what a restart replays).
    pub unflushed: u64,
}

/// Stores and searches records. Errors are gRPC statuses with MOSIP reasons (see `status`).
pub trait Backend: Send + Sync + 'static {
    fn insert(&self, record: Record) -> BoxFuture<'_, Result<InsertOutcome, Status>>;
    fn delete(&self, id: String) -> BoxFuture<'_, Result<(), Status>>;
    fn get(&self, id: String) -> BoxFuture<'_, Result<Option<Record>, Status>>;
    /// Searches each probe; each answer is the one a search of that probe alone would give.
    fn identify(
        &self,
        probes: Vec<(Probe, IdentifyOptions)>,
    ) -> BoxFuture<'_, Vec<Result<Identified, Status>>>;
    fn verify(&self, probe: Probe, id: String) -> BoxFuture<'_, Result<Verification, Status>>;
    fn verify_samples(
        &self,
        probe: Probe,
        reference: Probe,
    ) -> BoxFuture<'_, Result<Verification, Status>>;
    fn count(&self) -> BoxFuture<'_, Result<u64, Status>>;
    /// A backup of the gallery into the new directory `destination` (see the `Backup` RPC).
    fn backup(&self, destination: PathBuf) -> BoxFuture<'_, Result<Manifest, Status>>;
    fn stats(&self) -> BackendStats;
    /// The node that served the call being answered, for its audit entry (a cluster router
    /// adds the replicas of each shard, from the call's scope: see `call`).
    fn node(&self) -> String;
}

/// The gallery of this process (see [`LocalShard`]).
pub struct LocalBackend {
    shard: LocalShard,
    node: String,
    /// The directories beside the gallery a backup carries (cases, kept images).
    backup_trees: Vec<Tree>,
}

impl LocalBackend {
    pub fn new(shard: LocalShard, node: impl Into<String>) -> LocalBackend {
        LocalBackend {
            shard,
            node: node.into(),
            backup_trees: Vec::new(),
        }
    }

    /// Backups carry these directories too (see `abis_engine::store::backup`).
    pub fn with_backup_trees(mut self, trees: Vec<Tree>) -> LocalBackend {
        self.backup_trees = trees;
        self
    }
}

impl Backend for LocalBackend {
    fn backup(&self, destination: PathBuf) -> BoxFuture<'_, Result<Manifest, Status>> {
        let gallery = Arc::clone(self.shard.gallery());
        let trees = self.backup_trees.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || gallery.backup_to(&destination, &trees))
                .await
                .map_err(|_| status::internal("backup task failed"))?
                .map_err(status::from_backup)
        })
    }

    fn insert(&self, record: Record) -> BoxFuture<'_, Result<InsertOutcome, Status>> {
        Box::pin(async move { self.shard.insert(record).await.map_err(status::from_shard) })
    }

    fn delete(&self, id: String) -> BoxFuture<'_, Result<(), Status>> {
        Box::pin(async move { self.shard.delete(id).await.map_err(status::from_shard) })
    }

    fn get(&self, id: String) -> BoxFuture<'_, Result<Option<Record>, Status>> {
        Box::pin(async move { self.shard.get(id).await.map_err(status::from_shard) })
    }

    fn identify(
        &self,
        probes: Vec<(Probe, IdentifyOptions)>,
    ) -> BoxFuture<'_, Vec<Result<Identified, Status>>> {
        Box::pin(async move {
            let results = self.shard.identify_batch(probes).await;
            results
                .into_iter()
                .map(|r| r.map_err(status::from_shard))
                .collect()
        })
    }

    fn verify(&self, probe: Probe, id: String) -> BoxFuture<'_, Result<Verification, Status>> {
        Box::pin(async move {
            self.shard
                .verify(probe, id)
                .await
                .map_err(status::from_shard)
        })
    }

    fn verify_samples(
        &self,
        probe: Probe,
        reference: Probe,
    ) -> BoxFuture<'_, Result<Verification, Status>> {
        Box::pin(async move {
            let verified = self.shard.verify_samples(probe, reference).await;
            verified.map_err(status::from_shard)
        })
    }

    fn count(&self) -> BoxFuture<'_, Result<u64, Status>> {
        Box::pin(async move { self.shard.count().await.map_err(status::from_shard) })
    }

    fn stats(&self) -> BackendStats {
        let s = self.shard.gallery().store().stats();
        BackendStats {
            records: s.records,
            unflushed: s.memtable_records as u64,
        }
    }

    fn node(&self) -> String {
        self.node.clone()
    }
}
