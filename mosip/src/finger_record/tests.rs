use super::*;

fn image<'a>(position: u8, data: &'a [u8], extended: &'a [u8]) -> NewFingerImage<'a> {
    NewFingerImage {
        position,
        compression: Compression::Jpeg2000Lossless,
        width: 300,
        height: 400,
        ppi: 500,
        quality: 77,
        data,
        extended,
    }
}

#[test]
fn a_2011_record_with_certification_and_extended_data() {
    let rec = write_2011(&[image(7, b"jp2-a", b"EXTENDED"), image(2, b"jp2-bb", b"")]);
    let parsed = parse(&rec).unwrap();
    assert_eq!(parsed.edition, Edition::Iso2011);
    assert_eq!(parsed.images.len(), 2);
    let a = &parsed.images[0];
    assert_eq!((a.position, a.width, a.height, a.ppi), (7, 300, 400, 500));
    assert_eq!(a.compression, Compression::Jpeg2000Lossless);
    assert_eq!(a.quality, Some(77));
    assert_eq!(a.data, b"jp2-a");
    assert_eq!(parsed.images[1].data, b"jp2-bb");
    assert_eq!(parsed.images[1].position, 2);
}

/// A 2005 record built field by field (32-byte header, 14-byte finger header).
fn record_2005(position: u8, data: &[u8], scale: u8, res: u16) -> Vec<u8> {
    let mut out = b"FIR\x00010\x00".to_vec();
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&[0, 0, 0, 31, 1, scale]);
    for _ in 0..4 {
        out.extend_from_slice(&res.to_be_bytes());
    }
    out.extend_from_slice(&[8, 2, 0, 0]);
    out.extend_from_slice(&((14 + data.len()) as u32).to_be_bytes());
    out.extend_from_slice(&[position, 1, 1, 60, 0, 1, 0x2c, 1, 0x90, 0]);
    out.extend_from_slice(data);
    out
}

#[test]
fn a_2005_record_with_wsq_in_pixels_per_cm() {
    let rec = record_2005(10, b"wsq-bytes", 2, 197);
    let parsed = parse(&rec).unwrap();
    assert_eq!(parsed.edition, Edition::Iso2005);
    let img = &parsed.images[0];
    assert_eq!((img.position, img.width, img.height), (10, 300, 400));
    assert_eq!(img.ppi, 500, "197 ppcm is 500 ppi");
    assert_eq!(img.compression, Compression::Wsq);
    assert_eq!(img.data, b"wsq-bytes");
}

#[test]
fn broken_records_name_the_field_and_offset() {
    assert!(matches!(
        parse(b"FAC\x00010\x00"),
        Err(RecordError::Invalid {
            field: "format identifier",
            offset: 0,
            ..
        })
    ));
    assert!(matches!(
        parse(b"FIR\x00030\x00"),
        Err(RecordError::Invalid {
            field: "version",
            offset: 4,
            ..
        })
    ));
    assert!(matches!(
        parse(b"FIR\0"),
        Err(RecordError::Truncated {
            field: "version",
            offset: 4,
            ..
        })
    ));
    let rec = write_2011(&[image(1, b"data", b"")]);
    let cut = &rec[..rec.len() - 2];
    assert!(
        matches!(
            parse(cut),
            Err(RecordError::Invalid {
                field: "representation length",
                offset: 16,
                ..
            })
        ),
        "{:?}",
        parse(cut)
    );
    let mut zero = rec.clone();
    zero[12] = 0;
    zero[13] = 0;
    assert!(matches!(
        parse(&zero),
        Err(RecordError::Invalid {
            field: "number of representations",
            offset: 12,
            ..
        })
    ));
    let mut long_image = rec.clone();
    let at = long_image.len() - 4 - 4;
    long_image[at] = 0x7f;
    assert!(parse(&long_image).is_err());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_give_a_record_or_a_typed_error(tail in proptest::collection::vec(any::<u8>(), 0..256), v in 0u8..3) {
            let mut bytes = b"FIR\0".to_vec();
            bytes.extend_from_slice([b"010\0", b"020\0", b"030\0"][usize::from(v)]);
            bytes.extend_from_slice(&tail);
            let _ = parse(&bytes);
        }

        #[test]
        fn written_records_read_back(pos in 0u8..16, data in proptest::collection::vec(any::<u8>(), 0..64),
                                     ext in proptest::collection::vec(any::<u8>(), 0..16)) {
            let rec = write_2011(&[image(pos, &data, &ext)]);
            let parsed = parse(&rec).unwrap();
            prop_assert_eq!(parsed.images[0].data, &data[..]);
            prop_assert_eq!(parsed.images[0].position, pos);
        }
    }
}
