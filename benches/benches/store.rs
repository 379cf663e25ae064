//! Gallery store: insert throughput through the group-committed log (one writer vs eight),
//! and open time of a synthetic gallery.
//!
//! `cargo bench -p abis-bench --bench store`. Writes to the system temp directory: the fsync
//! cost, hence the figures, depend on that disk.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abis_engine::store::synth::{build_synthetic_gallery, synthetic_record};
use abis_engine::store::{Record, Store, StoreConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const DIM: usize = 192;

fn scratch(tag: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let p = std::env::temp_dir().join(format!(
        "abis-store-bench-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn config() -> StoreConfig {
    let mut c = StoreConfig::new(DIM);
    c.background = false;
    c
}

fn insert_throughput(c: &mut Criterion) {
    // Ten finger templates and one face per record, like an enrollment.
    let pool: Vec<Record> = (0..4096)
        .map(|i| synthetic_record(&format!("B{i:07}"), i as u64, 10, 1, DIM))
        .collect();
    let mut group = c.benchmark_group("store_insert");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for writers in [1usize, 8] {
        group.bench_function(format!("{writers}_writers"), |b| {
            b.iter_custom(|iters| {
                let dir = scratch("insert");
                let (store, _) = Store::open(&dir, config()).expect("open");
                let store = Arc::new(store);
                let per = (iters as usize).div_ceil(writers);
                let t0 = Instant::now();
                std::thread::scope(|sc| {
                    for w in 0..writers {
                        let store = Arc::clone(&store);
                        let pool = &pool;
                        sc.spawn(move || {
                            for k in 0..per {
                                let mut r = pool[(w * per + k) % pool.len()].clone();
                                r.reference_id = format!("W{w}-{k}");
                                store.insert(r).expect("insert");
                            }
                        });
                    }
                });
                let dt = t0.elapsed();
                drop(store);
                let _ = std::fs::remove_dir_all(&dir);
                // Scale to the requested iteration count (per * writers may round it up).
                dt.mul_f64(iters as f64 / (per * writers).max(1) as f64)
            })
        });
    }
    group.finish();
}

fn open_time(c: &mut Criterion) {
    let n = 100_000;
    let dir = scratch("open");
    build_synthetic_gallery(&dir, n, DIM, 2, 7).expect("synthetic gallery");
    let mut group = c.benchmark_group("store_open");
    group.sample_size(20);
    group.bench_function(format!("{n}_records_dim{DIM}"), |b| {
        b.iter(|| {
            let (s, _) = Store::open(&dir, config()).expect("open");
            assert_eq!(s.count(), n as u64);
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, insert_throughput, open_time);
criterion_main!(benches);
