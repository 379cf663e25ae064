//! TLS and mutual TLS for the gRPC server (rustls via tonic's `tls-ring`); the client side is
//! `abis_client::tls_config`.
//!
//! Why: API keys and biometric images must not cross a network in clear, and a bank's counter
//! application can prove who it is with a client certificate instead of a shared secret. All
//! material comes from PEM files named in the configuration (`tls.cert`, `tls.key`,
//! `tls.client_ca`), read at start so a missing or malformed file stops the server with the
//! file's name in the message.
//!
//! With `tls.client_ca` set the server requires a client certificate chained to that CA (unless
//! `tls.client_cert_optional`, for deployments where some callers use API keys); the
//! certificate's subject common name is mapped to roles by [`crate::auth`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::TlsConfig;

/// Errors reading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path}: {message}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{0}")]
    Config(String),
}

/// Reads a PEM file and checks that it holds at least one block of the expected kind.
fn read_pem(what: &'static str, path: &Path, kinds: &[&str]) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let found = kinds
        .iter()
        .any(|k| text.contains(&format!("-----BEGIN {k}-----")));
    if !found {
        return Err(TlsError::Pem {
            what,
            path: path.to_path_buf(),
            message: format!("no PEM {} block found", kinds.join(" / ")),
        });
    }
    Ok(bytes)
}

