//! WSQ (FBI Wavelet Scalar Quantization) grayscale decoder, written from the FBI
//! specification IAFIS-IC-0110 v3.1.
//!
//! WSQ is the compression standard for 500 ppi fingerprint images in criminal-justice, civil
//! ID and border systems, and no Rust decoder exists, so the engine carries its own. It must
//! be safe on hostile input (images arrive from the network) and faithful to the reference
//! decoder (minutiae extraction is sensitive to grey-level changes), which shapes the code:
//!
//! 1. `segments`: the marker segments (tables, frame header, comments) are parsed with a
//!    cursor that cannot read past the segment it was given; every count read from the file
//!    is capped, and the frame size passes [`Limits::check_dimensions`] before any buffer of
//!    image size is allocated.
//! 2. `huffman`: each data block's Huffman-coded run lengths, small values and escapes are
//!    decoded into quantized coefficients, never more than the image can hold.
//! 3. `quant`: the coefficients are dequantized (bin widths `Q`, zero bins `Z`, bin centre
//!    `C`) into the 60 transmitted subbands, laid out by the fixed WSQ decomposition
//!    tree of `tree`.
//! 4. `wavelet`: the 20 two-dimensional synthesis steps with the file's filter pair and
//!    symmetric extension rebuild the image plane.
//! 5. Each value is mapped to a pixel as `value * R + M`, rounded and clamped to 0..=255.
//!
//! The arithmetic is `f32`, in the same order as the NIST NBIS reference implementation, so
//! decoded pixels match it exactly (the integration test `wsq_reference` checks this against
//! NBIS output, with a tolerance of one grey level).
//!
//! Not supported (reported as [`ImageError::Unsupported`]): images under 49 pixels on a
//! side (the deepest of the five decomposition levels would be too short for the filters;
//! the reference encoder refuses most such sizes and its decoder reads out of bounds on the
//! rest) and even-length filter banks (never used by WSQ encoders). A DRT (restart interval)
//! segment is skipped; restart markers inside block data are not supported.

mod errors;
mod huffman;
mod quant;
mod segments;
mod tree;
mod wavelet;

use super::{GrayImage, ImageError, Limits};
use errors::corrupt;
use huffman::HuffmanTable;
use segments::{
    marker_name, Cursor, FrameHeader, QuantTable, TransformTable, COM, DHT, DQT, DRT, DTT, EOI,
    MAX_HUFFMAN_TABLES, SOB, SOF, SOI,
};

/// A decoded WSQ image and the resolution its NISTCOM comment states, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct WsqImage {
    pub image: GrayImage,
    pub ppi: Option<f32>,
}

/// True when `bytes` start with the WSQ start-of-image marker.
pub fn is_wsq(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0xFF && bytes[1] == 0xA0
}

/// Decodes a WSQ file. Never panics; every malformed input is an [`ImageError`].
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<WsqImage, ImageError> {
    limits.check_bytes(bytes.len())?;
    let mut input = Cursor::new(bytes);
    if input.u16("SOI marker")? != SOI {
        return Err(corrupt(0, "missing start-of-image marker (FFA0)"));
    }

    // Tables and comments up to the frame header.
    let mut tables = Tables::default();
    let frame = loop {
        let at = input.pos();
        match input.marker()? {
            SOF => break FrameHeader::parse(&mut input.segment("SOF")?)?,
            marker => tables.read(marker, at, &mut input, "before the frame header")?,
        }
    };
    let (width, height) = (usize::from(frame.width), usize::from(frame.height));
    if width == 0 || height == 0 {
        return Err(corrupt(
            0,
            format!("frame header (SOF) gives an empty {width}x{height} image"),
        ));
    }
    limits.check_dimensions(width as u64, height as u64)?;
    let geometry = tree::Geometry::new(width, height);
    if geometry.smallest_split() < tree::MIN_SPLIT {
        return Err(ImageError::Unsupported {
            format: "WSQ",
            detail: format!(
                "{width}x{height} image is too small for the WSQ wavelet tree (at least {} pixels per side)",
                tree::MIN_SIDE
            ),
        });
    }

    // Blocks of entropy-coded coefficients, with more tables allowed between them.
    let capacity = width * height;
    // Grown as data arrives (not reserved up front), so a small file claiming a large frame
    // fails on its data before anything of image size is allocated.
    let mut coefficients: Vec<i32> = Vec::new();
    let mut blocks = 0usize;
    loop {
        let at = input.pos();
        match input.marker()? {
            SOB => {
                let id = usize::from(input.segment("SOB")?.u8("SOB Huffman table id")?);
                let table = tables
                    .huffman
                    .get(id)
                    .and_then(Option::as_ref)
                    .ok_or_else(|| {
                        corrupt(
                            at,
                            format!("block {} uses undefined Huffman table {id}", blocks + 1),
                        )
                    })?;
                let end =
                    huffman::decode_block(bytes, input.pos(), table, &mut coefficients, capacity)?;
                input.seek(end)?;
                blocks += 1;
            }
            EOI => break,
            marker => tables.read(marker, at, &mut input, "between data blocks")?,
        }
    }
    if blocks == 0 {
        return Err(corrupt(
            input.pos(),
            "no data blocks (SOB) before the end-of-image marker",
        ));
    }
    let quant_table = tables
        .quant
        .ok_or_else(|| corrupt(0, "no quantization table (DQT)"))?;
    let transform = tables
        .transform
        .ok_or_else(|| corrupt(0, "no transform table (DTT)"))?;
    let filters = wavelet::SynthesisFilters::new(&transform)?;

    let mut plane = quant::dequantize(&coefficients, &quant_table, &geometry, width, height)?;
    drop(coefficients);
    wavelet::reconstruct(&mut plane, width, &geometry, &filters)?;
    let pixels = plane
        .iter()
        .map(|&v| to_pixel(v, frame.scale, frame.shift))
        .collect();
    Ok(WsqImage {
        image: GrayImage::new(u32::from(frame.width), u32::from(frame.height), pixels)?,
        ppi: tables.ppi,
    })
}

