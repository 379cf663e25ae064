//! ISO/IEC 19794-5:2011 face image records (`FAC\0` `030\0`), as MOSIP 1.2 writes its face BDBs
//! (JPEG 2000 inside). Each representation yields its image bytes and size, borrowed from the
//! record; quality blocks, facial information and landmark points are skipped. The 2005 edition
//! (`010\0`, ICAO's) is another crate's; here it is a typed error naming the version.

use crate::bytes::{Reader, RecordError};

const RECORD: &str = "ISO 19794-5 face record";
pub const MAX_REPRESENTATIONS: usize = 16;

/// How the face image is stored (19794-5 image data type codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    Jpeg,
    Jpeg2000Lossy,
    Jpeg2000Lossless,
    Png,
    Other(u8),
}

impl ImageType {
    fn from_code(code: u8) -> ImageType {
        match code {
            0 => ImageType::Jpeg,
            1 => ImageType::Jpeg2000Lossy,
            2 => ImageType::Jpeg2000Lossless,
            3 => ImageType::Png,
            other => ImageType::Other(other),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            ImageType::Jpeg => 0,
            ImageType::Jpeg2000Lossy => 1,
            ImageType::Jpeg2000Lossless => 2,
            ImageType::Png => 3,
            ImageType::Other(c) => c,
        }
    }
}

/// One face image of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaceImage<'a> {
    pub image_type: ImageType,
    pub width: u16,
    pub height: u16,
    pub quality: Option<u8>,
    pub data: &'a [u8],
}

/// Reads a 2011 record's face images.
pub fn parse(bytes: &[u8]) -> Result<Vec<FaceImage<'_>>, RecordError> {
    let mut r = Reader::new(RECORD, bytes);
    if r.take("format identifier", 4)? != b"FAC\0" {
        return Err(r.invalid("format identifier", 0, "not FAC\\0".into()));
    }
    let version = r.take("version", 4)?;
    if version != b"030\0" {
        return Err(r.invalid(
            "version",
            4,
            format!("unsupported {version:?} (2011 is 030)"),
        ));
    }
    r.u32("record length")?;
    let count_at = r.offset();
    let count = usize::from(r.u16("number of representations")?);
    if count == 0 || count > MAX_REPRESENTATIONS {
        return Err(r.invalid(
            "number of representations",
            count_at,
            format!("{count} (1..={MAX_REPRESENTATIONS} accepted)"),
        ));
    }
    r.u8("certification flag")?;
    r.u16("temporal semantics")?;
    (0..count).map(|_| representation(&mut r)).collect()
}

fn representation<'a>(r: &mut Reader<'a>) -> Result<FaceImage<'a>, RecordError> {
    let (span, quality) = r.begin_representation()?;
    let landmarks = usize::from(r.u16("number of landmark points")?);
    r.take("facial information", 15)?;
    r.take("landmark points", 8 * landmarks)?;
    r.u8("face image type")?;
    let image_type = ImageType::from_code(r.u8("image data type")?);
    let width = r.u16("width")?;
    let height = r.u16("height")?;
    r.take("sampling, processing, cross reference, colour space", 5)?;
    let data = r.end_representation(span)?;
    Ok(FaceImage {
        image_type,
        width,
        height,
        quality,
        data,
    })
}

/// A one-image 2011 record (with one quality block and `landmarks` landmark points), for tests
/// and the side that plays MOSIP.
pub fn write_2011(
    image_type: ImageType,
    width: u16,
    height: u16,
    data: &[u8],
    landmarks: u16,
) -> Vec<u8> {
    let mut rep = vec![0x07, 0xea, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    rep.extend_from_slice(&[1, 90, 0, 0, 0, 0]);
    rep.extend_from_slice(&landmarks.to_be_bytes());
    rep.extend_from_slice(&[0; 15]);
    rep.extend(std::iter::repeat_n(0u8, 8 * usize::from(landmarks)));
    rep.extend_from_slice(&[1, image_type.code()]);
    rep.extend_from_slice(&width.to_be_bytes());
    rep.extend_from_slice(&height.to_be_bytes());
    rep.extend_from_slice(&[0, 0, 0, 0, 1]);
    rep.extend_from_slice(&(data.len() as u32).to_be_bytes());
    rep.extend_from_slice(data);
    let mut out = b"FAC\x00030\x00".to_vec();
    out.extend_from_slice(&((rep.len() + 4 + 17) as u32).to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0]);
    out.extend_from_slice(&((rep.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&rep);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_2011_record_reads_back() {
        let rec = write_2011(ImageType::Jpeg2000Lossless, 480, 640, b"j2k-face", 3);
        let faces = parse(&rec).unwrap();
        assert_eq!(faces.len(), 1);
        assert_eq!(faces[0].image_type, ImageType::Jpeg2000Lossless);
        assert_eq!((faces[0].width, faces[0].height), (480, 640));
        assert_eq!(faces[0].quality, Some(90));
        assert_eq!(faces[0].data, b"j2k-face");
    }

    #[test]
    fn broken_records_name_the_field_and_offset() {
        assert!(matches!(
            parse(b"FAC\x00010\x00"),
            Err(RecordError::Invalid {
                field: "version",
                offset: 4,
                ..
            })
        ));
        assert!(matches!(
            parse(b"FIR\x00030\x00"),
            Err(RecordError::Invalid {
                field: "format identifier",
                ..
            })
        ));
        let rec = write_2011(ImageType::Png, 1, 1, b"png", 0);
        assert!(matches!(
            parse(&rec[..rec.len() - 1]),
            Err(RecordError::Invalid {
                field: "representation length",
                offset: 17,
                ..
            })
        ));
        assert!(matches!(
            parse(&rec[..15]),
            Err(RecordError::Truncated {
                field: "temporal semantics",
                offset: 15,
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn any_bytes_give_faces_or_a_typed_error(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut bytes = b"FAC\x00030\x00".to_vec();
            bytes.extend_from_slice(&tail);
            let _ = parse(&bytes);
        }

        #[test]
        fn written_records_read_back(data in proptest::collection::vec(any::<u8>(), 0..64), landmarks in 0u16..5) {
            let rec = write_2011(ImageType::Jpeg, 2, 3, &data, landmarks);
            prop_assert_eq!(parse(&rec).unwrap()[0].data, &data[..]);
        }
    }
}
