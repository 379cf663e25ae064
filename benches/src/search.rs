//! `abis-bench search`: mated and non-mated searches against a `gen` gallery through the
//! engine's own 1:N path (`Gallery::identify_batch`), and one JSON line of accuracy, speed and
//! footprint.
//!
//! Decisions are the engine's: a candidate is returned when its fused calibrated score reaches
//! the threshold for FPIR 1e-3 over the gallery's size. A mate is *lost by the index* when the
//! full matcher alone scores it at or above that threshold (what an exhaustive search would
//! return, computed directly with `Gallery::verify`) but the search did not return it.
//!
//! Searches run one at a time (latency) and, with `--batch B`, again in batches of B (one pass
//! over the codes per batch); the batched answers must equal the single ones, and the run fails
//! if they do not.

use std::path::PathBuf;
use std::time::Instant;

use abis_engine::gallery::{
    fusion, Candidate, Gallery, Identified, IdentifyOptions, Probe, SearchConfig,
};
use abis_engine::synth::FaceModel;
use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::gallery::{dir_bytes, open, rss_anon_bytes, rss_bytes, SearchArgs};
use crate::population::{store_dir, Population};
use crate::progress;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Modality {
    Finger,
    Face,
    Both,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    data: PathBuf,
    /// Mated probes (and as many non-mated ones).
    #[arg(long, default_value_t = 100)]
    probes: u64,
    #[arg(long, value_enum, default_value_t = Modality::Finger)]
    modality: Modality,
    #[command(flatten)]
    search: SearchArgs,
    /// Capture number of the probes (0 is the enrolment capture).
    #[arg(long, default_value_t = 1)]
    capture: u64,
    /// Probe with the fingers at these ISO positions only (e.g. `1,2,6,7`: thumbs and index
    /// fingers); all enrolled fingers by default.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=10))]
    positions: Vec<u8>,
    /// Also search in batches of this many probes (0: no batch run).
    #[arg(long, default_value_t = 0)]
    batch: usize,
    /// Model manifest holding the face calibration.
    #[arg(long, default_value = "models/manifest.toml")]
    manifest: PathBuf,
    /// Write each search's raw outcome to this CSV: `search,mated,person,mate_exhaustive,
    /// mate_returned,candidates,best_score,best_is_theirs` (the mate's full-matcher score by
    /// 1:1; the best returned candidate's score, empty when none reached the threshold).
    #[arg(long)]
    scores: Option<PathBuf>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Mated probes spread over the enrolled people, then as many people never enrolled.
fn probes(pop: &Population, a: &Args) -> Vec<(Option<u64>, Probe)> {
    let faces = FaceModel::new();
    let face = a.modality != Modality::Finger;
    let fingers: Option<&[u8]> = match a.modality {
        Modality::Face => Some(&[]),
        _ if a.positions.is_empty() => None,
        _ => Some(&a.positions),
    };
    let n = a.probes.min(pop.people);
    let mated = (0..n).map(|k| k * pop.people / n.max(1));
    let strangers = (0..n).map(|k| pop.people + pop.duplicates + 1_000_000 + k);
    mated
        .map(|p| (Some(p), p))
        .chain(strangers.map(|p| (None, p)))
        .map(|(mate, p)| (mate, pop.probe(&faces, p, a.capture, fingers, face)))
        .collect()
}

pub fn run(a: &Args) -> Result<()> {
    let pop = Population::load(&a.data)?;
    if a.modality != Modality::Face && pop.fingers == 0 {
        bail!("this gallery has no fingers");
    }
    if a.modality != Modality::Finger && pop.faces == 0 {
        bail!("this gallery has no faces");
    }
    // Prepared templates are not kept even when exhaustive: the figures are a server's that
    // holds no per-record memory beyond the index.
    let search = SearchConfig {
        retain_prepared: false,
        ..a.search.config()
    };
    let opened = Instant::now();
    let g = open(&a.data, &a.manifest, search, a.search.store_config()?)?;
    let open_s = opened.elapsed().as_secs_f64();
    let rss_open = rss_bytes();
    let rss_anon_open = rss_anon_bytes();
    let probes = probes(&pop, a);
    let options = IdentifyOptions::default();
    let bar = progress::bar(probes.len() as u64, "searches");
    let mut single = Vec::with_capacity(probes.len());
    let mut ms = Vec::with_capacity(probes.len());
    let started = Instant::now();
    for (_, p) in &probes {
        let t0 = Instant::now();
        single.push(g.identify(p, &options)?);
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
        bar.inc(1);
    }
    let single_s = started.elapsed().as_secs_f64();
    bar.finish();
    let rss_searched = rss_bytes();
    let rss_anon_searched = rss_anon_bytes();
    let batch_s = if a.batch > 0 {
        Some(batch_run(&g, &probes, &single, a.batch)?)
    } else {
        None
    };
    let (tally, rows) = tally(&g, &pop, &probes, &single)?;
    if let Some(path) = &a.scores {
        let mut out =
            String::from("search,mated,person,mate_exhaustive,mate_returned,candidates,best_score,best_is_theirs\n");
        for r in rows {
            out.push_str(&r);
            out.push('\n');
        }
        std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    let (stage1_ms, passed_on) = first_stage_ms(&g, &probes)?;
    ms.sort_by(f64::total_cmp);
    let records = g.store().count();
    let gallery_dir = store_dir(&a.data);
    let codes_bytes = dir_bytes(&gallery_dir, ".fcodes");
    println!(
        "{}",
        json!({
            "records": records,
            "probe_fingers": if a.positions.is_empty() { usize::from(pop.fingers) } else { a.positions.len() },
            "modality": format!("{:?}", a.modality).to_lowercase(),
            "exhaustive": a.search.exhaustive,
            "code_shortlist": a.search.code_shortlist,
            "band_candidates": a.search.band_candidates,
            "band_min_fingers": a.search.band_min_fingers,
            "first_stage_p50_ms": stage1_ms.get(stage1_ms.len() / 2),
            "first_stage_p99_ms": stage1_ms.get(stage1_ms.len() * 99 / 100),
            "first_stage_passed_on_mean": passed_on,
            "shortlist": a.search.shortlist,
            "ten_print_min_fingers": a.search.ten_print_min_fingers,
            "ten_print_code_shortlist": a.search.ten_print_code_shortlist,
            "ten_print_shortlist": a.search.ten_print_shortlist,
            "threshold": fusion::threshold_for_fpir(options.target_fpir, records),
            "mated": tally.mated,
            "non_mated": tally.non_mated,
            "fnir": tally.missed as f64 / tally.mated.max(1) as f64,
            "rank1_miss": tally.rank1_miss as f64 / tally.mated.max(1) as f64,
            "fpir": tally.false_positive as f64 / tally.non_mated.max(1) as f64,
            "lost_by_index": tally.lost,
            "exhaustive_would_return": tally.exhaustive_hits,
            "p50_ms": percentile(&ms, 0.5),
            "p99_ms": percentile(&ms, 0.99),
            "searches_per_s": probes.len() as f64 / single_s,
            "batch": a.batch,
            "batch_searches_per_s": batch_s.map(|s| probes.len() as f64 / s),
            "batch_speedup": batch_s.map(|s| single_s / s),
            "open_and_warm_s": open_s,
            "rss_after_open_bytes": rss_open,
            "rss_after_search_bytes": rss_searched,
            "rss_anon_after_open_bytes": rss_anon_open,
            "rss_anon_after_search_bytes": rss_anon_searched,
            "encrypted": a.search.key_file.is_some(),
            "gallery_bytes": dir_bytes(&gallery_dir, ""),
            "resident_code_bytes_per_record": codes_bytes as f64 / records.max(1) as f64,
        })
    );
    Ok(())
}

/// Searches `probes` in batches of `batch`; fails unless every answer equals the single one.
fn batch_run(
    g: &Gallery,
    probes: &[(Option<u64>, Probe)],
    single: &[Identified],
    batch: usize,
) -> Result<f64> {
    let started = Instant::now();
    let mut answers = Vec::with_capacity(probes.len());
    for chunk in probes.chunks(batch) {
        let items: Vec<(Probe, IdentifyOptions)> = chunk
            .iter()
            .map(|(_, p)| (p.clone(), IdentifyOptions::default()))
            .collect();
        for r in g.identify_batch(&items) {
            answers.push(r?);
        }
    }
    let s = started.elapsed().as_secs_f64();
    if answers.as_slice() != single {
        bail!("batched answers differ from single searches");
    }
    Ok(s)
}

#[derive(Default)]
struct Tally {
    mated: u64,
    non_mated: u64,
    missed: u64,
    rank1_miss: u64,
    false_positive: u64,
    lost: u64,
    exhaustive_hits: u64,
}

/// Counts outcomes. A mated search is right when it returns a record of the person (the
/// enrolled one or a planted duplicate), and right at rank 1 when the first candidate is one.
/// Also each search's raw outcome as a CSV row (see `--scores`).
fn tally(
    g: &Gallery,
    pop: &Population,
    probes: &[(Option<u64>, Probe)],
    answers: &[Identified],
) -> Result<(Tally, Vec<String>)> {
    let mut t = Tally::default();
    let mut rows = Vec::with_capacity(probes.len());
    for (i, ((mate, probe), answer)) in probes.iter().zip(answers).enumerate() {
        let (candidates, threshold) = (&answer.candidates, &answer.threshold);
        let best = candidates.first();
        let best_score = best.map_or(String::new(), |c| format!("{:.3}", c.score));
        match mate {
            Some(person) => {
                t.mated += 1;
                let id = Population::reference_id(*person);
                let theirs = |c: &Candidate| pop.person_of(&c.reference_id) == Some(*person);
                let returned = candidates.iter().any(|c| c.reference_id == id);
                if !candidates.iter().any(theirs) {
                    t.missed += 1;
                }
                if !candidates.first().is_some_and(theirs) {
                    t.rank1_miss += 1;
                }
                let exact = g.verify(probe, &id)?.score;
                if exact >= *threshold {
                    t.exhaustive_hits += 1;
                    if !returned {
                        t.lost += 1;
                    }
                }
                rows.push(format!(
                    "{i},1,{person},{exact:.3},{},{},{best_score},{}",
                    u8::from(returned),
                    candidates.len(),
                    u8::from(best.is_some_and(theirs))
                ));
            }
            None => {
                t.non_mated += 1;
                if !candidates.is_empty() {
                    t.false_positive += 1;
                }
                rows.push(format!("{i},0,,,,{},{best_score},0", candidates.len()));
            }
        }
    }
    Ok((t, rows))
}

/// The first stage alone (codes computed beforehand, not timed), per probe with enough fingers:
/// sorted times in ms, and the mean number of records it passed on.
fn first_stage_ms(g: &Gallery, probes: &[(Option<u64>, Probe)]) -> Result<(Vec<f64>, f64)> {
    let min = g.search_config().index_min_fingers;
    let mut ms = Vec::new();
    let mut passed = 0usize;
    for (_, p) in probes.iter().filter(|(_, p)| p.fingers.len() >= min) {
        let prepared = g.first_stage_probe(p);
        let t0 = Instant::now();
        passed += g.first_stage(&prepared)?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let mean = passed as f64 / ms.len().max(1) as f64;
    Ok((ms, mean))
}
