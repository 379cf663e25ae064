//! One suite of the `Directory` contract, run over every implementation: the real filesystem
//! (`FsDirectory`), the fault-injecting in-memory directory the crash tests use
//! (`MemDirectory`), and encryption at rest over each. The power-loss simulator is only evidence
//! about the real store if it behaves like the real filesystem, so every check runs on all four.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::Arc;

use abis_engine::store::encryption::{EncryptedDirectory, Keyring};
use abis_engine::store::{Directory, FsDirectory, MemDirectory};

/// A directory under test, and a way to open it again as after a clean restart (everything
/// synced survives).
trait Subject {
    fn dir(&self) -> Arc<dyn Directory>;
    fn reopen(&mut self);
}

struct Fs {
    path: PathBuf,
    _tmp: tempfile::TempDir,
    dir: Option<Arc<dyn Directory>>,
    encrypted: bool,
}

struct Mem {
    mem: MemDirectory,
    encrypted: bool,
}

fn keys() -> Keyring {
    Keyring::from_keys(&[[7u8; 32]]).expect("keyring")
}

fn wrap(inner: Arc<dyn Directory>, encrypted: bool) -> Arc<dyn Directory> {
    if encrypted {
        Arc::new(EncryptedDirectory::new(inner, keys()))
    } else {
        inner
    }
}

impl Subject for Fs {
    fn dir(&self) -> Arc<dyn Directory> {
        Arc::clone(self.dir.as_ref().expect("open"))
    }
    fn reopen(&mut self) {
        self.dir = None; // releases the lock
        let fs = FsDirectory::open(&self.path).expect("reopen");
        self.dir = Some(wrap(Arc::new(fs), self.encrypted));
    }
}

impl Subject for Mem {
    fn dir(&self) -> Arc<dyn Directory> {
        wrap(Arc::new(self.mem.clone()), self.encrypted)
    }
    fn reopen(&mut self) {
        self.mem = self.mem.reboot();
    }
}

fn subjects() -> Vec<(&'static str, Box<dyn Subject>)> {
    let fs = |encrypted| {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("store");
        let mut s = Fs {
            path,
            _tmp: tmp,
            dir: None,
            encrypted,
        };
        s.reopen();
        Box::new(s) as Box<dyn Subject>
    };
    let mem = |encrypted| {
        Box::new(Mem {
            mem: MemDirectory::new(),
            encrypted,
        }) as Box<dyn Subject>
    };
    vec![
        ("fs", fs(false)),
        ("fs+encrypted", fs(true)),
        ("mem", mem(false)),
        ("mem+encrypted", mem(true)),
    ]
}

/// Writes `bytes` to a new file `name`, synced, with the directory entry synced.
fn put(dir: &dyn Directory, name: &str, bytes: &[u8]) {
    let mut w = dir.create(name).expect("create");
    w.write_all(bytes).expect("write");
    w.sync().expect("sync");
    dir.sync_dir().expect("sync dir");
}

fn names(dir: &dyn Directory) -> Vec<String> {
    let mut n = dir.list().expect("list");
    n.retain(|n| n != "LOCK");
    n.sort();
    n
}

/// Bytes that are not all alike, and longer than one encryption frame when `len` is large.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn for_each(check: impl Fn(&str, &mut dyn Subject)) {
    for (name, mut subject) in subjects() {
        check(name, subject.as_mut());
    }
}

#[test]
fn written_bytes_read_back_and_map_aligned() {
    for_each(|kind, s| {
        let dir = s.dir();
        for (name, len) in [("empty", 0), ("small", 100), ("large", 700_000)] {
            let bytes = pattern(len, 3);
            put(dir.as_ref(), name, &bytes);
            assert_eq!(dir.read(name).unwrap(), bytes, "{kind}: read {name}");
            let mapped = dir.map(name).unwrap();
            assert_eq!(mapped.len(), len, "{kind}: map {name}");
            assert_eq!(
                &mapped.read(0..len).unwrap()[..],
                &bytes[..],
                "{kind}: map {name}"
            );
            if let Some(whole) = mapped.whole() {
                assert!(
                    (whole.as_ptr() as usize).is_multiple_of(64) || whole.is_empty(),
                    "{kind}: {name} mapped unaligned"
                );
            }
            // Ranges inside one block, across blocks, at the ends; a resident copy aligned.
            for (a, b) in [
                (0, 1),
                (16_380, 16_400),
                (5, 70_000),
                (len / 2, len),
                (len, len),
            ] {
                if b <= len {
                    let got = mapped.read(a..b).unwrap();
                    assert_eq!(&got[..], &bytes[a..b], "{kind}: {name} {a}..{b}");
                    let copy = mapped.copy_range(a..b).unwrap();
                    assert_eq!(copy.whole(), Some(&bytes[a..b]), "{kind}: {name} {a}..{b}");
                }
            }
            assert!(
                mapped.read(0..len + 1).is_err(),
                "{kind}: read past the end"
            );
        }
        assert_eq!(names(dir.as_ref()), ["empty", "large", "small"], "{kind}");
    });
}

