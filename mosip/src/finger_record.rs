//! ISO/IEC 19794-4 finger image records, as MOSIP's BDBs carry them: the 2005 edition
//! (`FIR\0` `010\0`) and the 2011 edition (`FIR\0` `020\0`, what MOSIP 1.2 writes: JPEG 2000
//! lossless at registration). Each representation yields its finger position, resolution and
//! the embedded image bytes (JPEG 2000, WSQ, ...), borrowed from the record. Certification
//! blocks are skipped, and so is anything between the image and the end of its representation
//! (2011 extended data blocks), by the representation's own length.

use crate::bytes::{Reader, RecordError};

const RECORD: &str = "ISO 19794-4 finger record";
/// More representations than any hand has fingers and views.
pub const MAX_REPRESENTATIONS: usize = 64;

/// How the image of a representation is stored (19794-4 compression algorithm codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Uncompressed,
    UncompressedBitPacked,
    Wsq,
    Jpeg,
    Jpeg2000Lossy,
    Jpeg2000Lossless,
    Png,
    Other(u8),
}

impl Compression {
    fn from_code(code: u8) -> Compression {
        match code {
            0 => Compression::Uncompressed,
            1 => Compression::UncompressedBitPacked,
            2 => Compression::Wsq,
            3 => Compression::Jpeg,
            4 => Compression::Jpeg2000Lossy,
            5 => Compression::Jpeg2000Lossless,
            6 => Compression::Png,
            other => Compression::Other(other),
        }
    }

    /// The code written in a record.
    pub fn code(self) -> u8 {
        match self {
            Compression::Uncompressed => 0,
            Compression::UncompressedBitPacked => 1,
            Compression::Wsq => 2,
            Compression::Jpeg => 3,
            Compression::Jpeg2000Lossy => 4,
            Compression::Jpeg2000Lossless => 5,
            Compression::Png => 6,
            Compression::Other(c) => c,
        }
    }
}

/// The edition of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    Iso2005,
    Iso2011,
}

/// One finger image of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FingerImage<'a> {
    /// ISO finger position (0 unknown, 1 right thumb ... 10 left little, 11+ plain/palm).
    pub position: u8,
    pub compression: Compression,
    pub width: u16,
    pub height: u16,
    /// Image resolution in pixels per inch (converted from pixels per cm when so recorded).
    pub ppi: u16,
    pub bit_depth: u8,
    /// The first quality score (0-100), if any.
    pub quality: Option<u8>,
    pub data: &'a [u8],
}

/// A parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FingerRecord<'a> {
    pub edition: Edition,
    pub images: Vec<FingerImage<'a>>,
}

/// Reads a record.
pub fn parse(bytes: &[u8]) -> Result<FingerRecord<'_>, RecordError> {
    let mut r = Reader::new(RECORD, bytes);
    if r.take("format identifier", 4)? != b"FIR\0" {
        return Err(r.invalid("format identifier", 0, "not FIR\\0".into()));
    }
    match r.take("version", 4)? {
        b"010\0" => parse_2005(r),
        b"020\0" => parse_2011(r),
        other => Err(r.invalid("version", 4, format!("unsupported {other:?}"))),
    }
}

/// Resolution in ppi from a value in `scale_units` (1 ppi, 2 ppcm).
fn ppi(scale_units: u8, value: u16) -> u16 {
    if scale_units == 2 {
        (f64::from(value) * 2.54).round().min(f64::from(u16::MAX)) as u16
    } else {
        value
    }
}

fn representation_count(r: &Reader, count: usize, offset: usize) -> Result<usize, RecordError> {
    if count == 0 || count > MAX_REPRESENTATIONS {
        return Err(r.invalid(
            "number of representations",
            offset,
            format!("{count} (1..={MAX_REPRESENTATIONS} accepted)"),
        ));
    }
    Ok(count)
}

