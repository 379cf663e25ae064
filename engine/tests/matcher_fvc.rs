//! The matcher on FVC2002 DB1_B..DB3_B (real fingers) from `../shared/data`: genuine scores far
//! above impostor scores, the FVC protocol's figures, the calibration on held-out impostors,
//! multi-impression enrolment, symmetry and determinism on real templates.
//!
//! Templates are read from the cache the `fvc_eval` example writes (`/tmp/abis-fvc-templates`,
//! or `$ABIS_FVC_CACHE`) when it holds a whole set, else extracted here (about a second an
//! image). The calibration was fitted on **cross-set** pairs only (images of two different
//! sets), so every within-set impostor pair below is held out.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use abis_engine::eval::{self, Sample};
use abis_engine::matcher::{decide, Matcher, PreparedTemplate, Scratch};
use abis_engine::template::{decode_native, FingerTemplate};

const SETS: &[(&str, f32)] = &[
    ("FVC2002_DB1_B", 500.0),
    ("FVC2002_DB2_B", 569.0),
    ("FVC2002_DB3_B", 500.0),
];

struct Set {
    samples: Vec<Sample>,
    templates: Vec<FingerTemplate>,
}

fn cached(name: &str, samples: &[Sample]) -> Option<Vec<FingerTemplate>> {
    let dir = std::env::var_os("ABIS_FVC_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/abis-fvc-templates"))
        .join(name);
    samples
        .iter()
        .map(|s| {
            let bytes = std::fs::read(dir.join(format!("{}.abft", s.name))).ok()?;
            decode_native(&bytes).ok()
        })
        .collect()
}

/// DB1..DB3 templates as the extractor makes them, loaded once for all tests; `None` skips
/// (counted, or a failure under `ABIS_REQUIRE_DATA=1`) in every test that asks.
#[track_caller]
fn sets() -> Option<&'static [Set]> {
    static SETS_CELL: OnceLock<Result<Vec<Set>, String>> = OnceLock::new();
    match SETS_CELL.get_or_init(load_sets) {
        Ok(sets) => Some(sets),
        Err(what) => {
            abis_testkit::skip(
                what,
                "run `make setup` and place ../shared beside the repository",
            );
            None
        }
    }
}

fn load_sets() -> Result<Vec<Set>, String> {
    let mut out = Vec::new();
    for (name, ppi) in SETS {
        let dir = abis_testkit::locate_shared(&format!("fingerprint/{name}"))?;
        let samples = eval::list_samples(&dir).map_err(|e| e.to_string())?;
        let templates = match cached(name, &samples) {
            Some(t) => t,
            None => {
                let extractor = common::try_extractor()?;
                eprintln!("extracting {name} (no template cache)");
                eval::extract_all(&samples, extractor, Some(*ppi))
                    .into_iter()
                    .map(|e| e.template.expect("FVC images extract"))
                    .collect()
            }
        };
        out.push(Set { samples, templates });
    }
    Ok(out)
}

fn prepared(m: &Matcher, set: &Set) -> Vec<PreparedTemplate> {
    set.templates
        .iter()
        .map(|t| m.prepare(t).expect("prepare"))
        .collect()
}

/// (genuine, impostor) calibrated scores of a set under the FVC protocol.
fn scores(m: &Matcher, set: &Set) -> (Vec<f64>, Vec<f64>) {
    let p = prepared(m, set);
    let fingers: Vec<&str> = set.samples.iter().map(|s| s.finger.as_str()).collect();
    let pairs = eval::fvc_pairs(&fingers);
    let mut scratch = Scratch::default();
    let mut run = |list: &[(usize, usize)]| -> Vec<f64> {
        list.iter()
            .map(|&(i, j)| f64::from(m.compare(&p[i], &p[j], &mut scratch).score))
            .collect()
    };
    (run(&pairs.genuine), run(&pairs.impostor))
}

