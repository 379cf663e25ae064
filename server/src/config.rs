//! Layered, validated configuration.
//!
//! Why: the same binary runs on a developer's laptop (loopback, no credentials) and in a
//! national registry's data centre (TLS, mTLS, API keys, audit on its own volume). Operators
//! configure it the usual way, and a mistake must stop the server at start with a message that
//! names the key and the file, never be discovered by an attacker later.
//!
//! Layers, later wins:
//! 1. the embedded `server/config/default.toml` (every key documented there);
//! 2. an optional file (`abis serve --config FILE`);
//! 3. environment variables `ABIS__SECTION__KEY[__SUBKEY]` (case-insensitive; e.g.
//!    `ABIS__SERVER__LISTEN`, `ABIS__AUTH__KEYS_FILE`, `ABIS__LIMITS__RPC__IDENTIFY__QUEUE_DEPTH`).
//!    A value takes the type of the default it replaces; for keys without a default, `true`,
//!    `false`, integers and `[...]` arrays are parsed as TOML and anything else is a string.
//!
//! Unknown keys are errors in every layer (a misspelt `keys_flie` must not silently disable
//! authentication). [`Config::validate`] then checks addresses, sizes, that every named file
//! exists, TLS/mTLS consistency and that the listen address is not exposed without credentials
//! ([`check_exposure`]). Hand-rolled over `serde` + `toml` (+ `serde_path_to_error`
//! for the key path in errors): smaller than the `config`/`figment` crates and exactly as strict
//! as wanted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::access::{Role, RPC_ACCESS};

/// The embedded defaults.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "ABIS__";

/// Configuration errors; each names the key and where the bad value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Syntax { origin: String, message: String },
    #[error("{origin}: {key}: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
    #[error("configuration: {key}: {message}")]
    Value { key: String, message: String },
}

fn value_error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        key: key.to_string(),
        message: message.into(),
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub audit: AuditConfig,
    pub logging: LoggingConfig,
    pub metrics: MetricsConfig,
    pub models: ModelsConfig,
    pub store: StoreConfig,
    pub search: SearchConfig,
    pub cluster: ClusterConfig,
    pub document: DocumentConfig,
    pub mosip: crate::mosip::MosipConfig,
    pub adjudication: crate::adjudication::AdjudicationConfig,
    pub dedup: crate::dedup::DedupConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub allow_plaintext_non_loopback: bool,
    pub max_message_bytes: usize,
    pub request_timeout_s: u64,
    pub shutdown_grace_s: u64,
    /// This node's name ("": the host name): audit entries say which node served each call.
    pub node: String,
}

impl ServerConfig {
    /// The configured node name, else the host name, else `abis`.
    pub fn node_name(&self) -> String {
        if !self.node.is_empty() {
            return self.node.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "abis".to_string())
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// CA bundle for client certificates: enables mutual TLS.
    pub client_ca: Option<PathBuf>,
    pub client_cert_optional: bool,
    pub handshake_timeout_s: u64,
    /// Subject common name → roles.
    #[serde(default)]
    pub client_cert_roles: BTreeMap<String, Vec<Role>>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }

    #[cfg(test)]
    pub fn mutual(&self) -> bool {
        self.client_ca.is_some()
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub keys_file: Option<PathBuf>,
}

/// Concurrency and queue of one RPC.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RpcLimit {
    pub max_concurrency: usize,
    pub queue_depth: usize,
}

/// A per-RPC override; unset fields fall back to `limits.default`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RpcLimitOverride {
    pub max_concurrency: Option<usize>,
    pub queue_depth: Option<usize>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub default: RpcLimit,
    /// By RPC name in snake_case (`identify`, `insert_stream`...).
    #[serde(default)]
    pub rpc: BTreeMap<String, RpcLimitOverride>,
}

impl LimitsConfig {
    /// The limit of an RPC by method name (`Identify`) or snake_case name (`identify`).
    pub fn for_rpc(&self, name: &str) -> RpcLimit {
        let key = snake_case(name);
        let o = self.rpc.get(&key).copied().unwrap_or_default();
        RpcLimit {
            max_concurrency: o.max_concurrency.unwrap_or(self.default.max_concurrency),
            queue_depth: o.queue_depth.unwrap_or(self.default.queue_depth),
        }
    }
}

/// `InsertStream` → `insert_stream`.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Default: `<server.data_dir>/audit`.
    pub dir: Option<PathBuf>,
    pub max_file_bytes: u64,
    pub record_denials: bool,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    pub format: LogFormat,
    pub filter: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
}

