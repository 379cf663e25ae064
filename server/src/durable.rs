//! Small files replaced whole, crash-safely: the new bytes go to a temporary file, which is
//! fsynced and renamed over the old one, then the directory is fsynced — after a crash the file
//! is the old one or the new one, never a mix. Used by the deduplication jobs, the
//! adjudication cases, the MOSIP request ledger and the audit log (directory syncs).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Makes a directory's entries (new, renamed or removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes` through the temporary file `temp` (same directory).
pub fn replace(path: &Path, temp: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = File::create(temp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(temp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}
