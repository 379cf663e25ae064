//! Store semantics, persistence across flush/compaction/reopen, snapshots, corruption detection,
//! torn tails, failed fsync, limits, and the group-commit throughput measurement (printed, not
//! asserted).

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use abis_engine::hash::mix;
use abis_engine::store::segment;
use abis_engine::store::synth::synthetic_record;
use abis_engine::store::{
    Directory, InsertOutcome, MemDirectory, Record, Store, StoreConfig, StoreError,
};

const DIM: usize = 32;

fn cfg() -> StoreConfig {
    let mut c = StoreConfig::new(DIM);
    c.background = false;
    c
}

fn rec(id: &str, seed: u64) -> Record {
    synthetic_record(
        id,
        seed,
        1 + (seed % 4) as usize,
        1 + (seed % 2) as usize,
        DIM,
    )
}

fn mem_store(dir: &MemDirectory) -> Store {
    Store::open_in(Arc::new(dir.clone()), cfg()).unwrap().0
}

/// Every live record of `store` equals `model` exactly (ids and bytes).
fn assert_matches(store: &Store, model: &BTreeMap<String, Record>) {
    assert_eq!(store.count(), model.len() as u64);
    let snap = store.snapshot();
    assert_eq!(snap.len(), model.len() as u64);
    let mut ids: Vec<&str> = snap.reference_ids().collect();
    ids.sort_unstable();
    let want: Vec<&str> = model.keys().map(String::as_str).collect();
    assert_eq!(ids, want);
    for (id, r) in model {
        let got = store.get(id).unwrap().expect("acknowledged record present");
        assert_eq!(got.encode().unwrap(), r.encode().unwrap());
        let got = snap.get(id).unwrap().unwrap();
        assert!(got.same_content(r));
    }
}

