//! The trust store of passive authentication: the CSCA certificates a bank trusts, from DER or
//! PEM files or ICAO master lists, and the CRLs of those CSCAs.
//!
//! A directory is read by file extension: `.der`, `.cer`, `.crt` and `.pem` hold certificates
//! (PEM files may hold several), `.crl` a CRL (DER or PEM), `.ml` an ICAO CSCA master list (a CMS
//! SignedData around `CscaMasterList`). Other files are ignored. A master list's own signature
//! is not verified: the file is trusted as the operator configured it, like the directory.

use std::path::{Path, PathBuf};

use const_oid::ObjectIdentifier;
use thiserror::Error;

use crate::signed_data::{invalid, parse_signed_data, tlv, CmsError};
use crate::tlv::Reader;
use crate::x509::{Cert, Crl};

const CSCA_MASTER_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.136.1.1.2");
/// A trust store file larger than this is refused (the ICAO master list is about 1 MB).
const MAX_FILE_LEN: u64 = 32 << 20;

/// Why a trust store file could not be used.
#[derive(Debug, Error)]
pub enum TrustError {
    #[error("trust store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("trust store {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// CSCA certificates and CRLs; see the module doc for the directory layout.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    cscas: Vec<Cert>,
    crls: Vec<Crl>,
    require_crl: bool,
}

impl TrustStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every certificate, CRL and master list of `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self, TrustError> {
        let io = |source| TrustError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        paths.sort();
        let mut store = TrustStore::new();
        for path in paths.iter().filter(|p| p.is_file()) {
            store.load_file(path)?;
        }
        Ok(store)
    }

    fn load_file(&mut self, path: &Path) -> Result<(), TrustError> {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let extension = extension.to_ascii_lowercase();
        if !["der", "cer", "crt", "pem", "crl", "ml"].contains(&extension.as_str()) {
            return Ok(());
        }
        let io = |source| TrustError::Io {
            path: path.to_path_buf(),
            source,
        };
        if std::fs::metadata(path).map_err(io)?.len() > MAX_FILE_LEN {
            return Err(TrustError::Invalid {
                path: path.into(),
                reason: "larger than 32 MiB".into(),
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let added = match extension.as_str() {
            "crl" => pem_or_der(&bytes).and_then(|der| self.add_crl_der(&der)),
            "ml" => self.add_master_list(&bytes).map(|_| ()),
            _ => pem_blocks(&bytes)
                .and_then(|blocks| blocks.iter().try_for_each(|der| self.add_csca_der(der))),
        };
        added.map_err(|reason| TrustError::Invalid {
            path: path.into(),
            reason,
        })
    }

    /// Trusts one CSCA certificate (DER).
    pub fn add_csca_der(&mut self, der: &[u8]) -> Result<(), String> {
        self.cscas
            .push(Cert::from_der(der).map_err(|e| format!("certificate: {e}"))?);
        Ok(())
    }

    /// Adds one CRL (DER); it counts only for a CSCA whose key signed it.
    pub fn add_crl_der(&mut self, der: &[u8]) -> Result<(), String> {
        self.crls
            .push(Crl::from_der(der).map_err(|e| format!("CRL: {e}"))?);
        Ok(())
    }

    /// Trusts every CSCA of an ICAO master list; answers how many.
    pub fn add_master_list(&mut self, der: &[u8]) -> Result<usize, String> {
        let certificates = master_list_certificates(der).map_err(|e| format!("master list {e}"))?;
        for der in &certificates {
            self.add_csca_der(der)?;
        }
        Ok(certificates.len())
    }

    /// With `true`, a Document Signer whose CSCA published no CRL here fails revocation.
    pub fn require_crl(mut self, required: bool) -> Self {
        self.require_crl = required;
        self
    }

    pub fn crl_required(&self) -> bool {
        self.require_crl
    }

    pub fn cscas(&self) -> &[Cert] {
        &self.cscas
    }

    pub fn crls(&self) -> &[Crl] {
        &self.crls
    }
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

fn pem_or_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if !is_pem(bytes) {
        return Ok(bytes.to_vec());
    }
    let (_, der) = der::pem::decode_vec(bytes).map_err(|e| format!("PEM: {e}"))?;
    Ok(der)
}

/// Every PEM block of a file, or the file itself when it is DER.
fn pem_blocks(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if !is_pem(bytes) {
        return Ok(vec![bytes.to_vec()]);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "PEM file is not text".to_string())?;
    let end = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    for chunk in text
        .split_inclusive(end)
        .filter(|c| c.contains("-----BEGIN "))
    {
        let start = chunk.find("-----BEGIN ").unwrap_or(0);
        let (_, der) =
            der::pem::decode_vec(&chunk.as_bytes()[start..]).map_err(|e| format!("PEM: {e}"))?;
        blocks.push(der);
    }
    Ok(blocks)
}

/// `CscaMasterList ::= SEQUENCE { version INTEGER, certList SET OF Certificate }`.
fn master_list_certificates(der: &[u8]) -> Result<Vec<Vec<u8>>, CmsError> {
    let content_info = Reader::single(der, 0x30).map_err(tlv("ContentInfo"))?;
    let signed = parse_signed_data(content_info)?;
    if signed.econtent_type != CSCA_MASTER_LIST {
        let reason = format!("{} is not id-icao-cscaMasterList", signed.econtent_type);
        return Err(invalid("eContentType", &signed.econtent, reason));
    }
    let list = signed
        .econtent
        .only_child(0x30)
        .map_err(tlv("CscaMasterList"))?;
    let mut fields = list.children().map_err(tlv("CscaMasterList"))?;
    fields.expect(0x02).map_err(tlv("CscaMasterList version"))?;
    let set = fields
        .expect(0x31)
        .map_err(tlv("CscaMasterList certList"))?;
    let mut certificates = set.children().map_err(tlv("CscaMasterList certList"))?;
    let mut out = Vec::new();
    while let Some(cert) = certificates
        .next_element()
        .map_err(tlv("CscaMasterList certList"))?
    {
        out.push(cert.raw.to_vec());
    }
    Ok(out)
}
