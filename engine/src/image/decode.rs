//! Format sniffing and decoding into an 8-bit gray raster, with the resolution the file states.

use super::limits::{image_crate_error, limited_decoder};
use super::{wsq, GrayImage, ImageError, Limits};

/// The container an image arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Png,
    Jpeg,
    Bmp,
    Tiff,
    Pnm,
    Gif,
    Wsq,
    /// JPEG 2000, JP2 file format or raw codestream (what MOSIP's 19794-4 finger records hold).
    Jpeg2000,
}

/// The JP2 file signature box and the start of a raw JPEG 2000 codestream (SOC, SIZ).
const JP2: &[u8] = &[
    0, 0, 0, 0x0C, b'j', b'P', b' ', b' ', 0x0D, 0x0A, 0x87, 0x0A,
];
const J2K: &[u8] = &[0xFF, 0x4F, 0xFF, 0x51];

impl ImageFormat {
    /// Identifies the format from its magic bytes; the file name is never trusted.
    pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
        let starts = |m: &[u8]| bytes.starts_with(m);
        if wsq::is_wsq(bytes) {
            Some(ImageFormat::Wsq)
        } else if starts(JP2) || starts(J2K) {
            Some(ImageFormat::Jpeg2000)
        } else if starts(b"\x89PNG\r\n\x1a\n") {
            Some(ImageFormat::Png)
        } else if starts(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageFormat::Jpeg)
        } else if starts(b"BM") {
            Some(ImageFormat::Bmp)
        } else if starts(b"II*\0") || starts(b"MM\0*") {
            Some(ImageFormat::Tiff)
        } else if starts(b"GIF87a") || starts(b"GIF89a") {
            Some(ImageFormat::Gif)
        } else if bytes.len() >= 2 && bytes[0] == b'P' && (b'1'..=b'7').contains(&bytes[1]) {
            Some(ImageFormat::Pnm)
        } else {
            None
        }
    }

    fn as_image_crate(self) -> Option<image::ImageFormat> {
        Some(match self {
            ImageFormat::Png => image::ImageFormat::Png,
            ImageFormat::Jpeg => image::ImageFormat::Jpeg,
            ImageFormat::Bmp => image::ImageFormat::Bmp,
            ImageFormat::Tiff => image::ImageFormat::Tiff,
            ImageFormat::Pnm => image::ImageFormat::Pnm,
            ImageFormat::Gif => image::ImageFormat::Gif,
            ImageFormat::Wsq | ImageFormat::Jpeg2000 => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            ImageFormat::Png => "PNG",
            ImageFormat::Jpeg => "JPEG",
            ImageFormat::Bmp => "BMP",
            ImageFormat::Tiff => "TIFF",
            ImageFormat::Pnm => "PNM",
            ImageFormat::Gif => "GIF",
            ImageFormat::Wsq => "WSQ",
            ImageFormat::Jpeg2000 => "JPEG 2000",
        }
    }
}

/// A decoded image with what the file said about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedImage {
    pub image: GrayImage,
    pub format: ImageFormat,
    /// Resolution stated by the file (pixels per inch), when it states a plausible one.
    pub ppi: Option<f32>,
}

/// Decodes any supported format to 8-bit gray. Colour images are converted with the Rec. 601
/// luma weights; palette images are expanded first. Dimensions are checked against `limits`
/// from the header, before the pixel buffer is allocated.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<DecodedImage, ImageError> {
    limits.check_bytes(bytes.len())?;
    let format = ImageFormat::sniff(bytes).ok_or(ImageError::UnknownFormat)?;
    if format == ImageFormat::Wsq {
        let w = wsq::decode(bytes, limits)?;
        return Ok(DecodedImage {
            image: w.image,
            format,
            ppi: w.ppi.and_then(plausible_ppi),
        });
    }
    if format == ImageFormat::Jpeg2000 {
        // The colour path's OpenJPEG decoder, then luma: one JPEG 2000 decoder in the engine.
        return Ok(DecodedImage {
            image: super::color::decode_jpeg2000(bytes, limits)?.to_gray(),
            format,
            ppi: None,
        });
    }
    let palette = match format {
        ImageFormat::Tiff => super::tiff_palette::prepare(bytes),
        _ => None,
    };
    let image = match palette {
        Some(palette) => {
            let mut indices = decode_with_image_crate(&palette.as_gray, format, limits)?;
            for p in indices.pixels.iter_mut() {
                *p = palette.luma[*p as usize];
            }
            indices
        }
        None => decode_with_image_crate(bytes, format, limits)?,
    };
    let ppi = super::resolution::stated_ppi(format, bytes).and_then(plausible_ppi);
    Ok(DecodedImage { image, format, ppi })
}

fn decode_with_image_crate(
    bytes: &[u8],
    format: ImageFormat,
    limits: &Limits,
) -> Result<GrayImage, ImageError> {
    let image_format = format.as_image_crate().ok_or(ImageError::UnknownFormat)?;
    let decoder = limited_decoder(bytes, image_format, format.name(), limits)?;
    let luma = image::DynamicImage::from_decoder(decoder)
        .map_err(|e| image_crate_error(format.name(), e))?
        .into_luma8();
    let (width, height) = luma.dimensions();
    GrayImage::new(width, height, luma.into_raw())
}

/// Files often carry placeholder densities (72, 96, "1 per inch"); those are not capture
/// resolutions of a biometric sensor, so they are ignored rather than trusted.
fn plausible_ppi(ppi: f32) -> Option<f32> {
    (ppi.is_finite() && (250.0..=2000.0).contains(&ppi)).then_some(ppi)
}
