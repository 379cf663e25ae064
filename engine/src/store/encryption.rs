//! Encryption at rest: a [`Directory`] wrapper that seals every store file (log, segments,
//! deletion bitmaps, meta) with AES-256-GCM, so a copied disk or backup reveals no template,
//! embedding or referenceId without the key.
//!
//! ## File format
//! ```text
//! header  "ABISENC\x01" | key id (8) | file id (16, random)
//! frame*  length u32 LE | !length u32 LE | nonce (12, random) | ciphertext | tag (16)
//! ```
//! Each frame's associated data is `file id | frame index | length`, so frames cannot be
//! altered, forged, reordered or moved between files without the tag failing. The key id is the
//! first 8 bytes of SHA-256 of the key, so the file names the key it needs without revealing it.
//!
//! ## Durability
//! A log writer seals one frame per `sync` (one per group commit), so at most the last frame of
//! a log can be torn by a power loss; it is hidden from readers and cut off before the next
//! append, as the log does for its own torn tail. Any other bad frame (in a segment, bitmap or
//! meta file, or a log frame with an intact frame after it) is damage or tampering and fails
//! the read. Other files are sealed in 1 MiB frames and only read once synced. Whole frames
//! removed from the end of a log cannot be told from a crash; that is the one change to the
//! disk this format cannot detect.
//!
//! ## Reading in blocks
//! Files other than logs are sealed in frames of exactly [`FRAME_TARGET`] plaintext bytes (the
//! last one shorter), so frame `k` lies at a computable offset. [`Directory::map`] of such a file
//! maps the sealed bytes and returns a [`FileBytes`] that decrypts and authenticates a frame
//! only when a reader touches it, through a bounded cache of decrypted frames shared by the
//! directory ([`super::block_cache`]); the layer above copies out, decrypted, only what a search
//! reads everywhere (the first-stage codes, the band tables, a segment's id and index sections).
//! So an encrypted gallery needs about the memory of a mapped plaintext one: what stays
//! decrypted is those resident sections plus the cache budget. A frame that fails
//! authentication is found when it is first read (as a plaintext segment's chunk checksums are),
//! and by the full check of a segment (`Store::verify`, a merge's input). Small files, and files whose
//! frames are not all of one size (sealed by an older version with another frame size and then
//! appended to), are decrypted whole as before.
//!
//! ## Cost
//! A frame read decrypts 16 KiB (AES-GCM with AES-NI runs at several GB/s per core); the
//! resident sections are decrypted once at open.
//!
//! ## Single messages
//! [`Keyring::seal_message`] seals one message outside any file (a cluster's replicated log keeps
//! record payloads on NATS servers, which store them in clear): `key id (8) | nonce (12) |
//! ciphertext | tag (16)`, the associated data given by the caller (the log subject), so a
//! sealed payload cannot be moved to another subject. Random 96-bit nonces: rotate the key well
//! before 2^32 messages.
//!
//! ## Key rotation
//! A key file lists one or more keys; the first seals new files, all of them open existing ones.
//! Rotation: put a new key first, keep the old one below it, restart, run
//! [`rekey`] (`abis store rekey`) with the server stopped, then drop the old key.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::block_cache::BlockCache;
use super::companion::{is_companion_file, Companion};
use super::dir::{BlockSource, Directory, FileBytes, FileWriter};
use super::error::{Result, StoreError};

const MAGIC: &[u8; 8] = b"ABISENC\x01";
const KEY_ID_LEN: usize = 8;
const FILE_ID_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + KEY_ID_LEN + FILE_ID_LEN;
const TAG_LEN: usize = 16;
/// Length, its complement (so a damaged length is told from a torn frame), nonce.
const FRAME_HEAD: usize = 8 + NONCE_LEN;
/// A writer of a file other than a log seals a frame once this much plaintext is buffered:
/// the unit a reader decrypts on demand (see "Reading in blocks"), small enough that reading
/// one record's templates or local forms decrypts little more than them, large enough that the
/// 36 bytes a frame adds are 0.2 %.
const FRAME_TARGET: usize = 16 << 10;
/// Files smaller than this are decrypted whole when mapped (a few frames: not worth a cache).
const BLOCKWISE_MIN: usize = 256 << 10;
/// Default budget of the decrypted-block cache of an [`EncryptedDirectory`].
pub const DEFAULT_BLOCK_CACHE_BYTES: usize = 256 << 20;
/// Raw key length (AES-256).
pub const KEY_LEN: usize = 32;

/// Why a key file could not be used.
#[derive(Debug, Error)]
pub enum KeyFileError {
    #[error("cannot read key file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("key file {path} is readable by group or others (mode {mode:o}); run chmod 600 on it")]
    Permissions { path: String, mode: u32 },
    #[error("key file line {line}: {detail}")]
    Format { line: usize, detail: String },
    #[error("key file holds no key")]
    Empty,
}

/// Whether `bytes` begin like a file sealed by this module (used to give a clear error when an
/// encrypted store is opened without its key).
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

struct Key {
    id: [u8; KEY_ID_LEN],
    aead: LessSafeKey,
}

/// The keys of a store: the first seals new files, every one opens existing files.
#[derive(Clone)]
pub struct Keyring {
    keys: Arc<Vec<Arc<Key>>>,
}

