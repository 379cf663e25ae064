//! Crash test with real processes: the test re-runs its own binary as a child that writes to a
//! store under load (4 writer threads, background flushes and compactions) and prints every
//! acknowledged operation after it returns; the parent SIGKILLs it at a random moment, reopens
//! the store and checks that every acknowledged insert is present byte for byte, every
//! acknowledged delete is applied, and nothing is visible that was never submitted.
//!
//! A SIGKILL loses the process, not the page cache: this checks the ordering and recovery
//! logic against real files, checkpoints and mmaps; `store_powerloss.rs` covers losing
//! unsynced bytes.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use abis_engine::hash::mix;
use abis_engine::store::synth::synthetic_record;
use abis_engine::store::{Record, SizeTiered, Store, StoreConfig};

const DIM: usize = 64;
const CHILD_ENV: &str = "ABIS_STORE_CRASH_CHILD_DIR";
const ROUND_ENV: &str = "ABIS_STORE_CRASH_ROUND";

fn child_cfg() -> StoreConfig {
    let mut c = StoreConfig::new(DIM);
    c.memtable_max_records = 300;
    c.max_segments = 3;
    c
}

/// Odd rounds merge with the size-tiered policy (subsets of segments, deletions reclaimed
/// alone), even rounds with the default (everything into one).
fn child_cfg_of_round(round: u64) -> StoreConfig {
    let mut c = child_cfg();
    if round % 2 == 1 {
        c.merge_policy = Some(Arc::new(SizeTiered {
            min_merge: 2,
            small_bytes: 0,
            tier_ratio: 4.0,
            reclaim_deleted: 0.1,
            max_segments: 6,
            ..SizeTiered::default()
        }));
    }
    c
}

fn content(id: &str) -> Record {
    let seed = id.bytes().fold(0xABu64, |h, b| mix(h ^ u64::from(b)));
    synthetic_record(id, seed, 2 + (seed % 3) as usize, 1, DIM)
}

/// The child: writes until killed (or 20 s pass). Not a test on its own.
#[test]
#[ignore = "child process of store_crash_sigkill_recovery"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u64 = std::env::var(ROUND_ENV)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let (store, _) = Store::open(&dir, child_cfg_of_round(round)).expect("child opens the store");
    let store = Arc::new(store);
    println!("READY");
    let deadline = Instant::now() + Duration::from_secs(20);
    std::thread::scope(|sc| {
        for t in 0..4u64 {
            let store = Arc::clone(&store);
            sc.spawn(move || {
                for k in 0u64.. {
                    if Instant::now() > deadline {
                        return;
                    }
                    let id = format!("r{round}-t{t}-{k}");
                    // Announced before submitting: anything visible later must be announced.
                    println!("S {id}");
                    store.insert(content(&id)).expect("insert");
                    println!("A {id}");
                    if k % 5 == 4 {
                        let victim = format!("r{round}-t{t}-{}", k - 3);
                        println!("d {victim}");
                        store.delete(&victim).expect("delete");
                        println!("D {victim}");
                    }
                    if t == 0 && k % 150 == 149 {
                        if k % 300 == 299 {
                            store.compact().expect("compact");
                        } else {
                            store.flush().expect("flush");
                        }
                    }
                }
            });
        }
    });
}

#[derive(Default)]
struct Seen {
    ready: bool,
    submitted: HashSet<String>,
    acked: HashSet<String>,
    deleted: HashSet<String>,
    delete_submitted: HashSet<String>,
}

