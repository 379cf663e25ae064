//! The engine's own compact binary template ("ABFT"), used for storage and the gallery.
//!
//! Why not ISO/ANSI: those quantise angles to 1.4 or 2 degrees, limit coordinates to 14 bits
//! and carry nothing to detect corruption. The native form keeps directions to 2π/65536
//! (≈ 0.0055°), full 16-bit coordinates, and a CRC-32 over the whole record, in 20 + 8·N bytes.
//!
//! Layout, all integers **little-endian**:
//!
//! | offset | size | field                                                              |
//! |-------:|-----:|--------------------------------------------------------------------|
//! | 0      | 4    | magic `b"ABFT"`                                                    |
//! | 4      | 1    | version, `1`                                                       |
//! | 5      | 2    | image width, pixels                                                |
//! | 7      | 2    | image height, pixels                                               |
//! | 9      | 2    | resolution, pixels per inch (> 0)                                  |
//! | 11     | 1    | finger position, ISO code 0..=10                                   |
//! | 12     | 1    | impression, ISO code (0, 1, 2, 3, 8)                               |
//! | 13     | 1    | finger quality 0..=100                                             |
//! | 14     | 2    | minutia count N, at most [`MAX_MINUTIAE`](super::MAX_MINUTIAE)     |
//! | 16     | 8·N  | minutiae: x u16, y u16, direction u16, kind u8, quality u8         |
//! | 16+8N  | 4    | CRC-32 (IEEE, as `crc32fast`) of bytes `0..16+8N`                  |
//!
//! A minutia's direction is in units of 2π/65536 of the engine direction (`atan2` in y-down
//! image coordinates, no flip); kind is 0 ending, 1 bifurcation, 2 other; quality 0..=100.
//!
//! Decoding checks, in this order: magic, version (an unknown version gives
//! [`TemplateError::UnsupportedVersion`] before anything else is read, since a later layout may
//! differ), header length, minutia count, exact record length, CRC ([`TemplateError::Checksum`]),
//! then every field's range. Encoding then decoding gives back every field exactly except the
//! direction, which is rounded to the nearest 2π/65536; a decoded template re-encodes to the same
//! bytes.

use std::f64::consts::TAU;

use super::fmr::Reader;
use super::{
    FingerPosition, FingerTemplate, Impression, Minutia, MinutiaKind, TemplateError, MAX_MINUTIAE,
};

/// First four bytes of a native template.
pub const NATIVE_MAGIC: &[u8; 4] = b"ABFT";
/// The layout version this build writes and reads.
pub const NATIVE_VERSION: u8 = 1;

const HEADER_LEN: usize = 16;
const MINUTIA_LEN: usize = 8;
const CRC_LEN: usize = 4;

fn malformed(field: &'static str, offset: usize, detail: impl Into<String>) -> TemplateError {
    TemplateError::Malformed {
        field,
        offset,
        detail: detail.into(),
    }
}

/// Engine direction to 2π/65536 units (2π itself wraps to 0).
fn direction_to_units(direction: f32) -> u16 {
    ((f64::from(direction) / TAU * 65536.0).round() as i64 & 0xFFFF) as u16
}

fn units_to_direction(units: u16) -> f32 {
    Minutia::normalized_direction((f64::from(units) * TAU / 65536.0) as f32)
}

/// Decodes a native template, checking magic, version, length, CRC and field ranges.
pub fn decode_native(bytes: &[u8]) -> Result<FingerTemplate, TemplateError> {
    let mut r = Reader::new(bytes);
    if r.take(4, "magic")? != NATIVE_MAGIC {
        return Err(malformed("magic", 0, "expected \"ABFT\""));
    }
    let version = r.u8("version")?;
    if version != NATIVE_VERSION {
        return Err(TemplateError::UnsupportedVersion {
            standard: "abis native template",
            version: version.to_string(),
        });
    }
    let width = r.le_u16("image width")?;
    let height = r.le_u16("image height")?;
    let ppi = r.le_u16("resolution")?;
    let position_code = r.u8("finger position")?;
    let impression_code = r.u8("impression type")?;
    let quality = r.u8("finger quality")?;
    let count = usize::from(r.le_u16("number of minutiae")?);
    if count > MAX_MINUTIAE {
        return Err(malformed(
            "number of minutiae",
            14,
            format!("{count} exceeds the maximum of {MAX_MINUTIAE}"),
        ));
    }
    let body_len = HEADER_LEN + count * MINUTIA_LEN;
    let expected = body_len + CRC_LEN;
    if bytes.len() < expected {
        return Err(TemplateError::Truncated {
            field: "record",
            offset: 0,
            needed: expected,
            available: bytes.len(),
        });
    }
    if bytes.len() > expected {
        return Err(malformed(
            "record length",
            expected,
            format!(
                "{} bytes follow the {count}-minutia record",
                bytes.len() - expected
            ),
        ));
    }
    let body = r.take(count * MINUTIA_LEN, "minutiae")?;
    let stored_crc = r.le_u32("checksum")?;
    if crc32fast::hash(&bytes[..body_len]) != stored_crc {
        return Err(TemplateError::Checksum);
    }

    if ppi == 0 {
        return Err(malformed("resolution", 9, "resolution must be positive"));
    }
    let position = FingerPosition::new(position_code).map_err(|_| {
        malformed(
            "finger position",
            11,
            format!("{position_code} is not in 0..=10"),
        )
    })?;
    let impression = Impression::from_code(impression_code).map_err(|_| {
        malformed(
            "impression type",
            12,
            format!("{impression_code} is not an impression type"),
        )
    })?;
    if quality > 100 {
        return Err(malformed(
            "finger quality",
            13,
            format!("{quality} exceeds 100"),
        ));
    }

    let mut minutiae = Vec::with_capacity(count);
    for (i, m) in body.chunks_exact(MINUTIA_LEN).enumerate() {
        let offset = HEADER_LEN + i * MINUTIA_LEN;
        let &[x0, x1, y0, y1, d0, d1, kind, q] = m else {
            return Err(TemplateError::Truncated {
                field: "minutia",
                offset,
                needed: MINUTIA_LEN,
                available: m.len(),
            });
        };
        let kind = match kind {
            0 => MinutiaKind::Ending,
            1 => MinutiaKind::Bifurcation,
            2 => MinutiaKind::Other,
            other => {
                return Err(malformed(
                    "minutia kind",
                    offset + 6,
                    format!("{other} is not 0 (ending), 1 (bifurcation) or 2 (other)"),
                ))
            }
        };
        if q > 100 {
            return Err(malformed(
                "minutia quality",
                offset + 7,
                format!("{q} exceeds 100"),
            ));
        }
        minutiae.push(Minutia {
            x: u16::from_le_bytes([x0, x1]),
            y: u16::from_le_bytes([y0, y1]),
            direction: units_to_direction(u16::from_le_bytes([d0, d1])),
            kind,
            quality: q,
        });
    }
    Ok(FingerTemplate {
        width,
        height,
        ppi,
        position,
        impression,
        quality,
        minutiae,
    })
}

