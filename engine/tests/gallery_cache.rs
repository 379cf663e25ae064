//! The gallery's cache of prepared records: warming it changes no result, and an id that is
//! deleted and enrolled again is searched with its new content while searches run. (The one
//! interleaving that could cache the old content is closed by the deletion count in
//! `Gallery`; this test runs searches across the replacements but cannot force that timing.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use abis_engine::gallery::{Gallery, IdentifyOptions, Probe};
use abis_engine::matcher::Matcher;
use abis_engine::store::synth::synthetic_record;
use abis_engine::store::{MemDirectory, Record, StoreConfig};

fn rec(id: &str, seed: u64) -> Record {
    synthetic_record(id, seed, 2, 0, 16)
}

fn gallery(n: u64) -> Gallery {
    let mut cfg = StoreConfig::new(16);
    cfg.background = false;
    let (g, _) =
        Gallery::open_in(Arc::new(MemDirectory::new()), cfg, Matcher::new(), None).unwrap();
    for k in 0..n {
        g.insert(rec(&format!("P-{k}"), k)).unwrap();
    }
    g.store().flush().unwrap();
    g
}

fn first(g: &Gallery, probe: &Probe) -> Option<String> {
    let found = g.identify(probe, &IdentifyOptions::default()).unwrap();
    found.candidates.first().map(|c| c.reference_id.clone())
}

#[test]
fn gallery_warm_prepares_every_record_and_changes_no_result() {
    let g = gallery(40);
    let probe = Probe::from_record(&rec("P-7", 7)).unwrap();
    let cold = g.identify(&probe, &IdentifyOptions::default()).unwrap();
    assert_eq!(g.warm().unwrap(), 40);
    let warm = g.identify(&probe, &IdentifyOptions::default()).unwrap();
    assert_eq!(cold.candidates.len(), warm.candidates.len());
    assert_eq!(cold.candidates[0].reference_id, "P-7");
    assert_eq!(cold.candidates[0].score, warm.candidates[0].score);
}

#[test]
fn gallery_reenrolled_id_is_searched_with_its_new_content() {
    let g = Arc::new(gallery(30));
    let old = Probe::from_record(&rec("P-3", 3)).unwrap();
    let new = Probe::from_record(&rec("P-3", 1_000_003)).unwrap();
    assert_eq!(first(&g, &old).as_deref(), Some("P-3"));
    // Searches keep preparing (and caching) records while the id is replaced.
    let stop = Arc::new(AtomicBool::new(false));
    let searcher = {
        let (g, stop, old) = (Arc::clone(&g), Arc::clone(&stop), old.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = g.identify(&old, &IdentifyOptions::default());
            }
        })
    };
    for round in 0..20u64 {
        g.delete("P-3").unwrap();
        let seed = if round == 19 { 1_000_003 } else { 500 + round };
        g.insert(rec("P-3", seed)).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    searcher.join().unwrap();
    assert_eq!(first(&g, &new).as_deref(), Some("P-3"));
    assert_ne!(
        first(&g, &old).as_deref(),
        Some("P-3"),
        "stale prepared record"
    );
}
