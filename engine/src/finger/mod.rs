//! Fingerprint extraction: image bytes → minutiae template and a quality score.
//!
//! The model works at 500 ppi, so the image is resampled to 500 ppi first and every coordinate
//! it reports is mapped back to the original image, which is what templates refer to.
//! Resolution comes from the request, else the file, else the 500 ppi that sensors default to.

mod error;
mod leader;
mod quality;

pub use error::FingerError;
pub use leader::{LeaderModel, RawMinutia};
pub use quality::{assess, FingerQuality};

use std::sync::Arc;

use crate::image::{self, GrayImage, Limits};
use crate::model::Runtime;
use crate::template::{FingerPosition, FingerTemplate, Impression, Minutia, MinutiaKind};

/// The resolution LEADER (and most minutiae extractors) were built for.
pub const MODEL_PPI: f32 = 500.0;

/// Where the resolution used for an extraction came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PpiSource {
    Request,
    File,
    Default,
}

/// What the caller knows about a capture.
#[derive(Debug, Clone, Copy, Default)]
pub struct CaptureInfo {
    /// Resolution the caller asserts, overriding the file's.
    pub ppi: Option<f32>,
    pub position: FingerPosition,
    pub impression: Impression,
}

/// A template and how it was obtained.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Extraction {
    pub template: FingerTemplate,
    pub quality: FingerQuality,
    pub ppi: f32,
    pub ppi_source: PpiSource,
}

/// Turns fingerprint images into templates. Cheap to share between threads.
pub struct FingerExtractor {
    leader: LeaderModel,
    limits: Limits,
}

impl FingerExtractor {
    /// Opens the `leader` model of the runtime's manifest.
    pub fn new(runtime: &Arc<Runtime>, limits: Limits) -> Result<FingerExtractor, FingerError> {
        Ok(FingerExtractor {
            leader: LeaderModel::open(runtime, "leader")?,
            limits,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decodes `bytes` (any supported format) and extracts.
    pub fn extract(&self, bytes: &[u8], info: CaptureInfo) -> Result<Extraction, FingerError> {
        let decoded = image::decode(bytes, &self.limits)?;
        let (ppi, source) = match (info.ppi, decoded.ppi) {
            (Some(p), _) => (p, PpiSource::Request),
            (None, Some(p)) => (p, PpiSource::File),
            (None, None) => (MODEL_PPI, PpiSource::Default),
        };
        self.extract_image(&decoded.image, ppi, source, info)
    }

    /// Extracts from an already decoded image at a known resolution.
    pub fn extract_image(
        &self,
        img: &GrayImage,
        ppi: f32,
        ppi_source: PpiSource,
        info: CaptureInfo,
    ) -> Result<Extraction, FingerError> {
        let resampled = image::resample_to_ppi(img, ppi, MODEL_PPI)?;
        let raw = self.leader.detect(&resampled.image)?;
        let quality = assess(&resampled.image, &raw);
        let inv = 1.0 / resampled.scale;
        let max_x = (img.width - 1) as f32;
        let max_y = (img.height - 1) as f32;
        let minutiae = raw
            .iter()
            .map(|m| Minutia {
                x: (m.x as f32 * inv).round().clamp(0.0, max_x) as u16,
                y: (m.y as f32 * inv).round().clamp(0.0, max_y) as u16,
                // LEADER measures directions counter-clockwise on screen (y up); the engine's
                // convention is atan2 in y-down image coordinates (clockwise on screen). A 90°
                // rotation test (engine/tests/matcher_convention.rs) pins this down.
                direction: Minutia::normalized_direction(-m.direction),
                kind: if m.ending {
                    MinutiaKind::Ending
                } else {
                    MinutiaKind::Bifurcation
                },
                quality: (m.quality * 100.0).round().clamp(0.0, 100.0) as u8,
            })
            .collect();
        let template = FingerTemplate {
            width: u16::try_from(img.width).map_err(|_| FingerError::TooLarge(img.width))?,
            height: u16::try_from(img.height).map_err(|_| FingerError::TooLarge(img.height))?,
            ppi: ppi.round() as u16,
            position: info.position,
            impression: info.impression,
            quality: quality.score,
            minutiae,
        };
        Ok(Extraction {
            template,
            quality,
            ppi,
            ppi_source,
        })
    }
}