/// Encodes a template in the native layout after [`FingerTemplate::validate`].
pub fn encode_native(template: &FingerTemplate) -> Result<Vec<u8>, TemplateError> {
    template.validate()?;
    let t = template;
    let count = u16::try_from(t.minutiae.len())
        .map_err(|_| TemplateError::TooManyMinutiae(t.minutiae.len()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + t.minutiae.len() * MINUTIA_LEN + CRC_LEN);
    out.extend_from_slice(NATIVE_MAGIC);
    out.push(NATIVE_VERSION);
    out.extend_from_slice(&t.width.to_le_bytes());
    out.extend_from_slice(&t.height.to_le_bytes());
    out.extend_from_slice(&t.ppi.to_le_bytes());
    out.push(t.position.code());
    out.push(t.impression.code());
    out.push(t.quality);
    out.extend_from_slice(&count.to_le_bytes());
    for m in &t.minutiae {
        out.extend_from_slice(&m.x.to_le_bytes());
        out.extend_from_slice(&m.y.to_le_bytes());
        out.extend_from_slice(&direction_to_units(m.direction).to_le_bytes());
        out.push(match m.kind {
            MinutiaKind::Ending => 0,
            MinutiaKind::Bifurcation => 1,
            MinutiaKind::Other => 2,
        });
        out.push(m.quality);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f32::consts::PI;

    fn sample() -> FingerTemplate {
        FingerTemplate {
            width: 500,
            height: 600,
            ppi: 500,
            position: FingerPosition::new(6).unwrap(),
            impression: Impression::Swipe,
            quality: 64,
            minutiae: vec![
                Minutia {
                    x: 1,
                    y: 2,
                    direction: 1.5 * PI,
                    kind: MinutiaKind::Ending,
                    quality: 3,
                },
                Minutia {
                    x: 65535,
                    y: 0,
                    direction: 0.0,
                    kind: MinutiaKind::Other,
                    quality: 100,
                },
            ],
        }
    }

    #[test]
    fn layout_bytes() {
        let b = encode_native(&sample()).unwrap();
        assert_eq!(b.len(), 16 + 2 * 8 + 4);
        assert_eq!(&b[..5], b"ABFT\x01");
        assert_eq!(
            &b[5..16],
            &[0xF4, 0x01, 0x58, 0x02, 0xF4, 0x01, 6, 8, 64, 2, 0]
        );
        // Up on screen: 3π/2 = 49152 units.
        assert_eq!(&b[16..24], &[1, 0, 2, 0, 0x00, 0xC0, 0, 3]);
        assert_eq!(&b[24..32], &[0xFF, 0xFF, 0, 0, 0, 0, 2, 100]);
        assert_eq!(b[32..], crc32fast::hash(&b[..32]).to_le_bytes());
    }

    #[test]
    fn round_trip_and_checks() {
        let b = encode_native(&sample()).unwrap();
        let t = decode_native(&b).unwrap();
        assert_eq!(t, sample());
        assert_eq!(encode_native(&t).unwrap(), b);

        let mut bad = b.clone();
        bad[20] ^= 1;
        assert_eq!(decode_native(&bad), Err(TemplateError::Checksum));

        let mut v2 = b.clone();
        v2[4] = 2;
        assert!(matches!(
            decode_native(&v2),
            Err(TemplateError::UnsupportedVersion { .. })
        ));

        let mut long = b.clone();
        long.push(0);
        assert!(matches!(
            decode_native(&long),
            Err(TemplateError::Malformed { offset: 36, .. })
        ));
    }

    #[test]
    fn direction_units_wrap() {
        assert_eq!(direction_to_units(0.0), 0);
        assert_eq!(direction_to_units(std::f32::consts::TAU - 1e-7), 0);
        for u in (0..=u16::MAX).step_by(7) {
            assert_eq!(direction_to_units(units_to_direction(u)), u);
        }
        assert_eq!(direction_to_units(units_to_direction(u16::MAX)), u16::MAX);
    }
}
