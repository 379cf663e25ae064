//! An in-memory [`Directory`] that models a power loss: synced bytes and synced directory
//! entries survive [`MemDirectory::crash`], everything else is lost (or, in the torn mode, a
//! random prefix of the unsynced bytes survives with some of it zeroed, as out-of-order page
//! write-back can leave it). Also injects fsync failures.
//!
//! A handle is bound to the "boot" it was made in: after a crash every operation through an old
//! handle (and its open files) fails, as the dead process would; [`MemDirectory::reboot`] gives
//! a handle for the next boot.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use super::dir::{check_name, growing_truncation, Directory, FileBytes, FileWriter};

/// What happens to bytes written but not yet synced when the power goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// All unsynced bytes are lost.
    DropUnsynced,
    /// A random prefix of each file's unsynced bytes survives, with random 512-byte sectors of
    /// it zeroed.
    TornUnsynced { seed: u64 },
}

#[derive(Default)]
struct MemFile {
    data: Vec<u8>,
    synced: usize,
}

#[derive(Default)]
struct MemFs {
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    files: HashMap<u64, MemFile>,
    next_ino: u64,
    boot: u64,
    ops: u64,
    syncs: u64,
    crash_at_op: Option<(u64, CrashMode)>,
    fail_sync_from: Option<u64>,
}

/// Fault-injecting in-memory directory (tests and benches only; see the module docs).
#[derive(Clone, Default)]
pub struct MemDirectory {
    fs: Arc<Mutex<MemFs>>,
    boot: u64,
}

impl std::fmt::Debug for MemDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemDirectory(boot {})", self.boot)
    }
}

fn dead() -> io::Error {
    io::Error::other("simulated power loss: this boot is over")
}

fn not_found() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "no such file")
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl MemFs {
    fn crash(&mut self, mode: CrashMode) {
        self.names = self.durable_names.clone();
        let live: std::collections::HashSet<u64> = self.names.values().copied().collect();
        self.files.retain(|ino, _| live.contains(ino));
        let mut rng = Rng(match mode {
            CrashMode::DropUnsynced => 0,
            CrashMode::TornUnsynced { seed } => seed,
        });
        let mut inos: Vec<u64> = self.files.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            let Some(f) = self.files.get_mut(&ino) else {
                continue;
            };
            match mode {
                CrashMode::DropUnsynced => f.data.truncate(f.synced),
                CrashMode::TornUnsynced { .. } => {
                    let extra = f.data.len() - f.synced;
                    let keep = if extra == 0 {
                        0
                    } else {
                        (rng.next() % (extra as u64 + 1)) as usize
                    };
                    f.data.truncate(f.synced + keep);
                    let start = f.synced;
                    let mut s = start;
                    while s < f.data.len() {
                        let e = (s + 512).min(f.data.len());
                        if rng.next().is_multiple_of(4) {
                            f.data[s..e].fill(0);
                        }
                        s = e;
                    }
                    f.synced = f.data.len();
                }
            }
        }
        self.boot += 1;
        self.crash_at_op = None;
        self.fail_sync_from = None;
    }
}

