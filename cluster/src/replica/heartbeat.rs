//! A replica's heartbeat (its state, position and size, for retention and status) and its
//! watch on the shard's trim point.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::shared::Shared;
use crate::catalog::Trim;
use crate::error::ClusterError;
use crate::membership::{self, Heartbeat, ReplicaState};

/// Whether a trim point means this replica may have missed log messages: it has applied less
/// than the purged range, or it was reading inside that range (from `start`) without having
/// been counted by the retention that purged it.
pub(crate) fn missed(trim: &Trim, node: &str, start: u64, applied: u64) -> bool {
    trim.below > applied + 1 || (trim.below > start && !trim.replicas.iter().any(|r| r == node))
}

/// Puts a heartbeat every interval and watches the shard's trim point; says on `gap` when the
/// trim point passed this replica.
pub(crate) async fn heartbeat(
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
            records: shared.shard.gallery().store().count(),
            pending: shared.pending.load(Ordering::Relaxed),
            time_ms: membership::now_ms(),
        };
        let published = membership::publish(shared.catalog.heartbeats(), &beat).await;
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
