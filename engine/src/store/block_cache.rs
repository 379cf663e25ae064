//! A bounded cache of decrypted blocks, shared by every sealed file of an encrypted store.
//!
//! A sealed file that is read in place (templates, local forms, face rows: most of a national
//! gallery's bytes) is decrypted one authenticated block at a time when a search touches it
//! ([`super::encryption`]); this cache keeps recently used blocks so that the records a search
//! reads again (the same candidates for several probe fingers, the full matcher after the local
//! stage) are not decrypted twice, and its byte budget is what bounds the decrypted plaintext an
//! encrypted store holds beyond its resident sections.
//!
//! Eviction is CLOCK (second chance): an entry read since the hand last passed it is kept one
//! more round. Sharded by key so that parallel searches rarely wait on one lock.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Which block: a file instance (see [`BlockCache::file_id`]) and a block index.
type Key = (u64, u64);

/// Most shards; a small budget gets fewer, so that each still holds several blocks.
const SHARDS: usize = 16;
/// Budget per shard below which the cache uses fewer shards.
const MIN_SHARD_BYTES: usize = 1 << 20;

struct Slot {
    data: Arc<[u8]>,
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    slots: HashMap<Key, Slot>,
    hand: VecDeque<Key>,
    bytes: usize,
}

/// See the module docs.
pub(crate) struct BlockCache {
    shards: Vec<Mutex<Shard>>,
    shard_budget: usize,
    next_file: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlockCache({} bytes budget)", self.shard_budget * SHARDS)
    }
}

impl BlockCache {
    /// A cache holding at most about `budget` bytes of blocks.
    pub(crate) fn new(budget: usize) -> BlockCache {
        let shards = (budget / MIN_SHARD_BYTES).clamp(1, SHARDS);
        BlockCache {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            shard_budget: budget / shards,
            next_file: AtomicU64::new(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// A fresh id for an opened file, so blocks of a removed and recreated file of the same
    /// name are never confused with the old one's.
    pub(crate) fn file_id(&self) -> u64 {
        self.next_file.fetch_add(1, Ordering::Relaxed)
    }

    fn shard(&self, key: Key) -> std::sync::MutexGuard<'_, Shard> {
        let h =
            key.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ key.1.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        self.shards[(h >> 32) as usize % self.shards.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Block `key` from the cache, or made by `load` and kept.
    pub(crate) fn get_or_load<E>(
        &self,
        key: Key,
        load: impl FnOnce() -> Result<Arc<[u8]>, E>,
    ) -> Result<Arc<[u8]>, E> {
        if let Some(slot) = self.shard(key).slots.get_mut(&key) {
            slot.referenced = true;
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Arc::clone(&slot.data));
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        // Decrypted outside the lock: two readers of one missing block may both decrypt it.
        let data = load()?;
        let mut shard = self.shard(key);
        if shard.slots.contains_key(&key) || data.len() > self.shard_budget {
            return Ok(data);
        }
        shard.bytes += data.len();
        shard.slots.insert(
            key,
            Slot {
                data: Arc::clone(&data),
                referenced: false,
            },
        );
        shard.hand.push_back(key);
        while shard.bytes > self.shard_budget {
            let Some(k) = shard.hand.pop_front() else {
                break;
            };
            let Some(slot) = shard.slots.get_mut(&k) else {
                continue;
            };
            if slot.referenced {
                slot.referenced = false;
                shard.hand.push_back(k);
            } else if let Some(gone) = shard.slots.remove(&k) {
                shard.bytes -= gone.data.len();
            }
        }
        Ok(data)
    }

    /// (hits, misses) since the cache was made.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Bytes of blocks held now.
    pub(crate) fn held_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).bytes)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: usize, v: u8) -> Result<Arc<[u8]>, ()> {
        Ok(Arc::from(vec![v; n]))
    }

    #[test]
    fn the_cache_stays_within_its_budget_and_returns_what_was_loaded() {
        let cache = BlockCache::new(16 * 4096);
        for k in 0..1000u64 {
            let b = cache.get_or_load((1, k), || block(1024, k as u8)).unwrap();
            assert_eq!(b[0], k as u8);
            assert!(cache.held_bytes() <= 16 * 4096);
        }
        // A block still held is returned without loading.
        let last = cache.get_or_load((1, 999), || Err(())).unwrap();
        assert_eq!(last[0], (999 % 256) as u8);
        assert_eq!(cache.counts().0, 1);
    }

    #[test]
    fn a_block_read_again_survives_a_pass_of_the_hand() {
        let cache = BlockCache::new(4 * 100);
        // Fill, touching key 0 of file 7 after every insert so it is always referenced.
        for k in 0..10_000u64 {
            cache.get_or_load((2, k), || block(100, 1)).unwrap();
            cache.get_or_load((7, 0), || block(100, 2)).unwrap();
        }
        assert!(cache.get_or_load((7, 0), || Err(())).is_ok());
    }

    #[test]
    fn a_failed_load_caches_nothing() {
        let cache = BlockCache::new(1 << 20);
        assert!(cache.get_or_load((1, 1), || Err("bad")).is_err());
        assert_eq!(cache.held_bytes(), 0);
        assert_eq!(cache.get_or_load((1, 1), || block(8, 3)).unwrap()[0], 3);
    }
}
