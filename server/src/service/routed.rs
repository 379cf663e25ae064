//! The gallery of a cluster: a [`Backend`] over an `abis_cluster::Router`. Each call takes the
//! caller's deadline from its scope and leaves there which replica served each shard (and the
//! log position of a write), so the audit entry says `router-1 [s0:replica-a s1:replica-c]`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use abis_cluster::{Router, Served};
use abis_engine::gallery::{IdentifyOptions, Probe, Verification};
use abis_engine::store::backup::Manifest;
use abis_engine::store::{InsertOutcome, Record};
use tonic::Status;

use abis_cluster::Identified;

use super::backend::{Backend, BackendStats, BoxFuture};
use super::{call, status};

pub struct RoutedBackend {
    router: Arc<Router>,
    /// Records in the whole gallery at the last count (for the gauges, which cannot wait).
    records: Arc<AtomicU64>,
}

impl RoutedBackend {
    pub fn new(router: Arc<Router>) -> RoutedBackend {
        RoutedBackend {
            router,
            records: Arc::new(AtomicU64::new(0)),
        }
    }
}

fn noted<T>(r: Result<(T, Served), abis_cluster::RouteError>) -> Result<T, Status> {
    match r {
        Ok((v, served)) => {
            call::note_served(served);
            Ok(v)
        }
        Err(e) => Err(status::from_route(e)),
    }
}

impl Backend for RoutedBackend {
    fn backup(&self, _destination: PathBuf) -> BoxFuture<'_, Result<Manifest, Status>> {
        Box::pin(async {
            Err(status::status(
                tonic::Code::FailedPrecondition,
                abis_proto::FailureReason::Internal,
                "a cluster router holds no gallery: each shard's replicas hold theirs",
            ))
        })
    }

    fn insert(&self, record: Record) -> BoxFuture<'_, Result<InsertOutcome, Status>> {
        Box::pin(async move { noted(self.router.insert(record, call::deadline()).await) })
    }

    fn delete(&self, id: String) -> BoxFuture<'_, Result<(), Status>> {
        Box::pin(async move {
            noted(
                self.router
                    .delete(&id, call::deadline())
                    .await
                    .map(|s| ((), s)),
            )
        })
    }

    fn get(&self, id: String) -> BoxFuture<'_, Result<Option<Record>, Status>> {
        Box::pin(async move { noted(self.router.get(&id, call::deadline()).await) })
    }

    fn identify(
        &self,
        probes: Vec<(Probe, IdentifyOptions)>,
    ) -> BoxFuture<'_, Vec<Result<Identified, Status>>> {
        Box::pin(async move {
            let (results, served) = self.router.identify(&probes, call::deadline()).await;
            call::note_served(served);
            results
                .into_iter()
                .map(|r| r.map_err(status::from_route))
                .collect()
        })
    }

    fn verify(&self, probe: Probe, id: String) -> BoxFuture<'_, Result<Verification, Status>> {
        Box::pin(async move { noted(self.router.verify(&probe, &id, call::deadline()).await) })
    }

    fn verify_samples(
        &self,
        probe: Probe,
        reference: Probe,
    ) -> BoxFuture<'_, Result<Verification, Status>> {
        Box::pin(async move {
            noted(
                self.router
                    .verify_samples(&probe, &reference, call::deadline())
                    .await,
            )
        })
    }

    fn count(&self) -> BoxFuture<'_, Result<u64, Status>> {
        Box::pin(async move {
            let n = noted(self.router.count(call::deadline()).await)?;
            self.records.store(n, Ordering::Relaxed);
            Ok(n)
        })
    }

    fn stats(&self) -> BackendStats {
        BackendStats {
            records: self.records.load(Ordering::Relaxed),
            unflushed: 0,
        }
    }

    fn node(&self) -> String {
        match call::served() {
            Some(served) => format!("{} [{served}]", self.router.node()),
            None => self.router.node().to_owned(),
        }
    }
}
