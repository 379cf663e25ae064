//! EF.DG2, the encoded face: `75` wraps a biometric information group template `7F61` (a count
//! `02`, then that many biometric information templates `7F60`), each holding a biometric header
//! template `A1` and a biometric data block, `5F2E` (or `7F2E`), which is an ISO/IEC 19794-5
//! facial record ([`crate::face_record`]).

use thiserror::Error;

use crate::face_record::{parse_facial_record, FaceRecordError, FacialImage};
use crate::tlv::{Reader, Tlv, TlvError};

/// A DG2 larger than this is refused before parsing (real ones are 15-100 KB).
pub const MAX_DG2_LEN: usize = 4 << 20;
/// More biometric information templates than this are refused (cards carry one or two).
pub const MAX_TEMPLATES: usize = 16;

const TAG_DG2: u32 = 0x75;
const TAG_GROUP: u32 = 0x7F61;
const TAG_COUNT: u32 = 0x02;
const TAG_TEMPLATE: u32 = 0x7F60;
const TAG_HEADER: u32 = 0xA1;
const TAG_DATA_BLOCK: u32 = 0x5F2E;
const TAG_DATA_BLOCK_CONSTRUCTED: u32 = 0x7F2E;

/// What is wrong with a DG2; `part` names the template or field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Dg2Error {
    #[error("EF.DG2 is {len} bytes, above the limit of {MAX_DG2_LEN}")]
    TooLarge { len: usize },
    #[error("EF.DG2 {part}: {source}")]
    Tlv {
        part: &'static str,
        #[source]
        source: TlvError,
    },
    #[error("EF.DG2 instance count at offset {offset}: {reason}")]
    Count { offset: usize, reason: String },
    #[error("EF.DG2 biometric data block at offset {offset}: {source}")]
    FacialRecord {
        offset: usize,
        #[source]
        source: FaceRecordError,
    },
}

/// The portraits of a DG2, in the order of the templates and images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dg2<'a> {
    pub images: Vec<FacialImage<'a>>,
}

impl<'a> Dg2<'a> {
    /// The first portrait (a DG2 holds at least one once parsed).
    pub fn first(&self) -> &FacialImage<'a> {
        &self.images[0]
    }
}

/// Parses EF.DG2 as read from the chip.
pub fn parse_dg2(bytes: &[u8]) -> Result<Dg2<'_>, Dg2Error> {
    if bytes.len() > MAX_DG2_LEN {
        return Err(Dg2Error::TooLarge { len: bytes.len() });
    }
    let outer = Reader::single(bytes, TAG_DG2).map_err(tlv("data group template 75"))?;
    let group = outer
        .only_child(TAG_GROUP)
        .map_err(tlv("biometric information group template 7F61"))?;
    let mut children = group
        .children()
        .map_err(tlv("biometric information group template 7F61"))?;
    let count = read_count(&mut children)?;
    let mut images = Vec::new();
    for _ in 0..count {
        let template = children
            .expect(TAG_TEMPLATE)
            .map_err(tlv("biometric information template 7F60"))?;
        images.extend(read_template(&template)?);
    }
    children
        .finish()
        .map_err(tlv("biometric information group template 7F61"))?;
    Ok(Dg2 { images })
}

fn tlv(part: &'static str) -> impl Fn(TlvError) -> Dg2Error {
    move |source| Dg2Error::Tlv { part, source }
}

fn read_count(children: &mut Reader<'_>) -> Result<usize, Dg2Error> {
    let element = children
        .expect(TAG_COUNT)
        .map_err(tlv("number of instances 02"))?;
    let reason = match element.value {
        [n] if (1..=MAX_TEMPLATES).contains(&usize::from(*n)) => return Ok(usize::from(*n)),
        [n] => format!("{n} templates (1 to {MAX_TEMPLATES} accepted)"),
        other => format!("{} bytes (one expected)", other.len()),
    };
    Err(Dg2Error::Count {
        offset: element.offset,
        reason,
    })
}

/// The header must be there (it says the block is a face); the block is parsed as 19794-5.
fn read_template<'a>(template: &Tlv<'a>) -> Result<Vec<FacialImage<'a>>, Dg2Error> {
    let part = "biometric information template 7F60";
    let mut children = template.children().map_err(tlv(part))?;
    children
        .expect(TAG_HEADER)
        .map_err(tlv("biometric header template A1"))?;
    let block = match children.next_element().map_err(tlv(part))? {
        Some(b) if b.tag == TAG_DATA_BLOCK || b.tag == TAG_DATA_BLOCK_CONSTRUCTED => b,
        Some(other) => {
            return Err(Dg2Error::Tlv {
                part: "biometric data block 5F2E",
                source: TlvError::UnexpectedTag {
                    offset: other.offset,
                    expected: TAG_DATA_BLOCK,
                    found: other.tag,
                },
            })
        }
        None => {
            return Err(Dg2Error::Tlv {
                part: "biometric data block 5F2E",
                source: TlvError::Missing {
                    offset: template.offset,
                    tag: TAG_DATA_BLOCK,
                },
            })
        }
    };
    children.finish().map_err(tlv(part))?;
    parse_facial_record(block.value).map_err(|source| Dg2Error::FacialRecord {
        offset: block.value_offset,
        source,
    })
}
