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
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

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
    fn zeroed(len: usize) -> Self {
        AlignedBuf {
            blocks: vec![Block([0; 64]); len.div_ceil(64)],
            len,
        }
    }

    fn from_slice(data: &[u8]) -> Self {
        let mut b = AlignedBuf::zeroed(data.len());
        b.as_mut_slice().copy_from_slice(data);
        b
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `blocks` is a contiguous allocation of `blocks.len() * 64` initialised bytes
        // (Block is repr(C) over a byte array, no padding) and `len <= blocks.len() * 64`.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<u8>(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// A file whose plaintext is produced block by block on demand (a sealed file read in
/// authenticated blocks, see [`super::encryption`]): blocks of `block_len` bytes, the last one
/// shorter or equal.
pub(crate) trait BlockSource: Send + Sync + fmt::Debug {
    /// Plaintext length of the file.
    fn len(&self) -> usize;
    /// Plaintext bytes per block (every block but the last).
    fn block_len(&self) -> usize;
    /// Block `k`, through the directory's bounded block cache.
    fn block(&self, k: usize) -> io::Result<Arc<[u8]>>;
    /// Block `k` into `out`, which is exactly its length, bypassing the cache (a whole-section
    /// read would only evict what searches use).
    fn block_into(&self, k: usize, out: &mut [u8]) -> io::Result<()>;
}

enum Repr {
    Map(memmap2::Mmap),
    Heap(AlignedBuf),
    Blocks(Arc<dyn BlockSource>),
}

/// Read-only bytes of a file: a memory map, an aligned heap copy, or (a sealed file) blocks
/// decrypted on demand. [`FileBytes::whole`] gives the first two in place; [`FileBytes::read`]
/// works for all three.
pub struct FileBytes(Repr);

impl FileBytes {
    /// An aligned heap copy of `data`.
    pub fn from_slice(data: &[u8]) -> Self {
        FileBytes(Repr::Heap(AlignedBuf::from_slice(data)))
    }

    pub(crate) fn from_blocks(src: Arc<dyn BlockSource>) -> Self {
        FileBytes(Repr::Blocks(src))
    }

    /// Whether the bytes are memory-mapped (rather than a heap copy or sealed blocks).
    pub fn is_mapped(&self) -> bool {
        matches!(self.0, Repr::Map(_))
    }

    /// Length of the file's (plaintext) bytes.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Map(m) => m.len(),
            Repr::Heap(h) => h.len,
            Repr::Blocks(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole file in place, 64-byte aligned; `None` for a sealed file read in blocks.
    pub fn whole(&self) -> Option<&[u8]> {
        match &self.0 {
            Repr::Map(m) => Some(m),
            Repr::Heap(h) => Some(h.as_slice()),
            Repr::Blocks(_) => None,
        }
    }

    /// Bytes `range`: borrowed in place, or decrypted through the block cache (one block
    /// shared, a range across blocks copied). A range past the end is `InvalidInput`; a block
    /// that fails authentication is `InvalidData`.
    pub fn read(&self, range: Range<usize>) -> io::Result<FileSlice<'_>> {
        check_range(&range, self.len())?;
        let src = match &self.0 {
            Repr::Blocks(src) => src,
            _ => return Ok(FileSlice::Borrowed(&self.whole().unwrap_or(&[])[range])),
        };
        if range.is_empty() {
            return Ok(FileSlice::Owned(Vec::new()));
        }
        let bl = src.block_len();
        let (first, last) = (range.start / bl, (range.end - 1) / bl);
        if first == last {
            let base = first * bl;
            let b = src.block(first)?;
            if range.end - base > b.len() {
                return Err(short_block());
            }
            return Ok(FileSlice::Block(b, range.start - base..range.end - base));
        }
        let mut out = Vec::with_capacity(range.len());
        for k in first..=last {
            let b = src.block(k)?;
            let base = k * bl;
            let from = range.start.max(base) - base;
            let to = range.end.min(base + b.len()) - base;
            out.extend_from_slice(b.get(from..to).ok_or_else(short_block)?);
        }
        Ok(FileSlice::Owned(out))
    }

    /// Hints the CPU to load bytes `range` ([`prefetch`]); nothing for sealed blocks or a range
    /// past the end.
    pub fn prefetch(&self, range: Range<usize>) {
        if let Some(bytes) = self.whole().and_then(|w| w.get(range)) {
            prefetch(bytes);
        }
    }

    /// Bytes `range` as an aligned heap copy (sections a search reads everywhere, held
    /// decrypted for the life of the file).
    pub fn copy_range(&self, range: Range<usize>) -> io::Result<FileBytes> {
        let src = match &self.0 {
            Repr::Blocks(src) => src,
            _ => return Ok(FileBytes::from_slice(&self.read(range)?)),
        };
        check_range(&range, src.len())?;
        let mut buf = AlignedBuf::zeroed(range.len());
        if range.is_empty() {
            return Ok(FileBytes(Repr::Heap(buf)));
        }
        // Blocks decrypt in parallel: a gallery's resident sections are gigabytes at a
        // million people, and their decryption is most of the time an encrypted open takes.
        let bl = src.block_len();
        let mut pieces: Vec<(usize, &mut [u8])> = Vec::new();
        let mut rest = buf.as_mut_slice();
        let mut at = range.start;
        while !rest.is_empty() {
            let k = at / bl;
            let take = ((k + 1) * bl).min(range.end) - at;
            let (piece, tail) = rest.split_at_mut(take);
            pieces.push((k, piece));
            rest = tail;
            at += take;
        }
        let last = (src.len() - 1) / bl;
        pieces.into_par_iter().try_for_each(|(k, piece)| {
            let whole_block = if k == last { src.len() - k * bl } else { bl };
            if piece.len() == whole_block {
                return src.block_into(k, piece);
            }
            let mut block = vec![0; whole_block];
            src.block_into(k, &mut block)?;
            let from = (range.start.max(k * bl)) - k * bl;
            let bytes = block
                .get(from..from + piece.len())
                .ok_or_else(short_block)?;
            piece.copy_from_slice(bytes);
            Ok::<(), io::Error>(())
        })?;
        Ok(FileBytes(Repr::Heap(buf)))
    }
}

/// `range` lies within a file of `len` bytes (else `InvalidInput`).
fn check_range(range: &Range<usize>, len: usize) -> io::Result<()> {
    if range.start > range.end || range.end > len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "read past the end of the file",
        ));
    }
    Ok(())
}

