//! Development loop for the matcher: extracts every FVC2002 B image once (templates cached as
//! native records under `/tmp/abis-fvc-templates`, or `$ABIS_FVC_CACHE`), then runs the FVC
//! protocol on each set and prints EER / FMR100 / FMR1000 / ZeroFMR.
//!
//! ```text
//! cargo run --release -p abis-engine --example fvc_eval                 # the per-set table
//! cargo run --release -p abis-engine --example fvc_eval -- --scores DIR # also write a,b,score
//! cargo run --release -p abis-engine --example fvc_eval -- --calibrate  # refit the score table
//! ```
//!
//! Data: `../shared/data/fingerprint/FVC2002_DB{1,2,3,4}_B` beside the repository (or
//! `$ABIS_SHARED_DATA/fingerprint/...`). DB2 is extracted at 569 ppi, the others at 500.

use std::path::{Path, PathBuf};
use std::time::Instant;

use abis_engine::eval::{self, Metrics, Sample};
use abis_engine::finger::FingerExtractor;
use abis_engine::image::Limits;
use abis_engine::matcher::{Matcher, PreparedTemplate, Scratch};
use abis_engine::model::{Runtime, RuntimeConfig};
use abis_engine::template::{decode_native, encode_native, FingerTemplate};

/// The sets and the resolution each is extracted at.
const SETS: &[(&str, f32)] = &[
    ("FVC2002_DB1_B", 500.0),
    ("FVC2002_DB2_B", 569.0),
    ("FVC2002_DB3_B", 500.0),
    ("FVC2002_DB4_B", 500.0),
];

/// The sets whose cross-set impostor pairs the calibration is fitted on.
const CALIBRATION_SETS: &[&str] = &["FVC2002_DB1_B", "FVC2002_DB2_B", "FVC2002_DB3_B"];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn data_dir() -> PathBuf {
    std::env::var_os("ABIS_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data"))
        .join("fingerprint")
}

fn cache_dir() -> PathBuf {
    std::env::var_os("ABIS_FVC_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/abis-fvc-templates"))
}

struct Set {
    name: String,
    samples: Vec<Sample>,
    templates: Vec<Option<FingerTemplate>>,
    extract_ms: f64,
}

