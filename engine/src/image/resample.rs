//! Resampling to the resolution a model was trained at, with the factor needed to map
//! coordinates found in the resampled image back to the original.

use super::{GrayImage, ImageError};

/// An image resampled to a target resolution.
#[derive(Debug, Clone)]
pub struct Resampled {
    pub image: GrayImage,
    /// `resampled coordinate = original coordinate * scale` (same on both axes).
    pub scale: f32,
}

/// Resamples `image` from `from_ppi` to `to_ppi`. Downscaling uses a triangle filter whose
/// support widens with the factor (so ridges are averaged, not aliased); within 0.1 % of the
/// target the image is returned as it is.
pub fn resample_to_ppi(
    image: &GrayImage,
    from_ppi: f32,
    to_ppi: f32,
) -> Result<Resampled, ImageError> {
    if !(100.0..=2000.0).contains(&from_ppi) {
        return Err(ImageError::BadResolution(from_ppi));
    }
    let scale = to_ppi / from_ppi;
    if (scale - 1.0).abs() < 1e-3 {
        return Ok(Resampled {
            image: image.clone(),
            scale: 1.0,
        });
    }
    let new_w = ((image.width as f32 * scale).round() as u32).max(1);
    let new_h = ((image.height as f32 * scale).round() as u32).max(1);
    let buf = image::GrayImage::from_raw(image.width, image.height, image.pixels.clone())
        .ok_or_else(|| ImageError::Corrupt {
            format: "raw",
            detail: "buffer size".into(),
        })?;
    let out = image::imageops::resize(&buf, new_w, new_h, image::imageops::FilterType::Triangle);
    Ok(Resampled {
        image: GrayImage::new(new_w, new_h, out.into_raw())?,
        scale,
    })
}