/// `value * scale + shift`, rounded half up and clamped to a byte (the reference decoder's
/// rounding, in `f32`).
#[inline]
fn to_pixel(value: f32, scale: f32, shift: f32) -> u8 {
    let v = value * scale + shift + 0.5;
    if v < 0.0 {
        0
    } else if v > 255.0 {
        255
    } else {
        // In 0..=255 here (or NaN, which `as` maps to 0): truncation is the rounding step.
        v as u8
    }
}

/// The tables in force, which may be (re)defined before the frame and between blocks.
#[derive(Debug, Default)]
struct Tables {
    transform: Option<TransformTable>,
    quant: Option<QuantTable>,
    huffman: [Option<HuffmanTable>; MAX_HUFFMAN_TABLES],
    /// Resolution from the first NISTCOM comment, if one was seen.
    ppi: Option<f32>,
    nistcom_seen: bool,
}

impl Tables {
    /// Reads the table or comment segment introduced by `marker` (found at offset `at`).
    fn read(
        &mut self,
        marker: u16,
        at: usize,
        input: &mut Cursor<'_>,
        place: &str,
    ) -> Result<(), ImageError> {
        let name = marker_name(marker);
        match marker {
            DTT => self.transform = Some(TransformTable::parse(&mut input.segment(&name)?)?),
            DQT => self.quant = Some(QuantTable::parse(&mut input.segment(&name)?)?),
            DHT => segments::parse_huffman_tables(&mut input.segment(&name)?, &mut self.huffman)?,
            DRT => {
                input.segment(&name)?;
            }
            COM => {
                let mut seg = input.segment(&name)?;
                let text = seg.bytes(seg.remaining(), "COM text")?;
                if !self.nistcom_seen {
                    if let Some(ppi) = segments::nistcom_ppi(text) {
                        self.ppi = ppi;
                        self.nistcom_seen = true;
                    }
                }
            }
            _ => return Err(corrupt(at, format!("unexpected marker {name} {place}"))),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_pixel_rounds_and_clamps() {
        assert_eq!(to_pixel(0.0, 1.0, 127.4), 127);
        assert_eq!(to_pixel(0.0, 1.0, 127.5), 128);
        assert_eq!(to_pixel(-1000.0, 1.0, 0.0), 0);
        assert_eq!(to_pixel(1000.0, 1.0, 0.0), 255);
        assert_eq!(to_pixel(f32::NAN, 1.0, 0.0), 0);
    }

    #[test]
    fn rejects_non_wsq_and_empty_input() {
        let limits = Limits::default();
        assert!(matches!(decode(&[], &limits), Err(ImageError::Empty)));
        assert!(matches!(
            decode(b"\x89PNG", &limits),
            Err(ImageError::Corrupt { .. })
        ));
        assert!(matches!(
            decode(&[0xFF, 0xA0], &limits),
            Err(ImageError::Corrupt { .. })
        ));
        assert!(matches!(
            decode(&[0xFF, 0xA0, 0xFF, 0xA1], &limits),
            Err(ImageError::Corrupt { .. })
        ));
    }
}