fn run_child(dir: &Path, round: u64, kill_after: Duration) -> Seen {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        // Piped and drained, not `Stdio::null()` (a plain file in some sandboxes, see
        // `abis_testkit::log_to`), and not a file in the store's directory.
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut stderr = child.stderr.take().expect("child stderr");
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let reader = {
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut s = seen.lock().unwrap();
                match line.split_once(' ') {
                    Some(("S", id)) => {
                        s.submitted.insert(id.to_owned());
                    }
                    Some(("A", id)) => {
                        s.acked.insert(id.to_owned());
                    }
                    Some(("d", id)) => {
                        s.delete_submitted.insert(id.to_owned());
                    }
                    Some(("D", id)) => {
                        s.deleted.insert(id.to_owned());
                    }
                    // libtest may print "test crash_child ... " before it on the same line.
                    _ if line.ends_with("READY") => s.ready = true,
                    _ => {}
                }
            }
        })
    };
    // Wait until it writes, then let it run for the random delay under load.
    let start = Instant::now();
    while !seen.lock().unwrap().ready && start.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("child exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(kill_after);
    child.kill().expect("SIGKILL child"); // Child::kill sends SIGKILL on Unix
    child.wait().expect("reap child");
    reader.join().expect("reader");
    Arc::try_unwrap(seen)
        .ok()
        .expect("reader finished")
        .into_inner()
        .unwrap()
}

#[test]
fn store_crash_sigkill_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let seed: u64 = std::env::var("ABIS_STORE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("crash test seed {seed} (rerun with ABIS_STORE_CRASH_SEED={seed})");
    let budget = Duration::from_secs(40);
    let t0 = Instant::now();
    let mut live: BTreeMap<String, ()> = BTreeMap::new();
    let mut gone: HashSet<String> = HashSet::new();
    let mut kills = 0;
    let mut total_acked = 0;
    let mut rng = seed;
    for round in 0..30u64 {
        if t0.elapsed() > budget {
            break;
        }
        rng = mix(rng);
        let delay = Duration::from_millis(20 + rng % 400);
        let seen = run_child(tmp.path(), round, delay);
        kills += 1;
        total_acked += seen.acked.len();
        assert!(seen.acked.is_subset(&seen.submitted));

        let t_open = Instant::now();
        let (store, report) = Store::open(tmp.path(), child_cfg()).expect("recovery after SIGKILL");
        let open_ms = t_open.elapsed().as_secs_f64() * 1e3;
        for id in &seen.acked {
            if seen.deleted.contains(id) {
                gone.insert(id.clone());
                live.remove(id);
            } else {
                live.insert(id.clone(), ());
            }
        }
        for id in &seen.deleted {
            gone.insert(id.clone());
            live.remove(id);
        }
        // A delete in flight at the kill may or may not have happened.
        for id in seen.delete_submitted.difference(&seen.deleted) {
            if store.get(id).unwrap().is_none() {
                live.remove(id);
                gone.insert(id.clone());
            }
        }
        // Every acknowledged insert (of every round so far) is present and intact.
        for id in live.keys() {
            let r = store
                .get(id)
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: acknowledged insert {id} lost"));
            assert_eq!(r.encode().unwrap(), content(id).encode().unwrap());
        }
        for id in &gone {
            assert!(
                store.get(id).unwrap().is_none(),
                "round {round}: acknowledged delete lost"
            );
        }
        // Everything visible was submitted (this round or earlier) and is intact.
        let snap = store.snapshot();
        let mut visible = 0u64;
        for id in snap.reference_ids() {
            visible += 1;
            let this_round = id.starts_with(&format!("r{round}-"));
            assert!(
                !this_round || seen.submitted.contains(id),
                "round {round}: a record that was never submitted is visible"
            );
            let r = store.get(id).unwrap().unwrap();
            assert_eq!(r.encode().unwrap(), content(id).encode().unwrap());
            if !this_round && !live.contains_key(id) {
                // Submitted in an earlier round, in flight at that kill, kept by recovery.
                live.insert(id.to_owned(), ());
            }
        }
        assert_eq!(visible, store.count());
        store.verify().expect("segments verify");
        println!(
            "round {round}: killed after {} ms, {} acked ({} deletes), recovered {} records from {} segments + {} log entries ({} torn bytes) in {open_ms:.1} ms",
            delay.as_millis(),
            seen.acked.len(),
            seen.deleted.len(),
            report.records,
            report.segments,
            report.entries_replayed,
            report.torn_bytes_dropped
        );
        drop(store);
    }
    println!(
        "crash test: {kills} SIGKILLs, {total_acked} acknowledged inserts, all present, in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(kills >= 10, "enough kills within the time budget");
}
