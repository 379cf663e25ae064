//! This process's gallery as a shard ([`GalleryShard`]): how a single node and a shard replica
//! open it, prepare it for matching, answer from it and close it — one way for both.
//!
//! Requests run on the blocking pool: searches burn CPU, writes wait for fsync.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use abis_engine::gallery::{
    FaceScorer, Gallery, GalleryError, IdentifyOptions, Probe, SearchConfig, Verification,
};
use abis_engine::matcher::Matcher;
use abis_engine::store::{InsertOutcome, Record, ReplicatedOp, ReplicatedOutcome, StoreConfig};

use crate::gallery_shard::{GalleryShard, Identified, ShardError};

/// Where a gallery lives and how it searches.
#[derive(Clone)]
pub struct GalleryOptions {
    /// The store directory (`<data>/gallery`).
    pub dir: PathBuf,
    pub store: StoreConfig,
    pub search: SearchConfig,
    pub face_scorer: Option<FaceScorer>,
}

/// This process's gallery. Clones share it.
#[derive(Clone)]
pub struct LocalShard {
    gallery: Arc<Gallery>,
}

impl LocalShard {
    /// Opens (or creates) the gallery, recovering from its log; logs `<label> open` with what
    /// recovery found (blocking: call it off the async threads).
    pub fn open(label: &'static str, options: &GalleryOptions) -> Result<LocalShard, GalleryError> {
        let started = Instant::now();
        let (gallery, report) = Gallery::open(
            &options.dir,
            options.store.clone(),
            Matcher::new(),
            options.face_scorer.clone(),
        )?;
        tracing::info!(
            records = gallery.store().count(),
            position = gallery.store().replicated_position(),
            replayed = report.entries_replayed,
            torn_bytes = report.torn_bytes_dropped,
            indexes_to_rebuild = report.companions_missing,
            ms = started.elapsed().as_millis() as u64,
            "{label} open"
        );
        Ok(LocalShard {
            gallery: Arc::new(gallery.with_search(options.search.clone())),
        })
    }

    pub fn gallery(&self) -> &Arc<Gallery> {
        &self.gallery
    }

    /// Prepares every stored record for matching (logs `<label> prepared for matching`). Until
    /// then the first searches would pay for it. Whether it succeeded.
    pub async fn prepare(&self, label: &'static str) -> bool {
        let t0 = Instant::now();
        match self.blocking(|g| g.warm().map_err(ShardError::from)).await {
            Ok(records) => {
                tracing::info!(
                    records,
                    ms = t0.elapsed().as_millis() as u64,
                    "{label} prepared for matching"
                );
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "preparing the {label} for matching failed");
                false
            }
        }
    }

    /// Prepares the records applied since the last call (quietly: a background chore).
    pub async fn prepare_new(&self) {
        if let Err(e) = self.blocking(|g| g.warm().map_err(ShardError::from)).await {
            tracing::warn!(error = %e, "preparing applied records failed; searches prepare them");
        }
    }

    pub async fn insert(&self, record: Record) -> Result<InsertOutcome, ShardError> {
        self.blocking(move |g| Ok(g.insert(record)?)).await
    }

    pub async fn delete(&self, id: String) -> Result<(), ShardError> {
        self.blocking(move |g| Ok(g.delete(&id)?)).await
    }

    /// Applies operations of the shard's replicated log (one group commit).
    pub async fn apply(
        &self,
        ops: Vec<(u64, ReplicatedOp)>,
    ) -> Result<Vec<ReplicatedOutcome>, ShardError> {
        self.blocking(move |g| Ok(g.apply_replicated(ops)?)).await
    }

    /// Waits (at most `patience`) for requests still holding the gallery, then checkpoints it
    /// (a faster next start: less log to replay) and closes it, releasing its directory.
    pub async fn close(self, patience: Duration) {
        let gallery = self.alone(patience).await;
        let _ = tokio::task::spawn_blocking(move || match Arc::try_unwrap(gallery) {
            Ok(g) => {
                if let Err(e) = g.into_store().close() {
                    tracing::warn!(error = %e, "checkpoint at shutdown failed; the log will be replayed at the next start");
                }
            }
            Err(_) => tracing::warn!(
                "requests still running at exit; the log will be replayed at the next start"
            ),
        })
        .await;
    }

    /// Waits (at most `patience`) for requests still holding the gallery, then drops it without
    /// a checkpoint (its directory lock is released: a bootstrap may replace it).
    pub async fn release(self, patience: Duration) {
        let gallery = self.alone(patience).await;
        let _ = tokio::task::spawn_blocking(move || drop(gallery)).await;
    }

    /// The gallery once no request holds it any more, or `patience` has passed.
    async fn alone(self, patience: Duration) -> Arc<Gallery> {
        let gallery = self.gallery;
        let t0 = Instant::now();
        while Arc::strong_count(&gallery) > 1 && t0.elapsed() < patience {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gallery
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Gallery) -> Result<T, ShardError> + Send + 'static,
    ) -> Result<T, ShardError> {
        let gallery = Arc::clone(&self.gallery);
        tokio::task::spawn_blocking(move || f(&gallery))
            .await
            .map_err(|_| ShardError::Task)?
    }
}

impl GalleryShard for LocalShard {
    async fn identify_batch(
        &self,
        queries: Vec<(Probe, IdentifyOptions)>,
    ) -> Vec<Result<Identified, ShardError>> {
        let n = queries.len();
        let all = self
            .blocking(move |g| {
                Ok(g.identify_batch(&queries)
                    .into_iter()
                    .map(|r| r.map_err(ShardError::from))
                    .collect::<Vec<_>>())
            })
            .await;
        all.unwrap_or_else(|_| (0..n).map(|_| Err(ShardError::Task)).collect())
    }

    async fn verify(&self, probe: Probe, id: String) -> Result<Verification, ShardError> {
        self.blocking(move |g| Ok(g.verify(&probe, &id)?)).await
    }

    async fn verify_samples(
        &self,
        probe: Probe,
        reference: Probe,
    ) -> Result<Verification, ShardError> {
        self.blocking(move |g| Ok(g.verify_samples(&probe, &reference)?))
            .await
    }

    async fn get(&self, id: String) -> Result<Option<Record>, ShardError> {
        self.blocking(move |g| g.store().get(&id).map_err(|e| GalleryError::from(e).into()))
            .await
    }

    async fn count(&self) -> Result<u64, ShardError> {
        Ok(self.gallery.store().count())
    }
}
