//! ANSI/INCITS 378-2004 finger minutiae record (big-endian), the US sibling of ISO/IEC
//! 19794-2:2005 still required by FBI/NIST-profiled systems (PIV, MINEX).
//!
//! It shares the ISO magic (`"FMR\0"`), version (`" 20\0"`), finger view and minutia layouts,
//! so both are read and written by `fmr.rs`. What differs:
//! - the header is 26 bytes: a uint16 record length (or `0x0000` then a uint32 length for records
//!   of 64 KiB or more, making the header 30 bytes), then uint16 CBEFF product owner and uint16
//!   product type, then the ISO fields (capture equipment, width, height, resolution in pixels per
//!   cm, number of views, reserved);
//! - minutia angles are counter-clockwise in **2-degree units, 0..=179** (encode
//!   `round(deg_ccw / 2) % 180`; larger values are refused on decode);
//! - extended data block lengths **include** their 4-byte block header.
//!
//! Decoding choices are those of the ISO codec (see `iso.rs`): exact declared length, only the
//! first finger view returned but every view checked, extended data skipped after validation,
//! resolution snapped to 500/1000 ppi when within 1. The CBEFF product id is not kept (the
//! in-memory template has no field for it); the encoder writes 0/0 (unregistered). ANSI
//! 378-2009 (version `"030\0"`) gives [`TemplateError::UnsupportedVersion`].

use super::fmr::{self, Flavor};
use super::{FingerTemplate, TemplateError};

/// Decodes the first finger view of an ANSI/INCITS 378-2004 record.
pub fn decode_ansi(bytes: &[u8]) -> Result<FingerTemplate, TemplateError> {
    fmr::decode(bytes, Flavor::Ansi)
}

