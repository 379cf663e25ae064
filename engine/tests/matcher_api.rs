//! Matcher behaviour that needs no model or data: invariance to rotation, translation and
//! resolution, symmetry, determinism, degenerate and malformed templates, the score API.

use std::f32::consts::{PI, TAU};

use abis_engine::matcher::{
    decide, fmr, score_for_fmr, MatchError, Matcher, PreparedTemplate, Scratch,
};
use abis_engine::template::{FingerTemplate, Minutia, MinutiaKind};

/// Small deterministic generator (no external crate, same numbers everywhere).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }
}

fn template(minutiae: Vec<Minutia>, ppi: u16) -> FingerTemplate {
    FingerTemplate {
        width: 400,
        height: 400,
        ppi,
        position: Default::default(),
        impression: Default::default(),
        quality: 80,
        minutiae,
    }
}

/// A finger: minutiae at least 12 px apart in a 260 px disc, directions following a smooth
/// loop-like orientation field (so impostors are not trivially easy).
fn finger(seed: u64) -> Vec<(f32, f32, f32, MinutiaKind)> {
    let mut rng = Lcg(seed);
    let (cx, cy) = (150.0 + 40.0 * rng.next(), 150.0 + 40.0 * rng.next());
    let mut out: Vec<(f32, f32, f32, MinutiaKind)> = Vec::new();
    while out.len() < 40 {
        let (x, y) = (20.0 + 260.0 * rng.next(), 20.0 + 260.0 * rng.next());
        if out.iter().any(|m| (m.0 - x).hypot(m.1 - y) < 12.0) {
            continue;
        }
        let field = 0.5 * (y - cy).atan2(x - cx) + PI / 2.0 + 0.3 * (x / 80.0).sin();
        let flip = if rng.next() < 0.5 { PI } else { 0.0 };
        let kind = if rng.next() < 0.5 {
            MinutiaKind::Ending
        } else {
            MinutiaKind::Bifurcation
        };
        out.push((x, y, (field + flip).rem_euclid(TAU), kind));
    }
    out
}

/// One impression of a finger: turned by `angle` about (150, 150), shifted, jittered, some
/// minutiae missed, coordinates scaled to `ppi`.
fn impression(
    f: &[(f32, f32, f32, MinutiaKind)],
    angle: f32,
    shift: (f32, f32),
    seed: u64,
    ppi: u16,
) -> FingerTemplate {
    let mut rng = Lcg(seed);
    let (c, s) = (angle.cos(), angle.sin());
    let scale = f32::from(ppi) / 500.0;
    let mut minutiae = Vec::new();
    for &(x, y, d, kind) in f {
        if rng.next() < 0.1 {
            continue;
        }
        let (dx, dy) = (x - 150.0, y - 150.0);
        let nx = 150.0 + c * dx - s * dy + shift.0 + 2.0 * (rng.next() - 0.5);
        let ny = 150.0 + s * dx + c * dy + shift.1 + 2.0 * (rng.next() - 0.5);
        if !(0.0..390.0).contains(&nx) || !(0.0..390.0).contains(&ny) {
            continue;
        }
        minutiae.push(Minutia {
            x: (nx * scale).round() as u16,
            y: (ny * scale).round() as u16,
            direction: Minutia::normalized_direction(d + angle + 0.1 * (rng.next() - 0.5)),
            kind,
            quality: 90,
        });
    }
    template(minutiae, ppi)
}

fn prep(m: &Matcher, t: &FingerTemplate) -> PreparedTemplate {
    m.prepare(t).expect("prepare")
}

#[test]
fn genuine_impressions_match_through_rotation_translation_and_resolution() {
    let m = Matcher::new();
    let mut scratch = Scratch::default();
    let f = finger(1);
    let a = prep(&m, &impression(&f, 0.0, (0.0, 0.0), 10, 500));
    for (angle, shift, ppi) in [
        (0.5f32, (20.0f32, -15.0f32), 500u16),
        (-0.7, (-30.0, 10.0), 500),
        (0.3, (10.0, 10.0), 569),
        (0.0, (0.0, 0.0), 1000),
    ] {
        let b = prep(&m, &impression(&f, angle, shift, 11, ppi));
        let g = m.compare(&a, &b, &mut scratch);
        assert!(
            g.score >= 40.0,
            "genuine at {angle} rad, {ppi} ppi scored {g:?}"
        );
    }
    for other in 2..8 {
        let b = prep(&m, &impression(&finger(other), 0.2, (5.0, 5.0), 12, 500));
        let i = m.compare(&a, &b, &mut scratch);
        assert!(i.score < 30.0, "impostor {other} scored {i:?}");
    }
}

