//! `abis-bench dedup`: gallery-wide duplicate finding (N:N), as when cleaning a legacy database.
//!
//! Fingers, by default: the engine's self-join over the band tables, exactly the service's job
//! (`Gallery::dedup_block`: votes, code floor, full matcher, pair threshold for one expected false
//! pair over the job). With `--search-each`, or for faces, the former way:
//! records are taken in blocks. Every record of a block is searched against the whole gallery
//! with its own fingers (or face), itself excluded, through the engine's batched 1:N search
//! (`Gallery::identify_batch`: one pass over the index per block); the candidates it returns —
//! at or above the 1:N threshold for FPIR 1e-3 over the gallery's size — are the pairs kept.
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
use abis_engine::gallery::{DedupScope, DedupSettings, Gallery, IdentifyOptions, Probe};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::gallery::{open, SearchArgs};
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
    /// Most candidates kept per record searched.
    #[arg(long, default_value_t = 5)]
    candidates: usize,
    #[command(flatten)]
    search: SearchArgs,
    /// Records per block (the unit of progress and of resumption).
    #[arg(long, default_value_t = 512)]
    block: usize,
    /// Forget earlier progress and start over.
    #[arg(long)]
    restart: bool,
    /// Stop after this many blocks (to try resumption).
    #[arg(long)]
    max_blocks: Option<usize>,
    /// Fingers: the engine's self-join over the band tables (the service's job), or one 1:N
    /// search per record (`--search`, the former harness).
    #[arg(long)]
    search_each: bool,
    /// Expected false pairs over the whole self-join (sets its pair threshold).
    #[arg(long, default_value_t = 1.0)]
    expected_false_pairs: f64,
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
    /// Records searched in the block.
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

/// Two harness record numbers `a < b` and their score.
type ScoredPair = (u64, u64, f64);

/// Pairs `(a, b, score)`, `a < b`, that the engine's batched 1:N search finds for the records
/// of `block` (each record searched with its own data, itself excluded, `modality` only).
fn search_block(
    g: &Gallery,
    a: &Args,
    block: std::ops::Range<u64>,
) -> Result<(Vec<ScoredPair>, u64)> {
    let items: Vec<(Probe, IdentifyOptions)> = block
        .clone()
        .into_par_iter()
        .map(|r| -> Result<(Probe, IdentifyOptions)> {
            let id = Population::reference_id(r);
            let record = g
                .store()
                .get(&id)?
                .with_context(|| format!("record {r} missing from the gallery"))?;
            let mut probe = Probe::from_record(&record)?;
            match a.modality {
                Modality::Finger => probe.faces.clear(),
                Modality::Face => probe.fingers.clear(),
            }
            let options = IdentifyOptions {
                max_results: a.candidates,
                exclude: Some(id),
                ..IdentifyOptions::default()
            };
            Ok((probe, options))
        })
        .collect::<Result<_>>()?;
    let mut pairs = Vec::new();
    let mut searched = 0;
    for (r, result) in block.zip(g.identify_batch(&items)) {
        searched += 1;
        for c in result?.candidates {
            if let Some(q) = Population::record_of(&c.reference_id) {
                pairs.push((r.min(q), r.max(q), c.score));
            }
        }
    }
    Ok((pairs, searched))
}

/// Pairs of the engine's self-join for the records `block` of the scope (harness record
/// numbers), as the service's job finds them.
fn join_block(
    g: &Gallery,
    scope: &DedupScope,
    settings: &DedupSettings,
    block: std::ops::Range<u64>,
) -> Result<(Vec<ScoredPair>, u64)> {
    let range = block.start as usize..block.end as usize;
    let pairs = g
        .dedup_block(scope, range.clone(), settings)?
        .into_iter()
        .filter_map(|p| {
            let (x, y) = (Population::record_of(&p.a)?, Population::record_of(&p.b)?);
            Some((x.min(y), x.max(y), p.score))
        })
        .collect();
    Ok((pairs, range.len() as u64))
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
    let g = open(
        &a.data,
        &a.manifest,
        a.search.config(),
        a.search.store_config()?,
    )?;
    let n = pop.records();
    let join = a.modality == Modality::Finger && !a.search_each;
    let settings = DedupSettings::for_scope(n, a.expected_false_pairs);
    let scope = if join { Some(g.dedup_scope()) } else { None };
    let threshold = if join {
        settings.pair_threshold
    } else {
        threshold_for_fpir(1e-3, n)
    };
    let path = state_path(&a.data, a.modality);
    if a.restart {
        let _ = std::fs::remove_file(&path);
    }
    let mut done = load_state(&path).context("reading the dedup state")?;
    let resumed = done.len();
    let finished: BTreeSet<usize> = done.iter().map(|b| b.block).collect();
    let blocks = (n as usize).div_ceil(a.block);
    let mut state = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let bar = progress::bar(blocks as u64, "blocks");
    bar.inc(finished.len() as u64);
    let todo = (0..blocks).filter(|b| !finished.contains(b));
    for b in todo.take(a.max_blocks.unwrap_or(usize::MAX)) {
        let range = (b * a.block) as u64..(((b + 1) * a.block) as u64).min(n);
        let (pairs, searched) = match &scope {
            Some(scope) => join_block(&g, scope, &settings, range)?,
            None => search_block(&g, a, range)?,
        };
        let line = BlockDone {
            block: b,
            pairs,
            proposed: searched,
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
    // A pair is found from both of its records: count it once.
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
            "exhaustive": a.search.exhaustive,
            "method": if join { "self-join" } else { "search each record" },
            "complete": complete,
            "blocks_done": done.len(),
            "blocks": blocks,
            "blocks_resumed": resumed,
            "threshold": threshold,
            "records_searched": done.iter().map(|b| b.proposed).sum::<u64>(),
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
