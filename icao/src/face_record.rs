//! The ISO/IEC 19794-5:2005 facial record inside a DG2 biometric data block (big-endian):
//! a 14-byte header (`"FAC\0"`, `"010\0"`, record length, number of images), then per image a
//! 20-byte facial information block, 8 bytes per feature point, a 12-byte image information
//! block and the image itself. The 2011 edition (`"030\0"`) has another layout and is refused
//! by name.

use thiserror::Error;

const MAGIC: &[u8; 4] = b"FAC\0";
const VERSION_2005: &[u8; 4] = b"010\0";
const VERSION_2011: &[u8; 4] = b"030\0";
const HEADER_LEN: usize = 14;
const FACIAL_INFORMATION_LEN: usize = 20;
const FEATURE_POINT_LEN: usize = 8;
const IMAGE_INFORMATION_LEN: usize = 12;

/// How the portrait's image is encoded (image data type of the image information block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    Jpeg,
    Jpeg2000,
}

impl ImageType {
    /// `"jpeg"` or `"jpeg2000"`.
    pub fn name(self) -> &'static str {
        match self {
            ImageType::Jpeg => "jpeg",
            ImageType::Jpeg2000 => "jpeg2000",
        }
    }
}

/// One facial image of the record: the encoded bytes and what the record declares about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacialImage<'a> {
    pub image_type: ImageType,
    pub width: u16,
    pub height: u16,
    pub feature_points: u16,
    pub data: &'a [u8],
}

/// What is wrong with a facial record; offsets count from the record's first byte.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FaceRecordError {
    #[error(
        "not an ISO/IEC 19794-5 facial record (format identifier at offset 0 is not \"FAC\\0\")"
    )]
    NotFacialRecord,
    #[error(
        "ISO/IEC 19794-5:2011 (version \"030\") records are not supported, only the 2005 edition"
    )]
    UnsupportedVersion2011,
    #[error("unknown ISO/IEC 19794-5 version {0:02X?} at offset 4")]
    UnknownVersion([u8; 4]),
    #[error("{field} at offset {offset}: {needed} bytes needed, {available} left")]
    Truncated {
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("record length {declared} at offset 8 differs from the {actual} bytes given")]
    RecordLength { declared: u32, actual: usize },
    #[error("the record holds no facial image (number of facial images at offset 12 is 0)")]
    NoImage,
    #[error("facial record data length {declared} at offset {offset} is below the {minimum} bytes of its fixed blocks")]
    BlockLength {
        offset: usize,
        declared: u32,
        minimum: usize,
    },
    #[error("unknown image data type {value} at offset {offset} (0 JPEG, 1 JPEG 2000)")]
    UnknownImageType { offset: usize, value: u8 },
    #[error("{left} bytes after the last facial image (offset {offset})")]
    TrailingBytes { offset: usize, left: usize },
}

/// Parses a whole 19794-5:2005 record into its facial images.
pub fn parse_facial_record(record: &[u8]) -> Result<Vec<FacialImage<'_>>, FaceRecordError> {
    let mut cursor = Cursor {
        data: record,
        pos: 0,
    };
    let count = read_header(&mut cursor)?;
    let mut images = Vec::with_capacity(usize::from(count).min(16));
    for _ in 0..count {
        images.push(read_facial_block(&mut cursor)?);
    }
    if cursor.pos != record.len() {
        return Err(FaceRecordError::TrailingBytes {
            offset: cursor.pos,
            left: record.len() - cursor.pos,
        });
    }
    Ok(images)
}

fn read_header(cursor: &mut Cursor<'_>) -> Result<u16, FaceRecordError> {
    let magic = cursor.take("format identifier", 4)?;
    if magic != MAGIC {
        return Err(FaceRecordError::NotFacialRecord);
    }
    let version: [u8; 4] = cursor.array("version")?;
    match &version {
        v if v == VERSION_2005 => {}
        v if v == VERSION_2011 => return Err(FaceRecordError::UnsupportedVersion2011),
        _ => return Err(FaceRecordError::UnknownVersion(version)),
    }
    let declared = cursor.u32("record length")?;
    if usize::try_from(declared).ok() != Some(cursor.data.len()) {
        return Err(FaceRecordError::RecordLength {
            declared,
            actual: cursor.data.len(),
        });
    }
    let count = cursor.u16("number of facial images")?;
    debug_assert_eq!(cursor.pos, HEADER_LEN);
    if count == 0 {
        return Err(FaceRecordError::NoImage);
    }
    Ok(count)
}

/// Facial information, feature points, image information and image data of one image.
fn read_facial_block<'a>(cursor: &mut Cursor<'a>) -> Result<FacialImage<'a>, FaceRecordError> {
    let start = cursor.pos;
    let block_len = cursor.u32("facial record data length")?;
    let feature_points = cursor.u16("number of feature points")?;
    // Gender, eye and hair colour, feature mask, expression, pose angles and uncertainties.
    cursor.take("facial information", FACIAL_INFORMATION_LEN - 6)?;
    let fixed = FACIAL_INFORMATION_LEN
        + usize::from(feature_points) * FEATURE_POINT_LEN
        + IMAGE_INFORMATION_LEN;
    let block_len_usize = usize::try_from(block_len).unwrap_or(usize::MAX);
    if block_len_usize < fixed {
        return Err(FaceRecordError::BlockLength {
            offset: start,
            declared: block_len,
            minimum: fixed,
        });
    }
    cursor.take(
        "feature points",
        usize::from(feature_points) * FEATURE_POINT_LEN,
    )?;
    // Face image type (full frontal, token...) is not needed to match.
    cursor.take("face image type", 1)?;
    let type_offset = cursor.pos;
    let image_type = match cursor.take("image data type", 1)?[0] {
        0 => ImageType::Jpeg,
        1 => ImageType::Jpeg2000,
        value => {
            return Err(FaceRecordError::UnknownImageType {
                offset: type_offset,
                value,
            })
        }
    };
    let width = cursor.u16("width")?;
    let height = cursor.u16("height")?;
    // Colour space, source type, device type and quality.
    cursor.take("image information", IMAGE_INFORMATION_LEN - 6)?;
    let data = cursor.take("image data", block_len_usize - fixed)?;
    Ok(FacialImage {
        image_type,
        width,
        height,
        feature_points,
        data,
    })
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], FaceRecordError> {
        let available = self.data.len() - self.pos;
        if n > available {
            return Err(FaceRecordError::Truncated {
                field,
                offset: self.pos,
                needed: n,
                available,
            });
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FaceRecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, FaceRecordError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, FaceRecordError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
}
