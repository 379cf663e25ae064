//! MOSIP's CBEFF XML (ISO/IEC 19785-3, the SC 37 patron format as MOSIP's `cbeffutil` writes it):
//! a root `BIR` holding one `BIR` per sample, each with `BDBInfo` (`Type` Finger/Face/Iris,
//! `Subtype` such as `Left IndexFinger`, `Format` owner/type, `Quality/Score`) and a base64 `BDB`
//! (usually an ISO/IEC 19794 record). MOSIP 1.2 marks a sample the operator declared missing
//! (an amputated finger) with `<others><entry key="EXCEPTION">true</entry></others>`; such a
//! BIR is reported with [`Bir::exception`] set and never treated as a sample.
//!
//! The document is parsed whole with `roxmltree` (no DTDs, a node limit) after a size check;
//! element names are matched without their namespace, as MOSIP's files vary in prefixes.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use thiserror::Error;

/// What a CBEFF document may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole document (a ten-finger + face + iris CBEFF of JPEG 2000 images is a few MB).
    pub max_bytes: usize,
    /// BIRs (MOSIP sends at most 10 fingers, 2 irises, a face and an exception photo).
    pub max_birs: usize,
    /// XML nodes (elements, attributes' text, comments).
    pub max_nodes: u32,
    /// One decoded BDB.
    pub max_bdb_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 << 20,
            max_birs: 64,
            max_nodes: 100_000,
            max_bdb_bytes: 16 << 20,
        }
    }
}

/// A BIR's biometric type (`BDBInfo/Type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modality {
    Finger,
    Face,
    Iris,
    /// Anything else (`ExceptionPhoto`, palms, voice), kept by name.
    Other(String),
}

impl Modality {
    fn parse(text: &str) -> Modality {
        match text.trim().to_ascii_lowercase().as_str() {
            "finger" => Modality::Finger,
            "face" => Modality::Face,
            "iris" => Modality::Iris,
            _ => Modality::Other(text.trim().to_string()),
        }
    }

    fn name(&self) -> &str {
        match self {
            Modality::Finger => "Finger",
            Modality::Face => "Face",
            Modality::Iris => "Iris",
            Modality::Other(name) => name,
        }
    }
}

/// One biometric sample of a CBEFF document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bir {
    pub modality: Modality,
    /// `BDBInfo/Subtype`, trimmed (`Left IndexFinger`; empty for a face).
    pub subtype: String,
    /// `BDBInfo/Format/Organization` and `Type` (7 finger image, 8 face image, 2 minutiae).
    pub format_owner: Option<String>,
    pub format_type: Option<u32>,
    /// `BDBInfo/Quality/Score`.
    pub quality: Option<u32>,
    /// Marked as an exception (the sample is missing); its BDB, if any, is not a sample.
    pub exception: bool,
    /// The decoded BDB (empty when absent).
    pub bdb: Vec<u8>,
}

/// A CBEFF document that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CbeffError {
    #[error("CBEFF document of {len} bytes exceeds {max}")]
    TooLarge { len: usize, max: usize },
    #[error("CBEFF is not XML: {0}")]
    NotXml(String),
    #[error("CBEFF root element is <{0}>, not <BIR>")]
    NotBir(String),
    #[error("CBEFF holds more than {max} BIRs")]
    TooManyBirs { max: usize },
    #[error("CBEFF BIR #{index}: {field} is invalid: {detail}")]
    InvalidField {
        index: usize,
        field: &'static str,
        detail: String,
    },
}

