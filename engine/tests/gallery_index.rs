//! Indexed 1:N (finger codes + face cosines pick a short list for the full matcher) against
//! exhaustive 1:N on the same synthetic gallery: every mate the exhaustive search returns is
//! returned with the same score, nothing new appears, and 1:1 still works when the cache keeps
//! only codes.

use std::sync::Arc;

use abis_engine::gallery::{FaceScorer, Gallery, IdentifyOptions, Probe, SearchConfig};
use abis_engine::matcher::Matcher;
use abis_engine::store::{FingerEntry, MemDirectory, Record, Store, StoreConfig};
use abis_engine::synth::{person_seed, FaceModel, MasterFinger, FACE_DIM};
use abis_engine::template::{encode_native, FingerPosition};

const PEOPLE: u64 = 240;
const POSITIONS: [u8; 4] = [1, 2, 6, 7];

fn fingers(person: u64, capture: u64, positions: &[u8]) -> Vec<(u8, Vec<u8>)> {
    positions
        .iter()
        .map(|&p| {
            let t = MasterFinger::generate(person_seed(3, person), p).impression(capture);
            (p, encode_native(&t).unwrap())
        })
        .collect()
}

fn face(model: &FaceModel, person: u64, capture: u64) -> Vec<f32> {
    let mut v = Vec::new();
    model.capture(&model.identity(person_seed(3, person)), capture, &mut v);
    v
}

fn probe(model: &FaceModel, person: u64, positions: &[u8], with_face: bool) -> Probe {
    let fingers = fingers(person, 1, positions)
        .into_iter()
        .map(|(p, bytes)| {
            let t = abis_engine::template::decode_native(&bytes).unwrap();
            (FingerPosition::new(p).unwrap(), t)
        })
        .collect();
    Probe {
        fingers,
        faces: if with_face {
            vec![face(model, person, 1)]
        } else {
            Vec::new()
        },
    }
}

fn store() -> Store {
    let model = FaceModel::new();
    let mut cfg = StoreConfig::new(FACE_DIM);
    cfg.background = false;
    let (store, _) = Store::open_in(Arc::new(MemDirectory::new()), cfg).unwrap();
    for person in 0..PEOPLE {
        let record = Record {
            reference_id: format!("P-{person:04}"),
            fingers: fingers(person, 0, &POSITIONS)
                .into_iter()
                .map(|(p, template)| FingerEntry {
                    position: FingerPosition::new(p).unwrap(),
                    template,
                })
                .collect(),
            faces: vec![face(&model, person, 0)],
            ..Record::default()
        };
        store.insert(record).unwrap();
    }
    store.flush().unwrap();
    store
}

/// A stand-in face calibration: monotone in the cosine, like the real one.
fn scorer() -> Option<FaceScorer> {
    Some(Arc::new(|cos: f32| f64::from((cos - 0.4).max(0.0) * 100.0)))
}

fn ids_and_scores(g: &Gallery, p: &Probe) -> Vec<(String, f64)> {
    let (c, _, searched) = g.identify(p, &IdentifyOptions::default()).unwrap();
    assert_eq!(searched, PEOPLE);
    c.into_iter().map(|c| (c.reference_id, c.score)).collect()
}

#[test]
fn indexed_search_returns_what_exhaustive_search_returns() {
    let model = FaceModel::new();
    let exhaustive = Gallery::new(store(), Matcher::new(), scorer());
    let probes: Vec<(u64, Probe)> = (0..PEOPLE)
        .step_by(12)
        .flat_map(|person| {
            [
                (person, probe(&model, person, &[2, 7], false)),
                (person, probe(&model, person, &[1], true)),
                // Never enrolled.
                (
                    PEOPLE + person,
                    probe(&model, PEOPLE + person, &POSITIONS, true),
                ),
            ]
        })
        .collect();
    let want: Vec<Vec<(String, f64)>> = probes
        .iter()
        .map(|(_, p)| ids_and_scores(&exhaustive, p))
        .collect();
    let mates_found = probes
        .iter()
        .zip(&want)
        .filter(|((person, _), w)| {
            w.first().map(|c| c.0.as_str()) == Some(format!("P-{person:04}").as_str())
        })
        .count();
    assert!(
        mates_found >= 35,
        "exhaustive found {mates_found} of 40 mates"
    );
    let store = exhaustive.into_store();
    let indexed = Gallery::new(store, Matcher::new(), scorer()).with_search(SearchConfig {
        index_above: 0,
        shortlist: 8,
        index_min_fingers: 1,
        retain_prepared: false,
    });
    for ((_, p), w) in probes.iter().zip(&want) {
        let got = ids_and_scores(&indexed, p);
        assert_eq!(&got, w, "indexed and exhaustive results differ");
    }
    // 1:1 against a record whose prepared form is not kept.
    let p = &probes[0].1;
    let v = indexed.verify(p, "P-0000").unwrap();
    assert_eq!(Some(v.score), want[0].first().map(|c| c.1));
}
