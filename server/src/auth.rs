//! Authentication and authorisation of gRPC callers.
//!
//! Why: the engine holds a whole population's biometrics. A bank may verify but must never
//! search the national gallery; an enrollment office may insert and search; only an
//! administrator may delete. So every RPC is checked against a fixed role table before any
//! handler runs, and every handler can see who called it (for the audit log).
//!
//! How:
//! - **Roles** `verify`, `enroll`, `search`, `admin`. They are independent: `admin` does *not*
//!   imply the others (least privilege; give a key several roles if it needs them).
//! - **API keys**: a TOML keys file of `[[key]]` entries (`name`, `sha256` = hex SHA-256 of the
//!   key, `roles`). Keys are 256-bit random (`abis keys add`), so an unsalted hash is enough:
//!   the file reveals nothing that lets one log in. The presented key's hash is compared with
//!   every entry in constant time. Clients send `authorization: Bearer <key>` or
//!   `x-api-key: <key>`.
//! - **Client certificates** (mutual TLS): rustls has already verified the chain against
//!   `tls.client_ca`; the subject common name is looked up in `tls.client_cert_roles`.
//!   An API key, when present, takes precedence over the certificate.
//! - **No credentials configured** (no keys file, no client CA): development mode. Every caller
//!   is `local` with all roles, and the server refuses to listen anywhere but loopback
//!   ([`check_exposure`]); the layer re-checks that each peer address is loopback.
//! - [`AuthLayer`] is a tower layer for `tonic::transport::Server::layer`: it resolves the
//!   [`Caller`], checks [`required_access`] for the method path, inserts the caller into the
//!   request extensions (handlers read it with [`caller`]) and answers UNAUTHENTICATED or
//!   PERMISSION_DENIED itself, optionally recording the denial in the audit log.
//! - Unknown methods of the `abis.v1.Abis` service require `admin` (fail closed: an RPC added to
//!   the proto but not to [`RPC_ACCESS`] is admin-only until someone decides otherwise).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::CertificateDer;
use tonic::Status;

use crate::access::{required_access, rpc_label, Access, Role, RoleError, Roles};
use crate::audit::{AuditRecord, Auditor};
use crate::hex::{decode_hex32, hex};

/// How a caller proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    ApiKey,
    ClientCert,
    /// No credentials configured: loopback-only development mode.
    Local,
}

/// Who is calling, inserted into the request extensions by [`AuthLayer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Key name, `cert:<common name>`, or `local`.
    pub name: String,
    pub roles: Roles,
    pub method: AuthMethod,
}

impl Caller {
    /// Whether the caller may use an RPC with this access rule.
    pub fn may(&self, access: Access) -> bool {
        match access {
            Access::Open => true,
            Access::AnyOf(roles) => roles.iter().any(|r| self.roles.contains(*r)),
        }
    }
}

/// The caller of a request that went through [`AuthLayer`]; UNAUTHENTICATED if there is none
/// (the layer is missing, or the method is open): handlers fail closed.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<&Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .ok_or_else(|| Status::unauthenticated("no authenticated caller"))
}

/// PERMISSION_DENIED unless `caller` satisfies `access`.
pub fn check(caller: &Caller, access: Access) -> Result<(), Status> {
    if caller.may(access) {
        return Ok(());
    }
    let needed = match access {
        Access::Open => String::new(),
        Access::AnyOf(roles) => roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" or "),
    };
    Err(Status::permission_denied(format!(
        "caller lacks the role this RPC requires ({needed})"
    )))
}

/// Errors of the keys file, key generation and exposure checks.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Role(#[from] RoleError),
    #[error("keys file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("keys file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("keys file {path} is writable by group or others (mode {mode:o}); run chmod 600")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("keys file {path} already has a key named {name:?}")]
    DuplicateName { path: PathBuf, name: String },
    #[error("invalid key name {0:?}: 1 to 64 characters of A-Z a-z 0-9 . _ - @")]
    BadName(String),
    #[error("no secure random numbers: {0}")]
    Random(String),
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    key: Vec<KeyEntry>,
}

/// One `[[key]]` entry of the keys file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub name: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    pub roles: Vec<Role>,
}