/// Chip documents of `VerifyDocument` (ICAO 9303 passive authentication).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentConfig {
    /// Directory of CSCA certificates (DER/PEM), ICAO master lists (`.ml`) and CRLs (`.crl`),
    /// read at start; absent: every document fails the chain check.
    pub trust_store: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    pub dir: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Key file that seals the gallery at rest (`abis store keygen`); absent: plaintext.
    pub encryption_key_file: Option<PathBuf>,
    /// MiB of decrypted blocks an encrypted gallery caches (see the engine's `encryption`).
    pub encrypted_cache_mib: u64,
    /// Records kept in the log before a segment (and its index files) is written: bounds the
    /// records whose index entries a restart recomputes.
    pub memtable_max_records: usize,
    /// Which segments merge (see `abis_engine::store::merge`).
    pub merge_policy: MergePolicyName,
    /// Largest merge of the size-tiered policy, in bytes of segments merged.
    pub max_merge_bytes: u64,
    /// Most MiB per second a background merge writes; 0: unthrottled.
    pub merge_write_mib_per_s: u64,
    /// Threads of the flushes' and merges' own pool; 0: half the cores, at least one.
    pub checkpoint_threads: usize,
    /// Niceness of enrolment's index work and of flushes and merges (0-19): searches first.
    pub background_nice: i32,
    /// Keep the images records are enrolled with, for the examiner (`crate::images`).
    pub keep_images: bool,
}

/// `[store] merge_policy`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MergePolicyName {
    /// Segments of similar size merge once `min_merge` are alike; never above `max_merge_bytes`.
    SizeTiered,
    /// Every segment into one above 16 segments (what earlier versions did).
    AllAboveMaxSegments,
}

impl StoreConfig {
    /// The write rate of merges (`None`: unthrottled).
    pub fn merge_write_bytes_per_s(&self) -> Option<u64> {
        (self.merge_write_mib_per_s > 0).then_some(self.merge_write_mib_per_s << 20)
    }

    /// The engine's merge policy these keys name.
    pub fn merge_policy(&self) -> std::sync::Arc<dyn abis_engine::store::MergePolicy> {
        use abis_engine::store::{MergeAllAbove, SizeTiered};
        match self.merge_policy {
            MergePolicyName::SizeTiered => std::sync::Arc::new(SizeTiered {
                max_merge_bytes: self.max_merge_bytes,
                ..SizeTiered::default()
            }),
            MergePolicyName::AllAboveMaxSegments => std::sync::Arc::new(MergeAllAbove {
                max_segments: abis_engine::store::StoreConfig::new(0).max_segments,
            }),
        }
    }
}

/// How 1:N picks the records the full matcher scores (see `abis_engine::gallery::SearchConfig`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    /// Searches over more records than this use the indexes; 0: always; a huge value: never.
    pub index_above: u64,
    /// Records the finger codes pass to the local structures.
    pub code_shortlist: usize,
    /// Records per segment the band tables let the codes rank; 0: scan every record's codes.
    pub band_candidates: usize,
    /// Probes with fewer fingers scan every code instead of the band tables (at least 4).
    pub band_min_fingers: usize,
    /// Records the local structures, and the face scan, each pass to the full matcher.
    pub shortlist: usize,
    /// Probes with at least this many fingers use the ten-print lists below.
    pub ten_print_min_fingers: usize,
    pub ten_print_code_shortlist: usize,
    pub ten_print_shortlist: usize,
    /// Probes with fewer fingers skip the codes.
    pub index_min_fingers: usize,
    /// Records the local similarity sort passes to LSS-R in searches that skip the codes.
    pub local_sort_keep: usize,
    /// Keep every record's prepared templates in memory while searched exhaustively.
    pub retain_prepared: bool,
}

impl SearchConfig {
    pub fn to_engine(&self) -> abis_engine::gallery::SearchConfig {
        abis_engine::gallery::SearchConfig {
            index_above: usize::try_from(self.index_above).unwrap_or(usize::MAX),
            code_shortlist: self.code_shortlist,
            shortlist: self.shortlist,
            ten_print_min_fingers: self.ten_print_min_fingers,
            ten_print_code_shortlist: self.ten_print_code_shortlist,
            ten_print_shortlist: self.ten_print_shortlist,
            index_min_fingers: self.index_min_fingers,
            local_sort_keep: self.local_sort_keep,
            code_stage: match self.band_candidates {
                0 => abis_engine::gallery::CodeStage::Scan,
                band_candidates => abis_engine::gallery::CodeStage::Tables {
                    band_candidates,
                    min_fingers: self.band_min_fingers,
                },
            },
            retain_prepared: self.retain_prepared,
        }
    }
}

/// What this process is in a deployment.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClusterRole {
    /// One process holding the whole gallery (no NATS).
    Standalone,
    /// The gRPC service of a cluster: extraction, validation, audit; writes to the log, reads
    /// from the shards' replicas.
    Router,
    /// One replica of one shard: its own store, fed by the log; no gRPC API but health.
    Replica,
}

