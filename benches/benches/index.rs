//! The 1:N index's kernels: comparing two finger codes, making a finger's coarse form and code,
//! and comparing two forms (LSS-R, and the local similarity sort that ranks before it).
//!
//! `cargo bench -p abis-bench --bench index`. A ten-finger search of a whole gallery is measured
//! by `abis-bench search` (docs/scale.md, "A million people on one node").

use std::hint::black_box;

use abis_engine::index::code::{equal_bytes, FingerCode, SLOTS};
use abis_engine::index::local::{LocalForm, LocalScratch};
use abis_engine::index::local_sort::{self, SortProbe};
use abis_engine::synth::{person_seed, MasterFinger};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let template =
        |person, capture| MasterFinger::generate(person_seed(5, person), 2).impression(capture);
    let (a, mate, stranger) = (template(1, 1), template(1, 2), template(2, 2));
    let (fa, fm, fs) = (
        LocalForm::of(&a),
        LocalForm::of(&mate),
        LocalForm::of(&stranger),
    );
    let (ca, cm) = (FingerCode::of(&fa), FingerCode::of(&fm));
    let mut g = c.benchmark_group("index");
    g.throughput(Throughput::Bytes(SLOTS as u64));
    g.bench_function("equal_bytes_one_code", |b| {
        b.iter(|| equal_bytes(black_box(&ca.bytes), black_box(&cm.bytes)))
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("local_form_of_template", |b| {
        b.iter(|| LocalForm::of(black_box(&a)))
    });
    g.bench_function("code_of_form", |b| {
        b.iter(|| FingerCode::of(black_box(&fa)))
    });
    let mut scratch = LocalScratch::default();
    g.bench_function("lssr_mate", |b| {
        b.iter(|| fa.similarity(black_box(&fm), &mut scratch))
    });
    g.bench_function("lssr_stranger", |b| {
        b.iter(|| fa.similarity(black_box(&fs), &mut scratch))
    });
    let sort = SortProbe::of(&fa);
    println!("local sort kernel: {}", local_sort::kernel_name());
    let stored = |f: &LocalForm| {
        let mut out = Vec::new();
        f.encode(&mut out);
        out
    };
    let (sm, ss) = (stored(&fm), stored(&fs));
    g.bench_function("sort_mate", |b| b.iter(|| sort.similarity(black_box(&sm))));
    g.bench_function("sort_stranger", |b| {
        b.iter(|| sort.similarity(black_box(&ss)))
    });
    // Why many strangers: one pair scored over and over lets the branch predictor learn its
    // whole sequence of pairs, which a search of a gallery never sees twice. Per stranger.
    let strangers: Vec<Vec<u8>> = (100..356)
        .map(|p| stored(&LocalForm::of(&template(p, 2))))
        .collect();
    g.throughput(Throughput::Elements(strangers.len() as u64));
    let stranger_forms: Vec<LocalForm> = strangers
        .iter()
        .map(|s| LocalForm::decode(s).expect("a form it encoded"))
        .collect();
    g.bench_function("lssr_256_strangers", |b| {
        b.iter(|| {
            stranger_forms
                .iter()
                .map(|s| fa.similarity(black_box(s), &mut scratch))
                .sum::<f32>()
        })
    });
    g.bench_function("sort_256_strangers", |b| {
        b.iter(|| {
            strangers
                .iter()
                .map(|s| sort.similarity(black_box(s)))
                .sum::<f32>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