impl MemDirectory {
    pub fn new() -> Self {
        MemDirectory::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemFs> {
        // A poisoned lock only means a test thread panicked; the state is still coherent.
        self.fs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the state for an operation of this boot, counting it and crashing when the
    /// armed crash point is reached (the operation then does not happen).
    fn op(&self, mutating: bool) -> io::Result<MutexGuard<'_, MemFs>> {
        let mut fs = self.lock();
        if fs.boot != self.boot {
            return Err(dead());
        }
        if mutating {
            fs.ops += 1;
            if let Some((at, mode)) = fs.crash_at_op {
                if fs.ops >= at {
                    fs.crash(mode);
                    return Err(dead());
                }
            }
        }
        Ok(fs)
    }

    /// Power loss now.
    pub fn crash(&self, mode: CrashMode) {
        self.lock().crash(mode);
    }

    /// Arms a power loss at the `n`-th mutating operation from now (writes, syncs, creates,
    /// renames, removals, truncations); that operation fails and does not happen.
    pub fn crash_after_ops(&self, n: u64, mode: CrashMode) {
        let mut fs = self.lock();
        let at = fs.ops + n.max(1);
        fs.crash_at_op = Some((at, mode));
    }

    /// Makes the `n`-th file or directory sync from now, and every later one, fail with EIO.
    pub fn fail_syncs_after(&self, n: u64) {
        let mut fs = self.lock();
        fs.fail_sync_from = Some(fs.syncs + n.max(1));
    }

    /// A handle for the current boot (after a crash: the machine came back up).
    pub fn reboot(&self) -> MemDirectory {
        let boot = self.lock().boot;
        MemDirectory {
            fs: Arc::clone(&self.fs),
            boot,
        }
    }

    /// Mutating operations performed so far (to pick crash points).
    pub fn op_count(&self) -> u64 {
        self.lock().ops
    }

    /// Flips bits of a byte in place (corruption tests); durable immediately.
    pub fn corrupt_byte(&self, name: &str, offset: usize, xor: u8) -> io::Result<()> {
        let mut fs = self.lock();
        let ino = *fs.names.get(name).ok_or_else(not_found)?;
        let f = fs.files.get_mut(&ino).ok_or_else(not_found)?;
        let b = f.data.get_mut(offset).ok_or_else(not_found)?;
        *b ^= xor;
        Ok(())
    }

    /// Appends bytes durably (builds a damaged tail in tests).
    pub fn append_durable(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut fs = self.lock();
        let ino = *fs.names.get(name).ok_or_else(not_found)?;
        let f = fs.files.get_mut(&ino).ok_or_else(not_found)?;
        f.data.extend_from_slice(bytes);
        f.synced = f.data.len();
        Ok(())
    }

    /// Current length of `name`.
    pub fn file_len(&self, name: &str) -> Option<usize> {
        let fs = self.lock();
        let ino = fs.names.get(name)?;
        fs.files.get(ino).map(|f| f.data.len())
    }
}

struct MemWriter {
    dir: MemDirectory,
    ino: u64,
}

impl FileWriter for MemWriter {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut fs = self.dir.op(true)?;
        let f = fs.files.get_mut(&self.ino).ok_or_else(not_found)?;
        f.data.extend_from_slice(buf);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut fs = self.dir.op(true)?;
        fs.syncs += 1;
        if fs.fail_sync_from.is_some_and(|n| fs.syncs >= n) {
            return Err(io::Error::other("injected fsync failure"));
        }
        let f = fs.files.get_mut(&self.ino).ok_or_else(not_found)?;
        f.synced = f.data.len();
        Ok(())
    }
}

impl Directory for MemDirectory {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.op(false)?.names.keys().cloned().collect())
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn FileWriter>> {
        check_name(name)?;
        let mut fs = self.op(true)?;
        fs.next_ino += 1;
        let ino = fs.next_ino;
        fs.files.insert(ino, MemFile::default());
        fs.names.insert(name.to_owned(), ino);
        Ok(Box::new(MemWriter {
            dir: self.clone(),
            ino,
        }))
    }

    fn append(&self, name: &str) -> io::Result<Box<dyn FileWriter>> {
        let fs = self.op(false)?;
        let ino = *fs.names.get(name).ok_or_else(not_found)?;
        Ok(Box::new(MemWriter {
            dir: self.clone(),
            ino,
        }))
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let fs = self.op(false)?;
        let ino = fs.names.get(name).ok_or_else(not_found)?;
        Ok(fs.files.get(ino).ok_or_else(not_found)?.data.clone())
    }

    fn map(&self, name: &str) -> io::Result<FileBytes> {
        let fs = self.op(false)?;
        let ino = fs.names.get(name).ok_or_else(not_found)?;
        Ok(FileBytes::from_slice(
            &fs.files.get(ino).ok_or_else(not_found)?.data,
        ))
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let mut fs = self.op(true)?;
        let ino = *fs.names.get(name).ok_or_else(not_found)?;
        let f = fs.files.get_mut(&ino).ok_or_else(not_found)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= f.data.len())
            .ok_or_else(growing_truncation)?;
        f.data.truncate(len);
        f.synced = f.synced.min(len);
        // The truncation itself is durable (the contract); bytes before `len` that were not
        // yet synced stay unsynced.
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        check_name(to)?;
        let mut fs = self.op(true)?;
        let ino = fs.names.remove(from).ok_or_else(not_found)?;
        fs.names.insert(to.to_owned(), ino);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut fs = self.op(true)?;
        fs.names.remove(name).ok_or_else(not_found)?;
        Ok(())
    }

    fn stored_len(&self, name: &str) -> io::Result<u64> {
        Ok(self.read(name)?.len() as u64)
    }

    /// A copy on the real filesystem (there is nothing to link to).
    fn export(&self, name: &str, dest: &std::path::Path, len: u64, _link: bool) -> io::Result<()> {
        super::dir::write_new(dest, &self.read(name)?[..], len)
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut fs = self.op(true)?;
        fs.syncs += 1;
        if fs.fail_sync_from.is_some_and(|n| fs.syncs >= n) {
            return Err(io::Error::other("injected fsync failure"));
        }
        fs.durable_names = fs.names.clone();
        let fs = &mut *fs;
        let names = &fs.names;
        fs.files.retain(|ino, _| names.values().any(|i| i == ino));
        Ok(())
    }
}