#[test]
fn symmetric_and_deterministic() {
    let m = Matcher::new();
    let mut s1 = Scratch::default();
    let mut s2 = Scratch::default();
    let templates: Vec<PreparedTemplate> = (0..6)
        .map(|i| {
            let f = finger(100 + i / 2);
            prep(
                &m,
                &impression(&f, 0.2 * i as f32, (3.0, -4.0), 50 + i, 500),
            )
        })
        .collect();
    for a in &templates {
        for b in &templates {
            let ab = m.compare(a, b, &mut s1);
            let ba = m.compare(b, a, &mut s2);
            assert_eq!(ab, ba, "not symmetric");
            // A fresh matcher and scratch give bit-identical results.
            let again = Matcher::new().compare(a, b, &mut Scratch::default());
            assert_eq!(ab, again, "not deterministic");
        }
    }
    // Preparing twice gives the same prepared form.
    let t = impression(&finger(7), 0.1, (0.0, 0.0), 3, 500);
    assert_eq!(prep(&m, &t), prep(&m, &t));
}

#[test]
fn a_template_matches_itself_best() {
    let m = Matcher::new();
    let t = prep(&m, &impression(&finger(9), 0.0, (0.0, 0.0), 1, 500));
    let c = m.compare(&t, &t, &mut Scratch::default());
    assert!(c.raw > 0.9, "{c:?}");
    assert!(c.score > 100.0, "{c:?}");
}

#[test]
fn degenerate_templates_score_zero_without_panicking() {
    let m = Matcher::new();
    let mut scratch = Scratch::default();
    let normal = prep(&m, &impression(&finger(3), 0.0, (0.0, 0.0), 1, 500));
    let one = Minutia {
        x: 100,
        y: 100,
        direction: 1.0,
        kind: MinutiaKind::Ending,
        quality: 50,
    };
    let cases = [
        template(vec![], 500),
        template(vec![one], 500),
        template(vec![one; 40], 500),
        template(
            vec![
                Minutia {
                    x: 65535,
                    y: 65535,
                    ..one
                };
                3
            ],
            500,
        ),
        template(
            (0..30)
                .map(|i| Minutia {
                    x: 65535 - i,
                    y: 65535,
                    direction: 0.1 * f32::from(i),
                    ..one
                })
                .collect(),
            1,
        ),
        template(
            (0..255u16)
                .map(|i| Minutia {
                    x: (i % 16) * 3,
                    y: (i / 16) * 3,
                    direction: 0.0,
                    kind: MinutiaKind::Other,
                    quality: 0,
                })
                .collect(),
            500,
        ),
    ];
    for (k, t) in cases.iter().enumerate() {
        let p = m.prepare(t).expect("degenerate but valid");
        for (x, y) in [(&p, &normal), (&normal, &p), (&p, &p)] {
            let c = m.compare(x, y, &mut scratch);
            assert!(c.score.is_finite() && c.score >= 0.0, "case {k}: {c:?}");
            if k < 5 && !std::ptr::eq(x, y) {
                assert_eq!(c.score, 0.0, "case {k} should not match: {c:?}");
            }
        }
        let multi = m.match_multi(&p, &[], &mut scratch);
        assert_eq!((multi.score, multi.best), (0.0, None));
    }
}

#[test]
fn invalid_templates_are_refused_with_a_typed_error() {
    let m = Matcher::new();
    let good = Minutia {
        x: 1,
        y: 1,
        direction: 0.5,
        kind: MinutiaKind::Ending,
        quality: 50,
    };
    for t in [
        template(vec![good], 0),
        template(
            vec![Minutia {
                direction: f32::NAN,
                ..good
            }],
            500,
        ),
        template(
            vec![Minutia {
                direction: 7.0,
                ..good
            }],
            500,
        ),
        template(
            vec![Minutia {
                quality: 101,
                ..good
            }],
            500,
        ),
        template(vec![good; 256], 500),
    ] {
        assert!(matches!(m.prepare(&t), Err(MatchError::Template(_))));
        assert!(m.match_templates(&t, &t).is_err());
    }
}

#[test]
fn multi_impression_takes_the_best_impression() {
    let m = Matcher::new();
    let mut scratch = Scratch::default();
    let f = finger(21);
    let probe = prep(&m, &impression(&f, 0.1, (0.0, 0.0), 1, 500));
    let enrolled = vec![
        prep(&m, &impression(&finger(22), 0.0, (0.0, 0.0), 2, 500)),
        prep(&m, &impression(&f, -0.2, (10.0, 0.0), 3, 500)),
    ];
    let single = m.compare(&probe, &enrolled[1], &mut scratch);
    let multi = m.match_multi(&probe, &enrolled, &mut scratch);
    assert_eq!(multi.best, Some(1));
    assert_eq!(multi.best_comparison, single);
    // Fused score: the best one, less 10·log10(k) for the k chances an impostor had.
    assert!((multi.score - (single.score - 10.0 * 2f32.log10()).max(0.0)).abs() < 1e-4);
}

#[test]
fn score_api() {
    assert!((fmr(30.0) - 1e-3).abs() < 1e-12);
    assert_eq!(fmr(0.0), 1.0);
    assert!((score_for_fmr(1e-4) - 40.0).abs() < 1e-4);
    assert!(decide(30.0, 1e-3));
    assert!(!decide(29.9, 1e-3));
    assert!(decide(45.0, 1e-4));
}
