//! Dequantization: quantized integers back to wavelet coefficients, placed in their
//! subbands' rectangles.
//!
//! The WSQ quantizer has a wider zero bin (width `Z`) than its other bins (width `Q`), and
//! reconstructs a nonzero index `p` not at the bin's midpoint but shifted towards zero by
//! the bin-centre parameter `C` (0.44 in the reference encoder):
//!
//! ```text
//! p > 0:  Q * (p - C) + Z / 2
//! p < 0:  Q * (p + C) - Z / 2
//! p = 0:  0
//! ```
//!
//! Subbands whose `Q` is zero carry no data and stay zero. The coefficient stream must hold
//! exactly one value per coefficient of every transmitted subband; anything else means the
//! file is damaged or was cut, and is reported rather than guessed at.

use super::segments::QuantTable;
use super::tree::{Geometry, CODED_SUBBANDS};
use crate::image::ImageError;

/// How many coefficients the stream must hold for this quantization table and layout.
pub(super) fn expected_coefficients(table: &QuantTable, geometry: &Geometry) -> usize {
    geometry
        .subbands
        .iter()
        .zip(table.bin_width.iter())
        .take(CODED_SUBBANDS)
        .filter(|(_, &q)| q != 0.0)
        .map(|(r, _)| r.width * r.height)
        .sum()
}

/// Fills a zeroed `width x height` plane with the dequantized coefficients.
pub(super) fn dequantize(
    coefficients: &[i32],
    table: &QuantTable,
    geometry: &Geometry,
    width: usize,
    height: usize,
) -> Result<Vec<f32>, ImageError> {
    let expected = expected_coefficients(table, geometry);
    if coefficients.len() != expected {
        return Err(ImageError::Corrupt {
            format: "WSQ",
            detail: format!(
                "block data holds {} coefficients, the quantization table (DQT) and frame size call for {expected}",
                coefficients.len()
            ),
        });
    }
    let mut plane = vec![0.0f32; width * height];
    let c = table.bin_center;
    let mut values = coefficients.iter();
    for band in 0..CODED_SUBBANDS {
        let (Some(&q), Some(&z), Some(r)) = (
            table.bin_width.get(band),
            table.zero_width.get(band),
            geometry.subbands.get(band),
        ) else {
            continue;
        };
        if q == 0.0 {
            continue;
        }
        let half_zero = z / 2.0;
        for row in r.y..r.y + r.height {
            let start = row * width + r.x;
            let Some(dest) = plane.get_mut(start..start + r.width) else {
                return Err(ImageError::Corrupt {
                    format: "WSQ",
                    detail: "subband outside the image".into(),
                });
            };
            for (d, &p) in dest.iter_mut().zip(values.by_ref()) {
                *d = match p {
                    0 => 0.0,
                    p if p > 0 => q * (p as f32 - c) + half_zero,
                    p => q * (p as f32 + c) - half_zero,
                };
            }
        }
    }
    Ok(plane)
}
