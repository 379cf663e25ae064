//! The face pipeline on real faces (ATT/ORL from ../shared/data) with the real models.
//! Without the models (`make setup`) or the data a test skips, counted (and fails under
//! `ABIS_REQUIRE_DATA=1`): see `abis_testkit`.
//! No timing decides anything here.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use abis_engine::face::{FaceEngine, FaceError, FaceOptions, FoundBy};
use abis_engine::image::{ImageError, Limits, RgbImage};
use abis_engine::model::{Runtime, RuntimeConfig};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[track_caller]
fn att() -> Option<PathBuf> {
    abis_testkit::shared("face/ATT_ORL/s1/1.pgm")?;
    abis_testkit::shared("face/ATT_ORL")
}

/// One engine for the whole test binary (ONNX Runtime loads once per process).
#[track_caller]
fn engine() -> Option<&'static FaceEngine> {
    static ENGINE: OnceLock<FaceEngine> = OnceLock::new();
    if !abis_testkit::face_models_ready() {
        return None;
    }
    Some(ENGINE.get_or_init(|| {
        let mut config = RuntimeConfig::for_models_dir(&root().join("models"));
        config.intra_threads = 2;
        let runtime: Arc<Runtime> = Runtime::open(config).expect("runtime");
        FaceEngine::open(&runtime, Limits::default()).expect("face engine")
    }))
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn same_person_scores_higher_than_different_people() {
    let (Some(e), Some(att)) = (engine(), att()) else {
        return;
    };
    let opts = FaceOptions {
        portrait: true,
        ..Default::default()
    };
    let ids = ["s1", "s2", "s5", "s13", "s27", "s40"];
    let mut t = Vec::new();
    for id in ids {
        let imgs: Vec<Vec<u8>> = (1..=3)
            .map(|k| read(&att.join(format!("{id}/{k}.pgm"))))
            .collect();
        let refs: Vec<&[u8]> = imgs.iter().map(Vec::as_slice).collect();
        for x in e.extract_many(&refs, opts) {
            let x = x.expect("extraction");
            assert_eq!(x.template.embedding.len(), 192);
            assert!(x.quality.inter_eye_px > 15.0, "{:?}", x.quality);
            t.push((id, x.template));
        }
    }
    let (mut worst_genuine, mut best_impostor) = (f32::MAX, f32::MIN);
    for i in 0..t.len() {
        for j in i + 1..t.len() {
            let c = t[i].1.cosine(&t[j].1).unwrap();
            if t[i].0 == t[j].0 {
                worst_genuine = worst_genuine.min(c);
            } else {
                best_impostor = best_impostor.max(c);
            }
        }
    }
    assert!(
        worst_genuine > best_impostor,
        "worst genuine {worst_genuine} <= best impostor {best_impostor}"
    );
    // At FMR 1e-3, a genuine pair of a clear identity matches and an impostor does not.
    let d = e.compare(&t[0].1, &t[1].1, 1e-3).unwrap();
    assert!(d.calibrated && d.matched, "{d:?}");
    let d = e.compare(&t[0].1, &t[3].1, 1e-3).unwrap();
    assert!(!d.matched, "{d:?}");
}