impl fmt::Debug for Keyring {
    /// Key ids only: key material never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<String> = self.keys.iter().map(|k| hex(&k.id)).collect();
        write!(f, "Keyring({})", ids.join(", "))
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Keyring {
    /// A keyring of raw keys, the first being the active one.
    pub fn from_keys(raw: &[[u8; KEY_LEN]]) -> std::result::Result<Keyring, KeyFileError> {
        if raw.is_empty() {
            return Err(KeyFileError::Empty);
        }
        let keys = raw
            .iter()
            .map(|k| {
                let digest = Sha256::digest(k);
                let mut id = [0; KEY_ID_LEN];
                id.copy_from_slice(&digest[..KEY_ID_LEN]);
                let unbound = UnboundKey::new(&AES_256_GCM, k).expect("AES-256 takes 32-byte keys");
                Arc::new(Key {
                    id,
                    aead: LessSafeKey::new(unbound),
                })
            })
            .collect();
        Ok(Keyring {
            keys: Arc::new(keys),
        })
    }

    /// Parses a key file: one key per line as 64 hex digits, `#` comments and blank lines
    /// ignored, the first key active.
    pub fn parse(text: &str) -> std::result::Result<Keyring, KeyFileError> {
        let mut raw = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |detail: &str| KeyFileError::Format {
                line: i + 1,
                detail: detail.to_owned(),
            };
            if line.len() != 2 * KEY_LEN {
                return Err(bad("expected 64 hex digits (a 256-bit key)"));
            }
            let mut k = [0u8; KEY_LEN];
            for (j, b) in k.iter_mut().enumerate() {
                *b = u8::from_str_radix(&line[2 * j..2 * j + 2], 16)
                    .map_err(|_| bad("not a hex digit"))?;
            }
            if raw.contains(&k) {
                return Err(bad("the same key is listed twice"));
            }
            raw.push(k);
        }
        let ring = Keyring::from_keys(&raw);
        raw.iter_mut().for_each(|k| k.fill(0));
        ring
    }

    /// Reads a key file, refusing one that others can read.
    pub fn load(path: &Path) -> std::result::Result<Keyring, KeyFileError> {
        let io_err = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(io_err)?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(KeyFileError::Permissions {
                    path: path.display().to_string(),
                    mode: mode & 0o777,
                });
            }
        }
        let mut text = std::fs::read_to_string(path).map_err(io_err)?;
        let ring = Keyring::parse(&text);
        // Best effort: do not leave the hex key in freed memory.
        // SAFETY: writing ASCII zeros keeps the string valid UTF-8.
        unsafe { text.as_bytes_mut().fill(b'0') };
        ring
    }

    /// A new random key as a key-file line.
    pub fn generate_line() -> io::Result<String> {
        let mut k = [0u8; KEY_LEN];
        fill_random(&SystemRandom::new(), &mut k)?;
        let line = hex(&k);
        k.fill(0);
        Ok(line)
    }

    /// Id of the key that seals new files, as hex.
    pub fn active_id(&self) -> String {
        hex(&self.keys[0].id)
    }

    fn active(&self) -> &Arc<Key> {
        &self.keys[0]
    }

    fn by_id(&self, id: &[u8]) -> Option<&Arc<Key>> {
        self.keys.iter().find(|k| k.id == id)
    }
}

/// Why a sealed message did not open (see [`Keyring::open_message`]).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MessageSealError {
    #[error("sealed message of {0} bytes is shorter than its key id, nonce and tag")]
    Truncated(usize),
    #[error("sealed message names key {0}, which the key file does not hold")]
    UnknownKey(String),
    #[error("sealed message does not authenticate (altered, or sealed for another place)")]
    Forged,
    #[error("sealing failed: {0}")]
    Seal(&'static str),
}

/// Key id, nonce, tag: what sealing adds to a message.
pub const MESSAGE_OVERHEAD: usize = KEY_ID_LEN + NONCE_LEN + TAG_LEN;

impl Keyring {
    /// Seals `plain` under the active key, bound to `aad` (see the module docs for the layout).
    pub fn seal_message(
        &self,
        aad: &[u8],
        plain: &[u8],
    ) -> std::result::Result<Vec<u8>, MessageSealError> {
        let key = self.active();
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&SystemRandom::new(), &mut nonce)
            .map_err(|_| MessageSealError::Seal("the system random generator failed"))?;
        let head = KEY_ID_LEN + NONCE_LEN;
        let mut out = Vec::with_capacity(plain.len() + MESSAGE_OVERHEAD);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = key
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[head..],
            )
            .map_err(|_| MessageSealError::Seal("AES-GCM sealing failed"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens a message sealed by [`Keyring::seal_message`] with any key of the ring and the same
    /// `aad`. Never panics on hostile bytes.
    pub fn open_message(
        &self,
        aad: &[u8],
        sealed: &[u8],
    ) -> std::result::Result<Vec<u8>, MessageSealError> {
        if sealed.len() < MESSAGE_OVERHEAD {
            return Err(MessageSealError::Truncated(sealed.len()));
        }
        let (id, rest) = sealed.split_at(KEY_ID_LEN);
        let key = self
            .by_id(id)
            .ok_or_else(|| MessageSealError::UnknownKey(hex(id)))?;
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| MessageSealError::Forged)?;
        let (cipher, tag) = body.split_at(body.len() - TAG_LEN);
        let mut tag_bytes = [0u8; TAG_LEN];
        tag_bytes.copy_from_slice(tag);
        let mut out = cipher.to_vec();
        key.aead
            .open_in_place_separate_tag(nonce, Aad::from(aad), Tag::from(tag_bytes), &mut out, 0..)
            .map_err(|_| MessageSealError::Forged)?;
        Ok(out)
    }
}

fn fill_random(rng: &SystemRandom, buf: &mut [u8]) -> io::Result<()> {
    rng.fill(buf)
        .map_err(|_| io::Error::other("the system random generator failed"))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn aad(file_id: &[u8; FILE_ID_LEN], index: u64, len: u32) -> [u8; FILE_ID_LEN + 12] {
    let mut a = [0u8; FILE_ID_LEN + 12];
    a[..FILE_ID_LEN].copy_from_slice(file_id);
    a[FILE_ID_LEN..FILE_ID_LEN + 8].copy_from_slice(&index.to_le_bytes());
    a[FILE_ID_LEN + 8..].copy_from_slice(&len.to_le_bytes());
    a
}

fn is_log(name: &str) -> bool {
    super::wal::parse_wal_name(name).is_some()
}

/// Why the frame at some offset did not open.
enum Fault {
    /// Shorter than its own length field says (or than a frame head).
    Incomplete,
    /// The length and its complement disagree: the length cannot be trusted.
    Inconsistent,
    /// Well-formed, `total` bytes long, but the tag fails.
    Tag { total: usize },
}

/// Opens the frame at the start of `rest` into `out` and returns its total length.
fn open_frame(
    key: &LessSafeKey,
    file_id: &[u8; FILE_ID_LEN],
    index: u64,
    rest: &[u8],
    out: &mut Vec<u8>,
) -> Result<usize, Fault> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(rest.get(at..at + 4)?.try_into().ok()?))
    };
    let (Some(len), Some(check)) = (word(0), word(4)) else {
        return Err(Fault::Incomplete);
    };
    if check != !len {
        return Err(Fault::Inconsistent);
    }
    let total = FRAME_HEAD + len as usize + TAG_LEN;
    let frame = rest.get(..total).ok_or(Fault::Incomplete)?;
    out.clear();
    out.resize(len as usize, 0);
    open_into(key, file_id, index, frame, out).map_err(|()| Fault::Tag { total })?;
    Ok(total)
}

