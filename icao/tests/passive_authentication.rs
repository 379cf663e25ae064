//! Passive authentication of cards built here: genuine cards of every supported algorithm pass,
//! and each tampering is rejected by its own check with its own reason.

mod common;

use abis_icao::{Failure, PassiveAuthentication, TrustStore};
use common::pki::{days, Csca, DocumentSigner, KeyKind, SodOptions};
use common::{face_dg2, trust, Card};
use time::{Duration, OffsetDateTime};

fn valid() -> (OffsetDateTime, OffsetDateTime) {
    days(-30, 3650)
}

/// A card of `kind` signed by a Document Signer of `csca`, with `options`.
fn card(csca: &Csca, kind: KeyKind, options: &SodOptions) -> Option<Card> {
    let signer = DocumentSigner::new(csca, kind, 7, valid());
    Some(Card::new(&signer, face_dg2()?, options))
}

#[track_caller]
fn assert_passed(result: &PassiveAuthentication) {
    assert!(result.passed(), "{result:#?}");
}

#[test]
fn genuine_cards_of_every_supported_algorithm_pass() {
    for (csca_kind, ds_kind) in [
        (KeyKind::Rsa, KeyKind::Rsa),
        (KeyKind::Rsa, KeyKind::RsaPss),
        (KeyKind::P256, KeyKind::P256),
        (KeyKind::P384, KeyKind::P384),
        (KeyKind::P384, KeyKind::Rsa),
    ] {
        let csca = Csca::new("CSCA Utopia", csca_kind, valid());
        let Some(card) = card(&csca, ds_kind, &SodOptions::default()) else {
            return;
        };
        let result = card.authenticate(&trust(&[&csca], &[csca.crl(&[99])]));
        assert_passed(&result);
        assert!(
            result
                .revocation
                .as_ref()
                .unwrap()
                .contains("not listed in 1 CRL"),
            "{result:?}"
        );
    }
}

#[test]
fn swapped_portrait_fails_the_hash_check_only() {
    let csca = Csca::new("CSCA Utopia", KeyKind::P256, valid());
    let Some(mut card) = card(&csca, KeyKind::P256, &SodOptions::default()) else {
        return;
    };
    let Some(other) = common::att_face_jpeg(2, 1) else {
        return;
    };
    card.dg2 = common::dg2(&common::facial_record(&other, 0, 92, 112));
    let result = card.authenticate(&trust(&[&csca], &[]));
    assert!(!result.passed());
    assert!(result.signature.is_ok() && result.chain.is_ok() && result.revocation.is_ok());
    assert_eq!(result.hashes, Err(Failure::HashMismatch(2)));
}

#[test]
fn signer_not_chained_to_the_trusted_csca_fails_the_chain() {
    let trusted = Csca::new("CSCA Utopia", KeyKind::P256, valid());
    // Same name, other key: a forger's CSCA.
    let forged = Csca::new("CSCA Utopia", KeyKind::P256, valid());
    let Some(card) = card(&forged, KeyKind::P256, &SodOptions::default()) else {
        return;
    };
    let result = card.authenticate(&trust(&[&trusted], &[]));
    assert!(
        result.signature.is_ok(),
        "the forger signed his own SOD: {result:?}"
    );
    assert!(
        matches!(result.chain, Err(Failure::BadSignature(_))),
        "{result:?}"
    );
    assert!(matches!(result.revocation, Err(Failure::NotChecked(_))));
    assert!(!result.passed());

    let other_country = Csca::new("CSCA Elsewhere", KeyKind::Rsa, valid());
    let result = card.authenticate(&trust(&[&other_country], &[]));
    assert!(
        matches!(result.chain, Err(Failure::UnknownIssuer(_))),
        "{result:?}"
    );
}