#[derive(Clone)]
struct StoredKey {
    name: String,
    hash: [u8; 32],
    roles: Roles,
}

/// The API keys a server accepts, as hashes.
#[derive(Clone, Default)]
pub struct KeyStore {
    keys: Vec<StoredKey>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Key names appear in the audit log and in logs: a plain, bounded charset.
pub fn valid_key_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

impl KeyStore {
    /// Reads and validates a keys file. Refuses a file that group or others can write.
    pub fn load(path: &Path) -> Result<KeyStore, AuthError> {
        let io = |source| AuthError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o022 != 0 {
                return Err(AuthError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let text = std::fs::read_to_string(path).map_err(io)?;
        KeyStore::parse(&text, path)
    }

    /// Parses keys file text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<KeyStore, AuthError> {
        let invalid = |message: String| AuthError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let file: KeysFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut keys: Vec<StoredKey> = Vec::with_capacity(file.key.len());
        for (i, entry) in file.key.into_iter().enumerate() {
            let at = format!("key #{} ({:?})", i + 1, entry.name);
            if !valid_key_name(&entry.name) {
                return Err(invalid(format!(
                    "{at}: name must be 1 to 64 characters of A-Z a-z 0-9 . _ - @"
                )));
            }
            let hash = decode_hex32(&entry.sha256)
                .ok_or_else(|| invalid(format!("{at}: sha256 must be 64 hex digits")))?;
            if entry.roles.is_empty() {
                return Err(invalid(format!("{at}: roles must not be empty")));
            }
            if keys.iter().any(|k| k.name == entry.name) {
                return Err(invalid(format!("{at}: duplicate name")));
            }
            if keys.iter().any(|k| k.hash == hash) {
                return Err(invalid(format!("{at}: same key hash as another entry")));
            }
            keys.push(StoredKey {
                name: entry.name,
                hash,
                roles: entry.roles.into_iter().collect(),
            });
        }
        Ok(KeyStore { keys })
    }

    /// Names and roles (never hashes), for `abis keys list`.
    pub fn entries(&self) -> impl Iterator<Item = (&str, Roles)> {
        self.keys.iter().map(|k| (k.name.as_str(), k.roles))
    }

    /// The name and roles of the key, if it is one of ours. Compares the presented key's hash
    /// with every entry in constant time and scans them all, matched or not.
    pub fn authenticate(&self, presented: &str) -> Option<(&str, Roles)> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found: Option<&StoredKey> = None;
        for key in &self.keys {
            if bool::from(key.hash.ct_eq(&hash)) {
                found = Some(key);
            }
        }
        found.map(|k| (k.name.as_str(), k.roles))
    }
}

/// Prefix of generated keys (lets secret scanners recognise leaked keys).
pub const KEY_PREFIX: &str = "abis_";

/// A new random API key: `abis_` + 64 hex digits (32 bytes from the operating system).
pub fn generate_key() -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(format!("{KEY_PREFIX}{}", hex(&bytes)))
}

/// Hex SHA-256 of a key, as stored in the keys file.
pub fn hash_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// Generates a key named `name` with `roles`, appends its hash to the keys file (created with
/// mode 0600 if missing) and returns the key, which is shown once and stored nowhere.
/// Refuses a name the file already has. Not safe against two concurrent `keys add` on one file.
pub fn add_key(path: &Path, name: &str, roles: Roles) -> Result<String, AuthError> {
    if !valid_key_name(name) {
        return Err(AuthError::BadName(name.to_string()));
    }
    if roles.is_empty() {
        return Err(RoleError::None.into());
    }
    let io = |source| AuthError::Io {
        path: path.to_path_buf(),
        source,
    };
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    if let Some(text) = &existing {
        let store = KeyStore::parse(text, path)?;
        if store.keys.iter().any(|k| k.name == name) {
            return Err(AuthError::DuplicateName {
                path: path.to_path_buf(),
                name: name.to_string(),
            });
        }
    }
    let key = generate_key()?;
    let role_list: Vec<String> = roles
        .iter()
        .map(|r| toml::Value::String(r.as_str().to_string()).to_string())
        .collect();
    let mut block = String::new();
    match &existing {
        None => block.push_str("# abis API keys: SHA-256 of each key, never the key itself.\n"),
        Some(text) if !text.is_empty() && !text.ends_with('\n') => block.push('\n'),
        Some(_) => {}
    }
    block.push_str(&format!(
        "\n[[key]]\nname = {}\nsha256 = \"{}\"\nroles = [{}]\n",
        toml::Value::String(name.to_string()),
        hash_key(&key),
        role_list.join(", ")
    ));
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(block.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(key)
}

/// Resolves callers and checks the role table. Build one at start, share it via [`AuthLayer`].
pub struct Authenticator {
    keys: Option<KeyStore>,
    cert_roles: HashMap<String, Roles>,
    mtls: bool,
    access: fn(&str) -> Access,
    audit: Option<Auditor>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys)
            .field("cert_roles", &self.cert_roles.len())
            .field("mtls", &self.mtls)
            .finish()
    }
}

