//! Small files replaced whole, crash-safely: the new bytes go to a temporary file, which is
//! fsynced and renamed over the old one, then the directory is fsynced — after a crash the file
//! is the old one or the new one, never a mix. Used by the deduplication jobs, the
//! adjudication cases and their images, the MOSIP request ledger and the audit log (directory
//! syncs). [`Envelope`] checksums or seals such a file.

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

/// The envelope of a small file: `plain` magic, CRC-32 of the payload (little-endian), payload;
/// or, with the gallery's keys, `sealed` magic then the payload sealed with AES-256-GCM under
/// the active key and bound to `binding` (the file's own name, so a file moved under another
/// name does not open). Plaintext envelopes still open when keys are set (a node that turned
/// encryption on), and are sealed at their next write.
pub struct Envelope {
    pub plain: &'static [u8; 8],
    pub sealed: &'static [u8; 8],
}

/// Why an envelope did not open.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a file of this kind")]
    Foreign,
    #[error("checksum mismatch")]
    Checksum,
    #[error("sealed, and store.encryption_key_file is not set")]
    NeedsKey,
    #[error("{0}")]
    Seal(String),
}

impl Envelope {
    /// The file bytes of `payload`: sealed when `keys` are given, else checksummed.
    pub fn wrap(
        &self,
        keys: Option<&abis_engine::store::encryption::Keyring>,
        binding: &[u8],
        payload: &[u8],
    ) -> Result<Vec<u8>, EnvelopeError> {
        let mut bytes = Vec::with_capacity(payload.len() + 64);
        match keys {
            Some(keys) => {
                let sealed = keys
                    .seal_message(binding, payload)
                    .map_err(|e| EnvelopeError::Seal(e.to_string()))?;
                bytes.extend_from_slice(self.sealed);
                bytes.extend_from_slice(&sealed);
            }
            None => {
                bytes.extend_from_slice(self.plain);
                bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
                bytes.extend_from_slice(payload);
            }
        }
        Ok(bytes)
    }

    /// The payload of file `bytes` written by [`Envelope::wrap`] with the same `binding`.
    pub fn open(
        &self,
        keys: Option<&abis_engine::store::encryption::Keyring>,
        binding: &[u8],
        bytes: &[u8],
    ) -> Result<Vec<u8>, EnvelopeError> {
        match (bytes.get(..8), keys) {
            (Some(m), Some(keys)) if m == self.sealed => keys
                .open_message(binding, &bytes[8..])
                .map_err(|e| EnvelopeError::Seal(e.to_string())),
            (Some(m), None) if m == self.sealed => Err(EnvelopeError::NeedsKey),
            (Some(m), _) if m == self.plain && bytes.len() >= 12 => {
                let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
                if crc32fast::hash(&bytes[12..]) != crc {
                    return Err(EnvelopeError::Checksum);
                }
                Ok(bytes[12..].to_vec())
            }
            _ => Err(EnvelopeError::Foreign),
        }
    }

    /// Whether `bytes` are sealed.
    pub fn is_sealed(&self, bytes: &[u8]) -> bool {
        bytes.starts_with(self.sealed)
    }
}