/// Authenticates and decrypts `frame` (head, ciphertext and tag, exactly) into `out`, which is
/// its ciphertext's length: the one AES-GCM open of every sealed-file reader.
fn open_into(
    key: &LessSafeKey,
    file_id: &[u8; FILE_ID_LEN],
    index: u64,
    frame: &[u8],
    out: &mut [u8],
) -> Result<(), ()> {
    let len = u32::try_from(out.len()).map_err(|_| ())?;
    if frame.len() != FRAME_HEAD + out.len() + TAG_LEN {
        return Err(());
    }
    let nonce = Nonce::try_assume_unique_for_key(&frame[8..FRAME_HEAD]).map_err(|_| ())?;
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&frame[frame.len() - TAG_LEN..]);
    out.copy_from_slice(&frame[FRAME_HEAD..frame.len() - TAG_LEN]);
    key.open_in_place_separate_tag(
        nonce,
        Aad::from(aad(file_id, index, len)),
        Tag::from(tag),
        out,
        0..,
    )
    .map(drop)
    .map_err(|_| ())
}

/// Whether a log frame that failed at the start of `rest` is what a power loss leaves of the
/// last, unsynced group commit (rather than damage to a synced frame). Only the last frame of a
/// log can be unsynced: each group commit is one frame, written after the previous one synced.
fn is_torn_tail(
    key: &LessSafeKey,
    file_id: &[u8; FILE_ID_LEN],
    index: u64,
    rest: &[u8],
    fault: Fault,
) -> bool {
    match fault {
        Fault::Incomplete => true,
        // Bytes after a well-formed frame were written after it: it had been synced. Zeros
        // there are a file size that reached the disk before the data did.
        Fault::Tag { total } => rest[total..].iter().all(|&b| b == 0),
        // The length is unusable; the frame was synced if any later frame is intact.
        Fault::Inconsistent => {
            let mut scratch = Vec::new();
            !(1..rest.len()).any(|q| {
                (index + 1..index + 4)
                    .any(|i| open_frame(key, file_id, i, &rest[q..], &mut scratch).is_ok())
            })
        }
    }
}

/// A sealed file read back.
struct Opened {
    /// `None`: the header itself never became durable (fresh file cut by a crash).
    header: Option<(Arc<Key>, [u8; FILE_ID_LEN])>,
    plain: Vec<u8>,
    /// (plaintext offset, file offset) where each intact frame starts.
    frames: Vec<(usize, usize)>,
    /// File offset after the last intact frame.
    end: usize,
    raw_len: usize,
}

fn open_file(name: &str, raw: &[u8], keys: &Keyring) -> io::Result<Opened> {
    let head = &raw[..raw.len().min(HEADER_LEN)];
    // A header that is short, or zeroed by out-of-order write-back, never became durable:
    // the file was created and the power went before its first sync.
    let torn_header = head.iter().all(|&b| b == 0)
        || (raw.len() < HEADER_LEN && MAGIC.starts_with(&head[..head.len().min(MAGIC.len())]));
    if torn_header {
        return Ok(Opened {
            header: None,
            plain: Vec::new(),
            frames: Vec::new(),
            end: 0,
            raw_len: raw.len(),
        });
    }
    if !is_sealed(raw) || raw.len() < HEADER_LEN {
        return Err(invalid(format!(
            "{name} is not an encrypted store file (the store was created without encryption; \
             `abis store rekey` converts it)"
        )));
    }
    let key_id = &raw[MAGIC.len()..MAGIC.len() + KEY_ID_LEN];
    let key = keys.by_id(key_id).ok_or_else(|| {
        invalid(format!(
            "{name} is sealed with key {} which the key file does not hold",
            hex(key_id)
        ))
    })?;
    let mut file_id = [0u8; FILE_ID_LEN];
    file_id.copy_from_slice(&raw[MAGIC.len() + KEY_ID_LEN..HEADER_LEN]);

    let mut plain = Vec::with_capacity(raw.len().saturating_sub(HEADER_LEN));
    let mut frames = Vec::new();
    let mut at = HEADER_LEN;
    let mut buf = Vec::new();
    while at < raw.len() {
        let index = frames.len() as u64;
        match open_frame(&key.aead, &file_id, index, &raw[at..], &mut buf) {
            Ok(total) => {
                frames.push((plain.len(), at));
                plain.extend_from_slice(&buf);
                at += total;
            }
            Err(fault) => {
                if !is_log(name) || !is_torn_tail(&key.aead, &file_id, index, &raw[at..], fault) {
                    return Err(invalid(format!(
                        "{name}: encrypted frame {index} fails authentication (damaged or tampered)"
                    )));
                }
                tracing::warn!(
                    file = name,
                    bytes = raw.len() - at,
                    "ignoring a torn encrypted frame at the end of the log (never synced)"
                );
                break;
            }
        }
    }
    Ok(Opened {
        header: Some((Arc::clone(key), file_id)),
        plain,
        frames,
        end: at,
        raw_len: raw.len(),
    })
}

/// Seals plaintext into frames on top of a raw writer.
struct SealingWriter {
    inner: Box<dyn FileWriter>,
    key: Arc<Key>,
    file_id: [u8; FILE_ID_LEN],
    index: u64,
    buf: Vec<u8>,
    rng: SystemRandom,
    /// Seal every [`FRAME_TARGET`] bytes (not for logs: one frame per sync there).
    split: bool,
}

