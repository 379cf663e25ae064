//! What a cluster is: the write-log stream, its number of shards, and the two KV buckets that
//! describe it — all created once by `abis cluster init` and read by every node at start.
//!
//! - stream `ABIS` (configurable at init): subjects `abis.rec.>`, file storage, replicated on
//!   `stream_replicas` NATS servers (3 in production), direct gets allowed (any replica answers
//!   "last message of a subject", which replicas use to know how far to catch up), individual
//!   message deletes denied (only the retention task purges, shard by shard);
//! - KV bucket `abis_cluster`: `spec` (this [`ClusterSpec`], JSON) and `trimmed.<shard>` (a
//!   [`Trim`]: the log position below which the shard's messages may have been purged, and the
//!   replicas whose positions allowed it);
//! - KV bucket `abis_replicas`: one heartbeat per replica (see [`membership`](crate::membership)),
//!   expiring after `replica_grace_s`.
//!
//! The number of shards is fixed at creation: the shard of an id is a hash modulo it, so
//! changing it would move records. Create many more shards than nodes (a node can host several
//! shard replicas) so that growth means moving whole shards, not rehashing.
//!
//! KV buckets are created as streams here rather than with `create_key_value`: async-nats
//! 0.52 asks the account's limits first, and the 2.9 server's answer does not parse.
//!
//! The spec and the trim points are read from the bucket stream's leader, not with the KV
//! client's `get`: that uses direct gets, which any server holding the bucket answers — also one
//! that has just restarted and not caught up, which answers "no such key". A trim point read as
//! 0 that way would let a router take a trimmed id for a free one.

use std::time::Duration;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_nats::jetstream::Context;
use serde::{Deserialize, Serialize};

use crate::error::ClusterError;
use crate::shard::{LOG_PREFIX, MAX_SHARDS};

/// KV bucket of the cluster's description and trim points.
pub const META_BUCKET: &str = "abis_cluster";
/// KV bucket of shard replicas' heartbeats (its name predates the distinction).
pub const HEARTBEATS_BUCKET: &str = "abis_replicas";
/// Default name of the write-log stream.
pub const DEFAULT_STREAM: &str = "ABIS";
const SPEC_KEY: &str = "spec";
/// A JetStream context for routers and replicas. Short timeouts: while a stream has no leader
/// (an election after its server died) requests go unanswered, and a node that waited the
/// client's default 5 s per try would notice the new leader seconds late; a try that times out
/// is simply repeated.
pub fn context(client: async_nats::Client) -> Context {
    async_nats::jetstream::context::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .ack_timeout(Duration::from_secs(5))
        .build(client)
}

/// How long a starting node waits for NATS to answer (servers restarting, elections) before it
/// gives up.
pub const OPEN_PATIENCE: Duration = Duration::from_secs(60);
const SPEC_VERSION: u32 = 1;

/// What retention did to a shard's log: its messages below `below` may be gone. `replicas` are
/// the replicas whose applied positions (all at least `below - 1`) allowed it: any other replica
/// that was reading the log below `below` may have missed messages and must copy a peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trim {
    pub below: u64,
    pub replicas: Vec<String>,
}

/// The cluster's fixed description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    pub version: u32,
    /// The write-log stream.
    pub stream: String,
    /// Number of shards (fixed).
    pub shards: u32,
    /// NATS servers holding each message of the stream and of the KV buckets.
    pub stream_replicas: usize,
    /// A replica whose last heartbeat is older than this no longer holds back trimming of its
    /// shard's log (it bootstraps from a peer when it comes back), in seconds.
    pub replica_grace_s: u64,
}

/// What `abis cluster init` creates.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub stream: String,
    pub shards: u32,
    pub stream_replicas: usize,
    pub replica_grace_s: u64,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            stream: DEFAULT_STREAM.into(),
            shards: 16,
            stream_replicas: 3,
            replica_grace_s: 600,
        }
    }
}

fn check_options(o: &InitOptions) -> Result<(), ClusterError> {
    if !(1..=MAX_SHARDS).contains(&o.shards) {
        return Err(ClusterError::Config(format!(
            "--shards {}: between 1 and {MAX_SHARDS}",
            o.shards
        )));
    }
    if !(1..=5).contains(&o.stream_replicas) {
        return Err(ClusterError::Config(format!(
            "--replicas {}: between 1 and 5 NATS servers",
            o.stream_replicas
        )));
    }
    if !(2..=7 * 86_400).contains(&o.replica_grace_s) {
        return Err(ClusterError::Config(format!(
            "--replica-grace-s {}: between 2 s and 7 days",
            o.replica_grace_s
        )));
    }
    if o.stream.is_empty()
        || !o
            .stream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ClusterError::Config(format!(
            "--stream {:?}: letters, digits, - and _",
            o.stream
        )));
    }
    Ok(())
}

