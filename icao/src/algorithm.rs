//! The digest and signature algorithms of passive authentication: which OIDs are understood,
//! and one `verify` for Document Signer signatures, certificates and CRLs alike.
//!
//! Supported: RSA PKCS#1 v1.5 and RSASSA-PSS (MGF1 with the same digest) and ECDSA on the named
//! curves P-256 and P-384, each with SHA-1, SHA-224, SHA-256, SHA-384 or SHA-512. Anything else —
//! brainpool and P-521 curves, explicit EC domain parameters, DSA, PSS with a different MGF
//! digest or trailer — is answered [`VerifyError::Unsupported`], never accepted.

use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::{Pkcs1v15Sign, Pss, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use thiserror::Error;

use crate::tlv::Reader;

const fn oid(s: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(s)
}

const SHA1: ObjectIdentifier = oid("1.3.14.3.2.26");
const SHA224: ObjectIdentifier = oid("2.16.840.1.101.3.4.2.4");
const SHA256: ObjectIdentifier = oid("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = oid("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = oid("2.16.840.1.101.3.4.2.3");
const RSA_ENCRYPTION: ObjectIdentifier = oid("1.2.840.113549.1.1.1");
const RSA_SHA1: ObjectIdentifier = oid("1.2.840.113549.1.1.5");
const RSA_SHA224: ObjectIdentifier = oid("1.2.840.113549.1.1.14");
const RSA_SHA256: ObjectIdentifier = oid("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = oid("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = oid("1.2.840.113549.1.1.13");
const RSA_PSS: ObjectIdentifier = oid("1.2.840.113549.1.1.10");
const MGF1: ObjectIdentifier = oid("1.2.840.113549.1.1.8");
const EC_PUBLIC_KEY: ObjectIdentifier = oid("1.2.840.10045.2.1");
const ECDSA_SHA1: ObjectIdentifier = oid("1.2.840.10045.4.1");
const ECDSA_SHA224: ObjectIdentifier = oid("1.2.840.10045.4.3.1");
const ECDSA_SHA256: ObjectIdentifier = oid("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = oid("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = oid("1.2.840.10045.4.3.4");
const P256: ObjectIdentifier = oid("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = oid("1.3.132.0.34");

/// A message digest of the SOD (data group hashes, signed attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlgorithm {
    /// The digest an OID names, or [`VerifyError::Unsupported`].
    pub fn from_oid(oid: &ObjectIdentifier) -> Result<Self, VerifyError> {
        Ok(match *oid {
            SHA1 => Self::Sha1,
            SHA224 => Self::Sha224,
            SHA256 => Self::Sha256,
            SHA384 => Self::Sha384,
            SHA512 => Self::Sha512,
            _ => return Err(unsupported("digest", oid)),
        })
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => Sha1::digest(data).to_vec(),
            Self::Sha224 => Sha224::digest(data).to_vec(),
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha384 => Sha384::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn pkcs1v15(self) -> Pkcs1v15Sign {
        match self {
            Self::Sha1 => Pkcs1v15Sign::new::<Sha1>(),
            Self::Sha224 => Pkcs1v15Sign::new::<Sha224>(),
            Self::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
            Self::Sha384 => Pkcs1v15Sign::new::<Sha384>(),
            Self::Sha512 => Pkcs1v15Sign::new::<Sha512>(),
        }
    }

    fn pss(self, salt_len: usize) -> Pss {
        match self {
            Self::Sha1 => Pss::new_with_salt::<Sha1>(salt_len),
            Self::Sha224 => Pss::new_with_salt::<Sha224>(salt_len),
            Self::Sha256 => Pss::new_with_salt::<Sha256>(salt_len),
            Self::Sha384 => Pss::new_with_salt::<Sha384>(salt_len),
            Self::Sha512 => Pss::new_with_salt::<Sha512>(salt_len),
        }
    }
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    #[error("unsupported algorithm: {0}")]
    Unsupported(String),
    #[error("invalid signature: {0}")]
    Invalid(String),
}

fn unsupported(what: &str, oid: &ObjectIdentifier) -> VerifyError {
    let name = const_oid::db::DB.by_oid(oid).unwrap_or("unnamed");
    VerifyError::Unsupported(format!("{what} {oid} ({name})"))
}

fn invalid(what: impl std::fmt::Display) -> VerifyError {
    VerifyError::Invalid(what.to_string())
}

/// How a signature is computed, resolved from its algorithm identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Pkcs1v15(DigestAlgorithm),
    Pss(DigestAlgorithm, usize),
    Ecdsa(DigestAlgorithm),
}

/// `digest` is the signer's digest algorithm, used where the signature algorithm names none
/// (plain `rsaEncryption` or `id-ecPublicKey`, as some SODs write it).
fn scheme(
    algorithm: &AlgorithmIdentifierOwned,
    digest: Option<DigestAlgorithm>,
) -> Result<Scheme, VerifyError> {
    let need_digest = || digest.ok_or_else(|| unsupported("signature", &algorithm.oid));
    Ok(match algorithm.oid {
        RSA_ENCRYPTION => Scheme::Pkcs1v15(need_digest()?),
        RSA_SHA1 => Scheme::Pkcs1v15(DigestAlgorithm::Sha1),
        RSA_SHA224 => Scheme::Pkcs1v15(DigestAlgorithm::Sha224),
        RSA_SHA256 => Scheme::Pkcs1v15(DigestAlgorithm::Sha256),
        RSA_SHA384 => Scheme::Pkcs1v15(DigestAlgorithm::Sha384),
        RSA_SHA512 => Scheme::Pkcs1v15(DigestAlgorithm::Sha512),
        RSA_PSS => pss_scheme(algorithm)?,
        EC_PUBLIC_KEY => Scheme::Ecdsa(need_digest()?),
        ECDSA_SHA1 => Scheme::Ecdsa(DigestAlgorithm::Sha1),
        ECDSA_SHA224 => Scheme::Ecdsa(DigestAlgorithm::Sha224),
        ECDSA_SHA256 => Scheme::Ecdsa(DigestAlgorithm::Sha256),
        ECDSA_SHA384 => Scheme::Ecdsa(DigestAlgorithm::Sha384),
        ECDSA_SHA512 => Scheme::Ecdsa(DigestAlgorithm::Sha512),
        _ => return Err(unsupported("signature", &algorithm.oid)),
    })
}

/// RSASSA-PSS-params (RFC 4055): hash [0], mask generation [1], salt length [2], trailer [3],
/// with SHA-1, MGF1-SHA-1, 20 and 1 as defaults.
fn pss_scheme(algorithm: &AlgorithmIdentifierOwned) -> Result<Scheme, VerifyError> {
    let bad = |e: &dyn std::fmt::Display| invalid(format!("RSASSA-PSS parameters: {e}"));
    let params = match &algorithm.parameters {
        Some(any) => any.to_der().map_err(|e| bad(&e))?,
        None => return Err(bad(&"missing")),
    };
    let sequence = Reader::single(&params, 0x30).map_err(|e| bad(&e))?;
    let mut fields = sequence.children().map_err(|e| bad(&e))?;
    let (mut digest, mut mgf_digest, mut salt) = (DigestAlgorithm::Sha1, DigestAlgorithm::Sha1, 20);
    while let Some(field) = fields.next_element().map_err(|e| bad(&e))? {
        match field.tag {
            0xA0 => digest = DigestAlgorithm::from_oid(&inner_algorithm(field.value)?.oid)?,
            0xA1 => mgf_digest = mgf1_digest(field.value)?,
            0xA2 => salt = small_integer(field.value).ok_or_else(|| bad(&"salt length"))?,
            0xA3 if small_integer(field.value) == Some(1) => {}
            _ => return Err(VerifyError::Unsupported("RSASSA-PSS trailer field".into())),
        }
    }
    if mgf_digest != digest {
        return Err(VerifyError::Unsupported(format!(
            "RSASSA-PSS with MGF1 digest {mgf_digest:?} other than the hash {digest:?}"
        )));
    }
    Ok(Scheme::Pss(digest, salt))
}

fn inner_algorithm(der: &[u8]) -> Result<AlgorithmIdentifierOwned, VerifyError> {
    AlgorithmIdentifierOwned::from_der(der)
        .map_err(|e| invalid(format!("algorithm identifier: {e}")))
}

fn mgf1_digest(der: &[u8]) -> Result<DigestAlgorithm, VerifyError> {
    let mgf = inner_algorithm(der)?;
    if mgf.oid != MGF1 {
        return Err(unsupported("mask generation", &mgf.oid));
    }
    let params = mgf
        .parameters
        .ok_or_else(|| invalid("MGF1 without a digest"))?
        .to_der()
        .map_err(invalid)?;
    DigestAlgorithm::from_oid(&inner_algorithm(&params)?.oid)
}

/// A DER INTEGER element holding a small non-negative value.
fn small_integer(der: &[u8]) -> Option<usize> {
    let value = Reader::single(der, 0x02).ok()?.value;
    if value.is_empty() || value.len() > 4 || value[0] & 0x80 != 0 {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
    )
}

/// Verifies `signature` over `message` with the key `public_key` under `algorithm`.
pub fn verify(
    public_key: &SubjectPublicKeyInfoOwned,
    algorithm: &AlgorithmIdentifierOwned,
    digest: Option<DigestAlgorithm>,
    message: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError> {
    match scheme(algorithm, digest)? {
        Scheme::Pkcs1v15(d) => {
            rsa_key(public_key)?.verify(d.pkcs1v15(), &d.digest(message), signature)
        }
        Scheme::Pss(d, salt) => {
            rsa_key(public_key)?.verify(d.pss(salt), &d.digest(message), signature)
        }
        Scheme::Ecdsa(d) => return verify_ecdsa(public_key, &d.digest(message), signature),
    }
    .map_err(|e| invalid(format!("RSA: {e}")))
}

fn rsa_key(public_key: &SubjectPublicKeyInfoOwned) -> Result<RsaPublicKey, VerifyError> {
    let oid = public_key.algorithm.oid;
    if oid != RSA_ENCRYPTION && oid != RSA_PSS {
        return Err(invalid(format!("an RSA signature with a {oid} key")));
    }
    RsaPublicKey::from_pkcs1_der(public_key.subject_public_key.raw_bytes())
        .map_err(|e| invalid(format!("RSA public key: {e}")))
}

fn verify_ecdsa(
    public_key: &SubjectPublicKeyInfoOwned,
    prehash: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError> {
    if public_key.algorithm.oid != EC_PUBLIC_KEY {
        return Err(invalid(format!(
            "an ECDSA signature with a {} key",
            public_key.algorithm.oid
        )));
    }
    let curve = public_key
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
        .ok_or_else(|| {
            VerifyError::Unsupported("EC key with explicit or absent domain parameters".into())
        })?;
    let point = public_key.subject_public_key.raw_bytes();
    let ecdsa_error = |e: p256::ecdsa::Error| invalid(format!("ECDSA: {e}"));
    match curve {
        P256 => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(ecdsa_error)?;
            let sig = p256::ecdsa::Signature::from_der(signature).map_err(ecdsa_error)?;
            key.verify_prehash(prehash, &sig).map_err(ecdsa_error)
        }
        P384 => {
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(ecdsa_error)?;
            let sig = p384::ecdsa::Signature::from_der(signature).map_err(ecdsa_error)?;
            key.verify_prehash(prehash, &sig).map_err(ecdsa_error)
        }
        other => Err(unsupported("curve", &other)),
    }
}