impl SealingWriter {
    /// Starts the sealed file `name`: writes the header with the active key and a fresh file id.
    fn start(
        mut inner: Box<dyn FileWriter>,
        name: &str,
        keys: &Keyring,
    ) -> io::Result<SealingWriter> {
        let rng = SystemRandom::new();
        let mut file_id = [0u8; FILE_ID_LEN];
        fill_random(&rng, &mut file_id)?;
        let key = Arc::clone(keys.active());
        let mut head = Vec::with_capacity(HEADER_LEN);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&key.id);
        head.extend_from_slice(&file_id);
        inner.write_all(&head)?;
        Ok(SealingWriter::resume(inner, key, file_id, 0, name))
    }

    /// Continues the sealed file `name` at frame `index`.
    fn resume(
        inner: Box<dyn FileWriter>,
        key: Arc<Key>,
        file_id: [u8; FILE_ID_LEN],
        index: u64,
        name: &str,
    ) -> SealingWriter {
        SealingWriter {
            inner,
            key,
            file_id,
            index,
            buf: Vec::new(),
            rng: SystemRandom::new(),
            split: !is_log(name),
        }
    }

    fn seal(&mut self, plain: &[u8]) -> io::Result<()> {
        let len = u32::try_from(plain.len()).map_err(|_| invalid("frame too large".into()))?;
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&self.rng, &mut nonce)?;
        let mut frame = Vec::with_capacity(FRAME_HEAD + plain.len() + TAG_LEN);
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&(!len).to_le_bytes());
        frame.extend_from_slice(&nonce);
        frame.extend_from_slice(plain);
        let tag = self
            .key
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(&self.file_id, self.index, len)),
                &mut frame[FRAME_HEAD..],
            )
            .map_err(|_| io::Error::other("AES-GCM sealing failed"))?;
        frame.extend_from_slice(tag.as_ref());
        self.inner.write_all(&frame)?;
        self.index += 1;
        Ok(())
    }

    fn seal_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let r = self.seal(&buf);
        self.buf = buf;
        self.buf.clear();
        r
    }
}

impl FileWriter for SealingWriter {
    fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        if !self.split {
            self.buf.extend_from_slice(data);
            return Ok(());
        }
        while !data.is_empty() {
            let take = (FRAME_TARGET - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == FRAME_TARGET {
                self.seal_buffered()?;
            }
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.seal_buffered()?;
        self.inner.sync()
    }
}

impl Drop for SealingWriter {
    /// Hands buffered bytes to the file as a plain write would (not durable without `sync`).
    fn drop(&mut self) {
        let _ = self.seal_buffered();
    }
}

/// The frames of a sealed file, all [`FRAME_TARGET`]-sized but the last, decrypted on demand
/// (see "Reading in blocks" in the module docs).
struct SealedBlocks {
    name: String,
    raw: FileBytes,
    key: Arc<Key>,
    file_id: [u8; FILE_ID_LEN],
    /// Plaintext bytes per frame (all but the last).
    frame: usize,
    frames: usize,
    len: usize,
    cache: Arc<BlockCache>,
    cache_id: u64,
}

impl fmt::Debug for SealedBlocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedBlocks({}, {} frames)", self.name, self.frames)
    }
}

impl SealedBlocks {
    /// The sealed file `raw` read in blocks, when its frames are uniform; `None` when it must
    /// be decrypted whole (small, unusual layout, or damaged: the whole read names the fault).
    fn open(name: &str, raw: FileBytes, keys: &Keyring, cache: &Arc<BlockCache>) -> Option<Self> {
        let bytes = raw.whole()?;
        if bytes.len() < BLOCKWISE_MIN || !is_sealed(bytes) || is_log(name) {
            return None;
        }
        let key = keys.by_id(&bytes[MAGIC.len()..MAGIC.len() + KEY_ID_LEN])?;
        let mut file_id = [0u8; FILE_ID_LEN];
        file_id.copy_from_slice(&bytes[MAGIC.len() + KEY_ID_LEN..HEADER_LEN]);
        let length_at = |at: usize| -> Option<usize> {
            let w = |o: usize| Some(u32::from_le_bytes(bytes.get(o..o + 4)?.try_into().ok()?));
            let (len, check) = (w(at)?, w(at + 4)?);
            (check == !len && len > 0).then_some(len as usize)
        };
        let frame = length_at(HEADER_LEN)?;
        let stride = FRAME_HEAD + frame + TAG_LEN;
        let body = bytes.len() - HEADER_LEN;
        let frames = body.div_ceil(stride);
        let last_at = HEADER_LEN + (frames - 1) * stride;
        let last = length_at(last_at)?;
        if last > frame || last_at + FRAME_HEAD + last + TAG_LEN != bytes.len() {
            return None;
        }
        Some(SealedBlocks {
            name: name.to_owned(),
            key: Arc::clone(key),
            file_id,
            frame,
            frames,
            len: (frames - 1) * frame + last,
            cache: Arc::clone(cache),
            cache_id: cache.file_id(),
            raw,
        })
    }

    /// Plaintext length of frame `k`.
    fn frame_len(&self, k: usize) -> usize {
        if k + 1 == self.frames {
            self.len - k * self.frame
        } else {
            self.frame
        }
    }

    /// Decrypts frame `k` into `out` (exactly its plaintext length) in place.
    fn decrypt_into(&self, k: usize, out: &mut [u8]) -> io::Result<()> {
        let fault = || {
            invalid(format!(
                "{}: encrypted frame {k} fails authentication (damaged or tampered)",
                self.name
            ))
        };
        if k >= self.frames || out.len() != self.frame_len(k) {
            return Err(fault());
        }
        let bytes = self.raw.whole().unwrap_or(&[]);
        let at = HEADER_LEN + k * (FRAME_HEAD + self.frame + TAG_LEN);
        let frame = bytes
            .get(at..at + FRAME_HEAD + out.len() + TAG_LEN)
            .ok_or_else(fault)?;
        // The length in the head must be the one the layout implies (it is authenticated too).
        let len = u32::try_from(out.len()).map_err(|_| fault())?;
        if frame[..4] != len.to_le_bytes() || frame[4..8] != (!len).to_le_bytes() {
            return Err(fault());
        }
        open_into(&self.key.aead, &self.file_id, k as u64, frame, out).map_err(|()| fault())
    }
}