#[test]
fn store_insert_get_delete_semantics() {
    let dir = MemDirectory::new();
    let s = mem_store(&dir);
    let a = rec("A-1", 1);
    assert_eq!(s.insert(a.clone()).unwrap(), InsertOutcome::Inserted);
    assert_eq!(s.insert(a.clone()).unwrap(), InsertOutcome::AlreadyPresent);
    assert!(matches!(
        s.insert(rec("A-1", 2)),
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(s.count(), 1);
    assert!(s.get("A-1").unwrap().unwrap().same_content(&a));
    assert!(s.get("B").unwrap().is_none());
    assert!(matches!(s.delete("B"), Err(StoreError::NotFound)));
    assert!(matches!(
        s.delete("bad id"),
        Err(StoreError::InvalidRecord {
            field: "reference_id",
            ..
        })
    ));
    s.delete("A-1").unwrap();
    assert!(matches!(s.delete("A-1"), Err(StoreError::NotFound)));
    assert_eq!(s.count(), 0);
    // Re-insert after delete, with other content: allowed.
    s.insert(rec("A-1", 2)).unwrap();
    // The same through a segment.
    s.flush().unwrap();
    assert_eq!(
        s.insert(rec("A-1", 2)).unwrap(),
        InsertOutcome::AlreadyPresent
    );
    assert!(matches!(
        s.insert(rec("A-1", 3)),
        Err(StoreError::AlreadyExists)
    ));
    s.delete("A-1").unwrap();
    s.insert(rec("A-1", 4)).unwrap();
    assert!(s.get("A-1").unwrap().unwrap().same_content(&rec("A-1", 4)));
    drop(s);
    let s = mem_store(&dir);
    assert!(s.get("A-1").unwrap().unwrap().same_content(&rec("A-1", 4)));
    assert_eq!(s.count(), 1);
    assert_eq!(StoreError::AlreadyExists.record_defect(), None);
}

#[test]
fn store_persists_across_flush_compaction_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    let mut seed = 7u64;
    {
        let (s, report) = Store::open(tmp.path(), cfg()).unwrap();
        assert!(report.created);
        for round in 0..4 {
            for i in 0..150 {
                seed = mix(seed);
                let id = format!("P{round}-{i:04}");
                let r = rec(&id, seed);
                s.insert(r.clone()).unwrap();
                model.insert(id, r);
            }
            // Delete some from the memtable and some from older segments.
            let victims: Vec<String> = model.keys().step_by(7).cloned().collect();
            for id in victims.iter().take(20) {
                s.delete(id).unwrap();
                model.remove(id);
            }
            s.flush().unwrap();
            assert_matches(&s, &model);
        }
        assert_eq!(s.stats().segments, 4);
        let rep = s.compact().unwrap();
        assert_eq!(rep.segments_after, 1);
        assert_eq!(rep.segment_records, model.len());
        assert_matches(&s, &model);
        // More work after compaction, left in the log only.
        for i in 0..30 {
            let id = format!("Q-{i}");
            let r = rec(&id, i);
            s.insert(r.clone()).unwrap();
            model.insert(id, r);
        }
        let first = model.keys().next().cloned().unwrap();
        s.delete(&first).unwrap();
        model.remove(&first);
        s.verify().unwrap();
    }
    let (s, report) = Store::open(tmp.path(), cfg()).unwrap();
    assert_eq!(report.segments, 1);
    assert_eq!(report.entries_replayed, 31);
    assert_eq!(report.torn_bytes_dropped, 0);
    assert_matches(&s, &model);
    assert!(s.snapshot().segments()[0].is_mapped());
    s.close().unwrap();
    let (s, report) = Store::open(tmp.path(), cfg()).unwrap();
    assert_eq!(report.entries_replayed, 0);
    assert_matches(&s, &model);
    // Only the files the meta names are left.
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    // LOCK, meta, one log, the compacted segment + its bitmap, the closing flush's segment.
    assert_eq!(names.len(), 6, "{names:?}");
}

#[test]
fn store_snapshot_is_immutable_and_scannable() {
    let dir = MemDirectory::new();
    let s = mem_store(&dir);
    let mut model = BTreeMap::new();
    for i in 0..200u64 {
        let id = format!("S{i:03}");
        let r = rec(&id, i);
        s.insert(r.clone()).unwrap();
        model.insert(id, r);
    }
    s.flush().unwrap();
    for i in 200..220u64 {
        let id = format!("S{i:03}");
        let r = rec(&id, i);
        s.insert(r.clone()).unwrap();
        model.insert(id, r);
    }
    let snap = s.snapshot();
    // Changes after the snapshot do not show in it.
    s.delete("S005").unwrap();
    s.delete("S210").unwrap();
    s.insert(rec("T-new", 1)).unwrap();
    assert_eq!(snap.len(), 220);
    assert!(snap.contains("S005") && snap.contains("S210") && !snap.contains("T-new"));
    assert_eq!(s.snapshot().len(), 219);
    assert!(!s.snapshot().contains("S005"));

    // Scan the segment in place: every face row equals the record's embedding, the int8 copy
    // dequantises within one step, templates are by position.
    let seg = &snap.segments()[0];
    let faces = seg.faces().unwrap();
    let fingers = seg.fingers().unwrap();
    assert_eq!(faces.dim(), DIM);
    let (m, stride) = faces
        .f32_matrix()
        .expect("a plaintext segment is read in place");
    assert_eq!(m.as_ptr() as usize % 64, 0);
    assert_eq!(stride % 16, 0);
    let mut rows = 0;
    for ord in seg.live_ordinals() {
        let r = &model[seg.reference_id(ord)];
        let range = faces.record_rows(ord);
        assert_eq!(range.len(), r.faces.len());
        for (row, face) in range.zip(&r.faces) {
            rows += 1;
            assert_eq!(&faces.row(row).unwrap()[..], &face[..]);
            assert_eq!(faces.row_owner(row), ord);
            let sc = faces.scale(row);
            for (q, x) in faces.row_i8(row).iter().zip(face) {
                assert!((f32::from(*q) * sc - x).abs() <= sc * 0.5 + 1e-6);
            }
        }
        let fs: Vec<_> = fingers.of_record(ord).map(Result::unwrap).collect();
        assert_eq!(fs.len(), r.fingers.len());
        for ((pos, t), f) in fs.iter().zip(&r.fingers) {
            assert_eq!(*pos, f.position);
            assert_eq!(&t[..], &f.template[..]);
        }
    }
    assert_eq!(rows, faces.rows());
    assert_eq!(snap.recent().len(), 20);
}

#[test]
fn store_segment_corruption_is_a_typed_error() {
    let dir = MemDirectory::new();
    {
        let s = mem_store(&dir);
        for i in 0..50u64 {
            s.insert(rec(&format!("C{i:02}"), i)).unwrap();
        }
        s.flush().unwrap();
    }
    let seg = "seg-0000000001.seg";
    let len = dir.file_len(seg).unwrap();
    let parts = segment::layout(&dir.read(seg).unwrap()).expect("segment layout");
    let part = |name: &str| {
        parts
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("no part {name}"))
    };
    let middle = |name: &str| {
        let r = part(name);
        assert!(!r.is_empty(), "{name} is empty");
        r.start + r.len() / 2
    };
    // Damage deep in the data: the segment opens (lazy check) but reading that data fails.
    let face_byte = middle("face f32 matrix");
    dir.corrupt_byte(seg, face_byte, 0x40).unwrap();
    match Store::open_in(Arc::new(dir.clone()), cfg()) {
        Ok((s, _)) => {
            let err = s.verify().unwrap_err();
            assert!(
                matches!(err, StoreError::Corrupt { ref file, .. } if file == seg),
                "{err}"
            );
        }
        Err(e) => assert!(matches!(e, StoreError::Corrupt { .. }), "{e}"),
    }
    dir.corrupt_byte(seg, face_byte, 0x40).unwrap();
    mem_store(&dir).verify().unwrap();
    // Damage in the header, the id offsets, the id blob, the trailer: refused at open.
    for at in [
        part("header").start + 3,
        middle("id offsets"),
        middle("id blob"),
        part("trailer").end - 1,
    ] {
        dir.corrupt_byte(seg, at, 0x01).unwrap();
        let e = Store::open_in(Arc::new(dir.clone()), cfg()).unwrap_err();
        assert!(
            matches!(e, StoreError::Corrupt { ref file, .. } if file == seg),
            "{e}"
        );
        dir.corrupt_byte(seg, at, 0x01).unwrap();
    }
    let s = mem_store(&dir);
    assert_eq!(s.count(), 50);
    // Any single flipped byte: either a typed error or the exact records.
    for at in (0..len).step_by(97) {
        dir.corrupt_byte(seg, at, 0x10).unwrap();
        if let Ok((s, _)) = Store::open_in(Arc::new(dir.clone()), cfg()) {
            let r = (0..50u64).try_for_each(|i| {
                let id = format!("C{i:02}");
                s.get(&id)
                    .map(|g| assert!(g.unwrap().same_content(&rec(&id, i))))
            });
            assert!(r.is_ok() || matches!(r, Err(StoreError::Corrupt { .. })));
            let v = s.verify();
            assert!(
                matches!(v, Err(StoreError::Corrupt { .. })),
                "byte {at} undetected"
            );
        }
        dir.corrupt_byte(seg, at, 0x10).unwrap();
    }
}

