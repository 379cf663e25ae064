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
