//! `abis-bench dist`: do synthetic people score like real ones? Scores synthetic fingers with
//! the engine's matcher (FVC protocol: 8 impressions a finger, every genuine pair, first
//! impressions of different fingers as impostors) and synthetic faces by cosine, reads the real
//! scores that `abis finger eval --scores` and `abis face eval --scores` wrote on
//! `../shared/data`, and prints quantiles and the Kolmogorov-Smirnov distance of each pair of
//! distributions as JSON, with histograms in a PNG.

use std::path::{Path, PathBuf};

use abis_engine::matcher::{Matcher, Scratch};
use abis_engine::synth::{person_seed, FaceModel, MasterFinger};
use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use rayon::prelude::*;
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// Real finger scores (`a,b,score`, names `<finger>_<impression>`), from `abis finger eval`.
    #[arg(long)]
    finger_scores: Vec<PathBuf>,
    /// Real face scores (`a,b,score,cosine`, names `<person>/<photo>`), from `abis face eval`.
    #[arg(long)]
    face_scores: Option<PathBuf>,
    /// Synthetic fingers (8 impressions each).
    #[arg(long, default_value_t = 200)]
    fingers: u64,
    /// Synthetic faces (10 captures each).
    #[arg(long, default_value_t = 400)]
    faces: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Histogram PNG (real genuine blue, real impostor red, synthetic genuine cyan, synthetic
    /// impostor magenta; fingers left, faces right).
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// Genuine and impostor scores of one source.
#[derive(Default)]
struct Scores {
    genuine: Vec<f64>,
    impostor: Vec<f64>,
}

fn subject(name: &str) -> &str {
    name.split(['_', '/']).next().unwrap_or(name)
}

/// Reads `a,b,score[,cosine]` rows; `column` picks the score column.
fn read_scores(paths: &[PathBuf], column: usize) -> Result<Scores> {
    let mut s = Scores::default();
    for p in paths {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        for (n, line) in text.lines().enumerate().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let v: f64 = f
                .get(column)
                .and_then(|x| x.trim().parse().ok())
                .with_context(|| {
                    format!("{}:{}: no score in column {column}", p.display(), n + 1)
                })?;
            if subject(f[0]) == subject(f[1]) {
                s.genuine.push(v);
            } else {
                s.impostor.push(v);
            }
        }
    }
    if s.genuine.is_empty() || s.impostor.is_empty() {
        bail!("the score files hold no genuine or no impostor pairs");
    }
    Ok(s)
}

fn synthetic_fingers(n: u64, seed: u64) -> Scores {
    const IMPRESSIONS: u64 = 8;
    let matcher = Matcher::new();
    let prepared: Vec<Vec<_>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let f = MasterFinger::generate(person_seed(seed, i), (i % 10) as u8 + 1);
            (0..IMPRESSIONS)
                .filter_map(|k| matcher.prepare(&f.impression(k)).ok())
                .collect()
        })
        .collect();
    let genuine = prepared
        .par_iter()
        .flat_map_iter(|imps| {
            let mut scratch = Scratch::default();
            let mut out = Vec::new();
            for a in 0..imps.len() {
                for b in a + 1..imps.len() {
                    out.push(f64::from(
                        matcher.compare(&imps[a], &imps[b], &mut scratch).score,
                    ));
                }
            }
            out
        })
        .collect();
    let impostor = (0..prepared.len())
        .into_par_iter()
        .flat_map_iter(|a| {
            let mut scratch = Scratch::default();
            let prepared = &prepared;
            let matcher = &matcher;
            (a + 1..prepared.len()).filter_map(move |b| {
                let (x, y) = (prepared[a].first()?, prepared[b].first()?);
                Some(f64::from(matcher.compare(x, y, &mut scratch).score))
            })
        })
        .collect();
    Scores { genuine, impostor }
}

