//! The scale harness end to end on a small synthetic gallery: `gen` writes a store the engine
//! opens, `search` finds every mate with and without the indexes, `dedup` finds the planted
//! duplicates and resumes after an interruption.

use std::path::{Path, PathBuf};
use std::process::Command;

use abis_engine::store::{Store, StoreConfig};
use serde_json::Value;

/// `abis-bench search` of 8 mated and 8 non-mated probes, with `extra` arguments.
fn search8(data: &str, manifest: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "search",
        "--data",
        data,
        "--probes",
        "8",
        "--manifest",
        manifest,
    ];
    args.extend_from_slice(extra);
    bench(&args)
}

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
    // Through the index (codes keep 40 of 312 records, local structures 10 of those), in
    // batches of 4 as well (the run fails unless each batched answer equals the single one),
    // and exhaustively.
    let indexed: &[&str] = &[
        "--code-shortlist",
        "40",
        "--shortlist",
        "10",
        "--batch",
        "4",
    ];
    for mode in [indexed, &["--exhaustive"][..]] {
        let r = search8(d, m, mode);
        for key in [
            "fnir",
            "rank1_miss",
            "fpir",
            "lost_by_index",
            "p50_ms",
            "p99_ms",
            "searches_per_s",
            "rss_after_search_bytes",
            "gallery_bytes",
            "resident_code_bytes_per_record",
        ] {
            assert!(r[key].is_number(), "{key} missing in {r}");
        }
        assert_eq!(r["mated"], 8, "{r}");
        assert_eq!(r["fnir"], 0.0, "{r}");
        assert_eq!(r["rank1_miss"], 0.0, "{r}");
        assert_eq!(r["fpir"], 0.0, "{r}");
        assert_eq!(r["lost_by_index"], 0, "{r}");
        assert_eq!(r["exhaustive_would_return"], 8, "{r}");
        if mode == indexed {
            assert!(r["batch_speedup"].is_number(), "{r}");
            // Ten 160-byte codes a person, plus presence and flags.
            let code_bytes = r["resident_code_bytes_per_record"].as_f64().unwrap();
            assert!((1600.0..1700.0).contains(&code_bytes), "{r}");
        }
    }
    // Four-finger probes (thumbs and index fingers) through the index.
    let four = search8(d, m, &["--positions", "1,2,6,7"]);
    assert_eq!(four["probe_fingers"], 4, "{four}");
    assert_eq!(four["fnir"], 0.0, "{four}");
    assert_eq!(four["lost_by_index"], 0, "{four}");
    // One finger: every record ranked by the local similarity sort, 64 of 312 kept for LSS-R;
    // each search's raw outcome written out and consistent with the summary.
    let scores = data.join("one_finger.csv");
    let one = search8(
        d,
        m,
        &[
            "--positions",
            "2",
            "--local-sort-keep",
            "64",
            "--scores",
            scores.to_str().unwrap(),
        ],
    );
    assert_eq!(one["probe_fingers"], 1, "{one}");
    assert_eq!(one["lost_by_index"], 0, "{one}");
    let csv = std::fs::read_to_string(&scores).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 16, "{csv}");
    let mated: Vec<_> = rows.iter().filter(|r| r[1] == "1").collect();
    assert_eq!(mated.len(), 8, "{csv}");
    assert!(mated.iter().all(|r| r[3].parse::<f64>().is_ok()), "{csv}");
    let threshold = one["threshold"].as_f64().unwrap();
    let accepted = mated
        .iter()
        .filter(|r| r[3].parse::<f64>().unwrap() >= threshold)
        .count();
    assert_eq!(one["exhaustive_would_return"], accepted as u64, "{csv}");
    let false_hits = rows.iter().filter(|r| r[1] == "0" && r[5] != "0").count();
    assert_eq!(
        one["fpir"].as_f64().unwrap(),
        false_hits as f64 / 8.0,
        "{csv}"
    );
    let face = search8(d, m, &["--modality", "both"]);
    assert_eq!(face["fnir"], 0.0, "{face}");
    assert_eq!(face["modality"], "both", "{face}");

    // Dedup: stop after one block, resume, and find every planted duplicate.
    let dedup = [
        "dedup",
        "--data",
        d,
        "--block",
        "100",
        "--code-shortlist",
        "40",
        "--shortlist",
        "10",
    ];
    let first = bench(&[&dedup[..], &["--max-blocks", "1"]].concat());
    assert_eq!(first["complete"], false);
    // A torn last line (a crash mid-append) is dropped and its block redone.
    let state = data.join("harness/dedup-finger.jsonl");
    let mut text = std::fs::read_to_string(&state).unwrap();
    text.push_str("{\"block\":3,\"pai");
    std::fs::write(&state, text).unwrap();
    let all = bench(&dedup);
    assert_eq!(all["complete"], true, "{all}");
    assert_eq!(all["blocks_resumed"], 1, "{all}");
    assert_eq!(all["duplicates_found"], DUPLICATES, "{all}");
    assert_eq!(all["false_pairs"], 0, "{all}");
    let groups = std::fs::read_to_string(data.join("harness/dedup-groups.csv")).unwrap();
    assert_eq!(groups.lines().count() as u64, 1 + 2 * DUPLICATES);
}
