//! WSQ (FBI Wavelet Scalar Quantization) decoder, written from the FBI specification
//! IAFIS-IC-0110 v3.1. (Being implemented; the entry points below are the contract.)

use super::{GrayImage, ImageError, Limits};

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
    Err(ImageError::Unsupported {
        format: "WSQ",
        detail: "decoder not yet implemented".into(),
    })
}