#[test]
fn store_torn_wal_tail_is_truncated_and_reported() {
    let dir = MemDirectory::new();
    let wal = "wal-0000000001.log";
    let mut model = BTreeMap::new();
    {
        let s = mem_store(&dir);
        for i in 0..20u64 {
            let id = format!("W{i:02}");
            s.insert(rec(&id, i)).unwrap();
            model.insert(id.clone(), rec(&id, i));
        }
    }
    let good = dir.file_len(wal).unwrap();
    // A partial entry at the end (a write cut by the crash).
    dir.append_durable(wal, &[40, 1, 0, 0, 1, 0, 0]).unwrap();
    let (s, report) = Store::open_in(Arc::new(dir.clone()), cfg()).unwrap();
    assert_eq!(report.entries_replayed, 20);
    assert_eq!(report.torn_bytes_dropped, 7);
    assert_eq!(report.torn_at, Some((wal.to_string(), good as u64)));
    assert_eq!(dir.file_len(wal), Some(good));
    assert_matches(&s, &model);
    s.insert(rec("W-after", 99)).unwrap();
    model.insert("W-after".into(), rec("W-after", 99));
    drop(s);
    let (s, report) = Store::open_in(Arc::new(dir.clone()), cfg()).unwrap();
    assert_eq!(
        (report.entries_replayed, report.torn_bytes_dropped),
        (21, 0)
    );
    assert_matches(&s, &model);
    drop(s);
    // A damaged last entry (bad checksum) is a torn tail too.
    let len = dir.file_len(wal).unwrap();
    dir.corrupt_byte(wal, len - 3, 0xFF).unwrap();
    let (s, report) = Store::open_in(Arc::new(dir.clone()), cfg()).unwrap();
    assert_eq!(report.entries_replayed, 20);
    assert!(report.torn_bytes_dropped > 0);
    model.remove("W-after");
    assert_matches(&s, &model);
}