/// Rotates and scales an ATT face onto a larger canvas with a known similarity, detects it, and
/// checks the aligned crop: running the detector on the crop must find the eyes where the
/// template puts them.
#[test]
fn aligned_crops_put_the_eyes_where_the_template_says() {
    let (Some(e), Some(att)) = (engine(), att()) else {
        return;
    };
    let src = image::open(att.join("s3/1.pgm")).unwrap().into_rgb8();
    let (w, h) = (300u32, 300u32);
    let (angle, scale) = (12f32.to_radians(), 1.7f32);
    let (cx, cy) = (150.0f32, 150.0f32);
    let canvas = image::RgbImage::from_fn(w, h, |x, y| {
        // Inverse map: canvas -> source.
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let (c, s) = (angle.cos(), angle.sin());
        let sx = (c * dx + s * dy) / scale + 46.0;
        let sy = (-s * dx + c * dy) / scale + 56.0;
        if sx >= 0.0 && sy >= 0.0 && sx < 91.0 && sy < 111.0 {
            *src.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([90, 90, 90])
        }
    });
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(canvas)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let (img, faces) = e.detect(&png).unwrap();
    assert_eq!(faces.len(), 1, "one face on the canvas");
    let f = faces[0];
    let roll = (f.landmarks[1][1] - f.landmarks[0][1])
        .atan2(f.landmarks[1][0] - f.landmarks[0][0])
        .to_degrees();
    assert!(
        (roll - 12.0).abs() < 6.0,
        "eye line at {roll} degrees, rotated by 12"
    );
    let crop = e.aligned_crop(&img, &f.landmarks).unwrap();
    // Detect on the crop, padded (the crop is tight): eyes must land on the template.
    let pad = 40u32;
    let big = image::RgbImage::from_fn(112 + 2 * pad, 112 + 2 * pad, |x, y| {
        if x >= pad && y >= pad && x < pad + 112 && y < pad + 112 {
            let p = crop.get(x - pad, y - pad);
            image::Rgb(p)
        } else {
            image::Rgb([90, 90, 90])
        }
    });
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(big)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let (_, again) = e.detect(&png).unwrap();
    let g = again.first().expect("face in the aligned crop");
    let t = e.template_points();
    for (k, (found, want)) in g.landmarks.iter().zip(t.iter()).take(2).enumerate() {
        let (x, y) = (found[0] - pad as f32, found[1] - pad as f32);
        let err = (x - want[0]).hypot(y - want[1]);
        assert!(err < 4.0, "eye {k} at ({x:.1}, {y:.1}), template {want:?}");
    }
}

/// A JPEG 2000 copy (made with the tools venv's Pillow/OpenJPEG, lossy) embeds like the PNG.
#[test]
fn jpeg2000_copy_gives_the_same_embedding() {
    let (Some(e), Some(att)) = (engine(), att()) else {
        return;
    };
    let Some(py) = abis_testkit::tools_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (png, jp2, j2k) = (
        dir.path().join("a.png"),
        dir.path().join("a.jp2"),
        dir.path().join("a.j2k"),
    );
    let status = std::process::Command::new(&py)
        .args([
            "-c",
            "import sys; from PIL import Image; im = Image.open(sys.argv[1]).convert('RGB'); \
             im = im.resize((184, 224)); im.save(sys.argv[2]); \
             im.save(sys.argv[3], quality_mode='rates', quality_layers=[20]); \
             im.save(sys.argv[4], quality_mode='rates', quality_layers=[10])",
        ])
        .arg(att.join("s9/4.pgm"))
        .args([&png, &jp2, &j2k])
        .status()
        .unwrap();
    assert!(status.success());
    let opts = FaceOptions {
        portrait: true,
        ..Default::default()
    };
    let a = e.extract(&read(&png), opts).unwrap();
    for path in [&jp2, &j2k] {
        let bytes = read(path);
        let b = e.extract(&bytes, opts).unwrap();
        let c = a.template.cosine(&b.template).unwrap();
        assert!(c > 0.99, "{}: cosine {c}", path.display());
    }
}

