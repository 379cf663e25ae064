//! `abis-bench codes-eval`: how well the fixed-length finger codes rank single fingers, on real
//! templates. For every set (a folder of native templates named `<finger>_<impression>.abft`,
//! e.g. the FVC2002 cache of `cargo run --example fvc_eval`), all pairs are scored by code
//! similarity and by the full matcher; for each penetration rate `p` (the share of impostor
//! pairs whose code similarity passes), it reports the share of genuine pairs the full matcher
//! accepts at FMR 1e-3 that the code threshold would drop.

use std::path::PathBuf;

use abis_engine::index::finger_code::FingerCoder;
use abis_engine::matcher::{score_for_fmr, Matcher, PreparedTemplate, Scratch};
use abis_engine::template::decode_native;
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// Folders of `<finger>_<impression>.abft` native templates, one set each.
    #[arg(required = true)]
    sets: Vec<PathBuf>,
}

const PENETRATIONS: [f64; 4] = [0.01, 0.05, 0.1, 0.2];

fn load(dir: &PathBuf, m: &Matcher) -> Result<Vec<(String, PreparedTemplate)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = e?.path();
        if path.extension().and_then(|x| x.to_str()) != Some("abft") {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let Some((finger, _)) = stem.split_once('_') else {
            continue;
        };
        let t = decode_native(&std::fs::read(&path)?)
            .with_context(|| format!("decoding {}", path.display()))?;
        out.push((finger.to_owned(), m.prepare(&t)?));
    }
    if out.is_empty() {
        bail!(
            "no <finger>_<impression>.abft templates in {}",
            dir.display()
        );
    }
    Ok(out)
}

pub fn run(a: &Args) -> Result<()> {
    let m = Matcher::new();
    let coder = FingerCoder::new();
    let accept = f64::from(score_for_fmr(1e-3));
    for dir in &a.sets {
        let items = load(dir, &m)?;
        let codes: Vec<_> = items.iter().map(|(_, p)| coder.encode(p)).collect();
        let rows: Vec<(bool, f64, f64)> = (0..items.len())
            .into_par_iter()
            .flat_map_iter(|i| {
                let mut scratch = Scratch::default();
                let (items, codes, m) = (&items, &codes, &m);
                (i + 1..items.len())
                    .map(move |j| {
                        let genuine = items[i].0 == items[j].0;
                        let code = f64::from(codes[i].similarity(&codes[j]));
                        let full = if genuine {
                            f64::from(m.compare(&items[i].1, &items[j].1, &mut scratch).score)
                        } else {
                            0.0
                        };
                        (genuine, code, full)
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut impostor: Vec<f64> = rows.iter().filter(|r| !r.0).map(|r| r.1).collect();
        impostor.sort_by(f64::total_cmp);
        let accepted: Vec<f64> = rows
            .iter()
            .filter(|r| r.0 && r.2 >= accept)
            .map(|r| r.1)
            .collect();
        if impostor.is_empty() || accepted.is_empty() {
            bail!("{}: needs genuine and impostor pairs", dir.display());
        }
        let lost: Vec<_> = PENETRATIONS
            .iter()
            .map(|&p| {
                let t = impostor[((1.0 - p) * (impostor.len() - 1) as f64).round() as usize];
                let lost = accepted.iter().filter(|&&c| c < t).count();
                json!({"penetration": p, "lost": lost as f64 / accepted.len() as f64})
            })
            .collect();
        println!(
            "{}",
            json!({
                "set": dir.file_name().map(|n| n.to_string_lossy().into_owned()),
                "templates": items.len(),
                "genuine_accepted": accepted.len(),
                "impostor_pairs": impostor.len(),
                "mean_code_ones": codes.iter().map(|c| f64::from(c.ones())).sum::<f64>() / codes.len() as f64,
                "lost_at": lost,
            })
        );
    }
    Ok(())
}
