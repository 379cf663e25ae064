//! `abis-bench dedup`: gallery-wide duplicate finding (N:N), as when cleaning a legacy database.
//!
//! Records are taken in blocks. For each block the index proposes, for every record, the `k`
//! most similar *later* records (finger codes, all enrolled fingers fused) or nearest faces
//! (exact int8 scan, every row); the full matcher (or the f32 cosine) then scores each proposed
//! pair, and pairs at or above the 1:N threshold for FPIR 1e-3 over the gallery's size are kept.
//! Groups are the connected components of the kept pairs.
//!
//! Every finished block is appended to `DIR/harness/dedup-<modality>.jsonl` and synced, so a run
//! that stops (crash, Ctrl-C, reboot) resumes after its last finished block; a torn last line is
//! ignored and the block redone.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use abis_engine::gallery::fusion::threshold_for_fpir;
use abis_engine::index::face_scan::{top_k_batch, Int8Rows};
use abis_engine::matcher::{Matcher, PreparedTemplate, Scratch};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::gallery::{cosine, face_calibration, finger_score, Gallery};
use crate::population::Population;
use crate::progress;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Modality {
    Finger,
    Face,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    data: PathBuf,
    #[arg(long, value_enum, default_value_t = Modality::Finger)]
    modality: Modality,
    /// Candidates proposed per record by the index.
    #[arg(long, default_value_t = 5)]
    candidates: usize,
    /// Records per block (the unit of progress and of resumption).
    #[arg(long, default_value_t = 512)]
    block: usize,
    /// Forget earlier progress and start over.
    #[arg(long)]
    restart: bool,
    /// Stop after this many blocks (to try resumption).
    #[arg(long)]
    max_blocks: Option<usize>,
    /// Model manifest holding the face calibration.
    #[arg(long, default_value = "models/manifest.toml")]
    manifest: PathBuf,
}

/// One finished block, as a line of the state file.
#[derive(Serialize, Deserialize)]
struct BlockDone {
    block: usize,
    /// Pairs `(a, b, score)` at or above the threshold, `a < b` (harness record numbers).
    pairs: Vec<(u64, u64, f64)>,
    proposed: u64,
}

fn state_path(data: &Path, m: Modality) -> PathBuf {
    data.join("harness").join(match m {
        Modality::Finger => "dedup-finger.jsonl",
        Modality::Face => "dedup-face.jsonl",
    })
}

/// Finished blocks from the state file; stops at the first line that does not parse (a torn
/// write) and cuts the file there.
fn load_state(path: &Path) -> Result<Vec<BlockDone>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(Vec::new());
    };
    let mut done = Vec::new();
    let mut good = 0;
    for line in text.split_inclusive('\n') {
        match serde_json::from_str::<BlockDone>(line.trim_end()) {
            Ok(b) if line.ends_with('\n') => {
                done.push(b);
                good += line.len();
            }
            _ => break,
        }
    }
    if good < text.len() {
        let f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.set_len(good as u64)?;
        f.sync_all()?;
    }
    Ok(done)
}

/// Connected components of the pairs, as sorted record lists, largest first.
fn groups(pairs: &[(u64, u64, f64)]) -> Vec<Vec<u64>> {
    let mut parent: HashMap<u64, u64> = HashMap::new();
    fn root(parent: &mut HashMap<u64, u64>, x: u64) -> u64 {
        let mut r = x;
        while let Some(&p) = parent.get(&r) {
            if p == r {
                break;
            }
            r = p;
        }
        parent.insert(x, r);
        r
    }
    for &(a, b, _) in pairs {
        parent.entry(a).or_insert(a);
        parent.entry(b).or_insert(b);
        let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
        if ra != rb {
            parent.insert(ra.max(rb), ra.min(rb));
        }
    }
    let keys: Vec<u64> = parent.keys().copied().collect();
    let mut by_root: HashMap<u64, BTreeSet<u64>> = HashMap::new();
    for k in keys {
        let r = root(&mut parent, k);
        by_root.entry(r).or_default().insert(k);
    }
    let mut out: Vec<Vec<u64>> = by_root
        .into_values()
        .map(|s| s.into_iter().collect())
        .collect();
    out.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    out
}