#[test]
fn store_wal_damage_before_acknowledged_entries_is_corruption() {
    let dir = MemDirectory::new();
    {
        let s = mem_store(&dir);
        for i in 0..20u64 {
            s.insert(rec(&format!("M{i:02}"), i)).unwrap();
        }
    }
    let wal = "wal-0000000001.log";
    let len = dir.file_len(wal).unwrap();
    dir.corrupt_byte(wal, len / 2, 0x08).unwrap();
    let e = Store::open_in(Arc::new(dir.clone()), cfg()).unwrap_err();
    assert!(
        matches!(e, StoreError::Corrupt { ref file, .. } if file == wal),
        "{e}"
    );
    // Damage of the meta file is refused as well.
    dir.corrupt_byte(wal, len / 2, 0x08).unwrap();
    dir.corrupt_byte("meta.abis", 30, 0x01).unwrap();
    let e = Store::open_in(Arc::new(dir.clone()), cfg()).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
}

#[test]
fn store_failed_fsync_is_fatal_and_never_retried() {
    let dir = MemDirectory::new();
    let s = mem_store(&dir);
    s.insert(rec("F-1", 1)).unwrap();
    dir.fail_syncs_after(1);
    let e = s.insert(rec("F-2", 2)).unwrap_err();
    assert!(matches!(e, StoreError::Failed { .. }), "{e}");
    assert!(s.is_failed());
    // Later writes are refused without touching the disk; reads keep working.
    assert!(matches!(
        s.insert(rec("F-3", 3)),
        Err(StoreError::Failed { .. })
    ));
    assert!(matches!(s.delete("F-1"), Err(StoreError::Failed { .. })));
    assert!(matches!(s.flush(), Err(StoreError::Failed { .. })));
    assert!(s.get("F-1").unwrap().is_some());
    assert!(
        s.get("F-2").unwrap().is_none(),
        "unacknowledged write must not be visible"
    );
    assert_eq!(s.count(), 1);
    drop(s);
    // Reopening (the "restart") recovers from what the disk holds. The failed entry reached
    // the page cache here, so it is replayed: allowed, since the client saw an error and a
    // retry is idempotent.
    let dir2 = dir.reboot();
    let s = Store::open_in(Arc::new(dir2.clone()), cfg()).unwrap().0;
    assert!(s.get("F-1").unwrap().is_some());
    assert_eq!(
        s.insert(rec("F-2", 2)).unwrap() == InsertOutcome::Inserted,
        s.count() == 1
    );
}

#[test]
fn store_limits_and_configuration_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg();
    c.max_records = Some(3);
    let (s, _) = Store::open(tmp.path(), c.clone()).unwrap();
    for i in 0..3 {
        s.insert(rec(&format!("L{i}"), i)).unwrap();
    }
    assert!(matches!(
        s.insert(rec("L9", 9)),
        Err(StoreError::Full { .. })
    ));
    // A retry of a stored record is still fine when full.
    assert_eq!(
        s.insert(rec("L0", 0)).unwrap(),
        InsertOutcome::AlreadyPresent
    );
    let mut bad = rec("L5", 5);
    bad.faces[0].pop();
    assert!(matches!(
        s.insert(bad),
        Err(StoreError::InvalidRecord { field: "faces", .. })
    ));
    // A second opener of the same directory is refused.
    assert!(matches!(
        Store::open(tmp.path(), c.clone()),
        Err(StoreError::Locked { .. })
    ));
    drop(s);
    let e = Store::open(tmp.path(), StoreConfig::new(DIM + 1)).unwrap_err();
    assert!(matches!(e, StoreError::Incompatible { .. }), "{e}");
}

