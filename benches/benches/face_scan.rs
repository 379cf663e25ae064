//! Exact int8 face search against the memory bandwidth of the same machine, in the same run.
//!
//! `cargo bench -p abis-bench --bench face_scan` (ABIS_FACE_SCAN_ROWS=10000000 for the 10 M
//! national-scale gallery; default 1 M). Throughput is in bytes of the int8 matrix read per second:
//! compare `scan_1_query` with `read_bandwidth` (a parallel read of the same buffer, the most a
//! scan could reach); `scan_batch_32` scores 32 queries per pass (duplicate search).

use std::hint::black_box;

use abis_engine::hash::mix;
use abis_engine::index::face_scan::{top_k, top_k_batch, Int8Rows};
use abis_engine::index::int8;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rayon::prelude::*;

const DIM: usize = 192;

fn gallery(n: usize) -> (Vec<i8>, Vec<f32>) {
    let data: Vec<i8> = (0..n * DIM / 8)
        .into_par_iter()
        .flat_map_iter(|i| mix(i as u64).to_le_bytes().map(|b| b as i8))
        .collect();
    let scales = vec![1.0 / (127.0 * 11.0); n];
    (data, scales)
}

fn query(seed: u64) -> Vec<f32> {
    (0..DIM)
        .map(|i| (mix(seed ^ i as u64) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

/// Reads every byte of `data` once, in parallel, doing as little as possible with it.
fn read_all(data: &[i8]) -> u64 {
    data.par_chunks(1 << 16)
        .map(|c| {
            c.chunks_exact(8)
                .map(|w| u64::from_le_bytes(std::array::from_fn(|i| w[i] as u8)))
                .fold(0u64, |a, x| a ^ x)
        })
        .reduce(|| 0, |a, b| a ^ b)
}

fn face_scan(c: &mut Criterion) {
    let n: usize = std::env::var("ABIS_FACE_SCAN_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (data, scales) = gallery(n);
    let rows = Int8Rows::new(&data, DIM, DIM, &scales).expect("shape");
    eprintln!(
        "{n} rows x {DIM} int8 = {} MB; kernel {}; {} threads",
        rows.bytes() >> 20,
        int8::kernel_name(),
        rayon::current_num_threads()
    );
    let q = query(1);
    let batch: Vec<Vec<f32>> = (0..32).map(query).collect();
    let batch_refs: Vec<&[f32]> = batch.iter().map(|v| &v[..]).collect();

    let mut g = c.benchmark_group("face_scan");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(rows.bytes() as u64));
    g.bench_function("read_bandwidth", |b| b.iter(|| black_box(read_all(&data))));
    g.bench_function("scan_1_query", |b| {
        b.iter(|| top_k(&rows, black_box(&q), 10).expect("scan"))
    });
    g.bench_function("scan_batch_32", |b| {
        b.iter(|| top_k_batch(&rows, black_box(&batch_refs), 10).expect("scan"))
    });
    g.finish();

    let mut k = c.benchmark_group("int8_dot");
    let block = &data[..1024 * DIM];
    let qi: Vec<i8> = data[..DIM].to_vec();
    let mut out = vec![0i32; 1024];
    k.throughput(Throughput::Bytes(block.len() as u64));
    k.bench_function("dispatched_1024_rows", |b| {
        b.iter(|| int8::dots(black_box(&qi), block, DIM, &mut out))
    });
    k.bench_function("scalar_1024_rows", |b| {
        b.iter(|| int8::dots_scalar(black_box(&qi), block, DIM, &mut out))
    });
    k.finish();
}

criterion_group!(benches, face_scan);
criterion_main!(benches);
