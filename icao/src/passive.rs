//! Passive authentication (ICAO Doc 9303 part 11 §5.1, PKI in part 12): four checks, each
//! answered with its own reason so that a counter can tell a forged card from a revoked signer.
//!
//! 1. **signature** — the Document Signer's signature over the signed attributes, whose
//!    message-digest attribute must equal the hash of the encapsulated LDSSecurityObject;
//! 2. **chain** — the Document Signer certificate is signed by a CSCA of the trust store, the
//!    CSCA is valid now, and the Document Signer was valid *when it signed*. Doc 9303 part 12
//!    (PKI for MRTDs, key management) separates a Document Signer's short private key usage
//!    period from the validity of the documents it signs, which stay valid for years: a card
//!    signed while its Document Signer was valid stays authentic after that certificate
//!    expired. The signing time is the SOD's `signingTime` attribute when present (it must
//!    fall within the Document Signer's validity and not after now), else now — so a SOD
//!    without it needs a Document Signer valid today;
//! 3. **revocation** — no CRL of the issuing CSCA (signed by it) lists the Document Signer.
//!    A CRL past its nextUpdate still counts (a stale list is better than none); without any
//!    CRL of that CSCA the check passes, saying so, unless [`TrustStore::require_crl`];
//! 4. **hashes** — every data group given has its hash in the SOD, equal to the SOD's.

use std::time::SystemTime;

use thiserror::Error;

use crate::algorithm::{self, DigestAlgorithm, VerifyError};
use crate::sod::Sod;
use crate::trust::TrustStore;
use crate::x509::{reason_name, show_time, Cert};

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Failure {
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    #[error("invalid signature: {0}")]
    BadSignature(String),
    #[error("the SOD carries no certificate for its signer")]
    NoDocumentSigner,
    #[error("the message-digest attribute {0}")]
    MessageDigest(String),
    #[error("no CSCA of the trust store issued the Document Signer ({0})")]
    UnknownIssuer(String),
    #[error("{0}")]
    Validity(String),
    #[error("the Document Signer certificate (serial {serial}) was revoked on {date}: {reason}")]
    Revoked {
        serial: String,
        date: String,
        reason: String,
    },
    #[error("revocation unknown: {0}")]
    NoCrl(String),
    #[error("not checked: {0}")]
    NotChecked(String),
    #[error("data group {0}: the SOD lists no hash for it")]
    MissingHash(u32),
    #[error("data group {0}: hash differs from the SOD's")]
    HashMismatch(u32),
}

impl From<VerifyError> for Failure {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Unsupported(what) => Failure::UnsupportedAlgorithm(what),
            VerifyError::Invalid(what) => Failure::BadSignature(what),
        }
    }
}

/// One check's outcome: what was established, or why it failed.
pub type Check = Result<String, Failure>;

/// The four checks of passive authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassiveAuthentication {
    pub signature: Check,
    pub chain: Check,
    pub revocation: Check,
    pub hashes: Check,
}

impl PassiveAuthentication {
    /// True only when every check holds.
    pub fn passed(&self) -> bool {
        self.signature.is_ok()
            && self.chain.is_ok()
            && self.revocation.is_ok()
            && self.hashes.is_ok()
    }
}

/// Runs passive authentication of `sod` over the data groups `groups` (`(number, bytes)`, the
/// DG2 among them) against `trust` at the time `now`.
pub fn authenticate(
    sod: &Sod,
    groups: &[(u32, &[u8])],
    trust: &TrustStore,
    now: SystemTime,
) -> PassiveAuthentication {
    let signer = sod.document_signer();
    let not_checked = |why: &str| Err(Failure::NotChecked(why.into()));
    let (chain, revocation) = match signer.map(|ds| (ds, find_issuer(ds, trust))) {
        None => (
            Err(Failure::NoDocumentSigner),
            not_checked("no Document Signer"),
        ),
        Some((ds, Ok(csca))) => (
            check_validity(sod, ds, csca, now),
            check_revocation(ds, csca, trust),
        ),
        Some((_, Err(failure))) => (Err(failure), not_checked("no issuing CSCA")),
    };
    PassiveAuthentication {
        signature: check_signature(sod, signer),
        chain,
        revocation,
        hashes: check_hashes(sod, groups),
    }
}

