use super::ImageError;

/// Bounds on what a decoder will accept, checked *before* allocating for the pixels, so a tiny
/// file that claims to be 60000x60000 (a decompression bomb) is refused cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded input accepted.
    pub max_bytes: usize,
    /// Largest `width * height` accepted.
    pub max_pixels: u64,
    /// Largest side accepted.
    pub max_side: u32,
    /// Smallest side accepted: below this no biometric feature can be measured.
    pub min_side: u32,
}

impl Default for Limits {
    fn default() -> Self {
        // A rolled 10-print card scan at 1000 ppi is about 8000x8000; a phone photo 12 MP.
        Limits {
            max_bytes: 64 << 20,
            max_pixels: 64_000_000,
            max_side: 16_384,
            min_side: 16,
        }
    }
}

impl Limits {
    pub fn check_bytes(&self, len: usize) -> Result<(), ImageError> {
        if len == 0 {
            return Err(ImageError::Empty);
        }
        if len > self.max_bytes {
            return Err(ImageError::TooManyBytes {
                bytes: len,
                limit: self.max_bytes,
            });
        }
        Ok(())
    }

    pub fn check_dimensions(&self, width: u64, height: u64) -> Result<(), ImageError> {
        let side_ok = |s: u64| s >= self.min_side as u64 && s <= self.max_side as u64;
        if !side_ok(width) || !side_ok(height) {
            return Err(ImageError::BadDimensions {
                width,
                height,
                min: self.min_side,
                max: self.max_side,
            });
        }
        if width.saturating_mul(height) > self.max_pixels {
            return Err(ImageError::TooManyPixels {
                width,
                height,
                limit: self.max_pixels,
            });
        }
        Ok(())
    }
}

/// Opens an `image`-crate decoder for `bytes` with `limits` applied, and checks the dimensions
/// its header states before a single pixel is allocated. `name` labels errors.
pub(super) fn limited_decoder<'a>(
    bytes: &'a [u8],
    format: image::ImageFormat,
    name: &'static str,
    limits: &Limits,
) -> Result<impl image::ImageDecoder + 'a, ImageError> {
    use image::ImageDecoder;
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut crate_limits = image::Limits::default();
    crate_limits.max_image_width = Some(limits.max_side);
    crate_limits.max_image_height = Some(limits.max_side);
    // Leave room for an RGBA intermediate of the largest image we accept.
    crate_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    reader.limits(crate_limits);
    let decoder = reader
        .into_decoder()
        .map_err(|e| image_crate_error(name, e))?;
    let (w, h) = decoder.dimensions();
    limits.check_dimensions(w as u64, h as u64)?;
    Ok(decoder)
}

/// The `image` crate's errors in this module's terms.
pub(super) fn image_crate_error(name: &'static str, e: image::ImageError) -> ImageError {
    use image::error::ImageError as E;
    match e {
        E::Limits(l) => ImageError::LimitExceeded(l.to_string()),
        E::Unsupported(u) => ImageError::Unsupported {
            format: name,
            detail: u.to_string(),
        },
        other => ImageError::Corrupt {
            format: name,
            detail: other.to_string(),
        },
    }
}
