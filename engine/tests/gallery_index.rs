//! Indexed 1:N (finger codes + face cosines pick a short list for the full matcher) against
//! exhaustive 1:N on the same synthetic gallery: every mate the exhaustive search returns is
//! returned with the same score, nothing new appears, and 1:1 still works when the cache keeps
//! only codes.

use std::sync::Arc;

use abis_engine::gallery::{CodeStage, FaceScorer, Gallery, IdentifyOptions, Probe, SearchConfig};
use abis_engine::matcher::Matcher;
use abis_engine::store::encryption::{EncryptedDirectory, Keyring};
use abis_engine::store::{Directory, FingerEntry, MemDirectory, Record, StoreConfig};
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

/// A gallery of `PEOPLE` synthetic people in `dir`, flushed into a segment with its index.
fn gallery(dir: &MemDirectory, search: SearchConfig) -> Gallery {
    let mut cfg = StoreConfig::new(FACE_DIM);
    cfg.background = false;
    Gallery::open_in(Arc::new(dir.clone()), cfg, Matcher::new(), scorer())
        .unwrap()
        .0
        .with_search(search)
}

/// A person's enrolment record: capture 0 of every finger and the face.
fn record(model: &FaceModel, person: u64) -> Record {
    record_of(model, person, &POSITIONS)
}

/// Capture 0 of the fingers at `positions` and of the face.
fn record_of(model: &FaceModel, person: u64, positions: &[u8]) -> Record {
    Record {
        reference_id: format!("P-{person:04}"),
        fingers: fingers(person, 0, positions)
            .into_iter()
            .map(|(p, template)| FingerEntry {
                position: FingerPosition::new(p).unwrap(),
                template,
            })
            .collect(),
        faces: vec![face(model, person, 0)],
        ..Record::default()
    }
}

fn enrol(g: &Gallery) {
    let model = FaceModel::new();
    for person in 0..PEOPLE {
        g.insert(record(&model, person)).unwrap();
    }
    g.store().flush().unwrap();
}

/// A stand-in face calibration: monotone in the cosine, like the real one.
fn scorer() -> Option<FaceScorer> {
    Some(Arc::new(|cos: f32| f64::from((cos - 0.4).max(0.0) * 100.0)))
}

fn ids_and_scores(g: &Gallery, p: &Probe) -> Vec<(String, f64)> {
    let found = g.identify(p, &IdentifyOptions::default()).unwrap();
    assert_eq!(found.searched, PEOPLE);
    found
        .candidates
        .into_iter()
        .map(|c| (c.reference_id, c.score))
        .collect()
}