#[test]
fn append_continues_a_file_and_create_replaces_it() {
    for_each(|kind, s| {
        let dir = s.dir();
        put(dir.as_ref(), "log", b"first ");
        let mut w = dir.append("log").unwrap();
        w.write_all(b"second").unwrap();
        w.sync().unwrap();
        drop(w);
        assert_eq!(dir.read("log").unwrap(), b"first second", "{kind}");
        put(dir.as_ref(), "log", b"new");
        assert_eq!(dir.read("log").unwrap(), b"new", "{kind}: create replaces");
    });
}

#[test]
fn truncate_shrinks_and_never_grows() {
    for_each(|kind, s| {
        let dir = s.dir();
        let bytes = pattern(300_000, 9);
        put(dir.as_ref(), "t", &bytes);
        dir.truncate("t", 123_457).unwrap();
        assert_eq!(dir.read("t").unwrap(), &bytes[..123_457], "{kind}");
        dir.truncate("t", 123_457).unwrap();
        assert_eq!(dir.read("t").unwrap().len(), 123_457, "{kind}: same length");
        let grow = dir.truncate("t", 200_000).unwrap_err();
        assert_eq!(grow.kind(), ErrorKind::InvalidInput, "{kind}: {grow}");
        dir.truncate("t", 0).unwrap();
        assert!(dir.read("t").unwrap().is_empty(), "{kind}");
        let mut w = dir.append("t").unwrap();
        w.write_all(b"again").unwrap();
        w.sync().unwrap();
        drop(w);
        assert_eq!(
            dir.read("t").unwrap(),
            b"again",
            "{kind}: append after truncate"
        );
    });
}

#[test]
fn rename_replaces_the_target_and_remove_forgets() {
    for_each(|kind, s| {
        let dir = s.dir();
        put(dir.as_ref(), "a", b"A");
        put(dir.as_ref(), "b", b"B");
        dir.rename("a", "b").unwrap();
        dir.sync_dir().unwrap();
        assert_eq!(dir.read("b").unwrap(), b"A", "{kind}");
        assert_eq!(names(dir.as_ref()), ["b"], "{kind}");
        dir.remove("b").unwrap();
        dir.sync_dir().unwrap();
        assert!(names(dir.as_ref()).is_empty(), "{kind}");
    });
}

#[test]
fn missing_files_are_not_found_everywhere() {
    for_each(|kind, s| {
        let dir = s.dir();
        let kinds = [
            dir.read("nope").map(drop).unwrap_err().kind(),
            dir.map("nope").map(drop).unwrap_err().kind(),
            dir.append("nope").map(drop).unwrap_err().kind(),
            dir.truncate("nope", 0).unwrap_err().kind(),
            dir.rename("nope", "x").unwrap_err().kind(),
            dir.remove("nope").unwrap_err().kind(),
        ];
        assert!(
            kinds.iter().all(|k| *k == ErrorKind::NotFound),
            "{kind}: {kinds:?}"
        );
    });
}

#[test]
fn bad_names_are_refused() {
    for_each(|kind, s| {
        let dir = s.dir();
        for name in ["", ".", "..", "a/b", "../escape"] {
            let e = dir.create(name).map(drop).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{kind}: {name:?}: {e}");
        }
    });
}

#[test]
fn synced_files_survive_a_restart() {
    for_each(|kind, s| {
        let dir = s.dir();
        let big = pattern(500_000, 1);
        put(dir.as_ref(), "seg", &big);
        put(dir.as_ref(), "meta", b"meta v1");
        put(dir.as_ref(), "tmp", b"meta v2");
        dir.rename("tmp", "meta").unwrap();
        dir.sync_dir().unwrap();
        let mut w = dir.append("seg").unwrap();
        w.write_all(b"tail").unwrap();
        w.sync().unwrap();
        drop((w, dir));
        s.reopen();
        let dir = s.dir();
        assert_eq!(names(dir.as_ref()), ["meta", "seg"], "{kind}");
        assert_eq!(dir.read("meta").unwrap(), b"meta v2", "{kind}");
        let seg = dir.read("seg").unwrap();
        assert_eq!(&seg[..big.len()], &big[..], "{kind}");
        assert_eq!(&seg[big.len()..], b"tail", "{kind}");
    });
}