/// Encodes `template` as a single-view ANSI/INCITS 378-2004 record. The 6-byte length form is
/// used when the record would be 64 KiB or more, which a single view without extended data never
/// reaches.
pub fn encode_ansi(template: &FingerTemplate) -> Result<Vec<u8>, TemplateError> {
    fmr::encode(template, Flavor::Ansi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{iso, FingerPosition, Impression, Minutia, MinutiaKind};
    use std::f32::consts::{PI, TAU};

    fn example_template() -> FingerTemplate {
        FingerTemplate {
            width: 256,
            height: 360,
            ppi: 500,
            position: FingerPosition::new(7).unwrap(),
            impression: Impression::LiveRolled,
            quality: 70,
            minutiae: vec![Minutia {
                x: 100,
                y: 14,
                direction: TAU - 112.0f32.to_radians(),
                kind: MinutiaKind::Bifurcation,
                quality: 90,
            }],
        }
    }

    #[rustfmt::skip]
    const EXAMPLE_RECORD: [u8; 38] = [
        0x46, 0x4D, 0x52, 0x00, // "FMR\0"
        0x20, 0x32, 0x30, 0x00, // " 20\0"
        0x00, 0x26,             // record length 38
        0x00, 0x00, 0x00, 0x00, // CBEFF product owner, product type
        0x00, 0x00,             // capture equipment
        0x01, 0x00,             // width 256
        0x01, 0x68,             // height 360
        0x00, 0xC5, 0x00, 0xC5, // 197 px/cm = 500 ppi
        0x01, 0x00,             // one view, reserved
        0x07, 0x01, 0x46, 0x01, // left index, live rolled, quality 70, 1 minutia
        0x80, 0x64, 0x00, 0x0E, 0x38, 0x5A, // bifurcation (100, 14), 56 × 2° = 112° CCW, q 90
        0x00, 0x00,             // no extended data
    ];

    #[test]
    fn full_record_bytes() {
        assert_eq!(encode_ansi(&example_template()).unwrap(), EXAMPLE_RECORD);
        let t = decode_ansi(&EXAMPLE_RECORD).unwrap();
        assert_eq!((t.width, t.height, t.ppi, t.quality), (256, 360, 500, 70));
        assert_eq!(t.impression, Impression::LiveRolled);
        let m = t.minutiae[0];
        assert_eq!(
            (m.x, m.y, m.kind, m.quality),
            (100, 14, MinutiaKind::Bifurcation, 90)
        );
        assert!((m.direction - (TAU - 112.0f32.to_radians())).abs() < 1e-5);
        assert!(iso::looks_like_ansi(&EXAMPLE_RECORD));
    }

    #[test]
    fn angle_conventions() {
        // Pointing up on screen (3π/2 in y-down atan2) is 90° CCW = 45 two-degree units.
        assert_eq!(fmr::direction_to_ansi_angle(1.5 * PI), 45);
        assert_eq!(fmr::direction_to_ansi_angle(0.0), 0);
        assert_eq!(fmr::direction_to_ansi_angle(TAU - 1e-6), 0);
        assert_eq!(fmr::direction_to_ansi_angle(0.5 * PI), 135);
        for b in 0..180u8 {
            let d = fmr::ansi_angle_to_direction(b);
            assert!((0.0..TAU).contains(&d));
            assert_eq!(fmr::direction_to_ansi_angle(d), b);
        }
        let mut record = EXAMPLE_RECORD;
        record[34] = 180;
        assert!(matches!(
            decode_ansi(&record),
            Err(TemplateError::Malformed {
                field: "minutia angle",
                offset: 34,
                ..
            })
        ));
    }

    #[test]
    fn version_2009_is_refused() {
        let mut record = EXAMPLE_RECORD;
        record[4..8].copy_from_slice(b"030\0");
        assert!(matches!(
            decode_ansi(&record),
            Err(TemplateError::UnsupportedVersion {
                standard: "ANSI/INCITS 378-2009",
                ..
            })
        ));
    }

    /// A record of 64 KiB or more, built by hand: `0x0000` + uint32 length, a view with one
    /// minutia and a 65 535-byte extended data area holding one vendor block.
    fn long_record() -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(b"FMR\0 20\0");
        r.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // 0x0000 + uint32 length, patched below
        r.extend_from_slice(&[0x01, 0x23, 0x45, 0x67]); // CBEFF product owner / type
        r.extend_from_slice(&[0, 0, 0x01, 0x00, 0x01, 0x68, 0x00, 0xC5, 0x00, 0xC5, 1, 0]);
        assert_eq!(r.len(), 30);
        r.extend_from_slice(&[3, 0x00, 55, 1]);
        r.extend_from_slice(&[0x40, 0x64, 0x00, 0x0E, 45, 77]);
        r.extend_from_slice(&u16::MAX.to_be_bytes()); // extended data length
        r.extend_from_slice(&[0xFF, 0x00]); // vendor block type
        r.extend_from_slice(&u16::MAX.to_be_bytes()); // block length including its header
        r.resize(r.len() + usize::from(u16::MAX) - 4, 0xAB);
        let total = r.len() as u32;
        r[10..14].copy_from_slice(&total.to_be_bytes());
        r
    }

    #[test]
    fn long_length_form_decodes() {
        let record = long_record();
        assert!(record.len() >= 65536);
        assert!(iso::looks_like_ansi(&record));
        let t = decode_ansi(&record).unwrap();
        assert_eq!(t.position.code(), 3);
        assert_eq!(t.quality, 55);
        let m = t.minutiae[0];
        assert_eq!((m.x, m.y, m.quality), (100, 14, 77));
        assert!((m.direction - 1.5 * PI).abs() < 1e-5);
        // One byte short of the declared length.
        assert!(matches!(
            decode_ansi(&record[..record.len() - 1]),
            Err(TemplateError::Truncated { .. })
        ));
    }

    #[test]
    fn long_length_form_encodes() {
        let t = example_template();
        let short = fmr::header(&t, Flavor::Ansi, 65536 - 26 - 1).unwrap();
        assert_eq!(short.len(), 26);
        assert_eq!(&short[8..10], &[0xFF, 0xFF]);
        let long = fmr::header(&t, Flavor::Ansi, 65536 - 26).unwrap();
        assert_eq!(long.len(), 30);
        assert_eq!(&long[8..14], &[0, 0, 0x00, 0x01, 0x00, 0x04]);
    }

    #[test]
    fn extended_block_length_includes_header() {
        let mut record = EXAMPLE_RECORD[..36].to_vec();
        // One block of 2 data bytes: its length field says 6.
        record.extend_from_slice(&[0x00, 0x06, 0x00, 0x01, 0x00, 0x06, 9, 9]);
        let total = record.len() as u16;
        record[8..10].copy_from_slice(&total.to_be_bytes());
        assert_eq!(decode_ansi(&record).unwrap().minutiae.len(), 1);
        // The ISO reading (data length 6) would overrun; a length below 4 is refused.
        record[41] = 3;
        assert!(matches!(
            decode_ansi(&record),
            Err(TemplateError::Malformed {
                field: "extended data block length",
                offset: 40,
                ..
            })
        ));
    }
}
