//! Single-thread comparison speed of the fingerprint matcher on real templates: every impostor
//! and every genuine pair of each FVC2002 B set (templates prepared beforehand, one scratch).
//!
//! Templates come from the cache the `fvc_eval` example writes (`/tmp/abis-fvc-templates`, or
//! `$ABIS_FVC_CACHE`), else are extracted here from `../shared/data` with the LEADER model.
//! Run: `cargo bench -p abis-bench --bench matcher`. Reported throughput is comparisons/s.

use std::path::PathBuf;
use std::sync::Arc;

use abis_engine::eval;
use abis_engine::finger::FingerExtractor;
use abis_engine::image::Limits;
use abis_engine::matcher::{Matcher, PreparedTemplate, Scratch};
use abis_engine::model::{Runtime, RuntimeConfig};
use abis_engine::template::{decode_native, FingerTemplate};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SETS: &[(&str, f32)] = &[
    ("FVC2002_DB1_B", 500.0),
    ("FVC2002_DB2_B", 569.0),
    ("FVC2002_DB3_B", 500.0),
    ("FVC2002_DB4_B", 500.0),
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn extractor() -> Option<FingerExtractor> {
    let mut config = RuntimeConfig::for_models_dir(&repo_root().join("models"));
    config.intra_threads = 1;
    let runtime: Arc<Runtime> = Runtime::open(config).ok()?;
    FingerExtractor::new(&runtime, Limits::default()).ok()
}

/// The set's samples and templates, or `None`.
fn load(
    name: &str,
    ppi: f32,
    x: &mut Option<Option<FingerExtractor>>,
) -> Option<(Vec<eval::Sample>, Vec<FingerTemplate>)> {
    let data = std::env::var_os("ABIS_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data"))
        .join("fingerprint")
        .join(name);
    let samples = eval::list_samples(&data).ok()?;
    let cache = std::env::var_os("ABIS_FVC_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/abis-fvc-templates"))
        .join(name);
    let cached: Option<Vec<FingerTemplate>> = samples
        .iter()
        .map(|s| {
            let bytes = std::fs::read(cache.join(format!("{}.abft", s.name))).ok()?;
            decode_native(&bytes).ok()
        })
        .collect();
    if let Some(t) = cached {
        return Some((samples, t));
    }
    let ext = x.get_or_insert_with(extractor).as_ref()?;
    let templates = eval::extract_all(&samples, ext, Some(ppi))
        .into_iter()
        .map(|e| e.template)
        .collect::<Option<Vec<_>>>()?;
    Some((samples, templates))
}

fn bench(c: &mut Criterion) {
    let matcher = Matcher::new();
    let mut x = None;
    for (name, ppi) in SETS {
        let Some((samples, templates)) = load(name, *ppi, &mut x) else {
            eprintln!("SKIPPED {name}: no cached templates and no data or models");
            continue;
        };
        let prepared: Vec<PreparedTemplate> = templates
            .iter()
            .map(|t| matcher.prepare(t).expect("prepare"))
            .collect();
        let fingers: Vec<&str> = samples.iter().map(|s| s.finger.as_str()).collect();
        let pairs = eval::fvc_pairs(&fingers);
        let short = name.trim_start_matches("FVC2002_").trim_end_matches("_B");
        let mut group = c.benchmark_group(format!("matcher/{short}"));
        for (kind, list) in [("impostor", &pairs.impostor), ("genuine", &pairs.genuine)] {
            group.throughput(Throughput::Elements(list.len() as u64));
            let mut scratch = Scratch::default();
            group.bench_function(kind, |b| {
                b.iter(|| {
                    let mut sum = 0f32;
                    for &(i, j) in list.iter() {
                        sum += matcher
                            .compare(&prepared[i], &prepared[j], &mut scratch)
                            .score;
                    }
                    std::hint::black_box(sum)
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
