//! Merges under a merge policy: none starts when the filesystem lacks room for its output.

use std::io;
use std::path::Path;
use std::sync::Arc;

use abis_engine::store::synth::synthetic_record;
use abis_engine::store::{
    Directory, FileBytes, FileWriter, FsDirectory, MergeAllAbove, Store, StoreConfig,
};

const DIM: usize = 32;

/// The real directory, reporting `free` bytes available.
#[derive(Debug)]
struct Cramped {
    inner: FsDirectory,
    free: u64,
}

impl Directory for Cramped {
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn create(&self, name: &str) -> io::Result<Box<dyn FileWriter>> {
        self.inner.create(name)
    }
    fn append(&self, name: &str) -> io::Result<Box<dyn FileWriter>> {
        self.inner.append(name)
    }
    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.inner.read(name)
    }
    fn map(&self, name: &str) -> io::Result<FileBytes> {
        self.inner.map(name)
    }
    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        self.inner.truncate(name, len)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }
    fn stored_len(&self, name: &str) -> io::Result<u64> {
        self.inner.stored_len(name)
    }
    fn export(&self, name: &str, dest: &Path, len: u64, link: bool) -> io::Result<()> {
        self.inner.export(name, dest, len, link)
    }
    fn available_bytes(&self) -> io::Result<Option<u64>> {
        Ok(Some(self.free))
    }
}

fn filled(free: u64, tmp: &Path) -> Store {
    let mut c = StoreConfig::new(DIM);
    c.background = false;
    c.merge_policy = Some(Arc::new(MergeAllAbove { max_segments: 2 }));
    let dir = Cramped {
        inner: FsDirectory::open(tmp).unwrap(),
        free,
    };
    let (store, _) = Store::open_in(Arc::new(dir), c).unwrap();
    for s in 0..3u64 {
        for i in 0..20 {
            let id = format!("S{s}-{i}");
            store
                .insert(synthetic_record(&id, s * 100 + i, 2, 1, DIM))
                .unwrap();
        }
        store.flush().unwrap();
    }
    store
}

#[test]
fn a_merge_waits_for_disk_space_and_the_flush_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let store = filled(1024, tmp.path());
    store
        .insert(synthetic_record("late", 7, 2, 1, DIM))
        .unwrap();
    let r = store.compact_by_policy().unwrap();
    // The memtable was written, the three segments were not merged.
    assert_eq!(r.segment_records, 1);
    assert_eq!(store.stats().segments, 4);
    assert_eq!(store.count(), 61);

    let tmp = tempfile::tempdir().unwrap();
    let store = filled(u64::MAX, tmp.path());
    let r = store.compact_by_policy().unwrap();
    assert_eq!(r.segments_after, 1);
    assert_eq!(store.count(), 60);
}

#[test]
fn the_real_filesystem_reports_its_free_space() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = FsDirectory::open(tmp.path()).unwrap();
    assert!(dir.available_bytes().unwrap().is_some_and(|b| b > 0));
}
