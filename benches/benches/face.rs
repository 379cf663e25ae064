//! Face verification time, end to end, on two ~1-megapixel JPEG photos (1152x864), and its
//! parts: JPEG decoding, detection (decode + downscale + MTCNN) and embedding (batch of 2).
//!
//! `cargo bench -p abis-bench --bench face`. Needs `make setup` (models) and ATT/ORL in
//! ../shared/data: each photo is an ATT face upscaled 3x (276x336) on a textured background,
//! JPEG quality 90. ONNX Runtime gets every core (2 here). Target: verify < 150 ms.
//! `verify_two_1mp_jpegs` uses the default smallest face (20 px of the 1024-px detection
//! image: most of the time is P-Net on the first pyramid levels); `..._min_face_80` looks only
//! for faces of 80 px and more, as a counter photo or a chip portrait allows.

use std::io::Cursor;
use std::path::PathBuf;

use abis_engine::face::{FaceEngine, FaceOptions};
use abis_engine::image::{decode_rgb, Limits};
use abis_engine::model::{Runtime, RuntimeConfig};
use criterion::{criterion_group, criterion_main, Criterion};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An ATT face, upscaled 3x, placed off-centre on a 1152x864 gradient with texture.
fn photo(face: &std::path::Path, seed: u32) -> Option<Vec<u8>> {
    let f = image::open(face).ok()?.into_rgb8();
    let f = image::imageops::resize(&f, 276, 336, image::imageops::FilterType::CatmullRom);
    let mut canvas = image::RgbImage::from_fn(1152, 864, |x, y| {
        let n = (x
            .wrapping_mul(2_654_435_761u32 ^ seed)
            .wrapping_add(y * 40_503)
            >> 27) as u8;
        image::Rgb([
            (60 + x / 12) as u8 ^ (n & 7),
            (80 + y / 10) as u8,
            (140 - x / 20) as u8 + (n & 3),
        ])
    });
    image::imageops::overlay(&mut canvas, &f, 380 + seed as i64 * 40, 220);
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut Cursor::new(&mut out), 90)
        .encode_image(&canvas)
        .ok()?;
    Some(out)
}

fn face(c: &mut Criterion) {
    let att = root().join("../shared/data/face/ATT_ORL");
    let (Some(a), Some(b)) = (
        photo(&att.join("s5/1.pgm"), 1),
        photo(&att.join("s5/6.pgm"), 2),
    ) else {
        eprintln!("skipping: ATT_ORL not found in {}", att.display());
        return;
    };
    let mut config = RuntimeConfig::for_models_dir(&root().join("models"));
    config.intra_threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let runtime = Runtime::open(config).expect("models set up (run `make setup`)");
    let engine = FaceEngine::open(&runtime, Limits::default()).expect("face models");
    let opts = FaceOptions::default();
    // Sanity: both photos give a face and they match.
    let xs = engine.extract_many(&[&a, &b], opts);
    let (ta, tb) = match (&xs[0], &xs[1]) {
        (Ok(x), Ok(y)) => (x.template.clone(), y.template.clone()),
        _ => panic!("no face in the benchmark photos"),
    };
    eprintln!(
        "photos {} and {} bytes; same person cosine {:.3}",
        a.len(),
        b.len(),
        ta.cosine(&tb).unwrap_or(f32::NAN)
    );
    let (img, faces) = engine.detect(&a).expect("detect");
    let crop = engine
        .aligned_crop(&img, &faces[0].landmarks)
        .expect("crop");
    let crops = vec![crop.clone(), crop];

    let mut g = c.benchmark_group("face");
    g.sample_size(20);
    g.bench_function("verify_two_1mp_jpegs", |bench| {
        bench.iter(|| {
            let xs = engine.extract_many(&[&a, &b], opts);
            let (Ok(x), Ok(y)) = (&xs[0], &xs[1]) else {
                panic!("extraction failed")
            };
            engine
                .compare(&x.template, &y.template, 1e-3)
                .expect("compare")
        })
    });
    // The same with the smallest face set to 80 px (of the 1024-px detection image): what a
    // counter photo or a chip portrait, whose face is large, can use.
    let portrait = FaceOptions {
        min_face: Some(80.0),
        ..opts
    };
    g.bench_function("verify_two_1mp_jpegs_min_face_80", |bench| {
        bench.iter(|| {
            let xs = engine.extract_many(&[&a, &b], portrait);
            let (Ok(x), Ok(y)) = (&xs[0], &xs[1]) else {
                panic!("extraction failed")
            };
            engine
                .compare(&x.template, &y.template, 1e-3)
                .expect("compare")
        })
    });
    g.bench_function("decode_1mp_jpeg", |bench| {
        bench.iter(|| decode_rgb(&a, &Limits::default()).expect("decode"))
    });
    g.bench_function("detect_1mp_jpeg", |bench| {
        bench.iter(|| engine.detect(&a).expect("detect"))
    });
    g.bench_function("embed_batch_of_2", |bench| {
        bench.iter(|| engine.embed_aligned(&crops).expect("embed"))
    });
    g.finish();
}

criterion_group!(benches, face);
criterion_main!(benches);
