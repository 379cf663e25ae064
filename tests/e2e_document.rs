//! End-to-end: the bank counter's `VerifyDocument` through gRPC against a real `abis serve`
//! whose `[document] trust_store` holds a test CSCA, with chips built from ATT/ORL faces
//! (JPEG 2000 portraits). A genuine card of the same person matches; a genuine card of someone
//! else does not; a forged card (signed outside the trusted PKI) with the customer's own face
//! is refused by passive authentication although the faces match; malformed chip files are
//! INVALID_ARGUMENT naming the part. `abis face verify-chip` answers the same from a shell.

mod support;

#[path = "../icao/tests/common/mod.rs"]
mod chip;

use abis_proto::v1::{
    sample, DataGroup, Decision, ExtractRequest, FaceChoice, Modality, Sample,
    VerifyDocumentRequest,
};
use chip::pki::{days, Csca, DocumentSigner, KeyKind, SodOptions};
use support::Server;

fn live(bytes: Vec<u8>) -> Sample {
    Sample {
        modality: Modality::Face as i32,
        data: Some(sample::Data::Image(bytes)),
        ..Default::default()
    }
}

fn request(card: &chip::Card, photo: &[u8]) -> VerifyDocumentRequest {
    VerifyDocumentRequest {
        live: vec![live(photo.to_vec())],
        dg2: card.dg2.clone(),
        sod: card.sod.clone(),
        data_groups: vec![DataGroup {
            number: 1,
            content: card.dg1.clone(),
        }],
        target_fmr: 1e-4,
        face_choice: FaceChoice::Only as i32,
    }
}

/// A card of subject 1 signed by a Document Signer of `csca`.
fn card_of(csca: &Csca) -> Option<chip::Card> {
    let signer = DocumentSigner::new(csca, KeyKind::P256, 7, days(-30, 3650));
    let portrait = chip::chip_portrait(1, 1)?;
    let dg2 = chip::dg2(&chip::facial_record(&portrait, 1, 368, 448));
    Some(chip::Card::new(&signer, dg2, &SodOptions::default()))
}

struct Counter {
    server: Server,
    genuine: chip::Card,
    forged: chip::Card,
    same: Vec<u8>,
    other: Vec<u8>,
    trust: tempfile::TempDir,
}