/// Longest credential header value looked at.
const MAX_CREDENTIAL_BYTES: usize = 512;

impl Authenticator {
    /// `keys`: the accepted API keys, if a keys file is configured. `mtls`: whether client
    /// certificates are verified (tls.client_ca set); `cert_roles`: common name → roles. With
    /// neither keys nor mTLS, the authenticator is in loopback-only development mode.
    pub fn new(keys: Option<KeyStore>, mtls: bool, cert_roles: HashMap<String, Roles>) -> Self {
        Authenticator {
            keys,
            cert_roles,
            mtls,
            access: required_access,
            audit: None,
        }
    }

    /// Records denied requests (UNAUTHENTICATED / PERMISSION_DENIED) in the audit log.
    pub fn with_audit(mut self, auditor: Auditor) -> Self {
        self.audit = Some(auditor);
        self
    }

    /// Replaces the role table (tests; a deployment with its own policy).
    #[cfg(test)]
    pub fn with_access_table(mut self, access: fn(&str) -> Access) -> Self {
        self.access = access;
        self
    }

    /// Loopback-only development mode: no credentials configured.
    pub fn is_open_mode(&self) -> bool {
        self.keys.is_none() && !self.mtls
    }

    /// Who is calling: API key (bearer or x-api-key) first, then the client certificate.
    pub fn authenticate(
        &self,
        headers: &http::HeaderMap,
        peer_certs: Option<&[CertificateDer<'static>]>,
        remote: Option<SocketAddr>,
    ) -> Result<Caller, Status> {
        if self.is_open_mode() {
            // check_exposure keeps the listener on loopback; this is the belt to those braces.
            return match remote {
                Some(addr) if !addr.ip().is_loopback() => Err(Status::unauthenticated(
                    "no credentials are configured: only loopback callers are served",
                )),
                _ => Ok(Caller {
                    name: "local".to_string(),
                    roles: Roles::all(),
                    method: AuthMethod::Local,
                }),
            };
        }
        if let Some(key) = presented_key(headers)? {
            let keys = self
                .keys
                .as_ref()
                .ok_or_else(|| Status::unauthenticated("API keys are not accepted here"))?;
            return match keys.authenticate(key) {
                Some((name, roles)) => Ok(Caller {
                    name: name.to_string(),
                    roles,
                    method: AuthMethod::ApiKey,
                }),
                None => Err(Status::unauthenticated("invalid API key")),
            };
        }
        if self.mtls {
            if let Some(cert) = peer_certs.and_then(|c| c.first()) {
                let cn = common_name(cert.as_ref()).ok_or_else(|| {
                    Status::unauthenticated("client certificate has no usable common name")
                })?;
                let roles = self.cert_roles.get(&cn).copied().unwrap_or_default();
                return Ok(Caller {
                    name: format!("cert:{cn}"),
                    roles,
                    method: AuthMethod::ClientCert,
                });
            }
        }
        Err(Status::unauthenticated(
            "credentials required: authorization: Bearer <key>, x-api-key, or a client certificate",
        ))
    }

    /// The whole decision for one request: `Ok(None)` for an open method, `Ok(Some(caller))`
    /// when the caller may call it, else the status to answer.
    pub fn decide<B>(&self, request: &http::Request<B>) -> Result<Option<Caller>, Denied> {
        let path = request.uri().path();
        let access = (self.access)(path);
        if access == Access::Open {
            return Ok(None);
        }
        let ext = request.extensions();
        let tls = ext.get::<TlsConnectInfo<TcpConnectInfo>>();
        let certs = tls.and_then(|t| t.peer_certs());
        let remote = tls
            .map(|t| t.get_ref())
            .or_else(|| ext.get::<TcpConnectInfo>())
            .and_then(|t| t.remote_addr());
        let caller = self
            .authenticate(request.headers(), certs.as_deref().map(|v| &v[..]), remote)
            .map_err(|status| Denied {
                status,
                caller: None,
            })?;
        match check(&caller, access) {
            Ok(()) => Ok(Some(caller)),
            Err(status) => Err(Denied {
                status,
                caller: Some(caller),
            }),
        }
    }

    /// A tower layer for `tonic::transport::Server::builder().layer(...)`.
    pub fn layer(self: &Arc<Self>) -> AuthLayer {
        AuthLayer {
            auth: Arc::clone(self),
        }
    }
}

/// A refused request: the status to answer and, for PERMISSION_DENIED, who was refused.
#[derive(Debug)]
pub struct Denied {
    pub status: Status,
    pub caller: Option<Caller>,
}

/// `tls.client_cert_roles` as role sets.
pub fn cert_role_map(config: &BTreeMap<String, Vec<Role>>) -> HashMap<String, Roles> {
    config
        .iter()
        .map(|(cn, roles)| (cn.clone(), roles.iter().copied().collect()))
        .collect()
}

fn presented_key(headers: &http::HeaderMap) -> Result<Option<&str>, Status> {
    let bad = || Status::unauthenticated("malformed credentials");
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        if value.len() > MAX_CREDENTIAL_BYTES {
            return Err(bad());
        }
        let value = value.to_str().map_err(|_| bad())?;
        let (scheme, key) = value.split_once(' ').ok_or_else(bad)?;
        if !scheme.eq_ignore_ascii_case("bearer") || key.trim().is_empty() {
            return Err(bad());
        }
        return Ok(Some(key.trim()));
    }
    if let Some(value) = headers.get("x-api-key") {
        if value.len() > MAX_CREDENTIAL_BYTES {
            return Err(bad());
        }
        let key = value.to_str().map_err(|_| bad())?.trim();
        if key.is_empty() {
            return Err(bad());
        }
        return Ok(Some(key));
    }
    Ok(None)
}

