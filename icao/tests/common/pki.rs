//! A test PKI: CSCAs and Document Signers made with rcgen (RSA keys from the `rsa` crate, which
//! ring cannot generate), CRLs, and SODs signed by a Document Signer.

use std::sync::{Mutex, OnceLock};

use der::{Decode, Encode};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
    SigningKey,
};
use rsa::pkcs8::EncodePrivateKey;
use time::{Duration, OffsetDateTime};

use super::ber::{algorithm, der, oid};
use super::sha256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    RsaPss,
    P256,
    P384,
}

/// A validity window relative to now, in days.
pub fn days(from: i64, to: i64) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now + Duration::days(from), now + Duration::days(to))
}

/// Fresh RSA-2048 keys, `n` of them generated once per test binary and handed out in turn.
fn rsa_key() -> rsa::RsaPrivateKey {
    static POOL: OnceLock<Mutex<(Vec<rsa::RsaPrivateKey>, usize)>> = OnceLock::new();
    let pool = POOL.get_or_init(|| Mutex::new((Vec::new(), 0)));
    let mut pool = pool.lock().unwrap();
    let index = pool.1 % 4;
    pool.1 += 1;
    while pool.0.len() <= index {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        pool.0.push(key);
    }
    pool.0[index].clone()
}

fn key_pair(kind: KeyKind) -> (KeyPair, Option<rsa::RsaPrivateKey>) {
    match kind {
        KeyKind::Rsa | KeyKind::RsaPss => {
            let key = rsa_key();
            let pkcs8 = key.to_pkcs8_der().unwrap();
            (KeyPair::try_from(pkcs8.as_bytes()).unwrap(), Some(key))
        }
        KeyKind::P256 => (
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
            None,
        ),
        KeyKind::P384 => (
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
            None,
        ),
    }
}

fn params(common_name: &str, validity: (OffsetDateTime, OffsetDateTime)) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CountryName, "UT");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    (params.not_before, params.not_after) = validity;
    params
}

/// A Country Signing CA: self-signed, may sign certificates and CRLs.
pub struct Csca {
    pub der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl Csca {
    pub fn new(name: &str, kind: KeyKind, validity: (OffsetDateTime, OffsetDateTime)) -> Csca {
        let mut params = params(name, validity);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let (key, _) = key_pair(kind);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        Csca {
            der,
            issuer: Issuer::new(params, key),
        }
    }

    /// A CRL of this CSCA listing the serial numbers `revoked`.
    pub fn crl(&self, revoked: &[u8]) -> Vec<u8> {
        let now = OffsetDateTime::now_utc();
        let revoked_certs = revoked
            .iter()
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&[*serial]),
                revocation_time: now - Duration::days(1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::days(1),
            next_update: now + Duration::days(30),
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().der().to_vec()
    }
}

/// A Document Signer: its certificate and the key that signs SODs.
pub struct DocumentSigner {
    pub der: Vec<u8>,
    pub kind: KeyKind,
    key: KeyPair,
    rsa: Option<rsa::RsaPrivateKey>,
}

impl DocumentSigner {
    pub fn new(
        csca: &Csca,
        kind: KeyKind,
        serial: u8,
        validity: (OffsetDateTime, OffsetDateTime),
    ) -> Self {
        let mut params = params("Document Signer", validity);
        params.serial_number = Some(SerialNumber::from_slice(&[serial]));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let (key, rsa) = key_pair(kind);
        let der = params.signed_by(&key, &csca.issuer).unwrap().der().to_vec();
        DocumentSigner {
            der,
            kind,
            key,
            rsa,
        }
    }

    fn sign(&self, message: &[u8]) -> (Vec<u8>, Vec<u8>) {
        match self.kind {
            KeyKind::Rsa => (
                self.key.sign(message).unwrap(),
                algorithm("1.2.840.113549.1.1.11", Some(&[5, 0])),
            ),
            KeyKind::RsaPss => (self.sign_pss(message), pss_algorithm()),
            KeyKind::P256 => (
                self.key.sign(message).unwrap(),
                algorithm("1.2.840.10045.4.3.2", None),
            ),
            KeyKind::P384 => (
                self.key.sign(message).unwrap(),
                algorithm("1.2.840.10045.4.3.3", None),
            ),
        }
    }

