//! Reaching a server: the address, TLS, the API key and message size limits.

use std::path::{Path, PathBuf};

use abis_proto::v1::abis_client::AbisClient;
use abis_proto::v1::adjudication_client::AdjudicationClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::{ApiKeyInterceptor, ClientError};

/// A connected `abis.v1` client that sends the API key (if any) with every call.
pub type Client = AbisClient<InterceptedService<Channel, ApiKeyInterceptor>>;

/// A connected `abis.v1.Adjudication` client (cases), with the API key like [`Client`].
pub type CaseClient = AdjudicationClient<InterceptedService<Channel, ApiKeyInterceptor>>;

/// Everything needed to reach a server.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `host:port` (TLS when `ca` is given, else plaintext) or a URL (`http://…`, `https://…`).
    pub addr: String,
    pub api_key: Option<String>,
    /// CA bundle (PEM) that signed the server's certificate; turns TLS on.
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Server name to check in its certificate (default: the address's host).
    pub domain: Option<String>,
    /// Largest message sent or received.
    pub max_message_bytes: usize,
}

/// The URL for `addr`: kept when it has a scheme, else `https://addr` with TLS and
/// `http://addr` without (grpcurl users type `127.0.0.1:50051`).
fn url(addr: &str, tls: bool) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else if tls {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

/// The endpoint for these options, TLS configured, not yet connected.
pub fn endpoint(options: &ConnectOptions) -> Result<Endpoint, ClientError> {
    let url = url(&options.addr, options.ca.is_some());
    let mut endpoint = Channel::from_shared(url.clone()).map_err(|e| ClientError::Address {
        addr: options.addr.clone(),
        detail: e.to_string(),
    })?;
    if endpoint.uri().host().is_none() {
        return Err(ClientError::Address {
            addr: options.addr.clone(),
            detail: "no host".into(),
        });
    }
    if let Some(ca) = &options.ca {
        let identity = options
            .identity
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path()));
        let tls = tls_config(ca, identity, options.domain.as_deref())?;
        endpoint = endpoint.tls_config(tls).map_err(ClientError::Tls)?;
    } else if url.starts_with("https://") {
        return Err(ClientError::Usage(
            "an https:// address needs --ca (the CA that signed the server's certificate)".into(),
        ));
    }
    Ok(endpoint)
}

/// Connects and returns a client with the API key and message limits applied.
pub async fn connect(options: &ConnectOptions) -> Result<Client, ClientError> {
    let (channel, interceptor) = open(options).await?;
    Ok(AbisClient::with_interceptor(channel, interceptor)
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes))
}

/// [`connect`] for the adjudication service.
pub async fn connect_cases(options: &ConnectOptions) -> Result<CaseClient, ClientError> {
    let (channel, interceptor) = open(options).await?;
    Ok(AdjudicationClient::with_interceptor(channel, interceptor)
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes))
}

async fn open(options: &ConnectOptions) -> Result<(Channel, ApiKeyInterceptor), ClientError> {
    let channel = endpoint(options)?
        .connect()
        .await
        .map_err(|source| ClientError::Connect {
            addr: options.addr.clone(),
            source,
        })?;
    Ok((
        channel,
        ApiKeyInterceptor::optional(options.api_key.as_deref())?,
    ))
}

/// Reads a PEM file and checks that it holds a block of the expected kind, so a swapped or empty
/// file is named in the error instead of failing later in the handshake.
fn read_pem(
    what: &'static str,
    path: &Path,
    kinds: &[&'static str],
) -> Result<Vec<u8>, ClientError> {
    let bytes = std::fs::read(path).map_err(|source| ClientError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    if !kinds
        .iter()
        .any(|k| text.contains(&format!("-----BEGIN {k}-----")))
    {
        return Err(ClientError::Pem {
            what,
            path: path.to_path_buf(),
            kind: kinds[0],
        });
    }
    Ok(bytes)
}

const CERT: &[&str] = &["CERTIFICATE"];
const KEY: &[&str] = &["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];

/// Client TLS: trust `ca` only (the system's roots are not used: a registry runs its own PKI),
/// present `identity` (certificate, key) for mutual TLS, and check the server name `domain`
/// (default: the host of the address).
pub fn tls_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    domain: Option<&str>,
) -> Result<ClientTlsConfig, ClientError> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem(
        "CA certificate",
        ca,
        CERT,
    )?));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            read_pem("client certificate", cert, CERT)?,
            read_pem("client private key", key, KEY)?,
        ));
    }
    if let Some(domain) = domain {
        tls = tls.domain_name(domain);
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(addr: &str) -> ConnectOptions {
        ConnectOptions {
            addr: addr.to_string(),
            api_key: None,
            ca: None,
            identity: None,
            domain: None,
            max_message_bytes: 1 << 20,
        }
    }

    #[test]
    fn host_and_port_without_scheme_is_accepted() {
        for addr in [
            "127.0.0.1:50051",
            "localhost:1",
            "[::1]:50051",
            "http://10.0.0.1:9",
        ] {
            let e = endpoint(&options(addr)).unwrap();
            assert_eq!(e.uri().scheme_str(), Some("http"), "{addr}");
        }
        assert_eq!(url("abis.example:443", true), "https://abis.example:443");
    }

    #[test]
    fn bad_addresses_and_tls_without_a_ca_are_usage_errors() {
        assert!(matches!(
            endpoint(&options("no spaces allowed:1")),
            Err(ClientError::Address { .. })
        ));
        assert!(matches!(
            endpoint(&options("https://abis.example:443")),
            Err(ClientError::Usage(_))
        ));
        let mut with_ca = options("127.0.0.1:1");
        with_ca.ca = Some(PathBuf::from("/nonexistent/ca.pem"));
        assert!(matches!(endpoint(&with_ca), Err(ClientError::Read { .. })));
    }
}