/// `[cluster]`: the partitioned, replicated gallery on NATS JetStream (README "Cluster").
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub role: ClusterRole,
    /// NATS servers, comma-separated `nats://HOST:PORT` (or `tls://`).
    pub nats_url: String,
    /// User name of user/password authentication (with `nats_password_file`).
    pub nats_user: Option<String>,
    pub nats_password_file: Option<PathBuf>,
    /// File holding the NATS authorization token (instead of user/password).
    pub nats_token_file: Option<PathBuf>,
    /// CA that signed the NATS servers' certificates: connections then require TLS.
    pub nats_ca_file: Option<PathBuf>,
    /// The shard a replica serves.
    pub shard: Option<u32>,
    /// Budget of a read over the shards (every shard, retries), unless the caller's deadline
    /// is shorter.
    pub request_timeout_ms: u64,
    /// One try of a shard request before another replica is asked.
    pub attempt_timeout_ms: u64,
    /// Budget of a write (through a stream leader election).
    pub write_timeout_ms: u64,
    /// Replica heartbeat interval.
    pub heartbeat_ms: u64,
    /// Routers trim the log of what every replica has applied.
    pub retention: bool,
    pub retention_interval_s: u64,
    /// Log messages younger than this are never trimmed.
    pub retention_min_age_s: u64,
}

impl ClusterConfig {
    /// The NATS connection settings of this node.
    pub fn nats(&self, node: &str) -> abis_cluster::NatsConfig {
        abis_cluster::NatsConfig {
            urls: abis_cluster::NatsConfig::parse_urls(&self.nats_url),
            user: self.nats_user.clone(),
            password_file: self.nats_password_file.clone(),
            token_file: self.nats_token_file.clone(),
            ca_file: self.nats_ca_file.clone(),
            name: node.to_owned(),
        }
    }
}

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "invalid address {s:?}: expected IP:PORT such as 127.0.0.1:50051 or [::1]:50051 \
             (host names are not resolved)"
        ))
    })
}

/// Keys whose values are always strings when they come from the environment (paths that could
/// look like numbers).
const STRING_KEYS: &[&str] = &[
    "cert",
    "key",
    "client_ca",
    "keys_file",
    "dir",
    "data_dir",
    "encryption_key_file",
    "filter",
    "listen",
    "nats_url",
    "nats_user",
    "nats_password_file",
    "nats_token_file",
    "nats_ca_file",
    "trust_store",
];