/// The calibration was fitted on ATT identities s1-s20 only; on the held-out s21-s40 the
/// observed FMR at a calibrated threshold must not exceed the nominal rate much.
#[test]
fn calibration_holds_on_held_out_identities() {
    let (Some(e), Some(att)) = (engine(), att()) else {
        return;
    };
    let opts = FaceOptions {
        portrait: true,
        ..Default::default()
    };
    let mut t = Vec::new();
    for id in 21..=40 {
        let imgs: Vec<Vec<u8>> = (1..=10)
            .map(|k| read(&att.join(format!("s{id}/{k}.pgm"))))
            .collect();
        let refs: Vec<&[u8]> = imgs.iter().map(Vec::as_slice).collect();
        for x in e.extract_many(&refs, opts) {
            t.push((id, x.expect("extraction").template));
        }
    }
    let (mut n, mut false_at_1e2, mut false_at_1e3) = (0usize, 0usize, 0usize);
    for i in 0..t.len() {
        for j in i + 1..t.len() {
            if t[i].0 == t[j].0 {
                continue;
            }
            n += 1;
            false_at_1e2 += e.compare(&t[i].1, &t[j].1, 1e-2).unwrap().matched as usize;
            false_at_1e3 += e.compare(&t[i].1, &t[j].1, 1e-3).unwrap().matched as usize;
        }
    }
    let (f2, f3) = (
        false_at_1e2 as f64 / n as f64,
        false_at_1e3 as f64 / n as f64,
    );
    assert!(f2 <= 0.015, "observed FMR {f2} at nominal 1e-2");
    assert!(f3 <= 0.002, "observed FMR {f3} at nominal 1e-3");
}

#[test]
fn hostile_images_give_typed_errors() {
    let Some(e) = engine() else {
        return;
    };
    let opts = FaceOptions::default();
    assert!(matches!(
        e.extract(b"", opts),
        Err(FaceError::Image(ImageError::Empty))
    ));
    assert!(matches!(
        e.extract(b"not an image at all", opts),
        Err(FaceError::Image(ImageError::UnknownFormat))
    ));
    // A PNG header claiming 100000 x 100000 pixels: refused from the header.
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend_from_slice(&100_000u32.to_be_bytes());
    png.extend_from_slice(&100_000u32.to_be_bytes());
    png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    assert!(matches!(e.extract(&png, opts), Err(FaceError::Image(_))));
    // Truncated JPEG 2000.
    let jp2 = [
        0, 0, 0, 0x0C, b'j', b'P', b' ', b' ', 0x0D, 0x0A, 0x87, 0x0A, 0, 0, 0,
    ];
    assert!(matches!(e.extract(&jp2, opts), Err(FaceError::Image(_))));
    // A flat gray picture has no face; without --portrait that is NoFace.
    let flat = image::RgbImage::from_pixel(120, 120, image::Rgb([128, 128, 128]));
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(flat)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    assert!(matches!(e.extract(&bytes, opts), Err(FaceError::NoFace)));
    // With --portrait, the whole-image fallback is taken and flagged.
    let x = e
        .extract(
            &bytes,
            FaceOptions {
                portrait: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(x.found_by, FoundBy::WholeImageFallback);
    assert!(x.template.fallback);
    // Aligned crops of the wrong size are refused, not panicked on.
    let small = RgbImage::new(20, 20, vec![0; 1200]).unwrap();
    assert!(e.embed_aligned(&[small]).is_err());
}

#[test]
fn several_faces_need_a_choice() {
    let (Some(e), Some(att)) = (engine(), att()) else {
        return;
    };
    let a = image::open(att.join("s1/1.pgm")).unwrap().into_rgb8();
    let b = image::open(att.join("s2/1.pgm")).unwrap().into_rgb8();
    // Two faces side by side on a wide canvas, the second one larger (scaled 1.5x).
    let b = image::imageops::resize(&b, 138, 168, image::imageops::FilterType::Triangle);
    let mut canvas = image::RgbImage::from_pixel(420, 260, image::Rgb([100, 100, 100]));
    image::imageops::overlay(&mut canvas, &a, 40, 70);
    image::imageops::overlay(&mut canvas, &b, 240, 40);
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(canvas)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    let (_, faces) = e.detect(&bytes).unwrap();
    assert_eq!(faces.len(), 2, "both faces of the composite are found");
    assert!(matches!(
        e.extract(&bytes, FaceOptions::default()),
        Err(FaceError::SeveralFaces { count: 2 })
    ));
    let x = e
        .extract(
            &bytes,
            FaceOptions {
                choice: abis_engine::face::FaceChoice::Largest,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(x.face.bbox[0] > 200.0, "the larger face is the right one");
}