#[test]
fn genuine_scores_far_above_impostor_scores() {
    let Some(sets) = sets() else { return };
    let m = Matcher::new();
    for (set, (name, _)) in sets.iter().zip(SETS) {
        let (g, i) = scores(&m, set);
        assert_eq!((g.len(), i.len()), (280, 2880), "FVC pair counts");
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let above = g.iter().filter(|&&s| decide(s as f32, 1e-3)).count();
        eprintln!(
            "{name}: mean genuine {:.1}, mean impostor {:.2}, genuine accepted at FMR 1e-3: {above}/280",
            mean(&g),
            mean(&i)
        );
        assert!(mean(&g) > 60.0 && mean(&i) < 10.0);
        assert!(
            above >= 250,
            "{name}: only {above} of 280 genuine accepted at 1e-3"
        );
    }
}

#[test]
fn fvc_protocol_figures_beat_half_of_nbis() {
    let Some(sets) = sets() else { return };
    let m = Matcher::new();
    // Half of NBIS bozorth3's EER and its FMR1000 on the same sets (evaluation.md).
    let nbis = [(0.043, 0.114), (0.026, 0.061), (0.087, 0.296)];
    for ((set, (name, _)), (eer, fmr1000)) in sets.iter().zip(SETS).zip(nbis) {
        let report = eval::compare_all(
            &set.samples,
            &set.templates.iter().cloned().map(Some).collect::<Vec<_>>(),
            &m,
        )
        .expect("protocol");
        let r = &report.metrics;
        eprintln!(
            "{name}: EER {:.2} %, FMR100 {:.2} %, FMR1000 {:.2} %, ZeroFMR {:.2} %",
            100.0 * r.eer,
            100.0 * r.fmr100,
            100.0 * r.fmr1000,
            100.0 * r.zero_fmr
        );
        assert_eq!(report.rows.len(), 280 + 2880);
        assert!(r.eer <= eer / 2.0, "{name}: EER {}", r.eer);
        assert!(r.fmr1000 < fmr1000, "{name}: FMR1000 {}", r.fmr1000);
    }
}

#[test]
fn calibration_holds_on_held_out_within_set_impostors() {
    let Some(sets) = sets() else { return };
    let m = Matcher::new();
    let impostors: Vec<f64> = sets.iter().flat_map(|s| scores(&m, s).1).collect();
    assert_eq!(impostors.len(), 3 * 2880);
    for (target, low, high) in [(1e-2, 1e-2 / 3.0, 3e-2), (1e-3, 3.3e-4, 3e-3)] {
        let over = impostors
            .iter()
            .filter(|&&s| decide(s as f32, target))
            .count();
        let observed = over as f64 / impostors.len() as f64;
        eprintln!(
            "threshold for FMR {target:e}: {over} of {} held-out impostors above (FMR {observed:.2e})",
            impostors.len()
        );
        assert!(
            (low..=high).contains(&observed),
            "FMR {observed:e} at the {target:e} threshold"
        );
    }
}

#[test]
fn enrolling_more_impressions_lowers_the_fnmr() {
    let Some(sets) = sets() else { return };
    let m = Matcher::new();
    let mut scratch = Scratch::default();
    // Enrol impressions 1..=k of each finger; probe with impressions 4..=8 of the same finger.
    // On these sets a single impression already passes FMR 1e-3 almost always, so the gain shows
    // at stricter operating points (an FMR of 1e-6 or 1e-9 is what 1:N search over millions
    // needs).
    let targets = [1e-3, 1e-6, 1e-9];
    let mut rejected = vec![[0usize; 3]; 3];
    for (ki, k) in [1usize, 2, 3].into_iter().enumerate() {
        let mut total = 0usize;
        for set in sets {
            let p = prepared(&m, set);
            let fingers: Vec<&str> = set.samples.iter().map(|s| s.finger.as_str()).collect();
            let mut distinct = fingers.clone();
            distinct.dedup();
            for f in distinct {
                let idx: Vec<usize> = (0..p.len()).filter(|&i| fingers[i] == f).collect();
                let enrolled: Vec<PreparedTemplate> =
                    idx[..k].iter().map(|&i| p[i].clone()).collect();
                for &probe in &idx[3..] {
                    let s = m.match_multi(&p[probe], &enrolled, &mut scratch).score;
                    total += 1;
                    for (t, target) in targets.iter().enumerate() {
                        rejected[ki][t] += usize::from(!decide(s, *target));
                    }
                }
            }
        }
        eprintln!(
            "{k} enrolled impression(s): genuine probes rejected (of {total}) at FMR 1e-3 / 1e-6 / 1e-9: {:?}",
            rejected[ki]
        );
    }
    for t in 0..targets.len() {
        assert!(
            rejected[1][t] <= rejected[0][t] && rejected[2][t] <= rejected[1][t],
            "{rejected:?}"
        );
    }
    assert!(rejected[2][2] * 2 <= rejected[0][2], "{rejected:?}");
}

