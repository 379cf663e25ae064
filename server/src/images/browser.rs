//! Kept images as a browser shows them: whatever the capture format (WSQ and JPEG 2000 are
//! not web formats), an image leaves the server as PNG — fingers in gray, faces in colour,
//! upright. Decoding goes through the engine's own decoders, with their limits, so a damaged
//! kept image is a typed error, never a panic.

use abis_engine::image::{decode, decode_rgb, ImageError, ImageFormat, Limits};
use image::ImageEncoder;

use super::ImageKind;

/// Why an image could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum BrowserImageError {
    #[error("{0}")]
    Decode(#[from] ImageError),
    #[error("PNG encoding failed: {0}")]
    Encode(String),
}

/// The PNG of a kept image of `kind`.
pub fn to_png(kind: ImageKind, bytes: &[u8]) -> Result<Vec<u8>, BrowserImageError> {
    let limits = Limits::default();
    // Gray decoding knows WSQ; the colour decoder knows JPEG 2000 and EXIF orientation.
    let gray = kind == ImageKind::Finger && ImageFormat::sniff(bytes).is_some();
    let (width, height, pixels, colour) = if gray {
        let d = decode(bytes, &limits)?.image;
        (d.width, d.height, d.pixels, image::ExtendedColorType::L8)
    } else {
        let d = decode_rgb(bytes, &limits)?.image;
        (d.width, d.height, d.pixels, image::ExtendedColorType::Rgb8)
    };
    let mut out = Vec::with_capacity(pixels.len() / 2);
    image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Sub,
    )
    .write_image(&pixels, width, height, colour)
    .map_err(|e| BrowserImageError::Encode(e.to_string()))?;
    Ok(out)
}