#[test]
fn revoked_document_signer_fails_revocation() {
    let csca = Csca::new("CSCA Utopia", KeyKind::Rsa, valid());
    let Some(card) = card(&csca, KeyKind::P256, &SodOptions::default()) else {
        return;
    };
    let result = card.authenticate(&trust(&[&csca], &[csca.crl(&[3, 7])]));
    match &result.revocation {
        Err(Failure::Revoked { serial, reason, .. }) => {
            assert_eq!(serial, "07");
            assert_eq!(reason, "key compromise");
        }
        other => panic!("expected a revocation, got {other:?}"),
    }
    assert!(result.signature.is_ok() && result.chain.is_ok() && result.hashes.is_ok());
    assert!(!result.passed());

    // A CRL signed by another key under the same name is not the CSCA's and does not count.
    let impostor = Csca::new("CSCA Utopia", KeyKind::Rsa, valid());
    let result = card.authenticate(&trust(&[&csca], &[impostor.crl(&[7])]));
    assert_passed(&result);
    let strict = trust(&[&csca], &[impostor.crl(&[7])]).require_crl(true);
    assert!(matches!(
        card.authenticate(&strict).revocation,
        Err(Failure::NoCrl(_))
    ));
}

#[test]
fn expired_document_signer_passes_when_it_signed_within_its_validity() {
    let csca = Csca::new("CSCA Utopia", KeyKind::P256, valid());
    let signer = DocumentSigner::new(&csca, KeyKind::P256, 7, days(-400, -10));
    let Some(dg2) = face_dg2() else { return };
    let store = trust(&[&csca], &[]);
    let signed_at = |offset: i64| SodOptions {
        signing_time: Some(OffsetDateTime::now_utc() - Duration::days(offset)),
        ..SodOptions::default()
    };
    let in_validity = Card::new(&signer, dg2.clone(), &signed_at(200)).authenticate(&store);
    assert_passed(&in_validity);
    assert!(in_validity
        .chain
        .as_ref()
        .unwrap()
        .contains("expired since"));

    let after_expiry = Card::new(&signer, dg2.clone(), &signed_at(5)).authenticate(&store);
    assert!(
        matches!(after_expiry.chain, Err(Failure::Validity(_))),
        "{after_expiry:?}"
    );
    let no_time = Card::new(&signer, dg2, &SodOptions::default()).authenticate(&store);
    assert!(
        matches!(no_time.chain, Err(Failure::Validity(_))),
        "{no_time:?}"
    );
}

#[test]
fn expired_csca_fails_the_chain() {
    let csca = Csca::new("CSCA Utopia", KeyKind::P256, days(-4000, -1));
    let signer = DocumentSigner::new(&csca, KeyKind::P256, 7, days(-400, 3000));
    let Some(dg2) = face_dg2() else { return };
    let result =
        Card::new(&signer, dg2, &SodOptions::default()).authenticate(&trust(&[&csca], &[]));
    match &result.chain {
        Err(Failure::Validity(reason)) => assert!(reason.contains("CSCA"), "{reason}"),
        other => panic!("expected an expired CSCA, got {other:?}"),
    }
}

#[test]
fn sod_without_the_dg2_hash_fails_the_hashes() {
    let csca = Csca::new("CSCA Utopia", KeyKind::P256, valid());
    let signer = DocumentSigner::new(&csca, KeyKind::P256, 7, valid());
    let Some(dg2) = face_dg2() else { return };
    let dg1 = common::dg1();
    let lds = common::lds_security_object(&[(1, &dg1)]);
    let sod =
        abis_icao::Sod::parse(&common::pki::sod(&signer, &lds, &SodOptions::default())).unwrap();
    let result = abis_icao::authenticate(
        &sod,
        &[(1, &dg1), (2, &dg2)],
        &trust(&[&csca], &[]),
        std::time::SystemTime::now(),
    );
    assert_eq!(result.hashes, Err(Failure::MissingHash(2)));
    assert!(result.signature.is_ok());
}

#[test]
fn signature_over_other_content_fails_the_signature() {
    let csca = Csca::new("CSCA Utopia", KeyKind::Rsa, valid());
    let options = SodOptions {
        message_digest_of: Some(b"another LDS object".to_vec()),
        ..SodOptions::default()
    };
    let Some(card) = card(&csca, KeyKind::Rsa, &options) else {
        return;
    };
    let result = card.authenticate(&trust(&[&csca], &[]));
    assert!(
        matches!(result.signature, Err(Failure::MessageDigest(_))),
        "{result:?}"
    );

    // The signature bytes of one key under another key's certificate.
    let Some(genuine) = card_with_swapped_certificate(&csca) else {
        return;
    };
    let result = genuine.authenticate(&trust(&[&csca], &[]));
    assert!(
        matches!(result.signature, Err(Failure::BadSignature(_))),
        "{result:?}"
    );
}