fn parse_2005(mut r: Reader<'_>) -> Result<FingerRecord<'_>, RecordError> {
    r.u48("record length")?;
    r.take("capture device and acquisition level", 4)?;
    let count_at = r.offset();
    let count = usize::from(r.u8("number of fingers")?);
    let count = representation_count(&r, count, count_at)?;
    let scale = r.u8("scale units")?;
    r.take("scan resolution", 4)?;
    let res = ppi(scale, r.u16("horizontal image resolution")?);
    r.u16("vertical image resolution")?;
    let depth = r.u8("pixel depth")?;
    let compression = Compression::from_code(r.u8("compression algorithm")?);
    r.take("reserved", 2)?;
    let mut images = Vec::with_capacity(count);
    for _ in 0..count {
        let start = r.offset();
        let length = r.u32("finger data block length")? as usize;
        if length < 14 {
            return Err(r.invalid("finger data block length", start, format!("{length} < 14")));
        }
        let position = r.u8("finger position")?;
        r.take("view count and number", 2)?;
        let quality = r.u8("finger quality")?;
        r.u8("impression type")?;
        let width = r.u16("horizontal line length")?;
        let height = r.u16("vertical line length")?;
        r.u8("reserved")?;
        let data = r.take("image data", length - 14)?;
        images.push(FingerImage {
            position,
            compression,
            width,
            height,
            ppi: res,
            bit_depth: depth,
            quality: Some(quality),
            data,
        });
    }
    Ok(FingerRecord {
        edition: Edition::Iso2005,
        images,
    })
}

fn parse_2011(mut r: Reader<'_>) -> Result<FingerRecord<'_>, RecordError> {
    r.u32("record length")?;
    let count_at = r.offset();
    let count = usize::from(r.u16("number of representations")?);
    let count = representation_count(&r, count, count_at)?;
    let certified = r.u8("certification flag")? != 0;
    r.u8("number of distinct finger positions")?;
    let mut images = Vec::with_capacity(count);
    for _ in 0..count {
        images.push(representation_2011(&mut r, certified)?);
    }
    Ok(FingerRecord {
        edition: Edition::Iso2011,
        images,
    })
}

fn representation_2011<'a>(
    r: &mut Reader<'a>,
    certified: bool,
) -> Result<FingerImage<'a>, RecordError> {
    let (span, quality) = r.begin_representation()?;
    if certified {
        let certs = usize::from(r.u8("number of certification blocks")?);
        r.take("certification blocks", 3 * certs)?;
    }
    let position = r.u8("finger position")?;
    r.u8("representation number")?;
    let scale = r.u8("scale units")?;
    r.take("capture resolution", 4)?;
    let res = ppi(scale, r.u16("horizontal image resolution")?);
    r.u16("vertical image resolution")?;
    let bit_depth = r.u8("bit depth")?;
    let compression = Compression::from_code(r.u8("compression algorithm")?);
    r.u8("impression type")?;
    let width = r.u16("horizontal line length")?;
    let height = r.u16("vertical line length")?;
    // Extended data blocks, if any, lie between the image and the representation's end.
    let data = r.end_representation(span)?;
    Ok(FingerImage {
        position,
        compression,
        width,
        height,
        ppi: res,
        bit_depth,
        quality,
        data,
    })
}

/// One finger image to write with [`write_2011`].
#[derive(Debug, Clone)]
pub struct NewFingerImage<'a> {
    pub position: u8,
    pub compression: Compression,
    pub width: u16,
    pub height: u16,
    pub ppi: u16,
    pub quality: u8,
    pub data: &'a [u8],
    /// Extended data written after the image (to exercise readers that must skip it).
    pub extended: &'a [u8],
}

/// An ISO/IEC 19794-4:2011 record of `images` with one quality block and one certification
/// block each, as a MOSIP device would produce (for tests and the side that plays MOSIP).
pub fn write_2011(images: &[NewFingerImage]) -> Vec<u8> {
    let mut body = Vec::new();
    for img in images {
        let mut rep = Vec::new();
        rep.extend_from_slice(&[0x07, 0xea, 1, 1, 0, 0, 0, 0, 0]); // capture date 2026-01-01
        rep.extend_from_slice(&[0, 0, 0, 0, 0]); // device technology, vendor, type
        rep.push(1);
        rep.extend_from_slice(&[img.quality, 0, 0, 0, 0]);
        rep.push(1);
        rep.extend_from_slice(&[0, 0, 0]);
        rep.extend_from_slice(&[img.position, 0, 1]);
        for _ in 0..3 {
            rep.extend_from_slice(&img.ppi.to_be_bytes());
        }
        rep.extend_from_slice(&img.ppi.to_be_bytes());
        rep.extend_from_slice(&[8, img.compression.code(), 0]);
        rep.extend_from_slice(&img.width.to_be_bytes());
        rep.extend_from_slice(&img.height.to_be_bytes());
        rep.extend_from_slice(&(img.data.len() as u32).to_be_bytes());
        rep.extend_from_slice(img.data);
        rep.extend_from_slice(img.extended);
        body.extend_from_slice(&((rep.len() + 4) as u32).to_be_bytes());
        body.extend_from_slice(&rep);
    }
    let mut out = b"FIR\x00020\x00".to_vec();
    out.extend_from_slice(&((body.len() + 16) as u32).to_be_bytes());
    out.extend_from_slice(&(images.len() as u16).to_be_bytes());
    out.push(1); // certification flag: blocks present
    out.push(images.len() as u8);
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests;