impl Config {
    /// Defaults ← `file` ← the process environment, validated.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(ENV_PREFIX) {
                continue;
            }
            let value = value.into_string().map_err(|_| ConfigError::Env {
                name: name.to_string(),
                message: "value is not UTF-8".to_string(),
            })?;
            env.push((name.to_string(), value));
        }
        Config::load_from(file, env)
    }

    /// Defaults ← `file` ← `env` (name, value) pairs (only names starting `ABIS__` are used),
    /// validated.
    pub fn load_from<I>(file: Option<&Path>, env: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let config = Config::layered(file, env)?;
        config.validate()?;
        Ok(config)
    }

    /// The merged layers, parsed but not validated.
    pub fn layered<I>(file: Option<&Path>, env: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let defaults: toml::Table =
            toml::from_str(DEFAULT_TOML).map_err(|e| ConfigError::Syntax {
                origin: "built-in defaults".to_string(),
                message: e.to_string(),
            })?;
        let mut merged = defaults.clone();
        to_config(&merged, "built-in defaults")?;
        if let Some(path) = file {
            let origin = format!("config file {}", path.display());
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let layer: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
                origin: origin.clone(),
                message: e.to_string(),
            })?;
            merge(&mut merged, layer);
            to_config(&merged, &origin)?;
        }
        let mut names = Vec::new();
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(n, _)| n.starts_with(ENV_PREFIX))
            .collect();
        env.sort();
        for (name, value) in env {
            let path: Vec<String> = name[ENV_PREFIX.len()..]
                .split("__")
                .map(str::to_ascii_lowercase)
                .collect();
            if path.len() < 2 || path.iter().any(String::is_empty) {
                return Err(ConfigError::Env {
                    name,
                    message: "expected ABIS__SECTION__KEY".to_string(),
                });
            }
            let typed =
                env_value(&defaults, &path, &value).map_err(|message| ConfigError::Env {
                    name: name.clone(),
                    message,
                })?;
            set_path(&mut merged, &path, typed).map_err(|message| ConfigError::Env {
                name: name.clone(),
                message,
            })?;
            names.push(name);
        }
        if names.is_empty() {
            return to_config(&merged, "configuration");
        }
        to_config(
            &merged,
            &format!("environment overrides ({})", names.join(", ")),
        )
    }

    /// Checks values, files and the exposure rule. Messages name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_server()?;
        self.validate_tls()?;
        self.validate_files()?;
        self.validate_limits()?;
        self.validate_observability()?;
        self.validate_cluster()?;
        self.mosip.validate().map_err(|e| value_error("mosip", e))?;
        if self.cluster.role == ClusterRole::Replica {
            if self.mosip.enabled {
                // The adapter calls the service, which runs on routers and standalone nodes.
                return Err(value_error("mosip.enabled", "not on a cluster replica"));
            }
            // A replica serves gRPC health only: no record, no caller, nothing to expose.
            return Ok(());
        }
        let (s, t) = (&self.server, &self.tls);
        let has_credentials = self.auth.keys_file.is_some() || t.client_ca.is_some();
        check_exposure(
            s.listen,
            has_credentials,
            t.enabled(),
            s.allow_plaintext_non_loopback,
        )
        .map_err(|e| value_error("server.listen", e))
    }

    /// `[server]` bounds, the search short lists and the memtable size.
    fn validate_server(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if !(1024..=(1 << 30)).contains(&s.max_message_bytes) {
            return Err(value_error(
                "server.max_message_bytes",
                "must be between 1024 and 1073741824",
            ));
        }
        if !(1..=86_400).contains(&s.request_timeout_s) {
            return Err(value_error(
                "server.request_timeout_s",
                "must be between 1 and 86400",
            ));
        }
        if s.shutdown_grace_s > 3600 {
            return Err(value_error("server.shutdown_grace_s", "at most 3600"));
        }
        if s.data_dir.as_os_str().is_empty() {
            return Err(value_error("server.data_dir", "must not be empty"));
        }
        if !(1..=100_000).contains(&self.search.shortlist) {
            return Err(value_error(
                "search.shortlist",
                "must be between 1 and 100000",
            ));
        }
        if !(4..=10).contains(&self.search.band_min_fingers) {
            return Err(value_error(
                "search.band_min_fingers",
                "must be between 4 and 10 (fewer fingers' bands miss weak mates)",
            ));
        }
        if self.search.band_candidates > 100_000_000 {
            return Err(value_error(
                "search.band_candidates",
                "must be at most 100000000 (0: scan every code)",
            ));
        }
        for (key, v, most) in [
            (
                "search.code_shortlist",
                self.search.code_shortlist,
                1_000_000,
            ),
            (
                "search.ten_print_code_shortlist",
                self.search.ten_print_code_shortlist,
                1_000_000,
            ),
            (
                "search.ten_print_shortlist",
                self.search.ten_print_shortlist,
                100_000,
            ),
            (
                "search.local_sort_keep",
                self.search.local_sort_keep,
                100_000_000,
            ),
        ] {
            if !(1..=most).contains(&v) {
                return Err(value_error(key, format!("must be between 1 and {most}")));
            }
        }
        if !(1..=1_000_000).contains(&self.store.memtable_max_records) {
            return Err(value_error(
                "store.memtable_max_records",
                "must be between 1 and 1000000",
            ));
        }
        if !(0..=19).contains(&self.store.background_nice) {
            return Err(value_error(
                "store.background_nice",
                "must be between 0 (the process's own priority) and 19",
            ));
        }
        if self.store.checkpoint_threads > 1024 {
            return Err(value_error(
                "store.checkpoint_threads",
                "must be between 0 (half the cores) and 1024",
            ));
        }
        if !(1..=1 << 20).contains(&self.store.encrypted_cache_mib) {
            return Err(value_error(
                "store.encrypted_cache_mib",
                "must be between 1 and 1048576",
            ));
        }
        if self.store.max_merge_bytes < 1 << 20 {
            return Err(value_error(
                "store.max_merge_bytes",
                "must be at least 1048576 (1 MiB)",
            ));
        }
        Ok(())
    }

    /// `[tls]`: certificate and key together, mutual TLS only with a server certificate,
    /// certificate roles only with mutual TLS.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let t = &self.tls;
        match (&t.cert, &t.key) {
            (Some(_), None) => {
                return Err(value_error("tls.key", "tls.cert is set but not tls.key"))
            }
            (None, Some(_)) => {
                return Err(value_error("tls.cert", "tls.key is set but not tls.cert"))
            }
            _ => {}
        }
        if t.client_ca.is_some() && t.cert.is_none() {
            return Err(value_error(
                "tls.client_ca",
                "mutual TLS needs a server certificate too (tls.cert, tls.key)",
            ));
        }
        if !t.client_cert_roles.is_empty() && t.client_ca.is_none() {
            return Err(value_error(
                "tls.client_cert_roles",
                "client certificate roles need tls.client_ca (mutual TLS)",
            ));
        }
        for (cn, roles) in &t.client_cert_roles {
            if cn.is_empty() || roles.is_empty() {
                return Err(value_error(
                    "tls.client_cert_roles",
                    format!("{cn:?}: a common name and at least one role are required"),
                ));
            }
        }
        if !(1..=300).contains(&t.handshake_timeout_s) {
            return Err(value_error(
                "tls.handshake_timeout_s",
                "must be between 1 and 300",
            ));
        }
        Ok(())
    }

    /// Every file and directory the configuration names exists.
    fn validate_files(&self) -> Result<(), ConfigError> {
        let t = &self.tls;
        file_exists("tls.cert", t.cert.as_deref())?;
        file_exists("tls.key", t.key.as_deref())?;
        file_exists("tls.client_ca", t.client_ca.as_deref())?;
        file_exists("auth.keys_file", self.auth.keys_file.as_deref())?;
        file_exists(
            "store.encryption_key_file",
            self.store.encryption_key_file.as_deref(),
        )?;
        if let Some(dir) = &self.models.dir {
            if !dir.is_dir() {
                return Err(value_error(
                    "models.dir",
                    format!("directory {} not found", dir.display()),
                ));
            }
        }
        Ok(())
    }

    /// `[limits]`: concurrency at least 1, overrides only for RPCs that exist.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        if l.default.max_concurrency == 0 {
            return Err(value_error(
                "limits.default.max_concurrency",
                "must be at least 1",
            ));
        }
        let known: Vec<String> = RPC_ACCESS.iter().map(|(m, _)| snake_case(m)).collect();
        for (name, o) in &l.rpc {
            if !known.contains(name) {
                return Err(value_error(
                    &format!("limits.rpc.{name}"),
                    format!("unknown RPC; known: {}", known.join(", ")),
                ));
            }
            if o.max_concurrency == Some(0) {
                return Err(value_error(
                    &format!("limits.rpc.{name}.max_concurrency"),
                    "must be at least 1",
                ));
            }
        }
        Ok(())
    }

    /// `[audit]`, `[logging]` and `[metrics]`.
    fn validate_observability(&self) -> Result<(), ConfigError> {
        if self.audit.max_file_bytes < 4096 {
            return Err(value_error("audit.max_file_bytes", "at least 4096"));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.logging.filter) {
            return Err(value_error("logging.filter", e.to_string()));
        }
        if let Some(page) = self.adjudication.listen {
            // Port 0 (the system picks a free port) never clashes.
            let clash = |other: SocketAddr| page.port() != 0 && page == other;
            if clash(self.server.listen) || (self.metrics.enabled && clash(self.metrics.listen)) {
                return Err(value_error(
                    "adjudication.listen",
                    "must differ from server.listen and metrics.listen",
                ));
            }
            let (t, has_credentials) = (&self.tls, self.auth.keys_file.is_some());
            check_exposure(page, has_credentials, t.enabled(), false)
                .map_err(|e| value_error("adjudication.listen", e))?;
        }
        if self.metrics.enabled && self.metrics.listen == self.server.listen {
            return Err(value_error(
                "metrics.listen",
                "must differ from server.listen",
            ));
        }
        Ok(())
    }

    /// `[cluster]`: a replica names its shard; timings in range; NATS settings consistent and
    /// their files present (checked only when this node uses NATS).
    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        if c.role == ClusterRole::Standalone {
            return Ok(());
        }
        if c.role == ClusterRole::Router && self.store.keep_images {
            return Err(value_error(
                "store.keep_images",
                "a router holds no records: images are kept only by a standalone node",
            ));
        }
        if c.role == ClusterRole::Replica && c.shard.is_none() {
            return Err(value_error(
                "cluster.shard",
                "a replica serves one shard: set it",
            ));
        }
        for (key, v, lo, hi) in [
            (
                "cluster.request_timeout_ms",
                c.request_timeout_ms,
                100,
                3_600_000,
            ),
            (
                "cluster.attempt_timeout_ms",
                c.attempt_timeout_ms,
                50,
                3_600_000,
            ),
            (
                "cluster.write_timeout_ms",
                c.write_timeout_ms,
                100,
                3_600_000,
            ),
            ("cluster.heartbeat_ms", c.heartbeat_ms, 100, 600_000),
            (
                "cluster.retention_interval_s",
                c.retention_interval_s,
                1,
                86_400,
            ),
            (
                "cluster.retention_min_age_s",
                c.retention_min_age_s,
                1,
                86_400,
            ),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(value_error(key, format!("must be between {lo} and {hi}")));
            }
        }
        if c.attempt_timeout_ms > c.request_timeout_ms {
            return Err(value_error(
                "cluster.attempt_timeout_ms",
                "must not exceed cluster.request_timeout_ms",
            ));
        }
        c.nats(&self.server.node_name())
            .check()
            .map_err(|e| value_error("cluster", e.to_string()))
    }

    /// Where the audit log lives.
    pub fn audit_dir(&self) -> PathBuf {
        self.audit
            .dir
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("audit"))
    }
}

