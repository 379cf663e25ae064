//! Where the service's records live and are searched: this process's gallery
//! ([`LocalBackend`]), or a cluster of shards behind a router. The gRPC layer validates,
//! extracts, audits and answers; a backend stores and searches, and says which node served.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use abis_engine::gallery::{Candidate, Gallery, IdentifyOptions, Probe, Verification};
use abis_engine::store::{InsertOutcome, Record};
use tonic::{Code, Status};

use super::status;
use abis_proto::FailureReason;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The answer of a 1:N search: candidates best first, the threshold they cleared, and how many
/// records were searched.
#[derive(Debug, Clone, PartialEq)]
pub struct Identified {
    pub candidates: Vec<Candidate>,
    pub threshold: f64,
    pub searched: u64,
}

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
    fn stats(&self) -> BackendStats;
    /// The node that served the call being answered, for its audit entry (a cluster router
    /// adds the replicas of each shard, from the call's scope: see `call`).
    fn node(&self) -> String;
}

/// The gallery of this process. Work runs on the blocking pool: searches burn CPU, writes wait
/// for fsync.
pub struct LocalBackend {
    gallery: Arc<Gallery>,
    node: String,
}

impl LocalBackend {
    pub fn new(gallery: Arc<Gallery>, node: impl Into<String>) -> LocalBackend {
        LocalBackend {
            gallery,
            node: node.into(),
        }
    }

    pub fn gallery(&self) -> &Arc<Gallery> {
        &self.gallery
    }

    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Gallery) -> Result<T, Status> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, Status>> {
        let gallery = Arc::clone(&self.gallery);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&gallery))
                .await
                .map_err(|_| {
                    status::status(
                        Code::Internal,
                        FailureReason::Unexpected,
                        "request task failed",
                    )
                })?
        })
    }
}

impl Backend for LocalBackend {
    fn insert(&self, record: Record) -> BoxFuture<'_, Result<InsertOutcome, Status>> {
        self.blocking(move |g| g.insert(record).map_err(status::from_gallery))
    }

    fn delete(&self, id: String) -> BoxFuture<'_, Result<(), Status>> {
        self.blocking(move |g| g.delete(&id).map_err(status::from_gallery))
    }

    fn get(&self, id: String) -> BoxFuture<'_, Result<Option<Record>, Status>> {
        self.blocking(move |g| g.store().get(&id).map_err(status::from_store))
    }

    fn identify(
        &self,
        probes: Vec<(Probe, IdentifyOptions)>,
    ) -> BoxFuture<'_, Vec<Result<Identified, Status>>> {
        let n = probes.len();
        let all = self.blocking(move |g| {
            Ok(g.identify_batch(&probes)
                .into_iter()
                .map(|r| {
                    r.map(|found| Identified {
                        candidates: found.candidates,
                        threshold: found.threshold,
                        searched: found.searched,
                    })
                    .map_err(status::from_gallery)
                })
                .collect::<Vec<_>>())
        });
        Box::pin(async move {
            match all.await {
                Ok(results) => results,
                Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
            }
        })
    }

    fn verify(&self, probe: Probe, id: String) -> BoxFuture<'_, Result<Verification, Status>> {
        self.blocking(move |g| g.verify(&probe, &id).map_err(status::from_gallery))
    }

    fn verify_samples(
        &self,
        probe: Probe,
        reference: Probe,
    ) -> BoxFuture<'_, Result<Verification, Status>> {
        self.blocking(move |g| {
            g.verify_samples(&probe, &reference)
                .map_err(status::from_gallery)
        })
    }

    fn count(&self) -> BoxFuture<'_, Result<u64, Status>> {
        let n = self.gallery.store().count();
        Box::pin(async move { Ok(n) })
    }

    fn stats(&self) -> BackendStats {
        let s = self.gallery.store().stats();
        BackendStats {
            records: s.records,
            unflushed: s.memtable_records as u64,
        }
    }

    fn node(&self) -> String {
        self.node.clone()
    }
}
