//! The write log must not keep every record forever: a retention task (run by routers) purges,
//! shard by shard, what every replica of the shard has applied.
//!
//! Each round (every `interval`), for each shard with at least one replica heartbeat in the
//! `abis_replicas` bucket — i.e. replicas seen within the cluster's replica grace:
//!
//! - `m` = the lowest position those replicas report applied (a replica down for less than the
//!   grace still counts with its last position, and holds trimming back);
//! - `b` = the stream's last sequence as observed at least `min_age` ago: a message younger than
//!   that is never purged, so a router that read a subject's history a moment ago cannot act on
//!   a history that vanished under it (the write path's reads and publish take far less);
//! - the shard's messages at or below `min(m, b)` are purged: first `trimmed.<shard>` is raised
//!   in the `abis_cluster` bucket (a compare-and-set, so it never moves back), naming the
//!   replicas whose positions were counted — routers read it after an empty subject and then
//!   ask a replica — then the purge runs on the filter `abis.rec.<shard>.>`.
//!
//! A shard with no replica seen is never trimmed. A replica that comes back after the grace
//! finds the trim point above its position and copies a peer's store
//! ([`bootstrap`](crate::bootstrap)). One that came back just as retention decided without it
//! (its first heartbeat too late to be counted) finds the trim point above where it started
//! reading without its name on it, and copies a peer too: it cannot prove it read everything
//! before the purge.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::catalog::{Catalog, Trim};
use crate::error::ClusterError;
use crate::membership;
use crate::shard::log_filter;

/// How often and how conservatively to trim.
#[derive(Debug, Clone, Copy)]
pub struct RetentionConfig {
    pub interval: Duration,
    pub min_age: Duration,
}

/// The purge point of one shard: purge its messages below the returned sequence, or nothing.
/// `applied` are the positions its recently seen replicas reported, `boundary` the stream's last
/// sequence `min_age` ago, `done` what was purged before.
pub fn purge_below(applied: &[u64], boundary: u64, done: u64) -> Option<u64> {
    let lowest = *applied.iter().min()?;
    let below = lowest.min(boundary) + 1;
    (below > done.max(1)).then_some(below)
}

/// Runs until `shutdown` turns true.
pub async fn run(catalog: Catalog, config: RetentionConfig, mut shutdown: watch::Receiver<bool>) {
    let shards = catalog.spec().shards as usize;
    let mut done = vec![0u64; shards];
    let mut seen: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if let Err(e) = round(&catalog, config, &mut done, &mut seen).await {
            tracing::warn!(error = %e, "log retention round failed");
        }
    }
}

async fn round(
    catalog: &Catalog,
    config: RetentionConfig,
    done: &mut [u64],
    seen: &mut VecDeque<(Instant, u64)>,
) -> Result<(), ClusterError> {
    let now = Instant::now();
    seen.push_back((now, catalog.last_sequence().await?));
    // Keep the newest sample old enough, and everything younger.
    while seen.len() > 1 && now.duration_since(seen[1].0) >= config.min_age {
        seen.pop_front();
    }
    let Some(&(at, boundary)) = seen.front() else {
        return Ok(());
    };
    if now.duration_since(at) < config.min_age {
        return Ok(());
    }
    let beats = membership::list(catalog.heartbeats()).await?;
    for (shard, done) in done.iter_mut().enumerate() {
        let counted: Vec<&membership::Heartbeat> =
            beats.iter().filter(|b| b.shard as usize == shard).collect();
        let applied: Vec<u64> = counted.iter().map(|b| b.applied).collect();
        let shard = shard as u32;
        let known = (*done).max(catalog.trim(shard).await?.below);
        let Some(below) = purge_below(&applied, boundary, known) else {
            *done = known;
            continue;
        };
        let trim = Trim {
            below,
            replicas: counted.iter().map(|b| b.node.clone()).collect(),
        };
        let stored = catalog.raise_trim(shard, &trim).await?;
        let below = stored.below.min(below);
        let purged = catalog
            .stream()
            .purge()
            .filter(log_filter(shard))
            .sequence(below)
            .await
            .map_err(|e| ClusterError::nats("purging a shard's log", e))?;
        *done = below;
        tracing::info!(shard, below, purged = purged.purged, "shard log trimmed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_points() {
        // No replica seen: never.
        assert_eq!(purge_below(&[], 100, 0), None);
        // The slowest replica and the age boundary both bound it.
        assert_eq!(purge_below(&[40, 90], 100, 0), Some(41));
        assert_eq!(purge_below(&[95, 99], 60, 0), Some(61));
        // Nothing new to purge.
        assert_eq!(purge_below(&[40], 100, 41), None);
        assert_eq!(purge_below(&[0], 100, 0), None);
        assert_eq!(purge_below(&[50], 100, 30), Some(51));
    }
}