/// Refuses configurations that would expose the service: without API keys or client
/// certificates only a loopback address may be served, and plaintext on a non-loopback address
/// needs `allow_plaintext_non_loopback` (API keys and biometrics would cross the network in
/// clear). The error says what to set.
pub fn check_exposure(
    listen: SocketAddr,
    has_credentials: bool,
    has_tls: bool,
    allow_plaintext_non_loopback: bool,
) -> Result<(), String> {
    if listen.ip().is_loopback() {
        return Ok(());
    }
    if !has_credentials {
        return Err(format!(
            "server.listen = {listen} is not a loopback address, and no credentials are \
             configured: set auth.keys_file (abis keys add) or tls.client_ca, or listen on \
             127.0.0.1"
        ));
    }
    if !has_tls && !allow_plaintext_non_loopback {
        return Err(format!(
            "server.listen = {listen} is not a loopback address and TLS is off: set tls.cert and \
             tls.key, or server.allow_plaintext_non_loopback = true behind a TLS-terminating proxy"
        ));
    }
    Ok(())
}

fn file_exists(key: &str, path: Option<&Path>) -> Result<(), ConfigError> {
    match path {
        Some(p) if !p.is_file() => Err(value_error(key, format!("file {} not found", p.display()))),
        _ => Ok(()),
    }
}

