//! Consistent copies of a live store (`Store::checkpoint_to`, `Gallery::checkpoint_to`), moving
//! a copy into place (`install`, `repair_install`), and merges of a subset of segments through
//! the merge policy seam.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use abis_engine::gallery::Gallery;
use abis_engine::matcher::Matcher;
use abis_engine::store::encryption::Keyring;
use abis_engine::store::synth::synthetic_record;
use abis_engine::store::{
    incoming_path, install, is_copy_file, repair_install, FingerEntry, MergePolicy, Record,
    SegmentSummary, Store, StoreConfig,
};
use abis_engine::synth::{person_seed, MasterFinger};
use abis_engine::template::{encode_native, FingerPosition};

const DIM: usize = 32;

fn cfg() -> StoreConfig {
    let mut c = StoreConfig::new(DIM);
    c.background = false;
    c
}

fn rec(id: &str, seed: u64) -> Record {
    synthetic_record(id, seed, 1 + (seed % 3) as usize, 1, DIM)
}

fn contents(store: &Store) -> BTreeMap<String, Vec<u8>> {
    let snap = store.snapshot();
    snap.reference_ids()
        .map(|id| {
            let r = store.get(id).unwrap().unwrap();
            (id.to_owned(), r.encode().unwrap())
        })
        .collect()
}

/// Fills a store with segments, deletions and log records, copies it, writes more, and checks
/// that the copy opens to exactly the state at the copy.
fn copy_holds_exactly_the_acknowledged_state(cfg: StoreConfig) {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dest) = (tmp.path().join("gallery"), tmp.path().join("copy"));
    let (store, _) = Store::open(&src, cfg.clone()).unwrap();
    for i in 0..60 {
        store.insert(rec(&format!("A-{i}"), i)).unwrap();
    }
    store.flush().unwrap();
    for i in 0..25 {
        store.insert(rec(&format!("B-{i}"), 100 + i)).unwrap();
    }
    for i in 0..5 {
        store.delete(&format!("A-{i}")).unwrap();
    }
    let before = contents(&store);
    let copy = store.checkpoint_to(&dest).unwrap();
    // Writes after the copy are not in it.
    for i in 0..10 {
        store.insert(rec(&format!("C-{i}"), 200 + i)).unwrap();
    }
    store.delete("A-7").unwrap();
    for f in &copy.files {
        assert!(is_copy_file(&f.name, None), "{}", f.name);
        let on_disk = std::fs::metadata(dest.join(&f.name)).unwrap().len();
        assert_eq!(on_disk, f.size, "{}", f.name);
    }
    assert!(copy.files.iter().any(|f| f.name == "meta.abis"));
    let (copied, _) = Store::open(&dest, cfg).unwrap();
    assert_eq!(contents(&copied), before);
    assert_eq!(copied.count(), 80);
    assert_eq!(store.count(), 89);
}

#[test]
fn a_copy_of_a_live_store_holds_exactly_what_was_acknowledged() {
    copy_holds_exactly_the_acknowledged_state(cfg());
}

#[test]
fn a_copy_of_a_sealed_store_stays_sealed_and_opens_with_the_key() {
    let mut c = cfg();
    c.encryption = Some(Keyring::from_keys(&[[7u8; 32]]).unwrap());
    copy_holds_exactly_the_acknowledged_state(c.clone());
    // Without the key the copy does not open.
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path().join("g"), c).unwrap();
    store.insert(rec("X-1", 1)).unwrap();
    store.checkpoint_to(&tmp.path().join("copy")).unwrap();
    assert!(Store::open(tmp.path().join("copy"), cfg()).is_err());
}

#[test]
fn a_copy_never_replaces_an_existing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path().join("g"), cfg()).unwrap();
    std::fs::create_dir(tmp.path().join("copy")).unwrap();
    assert!(store.checkpoint_to(&tmp.path().join("copy")).is_err());
}

fn finger_record(person: u64) -> Record {
    Record {
        reference_id: format!("P-{person:04}"),
        fingers: [1u8, 2, 6, 7]
            .iter()
            .map(|&p| FingerEntry {
                position: FingerPosition::new(p).unwrap(),
                template: encode_native(
                    &MasterFinger::generate(person_seed(5, person), p).impression(0),
                )
                .unwrap(),
            })
            .collect(),
        ..Record::default()
    }
}

