use thiserror::Error;

/// Why an image could not be used. No variant carries pixel data.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ImageError {
    #[error("image is empty")]
    Empty,
    #[error("image format not recognised (supported: PNG, JPEG, BMP, TIFF, PGM/PPM, GIF, WSQ)")]
    UnknownFormat,
    #[error("image of {bytes} bytes exceeds the limit of {limit} bytes")]
    TooManyBytes { bytes: usize, limit: usize },
    #[error("image of {width}x{height} pixels exceeds the limit of {limit} pixels")]
    TooManyPixels { width: u64, height: u64, limit: u64 },
    #[error("image dimension {width}x{height} is outside {min}..={max} pixels per side")]
    BadDimensions {
        width: u64,
        height: u64,
        min: u32,
        max: u32,
    },
    #[error("image exceeds a decoding limit: {0}")]
    LimitExceeded(String),
    #[error("corrupt {format} image: {detail}")]
    Corrupt {
        format: &'static str,
        detail: String,
    },
    #[error("unsupported {format} image: {detail}")]
    Unsupported {
        format: &'static str,
        detail: String,
    },
    #[error("invalid resolution {0} ppi (accepted: 100..=2000)")]
    BadResolution(f32),
}