#[test]
fn store_concurrent_writers_readers_and_background_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = StoreConfig::new(DIM);
    c.memtable_max_records = 150;
    c.max_segments = 3;
    let (s, _) = Store::open(tmp.path(), c.clone()).unwrap();
    let s = Arc::new(s);
    let threads = 6;
    let per = 250;
    let barrier = Arc::new(Barrier::new(threads + 1));
    let mut hs = Vec::new();
    for t in 0..threads {
        let s = Arc::clone(&s);
        let b = Arc::clone(&barrier);
        hs.push(std::thread::spawn(move || {
            b.wait();
            let mut live = BTreeMap::new();
            for k in 0..per {
                // Every thread also races on shared ids: exactly one insert wins, the others
                // see AlreadyPresent (same content).
                let shared = format!("shared-{}", k % 50);
                match s.insert(rec(&shared, (k % 50) as u64)) {
                    Ok(_) | Err(StoreError::AlreadyExists) => {}
                    Err(e) => panic!("{e}"),
                }
                let id = format!("T{t}-{k:04}");
                let r = rec(&id, (t * 10_000 + k) as u64);
                assert_eq!(s.insert(r.clone()).unwrap(), InsertOutcome::Inserted);
                // Read-your-write, through get and a fresh snapshot.
                assert!(s.get(&id).unwrap().unwrap().same_content(&r));
                assert!(s.snapshot().contains(&id));
                live.insert(id, r);
                if k % 5 == 4 {
                    let victim = live.keys().nth(k % live.len()).cloned().unwrap();
                    s.delete(&victim).unwrap();
                    assert!(s.get(&victim).unwrap().is_none());
                    live.remove(&victim);
                }
            }
            live
        }));
    }
    barrier.wait();
    let mut model = BTreeMap::new();
    for h in hs {
        model.extend(h.join().unwrap());
    }
    for k in 0..50u64 {
        let id = format!("shared-{k}");
        model.insert(id.clone(), rec(&id, k));
    }
    assert_matches(&s, &model);
    let st = s.stats();
    println!(
        "concurrent: {} entries in {} fsyncs, {} checkpoints, {} segments",
        st.wal_entries, st.wal_syncs, st.checkpoints, st.segments
    );
    assert!(st.checkpoints > 0, "background flushes ran");
    drop(s);
    let (s, _) = Store::open(tmp.path(), c).unwrap();
    assert_matches(&s, &model);
}

/// Writers racing with `stats`, `count` and snapshots must never deadlock (a lock-order
/// inversion between the commit and visible-state locks once hung the server under load).
#[test]
fn store_writers_and_stats_readers_never_deadlock() {
    let dir = MemDirectory::new();
    let s = Arc::new(mem_store(&dir));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let mut hs = Vec::new();
    for t in 0..4u64 {
        let (s, tx) = (Arc::clone(&s), tx.clone());
        hs.push(std::thread::spawn(move || {
            for k in 0..400u64 {
                s.insert(rec(&format!("W{t}-{k}"), t * 1000 + k)).unwrap();
            }
            tx.send(()).unwrap();
        }));
    }
    for _ in 0..2 {
        let (s, done) = (Arc::clone(&s), Arc::clone(&done));
        hs.push(std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let st = s.stats();
                assert!(st.records <= 1600 && !st.failed);
                let _ = (s.count(), s.snapshot());
            }
        }));
    }
    for _ in 0..4 {
        rx.recv_timeout(std::time::Duration::from_secs(120))
            .expect("writers stalled: deadlock between inserts and stats readers");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(s.count(), 1600);
}

/// Prints inserts/s with one writer and with 8 concurrent writers on the real filesystem.
/// Timing is reported, never asserted.
#[test]
fn store_group_commit_throughput() {
    let n: usize = std::env::var("ABIS_STORE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let records: Vec<Record> = (0..2 * n)
        .map(|i| synthetic_record(&format!("G{i:07}"), i as u64, 10, 1, 192))
        .collect();
    let bytes: usize = records
        .iter()
        .map(|r| r.encode().unwrap().len())
        .sum::<usize>()
        / records.len();
    let mut c = StoreConfig::new(192);
    c.background = false;
    for writers in [1usize, 8] {
        let tmp = tempfile::tempdir().unwrap();
        let (s, _) = Store::open(tmp.path(), c.clone()).unwrap();
        let s = Arc::new(s);
        let t0 = Instant::now();
        std::thread::scope(|sc| {
            for w in 0..writers {
                let s = Arc::clone(&s);
                let recs = &records;
                sc.spawn(move || {
                    for r in recs.iter().skip(w).step_by(writers).take(n / writers) {
                        s.insert(r.clone()).unwrap();
                    }
                });
            }
        });
        let dt = t0.elapsed();
        let st = s.stats();
        println!(
            "group commit: {writers} writer(s): {} inserts of {bytes} B in {:.3} s = {:.0} inserts/s, {} fsyncs ({:.1} entries/fsync)",
            st.wal_entries,
            dt.as_secs_f64(),
            st.wal_entries as f64 / dt.as_secs_f64(),
            st.wal_syncs,
            st.wal_entries as f64 / st.wal_syncs.max(1) as f64
        );
        assert_eq!(st.wal_entries as usize, n / writers * writers);
        assert!(st.wal_syncs <= st.wal_entries);
        drop(s);
        let t0 = Instant::now();
        let (s, report) = Store::open(tmp.path(), c.clone()).unwrap();
        println!(
            "recovery: replayed {} log entries ({} records) in {:.1} ms",
            report.entries_replayed,
            s.count(),
            t0.elapsed().as_secs_f64() * 1e3
        );
        assert_eq!(report.entries_replayed, st.wal_entries);
    }
}

#[test]
fn store_directory_trait_objects_are_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Store>();
    check::<abis_engine::store::Snapshot>();
    check::<MemDirectory>();
    let d: Arc<dyn Directory> = Arc::new(MemDirectory::new());
    assert!(d.list().unwrap().is_empty());
}

