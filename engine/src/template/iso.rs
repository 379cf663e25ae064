//! ISO/IEC 19794-2:2005 finger minutiae record (big-endian), the interchange format most
//! matchers and national ID systems accept.
//!
//! Layout (see `shared/docs/formats.md`): 24-byte header (`"FMR\0"`, `" 20\0"`, uint32 total
//! length, uint16 capture equipment, uint16 width, uint16 height, uint16 x and y resolution in
//! **pixels per cm**, uint8 number of views, uint8 reserved), then per finger view a 4-byte view
//! header, N 6-byte minutiae and the extended data (uint16 total length, then blocks of uint16
//! type, uint16 length **of the data only**, data).
//!
//! Decoding choices:
//! - the declared total length must equal the bytes given, exactly;
//! - a record may hold several finger views: **only the first is returned**, but every view is
//!   parsed and checked, so a record with a corrupt later view is refused;
//! - extended data blocks (ridge counts, cores and deltas, vendor data) are skipped after their
//!   lengths are checked to fill the extended data exactly;
//! - resolution is read from the x resolution and converted back to pixels per inch with
//!   `round(ppcm · 2.54)`, snapped to 500 or 1000 when within 1 (so 197 reads as 500);
//! - minutia type `11` (reserved) and qualities above 100 are refused; the 2 reserved bits above
//!   the y coordinate are ignored;
//! - ISO/IEC 19794-2:2011 (version `"030\0"`) is a different layout and gives
//!   [`TemplateError::UnsupportedVersion`].
//!
//! Angles: the record stores the counter-clockwise angle in units of 360/256 degrees; the engine
//! keeps `atan2` in y-down image coordinates (clockwise on screen). Encode
//! `b = round((2π − θ) / 2π · 256) & 0xFF`, decode `θ = 2π − b · 2π / 256`.
//!
//! The encoder writes one view, view number 0, capture equipment 0, no extended data, and needs
//! coordinates below 16384 (14 bits).

use super::fmr::{self, Flavor};
use super::{FingerTemplate, TemplateError};

/// Decodes the first finger view of an ISO/IEC 19794-2:2005 record.
pub fn decode_iso(bytes: &[u8]) -> Result<FingerTemplate, TemplateError> {
    fmr::decode(bytes, Flavor::Iso)
}

/// Encodes `template` as a single-view ISO/IEC 19794-2:2005 record.
pub fn encode_iso(template: &FingerTemplate) -> Result<Vec<u8>, TemplateError> {
    fmr::encode(template, Flavor::Iso)
}