/// The subject common name of a DER certificate (already verified by rustls). `None` when the
/// structure is not as expected, there is no CN, there are several, or it is not a UTF8String,
/// PrintableString or IA5String. A minimal, bounds-checked DER walk: no panics on any input.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (tag, cert, _) = read_tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, tbs, _) = read_tlv(cert)?;
    if tag != 0x30 {
        return None;
    }
    let mut rest = tbs;
    // Optional explicit [0] version.
    let (tag, _, after) = read_tlv(rest)?;
    if tag == 0xA0 {
        rest = after;
    }
    // serialNumber INTEGER, signature AlgorithmIdentifier, issuer Name, validity.
    for expected in [0x02u8, 0x30, 0x30, 0x30] {
        let (tag, _, after) = read_tlv(rest)?;
        if tag != expected {
            return None;
        }
        rest = after;
    }
    let (tag, mut subject, _) = read_tlv(rest)?;
    if tag != 0x30 {
        return None;
    }
    let mut found: Option<String> = None;
    while !subject.is_empty() {
        let (tag, mut set, after) = read_tlv(subject)?;
        if tag != 0x31 {
            return None;
        }
        subject = after;
        while !set.is_empty() {
            let (tag, atv, after) = read_tlv(set)?;
            if tag != 0x30 {
                return None;
            }
            set = after;
            let (tag, oid, value) = read_tlv(atv)?;
            if tag != 0x06 {
                return None;
            }
            if oid != [0x55, 0x04, 0x03] {
                continue;
            }
            let (tag, text, _) = read_tlv(value)?;
            let text = match tag {
                0x0C | 0x13 | 0x16 => std::str::from_utf8(text).ok()?,
                _ => return None,
            };
            if found.is_some() || text.is_empty() || text.chars().any(char::is_control) {
                return None;
            }
            found = Some(text.to_string());
        }
    }
    found
}

