//! `abis-bench faces-ann`: FAISS (`abis-ann`, IVF-Flat or HNSW) against the exact int8 face scan
//! (`abis_engine::index::face_scan`) on one synthetic face gallery, in one run: build time,
//! 1:N latency and recall@k, and the N:N k-nearest-neighbour self-join (time, pairs, planted
//! duplicates found). One JSON line on stdout.
//!
//! The gallery is the one `gen --fingers 0 --faces 1` writes, drawn in memory (no store): person
//! `i`'s enrolment capture, then `--duplicates` people enrolled a second time from another
//! capture (the planted pairs). Queries are capture 1 of enrolled people. Recall@k is the share
//! of the exact scan's top-k rows that FAISS returns. The score distributions are printed beside
//! the figures: synthetic galleries are evidence only where they resemble real ones (the face
//! model is fitted to ATT through the real model; `abis-bench dist` draws both).
//!
//! The exact self-join scans every row against every row (batches of queries per pass over
//! the rows); over a large gallery `--exact-join-rows S` runs it for the last S rows (the
//! planted duplicates are last) and extrapolates its time linearly to all rows.

use std::collections::HashSet;
use std::time::Instant;

use abis_ann::{AnnConfig, FaceAnn, Layout, Pair};
use abis_engine::index::face_scan::{top_k_batch, Int8Rows};
use abis_engine::store::quantise;
use abis_engine::synth::{FaceModel, FACE_DIM};
use anyhow::{bail, Result};
use rayon::prelude::*;
use serde_json::{json, Value};

use crate::population::Population;
use crate::progress;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    people: u64,
    /// People enrolled a second time (planted duplicate faces).
    #[arg(long, default_value_t = 0)]
    duplicates: u64,
    /// Mated 1:N queries, each timed alone.
    #[arg(long, default_value_t = 200)]
    queries: u64,
    /// Neighbours per query (1:N and self-join).
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Self-join pairs below this cosine are dropped.
    #[arg(long, default_value_t = 0.5)]
    min_cosine: f32,
    /// FAISS structure: `ivf` (IVF-Flat) or `hnsw` (HNSW-Flat).
    #[arg(long, value_enum, default_value_t = LayoutArg::Ivf)]
    layout: LayoutArg,
    /// IVF cells (default: about 2·√rows).
    #[arg(long)]
    nlist: Option<u32>,
    /// HNSW links per row.
    #[arg(long, default_value_t = 32)]
    hnsw_m: u32,
    /// Search breadths measured for 1:N (IVF cells read; HNSW candidates kept).
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128")]
    breadth: Vec<u32>,
    /// Search breadth of the self-join.
    #[arg(long, default_value_t = 64)]
    join_breadth: u32,
    /// Rows the exact self-join runs (0: all); its time for all rows is extrapolated.
    #[arg(long, default_value_t = 0)]
    exact_join_rows: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LayoutArg {
    Ivf,
    Hnsw,
}

/// Queries per pass over the rows in the exact self-join (each block of rows stays in cache
/// while all of them are scored).
const EXACT_BATCH: usize = 256;

/// The gallery: f32 rows as the embedder gives them and the int8 rows a segment stores.
struct Faces {
    f32_rows: Vec<f32>,
    i8_rows: Vec<i8>,
    scales: Vec<f32>,
}

impl Faces {
    fn rows(&self) -> usize {
        self.scales.len()
    }

    fn row(&self, r: usize) -> &[f32] {
        &self.f32_rows[r * FACE_DIM..(r + 1) * FACE_DIM]
    }

    fn int8(&self) -> Result<Int8Rows<'_>> {
        Ok(Int8Rows::new(
            &self.i8_rows,
            FACE_DIM,
            FACE_DIM,
            &self.scales,
        )?)
    }
}

