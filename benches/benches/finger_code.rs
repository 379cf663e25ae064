//! Fingerprint candidate codes: the AND-popcount kernel, encoding a template, and a ten-finger
//! scan of the person-major code index.
//!
//! `cargo bench -p abis-bench --bench finger_code` (ABIS_CODE_PEOPLE=100000 for a 100k-person
//! gallery; default 20,000). The index holds random codes at the fill rate real ones have
//! (~1 bit in 8): the scan reads every code whatever its content, so its speed does not depend
//! on it. Throughput is in bytes of codes read per second.

use std::hint::black_box;

use abis_engine::hash::mix;
use abis_engine::index::finger_code::{
    and_popcount, CodeIndex, CodeProbe, FingerCode, FingerCoder, CODE_BYTES, FINGERS,
};
use abis_engine::matcher::Matcher;
use abis_engine::synth::MasterFinger;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// A code with about one bit in eight set.
fn random_code(seed: u64) -> FingerCode {
    let mut c = FingerCode::empty();
    for (i, w) in c.words.iter_mut().enumerate() {
        let s = seed.wrapping_mul(1 << 20) ^ i as u64;
        *w = mix(s) & mix(s ^ 0xA) & mix(s ^ 0xB);
    }
    c
}

fn bench(c: &mut Criterion) {
    let a = random_code(1);
    let b = random_code(2);
    let mut g = c.benchmark_group("finger_code");
    g.throughput(Throughput::Bytes(CODE_BYTES as u64));
    g.bench_function("and_popcount_one_code", |bn| {
        bn.iter(|| and_popcount(black_box(&a.words), black_box(&b.words)))
    });
    g.throughput(Throughput::Elements(1));
    let matcher = Matcher::new();
    let coder = FingerCoder::new();
    let prepared = matcher
        .prepare(&MasterFinger::generate(3, 2).impression(1))
        .expect("synthetic template prepares");
    g.bench_function("encode_prepared_template", |bn| {
        bn.iter(|| coder.encode(black_box(&prepared)))
    });

    let people: usize = std::env::var("ABIS_CODE_PEOPLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut index = CodeIndex::new();
    for p in 0..people {
        let codes: [Option<FingerCode>; FINGERS] =
            std::array::from_fn(|f| Some(random_code((p * FINGERS + f) as u64 + 10)));
        index.push(&codes);
    }
    let mut probe = CodeProbe::default();
    for f in 1..=FINGERS as u8 {
        probe.add(f, random_code(u64::from(f) << 40));
    }
    g.throughput(Throughput::Bytes((people * FINGERS * CODE_BYTES) as u64));
    g.sample_size(20);
    g.bench_function(format!("search_10_fingers_{people}_people"), |bn| {
        bn.iter(|| index.search(black_box(&probe), 50))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
