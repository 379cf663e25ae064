//! Bounded write rate for merges: a [`Directory`] whose new files are written no faster than a
//! configured number of bytes per second (all files of one merge together), so that a merge in
//! the background leaves the disk to the log's fsyncs and to searches' page faults.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::dir::{Directory, FileBytes, FileWriter};

/// Bytes written so far against the time allowed for them.
struct Budget {
    bytes_per_s: u64,
    started: Instant,
    written: u64,
}

impl Budget {
    /// How long to wait after `n` more bytes so the average stays at the rate.
    fn after(&mut self, n: usize) -> Duration {
        self.written += n as u64;
        let due = Duration::from_secs_f64(self.written as f64 / self.bytes_per_s.max(1) as f64);
        due.saturating_sub(self.started.elapsed())
    }
}

/// `inner` with every created file's writes throttled to a shared rate.
pub(crate) struct ThrottledDirectory {
    inner: Arc<dyn Directory>,
    budget: Arc<Mutex<Budget>>,
}

impl ThrottledDirectory {
    pub(crate) fn new(inner: Arc<dyn Directory>, bytes_per_s: u64) -> ThrottledDirectory {
        ThrottledDirectory {
            inner,
            budget: Arc::new(Mutex::new(Budget {
                bytes_per_s,
                started: Instant::now(),
                written: 0,
            })),
        }
    }
}

impl fmt::Debug for ThrottledDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Throttled({:?})", self.inner)
    }
}

struct ThrottledWriter {
    inner: Box<dyn FileWriter>,
    budget: Arc<Mutex<Budget>>,
}

/// Writes in pieces of this size, so a large buffer is paced too.
const PIECE: usize = 1 << 20;

impl FileWriter for ThrottledWriter {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        for piece in buf.chunks(PIECE) {
            self.inner.write_all(piece)?;
            let wait = self
                .budget
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .after(piece.len());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.inner.sync()
    }
}

impl Directory for ThrottledDirectory {
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn create(&self, name: &str) -> io::Result<Box<dyn FileWriter>> {
        Ok(Box::new(ThrottledWriter {
            inner: self.inner.create(name)?,
            budget: Arc::clone(&self.budget),
        }))
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
        self.inner.available_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_paces_writes_to_the_rate() {
        let mut b = Budget {
            bytes_per_s: 1000,
            started: Instant::now(),
            written: 0,
        };
        // 500 bytes at once are due half a second after the start.
        let wait = b.after(500);
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        // A slow writer owes nothing.
        b.started = Instant::now() - Duration::from_secs(10);
        assert!(b.after(100).is_zero());
    }
}