/// Part of a file held whole in memory, 64-byte aligned: in place when the file is mapped or on
/// the heap, decrypted once into the heap when it is sealed. For what a search reads everywhere
/// (first-stage codes, band tables, a segment's ids and indexes).
#[derive(Clone)]
pub struct Resident {
    /// Keeps the bytes alive (a map or a heap buffer that never moves while it is shared).
    _file: Arc<FileBytes>,
    /// Start and length of the range, taken once: searches read these bytes in tight loops.
    ptr: *const u8,
    len: usize,
}

// SAFETY: `ptr` points into the immutable bytes `_file` owns (a read-only map or a heap buffer
// never written after construction), which live as long as this value and are themselves
// shared between threads as `Arc<FileBytes>`.
unsafe impl Send for Resident {}
// SAFETY: as above; only shared reads are ever made through `ptr`.
unsafe impl Sync for Resident {}

impl Resident {
    /// The whole of `file`.
    pub fn whole(file: Arc<FileBytes>) -> io::Result<Resident> {
        let len = file.len();
        Resident::part(&file, 0..len)
    }

    /// Bytes `range` of `file`.
    pub fn part(file: &Arc<FileBytes>, range: Range<usize>) -> io::Result<Resident> {
        if let Some(w) = file.whole() {
            check_range(&range, w.len())?;
            let bytes = &w[range];
            return Ok(Resident {
                ptr: bytes.as_ptr(),
                len: bytes.len(),
                _file: Arc::clone(file),
            });
        }
        Resident::whole(Arc::new(file.copy_range(range)?))
    }

    /// Resident bytes of an in-memory slice (tests, tools).
    pub fn from_slice(data: &[u8]) -> Resident {
        let file = Arc::new(FileBytes::from_slice(data));
        let bytes = file.whole().unwrap_or(&[]);
        Resident {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
            _file: Arc::clone(&file),
        }
    }
}

impl Deref for Resident {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` was a slice of `_file`'s whole bytes at construction; those
        // bytes are immutable and owned by `_file`, which this value keeps alive.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl fmt::Debug for Resident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resident({} bytes)", self.len)
    }
}

/// Asks the CPU to start loading `bytes` into its caches: a hint, with no effect on what is
/// read. Why: a search that reads one form per record, at scattered offsets, otherwise waits
/// on memory at every record; hinting the next record while the current one is scored overlaps
/// the two. (Tried on the ten-print first stage's codes too: 28.2 against 28.9 ms at 1 M, noise;
/// not kept there — it reads 1.6 KB a voted record and is bound by bandwidth, not latency.)
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch has no architectural effect; the address is in a live slice.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

fn short_block() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "a block shorter than its place")
}

/// Bytes read from a [`FileBytes`]: borrowed in place, a part of a cached block, or a copy.
pub enum FileSlice<'a> {
    Borrowed(&'a [u8]),
    Block(Arc<[u8]>, Range<usize>),
    Owned(Vec<u8>),
}

impl<'a> FileSlice<'a> {
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            FileSlice::Owned(v) => v,
            other => other.to_vec(),
        }
    }

    /// The bytes after the first `n` (none when `n` reaches the end).
    pub fn after(self, n: usize) -> FileSlice<'a> {
        match self {
            FileSlice::Borrowed(b) => FileSlice::Borrowed(&b[n.min(b.len())..]),
            FileSlice::Block(b, r) => FileSlice::Block(b, (r.start + n).min(r.end)..r.end),
            FileSlice::Owned(mut v) => {
                v.drain(..n.min(v.len()));
                FileSlice::Owned(v)
            }
        }
    }
}

impl Deref for FileSlice<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileSlice::Borrowed(b) => b,
            FileSlice::Block(b, r) => &b[r.clone()],
            FileSlice::Owned(v) => v,
        }
    }
}

impl fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.0 {
            Repr::Map(_) => "mapped",
            Repr::Heap(_) => "heap",
            Repr::Blocks(_) => "sealed blocks",
        };
        write!(f, "FileBytes({} bytes, {how})", self.len())
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
