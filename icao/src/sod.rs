//! EF.SOD, the Document Security Object: tag `77` around a CMS SignedData whose encapsulated
//! content is an `LDSSecurityObject` (hash algorithm and the hash of every data group), signed
//! by the Document Signer whose certificate the SignedData carries.

use const_oid::ObjectIdentifier;
use spki::AlgorithmIdentifierOwned;
use thiserror::Error;

use crate::signed_data::{
    invalid, parse_signed_data, parse_signer_info, read_algorithm, tlv, CmsError, SignerId,
    SignerInfo,
};
use crate::tlv::{Reader, Tlv};
use crate::x509::Cert;

/// An EF.SOD larger than this is refused before parsing (real ones are 2-10 KB).
pub const MAX_SOD_LEN: usize = 256 << 10;
/// ICAO 9303 numbers data groups 1 to 16.
const MAX_DATA_GROUP: u32 = 16;
const LDS_SECURITY_OBJECT: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.136.1.1.1");

/// What is wrong with an EF.SOD.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SodError {
    #[error("EF.SOD is {len} bytes, above the limit of {MAX_SOD_LEN}")]
    TooLarge { len: usize },
    #[error("EF.SOD {0}")]
    Cms(#[from] CmsError),
}

/// A parsed EF.SOD: what was signed, by whom, and the data group hashes it vouches for.
#[derive(Debug, Clone)]
pub struct Sod {
    /// The digest algorithm of the data group hashes.
    pub hash_algorithm: AlgorithmIdentifierOwned,
    /// `(data group number, hash)` in the SOD's order.
    pub data_group_hashes: Vec<(u32, Vec<u8>)>,
    pub econtent_type: ObjectIdentifier,
    /// The encapsulated LDSSecurityObject, as signed.
    pub econtent: Vec<u8>,
    pub certificates: Vec<Cert>,
    pub signer: SignerInfo,
}

impl Sod {
    /// Parses EF.SOD as read from the chip.
    pub fn parse(bytes: &[u8]) -> Result<Sod, SodError> {
        if bytes.len() > MAX_SOD_LEN {
            return Err(SodError::TooLarge { len: bytes.len() });
        }
        let outer = Reader::single(bytes, 0x77).map_err(tlv("template 77"))?;
        let content_info = outer.only_child(0x30).map_err(tlv("ContentInfo"))?;
        let signed = parse_signed_data(content_info)?;
        if signed.econtent_type != LDS_SECURITY_OBJECT {
            let reason = format!("{} is not an LDSSecurityObject", signed.econtent_type);
            return Err(invalid("eContentType", &signed.econtent, reason).into());
        }
        let (hash_algorithm, data_group_hashes) = parse_lds_security_object(&signed.econtent)?;
        let certificates = signed
            .certificates
            .iter()
            .map(|c| Cert::from_der(c.raw).map_err(|e| invalid("SignedData certificate", c, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let signer = match signed.signer_infos.as_slice() {
            [only] => parse_signer_info(only)?,
            _ => {
                let reason = format!("{} signers (one expected)", signed.signer_infos.len());
                return Err(invalid("SignedData signerInfos", &content_info, reason).into());
            }
        };
        Ok(Sod {
            hash_algorithm,
            data_group_hashes,
            econtent_type: signed.econtent_type,
            econtent: signed.econtent.value.to_vec(),
            certificates,
            signer,
        })
    }

    /// The SOD's hash of data group `number`, if listed.
    pub fn hash_of(&self, number: u32) -> Option<&[u8]> {
        self.data_group_hashes
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, h)| h.as_slice())
    }

    /// The certificate the signer names (by serial number or key identifier).
    pub fn document_signer(&self) -> Option<&Cert> {
        self.certificates.iter().find(|c| match &self.signer.sid {
            SignerId::IssuerSerial { serial } => c.serial() == serial.as_slice(),
            SignerId::KeyId(id) => c.subject_key_id().as_deref() == Some(id.as_slice()),
        })
    }
}

/// `LDSSecurityObject ::= SEQUENCE { version, hashAlgorithm, SEQUENCE OF DataGroupHash,
/// ldsVersionInfo OPTIONAL }`, `DataGroupHash ::= SEQUENCE { number INTEGER, hash OCTET STRING }`.
type LdsContent = (AlgorithmIdentifierOwned, Vec<(u32, Vec<u8>)>);

fn parse_lds_security_object(econtent: &Tlv<'_>) -> Result<LdsContent, CmsError> {
    let part = "LDSSecurityObject";
    let object = econtent.only_child(0x30).map_err(tlv(part))?;
    let mut fields = object.children().map_err(tlv(part))?;
    fields
        .expect(0x02)
        .map_err(tlv("LDSSecurityObject version"))?;
    let hash_algorithm = read_algorithm(&mut fields, "LDSSecurityObject hashAlgorithm")?;
    let list = fields
        .expect(0x30)
        .map_err(tlv("LDSSecurityObject dataGroupHashValues"))?;
    fields
        .optional(0x30)
        .map_err(tlv("LDSSecurityObject ldsVersionInfo"))?;
    fields.finish().map_err(tlv(part))?;
    let mut hashes = Vec::new();
    let mut entries = list.children().map_err(tlv("dataGroupHashValues"))?;
    while let Some(entry) = entries.next_element().map_err(tlv("DataGroupHash"))? {
        if hashes.len() as u32 >= MAX_DATA_GROUP {
            return Err(invalid(
                "dataGroupHashValues",
                &entry,
                "more than 16 data groups",
            ));
        }
        hashes.push(read_data_group_hash(&entry)?);
    }
    Ok((hash_algorithm, hashes))
}

fn read_data_group_hash(entry: &Tlv<'_>) -> Result<(u32, Vec<u8>), CmsError> {
    let mut fields = entry
        .expect(0x30)
        .map_err(tlv("DataGroupHash"))?
        .children()
        .map_err(tlv("DataGroupHash"))?;
    let number = fields.expect(0x02).map_err(tlv("dataGroupNumber"))?;
    let hash = fields.expect(0x04).map_err(tlv("dataGroupHashValue"))?;
    fields.finish().map_err(tlv("DataGroupHash"))?;
    match number.value {
        [n] if (1..=MAX_DATA_GROUP).contains(&u32::from(*n)) => {
            Ok((u32::from(*n), hash.value.to_vec()))
        }
        _ => Err(invalid(
            "dataGroupNumber",
            &number,
            "not a data group number 1-16",
        )),
    }
}
