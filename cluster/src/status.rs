//! `abis cluster status`: the log stream, and per shard its last message, trim point and
//! replicas (applied position, lag, records, state, heartbeat age) as JSON.

use async_nats::jetstream::stream;
use serde_json::{json, Value};

use crate::catalog::Catalog;
use crate::error::ClusterError;
use crate::membership::{self, now_ms};

/// The cluster's state as one JSON object.
pub async fn report(catalog: &Catalog) -> Result<Value, ClusterError> {
    let info = catalog
        .stream()
        .get_info()
        .await
        .map_err(|e| ClusterError::nats("reading the log stream", e))?;
    let spec = catalog.spec();
    Ok(json!({
        "stream": {
            "name": spec.stream,
            "messages": info.state.messages,
            "bytes": info.state.bytes,
            "first_sequence": info.state.first_sequence,
            "last_sequence": info.state.last_sequence,
            "servers": servers(&info),
        },
        "shards_total": spec.shards,
        "replica_grace_s": spec.replica_grace_s,
        "shards": shards(catalog).await?,
    }))
}

/// The NATS servers holding the log stream, its leader first.
fn servers(info: &stream::Info) -> Vec<Value> {
    let Some(c) = info.cluster.as_ref() else {
        return Vec::new();
    };
    let mut list = vec![json!({
        "name": c.leader.clone().unwrap_or_default(),
        "leader": true,
        "current": true,
    })];
    list.extend(c.replicas.iter().map(|r| {
        json!({
            "name": r.name,
            "leader": false,
            "current": r.current,
            "lag": r.lag,
        })
    }));
    list
}

/// Per shard: its last message, trim point and replicas (from their heartbeats).
async fn shards(catalog: &Catalog) -> Result<Vec<Value>, ClusterError> {
    let beats = membership::list(catalog.heartbeats()).await?;
    let now = now_ms();
    let mut shards = Vec::new();
    for shard in 0..catalog.spec().shards {
        let last = catalog.shard_last(shard).await?;
        let replicas: Vec<Value> = beats
            .iter()
            .filter(|b| b.shard == shard)
            .map(|b| {
                json!({
                    "node": b.node,
                    "state": b.state,
                    "applied": b.applied,
                    "lag_sequence": last.saturating_sub(b.applied),
                    "pending": b.pending,
                    "records": b.records,
                    "heartbeat_age_ms": now.saturating_sub(b.time_ms),
                })
            })
            .collect();
        shards.push(json!({
            "shard": shard,
            "last_sequence": last,
            "trimmed_below": catalog.trim(shard).await?.below,
            "replicas": replicas,
        }));
    }
    Ok(shards)
}