#[test]
fn indexed_search_returns_what_exhaustive_search_returns() {
    let model = FaceModel::new();
    let dir = MemDirectory::new();
    let exhaustive = gallery(&dir, SearchConfig::default());
    enrol(&exhaustive);
    let probes: Vec<(u64, Probe)> = (0..PEOPLE)
        .step_by(12)
        .flat_map(|person| {
            [
                (person, probe(&model, person, &[2, 7], false)),
                (person, probe(&model, person, &[1], true)),
                // One finger alone: the local similarity sort keeps 16 of the 240 people.
                (person, probe(&model, person, &[6], false)),
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
        mates_found >= 52,
        "exhaustive found {mates_found} of 60 mates"
    );
    drop(exhaustive);
    // The same files, opened again: the segment's index is read from disk; the first stage
    // through the band tables, then through the scan of every code (their oracle).
    for code_stage in [tables(), CodeStage::Scan] {
        let indexed = gallery(
            &dir,
            SearchConfig {
                code_stage,
                ..indexed_config()
            },
        );
        assert!(indexed.index_ready());
        for ((_, p), w) in probes.iter().zip(&want) {
            let got = ids_and_scores(&indexed, p);
            assert_eq!(
                &got, w,
                "{code_stage:?}: indexed and exhaustive results differ"
            );
        }
    }
    let indexed = gallery(&dir, indexed_config());
    // 1:1 against a record whose prepared form is not kept.
    let p = &probes[0].1;
    let v = indexed.verify(p, "P-0000").unwrap();
    assert_eq!(Some(v.score), want[0].first().map(|c| c.1));
}

/// An encrypted gallery reads its templates and local forms in authenticated blocks through a
/// small cache, and answers exactly as the same gallery in plaintext; a flipped byte in a block
/// of a sealed segment is found by the full check and named.
#[test]
fn an_encrypted_gallery_read_in_blocks_answers_as_the_plaintext_one() {
    let model = FaceModel::new();
    let plain_dir = MemDirectory::new();
    let sealed_mem = MemDirectory::new();
    let keys = Keyring::from_keys(&[[0x5e; 32]]).unwrap();
    let sealed_dir = |cache| {
        Arc::new(EncryptedDirectory::with_cache(
            Arc::new(sealed_mem.clone()),
            keys.clone(),
            cache,
        ))
    };
    let open = |dir: Arc<dyn Directory>| {
        let mut cfg = StoreConfig::new(FACE_DIM);
        cfg.background = false;
        Gallery::open_in(dir, cfg, Matcher::new(), scorer())
            .unwrap()
            .0
            .with_search(indexed_config())
    };
    enrol(&open(Arc::new(plain_dir.clone())));
    enrol(&open(sealed_dir(1 << 20)));
    let probes: Vec<Probe> = (0..PEOPLE)
        .step_by(10)
        .flat_map(|person| {
            [
                probe(&model, person, &POSITIONS, true),
                probe(&model, person, &[1, 6], false),
                probe(&model, PEOPLE + person, &POSITIONS, true),
            ]
        })
        .collect();
    let plain = open(Arc::new(plain_dir.clone()));
    let want = search_all(&plain, &probes);
    assert!(want.iter().filter(|w| !w.is_empty()).count() >= 40);
    // A cache of four blocks: most reads decrypt again, and still answer the same.
    let dir = sealed_dir(64 << 10);
    let sealed = open(dir.clone());
    assert!(sealed.index_ready());
    assert_eq!(search_all(&sealed, &probes), want);
    let (hits, misses, held) = dir.cache_stats();
    assert!(misses > 0, "no block was read on demand");
    assert!(held <= 64 << 10, "the cache holds {held} bytes");
    assert!(hits > 0, "no block was read twice");
    let v = sealed.verify(&probes[0], "P-0000").unwrap();
    assert_eq!(Some(v.score), want[0].first().map(|c| c.1));
    drop(sealed);

    // A byte of the sealed segment's body (the templates lie there): the full check names it.
    let seg = "seg-0000000001.seg";
    let len = sealed_mem.file_len(seg).unwrap();
    sealed_mem.corrupt_byte(seg, len / 2, 0x40).unwrap();
    let sealed = open(sealed_dir(1 << 20));
    let err = sealed.store().verify().unwrap_err().to_string();
    assert!(err.contains(seg), "{err}");
}

/// `Gallery::rekey` seals the index files with the segments, so an encrypted gallery made from a
/// plaintext one opens its index as it is (no rebuild) and answers the same.
#[test]
fn rekeying_a_gallery_seals_its_index_files_too() {
    use abis_engine::store::encryption::{is_sealed, RekeyTarget};
    let model = FaceModel::new();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("gallery");
    let open = |keys: Option<Keyring>| {
        let mut cfg = StoreConfig::new(FACE_DIM);
        cfg.background = false;
        cfg.encryption = keys;
        Gallery::open(&path, cfg, Matcher::new(), scorer())
            .unwrap()
            .0
            .with_search(indexed_config())
    };
    let probes: Vec<Probe> = (0..PEOPLE)
        .step_by(24)
        .map(|person| probe(&model, person, &POSITIONS, true))
        .collect();
    let want = {
        let plain = open(None);
        enrol(&plain);
        search_all(&plain, &probes)
    };
    let keys = Keyring::from_keys(&[[0x6b; 32]]).unwrap();
    let report = Gallery::rekey(&path, &keys, RekeyTarget::ActiveKey).unwrap();
    let index_files = |p: &std::path::Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|f| {
                f.extension()
                    .is_some_and(|e| e.to_str().unwrap().starts_with('f'))
            })
            .collect()
    };
    let files = index_files(&path);
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        assert!(
            is_sealed(&std::fs::read(f).unwrap()),
            "{} left in clear",
            f.display()
        );
    }
    assert!(report.rewritten >= 5, "{report:?}");
    let modified = |f: &std::path::PathBuf| std::fs::metadata(f).unwrap().modified().unwrap();
    let before: Vec<_> = files.iter().map(modified).collect();
    let sealed = open(Some(keys));
    assert!(sealed.index_ready());
    assert_eq!(search_all(&sealed, &probes), want);
    // Opened as they were: not rebuilt.
    assert_eq!(files.iter().map(modified).collect::<Vec<_>>(), before);
}

