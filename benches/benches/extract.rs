//! Fingerprint extraction time per image: decode + resample + LEADER + decoding + quality.
//!
//! `make bench` or `cargo bench -p abis-bench --bench extract`. Needs `make setup` (models);
//! the FVC image is read from ../shared/data when present.

use std::path::PathBuf;

use abis_engine::finger::{CaptureInfo, FingerExtractor};
use abis_engine::image::Limits;
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
    let mut group = c.benchmark_group("finger_extract");
    group.sample_size(20);
    for (name, path, ppi) in images {
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!("skipping {name}: {} not found", path.display());
            continue;
        };
        let info = CaptureInfo {
            ppi: Some(ppi),
            ..Default::default()
        };
        group.bench_function(name, |b| {
            b.iter(|| extractor.extract(&bytes, info).expect("extract"))
        });
    }
    group.finish();
}

criterion_group!(benches, extraction);
criterion_main!(benches);