    fn sign_pss(&self, message: &[u8]) -> Vec<u8> {
        use rsa::signature::{RandomizedSigner, SignatureEncoding};
        let key = rsa::pss::SigningKey::<sha2::Sha256>::new(self.rsa.clone().unwrap());
        key.sign_with_rng(&mut rsa::rand_core::OsRng, message)
            .to_vec()
    }
}

/// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
fn pss_algorithm() -> Vec<u8> {
    let sha256 = algorithm("2.16.840.1.101.3.4.2.1", None);
    let mgf = algorithm("1.2.840.113549.1.1.8", Some(&sha256));
    let params = der(
        0x30,
        &[
            &der(0xA0, &[&sha256]),
            &der(0xA1, &[&mgf]),
            &der(0xA2, &[&der(0x02, &[&[32]])]),
        ],
    );
    algorithm("1.2.840.113549.1.1.10", Some(&params))
}

/// How a test SOD deviates from a genuine one.
#[derive(Debug, Clone, Default)]
pub struct SodOptions {
    pub signing_time: Option<OffsetDateTime>,
    /// Signs these bytes' hash in the message-digest attribute instead of the LDS object's.
    pub message_digest_of: Option<Vec<u8>>,
    /// Replaces the SignerInfo's signature algorithm identifier.
    pub signature_algorithm: Option<Vec<u8>>,
}

const LDS_OID: &str = "2.23.136.1.1.1";
const SHA256_OID: &str = "2.16.840.1.101.3.4.2.1";

/// EF.SOD: `77 { ContentInfo { signedData, SignedData { ..., LDSSecurityObject, DS cert } } }`.
pub fn sod(signer: &DocumentSigner, lds: &[u8], options: &SodOptions) -> Vec<u8> {
    let attributes = signed_attributes(lds, options);
    let (signature, mut signature_algorithm) = signer.sign(&der(0x31, &[&attributes]));
    if let Some(replacement) = &options.signature_algorithm {
        signature_algorithm = replacement.clone();
    }
    let cert = x509_cert::Certificate::from_der(&signer.der).unwrap();
    let issuer = cert.tbs_certificate.issuer.to_der().unwrap();
    let serial = der(0x02, &[cert.tbs_certificate.serial_number.as_bytes()]);
    let signer_info = der(
        0x30,
        &[
            &der(0x02, &[&[1]]),
            &der(0x30, &[&issuer, &serial]),
            &algorithm(SHA256_OID, None),
            &der(0xA0, &[&attributes]),
            &signature_algorithm,
            &der(0x04, &[&signature]),
        ],
    );
    let encapsulated = der(0x30, &[&oid(LDS_OID), &der(0xA0, &[&der(0x04, &[lds])])]);
    let signed_data = der(
        0x30,
        &[
            &der(0x02, &[&[3]]),
            &der(0x31, &[&algorithm(SHA256_OID, None)]),
            &encapsulated,
            &der(0xA0, &[&signer.der]),
            &der(0x31, &[&signer_info]),
        ],
    );
    let content_info = der(
        0x30,
        &[&oid("1.2.840.113549.1.7.2"), &der(0xA0, &[&signed_data])],
    );
    der(0x77, &[&content_info])
}

/// Content type, message digest and (optionally) signing time, concatenated.
fn signed_attributes(lds: &[u8], options: &SodOptions) -> Vec<u8> {
    let digested = options.message_digest_of.as_deref().unwrap_or(lds);
    let attribute = |kind: &str, value: Vec<u8>| der(0x30, &[&oid(kind), &der(0x31, &[&value])]);
    let mut out = attribute("1.2.840.113549.1.9.3", oid(LDS_OID));
    out.extend(attribute(
        "1.2.840.113549.1.9.4",
        der(0x04, &[&sha256(digested)]),
    ));
    if let Some(t) = options.signing_time {
        let utc = format!(
            "{:02}{:02}{:02}{:02}{:02}{:02}Z",
            t.year() % 100,
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        out.extend(attribute(
            "1.2.840.113549.1.9.5",
            der(0x17, &[utc.as_bytes()]),
        ));
    }
    out
}

/// An ICAO CSCA master list holding `cscas` (its own signature is not checked by the store, so
/// the test leaves the SignedData unsigned: no signer).
pub fn master_list(cscas: &[&[u8]]) -> Vec<u8> {
    let list = der(0x30, &[&der(0x02, &[&[0]]), &der(0x31, cscas)]);
    let encapsulated = der(
        0x30,
        &[&oid("2.23.136.1.1.2"), &der(0xA0, &[&der(0x04, &[&list])])],
    );
    let signed_data = der(
        0x30,
        &[
            &der(0x02, &[&[3]]),
            &der(0x31, &[&algorithm(SHA256_OID, None)]),
            &encapsulated,
            &der(0x31, &[]),
        ],
    );
    der(
        0x30,
        &[&oid("1.2.840.113549.1.7.2"), &der(0xA0, &[&signed_data])],
    )
}
