//! The storage abstraction: the few file operations the store needs, so that the same code runs
//! on a real directory ([`FsDirectory`]) and on a fault-injecting in-memory one
//! ([`super::MemDirectory`]) that can lose unsynced writes.
//!
//! Durability contract (what the store relies on, and what `MemDirectory` models):
//! - bytes written to a file are durable only after [`FileWriter::sync`] returns;
//! - creating, renaming or removing a name is durable only after [`Directory::sync_dir`];
//! - [`Directory::truncate`] is durable when it returns;
//! - files are only ever appended to, truncated (torn WAL tail), renamed or removed; a file the
//!   store mapped is never modified again (segments and bitmaps are immutable once written).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// Lock file taken by [`FsDirectory::open`] so two processes never share a store.
pub const LOCK_FILE: &str = "LOCK";

/// A directory of named files.
pub trait Directory: Send + Sync + fmt::Debug {
    /// Names of the files in the directory.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Creates `name` empty (replacing any file of that name) for appending. A name is one path
    /// component, not `.` or `..` (else `InvalidInput`).
    fn create(&self, name: &str) -> io::Result<Box<dyn FileWriter>>;
    /// Opens an existing `name` for appending at its end.
    fn append(&self, name: &str) -> io::Result<Box<dyn FileWriter>>;
    /// Reads a whole file.
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;
    /// The file's bytes, memory-mapped where possible, always 64-byte aligned.
    fn map(&self, name: &str) -> io::Result<FileBytes>;
    /// Shrinks `name` to `len` bytes, durably; a `len` beyond the end is `InvalidInput`.
    fn truncate(&self, name: &str, len: u64) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes `name`.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes creations, renames and removals durable (fsync of the directory).
    fn sync_dir(&self) -> io::Result<()>;
    /// The file's length as stored (a sealed file's sealed length): what a copy of it takes.
    fn stored_len(&self, name: &str) -> io::Result<u64>;
    /// Puts the first `len` stored bytes of `name` at `dest`, a new path outside the directory
    /// (sealed files stay sealed): a hard link when `link`, `len` is the whole file and the
    /// filesystem allows, else a copy of exactly `len` bytes; fsynced either way.
    fn export(&self, name: &str, dest: &Path, len: u64, link: bool) -> io::Result<()>;
    /// Bytes free for new files on the directory's filesystem, when known.
    fn available_bytes(&self) -> io::Result<Option<u64>> {
        Ok(None)
    }
}

/// Writes `data` (at least `len` bytes) as the new file `dest`, `len` bytes of it, fsynced.
pub(crate) fn write_new(dest: &Path, data: impl io::Read, len: u64) -> io::Result<()> {
    let mut out = OpenOptions::new().write(true).create_new(true).open(dest)?;
    let copied = io::copy(&mut data.take(len), &mut out)?;
    if copied != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shorter than the length to copy",
        ));
    }
    out.sync_all()
}

/// An append-only file handle.
pub trait FileWriter: Send {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes every byte written so far durable (`fdatasync`).
    fn sync(&mut self) -> io::Result<()>;
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u8; 64]);

/// Heap bytes with 64-byte alignment, so sections can be viewed as `f32`/`u64` in place.
struct AlignedBuf {
    blocks: Vec<Block>,
    len: usize,
}

impl AlignedBuf {
    fn from_slice(data: &[u8]) -> Self {
        let mut blocks = vec![Block([0; 64]); data.len().div_ceil(64)];
        for (b, c) in blocks.iter_mut().zip(data.chunks(64)) {
            b.0[..c.len()].copy_from_slice(c);
        }
        AlignedBuf {
            blocks,
            len: data.len(),
        }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `blocks` is a contiguous allocation of `blocks.len() * 64` initialised bytes
        // (Block is repr(C) over a byte array, no padding) and `len <= blocks.len() * 64`.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<u8>(), self.len) }
    }
}

enum Repr {
    Map(memmap2::Mmap),
    Heap(AlignedBuf),
}

/// Read-only bytes of a file: a memory map, or an aligned heap copy.
pub struct FileBytes(Repr);