fn counter() -> Option<Counter> {
    if !support::face_models_ready() {
        return None;
    }
    let csca = Csca::new("CSCA Utopia", KeyKind::P256, days(-30, 3650));
    let forger = Csca::new("CSCA Utopia", KeyKind::P256, days(-30, 3650));
    let (genuine, forged) = (card_of(&csca)?, card_of(&forger)?);
    let (same, other) = (chip::live_photo(1, 2)?, chip::live_photo(2, 1)?);
    let trust = tempfile::tempdir().unwrap();
    std::fs::write(trust.path().join("csca.der"), &csca.der).unwrap();
    std::fs::write(trust.path().join("csca.crl"), csca.crl(&[99])).unwrap();
    let env = [("ABIS__DOCUMENT__TRUST_STORE", trust.path().as_os_str())];
    let server = Server::start_with(tempfile::tempdir().unwrap(), &env);
    Some(Counter {
        server,
        genuine,
        forged,
        same,
        other,
        trust,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_counter_verifies_chip_cards() {
    let Some(c) = counter() else { return };
    support::wait_serving(&c.server, "", std::time::Duration::from_secs(60)).await;
    let mut client = support::connect(&c.server).await;

    let genuine = client
        .verify_document(request(&c.genuine, &c.same))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(genuine.decision, Decision::Matched as i32, "{genuine:?}");
    assert!(genuine.passive_authentication && genuine.revocation.as_ref().unwrap().ok);
    assert_eq!(genuine.portrait_format, "jpeg2000");

    let someone_else = client
        .verify_document(request(&c.genuine, &c.other))
        .await
        .unwrap()
        .into_inner();
    assert!(someone_else.passive_authentication, "{someone_else:?}");
    assert_eq!(
        someone_else.face_decision,
        Decision::NotMatched as i32,
        "{someone_else:?}"
    );
    assert_eq!(someone_else.decision, Decision::NotMatched as i32);

    let forged = client
        .verify_document(request(&c.forged, &c.same))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        forged.face_decision,
        Decision::Matched as i32,
        "the forger used the customer's face"
    );
    assert!(
        !forged.passive_authentication && !forged.chain.as_ref().unwrap().ok,
        "{forged:?}"
    );
    assert_eq!(forged.decision, Decision::NotMatched as i32);

    // The portrait replaced by another person's, SOD untouched.
    let mut swapped = request(&c.genuine, &c.other);
    swapped.dg2 = chip::dg2(&chip::facial_record(
        &chip::chip_portrait(2, 1).unwrap(),
        1,
        368,
        448,
    ));
    let swapped = client.verify_document(swapped).await.unwrap().into_inner();
    assert!(!swapped.hashes.as_ref().unwrap().ok, "{swapped:?}");
    assert_eq!(swapped.decision, Decision::NotMatched as i32);
}

/// Spoils one part of a genuine request.
type Breakage = Box<dyn Fn(&mut VerifyDocumentRequest)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chip_files_are_invalid_argument_naming_the_part() {
    let Some(c) = counter() else { return };
    support::wait_serving(&c.server, "", std::time::Duration::from_secs(60)).await;
    let mut client = support::connect(&c.server).await;
    let cases: [(&str, Breakage); 4] = [
        ("dg2", Box::new(|r| r.dg2.truncate(r.dg2.len() / 2))),
        ("sod", Box::new(|r| r.sod = vec![0x77, 0x80, 0, 0])),
        (
            "data_groups[0].number",
            Box::new(|r| r.data_groups[0].number = 2),
        ),
        ("live", Box::new(|r| r.live.clear())),
    ];
    for (part, break_it) in cases {
        let mut req = request(&c.genuine, &c.same);
        break_it(&mut req);
        let status = client.verify_document(req).await.unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{part}: {status:?}"
        );
        assert!(
            status.message().contains(part),
            "{part}: {}",
            status.message()
        );
    }
}

#[test]
fn verify_chip_from_a_shell() {
    let Some(c) = counter() else { return };
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let (dg2, sod, photo) = (
        write("dg2.bin", &c.genuine.dg2),
        write("sod.bin", &c.genuine.sod),
        write("live.jpg", &c.same),
    );
    let out = support::abis()
        .args(["face", "verify-chip"])
        .arg(&photo)
        .arg("--dg2")
        .arg(&dg2)
        .arg("--sod")
        .arg(&sod)
        .arg("--trust")
        .arg(c.trust.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "match", "{v}");
    assert_eq!(v["chain"]["ok"], true, "{v}");
}

/// The customer (subject 1, large, centred) with a bystander (subject 3, smaller, in a corner).
fn crowded_photo() -> Option<Vec<u8>> {
    let face = |subject: u32, n: u32, w: u32, h: u32| -> Option<image::RgbImage> {
        let path = abis_testkit::shared(&format!("face/ATT_ORL/s{subject}/{n}.pgm"))?;
        let image = image::open(path).unwrap();
        Some(
            image
                .resize_exact(w, h, image::imageops::FilterType::CatmullRom)
                .to_rgb8(),
        )
    };
    let mut scene = image::RgbImage::from_pixel(1152, 864, image::Rgb([128, 128, 128]));
    image::imageops::overlay(&mut scene, &face(1, 2, 368, 448)?, 392, 208);
    image::imageops::overlay(&mut scene, &face(3, 1, 184, 224)?, 40, 40);
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(scene)
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    Some(out.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn face_choice_picks_the_customer_out_of_a_crowded_photo() {
    let Some(c) = counter() else { return };
    let Some(photo) = crowded_photo() else { return };
    support::wait_serving(&c.server, "", std::time::Duration::from_secs(60)).await;
    let mut client = support::connect(&c.server).await;
    let with = |choice: FaceChoice| {
        let mut req = request(&c.genuine, &photo);
        req.face_choice = choice as i32;
        req
    };
    let only = client
        .verify_document(with(FaceChoice::Only))
        .await
        .unwrap_err();
    assert_eq!(only.code(), tonic::Code::InvalidArgument, "{only:?}");
    assert!(
        only.message().contains("live[0]") && only.message().contains("2 faces found"),
        "{}",
        only.message()
    );
    for choice in [
        FaceChoice::Largest,
        FaceChoice::MostCentral,
        FaceChoice::Unspecified,
    ] {
        let r = client
            .verify_document(with(choice))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.decision, Decision::Matched as i32, "{choice:?}: {r:?}");
    }
    // The same field on Extract.
    let extract = |choice: FaceChoice| ExtractRequest {
        samples: vec![live(photo.clone())],
        format: 0,
        face_choice: choice as i32,
    };
    let only = client.extract(extract(FaceChoice::Only)).await.unwrap_err();
    assert!(only.message().contains("2 faces found"), "{only:?}");
    let largest = client
        .extract(extract(FaceChoice::Largest))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(largest.results.len(), 1);
}
