//! Fetching a request's biometrics from MOSIP's datashare (`referenceURL`): one HTTP/1.1 GET over
//! plain TCP or TLS (rustls, with the configured CA or the system's roots), bounded in time and
//! size, retried on connection failures, timeouts and 5xx answers. No redirects are followed.
//!
//! MOSIP's datashare reports its own errors as HTTP 200 with a JSON body holding an `errors`
//! list (`DAT-SER-006`: the share has expired); such a body is an error here, never a CBEFF.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use abis_proto::FailureReason;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;

/// `[mosip]` datashare settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatashareConfig {
    /// PEM CA(s) of the datashare's certificate; none: the system's roots.
    pub ca_file: Option<PathBuf>,
    pub connect_timeout_ms: u64,
    /// Whole fetch (connection, TLS, request, body) of one try.
    pub timeout_ms: u64,
    pub max_bytes: usize,
    /// Further tries after a retryable failure, with doubling pauses from `retry_backoff_ms`.
    pub retries: u32,
    pub retry_backoff_ms: u64,
}

/// Why the biometrics could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("referenceURL is not an http(s) URL with a host")]
    BadUrl,
    #[error("datashare unreachable: {0}")]
    Unreachable(String),
    #[error("datashare answered HTTP {0}")]
    Status(u16),
    #[error("datashare answer exceeds {0} bytes")]
    TooLarge(usize),
    #[error("datashare error {code}")]
    Datashare { code: String },
    #[error("datashare CA file {path}: {detail}")]
    Ca { path: PathBuf, detail: String },
}

impl FetchError {
    /// The MOSIP failure reason of the answer.
    pub fn reason(&self) -> FailureReason {
        match self {
            FetchError::Datashare { code } if code == "DAT-SER-006" => {
                FailureReason::ReferenceUrlExpired
            }
            FetchError::TooLarge(_) => FailureReason::InvalidBiometricFormat,
            FetchError::Ca { .. } => FailureReason::Internal,
            _ => FailureReason::UnableToFetchBiometrics,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            FetchError::Unreachable(_) => true,
            FetchError::Status(code) => *code >= 500,
            _ => false,
        }
    }
}

/// A datashare client (cheap to share).
pub struct Datashare {
    config: DatashareConfig,
    tls: TlsConnector,
}

impl Datashare {
    pub fn new(config: DatashareConfig) -> Result<Datashare, FetchError> {
        let roots = roots(config.ca_file.as_ref())?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Unreachable(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Datashare {
            config,
            tls: TlsConnector::from(Arc::new(tls)),
        })
    }

    /// The body at `url`, retried as configured.
    pub async fn fetch(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let target = Target::parse(url)?;
        let mut pause = Duration::from_millis(self.config.retry_backoff_ms);
        let mut tries_left = self.config.retries;
        loop {
            let budget = Duration::from_millis(self.config.timeout_ms);
            let result = tokio::time::timeout(budget, self.fetch_once(&target))
                .await
                .unwrap_or_else(|_| Err(FetchError::Unreachable("timed out".into())));
            match result {
                Err(e) if e.retryable() && tries_left > 0 => {
                    tries_left -= 1;
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Ok(body) => return datashare_error(&body).map_or(Ok(body), Err),
                Err(e) => return Err(e),
            }
        }
    }

    async fn fetch_once(&self, target: &Target) -> Result<Vec<u8>, FetchError> {
        let unreachable = |e: &dyn std::fmt::Display| FetchError::Unreachable(e.to_string());
        let connect = TcpStream::connect((target.host.as_str(), target.port));
        let tcp = tokio::time::timeout(
            Duration::from_millis(self.config.connect_timeout_ms),
            connect,
        )
        .await
        .map_err(|_| FetchError::Unreachable("connection timed out".into()))?
        .map_err(|e| unreachable(&e))?;
        if target.tls {
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|_| FetchError::BadUrl)?;
            let stream = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| unreachable(&e))?;
            self.get(TokioIo::new(stream), target).await
        } else {
            self.get(TokioIo::new(tcp), target).await
        }
    }

    async fn get<S>(&self, io: TokioIo<S>, target: &Target) -> Result<Vec<u8>, FetchError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let unreachable = |e: &dyn std::fmt::Display| FetchError::Unreachable(e.to_string());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(conn);
        let request = http::Request::get(target.path.as_str())
            .header(http::header::HOST, target.authority.as_str())
            .header(http::header::ACCEPT, "application/xml, */*")
            .body(Empty::<Bytes>::new())
            .map_err(|_| FetchError::BadUrl)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(&e))?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        let max = self.config.max_bytes;
        let body = Limited::new(response.into_body(), max)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    FetchError::TooLarge(max)
                } else {
                    FetchError::Unreachable(e.to_string())
                }
            })?;
        Ok(body.to_bytes().to_vec())
    }
}

