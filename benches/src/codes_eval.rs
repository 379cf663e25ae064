//! `abis-bench codes-eval`: how well the 1:N index's first stages rank single fingers, on real
//! templates. For every set (a folder of native templates named `<finger>_<impression>.abft`,
//! e.g. the FVC2002 cache of `cargo run --example fvc_eval`), every pair is scored by the finger
//! codes (the first stage of searches with four fingers or more), by the coarse local
//! structures (LSS-R: the stage after the codes, or after the sort in searches with fewer
//! fingers), by the local similarity sort (LSS without relaxation: what ranks every record first
//! in searches with fewer fingers), and by the full matcher. For each penetration rate `p` (the share of impostor pairs
//! a stage lets through) it reports the share of genuine pairs the full matcher accepts at
//! FMR 1e-3 that the stage drops. Ties never help a stage: its threshold is the lowest that lets
//! at most `p` of the impostors through. The raw scores go to `--scores DIR/<set>.csv`
//! (`a,b,code,sort,local,matcher`).

use std::io::Write;
use std::path::PathBuf;

use abis_engine::index::code::FingerCode;
use abis_engine::index::local::{LocalForm, LocalScratch};
use abis_engine::index::local_sort::SortProbe;
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
    /// Write every pair's scores to DIR/<set>.csv.
    #[arg(long)]
    scores: Option<PathBuf>,
}

const PENETRATIONS: [f64; 5] = [0.01, 0.02, 0.05, 0.1, 0.2];

struct Item {
    name: String,
    finger: String,
    prepared: PreparedTemplate,
    form: LocalForm,
    /// The form as stored, and prepared as a probe, for the local similarity sort.
    stored: Vec<u8>,
    sort: SortProbe,
    code: FingerCode,
}

fn load(dir: &PathBuf, m: &Matcher) -> Result<Vec<Item>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|x| x.to_str()) == Some("abft"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        let Some((finger, _)) = name.split_once('_') else {
            continue;
        };
        let t = decode_native(&std::fs::read(&path)?)
            .with_context(|| format!("decoding {}", path.display()))?;
        let form = LocalForm::of(&t);
        let mut stored = Vec::new();
        form.encode(&mut stored);
        out.push(Item {
            sort: SortProbe::of(&form),
            stored,
            finger: finger.to_owned(),
            code: FingerCode::of(&form),
            form,
            prepared: m.prepare(&t)?,
            name,
        });
    }
    if out.is_empty() {
        bail!(
            "no <finger>_<impression>.abft templates in {}",
            dir.display()
        );
    }
    Ok(out)
}

/// Share of `accepted` below the lowest threshold that lets at most `p` of `impostor` (sorted)
/// through.
fn lost_at(impostor: &[f64], accepted: &[f64], p: f64) -> f64 {
    let allowed = (p * impostor.len() as f64).floor() as usize;
    let threshold = if allowed == 0 {
        f64::INFINITY
    } else {
        let k = impostor.len() - allowed;
        let t = impostor[k];
        if impostor[k - 1] >= t {
            // The allowed ones tie with rejected ones: only scores above the tie pass.
            f64::from_bits(t.to_bits() + 1)
        } else {
            t
        }
    };
    accepted.iter().filter(|&&c| c < threshold).count() as f64 / accepted.len() as f64
}

/// One pair of impressions and its score at each stage.
struct Pair {
    a: usize,
    b: usize,
    genuine: bool,
    code: f64,
    sort: f64,
    local: f64,
    matcher: f64,
}

pub fn run(a: &Args) -> Result<()> {
    let m = Matcher::new();
    let accept = f64::from(score_for_fmr(1e-3));
    if let Some(dir) = &a.scores {
        std::fs::create_dir_all(dir)?;
    }
    for dir in &a.sets {
        let items = load(dir, &m)?;
        let rows: Vec<Pair> = (0..items.len())
            .into_par_iter()
            .flat_map_iter(|i| {
                let (mut scratch, mut local) = (Scratch::default(), LocalScratch::default());
                let (items, m) = (&items, &m);
                (i + 1..items.len())
                    .map(move |j| {
                        let (x, y) = (&items[i], &items[j]);
                        Pair {
                            a: i,
                            b: j,
                            genuine: x.finger == y.finger,
                            code: f64::from(x.code.similarity(&y.code)),
                            sort: f64::from(x.sort.similarity(&y.stored)),
                            local: f64::from(x.form.similarity(&y.form, &mut local)),
                            matcher: f64::from(
                                m.compare(&x.prepared, &y.prepared, &mut scratch).score,
                            ),
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let set = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(out) = &a.scores {
            let path = out.join(format!("{set}.csv"));
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
            writeln!(f, "a,b,code,sort,local,matcher")?;
            for r in &rows {
                writeln!(
                    f,
                    "{},{},{:.4},{:.5},{:.5},{:.4}",
                    items[r.a].name, items[r.b].name, r.code, r.sort, r.local, r.matcher
                )?;
            }
            f.flush()?;
        }
        let stage = |pick: fn(&Pair) -> f64| {
            let mut impostor: Vec<f64> = rows.iter().filter(|r| !r.genuine).map(pick).collect();
            impostor.sort_by(f64::total_cmp);
            let accepted: Vec<f64> = rows
                .iter()
                .filter(|r| r.genuine && r.matcher >= accept)
                .map(pick)
                .collect();
            PENETRATIONS
                .iter()
                .map(|&p| json!({"penetration": p, "lost": lost_at(&impostor, &accepted, p)}))
                .collect::<Vec<_>>()
        };
        let accepted = rows
            .iter()
            .filter(|r| r.genuine && r.matcher >= accept)
            .count();
        if accepted == 0 || rows.iter().all(|r| r.genuine) {
            bail!("{}: needs genuine and impostor pairs", dir.display());
        }
        println!(
            "{}",
            json!({
                "set": set,
                "templates": items.len(),
                "genuine_accepted": accepted,
                "impostor_pairs": rows.iter().filter(|r| !r.genuine).count(),
                "codes_lost_at": stage(|r| r.code),
                "sort_lost_at": stage(|r| r.sort),
                "local_lost_at": stage(|r| r.local),
            })
        );
    }
    Ok(())
}