/// Proposed pairs `(a, b)`, `a < b`, for the records of `block`.
fn propose(g: &Gallery, a: &Args, block: std::ops::Range<usize>) -> Result<Vec<(u64, u64)>> {
    let mut pairs = Vec::new();
    match a.modality {
        Modality::Finger => {
            for (i, hits) in g
                .codes
                .neighbours(block.clone(), a.candidates)
                .iter()
                .enumerate()
            {
                let p = (block.start + i) as u64;
                pairs.extend(hits.iter().map(|h| (p, u64::from(h.person))));
            }
        }
        Modality::Face => {
            let queries: Vec<Vec<f32>> = block
                .clone()
                .map(|r| Ok(g.face_of(r as u64)?.unwrap_or_default()))
                .collect::<Result<_>>()?;
            for seg in g.snapshot.segments() {
                let faces = seg.faces()?;
                let rows = Int8Rows::from_matrix(&faces)?;
                let present: Vec<(usize, &[f32])> = queries
                    .iter()
                    .enumerate()
                    .filter(|(_, q)| !q.is_empty())
                    .map(|(i, q)| (i, q.as_slice()))
                    .collect();
                let qs: Vec<&[f32]> = present.iter().map(|(_, q)| *q).collect();
                // One more than asked: the record itself is its own nearest face.
                for ((i, _), hits) in present
                    .iter()
                    .zip(top_k_batch(&rows, &qs, a.candidates + 1)?)
                {
                    let p = (block.start + i) as u64;
                    for h in hits {
                        let Some(q) =
                            Population::record_of(seg.reference_id(faces.row_owner(h.row)))
                        else {
                            continue;
                        };
                        if q != p {
                            pairs.push((p.min(q), p.max(q)));
                        }
                    }
                }
            }
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    Ok(pairs)
}

pub fn run(a: &Args) -> Result<()> {
    let pop = Population::load(&a.data)?;
    if a.modality == Modality::Finger && pop.fingers == 0 {
        bail!("this gallery has no fingers");
    }
    if a.modality == Modality::Face && pop.faces == 0 {
        bail!("this gallery has no faces");
    }
    if a.block == 0 {
        bail!("--block must be at least 1");
    }
    let started = Instant::now();
    let (_store, g) = Gallery::open(&a.data, &pop, a.modality == Modality::Finger)?;
    let face_cal = match a.modality {
        Modality::Face => Some(face_calibration(&a.manifest)?),
        Modality::Finger => None,
    };
    let n = g.records.len();
    let threshold = threshold_for_fpir(1e-3, n as u64);
    let path = state_path(&a.data, a.modality);
    if a.restart {
        let _ = std::fs::remove_file(&path);
    }
    let mut done = load_state(&path).context("reading the dedup state")?;
    let resumed = done.len();
    let finished: BTreeSet<usize> = done.iter().map(|b| b.block).collect();
    let blocks = n.div_ceil(a.block);
    let mut state = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let matcher = Matcher::new();
    let bar = progress::bar(blocks as u64, "blocks");
    bar.inc(finished.len() as u64);
    let todo = (0..blocks).filter(|b| !finished.contains(b));
    for b in todo.take(a.max_blocks.unwrap_or(usize::MAX)) {
        let range = b * a.block..((b + 1) * a.block).min(n);
        let proposed = propose(&g, a, range.clone())?;
        // The block's own records are in most proposals: prepare their fingers once.
        let own: Vec<Vec<(u8, PreparedTemplate)>> = match face_cal {
            Some(_) => Vec::new(),
            None => range
                .clone()
                .into_par_iter()
                .map(|r| g.fingers_of(&matcher, r as u64, |_| true))
                .collect::<Result<_>>()?,
        };
        let prepared = |r: u64| -> Result<std::borrow::Cow<'_, [(u8, PreparedTemplate)]>> {
            Ok(
                match r
                    .checked_sub(range.start as u64)
                    .and_then(|i| own.get(i as usize))
                {
                    Some(p) => std::borrow::Cow::Borrowed(p.as_slice()),
                    None => std::borrow::Cow::Owned(g.fingers_of(&matcher, r, |_| true)?),
                },
            )
        };
        let scored: Vec<(u64, u64, f64)> = proposed
            .par_iter()
            .map_init(
                Scratch::default,
                |scratch, &(x, y)| -> Result<(u64, u64, f64)> {
                    let s = match &face_cal {
                        Some(cal) => match (g.face_of(x)?, g.face_of(y)?) {
                            (Some(fx), Some(fy)) => cal.score(cosine(&fx, &fy)),
                            _ => 0.0,
                        },
                        None => finger_score(&matcher, &prepared(x)?, &prepared(y)?, scratch),
                    };
                    Ok((x, y, s))
                },
            )
            .collect::<Result<_>>()?;
        let line = BlockDone {
            block: b,
            pairs: scored.into_iter().filter(|p| p.2 >= threshold).collect(),
            proposed: proposed.len() as u64,
        };
        let mut text = serde_json::to_string(&line)?;
        text.push('\n');
        state.write_all(text.as_bytes())?;
        state.sync_data()?;
        done.push(line);
        bar.inc(1);
    }
    bar.finish();
    let complete = done.len() == blocks;
    // A pair can be proposed from both of its records' blocks (faces): count it once.
    let mut pairs: Vec<(u64, u64, f64)> =
        done.iter().flat_map(|b| b.pairs.iter().copied()).collect();
    pairs.sort_by_key(|p| (p.0, p.1));
    pairs.dedup_by_key(|p| (p.0, p.1));
    let found = groups(&pairs);
    // Truth: record people+k duplicates person record_person(people+k).
    let truth: Vec<(u64, u64)> = (pop.people..pop.records())
        .map(|r| (pop.record_person(r).0, r))
        .collect();
    let group_of: HashMap<u64, usize> = found
        .iter()
        .enumerate()
        .flat_map(|(i, g)| g.iter().map(move |&r| (r, i)))
        .collect();
    let hit = truth
        .iter()
        .filter(|(x, y)| group_of.get(x).is_some_and(|g| group_of.get(y) == Some(g)))
        .count();
    let false_pairs = pairs
        .iter()
        .filter(|&&(x, y, _)| pop.record_person(x).0 != pop.record_person(y).0)
        .count();
    let groups_path = a.data.join("harness").join("dedup-groups.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&groups_path)?);
    writeln!(out, "group,reference_id")?;
    for (i, g) in found.iter().enumerate() {
        for &r in g {
            writeln!(out, "{i},{}", Population::reference_id(r))?;
        }
    }
    out.flush()?;
    println!(
        "{}",
        json!({
            "records": n,
            "modality": match a.modality { Modality::Finger => "finger", Modality::Face => "face" },
            "complete": complete,
            "blocks_done": done.len(),
            "blocks": blocks,
            "blocks_resumed": resumed,
            "threshold": threshold,
            "pairs_proposed": done.iter().map(|b| b.proposed).sum::<u64>(),
            "pairs_kept": pairs.len(),
            "groups": found.len(),
            "true_duplicates": truth.len(),
            "duplicates_found": hit,
            "false_pairs": false_pairs,
            "elapsed_s": started.elapsed().as_secs_f64(),
            "groups_file": groups_path,
        })
    );
    Ok(())
}
