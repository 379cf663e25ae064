//! Image input: decoding every format a fingerprint or face capture arrives in, with limits
//! against hostile input, and resampling to the resolution the models expect.

mod color;
mod decode;
mod error;
mod limits;
mod resample;
mod resolution;
mod tiff_ifd;
mod tiff_palette;
pub mod wsq;

pub use color::{decode_rgb, ColorFormat, DecodedRgb, RgbImage};
pub use decode::{decode, DecodedImage, ImageFormat};
pub use error::ImageError;
pub use limits::Limits;
pub use resample::{resample_to_ppi, Resampled};

/// An 8-bit grayscale raster, row-major, `width * height` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrayImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl GrayImage {
    /// Builds an image, checking that the buffer matches the dimensions.
    pub fn new(width: u32, height: u32, pixels: Vec<u8>) -> Result<Self, ImageError> {
        let expected = width as usize * height as usize;
        if pixels.len() != expected || width == 0 || height == 0 {
            return Err(ImageError::Corrupt {
                format: "raw",
                detail: format!("{} bytes for a {width}x{height} image", pixels.len()),
            });
        }
        Ok(GrayImage {
            width,
            height,
            pixels,
        })
    }

    #[inline]
    pub fn get(&self, x: u32, y: u32) -> u8 {
        self.pixels[y as usize * self.width as usize + x as usize]
    }
}