fn log_stream_config(spec: &ClusterSpec) -> stream::Config {
    stream::Config {
        name: spec.stream.clone(),
        description: Some(format!(
            "abis write log: {} shards, subjects {LOG_PREFIX}.<shard>.<key>",
            spec.shards
        )),
        subjects: vec![format!("{LOG_PREFIX}.>")],
        storage: StorageType::File,
        num_replicas: spec.stream_replicas,
        allow_direct: true,
        deny_delete: true,
        deny_purge: false,
        ..Default::default()
    }
}

fn bucket_config(bucket: &str, replicas: usize, max_age: Duration) -> stream::Config {
    // What async-nats' own `create_key_value` would ask for (history 1).
    stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(String::new()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        num_replicas: replicas,
        discard: DiscardPolicy::New,
        ..Default::default()
    }
}

async fn open_bucket(
    js: &Context,
    config: Option<stream::Config>,
    bucket: &str,
) -> Result<kv::Store, ClusterError> {
    if let Some(config) = config {
        js.get_or_create_stream(config)
            .await
            .map_err(|e| ClusterError::nats("creating a KV bucket", e))?;
    }
    js.get_key_value(bucket)
        .await
        .map_err(|e| ClusterError::nats("opening a KV bucket", e))
}

/// Creates the cluster (idempotent: running it again with the same options succeeds and
/// changes nothing; other options for an existing cluster are refused).
pub async fn init(js: &Context, options: &InitOptions) -> Result<ClusterSpec, ClusterError> {
    check_options(options)?;
    let spec = ClusterSpec {
        version: SPEC_VERSION,
        stream: options.stream.clone(),
        shards: options.shards,
        stream_replicas: options.stream_replicas,
        replica_grace_s: options.replica_grace_s,
    };
    let meta = open_bucket(
        js,
        Some(bucket_config(
            META_BUCKET,
            spec.stream_replicas,
            Duration::ZERO,
        )),
        META_BUCKET,
    )
    .await?;
    if let Some(existing) = read_spec(js).await? {
        if existing != spec {
            return Err(ClusterError::Config(format!(
                "the cluster already exists with {} shards, stream {}, {} stream replicas, \
                 replica grace {} s; the number of shards cannot change",
                existing.shards,
                existing.stream,
                existing.stream_replicas,
                existing.replica_grace_s
            )));
        }
    }
    js.get_or_create_stream(log_stream_config(&spec))
        .await
        .map_err(|e| ClusterError::nats("creating the log stream", e))?;
    open_bucket(
        js,
        Some(bucket_config(
            HEARTBEATS_BUCKET,
            spec.stream_replicas,
            Duration::from_secs(spec.replica_grace_s),
        )),
        HEARTBEATS_BUCKET,
    )
    .await?;
    // Last: a cluster whose spec exists is complete.
    let json = serde_json::to_vec(&spec).map_err(|e| ClusterError::Config(e.to_string()))?;
    match meta.create(SPEC_KEY, json.into()).await {
        Ok(_) => Ok(spec),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
            // Another init ran at the same time: fine if it wrote the same.
            match read_spec(js).await? {
                Some(existing) if existing == spec => Ok(spec),
                _ => Err(ClusterError::Config(
                    "another `abis cluster init` created the cluster with other options".into(),
                )),
            }
        }
        Err(e) => Err(ClusterError::nats("writing the cluster spec", e)),
    }
}

