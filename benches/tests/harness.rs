//! The scale harness end to end on a small synthetic gallery: `gen` writes a store the engine
//! opens, `search` finds every mate with and without the indexes, `dedup` finds the planted
//! duplicates and resumes after an interruption.

use std::path::{Path, PathBuf};
use std::process::Command;

use abis_engine::store::{Store, StoreConfig};
use serde_json::Value;

fn bench(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_abis-bench"))
        .args(args)
        .output()
        .expect("run abis-bench");
    assert!(
        out.status.success(),
        "abis-bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/manifest.toml")
}

const PEOPLE: u64 = 300;
const DUPLICATES: u64 = 12;

#[test]
fn gen_search_and_dedup_on_a_synthetic_gallery() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let people = PEOPLE.to_string();
    let dups = DUPLICATES.to_string();
    let made = bench(&[
        "gen",
        "--data",
        d,
        "--people",
        &people,
        "--duplicates",
        &dups,
        "--seed",
        "7",
    ]);
    assert_eq!(made["people"], PEOPLE);

    // The gallery is an ordinary store: the engine opens it and sees every record.
    {
        let (store, _) = Store::open(data.join("gallery"), StoreConfig::new(192)).unwrap();
        assert_eq!(store.count(), PEOPLE + DUPLICATES);
        store.close().unwrap();
    }
    // A second gen into the same place is refused rather than mixing two galleries.
    let again = Command::new(env!("CARGO_BIN_EXE_abis-bench"))
        .args(["gen", "--data", d, "--people", "5"])
        .output()
        .unwrap();
    assert!(!again.status.success());

    let m = manifest();
    let m = m.to_str().unwrap();
    for mode in [&["--shortlist", "10"][..], &["--exhaustive"][..]] {
        let mut args = vec!["search", "--data", d, "--probes", "8", "--manifest", m];
        args.extend_from_slice(mode);
        let r = bench(&args);
        for key in [
            "fnir_at_fpir_1e-3",
            "rank1_miss",
            "penetration",
            "p50_ms",
            "p99_ms",
            "searches_per_s",
            "ram_bytes_per_record",
            "disk_bytes_per_record",
        ] {
            assert!(r[key].is_number(), "{key} missing in {r}");
        }
        assert_eq!(r["fnir_at_fpir_1e-3"], 0.0, "{r}");
        assert_eq!(r["rank1_miss"], 0.0, "{r}");
        assert_eq!(r["fpir_observed"], 0.0, "{r}");
        if mode[0] == "--exhaustive" {
            assert_eq!(r["penetration"], 1.0);
        } else {
            assert_eq!(r["prefilter_lost"], 0, "{r}");
            assert!(r["penetration"].as_f64().unwrap() < 0.05, "{r}");
        }
    }
    let face = bench(&[
        "search",
        "--data",
        d,
        "--probes",
        "8",
        "--modality",
        "both",
        "--manifest",
        m,
    ]);
    assert_eq!(face["fnir_at_fpir_1e-3"], 0.0, "{face}");

    // Dedup: stop after one block, resume, and find every planted duplicate.
    let first = bench(&["dedup", "--data", d, "--block", "100", "--max-blocks", "1"]);
    assert_eq!(first["complete"], false);
    // A torn last line (a crash mid-append) is dropped and its block redone.
    let state = data.join("harness/dedup-finger.jsonl");
    let mut text = std::fs::read_to_string(&state).unwrap();
    text.push_str("{\"block\":3,\"pai");
    std::fs::write(&state, text).unwrap();
    let all = bench(&["dedup", "--data", d, "--block", "100"]);
    assert_eq!(all["complete"], true, "{all}");
    assert_eq!(all["blocks_resumed"], 1, "{all}");
    assert_eq!(all["duplicates_found"], DUPLICATES, "{all}");
    assert_eq!(all["false_pairs"], 0, "{all}");
    let groups = std::fs::read_to_string(data.join("harness/dedup-groups.csv")).unwrap();
    assert_eq!(groups.lines().count() as u64, 1 + 2 * DUPLICATES);
}