pub fn run(a: &Args) -> Result<()> {
    if a.people == 0 || a.duplicates > a.people || a.k == 0 || a.breadth.is_empty() {
        bail!("need --people ≥ 1, --duplicates ≤ --people, --k ≥ 1 and one --breadth at least");
    }
    let pop = Population {
        seed: a.seed,
        people: a.people,
        fingers: 0,
        faces: 1,
        duplicates: a.duplicates,
    };
    let model = FaceModel::new();
    let started = Instant::now();
    let faces = draw(&pop, &model);
    let draw_s = started.elapsed().as_secs_f64();
    let scores = distributions(&pop, &model, &faces);
    let t0 = Instant::now();
    let config = AnnConfig {
        layout: match a.layout {
            LayoutArg::Ivf => Layout::Ivf { nlist: a.nlist },
            LayoutArg::Hnsw => Layout::Hnsw { m: a.hnsw_m },
        },
        breadth: a.breadth[0],
    };
    let mut ann = FaceAnn::build_with(&faces.f32_rows, FACE_DIM, &config)?;
    let build_s = t0.elapsed().as_secs_f64();
    let one_to_n = one_to_n(a, &pop, &model, &faces, &mut ann)?;
    let join = self_join(a, &pop, &faces, &mut ann)?;
    println!(
        "{}",
        json!({
            "rows": faces.rows(),
            "dim": FACE_DIM,
            "people": a.people,
            "planted_duplicates": a.duplicates,
            "seed": a.seed,
            "threads": rayon::current_num_threads(),
            "draw_s": draw_s,
            "scores": scores,
            "faiss_index": ann.describe(),
            "faiss_build_s": build_s,
            "one_to_n": one_to_n,
            "self_join": join,
            "total_s": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

/// Every record's face, as `gen` enrols it, and its int8 row.
fn draw(pop: &Population, model: &FaceModel) -> Faces {
    let records = pop.records() as usize;
    let mut f32_rows = vec![0f32; records * FACE_DIM];
    let mut i8_rows = vec![0i8; records * FACE_DIM];
    let mut scales = vec![0f32; records];
    f32_rows
        .par_chunks_mut(FACE_DIM)
        .zip(i8_rows.par_chunks_mut(FACE_DIM))
        .zip(scales.par_iter_mut())
        .enumerate()
        .for_each(|(r, ((f, q), s))| {
            let (person, capture) = pop.record_person(r as u64);
            f.copy_from_slice(&pop.face_capture(model, person, capture));
            *s = quantise(f, q);
        });
    Faces {
        f32_rows,
        i8_rows,
        scales,
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Genuine cosines (the planted pairs, or two captures of up to 10,000 people when none are
/// planted) and impostor cosines (200,000 pairs of records of different people).
fn distributions(pop: &Population, model: &FaceModel, faces: &Faces) -> Value {
    let genuine: Vec<f32> = if pop.duplicates > 0 {
        (pop.people..pop.records())
            .map(|r| {
                let (person, _) = pop.record_person(r);
                cosine(faces.row(r as usize), faces.row(person as usize))
            })
            .collect()
    } else {
        (0..pop.people.min(10_000))
            .map(|p| cosine(faces.row(p as usize), &pop.face_capture(model, p, 1)))
            .collect()
    };
    let n = pop.people;
    let impostor: Vec<f32> = (0..200_000u64)
        .filter_map(|i| {
            let a = abis_engine::hash::mix(i ^ 0x1111) % n;
            let b = abis_engine::hash::mix(i ^ 0x2222) % n;
            (a != b).then(|| cosine(faces.row(a as usize), faces.row(b as usize)))
        })
        .collect();
    json!({ "genuine": summary(genuine), "impostor": summary(impostor) })
}

/// Mean, standard deviation and quantiles of a score sample.
fn summary(mut v: Vec<f32>) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    v.sort_by(f32::total_cmp);
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    json!({
        "n": v.len(), "mean": mean, "sd": var.sqrt(),
        "p0.1": q(0.001), "p1": q(0.01), "p50": q(0.5), "p99": q(0.99), "p99.9": q(0.999),
        "max": v[v.len() - 1],
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn latency(mut ms: Vec<f64>) -> Value {
    ms.sort_by(f64::total_cmp);
    json!({ "p50_ms": percentile(&ms, 0.5), "p99_ms": percentile(&ms, 0.99),
            "mean_ms": ms.iter().sum::<f64>() / ms.len() as f64 })
}

/// Mated queries, each searched alone: the exact scan once, FAISS at every `--breadth`.
fn one_to_n(
    a: &Args,
    pop: &Population,
    model: &FaceModel,
    faces: &Faces,
    ann: &mut FaceAnn,
) -> Result<Value> {
    let n = a.queries.min(pop.people).max(1);
    let mates: Vec<u64> = (0..n).map(|q| q * pop.people / n).collect();
    let queries: Vec<Vec<f32>> = mates
        .iter()
        .map(|&p| pop.face_capture(model, p, 1))
        .collect();
    let rows = faces.int8()?;
    let (mut exact, mut ms) = (Vec::new(), Vec::new());
    for q in &queries {
        let t0 = Instant::now();
        let hits = top_k_batch(&rows, &[q], a.k)?.pop().unwrap_or_default();
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
        exact.push(hits.iter().map(|h| h.row as u32).collect::<Vec<_>>());
    }
    // The first row is one of the person's records (the enrolled one or a planted duplicate).
    let rank1 = |tops: &[Vec<u32>]| {
        let person = |r: &u32| pop.record_person(u64::from(*r)).0;
        let hit = tops
            .iter()
            .zip(&mates)
            .filter(|(t, &m)| t.first().map(person) == Some(m));
        hit.count() as f64 / tops.len() as f64
    };
    let mut runs = Vec::new();
    for &breadth in &a.breadth {
        ann.set_breadth(breadth)?;
        let (mut got, mut ms) = (Vec::new(), Vec::new());
        for q in &queries {
            let t0 = Instant::now();
            let hits = ann.search(q, a.k)?;
            ms.push(t0.elapsed().as_secs_f64() * 1e3);
            got.push(hits.iter().map(|h| h.row).collect::<Vec<_>>());
        }
        runs.push(json!({
            "breadth": ann.breadth(),
            "latency": latency(ms),
            "recall_at_k": recall(&exact, &got),
            "rank1_mate": rank1(&got),
        }));
    }
    Ok(json!({
        "queries": queries.len(), "k": a.k,
        "exact_int8": { "latency": latency(ms), "rank1_mate": rank1(&exact) },
        "faiss": runs,
    }))
}

/// Share of the exact lists' rows that the approximate lists hold.
fn recall(exact: &[Vec<u32>], got: &[Vec<u32>]) -> f64 {
    let (mut want, mut found) = (0usize, 0usize);
    for (e, g) in exact.iter().zip(got) {
        want += e.len();
        found += e.iter().filter(|r| g.contains(r)).count();
    }
    found as f64 / want.max(1) as f64
}

/// The N:N self-join both ways: exact (blocked int8 scan over the query rows chosen) and FAISS
/// (every row, at `--join-breadth`), compared on the exact run's query rows.
fn self_join(a: &Args, pop: &Population, faces: &Faces, ann: &mut FaceAnn) -> Result<Value> {
    let n = faces.rows();
    let sample = match a.exact_join_rows {
        0 => n,
        s => (s as usize).min(n),
    };
    let first = n - sample;
    let t0 = Instant::now();
    let exact = exact_join(a, faces, first)?;
    let exact_s = t0.elapsed().as_secs_f64();
    ann.set_breadth(a.join_breadth)?;
    let t0 = Instant::now();
    let approx = ann.knn_self_join(a.k, a.min_cosine)?;
    let faiss_s = t0.elapsed().as_secs_f64();
    let key = |p: &Pair| (p.a, p.b);
    let found: HashSet<(u32, u32)> = approx.iter().map(key).collect();
    let planted: Vec<(u32, u32)> = (pop.people..pop.records())
        .map(|r| (pop.record_person(r).0 as u32, r as u32))
        .collect();
    let in_sample = |&(_, dup): &(u32, u32)| dup as usize >= first;
    let exact_set: HashSet<(u32, u32)> = exact.iter().map(key).collect();
    let planted_sampled = planted.iter().filter(|p| in_sample(p)).count();
    Ok(json!({
        "k": a.k,
        "min_cosine": a.min_cosine,
        "exact_int8": {
            "query_rows": sample,
            "s": exact_s,
            "s_all_rows": exact_s * n as f64 / sample as f64,
            "extrapolated": sample < n,
            "pairs": exact.len(),
            "planted_in_query_rows": planted_sampled,
            "planted_found": planted.iter().filter(|p| in_sample(p) && exact_set.contains(p)).count(),
        },
        "faiss": {
            "breadth": ann.breadth(),
            "s": faiss_s,
            "pairs": approx.len(),
            "planted": planted.len(),
            "planted_found": planted.iter().filter(|p| found.contains(p)).count(),
            "recall_of_exact_pairs": exact_set.iter().filter(|p| found.contains(p)).count() as f64
                / exact_set.len().max(1) as f64,
        },
    }))
}

/// Exact kNN pairs of the rows `first..`: each batch of query rows scored against every row.
fn exact_join(a: &Args, faces: &Faces, first: usize) -> Result<Vec<Pair>> {
    let rows = faces.int8()?;
    let n = faces.rows();
    let bar = progress::bar((n - first) as u64, "exact join");
    let batches: Vec<usize> = (first..n).step_by(EXACT_BATCH).collect();
    let mut pairs = Vec::new();
    for start in batches {
        let end = (start + EXACT_BATCH).min(n);
        let queries: Vec<&[f32]> = (start..end).map(|r| faces.row(r)).collect();
        let tops = top_k_batch(&rows, &queries, a.k + 1)?;
        for (offset, top) in tops.into_iter().enumerate() {
            let row = start + offset;
            let others = top.into_iter().filter(|h| h.row != row).take(a.k);
            pairs.extend(others.filter(|h| h.score >= a.min_cosine).map(|h| Pair {
                a: row.min(h.row) as u32,
                b: row.max(h.row) as u32,
                cosine: h.score,
            }));
        }
        bar.inc((end - start) as u64);
    }
    bar.finish();
    Ok(abis_ann::merge_pairs(pairs))
}
