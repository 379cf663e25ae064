//! Finger minutiae templates: the in-memory model and its encodings.
//!
//! Conventions used everywhere in the engine (codecs convert at the edge):
//! - `x`, `y` are pixels of the *original* image, origin top-left, `y` growing downward;
//! - `direction` is in radians in `[0, 2π)`, measured as `atan2(dy, dx)` in those y-down image
//!   coordinates (so it turns clockwise on screen). ISO/ANSI store the counter-clockwise angle;
//!   `.xyt` flips the y axis. Getting this wrong is silent, so every codec has a test for it.
//! - `quality` is 0..=100.

mod ansi;
mod error;
mod fmr;
mod iso;
mod native;
mod xyt;

pub use ansi::{decode_ansi, encode_ansi};
pub use error::TemplateError;
pub use iso::{decode_iso, encode_iso};
pub use native::{decode_native, encode_native, NATIVE_MAGIC, NATIVE_VERSION};
pub use xyt::{decode_xyt, encode_xyt, MAX_XYT_BYTES};

use std::f32::consts::TAU;

/// Largest number of minutiae a template may hold. ISO/ANSI store the count in one byte.
pub const MAX_MINUTIAE: usize = 255;

/// The kind of ridge event a minutia marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MinutiaKind {
    Ending,
    Bifurcation,
    /// ISO type `00`: the extractor did not say.
    Other,
}

/// One minutia in engine conventions (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Minutia {
    pub x: u16,
    pub y: u16,
    /// Radians in `[0, 2π)`, `atan2` in y-down image coordinates.
    pub direction: f32,
    pub kind: MinutiaKind,
    /// 0..=100.
    pub quality: u8,
}

impl Minutia {
    /// Direction wrapped into `[0, 2π)`.
    pub fn normalized_direction(angle: f32) -> f32 {
        let a = angle.rem_euclid(TAU);
        // rem_euclid can return TAU itself for tiny negative inputs through rounding.
        if a >= TAU {
            0.0
        } else {
            a
        }
    }
}

/// ISO/IEC 19794-2 finger position code: 0 unknown, 1 right thumb .. 10 left little.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "u8", into = "u8")]
pub struct FingerPosition(u8);

impl FingerPosition {
    pub const UNKNOWN: FingerPosition = FingerPosition(0);

    /// Accepts the ISO codes 0..=10.
    pub fn new(code: u8) -> Result<Self, TemplateError> {
        if code <= 10 {
            Ok(FingerPosition(code))
        } else {
            Err(TemplateError::InvalidField {
                field: "finger position",
                detail: format!("{code} is not an ISO finger position (0..=10)"),
            })
        }
    }

    pub fn code(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for FingerPosition {
    type Error = TemplateError;
    fn try_from(code: u8) -> Result<Self, Self::Error> {
        FingerPosition::new(code)
    }
}

impl From<FingerPosition> for u8 {
    fn from(p: FingerPosition) -> u8 {
        p.0
    }
}

/// ISO impression type of the capture.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Impression {
    #[default]
    LivePlain,
    LiveRolled,
    NonLivePlain,
    NonLiveRolled,
    Swipe,
}

impl Impression {
    pub fn code(self) -> u8 {
        match self {
            Impression::LivePlain => 0,
            Impression::LiveRolled => 1,
            Impression::NonLivePlain => 2,
            Impression::NonLiveRolled => 3,
            Impression::Swipe => 8,
        }
    }

    pub fn from_code(code: u8) -> Result<Self, TemplateError> {
        Ok(match code {
            0 => Impression::LivePlain,
            1 => Impression::LiveRolled,
            2 => Impression::NonLivePlain,
            3 => Impression::NonLiveRolled,
            8 => Impression::Swipe,
            other => {
                return Err(TemplateError::InvalidField {
                    field: "impression type",
                    detail: format!("{other} is not an ISO impression type"),
                })
            }
        })
    }
}

/// A finger minutiae template: one view of one finger.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FingerTemplate {
    /// Size of the image the minutiae were found in, in pixels.
    pub width: u16,
    pub height: u16,
    /// Resolution of that image in pixels per inch (the coordinates' unit).
    pub ppi: u16,
    pub position: FingerPosition,
    pub impression: Impression,
    /// Finger (image) quality 0..=100.
    pub quality: u8,
    pub minutiae: Vec<Minutia>,
}

/// Encodings a template can be read from or written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateFormat {
    Native,
    Iso19794_2005,
    Ansi378_2004,
    Xyt,
}

impl FingerTemplate {
    /// Checks the invariants every codec relies on.
    pub fn validate(&self) -> Result<(), TemplateError> {
        if self.minutiae.len() > MAX_MINUTIAE {
            return Err(TemplateError::TooManyMinutiae(self.minutiae.len()));
        }
        if self.ppi == 0 {
            return Err(TemplateError::InvalidField {
                field: "resolution",
                detail: "resolution must be positive".into(),
            });
        }
        if self.quality > 100 {
            return Err(TemplateError::InvalidField {
                field: "finger quality",
                detail: format!("{} exceeds 100", self.quality),
            });
        }
        for (i, m) in self.minutiae.iter().enumerate() {
            if m.quality > 100 || !m.direction.is_finite() || !(0.0..TAU).contains(&m.direction) {
                return Err(TemplateError::InvalidField {
                    field: "minutia",
                    detail: format!("minutia {i} has quality or direction out of range"),
                });
            }
        }
        Ok(())
    }

    /// Sniffs the encoding of `bytes`: native magic, ISO/ANSI `FMR\0`, else `.xyt` text.
    pub fn detect_format(bytes: &[u8]) -> Option<TemplateFormat> {
        if bytes.starts_with(NATIVE_MAGIC) {
            Some(TemplateFormat::Native)
        } else if bytes.starts_with(b"FMR\0") {
            // ISO and ANSI share the first 8 bytes; `iso::looks_like_ansi` tells them apart.
            if iso::looks_like_ansi(bytes) {
                Some(TemplateFormat::Ansi378_2004)
            } else {
                Some(TemplateFormat::Iso19794_2005)
            }
        } else if xyt::looks_like_xyt(bytes) {
            Some(TemplateFormat::Xyt)
        } else {
            None
        }
    }

    /// Decodes any supported encoding. `.xyt` carries no header, so its image height (needed to
    /// flip the y axis back) and resolution come from `xyt_geometry` when given.
    pub fn decode_any(
        bytes: &[u8],
        xyt_geometry: Option<XytGeometry>,
    ) -> Result<Self, TemplateError> {
        match Self::detect_format(bytes) {
            Some(TemplateFormat::Native) => decode_native(bytes),
            Some(TemplateFormat::Iso19794_2005) => decode_iso(bytes),
            Some(TemplateFormat::Ansi378_2004) => decode_ansi(bytes),
            Some(TemplateFormat::Xyt) => decode_xyt(bytes, xyt_geometry.unwrap_or_default()),
            None => Err(TemplateError::UnknownFormat),
        }
    }
}

/// What an `.xyt` file does not record: the image geometry the coordinates refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XytGeometry {
    pub width: u16,
    pub height: u16,
    pub ppi: u16,
}

impl Default for XytGeometry {
    fn default() -> Self {
        // Without geometry the y axis is flipped about the largest y seen (see `xyt.rs`);
        // 500 ppi is the NBIS assumption.
        XytGeometry {
            width: 0,
            height: 0,
            ppi: 500,
        }
    }
}
