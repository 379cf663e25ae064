//! The CMS SignedData (RFC 5652) around an EF.SOD or an ICAO master list, walked element by
//! element so that the signed attributes stay the exact bytes the signer signed.

use const_oid::ObjectIdentifier;
use der::Decode;
use spki::AlgorithmIdentifierOwned;
use thiserror::Error;
use x509_cert::time::Time;

use crate::tlv::{Reader, Tlv, TlvError};

const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");

/// What is wrong with a CMS structure; `part` names the ASN.1 element.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CmsError {
    #[error("{part}: {source}")]
    Tlv {
        part: &'static str,
        #[source]
        source: TlvError,
    },
    #[error("{part} at offset {offset}: {reason}")]
    Invalid {
        part: &'static str,
        offset: usize,
        reason: String,
    },
}

pub(crate) fn tlv(part: &'static str) -> impl Fn(TlvError) -> CmsError {
    move |source| CmsError::Tlv { part, source }
}

pub(crate) fn invalid(part: &'static str, at: &Tlv<'_>, reason: impl ToString) -> CmsError {
    CmsError::Invalid {
        part,
        offset: at.offset,
        reason: reason.to_string(),
    }
}

/// The parts of a SignedData that passive authentication and master lists need.
#[derive(Debug, Clone)]
pub(crate) struct SignedData<'a> {
    pub econtent_type: ObjectIdentifier,
    pub econtent: Tlv<'a>,
    pub certificates: Vec<Tlv<'a>>,
    pub signer_infos: Vec<Tlv<'a>>,
}

/// Reads `ContentInfo { id-signedData, [0] SignedData }` from `content_info`.
pub(crate) fn parse_signed_data(content_info: Tlv<'_>) -> Result<SignedData<'_>, CmsError> {
    let mut info = content_info.children().map_err(tlv("ContentInfo"))?;
    let content_type = read_oid(&mut info, "ContentInfo contentType")?;
    if content_type != SIGNED_DATA {
        return Err(invalid(
            "ContentInfo contentType",
            &content_info,
            format!("{content_type} is not id-signedData"),
        ));
    }
    let explicit = info.expect(0xA0).map_err(tlv("ContentInfo content"))?;
    info.finish().map_err(tlv("ContentInfo"))?;
    let signed = explicit.only_child(0x30).map_err(tlv("SignedData"))?;
    let mut fields = signed.children().map_err(tlv("SignedData"))?;
    fields.expect(0x02).map_err(tlv("SignedData version"))?;
    fields
        .expect(0x31)
        .map_err(tlv("SignedData digestAlgorithms"))?;
    let encap = fields
        .expect(0x30)
        .map_err(tlv("SignedData encapContentInfo"))?;
    let (econtent_type, econtent) = read_encapsulated(&encap)?;
    let certificates = match fields
        .optional(0xA0)
        .map_err(tlv("SignedData certificates"))?
    {
        Some(set) => all_children(&set, "SignedData certificates")?,
        None => Vec::new(),
    };
    fields.optional(0xA1).map_err(tlv("SignedData crls"))?;
    let infos = fields.expect(0x31).map_err(tlv("SignedData signerInfos"))?;
    fields.finish().map_err(tlv("SignedData"))?;
    Ok(SignedData {
        econtent_type,
        econtent,
        certificates,
        signer_infos: all_children(&infos, "SignedData signerInfos")?,
    })
}

fn read_encapsulated<'a>(encap: &Tlv<'a>) -> Result<(ObjectIdentifier, Tlv<'a>), CmsError> {
    let mut fields = encap.children().map_err(tlv("encapContentInfo"))?;
    let econtent_type = read_oid(&mut fields, "encapContentInfo eContentType")?;
    let explicit = fields
        .expect(0xA0)
        .map_err(tlv("encapContentInfo eContent"))?;
    fields.finish().map_err(tlv("encapContentInfo"))?;
    let econtent = explicit
        .only_child(0x04)
        .map_err(tlv("encapContentInfo eContent"))?;
    Ok((econtent_type, econtent))
}

fn all_children<'a>(parent: &Tlv<'a>, part: &'static str) -> Result<Vec<Tlv<'a>>, CmsError> {
    let mut reader = parent.children().map_err(tlv(part))?;
    let mut out = Vec::new();
    while let Some(element) = reader.next_element().map_err(tlv(part))? {
        out.push(element);
    }
    Ok(out)
}

pub(crate) fn read_oid(
    reader: &mut Reader<'_>,
    part: &'static str,
) -> Result<ObjectIdentifier, CmsError> {
    let element = reader.expect(0x06).map_err(tlv(part))?;
    ObjectIdentifier::from_bytes(element.value).map_err(|e| invalid(part, &element, e))
}

pub(crate) fn read_algorithm(
    reader: &mut Reader<'_>,
    part: &'static str,
) -> Result<AlgorithmIdentifierOwned, CmsError> {
    let element = reader.expect(0x30).map_err(tlv(part))?;
    AlgorithmIdentifierOwned::from_der(element.raw).map_err(|e| invalid(part, &element, e))
}