/// Where a URL points.
struct Target {
    tls: bool,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, FetchError> {
        let uri: http::Uri = url.trim().parse().map_err(|_| FetchError::BadUrl)?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(FetchError::BadUrl),
        };
        let authority = uri.authority().ok_or(FetchError::BadUrl)?;
        let host = authority.host().trim_matches(['[', ']']).to_string();
        if host.is_empty() {
            return Err(FetchError::BadUrl);
        }
        Ok(Target {
            tls,
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority: authority.as_str().to_string(),
            host,
            path: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string()),
        })
    }
}

/// The datashare's own error in a 200 answer: `{"errors": [{"errorCode": "DAT-SER-006"}]}`.
fn datashare_error(body: &[u8]) -> Option<FetchError> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body[start] != b'{' {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let errors = value.get("errors")?.as_array()?;
    let first = errors.first()?;
    let code = first
        .get("errorCode")
        .and_then(|c| c.as_str())
        .unwrap_or("unknown")
        .chars()
        .take(32)
        .collect();
    Some(FetchError::Datashare { code })
}

fn roots(ca_file: Option<&PathBuf>) -> Result<rustls::RootCertStore, FetchError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut store = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca_err = |detail: String| FetchError::Ca {
                path: path.clone(),
                detail,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| ca_err(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ca_err(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca_err("no certificate".into()));
            }
            for cert in certs {
                store.add(cert).map_err(|e| ca_err(e.to_string()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = store.add(cert);
            }
        }
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::tests::Pki;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn config(ca_file: Option<PathBuf>) -> DatashareConfig {
        DatashareConfig {
            ca_file,
            connect_timeout_ms: 1000,
            timeout_ms: 3000,
            max_bytes: 4096,
            retries: 2,
            retry_backoff_ms: 10,
        }
    }

    /// An HTTPS server on 127.0.0.1 with the PKI's `server` certificate: `/big` is larger than
    /// the limit, `/flaky` answers 503 to its first two requests, anything else is a CBEFF.
    async fn https(pki: &Pki, flaky: Arc<AtomicU32>) -> u16 {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(pki.path("server.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, flaky) = (acceptor.clone(), Arc::clone(&flaky));
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = vec![0u8; 2048];
                    let n = tls.read(&mut head).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&head[..n]).into_owned();
                    let (status, body) = if head.starts_with("GET /big") {
                        (200, vec![b'x'; 10_000])
                    } else if head.starts_with("GET /flaky")
                        && flaky.fetch_add(1, Ordering::SeqCst) < 2
                    {
                        (503, Vec::new())
                    } else {
                        (200, b"<BIR/>".to_vec())
                    };
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.write_all(&body).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn https_with_the_configured_ca_limits_and_retries() {
        let pki = Pki::new();
        let flaky = Arc::new(AtomicU32::new(0));
        let port = https(&pki, Arc::clone(&flaky)).await;
        let share = Datashare::new(config(Some(pki.path("ca.pem")))).unwrap();
        let url = |p: &str| format!("https://localhost:{port}{p}");
        assert_eq!(share.fetch(&url("/doc")).await.unwrap(), b"<BIR/>");
        let big = share.fetch(&url("/big")).await.unwrap_err();
        assert!(matches!(big, FetchError::TooLarge(4096)), "{big:?}");
        assert_eq!(share.fetch(&url("/flaky")).await.unwrap(), b"<BIR/>");
        assert_eq!(flaky.load(Ordering::SeqCst), 3, "two 503s retried");

        // The system roots do not know the test CA: the TLS handshake fails (reason 7).
        let untrusting = Datashare::new(config(None)).unwrap();
        let e = untrusting.fetch(&url("/doc")).await.unwrap_err();
        assert_eq!(e.reason(), FailureReason::UnableToFetchBiometrics, "{e:?}");
        let missing = Datashare::new(config(Some(pki.path("nope.pem"))));
        assert!(matches!(missing, Err(FetchError::Ca { .. })));
    }

    #[test]
    fn urls_and_datashare_errors() {
        let t = Target::parse("https://datashare.example:8443/v1/get/a?b=c").unwrap();
        assert!(t.tls);
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("datashare.example", 8443, "/v1/get/a?b=c")
        );
        let t = Target::parse("http://10.0.0.1/x").unwrap();
        assert_eq!((t.port, t.tls), (80, false));
        assert!(matches!(
            Target::parse("ftp://x/y"),
            Err(FetchError::BadUrl)
        ));
        assert!(matches!(
            Target::parse("not a url"),
            Err(FetchError::BadUrl)
        ));

        let expired = br#"{"id":"mosip.data.share","errors":[{"errorCode":"DAT-SER-006","message":"expired"}],"response":null}"#;
        let e = datashare_error(expired).unwrap();
        assert_eq!(e.reason(), FailureReason::ReferenceUrlExpired);
        let other = br#"{"errors":[{"errorCode":"DAT-SER-001"}]}"#;
        assert_eq!(
            datashare_error(other).unwrap().reason(),
            FailureReason::UnableToFetchBiometrics
        );
        assert!(datashare_error(b"<BIR/>").is_none());
        assert!(datashare_error(br#"{"errors":[]}"#).is_none());
    }
}