fn search_all(g: &Gallery, probes: &[Probe]) -> Vec<Vec<(String, f64)>> {
    probes.iter().map(|p| ids_and_scores(g, p)).collect()
}

fn indexed_config() -> SearchConfig {
    SearchConfig {
        index_above: 0,
        code_shortlist: 24,
        shortlist: 8,
        // The same lists for every probe: the answers are compared with exhaustive ones.
        ten_print_min_fingers: usize::MAX,
        ten_print_code_shortlist: 24,
        ten_print_shortlist: 8,
        index_min_fingers: 2,
        // Below the gallery's size: one-finger probes go through the sort's cut.
        local_sort_keep: 16,
        code_stage: tables(),
        retain_prepared: false,
    }
}

/// The band tables for every probe they may serve (four fingers or more; by default only
/// ten-prints use them), so that these tests compare them with the exhaustive answers.
fn tables() -> CodeStage {
    CodeStage::Tables {
        band_candidates: 8192,
        min_fingers: 4,
    }
}

/// A batch gives each probe exactly what it gets alone; records still in the log are found;
/// a damaged or missing index file is refused (no search runs on part of the gallery), then
/// rebuilt from the templates with the same results; a compaction carries the index over.
#[test]
fn batches_recent_records_damage_and_compaction_keep_the_answers() {
    let model = FaceModel::new();
    let dir = MemDirectory::new();
    let g = gallery(&dir, indexed_config());
    enrol(&g);
    let probes: Vec<Probe> = (0..PEOPLE)
        .step_by(20)
        .map(|p| probe(&model, p, &[1, 2, 6, 7], p % 40 == 0))
        .chain([probe(&model, PEOPLE + 5, &[2, 7], true)])
        .collect();
    let alone = search_all(&g, &probes);
    let batch: Vec<(Probe, IdentifyOptions)> = probes
        .iter()
        .map(|p| (p.clone(), IdentifyOptions::default()))
        .collect();
    let together: Vec<Vec<(String, f64)>> = g
        .identify_batch(&batch)
        .into_iter()
        .map(|r| {
            r.unwrap()
                .candidates
                .into_iter()
                .map(|c| (c.reference_id, c.score))
                .collect()
        })
        .collect();
    assert_eq!(together, alone, "batch and single searches differ");
    for (k, want) in alone.iter().enumerate().take(PEOPLE.div_ceil(20) as usize) {
        assert_eq!(
            want.first().map(|c| c.0.clone()),
            Some(format!("P-{:04}", k * 20)),
            "mate first"
        );
    }

    // Ten more people, left in the log (not flushed), then a restart replays them.
    drop(g);
    let extra = gallery(&dir, indexed_config());
    for person in PEOPLE..PEOPLE + 10 {
        extra.insert(record(&model, person)).unwrap();
    }
    let recent_probe = probe(&model, PEOPLE + 5, &[2, 7], true);
    let found = ids_and_scores_n(&extra, &recent_probe, PEOPLE + 10);
    assert_eq!(found.first().map(|c| c.0.as_str()), Some("P-0245"));
    drop(extra);
    let reopened = gallery(&dir, indexed_config());
    assert_eq!(
        ids_and_scores_n(&reopened, &recent_probe, PEOPLE + 10),
        found,
        "after replay"
    );
    drop(reopened);

    // Damage: a flipped byte in the codes file of segment 1.
    let codes = "seg-0000000001.fcodes";
    dir.corrupt_byte(codes, 100, 0x01).unwrap();
    let damaged = gallery(&dir, indexed_config());
    assert!(!damaged.index_ready());
    assert!(matches!(
        damaged.identify(&probes[0], &IdentifyOptions::default()),
        Err(abis_engine::gallery::GalleryError::IndexIncomplete)
    ));
    // The band tables cannot be derived from damaged codes: everything is rebuilt.
    let rebuilt = damaged.store().rebuild_companions().unwrap();
    assert_eq!((rebuilt.whole, rebuilt.derived), (1, 0));
    damaged.warm().unwrap();
    assert!(damaged.index_ready());
    assert_eq!(
        ids_and_scores_n(&damaged, &recent_probe, PEOPLE + 10),
        found,
        "after the rebuild"
    );
    // A flipped byte in the band tables alike.
    drop(damaged);
    dir.corrupt_byte("seg-0000000001.fbands", 200, 0x04)
        .unwrap();
    let damaged = gallery(&dir, indexed_config());
    assert!(!damaged.index_ready());
    // Only the band tables are rewritten, from the sound codes file.
    let codes_before = dir.read(codes).unwrap();
    let rebuilt = damaged.store().rebuild_companions().unwrap();
    assert_eq!((rebuilt.whole, rebuilt.derived), (0, 1));
    assert!(damaged.index_ready());
    assert_eq!(dir.read(codes).unwrap(), codes_before);
    assert_eq!(
        ids_and_scores_n(&damaged, &recent_probe, PEOPLE + 10),
        found,
        "after the band tables' rebuild"
    );
    // A missing file is rebuilt alike, at the next open.
    drop(damaged);
    dir.remove("seg-0000000001.fforms").unwrap();
    let g = gallery(&dir, indexed_config());
    assert!(!g.index_ready());
    let rebuilt = g.store().rebuild_companions().unwrap();
    assert_eq!((rebuilt.whole, rebuilt.derived), (1, 0));
    g.warm().unwrap();
    // Flush the recent ten into a second segment, then compact both into one: the merged
    // index is copied from the two, and every answer stays.
    g.store().flush().unwrap();
    g.store().compact().unwrap();
    assert_eq!(g.store().stats().segments, 1);
    assert!(g.index_ready());
    assert_eq!(
        ids_and_scores_n(&g, &recent_probe, PEOPLE + 10),
        found,
        "after compaction"
    );
    for (p, want) in probes.iter().zip(&alone).take(5) {
        let got = ids_and_scores_n(&g, p, PEOPLE + 10);
        assert_eq!(got.first(), want.first());
    }
}

