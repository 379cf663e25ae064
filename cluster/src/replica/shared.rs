//! What a replica is configured with and what one serving period shares between its tasks
//! (the log reader and applier, the heartbeat, the request handlers, a bootstrap session).
//! A leaf: the replica's parts and [`bootstrap`](crate::bootstrap) use it, it uses neither.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use abis_engine::store::encryption::Keyring;
use async_nats::Client;
use tokio::sync::{watch, Mutex, Semaphore};

use crate::catalog::Catalog;
use crate::local::{GalleryOptions, LocalShard};

/// How a replica runs.
#[derive(Clone)]
pub struct ReplicaConfig {
    /// This replica's name (unique in the cluster): heartbeats, replies, audit entries.
    pub node: String,
    pub shard: u32,
    /// Its gallery (`<data>/gallery`).
    pub gallery: GalleryOptions,
    pub heartbeat: Duration,
    /// Most log messages applied in one group commit.
    pub max_batch: usize,
    /// Searches run at once (each already uses every core).
    pub max_searches: usize,
}

impl ReplicaConfig {
    pub(crate) fn keys(&self) -> Option<&Keyring> {
        self.gallery.store.encryption.as_ref()
    }
}

/// What one serving period of a replica shares between its tasks.
pub(crate) struct Shared {
    pub(crate) config: ReplicaConfig,
    pub(crate) catalog: Catalog,
    pub(crate) client: Client,
    pub(crate) shard: LocalShard,
    /// The store's replicated position after each applied batch.
    pub(crate) applied: watch::Sender<u64>,
    /// Messages of the shard the log server had not delivered yet (heartbeats report it).
    pub(crate) pending: AtomicU64,
    pub(crate) searches: Semaphore,
    /// One bootstrap session at a time.
    pub(crate) serving_bootstrap: Arc<Mutex<()>>,
}

impl Shared {
    pub(crate) fn new(
        config: &ReplicaConfig,
        catalog: &Catalog,
        client: &Client,
        shard: LocalShard,
    ) -> Shared {
        let position = shard.gallery().store().replicated_position();
        Shared {
            config: config.clone(),
            catalog: catalog.clone(),
            client: client.clone(),
            applied: watch::Sender::new(position),
            pending: AtomicU64::new(0),
            searches: Semaphore::new(config.max_searches.max(1)),
            serving_bootstrap: Arc::new(Mutex::new(())),
            shard,
        }
    }
}
