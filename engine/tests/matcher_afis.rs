//! The matcher on real LEADER templates of the afis package's samples (`p1_1`/`p1_2` one finger,
//! `p2_1` another), and on those templates after a round trip through the interchange formats
//! (ISO angles quantised to 1.40625°, ANSI to 2°, `.xyt` to whole degrees), which must still
//! match their genuine mate with nearly the same score.

mod common;

use abis_engine::finger::CaptureInfo;
use abis_engine::matcher::{Matcher, Scratch};
use abis_engine::template::{
    decode_ansi, decode_iso, decode_xyt, encode_ansi, encode_iso, encode_xyt, FingerTemplate,
    XytGeometry,
};

/// The three sample templates as the extractor makes them, or `None` (skip).
fn samples() -> Option<[FingerTemplate; 3]> {
    let extractor = common::extractor()?;
    let read = |name: &str| {
        std::fs::read(common::models_cache().join(format!("afis/{name}.png")))
            .expect("afis sample image (run `make setup`)")
    };
    let info = CaptureInfo {
        ppi: Some(500.0),
        ..Default::default()
    };
    let get = |name: &str| {
        extractor
            .extract(&read(name), info)
            .expect("extract")
            .template
    };
    Some([get("p1_1"), get("p1_2"), get("p2_1")])
}

#[test]
fn genuine_sample_pair_outscores_impostor_pairs() {
    let Some([a, b, c]) = samples() else { return };
    let m = Matcher::new();
    let genuine = m.match_templates(&a, &b).expect("match");
    let imp1 = m.match_templates(&a, &c).expect("match");
    let imp2 = m.match_templates(&b, &c).expect("match");
    eprintln!("genuine {genuine:?}\nimpostors {imp1:?} {imp2:?}");
    assert!(genuine.score >= 30.0, "genuine {genuine:?}");
    assert!(imp1.score < 30.0 && imp2.score < 30.0);
    assert!(genuine.score > imp1.score.max(imp2.score) + 20.0);
    // Symmetric on real templates too.
    assert_eq!(genuine, m.match_templates(&b, &a).expect("match"));
}

#[test]
fn interchange_round_trips_still_match_their_mate() {
    let Some([a, b, _]) = samples() else { return };
    let m = Matcher::new();
    let mut scratch = Scratch::default();
    let pb = m.prepare(&b).expect("prepare");
    let reference = m.compare(&m.prepare(&a).expect("prepare"), &pb, &mut scratch);
    let geometry = XytGeometry {
        width: a.width,
        height: a.height,
        ppi: a.ppi,
    };
    let round_trips: Vec<(&str, Result<FingerTemplate, String>)> = vec![
        (
            "ISO 19794-2",
            encode_iso(&a)
                .and_then(|bytes| decode_iso(&bytes))
                .map_err(|e| e.to_string()),
        ),
        (
            "ANSI 378",
            encode_ansi(&a)
                .and_then(|bytes| decode_ansi(&bytes))
                .map_err(|e| e.to_string()),
        ),
        (
            "xyt",
            encode_xyt(&a)
                .and_then(|text| decode_xyt(text.as_bytes(), geometry))
                .map_err(|e| e.to_string()),
        ),
    ];
    for (name, t) in round_trips {
        let t = t.unwrap_or_else(|e| panic!("{name} round trip failed: {e}"));
        assert_eq!(t.minutiae.len(), a.minutiae.len(), "{name} lost minutiae");
        let c = m.compare(&m.prepare(&t).expect("prepare"), &pb, &mut scratch);
        eprintln!("{name}: {:.1} (native {:.1})", c.score, reference.score);
        assert!(c.score >= 30.0, "{name}: {c:?}");
        assert!(
            (c.score - reference.score).abs() <= 0.15 * reference.score,
            "{name}: score {} vs {} before the round trip",
            c.score,
            reference.score
        );
    }
}
