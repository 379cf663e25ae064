//! `abis-bench bands-eval`: how LSH band tables over the finger codes would pick candidates,
//! measured on synthetic people: for band layouts, the share of mates found and the number of
//! strangers' records a probe's keys collide with.

use std::collections::HashMap;

use abis_engine::index::code::{FingerCode, SLOTS};
use abis_engine::index::local::LocalForm;
use anyhow::Result;
use rayon::prelude::*;

use crate::population::Population;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 20_000)]
    people: u64,
    #[arg(long, default_value_t = 500)]
    probes: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

type Codes = Vec<Option<FingerCode>>;

fn codes(pop: &Population, i: u64, capture: u64) -> Codes {
    pop.finger_captures(i, capture)
        .iter()
        .map(|t| Some(FingerCode::of(&LocalForm::of(t))).filter(|c| !c.empty))
        .collect()
}

/// Byte pairs of each band.
fn layouts() -> Vec<(&'static str, Vec<(usize, usize)>)> {
    let adj = |b: usize| (0..b).map(|i| (2 * i, 2 * i + 1)).collect::<Vec<_>>();
    let spread = |b: usize| (0..b).map(|i| (i, i + SLOTS / 2)).collect::<Vec<_>>();
    vec![
        ("adjacent16", adj(16)),
        ("adjacent32", adj(32)),
        ("adjacent80", adj(80)),
        ("spread16", spread(16)),
        ("spread32", spread(32)),
        ("spread80", spread(80)),
    ]
}

pub fn run(a: &Args) -> Result<()> {
    let pop = Population {
        seed: a.seed,
        people: a.people,
        fingers: 10,
        faces: 0,
        duplicates: 0,
    };
    let gallery: Vec<Codes> = (0..a.people)
        .into_par_iter()
        .map(|i| codes(&pop, i, 0))
        .collect();
    let probes: Vec<Codes> = (0..a.probes)
        .into_par_iter()
        .map(|i| codes(&pop, i, 1))
        .collect();
    code_scores(&gallery, &probes);
    for (name, bands) in layouts() {
        let mut tables: HashMap<(usize, usize, u16), Vec<u32>> = HashMap::new();
        for (r, g) in gallery.iter().enumerate() {
            for (p, c) in g.iter().enumerate() {
                let Some(c) = c else { continue };
                for (b, (x, y)) in bands.iter().enumerate() {
                    let key = u16::from_le_bytes([c.bytes[*x], c.bytes[*y]]);
                    tables.entry((p, b, key)).or_default().push(r as u32);
                }
            }
        }
        for positions in [vec![0usize, 1, 2, 3, 4, 5, 6, 7, 8, 9], vec![0, 1, 5, 6]] {
            let mut zero = 0;
            let mut below = [0usize; 4];
            let mut hits = 0usize;
            let mut distinct = [0usize; 4];
            let mut mate_rank_over = 0usize;
            for (i, pr) in probes.iter().enumerate() {
                let mut votes: HashMap<u32, u32> = HashMap::new();
                for &p in &positions {
                    let Some(c) = &pr[p] else { continue };
                    for (b, (x, y)) in bands.iter().enumerate() {
                        let key = u16::from_le_bytes([c.bytes[*x], c.bytes[*y]]);
                        if let Some(l) = tables.get(&(p, b, key)) {
                            hits += l.len();
                            for &r in l {
                                *votes.entry(r).or_default() += 1;
                            }
                        }
                    }
                }
                let mv = votes.get(&(i as u32)).copied().unwrap_or(0);
                if mv == 0 {
                    zero += 1;
                }
                for t in 0..4 {
                    if mv < t as u32 + 1 {
                        below[t] += 1;
                    }
                    distinct[t] += votes.values().filter(|&&v| v > t as u32).count();
                }
                mate_rank_over += votes.values().filter(|&&v| v > mv).count();
            }
            let n = probes.len() as f64;
            let scale = 1e6 / a.people as f64;
            println!(
                "{name} fingers={} mates with 0 votes {zero}; below 1/2/3/4 votes {:?}; per probe at 1M: hits {:.0}, records with >=1/2/3/4 votes {:.0}/{:.0}/{:.0}/{:.0}; mean records above the mate's votes {:.1}",
                positions.len(),
                below,
                hits as f64 / n * scale,
                distinct[0] as f64 / n * scale,
                distinct[1] as f64 / n * scale,
                distinct[2] as f64 / n * scale,
                distinct[3] as f64 / n * scale,
                mate_rank_over as f64 / n * scale,
            );
        }
    }
    Ok(())
}

/// Code score (equal bytes less chance, summed over the positions both have) of two people.
fn code_score(a: &Codes, b: &Codes, positions: &[usize]) -> f32 {
    positions
        .iter()
        .filter_map(|&p| Some((a[p].as_ref()?, b[p].as_ref()?)))
        .map(|(x, y)| x.similarity(y))
        .sum()
}

fn quantile(v: &mut [f32], q: f64) -> f32 {
    v.sort_by(f32::total_cmp);
    v[((v.len() - 1) as f64 * q) as usize]
}

/// The code scores of mates and of the best-scoring stranger per probe (what a pair floor on
/// the code score must separate in an N:N self-join).
fn code_scores(gallery: &[Codes], probes: &[Codes]) {
    for positions in [vec![0usize, 1, 2, 3, 4, 5, 6, 7, 8, 9], vec![0, 1, 5, 6]] {
        let (mut mates, mut best_strangers): (Vec<f32>, Vec<f32>) = probes
            .par_iter()
            .enumerate()
            .map(|(i, pr)| {
                let stranger = gallery
                    .iter()
                    .enumerate()
                    .filter(|&(r, _)| r != i)
                    .map(|(_, g)| code_score(pr, g, &positions))
                    .fold(f32::MIN, f32::max);
                (code_score(pr, &gallery[i], &positions), stranger)
            })
            .unzip();
        println!(
            "code scores, fingers={}: mates min {:.1} q01 {:.1} q05 {:.1} median {:.1}; best stranger per probe median {:.1} q99 {:.1} max {:.1} (of {} records)",
            positions.len(),
            quantile(&mut mates, 0.0),
            quantile(&mut mates, 0.01),
            quantile(&mut mates, 0.05),
            quantile(&mut mates, 0.5),
            quantile(&mut best_strangers, 0.5),
            quantile(&mut best_strangers, 0.99),
            quantile(&mut best_strangers, 1.0),
            gallery.len(),
        );
    }
}