/// The BIRs of a document that carry a `BDBInfo`, in document order.
pub fn parse(xml: &[u8], limits: &Limits) -> Result<Vec<Bir>, CbeffError> {
    if xml.len() > limits.max_bytes {
        return Err(CbeffError::TooLarge {
            len: xml.len(),
            max: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(xml).map_err(|e| CbeffError::NotXml(e.to_string()))?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: limits.max_nodes,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, options)
        .map_err(|e| CbeffError::NotXml(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() != "BIR" {
        return Err(CbeffError::NotBir(root.tag_name().name().to_string()));
    }
    let mut birs = Vec::new();
    for node in root.descendants().filter(|n| is(n, "BIR")) {
        let Some(info) = child(node, "BDBInfo") else {
            continue;
        };
        if birs.len() == limits.max_birs {
            return Err(CbeffError::TooManyBirs {
                max: limits.max_birs,
            });
        }
        birs.push(read_bir(birs.len(), node, info, limits)?);
    }
    Ok(birs)
}

fn is(node: &roxmltree::Node, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| is(c, name))
}

/// The trimmed text of a child element (`None` when absent or empty).
fn child_text(node: roxmltree::Node, name: &str) -> Option<String> {
    let text: String = child(node, name)?
        .children()
        .filter(|c| c.is_text())
        .filter_map(|c| c.text())
        .collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn read_bir(
    index: usize,
    bir: roxmltree::Node,
    info: roxmltree::Node,
    limits: &Limits,
) -> Result<Bir, CbeffError> {
    let invalid = |field, detail: String| CbeffError::InvalidField {
        index,
        field,
        detail,
    };
    let number = |node: Option<roxmltree::Node>, name, field| {
        node.and_then(|n| child_text(n, name))
            .map(|t| {
                t.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0 && *v <= f64::from(u32::MAX))
                    .map(|v| v as u32)
                    .ok_or_else(|| invalid(field, format!("{t:?} is not a number")))
            })
            .transpose()
    };
    let format = child(info, "Format");
    let modality =
        child_text(info, "Type").ok_or_else(|| invalid("BDBInfo/Type", "missing".into()))?;
    let bdb = match child_text(bir, "BDB") {
        None => Vec::new(),
        Some(b64) => decode_base64(&b64, limits.max_bdb_bytes).map_err(|e| invalid("BDB", e))?,
    };
    Ok(Bir {
        modality: Modality::parse(&modality),
        subtype: child_text(info, "Subtype").unwrap_or_default(),
        format_owner: format.and_then(|f| child_text(f, "Organization")),
        format_type: number(format, "Type", "BDBInfo/Format/Type")?,
        quality: number(child(info, "Quality"), "Score", "BDBInfo/Quality/Score")?,
        exception: is_exception(bir),
        bdb,
    })
}

/// `<others><entry key="EXCEPTION">true</entry></others>` (any case, `value` child or text).
fn is_exception(bir: roxmltree::Node) -> bool {
    let Some(others) = child(bir, "others") else {
        return false;
    };
    others
        .children()
        .filter(|e| is(e, "entry"))
        .filter(|e| {
            e.attribute("key")
                .is_some_and(|k| k.eq_ignore_ascii_case("EXCEPTION"))
        })
        .any(|e| {
            let text: String = e
                .descendants()
                .filter(|c| c.is_text())
                .filter_map(|c| c.text())
                .collect();
            text.trim().eq_ignore_ascii_case("true")
        })
}

/// Standard or URL-safe base64 (MOSIP writes both), padded or not, blanks ignored.
fn decode_base64(text: &str, max: usize) -> Result<Vec<u8>, String> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if clean.len() / 4 * 3 > max {
        return Err(format!("decodes to more than {max} bytes"));
    }
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let alphabet = if clean.contains(['-', '_']) {
        &alphabet::URL_SAFE
    } else {
        &alphabet::STANDARD
    };
    GeneralPurpose::new(alphabet, config)
        .decode(clean.as_bytes())
        .map_err(|e| format!("not base64: {e}"))
}

/// A CBEFF document as MOSIP writes it, for tests and for the side that plays MOSIP.
pub fn to_xml(birs: &[Bir]) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n\
         <BIR xmlns=\"http://standards.iso.org/iso-iec/19785/-3/ed-2/\">\n\
         <BIRInfo><Integrity>false</Integrity></BIRInfo>\n",
    );
    for bir in birs {
        out.push_str(&bir_xml(bir));
    }
    out.push_str("</BIR>\n");
    out
}

fn bir_xml(bir: &Bir) -> String {
    let format = format!(
        "<Format><Organization>{}</Organization><Type>{}</Type></Format>",
        escape(bir.format_owner.as_deref().unwrap_or("Mosip")),
        bir.format_type.unwrap_or(0)
    );
    let quality = bir
        .quality
        .map(|q| format!("<Quality><Algorithm><Organization>HMAC</Organization><Type>SHA-256</Type></Algorithm><Score>{q}</Score></Quality>"))
        .unwrap_or_default();
    format!(
        "<BIR><Version><Major>1</Major><Minor>1</Minor></Version>\
         <CBEFFVersion><Major>1</Major><Minor>1</Minor></CBEFFVersion>\
         <BIRInfo><Integrity>false</Integrity></BIRInfo>\
         <BDBInfo>{format}<Type>{}</Type><Subtype>{}</Subtype><Level>Raw</Level>\
         <Purpose>Enroll</Purpose>{quality}</BDBInfo>\
         <BDB>{}</BDB><others><entry key=\"EXCEPTION\">{}</entry></others></BIR>\n",
        escape(bir.modality.name()),
        escape(&bir.subtype),
        base64::engine::general_purpose::STANDARD.encode(&bir.bdb),
        bir.exception
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests;