fn synthetic_faces(n: u64, seed: u64) -> Scores {
    const CAPTURES: u64 = 10;
    let model = FaceModel::new();
    let people: Vec<Vec<Vec<f32>>> = (0..n)
        .map(|i| {
            let id = model.identity(person_seed(seed, i));
            (0..CAPTURES)
                .map(|k| {
                    let mut v = Vec::new();
                    model.capture(&id, person_seed(seed ^ 0xC, i * CAPTURES + k), &mut v);
                    v
                })
                .collect()
        })
        .collect();
    let cos = |a: &[f32], b: &[f32]| f64::from(a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>());
    let mut s = Scores::default();
    for (i, p) in people.iter().enumerate() {
        for a in 0..p.len() {
            for b in a + 1..p.len() {
                s.genuine.push(cos(&p[a], &p[b]));
            }
        }
        for q in &people[i + 1..] {
            s.impostor.push(cos(&p[0], &q[0]));
        }
    }
    s
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// Largest gap between the two empirical CDFs.
fn ks_distance(a: &[f64], b: &[f64]) -> f64 {
    let (a, b) = (sorted(a), sorted(b));
    let (mut i, mut j, mut d) = (0, 0, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

fn summary(v: &[f64]) -> serde_json::Value {
    let s = sorted(v);
    let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
    json!({
        "n": s.len(),
        "mean": s.iter().sum::<f64>() / s.len() as f64,
        "q01": q(0.01), "q10": q(0.10), "q50": q(0.5), "q90": q(0.9), "q99": q(0.99),
        "q999": q(0.999),
    })
}

fn compare(real: &Scores, synth: &Scores) -> serde_json::Value {
    json!({
        "real": {"genuine": summary(&real.genuine), "impostor": summary(&real.impostor)},
        "synthetic": {"genuine": summary(&synth.genuine), "impostor": summary(&synth.impostor)},
        "ks_genuine": ks_distance(&real.genuine, &synth.genuine),
        "ks_impostor": ks_distance(&real.impostor, &synth.impostor),
    })
}

pub fn run(a: &Args) -> Result<()> {
    let mut out = serde_json::Map::new();
    let mut panels = Vec::new();
    if !a.finger_scores.is_empty() {
        let real = read_scores(&a.finger_scores, 2)?;
        let synth = synthetic_fingers(a.fingers, a.seed);
        out.insert("finger_score".into(), compare(&real, &synth));
        panels.push((real, synth, (0.0, 400.0), 10.0));
    }
    if let Some(p) = &a.face_scores {
        let real = read_scores(std::slice::from_ref(p), 3)?;
        let synth = synthetic_faces(a.faces, a.seed);
        out.insert("face_cosine".into(), compare(&real, &synth));
        panels.push((real, synth, (-0.5, 1.0), 0.025));
    }
    if panels.is_empty() {
        bail!("give --finger-scores and/or --face-scores");
    }
    if let Some(path) = &a.plot {
        draw(path, &panels).context("drawing the histograms")?;
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

type Panel = (Scores, Scores, (f64, f64), f64);

/// Share of `v` per bin of `width` over `range` (values outside go to the end bins).
fn histogram(v: &[f64], range: (f64, f64), width: f64) -> Vec<(f64, f64)> {
    let bins = ((range.1 - range.0) / width).ceil() as usize;
    let mut h = vec![0usize; bins];
    for &x in v {
        let b = ((x - range.0) / width)
            .floor()
            .clamp(0.0, (bins - 1) as f64) as usize;
        h[b] += 1;
    }
    h.iter()
        .enumerate()
        .map(|(i, &c)| {
            let share = (c as f64 / v.len() as f64).max(1e-5);
            (range.0 + (i as f64 + 0.5) * width, share)
        })
        .collect()
}

fn draw(path: &Path, panels: &[Panel]) -> Result<()> {
    let root = BitMapBackend::new(path, (520 * panels.len() as u32, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((1, panels.len()));
    for (area, (real, synth, range, width)) in areas.iter().zip(panels) {
        let mut chart = ChartBuilder::on(area)
            .margin(16)
            .build_cartesian_2d(range.0..range.1, (1e-5..1.0f64).log_scale())?;
        chart.configure_mesh().disable_x_mesh().draw()?;
        let series = [
            (&real.genuine, BLUE),
            (&real.impostor, RED),
            (&synth.genuine, CYAN),
            (&synth.impostor, MAGENTA),
        ];
        for (v, colour) in series {
            chart.draw_series(LineSeries::new(
                histogram(v, *range, *width),
                colour.stroke_width(2),
            ))?;
        }
    }
    root.present()?;
    Ok(())
}