/// Tells an ANSI/INCITS 378-2004 record from an ISO one (both start `"FMR\0 20\0"`) by the
/// length field rule of formats.md: uint16 at offset 8 `>= 26` is ANSI, `1..=25` ISO, `0` defers
/// to the uint16 at offset 10 (`>= 24` ISO, else ANSI with the 6-byte length form).
pub(super) fn looks_like_ansi(bytes: &[u8]) -> bool {
    fmr::looks_like_ansi(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{FingerPosition, Impression, Minutia, MinutiaKind};
    use std::f32::consts::{PI, TAU};

    fn example_template() -> FingerTemplate {
        FingerTemplate {
            width: 256,
            height: 360,
            ppi: 500,
            position: FingerPosition::new(2).unwrap(),
            impression: Impression::LivePlain,
            quality: 80,
            minutiae: vec![Minutia {
                x: 100,
                y: 14,
                direction: TAU - 112.5f32.to_radians(),
                kind: MinutiaKind::Ending,
                quality: 90,
            }],
        }
    }

    #[rustfmt::skip]
    const EXAMPLE_RECORD: [u8; 36] = [
        0x46, 0x4D, 0x52, 0x00, // "FMR\0"
        0x20, 0x32, 0x30, 0x00, // " 20\0"
        0x00, 0x00, 0x00, 0x24, // total length 36
        0x00, 0x00,             // capture equipment
        0x01, 0x00,             // width 256
        0x01, 0x68,             // height 360
        0x00, 0xC5, 0x00, 0xC5, // 197 px/cm = 500 ppi
        0x01, 0x00,             // one view, reserved
        0x02, 0x00, 0x50, 0x01, // right index, view 0 live plain, quality 80, 1 minutia
        0x40, 0x64, 0x00, 0x0E, 0x50, 0x5A, // the formats.md worked example
        0x00, 0x00,             // no extended data
    ];

    #[test]
    fn worked_example_minutia() {
        let mut record = EXAMPLE_RECORD;
        record[28..34].copy_from_slice(&[0x40, 0x64, 0x00, 0x0E, 0x50, 0x5A]);
        let t = decode_iso(&record).unwrap();
        let m = t.minutiae[0];
        assert_eq!(
            (m.x, m.y, m.kind, m.quality),
            (100, 14, MinutiaKind::Ending, 90)
        );
        // 80 units = 112.5 degrees counter-clockwise, i.e. 2π − 112.5° in engine terms.
        assert!((m.direction - (TAU - 112.5f32.to_radians())).abs() < 1e-5);
        assert_eq!(fmr::direction_to_iso_angle(m.direction), 80);
    }

    #[test]
    fn full_record_bytes() {
        assert_eq!(encode_iso(&example_template()).unwrap(), EXAMPLE_RECORD);
        let t = decode_iso(&EXAMPLE_RECORD).unwrap();
        assert_eq!(t.width, 256);
        assert_eq!(t.height, 360);
        assert_eq!(t.ppi, 500);
        assert_eq!(t.position.code(), 2);
        assert_eq!(t.quality, 80);
        assert!(!looks_like_ansi(&EXAMPLE_RECORD));
    }

    #[test]
    fn angle_conventions() {
        // Pointing up on screen: atan2(-1, 0) in y-down coordinates = 3π/2 = 90° CCW = 64 units.
        assert_eq!(fmr::direction_to_iso_angle(1.5 * PI), 64);
        assert_eq!(fmr::direction_to_iso_angle(0.0), 0);
        // Pointing down on screen is 270° CCW.
        assert_eq!(fmr::direction_to_iso_angle(0.5 * PI), 192);
        assert_eq!(fmr::iso_angle_to_direction(0), 0.0);
        assert!((fmr::iso_angle_to_direction(64) - 1.5 * PI).abs() < 1e-6);
        for b in 0..=255u8 {
            let d = fmr::iso_angle_to_direction(b);
            assert!((0.0..TAU).contains(&d));
            assert_eq!(fmr::direction_to_iso_angle(d), b);
        }
    }

    #[test]
    fn resolution_conversions() {
        assert_eq!(fmr::ppi_to_ppcm(500), 197);
        assert_eq!(fmr::ppi_to_ppcm(1000), 394);
        assert_eq!(fmr::ppcm_to_ppi(197), Some(500));
        assert_eq!(fmr::ppcm_to_ppi(394), Some(1000));
        assert_eq!(fmr::ppcm_to_ppi(100), Some(254));
        assert_eq!(fmr::ppcm_to_ppi(0), None);
        assert_eq!(fmr::ppcm_to_ppi(u16::MAX), None);
        for ppi in 1..=u16::MAX {
            let ppcm = fmr::ppi_to_ppcm(ppi);
            if let Some(back) = fmr::ppcm_to_ppi(ppcm) {
                assert_eq!(fmr::ppi_to_ppcm(back), ppcm, "ppi {ppi}");
            }
        }
    }

    #[test]
    fn version_2011_is_refused() {
        let mut record = EXAMPLE_RECORD;
        record[4..8].copy_from_slice(b"030\0");
        match decode_iso(&record) {
            Err(TemplateError::UnsupportedVersion { standard, version }) => {
                assert_eq!(standard, "ISO/IEC 19794-2:2011");
                assert_eq!(version, "030");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn extended_data_is_skipped_and_checked() {
        let mut record = EXAMPLE_RECORD[..34].to_vec();
        // Two blocks: 3 data bytes and 0 data bytes (ISO lengths exclude the block header).
        let ext = [0x00, 0x01, 0x00, 0x03, 1, 2, 3, 0x00, 0x02, 0x00, 0x00];
        record.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        record.extend_from_slice(&ext);
        let total = record.len() as u32;
        record[8..12].copy_from_slice(&total.to_be_bytes());
        assert_eq!(decode_iso(&record).unwrap().minutiae.len(), 1);

        // A block length running past the extended data.
        let mut bad = record.clone();
        bad[36 + 3] = 0x09;
        assert!(matches!(
            decode_iso(&bad),
            Err(TemplateError::Malformed {
                field: "extended data block length",
                offset: 38,
                ..
            })
        ));
    }

    #[test]
    fn second_view_is_checked_first_returned() {
        let mut record = EXAMPLE_RECORD.to_vec();
        record[22] = 2;
        // View 1 of finger 7, no minutiae, no extended data.
        record.extend_from_slice(&[7, 0x10, 60, 0, 0, 0]);
        let total = record.len() as u32;
        record[8..12].copy_from_slice(&total.to_be_bytes());
        let t = decode_iso(&record).unwrap();
        assert_eq!(t.position.code(), 2);
        assert_eq!(t.minutiae.len(), 1);
        // A bad finger position in the second view is still refused.
        record[36] = 11;
        assert!(matches!(
            decode_iso(&record),
            Err(TemplateError::Malformed {
                field: "finger position",
                offset: 36,
                ..
            })
        ));
    }

    #[test]
    fn length_mismatch_is_reported() {
        let mut record = EXAMPLE_RECORD.to_vec();
        record.push(0);
        assert!(matches!(
            decode_iso(&record),
            Err(TemplateError::Malformed {
                field: "record length",
                offset: 8,
                ..
            })
        ));
        assert!(matches!(
            decode_iso(&EXAMPLE_RECORD[..30]),
            Err(TemplateError::Truncated {
                needed: 36,
                available: 30,
                ..
            })
        ));
    }
}
