//! Exact 1:N identification latency over a gallery, through the engine (no gRPC):
//! `cargo bench -p abis-bench --bench gallery` (gallery size: ABIS_BENCH_GALLERY, default 10,000).
//!
//! The gallery is synthetic (random minutiae, random face embeddings, written straight into the
//! store format), so every comparison is an impostor one; random minutiae are rejected earlier by
//! the matcher than real impostors, so this is a lower bound for real data. The first search
//! prepares every record's descriptors (cached); the bench measures warm searches.

use abis_engine::gallery::{FaceScorer, Gallery, IdentifyOptions, Probe};
use abis_engine::matcher::Matcher;
use abis_engine::store::synth::{build_synthetic_gallery, synthetic_face, synthetic_template};
use abis_engine::store::StoreConfig;
use abis_engine::template::{decode_native, FingerPosition};
use criterion::{criterion_group, criterion_main, Criterion};
use std::sync::Arc;

const DIM: usize = 192;

fn identify(c: &mut Criterion) {
    let n: usize = std::env::var("ABIS_BENCH_GALLERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gallery");
    build_synthetic_gallery(&path, n, DIM, 2, 7).expect("synthetic gallery");
    // A cosine-to-score map shaped like a real calibration: 0 dB at cosine 0.3, +10 dB per 0.1.
    let scorer: FaceScorer = Arc::new(|cos| (f64::from(cos) - 0.3).max(0.0) * 100.0);
    let (gallery, _) =
        Gallery::open(&path, StoreConfig::new(DIM), Matcher::new(), Some(scorer)).expect("open");
    gallery.warm().expect("index the gallery");

    let fingers = (1..=2u8)
        .map(|p| {
            let t = decode_native(&synthetic_template(9_000 + p as u64, p, 40)).expect("template");
            (FingerPosition::new(p).expect("position"), t)
        })
        .collect();
    let mut face = Vec::new();
    synthetic_face(99, DIM, &mut face);
    let norm = face.iter().map(|v| v * v).sum::<f32>().sqrt();
    face.iter_mut().for_each(|v| *v /= norm);
    let probe = Probe {
        fingers,
        faces: vec![face],
    };
    let options = IdentifyOptions::default();
    gallery.identify(&probe, &options).expect("warm-up search");

    let mut group = c.benchmark_group("gallery_identify");
    group.sample_size(10);
    group.bench_function(format!("two_fingers_and_face_{n}_records"), |b| {
        b.iter(|| gallery.identify(&probe, &options).expect("identify"))
    });
    group.finish();
}

criterion_group!(benches, identify);
criterion_main!(benches);