impl BlockSource for SealedBlocks {
    fn len(&self) -> usize {
        self.len
    }

    fn block_len(&self) -> usize {
        self.frame
    }

    fn block(&self, k: usize) -> io::Result<Arc<[u8]>> {
        self.cache.get_or_load((self.cache_id, k as u64), || {
            let mut out = vec![0; self.frame_len(k)];
            self.decrypt_into(k, &mut out)?;
            Ok(Arc::from(out))
        })
    }

    fn block_into(&self, k: usize, out: &mut [u8]) -> io::Result<()> {
        self.decrypt_into(k, out)
    }
}

/// A [`Directory`] whose files are sealed with the keys of a [`Keyring`] (see the module docs).
#[derive(Debug)]
pub struct EncryptedDirectory {
    inner: Arc<dyn Directory>,
    keys: Keyring,
    cache: Arc<BlockCache>,
}

impl EncryptedDirectory {
    /// An encrypted view of `inner` with a decrypted-block cache of
    /// [`DEFAULT_BLOCK_CACHE_BYTES`].
    pub fn new(inner: Arc<dyn Directory>, keys: Keyring) -> Self {
        Self::with_cache(inner, keys, DEFAULT_BLOCK_CACHE_BYTES)
    }

    /// As [`EncryptedDirectory::new`] with a block cache of `cache_bytes`.
    pub fn with_cache(inner: Arc<dyn Directory>, keys: Keyring, cache_bytes: usize) -> Self {
        EncryptedDirectory {
            inner,
            keys,
            cache: Arc::new(BlockCache::new(cache_bytes)),
        }
    }

    /// (hits, misses, bytes held) of the decrypted-block cache.
    pub fn cache_stats(&self) -> (u64, u64, usize) {
        let (h, m) = self.cache.counts();
        (h, m, self.cache.held_bytes())
    }

    fn open(&self, name: &str) -> io::Result<Opened> {
        open_file(name, &self.inner.read(name)?, &self.keys)
    }
}

impl Directory for EncryptedDirectory {
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }

    fn stored_len(&self, name: &str) -> io::Result<u64> {
        self.inner.stored_len(name)
    }

    fn available_bytes(&self) -> io::Result<Option<u64>> {
        self.inner.available_bytes()
    }

    /// Sealed bytes as stored: a copy opens only with the gallery key, like the original.
    fn export(&self, name: &str, dest: &std::path::Path, len: u64, link: bool) -> io::Result<()> {
        self.inner.export(name, dest, len, link)
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn FileWriter>> {
        let w = SealingWriter::start(self.inner.create(name)?, name, &self.keys)?;
        Ok(Box::new(w))
    }

    fn append(&self, name: &str) -> io::Result<Box<dyn FileWriter>> {
        let f = self.open(name)?;
        let Some((key, file_id)) = f.header else {
            return self.create(name);
        };
        if f.end < f.raw_len {
            self.inner.truncate(name, f.end as u64)?;
        }
        Ok(Box::new(SealingWriter::resume(
            self.inner.append(name)?,
            key,
            file_id,
            f.frames.len() as u64,
            name,
        )))
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        Ok(self.open(name)?.plain)
    }

    /// Sealed files of uniform frames are read in blocks on demand; others decrypted whole.
    fn map(&self, name: &str) -> io::Result<FileBytes> {
        let raw = self.inner.map(name)?;
        match SealedBlocks::open(name, raw, &self.keys, &self.cache) {
            Some(blocks) => Ok(FileBytes::from_blocks(Arc::new(blocks))),
            None => Ok(FileBytes::from_slice(&self.read(name)?)),
        }
    }

    /// Truncation in plaintext offsets. Inside a frame, the frame is cut off and its kept prefix
    /// sealed again as the new last frame (the store truncates only unsynced log tails, so a
    /// crash between the two steps loses nothing that was acknowledged).
    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let f = self.open(name)?;
        let len = usize::try_from(len).map_err(|_| invalid("length out of range".into()))?;
        if len > f.plain.len() {
            return Err(super::dir::growing_truncation());
        }
        let Some((key, file_id)) = f.header else {
            return self.inner.truncate(name, 0);
        };
        let k = f
            .frames
            .partition_point(|&(p, _)| p <= len)
            .saturating_sub(1);
        let Some(&(frame_plain, frame_at)) = f.frames.get(k) else {
            // No intact frame: keep the header only.
            return self.inner.truncate(name, HEADER_LEN as u64);
        };
        if len == f.plain.len() {
            return self.inner.truncate(name, f.end as u64);
        }
        self.inner.truncate(name, frame_at as u64)?;
        if len > frame_plain {
            let mut w =
                SealingWriter::resume(self.inner.append(name)?, key, file_id, k as u64, name);
            w.seal(&f.plain[frame_plain..len])?;
            w.inner.sync()?;
        }
        Ok(())
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
}

/// What [`rekey`] should leave behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RekeyTarget {
    /// Every file sealed with the keyring's active key (also encrypts a plaintext store).
    ActiveKey,
    /// Every file in plaintext (turns encryption off).
    Plaintext,
}

/// Counts of a [`rekey`] run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RekeyReport {
    pub rewritten: usize,
    pub unchanged: usize,
}

const REKEY_SUFFIX: &str = ".rekey";

/// Rewrites the files of the (closed) store at `path` so that each is sealed with the active key
/// of `keys`, or is plaintext. Files are replaced one at a time (temporary file, fsync, rename,
/// fsync of the directory), so an interrupted run leaves a store that opens with a keyring that
/// holds both keys and that a second run completes; a plaintext store being encrypted must be
/// rekeyed to the end before it is served. Holds the store's lock: a running server makes it
/// fail.
/// The files of `companion` (the index files beside each segment) are rewritten too: they hold
/// data derived from the templates.
pub fn rekey(
    path: &Path,
    keys: &Keyring,
    target: RekeyTarget,
    companion: Option<&dyn Companion>,
) -> Result<RekeyReport> {
    rekey_in(&super::open_fs_directory(path)?, keys, target, companion)
}