/// The log file of a store that has not checkpointed yet.
fn wal_file(dir: &MemDirectory) -> String {
    dir.list()
        .unwrap()
        .into_iter()
        .find(|n| n.starts_with("wal-"))
        .expect("a log file")
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Arbitrary bytes after acknowledged entries (a torn or damaged tail, or garbage) give a
    /// typed error or a store that still holds every acknowledged record: never a panic, never
    /// a lost record (the `store_wal` fuzz target explores the same property further).
    #[test]
    fn store_recovery_over_an_arbitrary_log_tail(
        tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        copy_of_entry in proptest::prelude::any::<bool>(),
    ) {
        let dir = MemDirectory::new();
        {
            let s = mem_store(&dir);
            s.insert(rec("W-1", 1)).unwrap();
            s.insert(rec("W-2", 2)).unwrap();
        }
        let wal = wal_file(&dir);
        let mut bytes = tail;
        if copy_of_entry {
            // A damaged copy of a real entry reaches deeper into the entry parser.
            let log = dir.read(&wal).unwrap();
            let mut entry = log[log.len() / 2..].to_vec();
            let n = entry.len();
            for (i, b) in bytes.iter().enumerate().take(n) {
                entry[(i * 7) % n] ^= b;
            }
            bytes = entry;
        }
        dir.append_durable(&wal, &bytes).unwrap();
        if let Ok((s, _)) = Store::open_in(Arc::new(dir.clone()), cfg()) {
            for (id, seed) in [("W-1", 1), ("W-2", 2)] {
                let got = s.get(id).unwrap();
                proptest::prop_assert!(got.is_some_and(|r| r.same_content(&rec(id, seed))));
            }
        }
    }
}

/// A companion that writes the name of the thread that built it, to see where checkpoints run.
#[derive(Debug)]
struct ThreadNameCompanion;

impl abis_engine::store::Companion for ThreadNameCompanion {
    fn extensions(&self) -> &'static [&'static str] {
        &["thread"]
    }

    fn build<'a>(
        &self,
        _segment: &abis_engine::store::SegmentView,
        _origin: &(dyn Fn(usize) -> abis_engine::store::Origin<'a> + Sync + 'a),
        outs: &mut [Box<dyn abis_engine::store::FileWriter>],
    ) -> Result<(), abis_engine::store::CompanionError> {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        let nice = abis_engine::priority::current_thread_nice().unwrap();
        outs[0]
            .write_all(format!("{name} nice {nice}").as_bytes())
            .map_err(abis_engine::store::CompanionError::new)
    }

    fn open(
        &self,
        _segment: &abis_engine::store::SegmentView,
        _files: Vec<abis_engine::store::FileBytes>,
    ) -> Result<abis_engine::store::CompanionData, abis_engine::store::CompanionError> {
        Ok(Arc::new(()))
    }
}

/// Flushes and merges build in the store's own checkpoint pool, not in the pool searches share
/// (where a merge's work would queue ahead of theirs), at the background niceness.
#[test]
fn checkpoints_build_in_their_own_thread_pool() {
    let dir = MemDirectory::new();
    let mut c = cfg();
    c.companion = Some(Arc::new(ThreadNameCompanion));
    c.checkpoint_threads = 1;
    c.background_nice = 9;
    let s = Store::open_in(Arc::new(dir.clone()), c).unwrap().0;
    for round in 0..2u64 {
        for i in 0..10u64 {
            s.insert(rec(&format!("T{round}{i:02}"), i)).unwrap();
        }
        s.flush().unwrap();
    }
    s.compact().unwrap();
    let built: Vec<String> = dir
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".thread"))
        .collect();
    assert_eq!(built.len(), 1, "{built:?}");
    for name in built {
        let thread = String::from_utf8(dir.read(&name).unwrap()).unwrap();
        let (thread, nice) = thread.split_once(" nice ").unwrap();
        assert_eq!(
            thread, "abis-checkpoint-0",
            "{name} built on thread {thread:?}"
        );
        // At least 9: a test process started nicer than that may not lower it.
        assert!(
            nice.parse::<i32>().unwrap() >= 9,
            "{name} built at niceness {nice}"
        );
    }
}
