//! Simulated power loss on the fault-injecting in-memory directory: unsynced bytes and
//! unsynced directory entries are lost (or torn) at a random point of a workload of inserts,
//! deletes, idempotent retries, conflicts, flushes and compactions. After recovery, the store
//! must equal the model of acknowledged operations, possibly plus the one operation that was in
//! flight at the crash, byte for byte: no acknowledged write lost, nothing half-written visible.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use abis_engine::hash::mix;
use abis_engine::store::encryption::{EncryptedDirectory, Keyring};
use abis_engine::store::synth::synthetic_record;
use abis_engine::store::{
    CrashMode, Directory, InsertOutcome, MemDirectory, Record, RecoveryReport, ReplicatedOp,
    ReplicatedOutcome, Store, StoreConfig, StoreError,
};

const DIM: usize = 16;

fn cfg() -> StoreConfig {
    let mut c = StoreConfig::new(DIM);
    c.background = false;
    c
}

/// The directory as the store sees it: plain, or sealed with a test key.
fn view(dir: &MemDirectory, keys: Option<&Keyring>) -> Arc<dyn Directory> {
    match keys {
        Some(k) => Arc::new(EncryptedDirectory::new(Arc::new(dir.clone()), k.clone())),
        None => Arc::new(dir.clone()),
    }
}

fn rec(id: &str, seed: u64) -> Record {
    synthetic_record(id, seed, 1 + (seed % 3) as usize, (seed % 2) as usize, DIM)
}

type Model = BTreeMap<String, u64>;

/// The live records as (id → encoding).
fn state(s: &Store) -> BTreeMap<String, Vec<u8>> {
    let snap = s.snapshot();
    let ids: Vec<String> = snap.reference_ids().map(str::to_owned).collect();
    assert_eq!(ids.len() as u64, s.count());
    ids.into_iter()
        .map(|id| {
            let r = s.get(&id).unwrap().unwrap();
            (id, r.encode().unwrap())
        })
        .collect()
}

fn expect(m: &Model) -> BTreeMap<String, Vec<u8>> {
    m.iter()
        .map(|(id, &seed)| (id.clone(), rec(id, seed).encode().unwrap()))
        .collect()
}

enum Op {
    Insert(String, u64),
    Delete(String),
    Flush,
    Compact,
}

fn apply(m: &mut Model, op: &Op) {
    match op {
        Op::Insert(id, seed) => {
            m.entry(id.clone()).or_insert(*seed);
        }
        Op::Delete(id) => {
            m.remove(id);
        }
        Op::Flush | Op::Compact => {}
    }
}

/// Runs random operations until the directory dies; returns the op in flight, if any.
fn workload(
    s: &Store,
    m: &mut Model,
    rng: &mut u64,
    next_id: &mut u64,
    max_ops: usize,
) -> Option<Op> {
    for _ in 0..max_ops {
        *rng = mix(*rng);
        let pick = *rng % 100;
        let op = if pick < 55 || m.is_empty() {
            *next_id += 1;
            Op::Insert(format!("id-{next_id}"), *rng)
        } else if pick < 70 {
            let k = (*rng >> 8) as usize % m.len();
            Op::Delete(m.keys().nth(k).cloned().unwrap())
        } else if pick < 80 {
            // Idempotent retry of a stored record, or a conflicting one.
            let k = (*rng >> 8) as usize % m.len();
            let (id, seed) = m.iter().nth(k).map(|(i, s)| (i.clone(), *s)).unwrap();
            let seed = if pick < 75 { seed } else { seed ^ 1 };
            Op::Insert(id, seed)
        } else if pick < 93 {
            Op::Flush
        } else {
            Op::Compact
        };
        let res = match &op {
            Op::Insert(id, seed) => match s.insert(rec(id, *seed)) {
                Ok(InsertOutcome::AlreadyPresent) => {
                    assert_eq!(m.get(id), Some(seed));
                    Ok(())
                }
                Ok(InsertOutcome::Inserted) => {
                    assert!(!m.contains_key(id));
                    Ok(())
                }
                Err(StoreError::AlreadyExists) => {
                    assert!(m.get(id).is_some_and(|s| s != seed));
                    continue;
                }
                Err(e) => Err(e),
            },
            Op::Delete(id) => s.delete(id),
            Op::Flush => s.flush().map(|_| ()),
            Op::Compact => s.compact().map(|_| ()),
        };
        match res {
            Ok(()) => apply(m, &op),
            Err(_) => return Some(op),
        }
    }
    None
}