fn ids_and_scores_n(g: &Gallery, p: &Probe, n: u64) -> Vec<(String, f64)> {
    let found = g.identify(p, &IdentifyOptions::default()).unwrap();
    assert_eq!(found.searched, n);
    found
        .candidates
        .into_iter()
        .map(|c| (c.reference_id, c.score))
        .collect()
}

/// Ten-print probes search with the short ten-print lists (8 code places, 2 for the full
/// matcher) and still get exactly the exhaustive search's answers; a four-finger probe keeps
/// the longer lists.
#[test]
fn ten_print_lists_keep_the_exhaustive_answers() {
    let model = FaceModel::new();
    let dir = MemDirectory::new();
    let exhaustive = gallery(&dir, SearchConfig::default());
    let all: Vec<u8> = (1..=10).collect();
    for person in 0..PEOPLE {
        exhaustive.insert(record_of(&model, person, &all)).unwrap();
    }
    exhaustive.store().flush().unwrap();
    let probes: Vec<Probe> = (0..PEOPLE)
        .step_by(8)
        .flat_map(|person| {
            [
                probe(&model, person, &all, false),
                probe(&model, person, &all[..8], false),
                probe(&model, person, &POSITIONS, false),
                probe(&model, PEOPLE + person, &all, false),
            ]
        })
        .collect();
    let want = search_all(&exhaustive, &probes);
    drop(exhaustive);
    let short = SearchConfig {
        ten_print_min_fingers: 8,
        ten_print_code_shortlist: 8,
        ten_print_shortlist: 2,
        ..indexed_config()
    };
    let indexed = gallery(&dir, short);
    assert_eq!(search_all(&indexed, &probes), want);
    let mates = want.iter().filter(|w| !w.is_empty()).count();
    assert!(
        mates >= probes.len() * 3 / 4 - 2,
        "{mates} probes found their mate"
    );
}
