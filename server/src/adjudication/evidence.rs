//! What an examiner needs to see behind a hit: for each candidate and each finger position the
//! two prints' minutiae, the best comparison's score and its mated pairs
//! ([`Matcher::compare_with_pairs`], the score path itself).
//!
//! A position compares the probe's print with each of the candidate's impressions at the same
//! position (unknown positions, code 0, compare with every print of unknown position) and keeps
//! the best; positions only one side has are left out.

use abis_engine::matcher::{Matcher, MatedComparison, PreparedTemplate, Scratch};
use abis_engine::template::{FingerPosition, FingerTemplate, MinutiaKind};
use abis_proto::v1::{CaseMinutia, CasePrint, FingerEvidence, MinutiaPair};

/// The finger evidence of one candidate against the probe's fingers, by position.
pub fn fingers(
    matcher: &Matcher,
    probe: &[(FingerPosition, FingerTemplate)],
    candidate: &[(FingerPosition, FingerTemplate)],
) -> Vec<FingerEvidence> {
    let prepare = |list: &[(FingerPosition, FingerTemplate)]| -> Vec<Option<PreparedTemplate>> {
        list.iter().map(|(_, t)| matcher.prepare(t).ok()).collect()
    };
    let (pp, pc) = (prepare(probe), prepare(candidate));
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    for (i, (position, probe_print)) in probe.iter().enumerate() {
        let Some(p) = &pp[i] else { continue };
        let best = candidate
            .iter()
            .zip(&pc)
            .enumerate()
            .filter(|(_, ((q, _), _))| q == position)
            .filter_map(|(j, ((_, t), prepared))| {
                let m = matcher.compare_with_pairs(p, prepared.as_ref()?, &mut scratch);
                Some((m, t, j))
            })
            .max_by(|a, b| a.0.comparison.score.total_cmp(&b.0.comparison.score));
        if let Some((mated, print, j)) = best {
            let mut e = finger_evidence(*position, probe_print, print, mated);
            (e.probe_print, e.candidate_print) = (i as u32, j as u32);
            out.push(e);
        }
    }
    out
}

fn finger_evidence(
    position: FingerPosition,
    probe: &FingerTemplate,
    candidate: &FingerTemplate,
    mated: MatedComparison,
) -> FingerEvidence {
    let alignment = mated.alignment;
    FingerEvidence {
        position: u32::from(position.code()),
        score: f64::from(mated.comparison.score),
        probe: Some(print(probe)),
        candidate: Some(print(candidate)),
        pairs: mated
            .pairs
            .iter()
            .map(|q| MinutiaPair {
                probe: u32::from(q.probe),
                candidate: u32::from(q.candidate),
            })
            .collect(),
        rotation_deg: alignment.map_or(0.0, |a| a.rotation_deg),
        dx: alignment.map_or(0.0, |a| a.dx),
        dy: alignment.map_or(0.0, |a| a.dy),
        ..Default::default()
    }
}

fn print(t: &FingerTemplate) -> CasePrint {
    CasePrint {
        width: u32::from(t.width),
        height: u32::from(t.height),
        ppi: u32::from(t.ppi),
        minutiae: t
            .minutiae
            .iter()
            .map(|m| CaseMinutia {
                x: u32::from(m.x),
                y: u32::from(m.y),
                direction: m.direction,
                kind: match m.kind {
                    MinutiaKind::Ending => 0,
                    MinutiaKind::Bifurcation => 1,
                    MinutiaKind::Other => 2,
                },
            })
            .collect(),
    }
}
