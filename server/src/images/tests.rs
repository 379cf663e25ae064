use super::*;
use abis_engine::store::FingerEntry;
use abis_engine::template::FingerPosition;
use image::ImageEncoder;
use proptest::prelude::*;

fn record(id: &str, template: u8) -> Record {
    Record {
        reference_id: id.to_string(),
        fingers: vec![FingerEntry {
            position: FingerPosition::new(2).unwrap(),
            template: vec![template; 40],
        }],
        ..Default::default()
    }
}

fn image(ordinal: u16, bytes: &[u8]) -> KeptImage {
    KeptImage {
        kind: ImageKind::Finger,
        ordinal,
        position: 2,
        bytes: bytes.to_vec(),
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn images_follow_their_records_insert_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path(), None).unwrap();
    let ok = store
        .insert_with(&record("p1", 1), vec![image(0, b"print")], async {
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
    assert_eq!(ok, Ok(()));
    let kept = store.get("p1").unwrap().unwrap();
    assert_eq!(kept.find(ImageKind::Finger, 0).unwrap().bytes, b"print");
    assert!(kept.find(ImageKind::Face, 0).is_none());

    // A refused insert (say, ALREADY_EXISTS) leaves the record's images as they were.
    let refused = store
        .insert_with(&record("p1", 9), vec![image(0, b"other")], async {
            Err::<(), _>("exists")
        })
        .await
        .unwrap();
    assert_eq!(refused, Err("exists"));
    assert_eq!(store.get("p1").unwrap().unwrap(), kept);

    let failed = store
        .delete_with("p1", async { Err::<(), _>("unavailable") })
        .await
        .unwrap();
    assert_eq!(failed, Err("unavailable"));
    assert_eq!(store.get("p1").unwrap().unwrap(), kept);
    store
        .delete_with("p1", async { Ok::<_, ()>(()) })
        .await
        .unwrap()
        .unwrap();
    assert!(store.get("p1").unwrap().is_none());
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

/// What a crash between the image file and the gallery leaves is settled by the gallery.
#[test]
fn leftovers_are_settled_against_the_gallery() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path(), None).unwrap();
    let pending = |id: &str, t: u8| {
        let r = record(id, t);
        let images = RecordImages {
            reference_id: id.into(),
            record_digest: record_digest(&r),
            images: vec![image(0, id.as_bytes())],
        };
        store.write(&stem_of_record(id), PENDING, &images).unwrap();
    };
    pending("inserted", 1); // the insert was acknowledged, the rename was not
    pending("never", 1); // the insert never happened
    pending("other", 1); // the gallery holds a different record under that id
    for id in ["deleted", "kept"] {
        let images = RecordImages {
            reference_id: id.into(),
            images: vec![image(0, b"x")],
            ..Default::default()
        };
        store
            .write(&stem_of_record(id), SET_ASIDE, &images)
            .unwrap();
    }
    std::fs::write(dir.path().join("torn.tmp"), b"half").unwrap();
    let store = ImageStore::open(dir.path(), None).unwrap();
    let gallery = |id: &str| match id {
        "inserted" => Some(record(id, 1)),
        "other" => Some(record(id, 2)),
        "kept" => Some(record(id, 3)),
        _ => None,
    };
    let mut settled = Vec::new();
    for leftover in store.leftovers().unwrap() {
        let id = leftover.images.reference_id.clone();
        let stored = gallery(&id);
        settled.push((id, store.settle(leftover, stored.as_ref()).unwrap()));
    }
    settled.sort();
    let expected = [
        ("deleted", false),
        ("inserted", true),
        ("kept", true),
        ("never", false),
        ("other", false),
    ];
    let expected: Vec<(String, bool)> = expected.iter().map(|(i, k)| (i.to_string(), *k)).collect();
    assert_eq!(settled, expected);
    assert!(store.get("inserted").unwrap().is_some());
    assert!(store.get("kept").unwrap().is_some());
    assert!(store.get("other").unwrap().is_none());
    assert_eq!(names(dir.path()).len(), 2, "{:?}", names(dir.path()));
}

#[tokio::test]
async fn with_the_gallery_key_images_are_sealed_and_bound_to_their_file() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keyring::from_keys(&[[5u8; 32]]).unwrap();
    let store = ImageStore::open(dir.path(), Some(keys.clone())).unwrap();
    for id in ["person-1", "person-2"] {
        store
            .insert_with(&record(id, 1), vec![image(0, b"RIDGE-PIXELS")], async {
                Ok::<_, ()>(())
            })
            .await
            .unwrap()
            .unwrap();
    }
    let files = names(dir.path());
    for f in &files {
        let bytes = std::fs::read(dir.path().join(f)).unwrap();
        assert!(bytes.starts_with(b"ABISIMS1"));
        assert!(!bytes.windows(12).any(|w| w == b"RIDGE-PIXELS"));
        assert!(!bytes.windows(8).any(|w| w == b"person-1"));
    }
    let plain = ImageStore::open(dir.path(), None).unwrap();
    let err = plain.get("person-1").unwrap_err().to_string();
    assert!(err.contains("encryption_key_file"), "{err}");
    // A file moved under another record's name does not open.
    let (a, b) = (dir.path().join(&files[0]), dir.path().join(&files[1]));
    std::fs::copy(&a, &b).unwrap();
    let id_of_b = ["person-1", "person-2"]
        .into_iter()
        .find(|id| format!("{}.img", stem_of_record(id)) == files[1])
        .unwrap();
    let err = store.get(id_of_b).unwrap_err().to_string();
    assert!(
        err.contains(&files[1]) && err.contains("authenticate"),
        "{err}"
    );

    // Rekeying stops at the damaged file, naming it; without it, every file is rewritten.
    let err = rekey(dir.path(), &keys, true).unwrap_err().to_string();
    assert!(err.contains(&files[1]), "{err}");
    std::fs::remove_file(&b).unwrap();
    assert_eq!(rekey(dir.path(), &keys, true).unwrap(), 1);
    let bytes = std::fs::read(&a).unwrap();
    assert!(bytes.starts_with(b"ABISIMG1"));
}

