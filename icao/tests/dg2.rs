//! EF.DG2 portraits built from ATT/ORL faces (JPEG and JPEG 2000) parse back to the same image,
//! and every malformed DG2 is refused with an error naming the part, never a panic.

mod common;

use abis_icao::dg2::MAX_DG2_LEN;
use abis_icao::tlv::TlvError;
use abis_icao::{parse_dg2, Dg2Error, FaceRecordError, ImageType};
use common::{dg2, face, face_dg2, facial_record};

#[test]
fn jpeg_portrait_comes_back_whole() {
    let Some(jpeg) = face() else { return };
    let bytes = dg2(&facial_record(jpeg, 0, 92, 112));
    let parsed = parse_dg2(&bytes).unwrap();
    assert_eq!(parsed.images.len(), 1);
    let image = parsed.first();
    assert_eq!(
        (
            image.image_type,
            image.width,
            image.height,
            image.feature_points
        ),
        (ImageType::Jpeg, 92, 112, 1)
    );
    assert_eq!(image.data, jpeg);
    let decoded = image::load_from_memory(image.data).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (92, 112));
}

#[test]
fn jpeg2000_portrait_comes_back_whole() {
    let Some(jp2) = common::att_face_jpeg2000(3, 2, 4) else {
        return;
    };
    let bytes = dg2(&facial_record(&jp2, 1, 92, 112));
    let parsed = parse_dg2(&bytes).unwrap();
    assert_eq!(parsed.first().image_type, ImageType::Jpeg2000);
    assert_eq!(parsed.first().data, jp2);
    assert_eq!(&jp2[4..8], b"jP  ", "a JP2 signature box");
}

#[test]
fn every_truncation_is_refused() {
    let Some(bytes) = face_dg2() else { return };
    for len in 0..bytes.len() {
        assert!(
            parse_dg2(&bytes[..len]).is_err(),
            "a DG2 cut at {len} bytes was accepted"
        );
    }
}

#[test]
fn malformed_ber_names_the_template() {
    let error = parse_dg2(&[0x75, 0x80, 0x7F, 0x61, 0x00, 0x00, 0x00]).unwrap_err();
    assert_eq!(
        error,
        Dg2Error::Tlv {
            part: "data group template 75",
            source: TlvError::IndefiniteLength { offset: 1 }
        }
    );
    // A length of 4 GiB in the group template: refused as truncated, nothing allocated.
    let error = parse_dg2(&[0x75, 0x07, 0x7F, 0x61, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]).unwrap_err();
    assert!(
        matches!(
            error,
            Dg2Error::Tlv {
                source: TlvError::Truncated { offset: 9, .. },
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("7F61"), "{error}");
    let wrong = common::ber::der(0x75, &[&common::ber::der(0x7F62, &[])]);
    assert!(matches!(
        parse_dg2(&wrong),
        Err(Dg2Error::Tlv {
            source: TlvError::UnexpectedTag {
                expected: 0x7F61,
                ..
            },
            ..
        })
    ));
}

fn record_error(record: &[u8]) -> FaceRecordError {
    match parse_dg2(&dg2(record)) {
        Err(Dg2Error::FacialRecord { source, .. }) => source,
        other => panic!("expected a facial record error, got {other:?}"),
    }
}

#[test]
fn unknown_image_type_and_2011_records_are_refused_by_name() {
    let image = [0xFF, 0xD8, 0xFF, 0xD9];
    assert!(matches!(
        record_error(&facial_record(&image, 2, 1, 1)),
        FaceRecordError::UnknownImageType {
            value: 2,
            offset: 43
        }
    ));
    let mut v2011 = facial_record(&image, 0, 1, 1);
    v2011[4..8].copy_from_slice(b"030\0");
    assert_eq!(
        record_error(&v2011),
        FaceRecordError::UnsupportedVersion2011
    );
    let mut fingerprint = facial_record(&image, 0, 1, 1);
    fingerprint[..4].copy_from_slice(b"FIR\0");
    assert_eq!(record_error(&fingerprint), FaceRecordError::NotFacialRecord);
}

#[test]
fn oversized_fields_are_refused() {
    let image = [0u8; 16];
    let mut record = facial_record(&image, 0, 1, 1);
    // Record length above the bytes given.
    record[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        record_error(&record),
        FaceRecordError::RecordLength {
            declared: u32::MAX,
            ..
        }
    ));
    // A facial block claiming more feature points than it holds.
    let mut record = facial_record(&image, 0, 1, 1);
    record[18..20].copy_from_slice(&u16::MAX.to_be_bytes());
    assert!(matches!(
        record_error(&record),
        FaceRecordError::BlockLength { offset: 14, .. }
    ));
    // A facial block longer than the record.
    let mut record = facial_record(&image, 0, 1, 1);
    record[14..18].copy_from_slice(&1_000_000u32.to_be_bytes());
    assert!(matches!(
        record_error(&record),
        FaceRecordError::Truncated {
            field: "image data",
            ..
        }
    ));
    let huge = vec![0u8; MAX_DG2_LEN + 1];
    assert_eq!(
        parse_dg2(&huge),
        Err(Dg2Error::TooLarge {
            len: MAX_DG2_LEN + 1
        })
    );
    // 200 templates announced: above the limit, refused before reading them.
    let many = common::ber::der(
        0x75,
        &[&common::ber::der(
            0x7F61,
            &[&common::ber::der(0x02, &[&[200]])],
        )],
    );
    assert!(matches!(parse_dg2(&many), Err(Dg2Error::Count { .. })));
}
