//! `abis-bench search`: mated and non-mated searches against a `gen` gallery, with the indexes
//! (finger codes → short list → full matcher; exact int8 face scan → f32 re-rank) or
//! exhaustively, and one JSON line of accuracy, speed and footprint.
//!
//! Decisions use the engine's 1:N rule: a candidate is returned when its fused calibrated score
//! reaches the threshold for FPIR 1e-3 over this gallery's size
//! (`gallery::fusion::threshold_for_fpir`). A mate is *lost by the pre-filter* when the full
//! matcher scores it above that threshold (so exhaustive search returns it) but the index did not
//! put it on the short list.

use std::path::PathBuf;
use std::time::Instant;

use abis_engine::face::Calibration;
use abis_engine::gallery::fusion::{combine, threshold_for_fpir};
use abis_engine::index::face_scan::{top_k, Int8Rows};
use abis_engine::index::finger_code::FingerCoder;
use abis_engine::matcher::{Matcher, Scratch};
use abis_engine::synth::FaceModel;
use anyhow::{bail, Result};
use rayon::prelude::*;
use serde_json::json;

use crate::gallery::{cosine, dir_bytes, face_calibration, finger_score, rss_bytes, Gallery};
use crate::population::{codes_path, finger_probe, store_dir, FingerProbe, Population};
use crate::progress;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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
    /// Turn the indexes off: full matcher against every person, f32 cosine against every face.
    #[arg(long)]
    exhaustive: bool,
    /// People kept from each index for the exact stage.
    #[arg(long, default_value_t = 50)]
    shortlist: usize,
    /// Capture number of the probes (0 is the enrolment capture).
    #[arg(long, default_value_t = 1)]
    capture: u64,
    /// Use only the probe's first N fingers (ISO positions 1..=N).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=10))]
    probe_fingers: Option<u8>,
    /// Model manifest holding the face calibration.
    #[arg(long, default_value = "models/manifest.toml")]
    manifest: PathBuf,
}

struct Ctx<'a> {
    g: &'a Gallery,
    matcher: Matcher,
    coder: FingerCoder,
    face_cal: Option<Calibration>,
    a: &'a Args,
}

/// One search's outcome: candidate records best first with their fused scores, and the records
/// the indexes put on the short list (sorted).
struct Outcome {
    candidates: Vec<(u64, f64)>,
    shortlisted: Vec<u64>,
    ms: f64,
}

