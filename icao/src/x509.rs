//! Certificates and CRLs as passive authentication uses them: decoded with `x509-cert`, with
//! the exact signed bytes (`tbsCertificate`, `tbsCertList`) kept from the input, since a
//! re-encoding could differ from what the issuer signed.

use std::time::SystemTime;

use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::crl::CertificateList;
use x509_cert::Certificate;

use crate::algorithm::{self, VerifyError};
use crate::tlv::Reader;

/// The three parts of a signed X.509 structure: signed bytes, algorithm, signature value.
struct SignedParts {
    tbs: Vec<u8>,
    algorithm: AlgorithmIdentifierOwned,
    signature: Vec<u8>,
}

/// `SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING }`, shared by certificates and CRLs.
fn signed_parts(der: &[u8]) -> Result<SignedParts, String> {
    let outer = Reader::single(der, 0x30).map_err(|e| e.to_string())?;
    let mut fields = outer.children().map_err(|e| e.to_string())?;
    let tbs = fields.expect(0x30).map_err(|e| e.to_string())?;
    let algorithm = fields.expect(0x30).map_err(|e| e.to_string())?;
    let bits = fields.expect(0x03).map_err(|e| e.to_string())?;
    fields.finish().map_err(|e| e.to_string())?;
    let algorithm = AlgorithmIdentifierOwned::from_der(algorithm.raw).map_err(|e| e.to_string())?;
    match bits.value.split_first() {
        Some((0, signature)) => Ok(SignedParts {
            tbs: tbs.raw.to_vec(),
            algorithm,
            signature: signature.to_vec(),
        }),
        _ => Err("signature BIT STRING with unused bits or empty".into()),
    }
}

/// A decoded certificate with its signed parts.
#[derive(Clone)]
pub struct Cert {
    pub cert: Certificate,
    signed: std::sync::Arc<SignedParts>,
}

impl std::fmt::Debug for Cert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cert({})", self.subject())
    }
}

impl Cert {
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let cert = Certificate::from_der(der).map_err(|e| e.to_string())?;
        let signed = signed_parts(der)?;
        Ok(Cert {
            cert,
            signed: std::sync::Arc::new(signed),
        })
    }

    pub fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }

    pub fn issuer_is(&self, issuer: &Cert) -> bool {
        self.cert.tbs_certificate.issuer == issuer.cert.tbs_certificate.subject
    }

    pub fn serial(&self) -> &[u8] {
        self.cert.tbs_certificate.serial_number.as_bytes()
    }

    pub fn not_before(&self) -> SystemTime {
        self.cert
            .tbs_certificate
            .validity
            .not_before
            .to_system_time()
    }

    pub fn not_after(&self) -> SystemTime {
        self.cert
            .tbs_certificate
            .validity
            .not_after
            .to_system_time()
    }

    pub fn valid_at(&self, time: SystemTime) -> bool {
        self.not_before() <= time && time <= self.not_after()
    }

    /// Whether `issuer`'s key made this certificate's signature.
    pub fn verify_issued_by(&self, issuer: &Cert) -> Result<(), VerifyError> {
        let s = &self.signed;
        let key = &issuer.cert.tbs_certificate.subject_public_key_info;
        algorithm::verify(key, &s.algorithm, None, &s.tbs, &s.signature)
    }

    /// The subject key identifier extension's value, if any.
    pub fn subject_key_id(&self) -> Option<Vec<u8>> {
        let ski = const_oid::ObjectIdentifier::new_unwrap("2.5.29.14");
        let extension = self
            .cert
            .tbs_certificate
            .extensions
            .as_ref()?
            .iter()
            .find(|e| e.extn_id == ski)?;
        let inner = Reader::single(extension.extn_value.as_bytes(), 0x04).ok()?;
        Some(inner.value.to_vec())
    }

    pub fn to_der(&self) -> Vec<u8> {
        self.cert.to_der().unwrap_or_default()
    }
}

/// A decoded CRL with its signed parts.
#[derive(Clone)]
pub struct Crl {
    pub list: CertificateList,
    signed: std::sync::Arc<SignedParts>,
}

impl std::fmt::Debug for Crl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crl({})", self.list.tbs_cert_list.issuer)
    }
}

impl Crl {
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let list = CertificateList::from_der(der).map_err(|e| e.to_string())?;
        let signed = signed_parts(der)?;
        Ok(Crl {
            list,
            signed: std::sync::Arc::new(signed),
        })
    }

    /// Whether the CRL names `issuer` and carries its signature.
    pub fn issued_by(&self, issuer: &Cert) -> bool {
        if self.list.tbs_cert_list.issuer != issuer.cert.tbs_certificate.subject {
            return false;
        }
        let s = &self.signed;
        let key = &issuer.cert.tbs_certificate.subject_public_key_info;
        algorithm::verify(key, &s.algorithm, None, &s.tbs, &s.signature).is_ok()
    }

    /// The revocation date and reason of `serial`, if listed.
    pub fn revocation_of(&self, serial: &[u8]) -> Option<(SystemTime, Option<u8>)> {
        let revoked = self.list.tbs_cert_list.revoked_certificates.as_ref()?;
        let entry = revoked
            .iter()
            .find(|r| r.serial_number.as_bytes() == serial)?;
        let reason_oid = const_oid::ObjectIdentifier::new_unwrap("2.5.29.21");
        let reason = entry
            .crl_entry_extensions
            .as_ref()
            .and_then(|exts| exts.iter().find(|e| e.extn_id == reason_oid))
            .and_then(|e| Reader::single(e.extn_value.as_bytes(), 0x0A).ok())
            .and_then(|code| code.value.first().copied());
        Some((entry.revocation_date.to_system_time(), reason))
    }
}

/// An RFC 5280 CRL reason code's name.
pub fn reason_name(code: u8) -> &'static str {
    match code {
        0 => "unspecified",
        1 => "key compromise",
        2 => "CA compromise",
        3 => "affiliation changed",
        4 => "superseded",
        5 => "cessation of operation",
        6 => "certificate hold",
        8 => "remove from CRL",
        9 => "privilege withdrawn",
        10 => "AA compromise",
        _ => "unknown reason",
    }
}

/// A time as RFC 3339 (UTC), for reasons.
pub fn show_time(time: SystemTime) -> String {
    der::DateTime::from_system_time(time)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| "a time outside 1970-9999".into())
}
