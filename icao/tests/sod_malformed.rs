//! Malformed EF.SOD bytes are refused with an error naming the part, never a panic.

mod common;

use abis_icao::sod::MAX_SOD_LEN;
use abis_icao::{Sod, SodError};
use common::pki::{days, Csca, DocumentSigner, KeyKind, SodOptions};

fn genuine_sod() -> Vec<u8> {
    let csca = Csca::new("CSCA Utopia", KeyKind::P256, days(-1, 100));
    let signer = DocumentSigner::new(&csca, KeyKind::P256, 7, days(-1, 100));
    let lds = common::lds_security_object(&[(1, b"dg1"), (2, b"dg2")]);
    common::pki::sod(&signer, &lds, &SodOptions::default())
}

#[test]
fn every_truncation_is_refused() {
    let sod = genuine_sod();
    assert!(Sod::parse(&sod).is_ok());
    for len in 0..sod.len() {
        assert!(
            Sod::parse(&sod[..len]).is_err(),
            "a SOD cut at {len} bytes was accepted"
        );
    }
}

#[test]
fn every_flipped_byte_parses_or_is_refused_without_panic() {
    // Whether a flip matters is passive authentication's business (signed bytes change the
    // signature); parsing must only never panic.
    let sod = genuine_sod();
    for at in 0..sod.len() {
        let mut bytes = sod.clone();
        bytes[at] ^= 0x5A;
        let _ = Sod::parse(&bytes);
    }
}

#[test]
fn errors_name_the_part() {
    let error = Sod::parse(&[0x76, 0x00]).unwrap_err().to_string();
    assert!(error.contains("template 77"), "{error}");
    let not_signed_data = common::ber::der(
        0x77,
        &[&common::ber::der(
            0x30,
            &[&common::ber::oid("1.2.840.113549.1.7.1")],
        )],
    );
    let error = Sod::parse(&not_signed_data).unwrap_err().to_string();
    assert!(error.contains("ContentInfo contentType"), "{error}");
    let huge = vec![0u8; MAX_SOD_LEN + 1];
    assert_eq!(
        Sod::parse(&huge).unwrap_err(),
        SodError::TooLarge {
            len: MAX_SOD_LEN + 1
        }
    );
}

#[test]
fn data_group_numbers_outside_1_to_16_are_refused() {
    let csca = Csca::new("CSCA Utopia", KeyKind::P256, days(-1, 100));
    let signer = DocumentSigner::new(&csca, KeyKind::P256, 7, days(-1, 100));
    let lds = common::lds_with_hash(
        &common::ber::oid("2.16.840.1.101.3.4.2.1"),
        vec![(17, vec![0; 32])],
    );
    let error = Sod::parse(&common::pki::sod(&signer, &lds, &SodOptions::default()))
        .unwrap_err()
        .to_string();
    assert!(error.contains("dataGroupNumber"), "{error}");
}