fn to_config(table: &toml::Table, origin: &str) -> Result<Config, ConfigError> {
    let value = toml::Value::Table(table.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Invalid {
            origin: origin.to_string(),
            key: if key == "." {
                "(top level)".to_string()
            } else {
                key
            },
            message: e.into_inner().to_string(),
        }
    })
}

/// Deep merge: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(l)) => merge(b, l),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn lookup<'a>(table: &'a toml::Table, path: &[String]) -> Option<&'a toml::Value> {
    let (first, rest) = path.split_first()?;
    let value = table.get(first)?;
    if rest.is_empty() {
        return Some(value);
    }
    match value {
        toml::Value::Table(t) => lookup(t, rest),
        _ => None,
    }
}

fn env_value(defaults: &toml::Table, path: &[String], raw: &str) -> Result<toml::Value, String> {
    let parse_literal = |raw: &str| -> Option<toml::Value> {
        let t: toml::Table = toml::from_str(&format!("v = {raw}")).ok()?;
        t.get("v").cloned()
    };
    let leaf = path.last().map(String::as_str).unwrap_or_default();
    match lookup(defaults, path) {
        Some(toml::Value::String(_)) => Ok(toml::Value::String(raw.to_string())),
        Some(toml::Value::Integer(_)) => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| format!("{raw:?} is not an integer")),
        Some(toml::Value::Boolean(_)) => match raw.trim() {
            "true" | "1" => Ok(toml::Value::Boolean(true)),
            "false" | "0" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!("{raw:?} is not true or false")),
        },
        Some(toml::Value::Table(_)) => Err("names a section, not a key".to_string()),
        Some(_) => parse_literal(raw).ok_or_else(|| format!("{raw:?} is not a TOML value")),
        None if STRING_KEYS.contains(&leaf) => Ok(toml::Value::String(raw.to_string())),
        None => Ok(match parse_literal(raw) {
            Some(
                v @ (toml::Value::Boolean(_) | toml::Value::Integer(_) | toml::Value::Array(_)),
            ) => v,
            _ => toml::Value::String(raw.to_string()),
        }),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        return Err("empty key".to_string());
    };
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return Ok(());
    }
    let entry = table
        .entry(first.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match entry {
        toml::Value::Table(t) => set_path(t, rest, value),
        _ => Err(format!("{first} is a value, not a section")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn load(file_text: Option<&str>, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abis.toml");
        if let Some(text) = file_text {
            std::fs::write(&path, text).unwrap();
        }
        Config::load_from(file_text.map(|_| path.as_path()), env(pairs))
    }

    fn message(r: Result<Config, ConfigError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid_and_safe() {
        let c = load(None, &[]).unwrap();
        assert!(c.server.listen.ip().is_loopback());
        assert!(!c.metrics.enabled);
        assert!(!c.tls.enabled());
        assert_eq!(c.logging.format, LogFormat::Text);
        assert_eq!(c.audit_dir(), PathBuf::from("data/audit"));
        assert_eq!(c.limits.for_rpc("Identify").max_concurrency, 2);
        assert_eq!(c.limits.for_rpc("Verify"), c.limits.default);
    }

    #[test]
    fn file_then_environment_override() {
        let c = load(
            Some("[server]\nlisten = \"127.0.0.1:7000\"\n[logging]\nformat = \"json\"\n"),
            &[
                ("ABIS__SERVER__LISTEN", "127.0.0.1:7001"),
                ("ABIS__SERVER__REQUEST_TIMEOUT_S", "5"),
                ("ABIS__METRICS__ENABLED", "true"),
                ("ABIS__LIMITS__RPC__VERIFY__QUEUE_DEPTH", "3"),
                ("ABIS__AUDIT__DIR", "2024"),
                ("ABIS_MODELS_DIR", "ignored: single underscore"),
                ("PATH", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 7001);
        assert_eq!(c.server.request_timeout_s, 5);
        assert_eq!(c.logging.format, LogFormat::Json);
        assert!(c.metrics.enabled);
        assert_eq!(c.limits.for_rpc("Verify").queue_depth, 3);
        assert_eq!(
            c.limits.for_rpc("Verify").max_concurrency,
            c.limits.default.max_concurrency
        );
        assert_eq!(c.audit_dir(), PathBuf::from("2024"));
        // The file's other sections keep their defaults.
        assert_eq!(c.server.data_dir, PathBuf::from("data"));
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_origin() {
        let m = message(load(Some("[server]\nlisen = \"127.0.0.1:1\"\n"), &[]));
        assert!(m.contains("config file") && m.contains("lisen"), "{m}");
        let m = message(load(Some("[serverr]\n"), &[]));
        assert!(m.contains("serverr"), "{m}");
        let m = message(load(None, &[("ABIS__AUTH__KEYS_FLIE", "/k")]));
        assert!(
            m.contains("ABIS__AUTH__KEYS_FLIE") && m.contains("keys_flie"),
            "{m}"
        );
        let m = message(load(
            None,
            &[("ABIS__LIMITS__RPC__IDENTIFI__QUEUE_DEPTH", "1")],
        ));
        assert!(m.contains("limits.rpc.identifi"), "{m}");
        let m = message(load(None, &[("ABIS__SERVER", "x")]));
        assert!(m.contains("ABIS__SERVER"), "{m}");
    }

    #[test]
    fn bad_values_are_named() {
        let m = message(load(None, &[("ABIS__SERVER__LISTEN", "localhost:80")]));
        assert!(
            m.contains("server.listen") && m.contains("localhost:80"),
            "{m}"
        );
        let m = message(load(None, &[("ABIS__SERVER__MAX_MESSAGE_BYTES", "lots")]));
        assert!(m.contains("ABIS__SERVER__MAX_MESSAGE_BYTES"), "{m}");
        let m = message(load(None, &[("ABIS__LOGGING__FORMAT", "xml")]));
        assert!(m.contains("logging.format"), "{m}");
        let m = message(load(
            None,
            &[("ABIS__LIMITS__DEFAULT__MAX_CONCURRENCY", "0")],
        ));
        assert!(m.contains("limits.default.max_concurrency"), "{m}");
        let m = message(load(Some("[server]\nlisten = \n"), &[]));
        assert!(m.contains("config file"), "{m}");
        let m = message(load(None, &[("ABIS__LOGGING__FILTER", "info,[[[")]));
        assert!(m.contains("logging.filter"), "{m}");
    }

    #[test]
    fn missing_files_are_named() {
        let m = message(load(
            None,
            &[("ABIS__AUTH__KEYS_FILE", "/nonexistent/keys.toml")],
        ));
        assert!(
            m.contains("auth.keys_file") && m.contains("/nonexistent/keys.toml"),
            "{m}"
        );
        let m = message(load(
            None,
            &[
                ("ABIS__TLS__CERT", "/nonexistent/c.pem"),
                ("ABIS__TLS__KEY", "/nonexistent/k.pem"),
            ],
        ));
        assert!(
            m.contains("tls.cert") && m.contains("/nonexistent/c.pem"),
            "{m}"
        );
        let m = message(load(None, &[("ABIS__STORE__ENCRYPTION_KEY_FILE", "/nope")]));
        assert!(m.contains("store.encryption_key_file"), "{m}");
        let e = Config::load_from(Some(Path::new("/nonexistent/abis.toml")), env(&[]));
        assert!(matches!(e, Err(ConfigError::Read { .. })));
    }

    #[test]
    fn tls_consistency() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f.pem");
        std::fs::write(&f, "x").unwrap();
        let f = f.to_str().unwrap();
        let m = message(load(None, &[("ABIS__TLS__CERT", f)]));
        assert!(m.contains("tls.key"), "{m}");
        let m = message(load(None, &[("ABIS__TLS__CLIENT_CA", f)]));
        assert!(m.contains("tls.client_ca"), "{m}");
        let m = message(load(
            Some("[tls.client_cert_roles]\n\"bank\" = [\"verify\"]\n"),
            &[],
        ));
        assert!(m.contains("tls.client_cert_roles"), "{m}");
        let m = message(load(
            Some("[tls.client_cert_roles]\n\"bank\" = [\"superuser\"]\n"),
            &[],
        ));
        assert!(
            m.contains("tls.client_cert_roles") && m.contains("superuser"),
            "{m}"
        );
        let c = load(
            Some("[tls.client_cert_roles]\n\"bank\" = [\"verify\"]\n"),
            &[
                ("ABIS__TLS__CERT", f),
                ("ABIS__TLS__KEY", f),
                ("ABIS__TLS__CLIENT_CA", f),
                ("ABIS__SERVER__LISTEN", "0.0.0.0:50051"),
            ],
        )
        .unwrap();
        assert!(c.tls.mutual());
        assert_eq!(c.tls.client_cert_roles["bank"], vec![Role::Verify]);
    }

    #[test]
    fn exposure_is_refused_without_credentials() {
        let m = message(load(None, &[("ABIS__SERVER__LISTEN", "0.0.0.0:50051")]));
        assert!(m.contains("server.listen") && m.contains("loopback"), "{m}");
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys.toml");
        std::fs::write(&keys, "").unwrap();
        let keys = keys.to_str().unwrap();
        let m = message(load(
            None,
            &[
                ("ABIS__SERVER__LISTEN", "0.0.0.0:50051"),
                ("ABIS__AUTH__KEYS_FILE", keys),
            ],
        ));
        assert!(m.contains("TLS"), "{m}");
        load(
            None,
            &[
                ("ABIS__SERVER__LISTEN", "0.0.0.0:50051"),
                ("ABIS__AUTH__KEYS_FILE", keys),
                ("ABIS__SERVER__ALLOW_PLAINTEXT_NON_LOOPBACK", "true"),
            ],
        )
        .unwrap();
    }

    #[test]
    fn cluster_settings_are_checked_for_cluster_roles_only() {
        // Standalone: the [cluster] section is not looked at.
        load(None, &[("ABIS__CLUSTER__NATS_URL", "not a url")]).unwrap();
        let m = message(load(None, &[("ABIS__CLUSTER__ROLE", "replica")]));
        assert!(m.contains("cluster.shard"), "{m}");
        let c = load(
            None,
            &[
                ("ABIS__CLUSTER__ROLE", "replica"),
                ("ABIS__CLUSTER__SHARD", "3"),
                (
                    "ABIS__CLUSTER__NATS_URL",
                    "nats://10.0.0.1:4222,nats://10.0.0.2:4222",
                ),
                // Health only: a replica may listen on any address without credentials.
                ("ABIS__SERVER__LISTEN", "0.0.0.0:50061"),
            ],
        )
        .unwrap();
        assert_eq!(c.cluster.shard, Some(3));
        assert_eq!(c.cluster.nats("r").urls.len(), 2);
        let m = message(load(
            None,
            &[
                ("ABIS__CLUSTER__ROLE", "router"),
                ("ABIS__CLUSTER__NATS_URL", "nats://user:pw@10.0.0.1:4222"),
            ],
        ));
        assert!(m.contains("credentials in a URL"), "{m}");
        let m = message(load(
            None,
            &[
                ("ABIS__CLUSTER__ROLE", "router"),
                ("ABIS__CLUSTER__ATTEMPT_TIMEOUT_MS", "20000"),
            ],
        ));
        assert!(m.contains("cluster.attempt_timeout_ms"), "{m}");
        let m = message(load(
            None,
            &[
                ("ABIS__CLUSTER__ROLE", "router"),
                ("ABIS__CLUSTER__NATS_PASSWORD_FILE", "/nonexistent/pw"),
                ("ABIS__CLUSTER__NATS_USER", "abis"),
            ],
        ));
        assert!(m.contains("/nonexistent/pw"), "{m}");
        let m = message(load(None, &[("ABIS__CLUSTER__ROLE", "coordinator")]));
        assert!(m.contains("cluster.role"), "{m}");
        // A router's listen address follows the exposure rule as before.
        let m = message(load(
            None,
            &[
                ("ABIS__CLUSTER__ROLE", "router"),
                ("ABIS__SERVER__LISTEN", "0.0.0.0:50051"),
            ],
        ));
        assert!(m.contains("server.listen"), "{m}");
    }

    #[test]
    fn snake_names() {
        assert_eq!(snake_case("InsertStream"), "insert_stream");
        assert_eq!(snake_case("ReferenceCount"), "reference_count");
        assert_eq!(snake_case("identify"), "identify");
    }

    #[test]
    fn exposure_rules() {
        let lo: SocketAddr = "127.0.0.1:50051".parse().unwrap();
        let lo6: SocketAddr = "[::1]:50051".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        assert!(check_exposure(lo, false, false, false).is_ok());
        assert!(check_exposure(lo6, false, false, false).is_ok());
        assert!(check_exposure(any, false, true, true).is_err());
        assert!(check_exposure(any, true, false, false).is_err());
        assert!(check_exposure(any, true, false, true).is_ok());
        assert!(check_exposure(any, true, true, false).is_ok());
    }
}