#[test]
fn a_gallery_copy_carries_its_index_files_and_opens_without_rebuilding() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dest) = (tmp.path().join("gallery"), tmp.path().join("copy"));
    let (g, _) = Gallery::open(&src, cfg(), Matcher::new(), None).unwrap();
    for p in 0..30 {
        g.insert(finger_record(p)).unwrap();
    }
    g.store().flush().unwrap();
    for p in 30..40 {
        g.insert(finger_record(p)).unwrap();
    }
    let copy = g.checkpoint_to(&dest).unwrap();
    let names: Vec<&str> = copy.files.iter().map(|f| f.name.as_str()).collect();
    assert!(names.iter().any(|n| n.ends_with(".fcodes")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with(".fforms")), "{names:?}");
    assert!(
        names.iter().all(|n| Gallery::is_gallery_file(n)),
        "{names:?}"
    );
    let (copied, report) = Gallery::open(&dest, cfg(), Matcher::new(), None).unwrap();
    assert_eq!(report.companions_missing, 0);
    assert!(copied.index_ready());
    assert_eq!(copied.store().count(), 40);
}

#[test]
fn only_names_of_store_files_are_accepted_in_a_copy() {
    for ok in [
        "meta.abis",
        "wal-0000000003.log",
        "seg-0000000001.seg",
        "del-1-2.bits",
        "seg-0000000001.fcodes",
        "seg-0000000001.fforms",
    ] {
        assert!(Gallery::is_gallery_file(ok), "{ok}");
    }
    for bad in [
        "LOCK",
        "meta.abis.tmp",
        "../meta.abis",
        "seg-1/../../x.seg",
        ".seg-1.seg",
        "wal-1.log/x",
        "seg-0000000001.fcodes.tmp",
        "seg-0000000001.other",
    ] {
        assert!(!Gallery::is_gallery_file(bad), "{bad}");
    }
    assert!(!is_copy_file("seg-0000000001.fcodes", None));
}

#[test]
fn install_swaps_a_copy_in_and_repair_undoes_an_interrupted_swap() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gallery");
    let write = |d: &Path, text: &str| {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("meta.abis"), text).unwrap();
    };
    let read = |d: &Path| std::fs::read_to_string(d.join("meta.abis")).unwrap();
    write(&dir, "old");
    write(&incoming_path(&dir), "new");
    install(&incoming_path(&dir), &dir).unwrap();
    assert_eq!(read(&dir), "new");
    assert!(!incoming_path(&dir).exists());
    // A crash after the old directory went aside and before the copy came in.
    std::fs::rename(&dir, dir.with_extension("replaced")).unwrap();
    write(&incoming_path(&dir), "half");
    repair_install(&dir).unwrap();
    assert_eq!(read(&dir), "new");
    assert!(!incoming_path(&dir).exists() && !dir.with_extension("replaced").exists());
}

/// Merges the two oldest segments once there are three.
#[derive(Debug)]
struct OldestTwo;

impl MergePolicy for OldestTwo {
    fn pick(&self, segments: &[SegmentSummary]) -> Vec<usize> {
        if segments.len() >= 3 {
            vec![0, 1]
        } else {
            Vec::new()
        }
    }
}

#[test]
fn a_policy_may_merge_some_segments_and_keep_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg();
    c.merge_policy = Some(Arc::new(OldestTwo));
    let (store, _) = Store::open(tmp.path().join("g"), c.clone()).unwrap();
    for batch in 0..3u64 {
        for i in 0..20 {
            store
                .insert(rec(&format!("S{batch}-{i}"), batch * 100 + i))
                .unwrap();
        }
        store.flush().unwrap();
    }
    store.delete("S0-3").unwrap();
    store.delete("S2-4").unwrap();
    let want = contents(&store);
    assert_eq!(store.stats().segments, 3);
    // The flush writes the deletions; then the policy merges the two oldest into a new one.
    store.flush().unwrap();
    let report = store.compact_by_policy().unwrap();
    assert_eq!(report.segments_after, 2);
    assert_eq!(contents(&store), want);
    drop(store);
    let (reopened, _) = Store::open(tmp.path().join("g"), c).unwrap();
    assert_eq!(reopened.stats().segments, 2);
    assert_eq!(contents(&reopened), want);
    assert_eq!(reopened.count(), 58);
}