fn check_recovered(
    dir: &MemDirectory,
    keys: Option<&Keyring>,
    m: &mut Model,
    inflight: Option<Op>,
    ctx: &str,
) -> (Store, RecoveryReport) {
    let (s, report) = Store::open_in(view(dir, keys), cfg())
        .unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e}"));
    let got = state(&s);
    if got == expect(m) {
        return (s, report);
    }
    if let Some(op) = inflight {
        let mut m2 = m.clone();
        apply(&mut m2, &op);
        if got == expect(&m2) {
            *m = m2;
            return (s, report);
        }
    }
    let want = expect(m);
    let lost: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    panic!("{ctx}: recovered state differs: lost {lost:?}, extra {extra:?}");
}

#[test]
fn store_power_loss_at_random_points_loses_nothing_acknowledged() {
    power_loss_at_random_points(None, 120);
}

#[test]
fn store_power_loss_with_encryption_loses_nothing_acknowledged() {
    let keys = Keyring::from_keys(&[[7; 32]]).unwrap();
    power_loss_at_random_points(Some(&keys), 60);
}

fn power_loss_at_random_points(keys: Option<&Keyring>, default_runs: u64) {
    let runs: u64 = std::env::var("ABIS_STORE_POWERLOSS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_runs);
    let mut crashes = 0;
    let mut torn_reports = 0;
    for run in 0..runs {
        let dir = MemDirectory::new();
        let mut m = Model::new();
        let mut rng = mix(run + 1);
        let mut next_id = 0;
        let mut handle = dir.clone();
        // Several boot/crash rounds on the same directory.
        for round in 0..4 {
            let mode = if (run + round) % 2 == 0 {
                CrashMode::DropUnsynced
            } else {
                CrashMode::TornUnsynced { seed: rng }
            };
            let (s, _) = Store::open_in(view(&handle, keys), cfg()).unwrap();
            rng = mix(rng);
            handle.crash_after_ops(1 + rng % 400, mode);
            let inflight = workload(&s, &mut m, &mut rng, &mut next_id, 300);
            if inflight.is_some() {
                crashes += 1;
            } else {
                handle.crash(mode);
            }
            drop(s);
            handle = handle.reboot();
            let ctx = format!("run {run} round {round}");
            let (_s, report) = check_recovered(&handle, keys, &mut m, inflight, &ctx);
            torn_reports += usize::from(report.torn_bytes_dropped > 0);
        }
    }
    println!("power loss: {runs} runs, {crashes} crashes mid-operation, {torn_reports} torn tails reported");
    assert!(crashes > runs as usize, "crash points were hit");
}

#[test]
fn store_power_loss_with_concurrent_writers() {
    for run in 0..12u64 {
        let dir = MemDirectory::new();
        let mut c = cfg();
        c.memtable_max_records = 40;
        c.max_segments = 2;
        c.background = true;
        let (s, _) = Store::open_in(Arc::new(dir.clone()), c.clone()).unwrap();
        let s = Arc::new(s);
        let acked = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
        let deleted = Arc::new(Mutex::new(Vec::<String>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut hs = Vec::new();
        for t in 0..4u64 {
            let (s, acked, deleted, stop) = (
                Arc::clone(&s),
                Arc::clone(&acked),
                Arc::clone(&deleted),
                Arc::clone(&stop),
            );
            hs.push(std::thread::spawn(move || {
                for k in 0u64.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("t{t}-{k}");
                    let seed = mix(run * 1000 + t * 100_000 + k);
                    if s.insert(rec(&id, seed)).is_err() {
                        break;
                    }
                    acked.lock().unwrap().push((id.clone(), seed));
                    if k % 4 == 3 {
                        let victim = format!("t{t}-{}", k - 2);
                        if s.delete(&victim).is_err() {
                            break;
                        }
                        deleted.lock().unwrap().push(victim);
                    }
                }
            }));
        }
        std::thread::sleep(std::time::Duration::from_millis(20 + mix(run) % 80));
        dir.crash(CrashMode::TornUnsynced { seed: run });
        stop.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().unwrap();
        }
        drop(s);
        let d2 = dir.reboot();
        let (s, _) = Store::open_in(Arc::new(d2), cfg()).unwrap();
        let acked = acked.lock().unwrap().clone();
        let deleted: std::collections::HashSet<String> =
            deleted.lock().unwrap().iter().cloned().collect();
        let submitted: BTreeMap<String, u64> = acked.iter().cloned().collect();
        for (id, seed) in &acked {
            let got = s.get(id).unwrap();
            if deleted.contains(id) {
                assert!(got.is_none(), "acknowledged delete lost");
            } else {
                let got = got.unwrap_or_else(|| panic!("run {run}: acknowledged insert lost"));
                assert!(got.same_content(&rec(id, *seed)));
            }
        }
        // Anything visible was submitted, intact (the last in-flight insert of each thread may
        // or may not be there).
        for id in s.snapshot().reference_ids() {
            let r = s.get(id).unwrap().unwrap();
            match submitted.get(id) {
                Some(seed) => assert!(r.same_content(&rec(id, *seed))),
                None => {
                    let (t, k) = id[1..].split_once('-').unwrap();
                    let seed = mix(run * 1000
                        + t.parse::<u64>().unwrap() * 100_000
                        + k.parse::<u64>().unwrap());
                    assert!(
                        r.same_content(&rec(id, seed)),
                        "half-written record visible"
                    );
                }
            }
        }
        println!("run {run}: {} acknowledged inserts survived", acked.len());
    }
}

/// A replicated log as a cluster replica receives it: inserts (sometimes re-inserting an id
/// with other content after a delete, sometimes conflicting), deletes (sometimes of missing
/// ids), and entries for other shards (skips), at positions 1..=n.
fn replicated_log(seed: u64, n: u64) -> Vec<(u64, ReplicatedOp)> {
    let mut rng = mix(seed);
    let mut ids: Vec<String> = Vec::new();
    (1..=n)
        .map(|position| {
            rng = mix(rng);
            let pick = rng % 100;
            let op = if pick < 50 || ids.is_empty() {
                let id = format!("r-{}", ids.len());
                ids.push(id.clone());
                ReplicatedOp::Insert(rec(&id, rng))
            } else if pick < 70 {
                // Re-insert of a known id with new content: applies only if it was deleted.
                let id = ids[(rng >> 8) as usize % ids.len()].clone();
                ReplicatedOp::Insert(rec(&id, rng))
            } else if pick < 90 {
                ReplicatedOp::Delete(ids[(rng >> 8) as usize % ids.len()].clone())
            } else {
                ReplicatedOp::Skip
            };
            (position, op)
        })
        .collect()
}

/// What a store holds after applying `log[..upto]` with replica semantics.
fn replicated_model(log: &[(u64, ReplicatedOp)], upto: u64) -> BTreeMap<String, Vec<u8>> {
    let mut m: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (_, op) in log.iter().take(upto as usize) {
        match op {
            ReplicatedOp::Insert(r) => {
                m.entry(r.reference_id.clone())
                    .or_insert_with(|| r.encode().unwrap());
            }
            ReplicatedOp::Delete(id) => {
                m.remove(id);
            }
            ReplicatedOp::Skip => {}
        }
    }
    m
}

/// A replica that loses power at random points and resumes from the position its store
/// recovered always holds exactly the log's effect up to that position — never an operation
/// twice, never one skipped — and that position covers every acknowledged batch.
#[test]
fn store_replicated_log_survives_power_loss_exactly() {
    let runs: u64 = std::env::var("ABIS_STORE_POWERLOSS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let mut crashes = 0;
    for run in 0..runs {
        let log = replicated_log(run + 77, 240);
        let dir = MemDirectory::new();
        let mut handle = dir.clone();
        let mut acknowledged = 0u64;
        let mut rng = mix(run + 5);
        for round in 0..6 {
            let (s, _) = Store::open_in(view(&handle, None), cfg()).unwrap();
            let resumed = s.replicated_position();
            assert!(
                resumed >= acknowledged,
                "run {run}: acknowledged position lost"
            );
            assert_eq!(
                state(&s),
                replicated_model(&log, resumed),
                "run {run} round {round}: state at position {resumed}"
            );
            if resumed == log.len() as u64 {
                break;
            }
            rng = mix(rng);
            let mode = if round % 2 == 0 {
                CrashMode::DropUnsynced
            } else {
                CrashMode::TornUnsynced { seed: rng }
            };
            handle.crash_after_ops(1 + rng % 120, mode);
            // Redeliver from a little before the resumed position, as a stream consumer may.
            let mut next = resumed.saturating_sub(rng % 4) as usize;
            while next < log.len() {
                rng = mix(rng);
                let batch = (1 + rng % 7) as usize;
                let end = (next + batch).min(log.len());
                let ops = log[next..end].to_vec();
                match s.apply_replicated(ops) {
                    Ok(_) => acknowledged = acknowledged.max(end as u64),
                    Err(_) => {
                        crashes += 1;
                        break;
                    }
                }
                if rng.is_multiple_of(9) && s.flush().is_err() {
                    crashes += 1;
                    break;
                }
                next = end;
            }
            drop(s);
            handle.crash(mode);
            handle = handle.reboot();
        }
        let (s, _) = Store::open_in(view(&handle, None), cfg()).unwrap();
        let p = s.replicated_position();
        if p < log.len() as u64 {
            s.apply_replicated(log[p as usize..].to_vec()).unwrap();
        }
        assert_eq!(
            state(&s),
            replicated_model(&log, log.len() as u64),
            "run {run}: final"
        );
    }
    assert!(crashes > 0, "crash points were hit");
}

#[test]
fn store_replicated_outcomes_say_what_happened() {
    let dir = MemDirectory::new();
    let (s, _) = Store::open_in(Arc::new(dir.clone()), cfg()).unwrap();
    let a = rec("A", 1);
    let out = s
        .apply_replicated(vec![
            (1, ReplicatedOp::Insert(a.clone())),
            (2, ReplicatedOp::Insert(a.clone())),
            (3, ReplicatedOp::Insert(rec("A", 2))),
            (4, ReplicatedOp::Delete("missing".into())),
            (5, ReplicatedOp::Skip),
            (6, ReplicatedOp::Delete("A".into())),
            (
                7,
                ReplicatedOp::Insert(Record {
                    reference_id: "bad".into(),
                    ..Record::default()
                }),
            ),
        ])
        .unwrap();
    assert_eq!(
        out[..6],
        [
            ReplicatedOutcome::Inserted,
            ReplicatedOutcome::AlreadyPresent,
            ReplicatedOutcome::Conflict,
            ReplicatedOutcome::Missing,
            ReplicatedOutcome::Skipped,
            ReplicatedOutcome::Deleted,
        ]
    );
    assert!(
        matches!(&out[6], ReplicatedOutcome::Rejected(why) if why.contains("biometrics")),
        "{:?}",
        out[6]
    );
    assert_eq!(s.replicated_position(), 7);
    // Redeliveries are skipped; the position survives a checkpoint and a reopen.
    let again = s.apply_replicated(vec![(6, ReplicatedOp::Skip)]).unwrap();
    assert_eq!(again, vec![ReplicatedOutcome::AlreadyApplied]);
    s.flush().unwrap();
    drop(s);
    let (s, _) = Store::open_in(Arc::new(dir), cfg()).unwrap();
    assert_eq!(s.replicated_position(), 7);
    assert_eq!(s.count(), 0);
}