pub(crate) fn rekey_in(
    dir: &dyn Directory,
    keys: &Keyring,
    target: RekeyTarget,
    companion: Option<&dyn Companion>,
) -> Result<RekeyReport> {
    let names = dir
        .list()
        .map_err(|e| StoreError::io("list", "store directory", e))?;
    let mut report = RekeyReport::default();
    for name in &names {
        if name.ends_with(REKEY_SUFFIX) {
            dir.remove(name)
                .map_err(|e| StoreError::io("remove", name.clone(), e))?;
            continue;
        }
        let derived = companion.is_some_and(|c| {
            is_companion_file(name, c) && !name.ends_with(super::companion::REBUILD_SUFFIX)
        });
        if !super::is_store_file(name) && !derived {
            continue;
        }
        let raw = dir
            .read(name)
            .map_err(|e| StoreError::io("read", name.clone(), e))?;
        let active = keys.active().id;
        let (plain, current, framed) = if is_sealed(&raw) {
            let f =
                open_file(name, &raw, keys).map_err(|e| StoreError::io("read", name.clone(), e))?;
            let id = f.header.as_ref().map(|(k, _)| k.id);
            // Files sealed by versions with another frame size are re-framed, so that they
            // can be read in blocks (see "Reading in blocks").
            let framed = is_log(name)
                || (f.plain.len() <= f.frames.len() * FRAME_TARGET
                    && f.frames
                        .iter()
                        .enumerate()
                        .all(|(k, &(plain_at, _))| plain_at == k * FRAME_TARGET));
            (f.plain, id, framed)
        } else {
            (raw, None, true)
        };
        let done = match target {
            RekeyTarget::ActiveKey => current == Some(active) && framed,
            RekeyTarget::Plaintext => current.is_none(),
        };
        if done {
            report.unchanged += 1;
            continue;
        }
        let tmp = format!("{name}{REKEY_SUFFIX}");
        let write = || -> io::Result<()> {
            let raw_w = dir.create(&tmp)?;
            let mut w: Box<dyn FileWriter> = match target {
                RekeyTarget::ActiveKey => Box::new(SealingWriter::start(raw_w, name, keys)?),
                RekeyTarget::Plaintext => raw_w,
            };
            w.write_all(&plain)?;
            w.sync()?;
            drop(w);
            dir.rename(&tmp, name)?;
            dir.sync_dir()
        };
        write().map_err(|e| StoreError::io("rewrite", name.clone(), e))?;
        report.rewritten += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::super::memdir::MemDirectory;
    use super::*;

    const LOG: &str = "wal-0000000001.log";

    fn ring(seeds: &[u8]) -> Keyring {
        let raw: Vec<[u8; KEY_LEN]> = seeds.iter().map(|&s| [s; KEY_LEN]).collect();
        Keyring::from_keys(&raw).unwrap()
    }

    fn enc(mem: &MemDirectory, keys: Keyring) -> EncryptedDirectory {
        EncryptedDirectory::new(Arc::new(mem.clone()), keys)
    }

    fn write(d: &dyn Directory, name: &str, parts: &[&[u8]]) {
        let mut w = d.create(name).unwrap();
        for p in parts {
            w.write_all(p).unwrap();
            w.sync().unwrap();
        }
    }

    #[test]
    fn store_encryption_round_trip_hides_plaintext() {
        let mem = MemDirectory::new();
        let d = enc(&mem, ring(&[1]));
        let secret = b"reference-id-123456789012 and a template".repeat(50);
        write(&d, LOG, &[&secret[..100], &secret[100..]]);
        assert_eq!(d.read(LOG).unwrap(), secret);
        assert_eq!(d.map(LOG).unwrap().whole().unwrap(), &secret[..]);
        let raw = mem.read(LOG).unwrap();
        assert!(is_sealed(&raw));
        assert!(!raw.windows(12).any(|w| w == b"reference-id"));
        // Appending continues the frame sequence.
        let mut w = d.append(LOG).unwrap();
        w.write_all(b"tail").unwrap();
        w.sync().unwrap();
        drop(w);
        let mut want = secret.clone();
        want.extend_from_slice(b"tail");
        assert_eq!(d.read(LOG).unwrap(), want);
    }

    #[test]
    fn store_encryption_large_writes_split_into_frames() {
        let mem = MemDirectory::new();
        let d = enc(&mem, ring(&[2]));
        let big: Vec<u8> = (0..(FRAME_TARGET * 2 + 77))
            .map(|i| (i * 7) as u8)
            .collect();
        write(&d, "seg-1.seg", &[&big]);
        let f = d.open("seg-1.seg").unwrap();
        assert_eq!(f.frames.len(), 3);
        assert_eq!(f.plain, big);
    }

    #[test]
    fn store_encryption_wrong_or_missing_key_is_refused() {
        let mem = MemDirectory::new();
        write(&enc(&mem, ring(&[1])), "meta", &[b"hello"]);
        let e = enc(&mem, ring(&[9])).read("meta").unwrap_err();
        assert!(e.to_string().contains("does not hold"), "{e}");
        // The old key still opens it when listed second (rotation).
        assert_eq!(enc(&mem, ring(&[9, 1])).read("meta").unwrap(), b"hello");
        // Plaintext files are refused with a hint, not misread.
        let mut w = mem.create("plain").unwrap();
        w.write_all(b"not sealed at all, long enough for a header")
            .unwrap();
        w.sync().unwrap();
        drop(w);
        let e = enc(&mem, ring(&[1])).read("plain").unwrap_err();
        assert!(e.to_string().contains("rekey"), "{e}");
    }

    #[test]
    fn store_encryption_any_flipped_byte_is_detected_or_a_torn_log_tail() {
        for name in [LOG, "seg-0000000001.seg"] {
            let mem = MemDirectory::new();
            let d = enc(&mem, ring(&[3]));
            write(&d, name, &[b"first frame", b"second frame", b"third"]);
            let raw = mem.read(name).unwrap();
            let last_frame_at = d.open(name).unwrap().frames[2].1;
            for at in 0..raw.len() {
                let m2 = MemDirectory::new();
                let mut flipped = raw.clone();
                flipped[at] ^= 0x5a;
                drop(m2.create(name).unwrap());
                m2.append_durable(name, &flipped).unwrap();
                match enc(&m2, ring(&[3])).read(name) {
                    Err(_) => {}
                    // Damage to a log's last frame reads as a torn tail: the earlier frames
                    // survive intact and nothing altered is returned.
                    Ok(p) => {
                        assert!(
                            name == LOG && at >= last_frame_at,
                            "{name}: byte {at} flipped unnoticed"
                        );
                        assert_eq!(p, b"first framesecond frame");
                    }
                }
            }
        }
    }

    /// A sealed segment-sized file: `len` patterned bytes written in one go (one sync).
    fn sealed_file(d: &dyn Directory, name: &str, len: usize) -> Vec<u8> {
        let plain: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut w = d.create(name).unwrap();
        w.write_all(&plain).unwrap();
        w.sync().unwrap();
        plain
    }

    #[test]
    fn store_encryption_large_files_are_read_in_blocks_through_the_cache() {
        let mem = MemDirectory::new();
        let d = EncryptedDirectory::with_cache(Arc::new(mem.clone()), ring(&[8]), 4 * FRAME_TARGET);
        let name = "seg-0000000001.fforms";
        let plain = sealed_file(&d, name, 40 * FRAME_TARGET + 123);
        let m = d.map(name).unwrap();
        assert!(
            m.whole().is_none(),
            "a large sealed file is not decrypted whole"
        );
        assert_eq!(m.len(), plain.len());
        for (a, b) in [
            (0, 10),
            (FRAME_TARGET - 3, FRAME_TARGET + 3),
            (5, 3 * FRAME_TARGET + 9),
        ] {
            assert_eq!(&m.read(a..b).unwrap()[..], &plain[a..b]);
        }
        let end = plain.len();
        assert_eq!(&m.read(end - 200..end).unwrap()[..], &plain[end - 200..]);
        // The same block again is a cache hit; the cache keeps to its budget.
        let (h0, _, _) = d.cache_stats();
        m.read(1..2).unwrap();
        assert_eq!(d.cache_stats().0, h0 + 1);
        for k in 0..40 {
            m.read(k * FRAME_TARGET..k * FRAME_TARGET + 1).unwrap();
        }
        assert!(d.cache_stats().2 <= 4 * FRAME_TARGET);
        // Resident copies decrypt without the cache and equal the plaintext.
        let misses = d.cache_stats().1;
        assert_eq!(m.copy_range(7..end).unwrap().whole(), Some(&plain[7..]));
        assert_eq!(d.cache_stats().1, misses);
        // Small files and logs are still decrypted whole.
        sealed_file(&d, "meta.abis", 1000);
        assert!(d.map("meta.abis").unwrap().whole().is_some());
    }

    #[test]
    fn store_encryption_a_flipped_byte_of_a_block_file_fails_the_read_that_covers_it() {
        let mem = MemDirectory::new();
        let name = "seg-0000000002.seg";
        let plain = sealed_file(&enc(&mem, ring(&[9])), name, 20 * FRAME_TARGET + 77);
        let raw = mem.read(name).unwrap();
        let stride = FRAME_HEAD + FRAME_TARGET + TAG_LEN;
        // Every part of the header, of the first, a middle and the last frame.
        let mut spots: Vec<usize> = (0..HEADER_LEN + FRAME_HEAD + 2).collect();
        for frame_at in [
            HEADER_LEN,
            HEADER_LEN + 7 * stride,
            HEADER_LEN + 20 * stride,
        ] {
            spots.extend([frame_at, frame_at + 5, frame_at + FRAME_HEAD + 50]);
            spots.extend((1..=TAG_LEN).map(|t| (frame_at + stride).min(raw.len()) - t));
        }
        for at in spots.into_iter().filter(|&at| at < raw.len()) {
            let m2 = MemDirectory::new();
            let mut flipped = raw.clone();
            flipped[at] ^= 0x24;
            drop(m2.create(name).unwrap());
            m2.append_durable(name, &flipped).unwrap();
            // Either the map is refused, or reading the whole file is; never altered bytes.
            if let Ok(m) = enc(&m2, ring(&[9])).map(name) {
                match m.read(0..m.len()) {
                    Err(e) => assert!(e.to_string().contains(name), "{e}"),
                    Ok(back) => panic!("byte {at} flipped unnoticed ({} bytes read)", back.len()),
                }
                // Frames not covering the flipped byte still read.
                let frame = at.saturating_sub(HEADER_LEN) / stride;
                if at >= HEADER_LEN + FRAME_HEAD && frame > 0 {
                    assert_eq!(&m.read(0..10).unwrap()[..], &plain[..10]);
                }
            }
        }
    }

    #[test]
    fn store_encryption_truncate_inside_a_frame_reseals_the_prefix() {
        let mem = MemDirectory::new();
        let d = enc(&mem, ring(&[4]));
        write(&d, LOG, &[b"aaaa", b"bbbbbbbb", b"cc"]);
        d.truncate(LOG, 7).unwrap();
        assert_eq!(d.read(LOG).unwrap(), b"aaaabbb");
        d.truncate(LOG, 4).unwrap();
        assert_eq!(d.read(LOG).unwrap(), b"aaaa");
        let mut w = d.append(LOG).unwrap();
        w.write_all(b"zz").unwrap();
        w.sync().unwrap();
        drop(w);
        assert_eq!(d.read(LOG).unwrap(), b"aaaazz");
        assert!(d.truncate(LOG, 99).is_err());
        d.truncate(LOG, 0).unwrap();
        assert_eq!(d.read(LOG).unwrap(), b"");
    }

    #[test]
    fn store_encryption_torn_tail_is_hidden_then_cut_on_append() {
        let mem = MemDirectory::new();
        let d = enc(&mem, ring(&[5]));
        write(&d, LOG, &[b"durable"]);
        mem.append_durable(LOG, &[7, 0, 0, 0, 0xf8, 0xff, 0xff, 0xff, 1, 2, 3])
            .unwrap();
        assert_eq!(d.read(LOG).unwrap(), b"durable");
        let mut w = d.append(LOG).unwrap();
        w.write_all(b"+more").unwrap();
        w.sync().unwrap();
        drop(w);
        assert_eq!(d.read(LOG).unwrap(), b"durable+more");
    }

    #[test]
    fn store_encryption_key_file_parsing() {
        let line = Keyring::generate_line().unwrap();
        assert_eq!(line.len(), 64);
        let text = format!("# active\n{line}\n\n{}  # old\n", "ab".repeat(32));
        let k = Keyring::parse(&text).unwrap();
        assert_eq!(k.keys.len(), 2);
        assert!(!format!("{k:?}").contains(&line));
        for bad in ["", "# only a comment", "abcd", &"zz".repeat(32)] {
            assert!(Keyring::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Keyring::parse(&format!("{line}\n{line}")).is_err());
    }

    #[test]
    fn store_encryption_rekey_rotates_and_decrypts() {
        let mem = MemDirectory::new();
        write(&enc(&mem, ring(&[1])), "meta.abis", &[b"m"]);
        write(&enc(&mem, ring(&[1])), LOG, &[b"w"]);
        let both = ring(&[2, 1]);
        let r = rekey_in(&mem, &both, RekeyTarget::ActiveKey, None).unwrap();
        assert_eq!(r.rewritten, 2);
        assert_eq!(enc(&mem, ring(&[2])).read("meta.abis").unwrap(), b"m");
        let r = rekey_in(&mem, &both, RekeyTarget::ActiveKey, None).unwrap();
        assert_eq!((r.rewritten, r.unchanged), (0, 2));
        rekey_in(&mem, &both, RekeyTarget::Plaintext, None).unwrap();
        assert_eq!(mem.read("meta.abis").unwrap(), b"m");
    }

    #[test]
    fn store_encryption_rekey_reframes_files_sealed_in_larger_frames() {
        let mem = MemDirectory::new();
        let keys = ring(&[3]);
        let name = "seg-0000000001.seg";
        let plain: Vec<u8> = (0..FRAME_TARGET + 10).map(|i| i as u8).collect();
        // As an older version wrote it: one frame larger than today's frames.
        let mut w = SealingWriter::start(mem.create(name).unwrap(), name, &keys).unwrap();
        w.seal(&plain).unwrap();
        w.inner.sync().unwrap();
        drop(w);
        let r = rekey_in(&mem, &keys, RekeyTarget::ActiveKey, None).unwrap();
        assert_eq!((r.rewritten, r.unchanged), (1, 0));
        let f = open_file(name, &mem.read(name).unwrap(), &keys).unwrap();
        assert_eq!(f.plain, plain);
        assert_eq!(f.frames.len(), 2);
        let r = rekey_in(&mem, &keys, RekeyTarget::ActiveKey, None).unwrap();
        assert_eq!((r.rewritten, r.unchanged), (0, 1));
    }

    #[test]
    fn store_encryption_messages_open_only_where_sealed() {
        let k = ring(&[3]);
        let subject = b"abis.rec.2.00ff";
        let plain = b"a record's canonical bytes".to_vec();
        let sealed = k.seal_message(subject, &plain).unwrap();
        assert_eq!(sealed.len(), plain.len() + MESSAGE_OVERHEAD);
        assert!(!sealed.windows(8).any(|w| w == &plain[..8]));
        assert_eq!(k.open_message(subject, &sealed).unwrap(), plain);
        // Two seals of the same bytes differ (random nonce).
        assert_ne!(k.seal_message(subject, &plain).unwrap(), sealed);
        // Another subject, any flipped bit, a cut: refused.
        assert_eq!(
            k.open_message(b"abis.rec.1.00ff", &sealed),
            Err(MessageSealError::Forged)
        );
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x20;
            assert!(k.open_message(subject, &bad).is_err(), "bit flipped at {i}");
        }
        assert_eq!(
            k.open_message(subject, &sealed[..10]),
            Err(MessageSealError::Truncated(10))
        );
        // A rotated ring still opens it; a ring without its key names the missing key.
        assert_eq!(ring(&[9, 3]).open_message(subject, &sealed).unwrap(), plain);
        assert!(matches!(
            ring(&[9]).open_message(subject, &sealed),
            Err(MessageSealError::UnknownKey(_))
        ));
        let empty = k.seal_message(subject, b"").unwrap();
        assert_eq!(k.open_message(subject, &empty).unwrap(), b"");
    }

    proptest::proptest! {
        #[test]
        fn store_encryption_random_or_cut_files_never_panic(
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            cut in proptest::prelude::any::<usize>(),
            sealed_prefix in proptest::prelude::any::<bool>(),
        ) {
            let mem = MemDirectory::new();
            let d = enc(&mem, ring(&[6]));
            let mut bytes = Vec::new();
            if sealed_prefix {
                write(&d, LOG, &[b"some entries", b"more"]);
                bytes = mem.read(LOG).unwrap();
                bytes.truncate(cut % (bytes.len() + 1));
            }
            bytes.extend_from_slice(&junk);
            for name in [LOG, "meta.abis", "seg-0000000001.seg"] {
                drop(mem.create(name).unwrap());
                mem.append_durable(name, &bytes).unwrap();
                let _ = d.read(name);
                if let Ok(m) = d.map(name) {
                    let len = m.len();
                    let _ = m.read(cut % (len + 1)..len);
                    let _ = m.copy_range(0..len);
                }
                let _ = d.truncate(name, (cut % 64) as u64);
                if let Ok(mut w) = d.append(name) {
                    let _ = w.write_all(b"x");
                    let _ = w.sync();
                }
            }
        }

        #[test]
        fn store_encryption_hostile_messages_never_panic(
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let k = ring(&[4]);
            proptest::prop_assert!(k.open_message(b"s", &junk).is_err());
        }
    }
}
