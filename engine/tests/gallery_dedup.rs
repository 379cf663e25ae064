//! N:N deduplication (the self-join over the band tables) against its oracle, the full matcher
//! on every pair of the gallery: the same pairs with the same scores; planted duplicates found
//! and grouped; a job cut into blocks in any way (as when resumed after a crash) reports the
//! same; records deleted after the start leave the report.

use std::sync::Arc;

use abis_engine::gallery::{
    duplicate_groups, DedupScope, DedupSettings, DuplicatePair, Gallery, Probe, SearchConfig,
};
use abis_engine::matcher::Matcher;
use abis_engine::store::{FingerEntry, MemDirectory, Record, StoreConfig};
use abis_engine::synth::{person_seed, MasterFinger, FACE_DIM};
use abis_engine::template::{encode_native, FingerPosition};

const PEOPLE: u64 = 80;
const POSITIONS: [u8; 5] = [1, 2, 3, 6, 7];
/// (person, capture, id) of the records enrolling someone again under another number.
const DUPLICATES: [(u64, u64, &str); 4] = [
    (10, 2, "D-0010"),
    (10, 3, "D-0010b"),
    (55, 2, "D-0055"),
    (79, 2, "D-0079"),
];

fn record(person: u64, capture: u64, id: &str) -> Record {
    Record {
        reference_id: id.to_owned(),
        fingers: POSITIONS
            .iter()
            .map(|&p| {
                let t = MasterFinger::generate(person_seed(9, person), p).impression(capture);
                FingerEntry {
                    position: FingerPosition::new(p).unwrap(),
                    template: encode_native(&t).unwrap(),
                }
            })
            .collect(),
        ..Record::default()
    }
}

fn records() -> Vec<Record> {
    (0..PEOPLE)
        .map(|p| record(p, 0, &format!("P-{p:04}")))
        .chain(DUPLICATES.iter().map(|&(p, c, id)| record(p, c, id)))
        .collect()
}

fn gallery(dir: &MemDirectory) -> Gallery {
    let mut cfg = StoreConfig::new(FACE_DIM);
    cfg.background = false;
    Gallery::open_in(Arc::new(dir.clone()), cfg, Matcher::new(), None)
        .unwrap()
        .0
        .with_search(SearchConfig::default())
}

fn whole_job(
    g: &Gallery,
    scope: &DedupScope,
    s: &DedupSettings,
    block: usize,
) -> Vec<DuplicatePair> {
    (0..scope.len())
        .step_by(block)
        .flat_map(|start| {
            g.dedup_block(scope, start..(start + block).min(scope.len()), s)
                .unwrap()
        })
        .collect()
}

#[test]
fn the_self_join_finds_what_matching_every_pair_finds() {
    let dir = MemDirectory::new();
    let g = gallery(&dir);
    let all = records();
    // Most records in a segment (with band tables), the last few still in the log.
    for r in &all[..70] {
        g.insert(r.clone()).unwrap();
    }
    g.store().flush().unwrap();
    for r in &all[70..] {
        g.insert(r.clone()).unwrap();
    }
    let scope = g.dedup_scope();
    assert_eq!(scope.len(), all.len());
    let settings = DedupSettings {
        // A low threshold, so that the oracle comparison also covers weak pairs.
        pair_threshold: 40.0,
        ..DedupSettings::for_scope(scope.len() as u64, 1.0)
    };

    // Oracle: the full matcher on every pair.
    let mut oracle = Vec::new();
    for (i, a) in all.iter().enumerate() {
        let probe = Probe::from_record(a).unwrap();
        for b in &all[i + 1..] {
            let v = g.verify(&probe, &b.reference_id).unwrap();
            if v.score >= settings.pair_threshold {
                let (x, y) = if a.reference_id < b.reference_id {
                    (&a.reference_id, &b.reference_id)
                } else {
                    (&b.reference_id, &a.reference_id)
                };
                oracle.push((x.clone(), y.clone(), v.score));
            }
        }
    }
    oracle.sort_by(|p, q| (&p.0, &p.1).cmp(&(&q.0, &q.1)));
    let found = whole_job(&g, &scope, &settings, 1000);
    let got: Vec<(String, String, f64)> = found
        .iter()
        .map(|p| (p.a.clone(), p.b.clone(), p.score))
        .collect();
    assert_eq!(got, oracle, "self-join and every-pair matching differ");

    // The planted duplicates, in three groups (person 10 is enrolled three times).
    let ids: Vec<(&str, &str)> = found.iter().map(|p| (p.a.as_str(), p.b.as_str())).collect();
    let groups: Vec<Vec<String>> = duplicate_groups(&ids).into_iter().map(|g| g.0).collect();
    for want in [
        vec!["D-0010", "D-0010b", "P-0010"],
        vec!["D-0055", "P-0055"],
        vec!["D-0079", "P-0079"],
    ] {
        assert!(
            groups.contains(&want.iter().map(|s| s.to_string()).collect()),
            "group {want:?} missing from {groups:?}"
        );
    }

    // Blocks of any size give the same report (a resumed job redoes whole blocks).
    for block in [1, 7, 50] {
        assert_eq!(
            whole_job(&g, &scope, &settings, block),
            found,
            "block {block}"
        );
    }

    // A record deleted after the start leaves the report; nothing else changes.
    g.delete("D-0055").unwrap();
    let after = whole_job(&g, &scope, &settings, 32);
    let want: Vec<DuplicatePair> = found
        .iter()
        .filter(|p| p.a != "D-0055" && p.b != "D-0055")
        .cloned()
        .collect();
    assert_eq!(after, want);
}