#[test]
fn a_case_keeps_its_probe_images() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path(), None).unwrap();
    let images = RecordImages {
        images: vec![image(3, b"probe")],
        ..Default::default()
    };
    store.put_case("ab12", &images).unwrap();
    assert_eq!(store.get_case("ab12").unwrap().unwrap(), images);
    assert!(store.get_case("cd34").unwrap().is_none());
}

#[test]
fn images_are_numbered_as_the_record_numbers_its_fingers_and_faces() {
    let s = |modality: Modality, position: u32, image: bool| Sample {
        modality: modality as i32,
        finger_position: position,
        data: Some(if image {
            sample::Data::Image(vec![position as u8])
        } else {
            sample::Data::Template(vec![0])
        }),
        ..Default::default()
    };
    let kept = from_samples(&[
        s(Modality::Finger, 1, false),
        s(Modality::Face, 0, true),
        s(Modality::Finger, 2, true),
        s(Modality::Finger, 7, true),
    ]);
    let got: Vec<(ImageKind, u16, u8)> = kept
        .iter()
        .map(|k| (k.kind, k.ordinal, k.position))
        .collect();
    assert_eq!(
        got,
        vec![
            (ImageKind::Face, 0, 0),
            (ImageKind::Finger, 1, 2),
            (ImageKind::Finger, 2, 7)
        ]
    );
}

#[test]
fn the_browser_gets_png_and_damage_is_an_error() {
    let (w, h) = (40u32, 30u32);
    let pixels: Vec<u8> = (0..w * h).map(|i| (i % 251) as u8).collect();
    let mut source = Vec::new();
    image::codecs::png::PngEncoder::new(&mut source)
        .write_image(&pixels, w, h, image::ExtendedColorType::L8)
        .unwrap();
    let png = browser::to_png(ImageKind::Finger, &source).unwrap();
    let back = image::load_from_memory(&png).unwrap();
    assert_eq!((back.width(), back.height()), (w, h));
    assert_eq!(back.to_luma8().into_raw(), pixels);
    assert!(browser::to_png(ImageKind::Finger, b"not an image").is_err());
    // WSQ, the fingerprint format browsers cannot show, leaves as PNG of the same size.
    let wsq = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../engine/tests/fixtures/wsq/ridges_120x144_br075.wsq"),
    )
    .unwrap();
    let png = browser::to_png(ImageKind::Finger, &wsq).unwrap();
    let back = image::load_from_memory(&png).unwrap();
    assert_eq!((back.width(), back.height()), (120, 144));
    assert!(browser::to_png(ImageKind::Face, &source[..source.len() / 2]).is_err());
}

proptest! {
    #[test]
    fn payloads_round_trip(id in "[a-z0-9]{0,64}", sizes in proptest::collection::vec(0usize..300, 0..6)) {
        let images = RecordImages {
            reference_id: id,
            record_digest: [7; 32],
            images: sizes.iter().enumerate().map(|(i, &n)| image(i as u16, &vec![i as u8; n])).collect(),
        };
        prop_assert_eq!(RecordImages::decode(&images.encode()).unwrap(), images);
    }

    #[test]
    fn hostile_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = RecordImages::decode(&bytes);
    }
}