/// Loads a set's templates from the cache, extracting (and caching) the missing ones.
fn load_set(name: &str, ppi: f32, extractor: &mut Option<FingerExtractor>) -> Set {
    let dir = data_dir().join(name);
    let samples = eval::list_samples(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let cache = cache_dir().join(name);
    std::fs::create_dir_all(&cache).expect("create template cache");
    let mut templates = Vec::new();
    let (mut extracted, mut total_ms) = (0usize, 0f64);
    for s in &samples {
        let file = cache.join(format!("{}.abft", s.name));
        let failed = cache.join(format!("{}.failed", s.name));
        if let Ok(bytes) = std::fs::read(&file) {
            templates.push(Some(decode_native(&bytes).expect("cached template")));
            continue;
        }
        if failed.exists() {
            templates.push(None);
            continue;
        }
        let x = extractor.get_or_insert_with(open_extractor);
        let start = Instant::now();
        let out = eval::extract_all(std::slice::from_ref(s), x, Some(ppi));
        total_ms += start.elapsed().as_secs_f64() * 1e3;
        extracted += 1;
        match out.into_iter().next().and_then(|e| e.template) {
            Some(t) => {
                std::fs::write(&file, encode_native(&t).expect("encode")).expect("write cache");
                templates.push(Some(t));
            }
            None => {
                std::fs::write(&failed, b"").expect("write cache");
                templates.push(None);
            }
        }
    }
    Set {
        name: name.to_string(),
        samples,
        templates,
        extract_ms: if extracted > 0 {
            total_ms / extracted as f64
        } else {
            f64::NAN
        },
    }
}

fn open_extractor() -> FingerExtractor {
    let mut config = RuntimeConfig::for_models_dir(&repo_root().join("models"));
    config.intra_threads = 2;
    let runtime = Runtime::open(config).expect("models (run `make setup`)");
    FingerExtractor::new(&runtime, Limits::default()).expect("LEADER model")
}

fn pct(x: f64) -> String {
    format!("{:6.2}", 100.0 * x)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scores_dir = args
        .iter()
        .position(|a| a == "--scores")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let calibrate = args.iter().any(|a| a == "--calibrate");

    let mut extractor = None;
    let sets: Vec<Set> = SETS
        .iter()
        .map(|(name, ppi)| load_set(name, *ppi, &mut extractor))
        .collect();
    let matcher = Matcher::new();

    if let Some(path) = args
        .iter()
        .position(|a| a == "--features")
        .and_then(|i| args.get(i + 1))
    {
        dump_features(&sets, &matcher, Path::new(path));
        return;
    }
    if calibrate {
        calibration(&sets, &matcher);
        return;
    }

    println!("set             minutiae  EER%  FMR100% FMR1000% ZeroFMR%  extract-ms  compare-us");
    let mut raw_by_set = Vec::new();
    for set in &sets {
        let report = eval::compare_all(&set.samples, &set.templates, &matcher).expect("protocol");
        let n: usize = set
            .templates
            .iter()
            .flatten()
            .map(|t| t.minutiae.len())
            .sum();
        let m = &report.metrics;
        println!(
            "{:15} {:8.1} {} {} {} {}  {:10.1} {:10.1}",
            set.name,
            n as f64 / set.templates.len() as f64,
            pct(m.eer),
            pct(m.fmr100),
            pct(m.fmr1000),
            pct(m.zero_fmr),
            set.extract_ms,
            report.mean_compare_us
        );
        if let Some(dir) = &scores_dir {
            std::fs::create_dir_all(dir).expect("scores dir");
            let path = dir.join(format!("{}.csv", set.name));
            let f = std::fs::File::create(&path).expect("scores file");
            eval::write_scores_csv(std::io::BufWriter::new(f), &report.rows).expect("write");
            let curves = [(set.name.as_str(), m.curve.as_slice())];
            eval::draw_det_png(&dir.join(format!("{}.png", set.name)), &curves, 640, 480)
                .expect("DET plot");
        }
        raw_by_set.push(report);
    }
    // Held-out check of the calibration on within-set impostors (never fitted on).
    for (label, pick) in [("real-finger sets DB1-3", true), ("synthetic DB4", false)] {
        let imp: Vec<f64> = raw_by_set
            .iter()
            .zip(&sets)
            .filter(|(_, s)| CALIBRATION_SETS.contains(&s.name.as_str()) == pick)
            .flat_map(|(r, _)| r.rows.iter().filter(|r| !r.genuine).map(|r| r.score))
            .collect();
        for threshold in [10.0, 20.0, 30.0, 40.0] {
            let over = imp.iter().filter(|&&s| s >= threshold).count();
            println!(
                "{label}: within-set impostors scoring >= {threshold}: {over} of {} \
                 (FMR {:.2e}, nominal {:.0e})",
                imp.len(),
                over as f64 / imp.len() as f64,
                10f64.powf(-threshold / 10.0)
            );
        }
    }
    multi_impression(&sets, &matcher);
}

/// Genuine (probe, enrolled impressions) attempts: FNMR at FMR 1e-3 with 1, 2, 3 impressions.
fn multi_impression(sets: &[Set], matcher: &Matcher) {
    let mut scratch = Scratch::default();
    for k in [1usize, 2, 3] {
        let (mut gen, mut imp) = (Vec::new(), Vec::new());
        for set in sets {
            let prepared: Vec<Option<PreparedTemplate>> = set
                .templates
                .iter()
                .map(|t| t.as_ref().and_then(|t| matcher.prepare(t).ok()))
                .collect();
            // Enrol impressions 1..=k of each finger; probe with impressions 4..=8.
            let fingers: Vec<&str> = set.samples.iter().map(|s| s.finger.as_str()).collect();
            let mut distinct = fingers.clone();
            distinct.dedup();
            for f in &distinct {
                let idx: Vec<usize> = (0..fingers.len()).filter(|&i| fingers[i] == *f).collect();
                let enrolled: Vec<PreparedTemplate> = idx
                    .iter()
                    .take(k)
                    .filter_map(|&i| prepared[i].clone())
                    .collect();
                for (p, probe) in prepared.iter().enumerate() {
                    let Some(probe) = probe else { continue };
                    let pos = idx.iter().position(|&i| i == p);
                    if pos.is_some_and(|q| q < 3) {
                        continue;
                    }
                    let s = matcher.match_multi(probe, &enrolled, &mut scratch).score as f64;
                    if pos.is_some() {
                        gen.push(s);
                    } else {
                        imp.push(s);
                    }
                }
            }
        }
        let m = Metrics::compute(&gen, &imp).expect("metrics");
        println!(
            "enrolled impressions {k}: {} genuine, {} impostor attempts: EER {}%, FNMR@FMR1e-3 {}%",
            gen.len(),
            imp.len(),
            pct(m.eer),
            pct(m.fmr1000)
        );
    }
}

/// Fits the raw → FMR table on impostor pairs of images from **different** sets (never a
/// within-set pair, so no reported set's impostors are fitted on) and prints it as Rust.
///
/// Knots: the raw score at which the empirical cross-set FMR is 10^(-k/10) for score k = 5, 10,
/// .., as far as at least 8 impostors remain above; beyond that the log-FMR is extrapolated
/// linearly from the tail (a straight line through the knots between FMR 1e-2 and the last).
fn calibration(sets: &[Set], matcher: &Matcher) {
    // Real fingers only: the synthetic DB4 (SFinGe) prints resemble each other far more than
    // real fingers do (see the matcher docs), so they would not describe real impostors.
    let prepared: Vec<Vec<PreparedTemplate>> = sets
        .iter()
        .filter(|s| CALIBRATION_SETS.contains(&s.name.as_str()))
        .map(|s| {
            s.templates
                .iter()
                .flatten()
                .filter_map(|t| matcher.prepare(t).ok())
                .collect()
        })
        .collect();
    let mut scratch = Scratch::default();
    let mut raws = Vec::new();
    for i in 0..prepared.len() {
        for j in i + 1..prepared.len() {
            for a in &prepared[i] {
                for b in &prepared[j] {
                    raws.push(f64::from(matcher.compare(a, b, &mut scratch).raw));
                }
            }
        }
    }
    raws.sort_by(|a, b| b.total_cmp(a));
    let n = raws.len() as f64;
    println!("cross-set impostor pairs: {}", raws.len());
    // Raw at which FMR = f: the raw of the ceil(f·n)-th highest score.
    let raw_at = |f: f64| raws[((f * n).ceil() as usize).clamp(1, raws.len()) - 1];
    let mut knots: Vec<(f64, f64)> = Vec::new();
    let mut score = 10.0;
    loop {
        let f = 10f64.powf(-score / 10.0);
        if f * n < 8.0 {
            break;
        }
        let r = raw_at(f);
        if r > 0.0 && knots.last().is_none_or(|&(pr, _)| r > pr) {
            knots.push((r, score));
        }
        score += 5.0;
    }
    // Tail: least squares of score on raw over the knots with score >= 20.
    let tail: Vec<&(f64, f64)> = knots.iter().filter(|k| k.1 >= 20.0).collect();
    let (mx, my) = (
        tail.iter().map(|k| k.0).sum::<f64>() / tail.len() as f64,
        tail.iter().map(|k| k.1).sum::<f64>() / tail.len() as f64,
    );
    let slope = tail.iter().map(|k| (k.0 - mx) * (k.1 - my)).sum::<f64>()
        / tail.iter().map(|k| (k.0 - mx).powi(2)).sum::<f64>();
    // Continue from the last measured knot along the tail line, to raw 1.
    let (lr, ls) = *knots.last().expect("knots");
    for r in [lr + (1.0 - lr) * 0.25, lr + (1.0 - lr) * 0.5, 1.0] {
        knots.push((r, ls + slope * (r - lr)));
    }
    println!("tail slope {slope:.1} score per unit raw");
    println!("pub(super) const TABLE: &[(f32, f32)] = &[");
    println!("    (0.0, 0.0),");
    for (r, s) in &knots {
        println!("    ({r:.4}, {s:.2}),");
    }
    println!("];");
}

/// Writes every within-set pair's evidence, and the cross-set impostor pairs, as CSV (the
/// columns the scoring was designed on).
fn dump_features(sets: &[Set], matcher: &Matcher, path: &Path) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("features file"));
    writeln!(
        out,
        "set,a,b,genuine,local,matched,a_inside,b_inside,weight,na,nb"
    )
    .expect("write");
    let prepared: Vec<Vec<Option<PreparedTemplate>>> = sets
        .iter()
        .map(|s| {
            s.templates
                .iter()
                .map(|t| t.as_ref().and_then(|t| matcher.prepare(t).ok()))
                .collect()
        })
        .collect();
    let mut scratch = Scratch::default();
    let mut rows = Vec::new();
    for (si, set) in sets.iter().enumerate() {
        for i in 0..set.samples.len() {
            for j in i + 1..set.samples.len() {
                let g = u8::from(set.samples[i].finger == set.samples[j].finger);
                rows.push((set.name.clone(), (si, i), (si, j), g));
            }
        }
    }
    for si in 0..sets.len() {
        for sj in si + 1..sets.len() {
            for i in 0..sets[si].samples.len() {
                for j in 0..sets[sj].samples.len() {
                    rows.push((format!("X{}{}", si + 1, sj + 1), (si, i), (sj, j), 2));
                }
            }
        }
    }
    for (name, (sa, a), (sb, b), g) in rows {
        let (Some(pa), Some(pb)) = (&prepared[sa][a], &prepared[sb][b]) else {
            continue;
        };
        let e = matcher.explain(pa, pb, &mut scratch);
        writeln!(
            out,
            "{name},{},{},{g},{:.5},{},{},{},{:.4},{},{}",
            sets[sa].samples[a].name,
            sets[sb].samples[b].name,
            e.local,
            e.matched,
            e.a_inside,
            e.b_inside,
            e.weight,
            e.a_minutiae,
            e.b_minutiae
        )
        .expect("write");
    }
}