const CERT: &[&str] = &["CERTIFICATE"];
const KEY: &[&str] = &["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];

/// The server TLS configuration, or `None` when `tls.cert` is not set (plaintext; the
/// configuration's exposure check keeps that on loopback).
pub fn server_config(config: &TlsConfig) -> Result<Option<ServerTlsConfig>, TlsError> {
    let (cert, key) = match (&config.cert, &config.key) {
        (Some(c), Some(k)) => (c, k),
        (None, None) => {
            if config.client_ca.is_some() {
                return Err(TlsError::Config(
                    "tls.client_ca needs tls.cert and tls.key".to_string(),
                ));
            }
            return Ok(None);
        }
        _ => {
            return Err(TlsError::Config(
                "tls.cert and tls.key must be set together".to_string(),
            ))
        }
    };
    let identity = Identity::from_pem(
        read_pem("server certificate", cert, CERT)?,
        read_pem("server private key", key, KEY)?,
    );
    let mut tls = ServerTlsConfig::new()
        .identity(identity)
        .timeout(Duration::from_secs(config.handshake_timeout_s.max(1)));
    if let Some(ca) = &config.client_ca {
        tls = tls
            .client_ca_root(Certificate::from_pem(read_pem(
                "client CA bundle",
                ca,
                CERT,
            )?))
            .client_auth_optional(config.client_cert_optional);
    }
    Ok(Some(tls))
}

/// The examiner page's TLS (the same `tls.cert` and `tls.key` as gRPC, HTTP/1.1), or `None`
/// when TLS is off. Client certificates are not asked for: the page signs in with an API key.
pub fn page_acceptor(config: &TlsConfig) -> Result<Option<tokio_rustls::TlsAcceptor>, TlsError> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&config.cert, &config.key) else {
        return Ok(None);
    };
    let pem_error = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |e: rustls::pki_types::pem::Error| TlsError::Pem {
            what,
            path,
            message: e.to_string(),
        }
    };
    let certs = CertificateDer::pem_slice_iter(&read_pem("server certificate", cert, CERT)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error("server certificate", cert))?;
    let key = PrivateKeyDer::from_pem_slice(&read_pem("server private key", key, KEY)?)
        .map_err(pem_error("server private key", key))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| TlsError::Config(format!("adjudication page TLS: {e}")))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(
        tls,
    ))))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};
    use std::net::SocketAddr;
    use std::sync::Arc;

    use abis_client::tls_config as client_config;
    use tonic::transport::{Channel, ClientTlsConfig, Server};
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    use crate::access::{Access, Role, Roles};
    use crate::auth::{Authenticator, KeyStore};

    /// Throwaway PKI: a CA, a server certificate for localhost / 127.0.0.1, and client
    /// certificates by common name, written as PEM files.
    pub(crate) struct Pki {
        pub dir: tempfile::TempDir,
        ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    }

    impl Pki {
        pub(crate) fn new() -> Pki {
            let dir = tempfile::tempdir().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "abis test CA");
            let ca =
                rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                    .unwrap();
            std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
            let pki = Pki { dir, ca };
            pki.issue("server", "localhost", &["localhost", "127.0.0.1"]);
            pki
        }

        /// Writes `<name>.pem` and `<name>.key` for a certificate with this CN and SANs.
        pub(crate) fn issue(&self, name: &str, cn: &str, sans: &[&str]) {
            let mut params = rcgen::CertificateParams::new(
                sans.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .unwrap();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &*self.ca).unwrap();
            std::fs::write(self.path(&format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(self.path(&format!("{name}.key")), key.serialize_pem()).unwrap();
        }

        pub(crate) fn path(&self, file: &str) -> PathBuf {
            self.dir.path().join(file)
        }

        pub(crate) fn tls_config(&self, mutual: bool) -> TlsConfig {
            TlsConfig {
                cert: Some(self.path("server.pem")),
                key: Some(self.path("server.key")),
                client_ca: mutual.then(|| self.path("ca.pem")),
                client_cert_optional: false,
                handshake_timeout_s: 5,
                client_cert_roles: BTreeMap::new(),
            }
        }

        pub(crate) fn client(&self, identity: Option<&str>) -> ClientTlsConfig {
            let cert = identity.map(|n| {
                (
                    self.path(&format!("{n}.pem")),
                    self.path(&format!("{n}.key")),
                )
            });
            client_config(
                &self.path("ca.pem"),
                cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
                Some("localhost"),
            )
            .unwrap()
        }
    }

    /// Health checks need `verify` in these tests, so the auth layer decides them.
    fn health_needs_verify(path: &str) -> Access {
        if path.starts_with("/grpc.health.v1.Health/") {
            Access::AnyOf(&[Role::Verify])
        } else {
            crate::access::required_access(path)
        }
    }

    /// Serves the health service on 127.0.0.1:0 with TLS and an optional auth layer.
    async fn serve(tls: ServerTlsConfig, auth: Option<Arc<Authenticator>>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let mut builder = Server::builder().tls_config(tls).unwrap();
        tokio::spawn(async move {
            let _keep = reporter;
            match auth {
                Some(auth) => builder
                    .layer(auth.layer())
                    .add_service(health)
                    .serve_with_incoming(incoming)
                    .await
                    .unwrap(),
                None => builder
                    .add_service(health)
                    .serve_with_incoming(incoming)
                    .await
                    .unwrap(),
            }
        });
        addr
    }

    async fn check(
        addr: SocketAddr,
        tls: ClientTlsConfig,
        key: Option<&str>,
    ) -> Result<ServingStatus, tonic::Status> {
        let channel = Channel::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?;
        let mut client = HealthClient::new(channel);
        let mut request = tonic::Request::new(HealthCheckRequest::default());
        if let Some(key) = key {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {key}").parse().unwrap());
        }
        let response = client.check(request).await?;
        Ok(response.into_inner().status())
    }

    #[tokio::test]
    async fn tls_handshake_and_health_check() {
        let pki = Pki::new();
        let tls = server_config(&pki.tls_config(false)).unwrap().unwrap();
        let addr = serve(tls, None).await;
        let status = check(addr, pki.client(None), None).await.unwrap();
        assert_eq!(status, ServingStatus::Serving);

        // A client that trusts another CA refuses the server.
        let other = Pki::new();
        assert!(check(addr, other.client(None), None).await.is_err());
    }

    #[tokio::test]
    async fn mutual_tls_requires_a_client_certificate() {
        let pki = Pki::new();
        pki.issue("bank", "bank-counter-01", &["bank.test"]);
        let tls = server_config(&pki.tls_config(true)).unwrap().unwrap();
        let addr = serve(tls, None).await;
        assert_eq!(
            check(addr, pki.client(Some("bank")), None).await.unwrap(),
            ServingStatus::Serving
        );
        // No certificate: the handshake is refused.
        assert!(check(addr, pki.client(None), None).await.is_err());
        // A certificate from another CA: refused too.
        let other = Pki::new();
        other.issue("rogue", "bank-counter-01", &["bank.test"]);
        let rogue = client_config(
            &pki.path("ca.pem"),
            Some((&other.path("rogue.pem"), &other.path("rogue.key"))),
            Some("localhost"),
        )
        .unwrap();
        assert!(check(addr, rogue, None).await.is_err());
    }

    #[tokio::test]
    async fn client_certificate_common_name_maps_to_roles() {
        let pki = Pki::new();
        pki.issue("bank", "bank-counter-01", &["bank.test"]);
        pki.issue("stranger", "someone-else", &["x.test"]);
        let mut cert_roles = HashMap::new();
        cert_roles.insert(
            "bank-counter-01".to_string(),
            Roles::parse_list("verify").unwrap(),
        );
        let mut config = pki.tls_config(true);
        config.client_cert_optional = true;
        let keys = KeyStore::parse(
            &format!(
                "[[key]]\nname = \"ops\"\nsha256 = \"{}\"\nroles = [\"verify\"]\n",
                crate::auth::hash_key("k-ops")
            ),
            Path::new("keys.toml"),
        )
        .unwrap();
        let auth = Arc::new(
            Authenticator::new(Some(keys), true, cert_roles).with_access_table(health_needs_verify),
        );
        let addr = serve(server_config(&config).unwrap().unwrap(), Some(auth)).await;

        assert!(check(addr, pki.client(Some("bank")), None).await.is_ok());
        let denied = check(addr, pki.client(Some("stranger")), None)
            .await
            .unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        // Optional client certificate: an API key instead works, a wrong key does not.
        assert!(check(addr, pki.client(None), Some("k-ops")).await.is_ok());
        let e = check(addr, pki.client(None), Some("k-wrong"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let e = check(addr, pki.client(None), None).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }

    /// The layer stack as serve.rs composes it: metrics → auth (auditing denials) → limits →
    /// routes, over TLS, with the Server's request timeout.
    #[tokio::test]
    async fn full_stack_metrics_auth_limits_audit_over_tls() {
        use crate::audit::{verify_dir, AuditOptions, Auditor};
        use crate::config::{LimitsConfig, RpcLimit};
        use crate::limits::Limiter;
        use crate::metrics::Metrics;

        let pki = Pki::new();
        let audit_dir = pki.path("audit");
        let auditor = Auditor::open(&audit_dir, AuditOptions::default()).unwrap();
        let keys = KeyStore::parse(
            &format!(
                "[[key]]\nname = \"bank\"\nsha256 = \"{}\"\nroles = [\"verify\"]\n",
                crate::auth::hash_key("k-bank")
            ),
            Path::new("keys.toml"),
        )
        .unwrap();
        let authenticator = Arc::new(
            Authenticator::new(Some(keys), false, HashMap::new())
                .with_access_table(health_needs_verify)
                .with_audit(auditor.clone()),
        );
        let limits = LimitsConfig {
            default: RpcLimit {
                max_concurrency: 4,
                queue_depth: 4,
            },
            rpc: Default::default(),
        };
        let limiter = Arc::new(Limiter::new(&limits).with_max_wait(Duration::from_secs(5)));
        let metrics = Metrics::new();
        {
            let limiter = Arc::clone(&limiter);
            metrics.set_queue_depth_source(move || limiter.queued());
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let mut builder = Server::builder().timeout(Duration::from_secs(5));
        if let Some(tls) = server_config(&pki.tls_config(false)).unwrap() {
            builder = builder.tls_config(tls).unwrap();
        }
        let server = builder
            .layer(metrics.layer())
            .layer(authenticator.layer())
            .layer(limiter.layer())
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(async move {
            let _keep = reporter;
            server.await.unwrap();
        });

        assert!(check(addr, pki.client(None), Some("k-bank")).await.is_ok());
        let e = check(addr, pki.client(None), None).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let text = metrics.render();
        assert!(
            text.contains("abis_rpc_requests_total{rpc=\"health\",code=\"OK\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("abis_rpc_requests_total{rpc=\"health\",code=\"UNAUTHENTICATED\"} 1"),
            "{text}"
        );
        let report = verify_dir(&audit_dir).unwrap();
        assert_eq!(report.entries, 1, "the denial was audited");
        let log =
            std::fs::read_to_string(audit_dir.join("audit-00000000000000000001.jsonl")).unwrap();
        assert!(log.contains("\"caller\":\"anonymous\"") && log.contains("UNAUTHENTICATED"));
    }

    #[test]
    fn missing_and_malformed_files_are_named() {
        let pki = Pki::new();
        let mut config = pki.tls_config(false);
        config.key = Some(pki.path("nope.key"));
        let e = server_config(&config).unwrap_err().to_string();
        assert!(e.contains("nope.key"), "{e}");
        config.key = Some(pki.path("ca.pem"));
        let e = server_config(&config).unwrap_err().to_string();
        assert!(e.contains("private key") && e.contains("ca.pem"), "{e}");
        config.cert = None;
        assert!(server_config(&config).is_err());
        config.key = None;
        assert!(server_config(&config).unwrap().is_none());
        let e = client_config(&pki.path("server.key"), None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.key"), "{e}");
    }
}