impl Ctx<'_> {
    fn face_score(&self, probe: &[f32], person: u64) -> Result<f64> {
        let Some(cal) = &self.face_cal else {
            return Ok(0.0);
        };
        Ok(match self.g.face_of(person)? {
            Some(row) => cal.score(cosine(probe, &row)),
            None => 0.0,
        })
    }

    /// People the indexes put on the short list.
    fn shortlist(&self, fp: Option<&FingerProbe>, face: Option<&[f32]>) -> Result<Vec<u64>> {
        let mut list: Vec<u64> = Vec::new();
        if let Some(fp) = fp {
            list.extend(
                self.g
                    .codes
                    .search(&fp.codes, self.a.shortlist)
                    .iter()
                    .map(|h| u64::from(h.person)),
            );
        }
        if let Some(q) = face {
            for seg_index in 0..self.g.snapshot.segments().len() {
                let seg = &self.g.snapshot.segments()[seg_index];
                let faces = seg.faces()?;
                let rows = Int8Rows::from_matrix(&faces)?;
                for hit in top_k(&rows, q, self.a.shortlist)? {
                    if let Some(r) =
                        Population::record_of(seg.reference_id(faces.row_owner(hit.row)))
                    {
                        list.push(r);
                    }
                }
            }
        }
        list.sort_unstable();
        list.dedup();
        Ok(list)
    }

    fn search(&self, fp: Option<&FingerProbe>, face: Option<&[f32]>) -> Result<Outcome> {
        let started = Instant::now();
        let people: Vec<u64> = if self.a.exhaustive {
            (0..self.g.records.len() as u64).collect()
        } else {
            self.shortlist(fp, face)?
        };
        let mut candidates: Vec<(u64, f64)> = people
            .par_iter()
            .map_init(Scratch::default, |scratch, &i| -> Result<(u64, f64)> {
                let mut parts = Vec::with_capacity(2);
                if let Some(fp) = fp {
                    let s = if self.a.exhaustive {
                        finger_score(
                            &self.matcher,
                            &fp.prepared,
                            &self.g.prepared[i as usize],
                            scratch,
                        )
                    } else {
                        let g = self.g.fingers_of(&self.matcher, i, |p| fp.has(p))?;
                        finger_score(&self.matcher, &fp.prepared, &g, scratch)
                    };
                    parts.push(s);
                }
                if let Some(q) = face {
                    parts.push(self.face_score(q, i)?);
                }
                Ok((i, combine(&parts)))
            })
            .collect::<Result<_>>()?;
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        candidates.truncate(10);
        Ok(Outcome {
            candidates,
            shortlisted: if self.a.exhaustive {
                Vec::new()
            } else {
                people
            },
            ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// The score exhaustive matching gives person `i` (the mate), computed directly.
    fn exact_mate_score(
        &self,
        fp: Option<&FingerProbe>,
        face: Option<&[f32]>,
        i: u64,
    ) -> Result<f64> {
        let mut parts = Vec::new();
        if let Some(fp) = fp {
            let g = self.g.fingers_of(&self.matcher, i, |p| fp.has(p))?;
            parts.push(finger_score(
                &self.matcher,
                &fp.prepared,
                &g,
                &mut Scratch::default(),
            ));
        }
        if let Some(q) = face {
            parts.push(self.face_score(q, i)?);
        }
        Ok(combine(&parts))
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn run(a: &Args) -> Result<()> {
    let pop = Population::load(&a.data)?;
    let use_finger = a.modality != Modality::Face;
    let use_face = a.modality != Modality::Finger;
    if use_finger && pop.fingers == 0 {
        bail!("this gallery has no fingers");
    }
    if use_face && pop.faces == 0 {
        bail!("this gallery has no faces");
    }
    if a.probes == 0 || a.probes > pop.people {
        bail!("--probes must be 1..={}", pop.people);
    }
    let rss_before = rss_bytes();
    let (_store, mut g) = Gallery::open(&a.data, &pop, use_finger && !a.exhaustive)?;
    let matcher = Matcher::new();
    if a.exhaustive && use_finger {
        // Prepared templates take ~32 KB each: refuse what would not fit rather than swap.
        let need = pop.records() * u64::from(pop.fingers) * 32 * 1024;
        if need > 12 << 30 {
            bail!("exhaustive finger search would hold ~{} GiB of prepared templates; use a smaller gallery", need >> 30);
        }
        let bar = progress::bar(pop.records(), "prepare");
        g.prepared = (0..pop.records())
            .into_par_iter()
            .map(|i| {
                bar.inc(1);
                g.fingers_of(&matcher, i, |_| true)
            })
            .collect::<Result<_>>()?;
        bar.finish();
    }
    let ctx = Ctx {
        g: &g,
        matcher,
        coder: FingerCoder::new(),
        face_cal: if use_face {
            Some(face_calibration(&a.manifest)?)
        } else {
            None
        },
        a,
    };
    let n = pop.people;
    let threshold = threshold_for_fpir(1e-3, n);
    let faces = FaceModel::new();
    // Mated: evenly spread enrolled people; non-mated: people never enrolled.
    let mated: Vec<u64> = (0..a.probes).map(|k| k * n / a.probes).collect();
    let strangers: Vec<u64> = (0..a.probes).map(|k| n + k).collect();
    let (mut fnir, mut rank1_miss, mut lost, mut exact_found, mut false_pos) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut latencies, mut shortlist_sizes) = (Vec::new(), Vec::new());
    let bar = progress::bar(2 * a.probes, "searches");
    let mut search_s = 0.0;
    for (k, &person) in mated.iter().chain(&strangers).enumerate() {
        let is_mated = k < mated.len();
        let fp = if use_finger {
            let mut captures = pop.finger_captures(person, a.capture);
            captures.truncate(usize::from(a.probe_fingers.unwrap_or(10)));
            Some(finger_probe(&ctx.matcher, &ctx.coder, &captures)?)
        } else {
            None
        };
        let face = use_face.then(|| pop.face_capture(&faces, person, a.capture));
        let out = ctx.search(fp.as_ref(), face.as_deref())?;
        search_s += out.ms / 1e3;
        latencies.push(out.ms);
        if !a.exhaustive {
            shortlist_sizes.push(out.shortlisted.len() as f64);
        }
        let is_mate = |r: u64| pop.record_person(r).0 == person;
        if is_mated {
            if !out
                .candidates
                .iter()
                .any(|&(r, s)| is_mate(r) && s >= threshold)
            {
                fnir += 1;
            }
            if !out.candidates.first().is_some_and(|&(r, _)| is_mate(r)) {
                rank1_miss += 1;
            }
            if !a.exhaustive
                && ctx.exact_mate_score(fp.as_ref(), face.as_deref(), person)? >= threshold
            {
                exact_found += 1;
                if out.shortlisted.binary_search(&person).is_err() {
                    lost += 1;
                }
            }
        } else if out.candidates.iter().any(|&(_, s)| s >= threshold) {
            false_pos += 1;
        }
        bar.inc(1);
    }
    bar.finish();
    latencies.sort_by(f64::total_cmp);
    let m = a.probes as f64;
    let penetration = if a.exhaustive {
        1.0
    } else {
        shortlist_sizes.iter().sum::<f64>() / shortlist_sizes.len() as f64 / n as f64
    };
    let disk = dir_bytes(&store_dir(&a.data))
        + if use_finger && !a.exhaustive {
            std::fs::metadata(codes_path(&a.data))?.len()
        } else {
            0
        };
    println!(
        "{}",
        json!({
            "people": n,
            "records": pop.records(),
            "fingers": if use_finger { a.probe_fingers.unwrap_or(10).min(pop.fingers) } else { 0 },
            "modality": match a.modality { Modality::Finger => "finger", Modality::Face => "face", Modality::Both => "both" },
            "mode": if a.exhaustive { "exhaustive" } else { "indexed" },
            "probes_mated": a.probes,
            "probes_non_mated": a.probes,
            "threshold": threshold,
            "fnir_at_fpir_1e-3": fnir as f64 / m,
            "fpir_observed": false_pos as f64 / m,
            "rank1_miss": rank1_miss as f64 / m,
            "penetration": penetration,
            "shortlist": if a.exhaustive { serde_json::Value::Null } else { json!(a.shortlist) },
            "prefilter_lost": if a.exhaustive { serde_json::Value::Null } else { json!(lost) },
            "prefilter_exact_found": if a.exhaustive { serde_json::Value::Null } else { json!(exact_found) },
            "p50_ms": percentile(&latencies, 0.5),
            "p99_ms": percentile(&latencies, 0.99),
            "searches_per_s": latencies.len() as f64 / search_s,
            "ram_bytes_per_record": rss_bytes().saturating_sub(rss_before) as f64 / n as f64,
            "disk_bytes_per_record": disk as f64 / n as f64,
        })
    );
    Ok(())
}