/// One DER tag-length-value: (tag, content, rest). Definite lengths up to 4 bytes only.
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1F == 0x1F {
        return None; // high tag numbers do not occur where we look
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7F) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | b as usize;
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Tower layer: see the module docs.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: Arc::clone(&self.auth),
        }
    }
}

/// The service [`AuthLayer`] wraps around the routes.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, R> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.auth.decide(&request) {
            Ok(Some(caller)) => {
                request.extensions_mut().insert(caller);
                Box::pin(self.inner.call(request))
            }
            Ok(None) => Box::pin(self.inner.call(request)),
            Err(denied) => {
                let rpc = rpc_label(request.uri().path());
                tracing::info!(
                    rpc,
                    code = ?denied.status.code(),
                    caller = denied.caller.as_ref().map(|c| c.name.as_str()).unwrap_or("-"),
                    "request refused"
                );
                let audit = self.auth.audit.clone();
                Box::pin(async move {
                    if let Some(audit) = audit {
                        let who = denied
                            .caller
                            .as_ref()
                            .map(|c| c.name.clone())
                            .unwrap_or_else(|| "anonymous".to_string());
                        let record = AuditRecord::new(who, rpc)
                            .decision("denied")
                            .code(denied.status.code());
                        if let Err(e) = audit.record(record).await {
                            tracing::error!(error = %e, "audit log: recording a denial failed");
                        }
                    }
                    Ok(denied.status.into_http())
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{ABIS_SERVICE_PREFIX, RPC_ACCESS};

    fn store_with(entries: &[(&str, &str, &str)]) -> KeyStore {
        let mut text = String::new();
        for (name, key, roles) in entries {
            let roles: Vec<String> = roles.split(',').map(|r| format!("\"{r}\"")).collect();
            text.push_str(&format!(
                "[[key]]\nname = \"{name}\"\nsha256 = \"{}\"\nroles = [{}]\n",
                hash_key(key),
                roles.join(",")
            ));
        }
        KeyStore::parse(&text, Path::new("keys.toml")).unwrap()
    }

    fn headers(name: &str, value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        h
    }

    fn caller_with(roles: &str) -> Caller {
        Caller {
            name: "t".into(),
            roles: Roles::parse_list(roles).unwrap(),
            method: AuthMethod::ApiKey,
        }
    }

    fn path(m: &str) -> String {
        format!("{ABIS_SERVICE_PREFIX}{m}")
    }

    /// Each role can do exactly what the table says, and nothing else.
    #[test]
    fn each_role_can_do_exactly_what_it_may() {
        let expect: &[(&str, &[&str])] = &[
            ("verify", &["Verify", "Extract", "VerifyDocument"]),
            (
                "enroll",
                &[
                    "Insert",
                    "InsertStream",
                    "Get",
                    "ReferenceCount",
                    "PendingJobs",
                    "Extract",
                ],
            ),
            (
                "search",
                &["Identify", "IdentifyBatch", "ReferenceCount", "PendingJobs"],
            ),
            (
                "admin",
                &[
                    "Delete",
                    "Get",
                    "ReferenceCount",
                    "PendingJobs",
                    "Backup",
                    "StartDeduplication",
                    "GetDeduplication",
                    "ListDuplicates",
                    "CancelDeduplication",
                ],
            ),
        ];
        for (role, allowed) in expect {
            let caller = caller_with(role);
            for (method, _) in RPC_ACCESS {
                let ok = check(&caller, required_access(&path(method))).is_ok();
                assert_eq!(ok, allowed.contains(method), "{role} on {method}");
            }
            // Unknown methods are admin-only.
            let unknown = check(&caller, required_access(&path("Drop"))).is_ok();
            assert_eq!(unknown, *role == "admin");
            let err = check(&caller, required_access("/other.Svc/X"));
            assert_eq!(err.is_ok(), *role == "admin");
        }
        // A bank may verify but must never search.
        let bank = caller_with("verify");
        let denied = check(&bank, required_access(&path("Identify"))).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            required_access("/grpc.health.v1.Health/Check"),
            Access::Open
        );
        assert_eq!(
            required_access("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Access::Open
        );
    }

    #[test]
    fn keys_authenticate_by_hash() {
        let store = store_with(&[("bank", "k1", "verify"), ("office", "k2", "enroll,search")]);
        let (name, roles) = store.authenticate("k2").unwrap();
        assert_eq!(name, "office");
        assert!(roles.contains(Role::Enroll) && roles.contains(Role::Search));
        assert!(!roles.contains(Role::Admin));
        assert!(store.authenticate("k3").is_none());
        assert!(store.authenticate("").is_none());
    }

    #[test]
    fn keys_file_is_validated() {
        let h = hash_key("x");
        let bad = [
            "[[key]]\nname = \"a\"\nsha256 = \"00\"\nroles = [\"verify\"]\n".to_string(),
            format!("[[key]]\nname = \"a\"\nsha256 = \"{h}\"\nroles = [\"root\"]\n"),
            format!("[[key]]\nname = \"a b\"\nsha256 = \"{h}\"\nroles = [\"verify\"]\n"),
            "[[key]]\nname = \"a\"\nroles = [\"verify\"]\n".to_string(),
            format!("[[key]]\nname = \"a\"\nsha256 = \"{h}\"\nroles = [\"verify\"]\nx = 1\n"),
            format!("[[kee]]\nname = \"a\"\nsha256 = \"{h}\"\nroles = [\"verify\"]\n"),
        ];
        for text in &bad {
            assert!(KeyStore::parse(text, Path::new("k")).is_err(), "{text}");
        }
        let good = format!("[[key]]\nname = \"a\"\nsha256 = \"{h}\"\nroles = [\"verify\"]\n");
        assert_eq!(
            KeyStore::parse(&good, Path::new("k")).unwrap().keys.len(),
            1
        );
        let dup = format!(
            "[[key]]\nname = \"a\"\nsha256 = \"{h}\"\nroles = [\"verify\"]\n\
             [[key]]\nname = \"a\"\nsha256 = \"{}\"\nroles = [\"verify\"]\n",
            hash_key("y")
        );
        assert!(KeyStore::parse(&dup, Path::new("k")).is_err());
        let same_hash = format!(
            "[[key]]\nname = \"a\"\nsha256 = \"{h}\"\nroles = [\"verify\"]\n\
             [[key]]\nname = \"b\"\nsha256 = \"{h}\"\nroles = [\"verify\"]\n"
        );
        assert!(KeyStore::parse(&same_hash, Path::new("k")).is_err());
        let empty_roles = format!("[[key]]\nname = \"a\"\nsha256 = \"{h}\"\nroles = []\n");
        assert!(KeyStore::parse(&empty_roles, Path::new("k")).is_err());
        assert!(KeyStore::parse("", Path::new("k")).unwrap().keys.is_empty());
    }

    #[test]
    fn add_key_appends_hash_and_refuses_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.toml");
        let k1 = add_key(&file, "bank-01", Roles::parse_list("verify").unwrap()).unwrap();
        let k2 = add_key(&file, "office", Roles::parse_list("enroll,search").unwrap()).unwrap();
        assert!(k1.starts_with(KEY_PREFIX) && k1.len() == KEY_PREFIX.len() + 64);
        assert_ne!(k1, k2);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains(&k1), "the key itself is never stored");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let store = KeyStore::load(&file).unwrap();
        assert_eq!(store.authenticate(&k1).unwrap().0, "bank-01");
        assert_eq!(store.authenticate(&k2).unwrap().0, "office");
        let dup = add_key(&file, "bank-01", Roles::parse_list("admin").unwrap());
        assert!(matches!(dup, Err(AuthError::DuplicateName { .. })));
        assert!(add_key(&file, "bad name", Roles::all()).is_err());
        assert!(Roles::parse_list("verify,root").is_err());
        assert!(Roles::parse_list("").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn group_writable_keys_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.toml");
        add_key(&file, "a", Roles::all()).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).unwrap();
        assert!(matches!(
            KeyStore::load(&file),
            Err(AuthError::Permissions { .. })
        ));
    }

    #[test]
    fn credentials_are_read_from_headers() {
        let store = store_with(&[("bank", "secret", "verify")]);
        let auth = Authenticator::new(Some(store), false, HashMap::new());
        let ok = auth
            .authenticate(&headers("authorization", "Bearer secret"), None, None)
            .unwrap();
        assert_eq!(ok.name, "bank");
        assert_eq!(ok.method, AuthMethod::ApiKey);
        let ok = auth
            .authenticate(&headers("x-api-key", "secret"), None, None)
            .unwrap();
        assert_eq!(ok.name, "bank");
        for (h, v) in [
            ("authorization", "Bearer wrong"),
            ("authorization", "Basic secret"),
            ("authorization", "secret"),
            ("x-api-key", "nope"),
        ] {
            let e = auth.authenticate(&headers(h, v), None, None).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{h}: {v}");
        }
        let e = auth
            .authenticate(&http::HeaderMap::new(), None, None)
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let long = "x".repeat(MAX_CREDENTIAL_BYTES + 1);
        let e = auth
            .authenticate(&headers("x-api-key", &long), None, None)
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn client_interceptor_sends_a_bearer_key_the_server_accepts() {
        use abis_client::ApiKeyInterceptor;
        use tonic::service::Interceptor;
        let key = generate_key().unwrap();
        let mut interceptor = ApiKeyInterceptor::new(&key).unwrap();
        let request = interceptor.call(tonic::Request::new(())).unwrap();
        let headers = request.metadata().clone().into_headers();
        let store = KeyStore::parse(
            &format!(
                "[[key]]\nname = \"c\"\nsha256 = \"{}\"\nroles = [\"verify\"]\n",
                hash_key(&key)
            ),
            Path::new("k"),
        )
        .unwrap();
        let auth = Authenticator::new(Some(store), false, HashMap::new());
        assert_eq!(auth.authenticate(&headers, None, None).unwrap().name, "c");
        let mut none = ApiKeyInterceptor::optional(None).unwrap();
        let bare = none.call(tonic::Request::new(())).unwrap();
        assert!(bare.metadata().get("authorization").is_none());
        assert!(ApiKeyInterceptor::new("has space").is_err());
        assert!(ApiKeyInterceptor::new("").is_err());
        assert!(
            format!("{interceptor:?}").contains(".."),
            "key never printed"
        );
    }

    #[test]
    fn open_mode_serves_loopback_callers_only() {
        let auth = Authenticator::new(None, false, HashMap::new());
        assert!(auth.is_open_mode());
        let local = auth
            .authenticate(
                &http::HeaderMap::new(),
                None,
                Some("127.0.0.1:4000".parse().unwrap()),
            )
            .unwrap();
        assert_eq!(local.roles, Roles::all());
        let remote = auth.authenticate(
            &http::HeaderMap::new(),
            None,
            Some("10.1.2.3:4000".parse().unwrap()),
        );
        assert_eq!(remote.unwrap_err().code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn common_name_of_generated_certificates() {
        for cn in ["bank-counter-01", "Enrollment Office 7", "é"] {
            let mut params = rcgen::CertificateParams::new(vec!["x.test".into()]).unwrap();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, "Registry");
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            assert_eq!(common_name(cert.der()).as_deref(), Some(cn));
        }
        let mut params = rcgen::CertificateParams::new(vec!["x.test".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()), None);
    }

    #[test]
    fn common_name_never_panics_on_garbage() {
        let mut params = rcgen::CertificateParams::new(vec!["x.test".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "name");
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        // Every truncation and many single-byte corruptions of a real certificate.
        for n in 0..der.len() {
            let _ = common_name(&der[..n]);
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for i in 0..der.len() * 4 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bad = der.clone();
            bad[i % der.len()] = state as u8;
            let _ = common_name(&bad);
            let random: Vec<u8> = (0..(state % 300) as usize)
                .map(|j| (state >> (j % 56)) as u8)
                .collect();
            let _ = common_name(&random);
        }
    }
}