#[test]
fn a_backup_is_verified_file_by_file_and_restores_the_same_gallery() {
    use abis_engine::store::backup::{BackupError, Tree, MANIFEST};
    let tmp = tempfile::tempdir().unwrap();
    let (src, dest) = (tmp.path().join("gallery"), tmp.path().join("backup"));
    let (g, _) = Gallery::open(&src, cfg(), Matcher::new(), None).unwrap();
    for p in 0..30 {
        g.insert(finger_record(p)).unwrap();
    }
    g.store().flush().unwrap();
    for p in 30..36 {
        g.insert(finger_record(p)).unwrap();
    }
    // A directory kept beside the store (the server's cases), with a write in progress.
    let cases = tmp.path().join("cases");
    std::fs::create_dir(&cases).unwrap();
    std::fs::write(cases.join("a.case"), b"case a").unwrap();
    std::fs::write(cases.join("b.case"), b"case b").unwrap();
    std::fs::write(cases.join("c.case.tmp"), b"torn").unwrap();
    let trees = [
        Tree {
            name: "cases".into(),
            dir: cases.clone(),
        },
        Tree {
            name: "images".into(),
            dir: tmp.path().join("no-images"),
        },
    ];
    let manifest = g.backup_to(&dest, &trees).unwrap();
    g.insert(finger_record(99)).unwrap();
    assert_eq!(Gallery::verify_backup(&dest).unwrap(), manifest);
    assert!(manifest.files.iter().any(|f| f.name.ends_with(".fcodes")));
    let tree_files: Vec<&str> = manifest.trees.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(tree_files, ["cases/a.case", "cases/b.case"]);

    // Restored: the same records, index files opened, not rebuilt; the tree beside them.
    let restored_dir = tmp.path().join("restored");
    let restored_root = tmp.path().join("restored-data");
    assert!(matches!(
        Gallery::restore_backup(&dest, &restored_dir, None),
        Err(BackupError::NoPlaceForTrees { .. })
    ));
    Gallery::restore_backup(&dest, &restored_dir, Some(&restored_root)).unwrap();
    assert_eq!(
        std::fs::read(restored_root.join("cases/b.case")).unwrap(),
        b"case b"
    );
    assert!(!restored_root.join("cases/c.case.tmp").exists());
    assert!(!restored_root.join("images").exists());
    let (restored, report) = Gallery::open(&restored_dir, cfg(), Matcher::new(), None).unwrap();
    assert_eq!(report.companions_missing, 0);
    assert_eq!(restored.store().count(), 36);
    assert!(restored.store().get("P-0099").unwrap().is_none());
    assert!(matches!(
        Gallery::restore_backup(&dest, &restored_dir, Some(&restored_root)),
        Err(BackupError::Occupied { .. })
    ));
    // A tree directory that is not empty is not overwritten either.
    assert!(matches!(
        Gallery::restore_backup(&dest, &tmp.path().join("r3"), Some(&restored_root)),
        Err(BackupError::Occupied { .. })
    ));
    assert!(!tmp.path().join("r3").join("meta.abis").exists());

    // A flipped byte in a tree file is found and named; so is a file added to a tree.
    let case = dest.join("cases/a.case");
    std::fs::write(&case, b"case A").unwrap();
    match Gallery::verify_backup(&dest) {
        Err(BackupError::Damaged { file, .. }) => assert_eq!(file, "cases/a.case"),
        other => panic!("{other:?}"),
    }
    std::fs::write(&case, b"case a").unwrap();
    std::fs::write(dest.join("cases/z.case"), b"?").unwrap();
    match Gallery::verify_backup(&dest) {
        Err(BackupError::Unlisted { file }) => assert_eq!(file, "cases/z.case"),
        other => panic!("{other:?}"),
    }
    std::fs::remove_file(dest.join("cases/z.case")).unwrap();
    Gallery::verify_backup(&dest).unwrap();

    // One flipped byte is found and named.
    let victim = manifest
        .files
        .iter()
        .find(|f| f.name.ends_with(".seg"))
        .unwrap();
    let path = dest.join(&victim.name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0x40;
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    match Gallery::verify_backup(&dest) {
        Err(BackupError::Damaged { file, .. }) => assert_eq!(file, victim.name),
        other => panic!("{other:?}"),
    }
    assert!(
        Gallery::restore_backup(&dest, &tmp.path().join("r2"), Some(&tmp.path().join("d2")))
            .is_err()
    );
    assert!(!tmp.path().join("r2").join("meta.abis").exists());

    // A file the manifest does not name, and a backup without its manifest.
    std::fs::write(&path, b"").unwrap();
    std::fs::write(dest.join("seg-0000000099.seg"), b"x").unwrap();
    assert!(Gallery::verify_backup(&dest).is_err());
    std::fs::remove_file(dest.join(MANIFEST)).unwrap();
    assert!(matches!(
        Gallery::verify_backup(&dest),
        Err(BackupError::Incomplete { .. })
    ));
}
