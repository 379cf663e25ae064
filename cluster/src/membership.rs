//! Who serves which shard: every replica puts a heartbeat into the `abis_replicas` KV bucket
//! (key `<shard>.<node>`) every few seconds. The bucket's `max_age` is the cluster's replica
//! grace, so a replica that stopped longer ago than that disappears from it by itself.
//!
//! Routing does not use this list: requests go to a shard's queue group and NATS picks a live
//! member. The list serves `abis cluster status` (lag, records, state) and retention (the
//! lowest applied position among the replicas seen recently bounds what may be purged).

use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt;

use crate::error::ClusterError;

/// What a replica is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// Opening its store.
    Starting,
    /// Copying a peer's store (its position was below the shard's trim point).
    Bootstrapping,
    /// Applying the log up to where it was when the replica started; not answering yet.
    CatchingUp,
    /// In its shard's queue groups, answering requests.
    Serving,
    /// Stopped applying after an error it cannot get past alone (see its log).
    Failed,
}

/// One replica's heartbeat. Counts and positions only: nothing about any person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: String,
    pub shard: u32,
    pub state: ReplicaState,
    /// Last log position applied to its store.
    pub applied: u64,
    /// Records in its store.
    pub records: u64,
    /// Log messages of its shard received but not yet applied, plus those the server reports
    /// as not yet delivered.
    pub pending: u64,
    /// When it was sent (milliseconds since the Unix epoch).
    pub time_ms: u64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The key of a replica's heartbeat.
pub fn key(shard: u32, node: &str) -> String {
    format!("{shard}.{node}")
}

/// Puts `beat` under its key.
pub async fn publish(bucket: &kv::Store, beat: &Heartbeat) -> Result<(), ClusterError> {
    let json = serde_json::to_vec(beat).map_err(|e| ClusterError::nats("heartbeat", e))?;
    bucket
        .put(key(beat.shard, &beat.node), json.into())
        .await
        .map_err(|e| ClusterError::nats("putting a heartbeat", e))?;
    Ok(())
}

/// Removes a replica's heartbeat (at a clean shutdown, so status does not show it as live).
pub async fn withdraw(bucket: &kv::Store, shard: u32, node: &str) -> Result<(), ClusterError> {
    bucket
        .delete(key(shard, node))
        .await
        .map_err(|e| ClusterError::nats("deleting a heartbeat", e))
}

/// Every heartbeat in the bucket (replicas seen within the grace), by shard then node.
/// Unreadable entries are skipped: they cannot hold back trimming or confuse status.
///
/// The keys come from the bucket stream's subject list (one stream-info request), not from
/// `kv::Store::keys`: that one reads through a consumer that waits until it has seen as many
/// keys as the server counted, and with nats-server 2.9 a heartbeat expiring by `max_age` during
/// the read can leave it waiting forever (nats-io/nats-server#3481) — which hung
/// `abis cluster status` in a test and would stall a router's retention round.
pub async fn list(bucket: &kv::Store) -> Result<Vec<Heartbeat>, ClusterError> {
    let prefix = bucket.prefix.clone();
    let mut subjects = bucket
        .stream
        .info_with_subjects(format!("{prefix}>"))
        .await
        .map_err(|e| ClusterError::nats("listing heartbeats", e))?;
    let mut names = Vec::new();
    while let Some(entry) = subjects.next().await {
        let (subject, _count) = entry.map_err(|e| ClusterError::nats("listing heartbeats", e))?;
        if let Some(name) = subject.strip_prefix(&prefix) {
            names.push(name.to_owned());
        }
    }
    let mut beats = Vec::with_capacity(names.len());
    for name in names {
        // Expired or withdrawn since the list was taken: nothing to read, skipped.
        let Some(bytes) = bucket
            .get(&name)
            .await
            .map_err(|e| ClusterError::nats("reading a heartbeat", e))?
        else {
            continue;
        };
        if let Ok(beat) = serde_json::from_slice::<Heartbeat>(&bytes) {
            if key(beat.shard, &beat.node) == name {
                beats.push(beat);
            }
        }
    }
    beats.sort_by(|a, b| (a.shard, &a.node).cmp(&(b.shard, &b.node)));
    Ok(beats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_are_counts_and_positions() {
        let beat = Heartbeat {
            node: "replica-a".into(),
            shard: 3,
            state: ReplicaState::Serving,
            applied: 42,
            records: 7,
            pending: 0,
            time_ms: 1,
        };
        let json = serde_json::to_string(&beat).unwrap();
        assert_eq!(
            json,
            r#"{"node":"replica-a","shard":3,"state":"serving","applied":42,"records":7,"pending":0,"time_ms":1}"#
        );
        assert_eq!(serde_json::from_str::<Heartbeat>(&json).unwrap(), beat);
        assert_eq!(key(3, "replica-a"), "3.replica-a");
    }
}