#[test]
fn symmetric_and_deterministic_on_real_templates() {
    let Some(sets) = sets() else { return };
    let m = Matcher::new();
    let p = prepared(&m, &sets[0]);
    let mut s1 = Scratch::default();
    let mut s2 = Scratch::default();
    for i in 0..p.len() {
        for j in (0..p.len()).step_by(7) {
            let ab = m.compare(&p[i], &p[j], &mut s1);
            assert_eq!(ab, m.compare(&p[j], &p[i], &mut s2));
            assert_eq!(ab, m.compare(&p[i], &p[j], &mut Scratch::default()));
        }
    }
}

/// `compare_with_pairs` is the score path plus the pairs: the same comparison bit for bit on
/// every genuine pair and a sample of impostors; genuine pairs name real, distinct minutiae that
/// the alignment puts close together, and swapping the sides swaps the pairs.
#[test]
fn mated_pairs_leave_the_score_unchanged_and_are_consistent() {
    let Some(sets) = sets() else { return };
    let m = Matcher::new();
    for set in sets {
        let p = prepared(&m, set);
        let fingers: Vec<&str> = set.samples.iter().map(|s| s.finger.as_str()).collect();
        let pairs = eval::fvc_pairs(&fingers);
        let mut scratch = Scratch::default();
        let impostors = pairs.impostor.iter().step_by(9);
        for &(i, j) in pairs.genuine.iter().chain(impostors) {
            let plain = m.compare(&p[i], &p[j], &mut scratch);
            let mated = m.compare_with_pairs(&p[i], &p[j], &mut scratch);
            assert_eq!(plain.score.to_bits(), mated.comparison.score.to_bits());
            assert_eq!(plain, mated.comparison);
            check_pairs(&set.templates[i], &set.templates[j], &mated);
            let back = m.compare_with_pairs(&p[j], &p[i], &mut scratch);
            let mut swapped: Vec<_> = back.pairs.iter().map(|q| (q.candidate, q.probe)).collect();
            swapped.sort_unstable();
            let forward: Vec<_> = mated.pairs.iter().map(|q| (q.probe, q.candidate)).collect();
            assert_eq!(forward, swapped);
        }
        let (i, j) = pairs.genuine[0];
        let first = m.compare_with_pairs(&p[i], &p[j], &mut scratch);
        assert!(first.pairs.len() >= 8, "{} pairs", first.pairs.len());
    }
}

fn check_pairs(
    a: &FingerTemplate,
    b: &FingerTemplate,
    mated: &abis_engine::matcher::MatedComparison,
) {
    let mut seen_a = std::collections::HashSet::new();
    let mut seen_b = std::collections::HashSet::new();
    for q in &mated.pairs {
        assert!(usize::from(q.probe) < a.minutiae.len());
        assert!(usize::from(q.candidate) < b.minutiae.len());
        assert!(
            seen_a.insert(q.probe) && seen_b.insert(q.candidate),
            "one-to-one"
        );
    }
    let Some(al) = mated.alignment else {
        assert!(mated.pairs.is_empty());
        return;
    };
    let (sa, sb) = (500.0 / f32::from(a.ppi), 500.0 / f32::from(b.ppi));
    let (c, s) = (
        al.rotation_deg.to_radians().cos(),
        al.rotation_deg.to_radians().sin(),
    );
    for q in &mated.pairs {
        let (pa, pb) = (
            &a.minutiae[usize::from(q.probe)],
            &b.minutiae[usize::from(q.candidate)],
        );
        let (x, y) = (f32::from(pa.x) * sa, f32::from(pa.y) * sa);
        let (tx, ty) = (c * x - s * y + al.dx, s * x + c * y + al.dy);
        let d = (tx - f32::from(pb.x) * sb).hypot(ty - f32::from(pb.y) * sb);
        // The greedy pairing's tolerance is 10 px + 8 % of the distance from its anchor.
        assert!(d < 60.0, "mated minutiae {d:.1} px apart once aligned");
    }
}