impl FileBytes {
    /// An aligned heap copy of `data`.
    pub fn from_slice(data: &[u8]) -> Self {
        FileBytes(Repr::Heap(AlignedBuf::from_slice(data)))
    }

    /// Whether the bytes are memory-mapped (rather than a heap copy).
    pub fn is_mapped(&self) -> bool {
        matches!(self.0, Repr::Map(_))
    }
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Map(m) => m,
            Repr::Heap(h) => h.as_slice(),
        }
    }
}

impl fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FileBytes({} bytes, mapped: {})",
            self.len(),
            self.is_mapped()
        )
    }
}

/// The names every [`Directory`] accepts: one path component, not `.` or `..`.
pub(crate) fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad store file name",
        ));
    }
    Ok(())
}

/// The error of a [`Directory::truncate`] that would grow a file.
pub(crate) fn growing_truncation() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "truncation beyond the end of the file",
    )
}

/// A real directory. Holds an exclusive lock on `LOCK` for its lifetime.
#[derive(Debug)]
pub struct FsDirectory {
    root: PathBuf,
    _lock: File,
}

impl FsDirectory {
    /// Opens (creating if needed) `root` and locks it; a second opener gets `WouldBlock`.
    pub fn open(root: &Path) -> io::Result<FsDirectory> {
        std::fs::create_dir_all(root)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(LOCK_FILE))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "store directory locked",
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        Ok(FsDirectory {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    fn p(&self, name: &str) -> io::Result<PathBuf> {
        check_name(name)?;
        Ok(self.root.join(name))
    }
}

struct FsFile(File);

impl FileWriter for FsFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Directory for FsDirectory {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.root)? {
            let e = e?;
            if e.file_type()?.is_file() {
                if let Some(n) = e.file_name().to_str() {
                    out.push(n.to_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn FileWriter>> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(self.p(name)?)?;
        Ok(Box::new(FsFile(f)))
    }

    fn append(&self, name: &str) -> io::Result<Box<dyn FileWriter>> {
        let f = OpenOptions::new().append(true).open(self.p(name)?)?;
        Ok(Box::new(FsFile(f)))
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.p(name)?)
    }

    fn map(&self, name: &str) -> io::Result<FileBytes> {
        let f = File::open(self.p(name)?)?;
        if f.metadata()?.len() == 0 {
            return Ok(FileBytes::from_slice(&[]));
        }
        // SAFETY: the store maps only files it wrote, synced and never modifies again
        // (segments); the directory is locked against other store processes. A file changed
        // behind the store's back is outside the contract (as for any mmap-based database).
        let m = unsafe { memmap2::Mmap::map(&f)? };
        Ok(FileBytes(Repr::Map(m)))
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(self.p(name)?)?;
        if len > f.metadata()?.len() {
            return Err(growing_truncation());
        }
        f.set_len(len)?;
        f.sync_all()
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.p(from)?, self.p(to)?)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.p(name)?)
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.root)?.sync_all()
    }

    fn stored_len(&self, name: &str) -> io::Result<u64> {
        Ok(std::fs::metadata(self.p(name)?)?.len())
    }

    fn export(&self, name: &str, dest: &Path, len: u64, link: bool) -> io::Result<()> {
        let src = self.p(name)?;
        if link && std::fs::metadata(&src)?.len() == len && std::fs::hard_link(&src, dest).is_ok() {
            return Ok(());
        }
        write_new(dest, File::open(&src)?, len)
    }

    fn available_bytes(&self) -> io::Result<Option<u64>> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.root.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))?;
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
        // SAFETY: `path` is a NUL-terminated C string that outlives the call and `st` points to
        // writable memory of the size of `statvfs`, which the call fills on success.
        let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: statvfs returned 0, so it initialised the whole struct.
        let st = unsafe { st.assume_init() };
        // The field types differ between platforms (u32 or u64).
        #[allow(clippy::unnecessary_cast)]
        let free = (st.f_bavail as u64).saturating_mul(st.f_frsize as u64);
        Ok(Some(free))
    }
}
