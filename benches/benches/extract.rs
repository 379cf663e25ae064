//! Fingerprint extraction time per image: decode + resample + LEADER + decoding + quality
//! (`finger_extract`), and each of those stages alone (`finger_stage`).
//!
//! `make bench` or `cargo bench -p abis-bench --bench extract`. Needs `make setup` (models);
//! the FVC images are read from ../shared/data when present.

use std::path::PathBuf;

use abis_engine::finger::{assess, CaptureInfo, FingerExtractor, LeaderModel, MODEL_PPI};
use abis_engine::image::{self, Limits};
use abis_engine::model::{Runtime, RuntimeConfig};
use criterion::{criterion_group, criterion_main, Criterion};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn extraction(c: &mut Criterion) {
    let mut config = RuntimeConfig::for_models_dir(&root().join("models"));
    config.intra_threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let runtime = Runtime::open(config).expect("models set up (run `make setup`)");
    let extractor = FingerExtractor::new(&runtime, Limits::default()).expect("LEADER model");
    let mut images = vec![(
        "afis_p1_1_400x500",
        root().join("models/cache/afis/p1_1.png"),
        500.0,
    )];
    let fvc = root().join("../shared/data/fingerprint");
    images.push((
        "fvc2002_db1_388x374",
        fvc.join("FVC2002_DB1_B/101_1.tif"),
        500.0,
    ));
    images.push((
        "fvc2002_db2_296x560_569ppi",
        fvc.join("FVC2002_DB2_B/101_1.tif"),
        569.0,
    ));
    let images: Vec<(&str, Vec<u8>, f32)> = images
        .into_iter()
        .filter_map(|(name, path, ppi)| match std::fs::read(&path) {
            Ok(bytes) => Some((name, bytes, ppi)),
            Err(_) => {
                eprintln!("skipping {name}: {} not found", path.display());
                None
            }
        })
        .collect();

    let mut group = c.benchmark_group("finger_extract");
    group.sample_size(20);
    for (name, bytes, ppi) in &images {
        let info = CaptureInfo {
            ppi: Some(*ppi),
            ..Default::default()
        };
        group.bench_function(*name, |b| {
            b.iter(|| extractor.extract(bytes, info).expect("extract"))
        });
    }
    group.finish();

    // The same work stage by stage, so that the README can say where the time goes.
    let leader = LeaderModel::open(&runtime, "leader").expect("LEADER model");
    let limits = Limits::default();
    let mut group = c.benchmark_group("finger_stage");
    group.sample_size(20);
    for (name, bytes, ppi) in &images {
        let decoded = image::decode(bytes, &limits).expect("decode");
        let resampled = image::resample_to_ppi(&decoded.image, *ppi, MODEL_PPI).expect("resample");
        let minutiae = leader.detect(&resampled.image).expect("LEADER");
        group.bench_function(format!("{name}/decode"), |b| {
            b.iter(|| image::decode(bytes, &limits).expect("decode"))
        });
        group.bench_function(format!("{name}/resample"), |b| {
            b.iter(|| image::resample_to_ppi(&decoded.image, *ppi, MODEL_PPI).expect("resample"))
        });
        group.bench_function(format!("{name}/leader"), |b| {
            b.iter(|| leader.detect(&resampled.image).expect("LEADER"))
        });
        group.bench_function(format!("{name}/quality"), |b| {
            b.iter(|| assess(&resampled.image, &minutiae))
        });
    }
    group.finish();
}

criterion_group!(benches, extraction);
criterion_main!(benches);