/// A SOD whose Document Signer certificate was replaced by another one of the same CSCA.
fn card_with_swapped_certificate(csca: &Csca) -> Option<Card> {
    let mut card = card(csca, KeyKind::P256, &SodOptions::default())?;
    let first = DocumentSigner::new(csca, KeyKind::P256, 7, valid());
    let second = DocumentSigner::new(csca, KeyKind::P256, 7, valid());
    let sod = common::pki::sod(
        &first,
        &common::lds_security_object(&card.groups()),
        &SodOptions::default(),
    );
    card.sod = replace(&sod, &first.der, &second.der);
    Some(card)
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let at = haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present");
    [&haystack[..at], with, &haystack[at + needle.len()..]].concat()
}

#[test]
fn unsupported_algorithms_are_named_never_passed() {
    let csca = Csca::new("CSCA Utopia", KeyKind::P256, valid());
    // DSA with SHA-256, as a SignerInfo signature algorithm.
    let dsa = common::ber::algorithm("2.16.840.1.101.3.4.3.2", None);
    let options = SodOptions {
        signature_algorithm: Some(dsa),
        ..SodOptions::default()
    };
    let Some(card) = card(&csca, KeyKind::P256, &options) else {
        return;
    };
    let result = card.authenticate(&trust(&[&csca], &[]));
    assert!(
        matches!(result.signature, Err(Failure::UnsupportedAlgorithm(_))),
        "{result:?}"
    );
    assert!(!result.passed());

    // MD5 data group hashes.
    let signer = DocumentSigner::new(&csca, KeyKind::P256, 7, valid());
    let md5 = common::ber::oid("1.2.840.113549.2.5");
    let lds = common::lds_with_hash(&md5, vec![(2, vec![0; 16])]);
    let sod =
        abis_icao::Sod::parse(&common::pki::sod(&signer, &lds, &SodOptions::default())).unwrap();
    let result = abis_icao::authenticate(
        &sod,
        &[(2, b"x")],
        &trust(&[&csca], &[]),
        std::time::SystemTime::now(),
    );
    assert!(
        matches!(result.hashes, Err(Failure::UnsupportedAlgorithm(_))),
        "{result:?}"
    );
}

#[test]
fn trust_store_directory_reads_pem_der_master_lists_and_crls() {
    let csca = Csca::new("CSCA Utopia", KeyKind::P256, valid());
    let other = Csca::new("CSCA Elsewhere", KeyKind::P384, valid());
    let listed = Csca::new("CSCA Listed", KeyKind::Rsa, valid());
    let dir = tempfile::tempdir().unwrap();
    let pem = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &csca.der).unwrap();
    let other_pem =
        der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &other.der).unwrap();
    std::fs::write(dir.path().join("utopia.pem"), format!("{other_pem}{pem}")).unwrap();
    std::fs::write(
        dir.path().join("listed.ml"),
        common::pki::master_list(&[&listed.der]),
    )
    .unwrap();
    let crl_pem =
        der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, &csca.crl(&[7])).unwrap();
    std::fs::write(dir.path().join("utopia.crl"), crl_pem).unwrap();
    std::fs::write(dir.path().join("README"), "not a certificate").unwrap();
    let store = TrustStore::load_dir(dir.path()).unwrap();
    assert_eq!((store.cscas().len(), store.crls().len()), (3, 1));

    let Some(revoked) = card(&csca, KeyKind::P256, &SodOptions::default()) else {
        return;
    };
    assert!(matches!(
        revoked.authenticate(&store).revocation,
        Err(Failure::Revoked { .. })
    ));
    let Some(from_master_list) = card(&listed, KeyKind::Rsa, &SodOptions::default()) else {
        return;
    };
    assert_passed(&from_master_list.authenticate(&store));

    std::fs::write(dir.path().join("broken.der"), b"\x30\x03\x02\x01").unwrap();
    let error = TrustStore::load_dir(dir.path()).unwrap_err().to_string();
    assert!(error.contains("broken.der"), "{error}");
}