fn check_signature(sod: &Sod, signer: Option<&Cert>) -> Check {
    let ds = signer.ok_or(Failure::NoDocumentSigner)?;
    let info = &sod.signer;
    let digest = DigestAlgorithm::from_oid(&info.digest_algorithm.oid)?;
    let signed = info.signed_attributes.as_deref().ok_or_else(|| {
        Failure::MessageDigest("is missing: the SignerInfo has no signed attributes".into())
    })?;
    match &info.message_digest {
        Some(md) if *md == digest.digest(&sod.econtent) => {}
        Some(_) => {
            return Err(Failure::MessageDigest(
                "differs from the hash of the LDSSecurityObject".into(),
            ))
        }
        None => return Err(Failure::MessageDigest("is missing".into())),
    }
    if info.content_type.is_some_and(|t| t != sod.econtent_type) {
        return Err(Failure::BadSignature(
            "the content-type attribute differs from the eContentType".into(),
        ));
    }
    let key = &ds.cert.tbs_certificate.subject_public_key_info;
    algorithm::verify(
        key,
        &info.signature_algorithm,
        Some(digest),
        signed,
        &info.signature,
    )?;
    Ok(format!("signed by {}", ds.subject()))
}

/// The CSCA named as the Document Signer's issuer whose key verifies its certificate.
fn find_issuer<'t>(ds: &Cert, trust: &'t TrustStore) -> Result<&'t Cert, Failure> {
    let named: Vec<&Cert> = trust.cscas().iter().filter(|c| ds.issuer_is(c)).collect();
    if named.is_empty() {
        return Err(Failure::UnknownIssuer(format!(
            "issuer {} not in the trust store",
            ds.cert.tbs_certificate.issuer
        )));
    }
    let mut last = None;
    for csca in named {
        match ds.verify_issued_by(csca) {
            Ok(()) => return Ok(csca),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .map(Failure::from)
        .unwrap_or_else(|| Failure::UnknownIssuer("no candidate".into())))
}

fn check_validity(sod: &Sod, ds: &Cert, csca: &Cert, now: SystemTime) -> Check {
    if !csca.valid_at(now) {
        return Err(Failure::Validity(format!(
            "the CSCA {} is not valid now (valid {} to {})",
            csca.subject(),
            show_time(csca.not_before()),
            show_time(csca.not_after())
        )));
    }
    let signed_at = sod.signer.signing_time.unwrap_or(now);
    if signed_at > now {
        return Err(Failure::Validity(format!(
            "the SOD's signing time {} is in the future",
            show_time(signed_at)
        )));
    }
    if !ds.valid_at(signed_at) {
        return Err(Failure::Validity(format!(
            "the Document Signer was not valid at {} (valid {} to {})",
            show_time(signed_at),
            show_time(ds.not_before()),
            show_time(ds.not_after())
        )));
    }
    let expired = if ds.valid_at(now) {
        ""
    } else {
        ", expired since, as Doc 9303 allows"
    };
    Ok(format!(
        "Document Signer issued by CSCA {}, valid when it signed{expired}",
        csca.subject()
    ))
}

fn check_revocation(ds: &Cert, csca: &Cert, trust: &TrustStore) -> Check {
    let crls: Vec<_> = trust
        .crls()
        .iter()
        .filter(|crl| crl.issued_by(csca))
        .collect();
    for crl in &crls {
        if let Some((date, reason)) = crl.revocation_of(ds.serial()) {
            return Err(Failure::Revoked {
                serial: hex(ds.serial()),
                date: show_time(date),
                reason: reason.map(reason_name).unwrap_or("no reason given").into(),
            });
        }
    }
    match crls.len() {
        0 if trust.crl_required() => Err(Failure::NoCrl(format!(
            "no CRL of CSCA {} in the trust store",
            csca.subject()
        ))),
        0 => Ok(format!(
            "no CRL of CSCA {} in the trust store: not known to be revoked",
            csca.subject()
        )),
        n => Ok(format!(
            "not listed in {n} CRL(s) of CSCA {}",
            csca.subject()
        )),
    }
}

fn check_hashes(sod: &Sod, groups: &[(u32, &[u8])]) -> Check {
    let digest = DigestAlgorithm::from_oid(&sod.hash_algorithm.oid)?;
    for (number, bytes) in groups {
        let expected = sod.hash_of(*number).ok_or(Failure::MissingHash(*number))?;
        if digest.digest(bytes) != expected {
            return Err(Failure::HashMismatch(*number));
        }
    }
    let numbers: Vec<String> = groups.iter().map(|(n, _)| format!("DG{n}")).collect();
    Ok(format!(
        "{} equal to the SOD's ({digest:?})",
        numbers.join(", ")
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