/// Who signed: the issuer and serial number of the certificate, or its key identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerId {
    IssuerSerial { serial: Vec<u8> },
    KeyId(Vec<u8>),
}

/// One SignerInfo, with the signed attributes re-tagged as the SET OF that was signed.
#[derive(Debug, Clone)]
pub struct SignerInfo {
    pub sid: SignerId,
    pub digest_algorithm: AlgorithmIdentifierOwned,
    pub signed_attributes: Option<Vec<u8>>,
    pub content_type: Option<ObjectIdentifier>,
    pub message_digest: Option<Vec<u8>>,
    pub signing_time: Option<std::time::SystemTime>,
    pub signature_algorithm: AlgorithmIdentifierOwned,
    pub signature: Vec<u8>,
}

pub(crate) fn parse_signer_info(info: &Tlv<'_>) -> Result<SignerInfo, CmsError> {
    let mut fields = info.children().map_err(tlv("SignerInfo"))?;
    fields.expect(0x02).map_err(tlv("SignerInfo version"))?;
    let sid = read_signer_id(&mut fields)?;
    let digest_algorithm = read_algorithm(&mut fields, "SignerInfo digestAlgorithm")?;
    let attributes = fields
        .optional(0xA0)
        .map_err(tlv("SignerInfo signedAttrs"))?;
    let signature_algorithm = read_algorithm(&mut fields, "SignerInfo signatureAlgorithm")?;
    let signature = fields.expect(0x04).map_err(tlv("SignerInfo signature"))?;
    fields
        .optional(0xA1)
        .map_err(tlv("SignerInfo unsignedAttrs"))?;
    fields.finish().map_err(tlv("SignerInfo"))?;
    let mut signer = SignerInfo {
        sid,
        digest_algorithm,
        signed_attributes: None,
        content_type: None,
        message_digest: None,
        signing_time: None,
        signature_algorithm,
        signature: signature.value.to_vec(),
    };
    if let Some(attributes) = attributes {
        read_signed_attributes(&attributes, &mut signer)?;
    }
    Ok(signer)
}

fn read_signer_id(fields: &mut Reader<'_>) -> Result<SignerId, CmsError> {
    let part = "SignerInfo sid";
    let sid = fields.next_element().map_err(tlv(part))?;
    match sid {
        Some(element) if element.tag == 0x30 => {
            let mut parts = element.children().map_err(tlv(part))?;
            parts.expect(0x30).map_err(tlv("SignerInfo sid issuer"))?;
            let serial = parts
                .expect(0x02)
                .map_err(tlv("SignerInfo sid serialNumber"))?;
            Ok(SignerId::IssuerSerial {
                serial: serial.value.to_vec(),
            })
        }
        Some(element) if element.tag == 0x80 => Ok(SignerId::KeyId(element.value.to_vec())),
        Some(element) => Err(invalid(
            part,
            &element,
            format!(
                "tag {:#X} is neither issuerAndSerialNumber nor subjectKeyIdentifier",
                element.tag
            ),
        )),
        None => Err(CmsError::Tlv {
            part,
            source: TlvError::Missing {
                offset: 0,
                tag: 0x30,
            },
        }),
    }
}

/// Content type, message digest and signing time; other attributes are signed but not read.
fn read_signed_attributes(attributes: &Tlv<'_>, signer: &mut SignerInfo) -> Result<(), CmsError> {
    let part = "SignerInfo signedAttrs";
    let mut signed = attributes.raw.to_vec();
    signed[0] = 0x31;
    signer.signed_attributes = Some(signed);
    let mut reader = attributes.children().map_err(tlv(part))?;
    while let Some(attribute) = reader.next_element().map_err(tlv(part))? {
        let mut fields = attribute
            .expect(0x30)
            .map_err(tlv(part))?
            .children()
            .map_err(tlv(part))?;
        let kind = read_oid(&mut fields, "signed attribute type")?;
        let values = fields
            .expect(0x31)
            .map_err(tlv("signed attribute values"))?;
        let value = Reader::new(values.value)
            .next_element()
            .map_err(tlv("signed attribute value"))?;
        let value = value.ok_or_else(|| invalid(part, &values, "attribute without a value"))?;
        match kind {
            CONTENT_TYPE => {
                signer.content_type = Some(
                    ObjectIdentifier::from_bytes(value.value)
                        .map_err(|e| invalid("content-type attribute", &value, e))?,
                )
            }
            MESSAGE_DIGEST => {
                signer.message_digest = Some(
                    value
                        .expect(0x04)
                        .map_err(tlv("message-digest attribute"))?
                        .value
                        .to_vec(),
                )
            }
            SIGNING_TIME => {
                signer.signing_time = Some(
                    Time::from_der(value.raw)
                        .map_err(|e| invalid("signing-time attribute", &value, e))?
                        .to_system_time(),
                )
            }
            _ => {}
        }
    }
    Ok(())
}