/// Whether JetStream said the stream does not exist (rather than failing to answer).
fn stream_missing(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        async_nats::jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// The value of `key` in `bucket` as the bucket stream's leader has it (`None`: no such key,
/// or deleted).
async fn leader_get(
    bucket_stream: &stream::Stream,
    bucket: &str,
    key: &str,
) -> Result<Option<bytes::Bytes>, ClusterError> {
    match bucket_stream
        .get_last_raw_message_by_subject(&format!("$KV.{bucket}.{key}"))
        .await
    {
        Ok(m) => {
            let deleted = m
                .headers
                .get("KV-Operation")
                .is_some_and(|op| op.as_str() != "PUT");
            Ok((!deleted).then_some(m.payload))
        }
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(ClusterError::nats("reading a KV key from its leader", e)),
    }
}

fn parse_spec(bytes: &[u8]) -> Result<ClusterSpec, ClusterError> {
    let spec: ClusterSpec = serde_json::from_slice(bytes).map_err(|e| ClusterError::Spec {
        bucket: META_BUCKET.into(),
        detail: e.to_string(),
    })?;
    if spec.version != SPEC_VERSION || spec.shards == 0 || spec.shards > MAX_SHARDS {
        return Err(ClusterError::Spec {
            bucket: META_BUCKET.into(),
            detail: format!("version {} with {} shards", spec.version, spec.shards),
        });
    }
    Ok(spec)
}

async fn read_spec(js: &Context) -> Result<Option<ClusterSpec>, ClusterError> {
    let meta = js
        .get_stream(format!("KV_{META_BUCKET}"))
        .await
        .map_err(|e| ClusterError::nats("opening the cluster's KV bucket", e))?;
    leader_get(&meta, META_BUCKET, SPEC_KEY)
        .await?
        .map(|b| parse_spec(&b))
        .transpose()
}

/// An opened cluster: its spec, log stream and buckets.
#[derive(Clone)]
pub struct Catalog {
    js: Context,
    spec: ClusterSpec,
    /// The write log.
    stream: stream::Stream,
    /// Bucket `abis_cluster`: the spec and the trim points.
    meta: kv::Store,
    /// The stream behind `meta`, for reads from its leader.
    meta_stream: stream::Stream,
    /// Bucket `abis_replicas`: one heartbeat per shard replica.
    heartbeats: kv::Store,
}

impl Catalog {
    /// Opens the cluster `abis cluster init` created. While NATS cannot answer (a server
    /// restarting, an election) it retries for up to `patience`; a cluster without a spec is
    /// [`ClusterError::NotInitialised`] at once.
    pub async fn open(js: Context, patience: Duration) -> Result<Catalog, ClusterError> {
        let t0 = std::time::Instant::now();
        loop {
            match Catalog::try_open(&js).await {
                Ok(c) => return Ok(c),
                Err(e @ (ClusterError::NotInitialised { .. } | ClusterError::Spec { .. })) => {
                    return Err(e)
                }
                Err(e) if t0.elapsed() >= patience => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "cluster not reachable yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    async fn try_open(js: &Context) -> Result<Catalog, ClusterError> {
        let meta_stream = match js.get_stream(format!("KV_{META_BUCKET}")).await {
            Ok(s) => s,
            Err(e) if stream_missing(&e) => {
                return Err(ClusterError::NotInitialised {
                    bucket: META_BUCKET.into(),
                })
            }
            Err(e) => return Err(ClusterError::nats("opening the cluster's KV bucket", e)),
        };
        let spec = leader_get(&meta_stream, META_BUCKET, SPEC_KEY)
            .await?
            .map(|b| parse_spec(&b))
            .transpose()?
            .ok_or_else(|| ClusterError::NotInitialised {
                bucket: META_BUCKET.into(),
            })?;
        let meta = open_bucket(js, None, META_BUCKET).await?;
        let stream = js
            .get_stream(&spec.stream)
            .await
            .map_err(|e| ClusterError::nats("opening the log stream", e))?;
        let heartbeats = open_bucket(js, None, HEARTBEATS_BUCKET).await?;
        Ok(Catalog {
            js: js.clone(),
            spec,
            stream,
            meta,
            meta_stream,
            heartbeats,
        })
    }

    /// The JetStream context the cluster was opened with.
    pub fn js(&self) -> &Context {
        &self.js
    }

    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// The write-log stream.
    pub fn stream(&self) -> &stream::Stream {
        &self.stream
    }

    /// The bucket of replica heartbeats (see [`membership`](crate::membership)).
    pub fn heartbeats(&self) -> &kv::Store {
        &self.heartbeats
    }

    /// `shard`'s trim point, from the bucket's leader (`below` 0: never trimmed).
    pub async fn trim(&self, shard: u32) -> Result<Trim, ClusterError> {
        Ok(self
            .trim_entry(shard)
            .await?
            .map(|(t, _)| t)
            .unwrap_or_default())
    }

    /// The trim point and its revision in the bucket.
    async fn trim_entry(&self, shard: u32) -> Result<Option<(Trim, u64)>, ClusterError> {
        let subject = format!("$KV.{META_BUCKET}.trimmed.{shard}");
        match self
            .meta_stream
            .get_last_raw_message_by_subject(&subject)
            .await
        {
            Ok(m) => {
                let trim =
                    serde_json::from_slice::<Trim>(&m.payload).map_err(|e| ClusterError::Spec {
                        bucket: META_BUCKET.into(),
                        detail: format!("trimmed.{shard}: {e}"),
                    })?;
                Ok(Some((trim, m.sequence)))
            }
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(ClusterError::nats(
                "reading a trim point from its leader",
                e,
            )),
        }
    }

    /// Raises `shard`'s trim point to `proposed` unless it is already at or above it (never
    /// lowers it: two routers trimming at once cannot move it back). Written before the purge,
    /// so whoever reads the subject after the purge reads this too. Returns the stored point.
    pub async fn raise_trim(&self, shard: u32, proposed: &Trim) -> Result<Trim, ClusterError> {
        let key = format!("trimmed.{shard}");
        let json = serde_json::to_vec(proposed).map_err(|e| ClusterError::Config(e.to_string()))?;
        loop {
            // `Err(None)`: someone else wrote in between.
            let written = match self.trim_entry(shard).await? {
                Some((current, _)) if current.below >= proposed.below => return Ok(current),
                Some((_, revision)) => self
                    .meta
                    .update(&key, json.clone().into(), revision)
                    .await
                    .map(drop)
                    .map_err(|e| {
                        (e.kind() != kv::UpdateErrorKind::WrongLastRevision)
                            .then(|| ClusterError::nats("writing a trim point", e))
                    }),
                None => self
                    .meta
                    .create(&key, json.clone().into())
                    .await
                    .map(drop)
                    .map_err(|e| {
                        (e.kind() != kv::CreateErrorKind::AlreadyExists)
                            .then(|| ClusterError::nats("writing a trim point", e))
                    }),
            };
            match written {
                Ok(()) => return Ok(proposed.clone()),
                Err(None) => continue,
                Err(Some(e)) => return Err(e),
            }
        }
    }

    /// The stream's last sequence, as its leader knows it: every message acknowledged so far is
    /// at or below it.
    pub async fn last_sequence(&self) -> Result<u64, ClusterError> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| ClusterError::nats("reading the log's last sequence", e))?;
        Ok(info.state.last_sequence)
    }

    /// The sequence of `shard`'s last log message (0: none), as the stream leader knows it (a
    /// direct get could be answered by a replica that has not stored the latest acknowledged
    /// messages yet, and read-your-writes depends on this number).
    pub async fn shard_last(&self, shard: u32) -> Result<u64, ClusterError> {
        match self
            .stream
            .get_last_raw_message_by_subject(&crate::shard::log_filter(shard))
            .await
        {
            Ok(m) => Ok(m.sequence),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(e) => Err(ClusterError::nats("reading a shard's last message", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_options_are_checked() {
        assert!(check_options(&InitOptions::default()).is_ok());
        for bad in [
            InitOptions {
                shards: 0,
                ..Default::default()
            },
            InitOptions {
                shards: MAX_SHARDS + 1,
                ..Default::default()
            },
            InitOptions {
                stream_replicas: 0,
                ..Default::default()
            },
            InitOptions {
                replica_grace_s: 1,
                ..Default::default()
            },
            InitOptions {
                stream: "a.b".into(),
                ..Default::default()
            },
        ] {
            assert!(check_options(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_log_stream_is_what_the_design_says() {
        let spec = ClusterSpec {
            version: 1,
            stream: "ABIS".into(),
            shards: 8,
            stream_replicas: 3,
            replica_grace_s: 600,
        };
        let c = log_stream_config(&spec);
        assert_eq!(c.subjects, ["abis.rec.>"]);
        assert_eq!(c.num_replicas, 3);
        assert!(c.allow_direct && c.deny_delete && !c.deny_purge);
        assert_eq!(c.storage, StorageType::File);
        let b = bucket_config(HEARTBEATS_BUCKET, 3, Duration::from_secs(600));
        assert_eq!(b.name, "KV_abis_replicas");
        assert_eq!(b.max_messages_per_subject, 1);
        assert_eq!(b.max_age, Duration::from_secs(600));
    }
}
