//! The image store (`[store] keep_images`, off by default): the finger and face images a
//! record was enrolled with, kept as received (PNG, WSQ, JPEG, JPEG 2000…) so that an examiner
//! can see the prints and photos behind a hit, not only their minutiae.
//!
//! One file per record under `<data>/images/`, named by a hash of the reference id (no personal
//! identifier in a file name), in the same envelope as the adjudication cases
//! ([`crate::durable::Envelope`]): checksummed, or sealed with the gallery's key and bound to
//! the file's name when encryption at rest is on. The file follows its record's life through
//! two-step writes, so that a crash between the image file and the gallery never leaves one
//! without the other:
//! - **insert**: the images are written to a pending file (`.new`), the record is inserted,
//!   then the pending file becomes the record's (`.img`), or is removed when the insert fails;
//! - **delete**: the record's file is first renamed aside (`.del`), the record is deleted, then
//!   the file is removed, or renamed back when the delete fails.
//!
//! A leftover pending or deleted file found at open is settled against the gallery
//! ([`ImageStore::leftovers`], [`ImageStore::settle`]): a pending file becomes the record's
//! only when the gallery holds that exact record (its digest is in the file), a set-aside
//! file comes back only when the record is still there. Probe images of an adjudication case
//! are kept the same way under the case's id. [`browser`] converts an image for the page.

pub mod browser;
mod codec;

use std::path::{Path, PathBuf};

use abis_engine::store::encryption::Keyring;
use abis_engine::store::Record;
use abis_proto::v1::{sample, Modality, Sample};
use sha2::{Digest, Sha256};

pub use codec::{ImageKind, KeptImage, RecordImages};

use crate::durable::{self, Envelope, EnvelopeError};

const ENVELOPE: Envelope = Envelope {
    plain: b"ABISIMG1",
    sealed: b"ABISIMS1",
};
const KEPT: &str = "img";
const PENDING: &str = "new";
const SET_ASIDE: &str = "del";
const TEMP: &str = "tmp";
/// Lock stripes: a record's insert and delete hold its stripe across both steps.
const STRIPES: usize = 64;

/// Why the image store failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageStoreError {
    #[error("image store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image file {path} is damaged: {what}")]
    Damaged { path: PathBuf, what: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImageStoreError + '_ {
    move |source| ImageStoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The images of every record that has some, on disk.
pub struct ImageStore {
    dir: PathBuf,
    keys: Option<Keyring>,
    stripes: Vec<tokio::sync::Mutex<()>>,
}

/// A pending or set-aside file left by a crash, to settle against the gallery.
pub struct Leftover {
    path: PathBuf,
    pub images: RecordImages,
}

impl ImageStore {
    /// Opens (creating) the store in `dir`; `keys` seal the files. Torn temporary files are
    /// removed (never acknowledged); leftovers wait for [`ImageStore::settle`].
    pub fn open(dir: &Path, keys: Option<Keyring>) -> Result<ImageStore, ImageStoreError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        for path in files(dir, TEMP)? {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
        Ok(ImageStore {
            dir: dir.to_path_buf(),
            keys,
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        })
    }

    /// The images kept for record `reference_id`, if any.
    pub fn get(&self, reference_id: &str) -> Result<Option<RecordImages>, ImageStoreError> {
        let path = self.path(&stem_of_record(reference_id), KEPT);
        let Some(images) = self.read_if_present(&path)? else {
            return Ok(None);
        };
        if images.reference_id != reference_id {
            return Err(damaged(&path, "it holds another record's images"));
        }
        Ok(Some(images))
    }

    /// The probe images kept with adjudication case `case_id`, if any.
    pub fn get_case(&self, case_id: &str) -> Result<Option<RecordImages>, ImageStoreError> {
        self.read_if_present(&self.path(&stem_of_case(case_id), KEPT))
    }

    /// Keeps a case's probe images (written once, when the case opens).
    pub fn put_case(&self, case_id: &str, images: &RecordImages) -> Result<(), ImageStoreError> {
        let stem = stem_of_case(case_id);
        self.write(&stem, KEPT, images)
    }

    /// Inserts `record` through `insert` with its `images`: pending file, insert, then the
    /// file is the record's (or removed when the insert fails).
    pub async fn insert_with<T, E>(
        &self,
        record: &Record,
        images: Vec<KeptImage>,
        insert: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<Result<T, E>, ImageStoreError> {
        let stem = stem_of_record(&record.reference_id);
        let _stripe = self.stripe(&stem).lock().await;
        let kept = RecordImages {
            reference_id: record.reference_id.clone(),
            record_digest: record_digest(record),
            images,
        };
        self.write(&stem, PENDING, &kept)?;
        let pending = self.path(&stem, PENDING);
        let outcome = insert.await;
        match &outcome {
            Ok(_) => self.rename(&pending, &self.path(&stem, KEPT))?,
            Err(_) => remove(&pending)?,
        }
        Ok(outcome)
    }

    /// Deletes a record through `delete` and its images with it: set aside, delete, then
    /// removed (or brought back when the delete fails).
    pub async fn delete_with<T, E>(
        &self,
        reference_id: &str,
        delete: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<Result<T, E>, ImageStoreError> {
        let stem = stem_of_record(reference_id);
        let _stripe = self.stripe(&stem).lock().await;
        let (kept, aside) = (self.path(&stem, KEPT), self.path(&stem, SET_ASIDE));
        let had_images = kept.exists();
        if had_images {
            self.rename(&kept, &aside)?;
        }
        let outcome = delete.await;
        if had_images {
            match &outcome {
                Ok(_) => remove(&aside)?,
                Err(_) => self.rename(&aside, &kept)?,
            }
        }
        Ok(outcome)
    }

    /// Pending and set-aside files a crash left, with what they hold.
    pub fn leftovers(&self) -> Result<Vec<Leftover>, ImageStoreError> {
        let mut out = Vec::new();
        for kind in [PENDING, SET_ASIDE] {
            for path in files(&self.dir, kind)? {
                let images = self.read(&path)?;
                out.push(Leftover { path, images });
            }
        }
        Ok(out)
    }

    /// Settles a leftover given the gallery's record of its reference id (`None`: absent). A
    /// pending file is kept only if the gallery holds the exact record it was written for; a
    /// set-aside file comes back only if its record is still there.
    pub fn settle(
        &self,
        leftover: Leftover,
        stored: Option<&Record>,
    ) -> Result<bool, ImageStoreError> {
        let path = &leftover.path;
        let stem = stem_of_record(&leftover.images.reference_id);
        let kept = self.path(&stem, KEPT);
        let pending = path.extension().is_some_and(|e| e == PENDING);
        let keep = match stored {
            Some(r) if pending => {
                record_digest(r) == leftover.images.record_digest && !kept.exists()
            }
            Some(_) => !kept.exists(),
            None => false,
        };
        if keep {
            self.rename(path, &kept)?;
        } else {
            remove(path)?;
        }
        Ok(keep)
    }

    fn stripe(&self, stem: &str) -> &tokio::sync::Mutex<()> {
        let n = stem
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31) + usize::from(b));
        &self.stripes[n % STRIPES]
    }

    fn path(&self, stem: &str, kind: &str) -> PathBuf {
        self.dir.join(format!("{stem}.{kind}"))
    }

    fn write(&self, stem: &str, kind: &str, images: &RecordImages) -> Result<(), ImageStoreError> {
        let path = self.path(stem, kind);
        let bytes = ENVELOPE
            .wrap(self.keys.as_ref(), stem.as_bytes(), &images.encode())
            .map_err(|e| damaged(&path, &e.to_string()))?;
        durable::replace(&path, &self.path(stem, TEMP), &bytes).map_err(io_err(&path))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), ImageStoreError> {
        std::fs::rename(from, to).map_err(io_err(from))?;
        durable::sync_dir(&self.dir).map_err(io_err(&self.dir))
    }

    fn read_if_present(&self, path: &Path) -> Result<Option<RecordImages>, ImageStoreError> {
        match path.try_exists() {
            Ok(true) => self.read(path).map(Some),
            Ok(false) => Ok(None),
            Err(e) => Err(io_err(path)(e)),
        }
    }

    fn read(&self, path: &Path) -> Result<RecordImages, ImageStoreError> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let payload = ENVELOPE
            .open(self.keys.as_ref(), stem.as_bytes(), &bytes)
            .map_err(|e| match e {
                EnvelopeError::Foreign => damaged(path, "not an image file"),
                e => damaged(path, &e.to_string()),
            })?;
        RecordImages::decode(&payload).map_err(|e| damaged(path, &e.to_string()))
    }
}

/// Rewrites every image file of the (stopped) store in `dir` under the active key of `keys`,
/// or in plaintext with `decrypt`, one atomic replacement at a time (safe to re-run). `abis
/// store rekey` calls it after the gallery. Returns how many files were rewritten.
pub fn rekey(dir: &Path, keys: &Keyring, decrypt: bool) -> Result<usize, ImageStoreError> {
    let reader = ImageStore::open(dir, Some(keys.clone()))?;
    let writer = ImageStore::open(dir, (!decrypt).then(|| keys.clone()))?;
    let mut rewritten = 0;
    for kind in [KEPT, PENDING, SET_ASIDE] {
        for path in files(dir, kind)? {
            let images = reader.read(&path)?;
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            writer.write(stem, kind, &images)?;
            rewritten += 1;
        }
    }
    Ok(rewritten)
}

/// The images among a request's samples, numbered as the record numbers its fingers and its
/// faces (the n-th finger sample is the record's n-th finger, whatever its data).
pub fn from_samples(samples: &[Sample]) -> Vec<KeptImage> {
    let (mut fingers, mut faces) = (0u16, 0u16);
    let mut out = Vec::new();
    for s in samples {
        let (kind, ordinal) = match Modality::try_from(s.modality) {
            Ok(Modality::Finger) => (ImageKind::Finger, &mut fingers),
            Ok(Modality::Face) => (ImageKind::Face, &mut faces),
            _ => continue,
        };
        if let Some(sample::Data::Image(bytes)) = &s.data {
            out.push(KeptImage {
                kind,
                ordinal: *ordinal,
                position: u8::try_from(s.finger_position).unwrap_or(0),
                bytes: bytes.clone(),
            });
        }
        *ordinal = ordinal.saturating_add(1);
    }
    out
}

/// What ties an image file to the exact record it was enrolled with.
fn record_digest(record: &Record) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(record.reference_id.as_bytes());
    for f in &record.fingers {
        h.update([f.position.code()]);
        h.update((f.template.len() as u64).to_le_bytes());
        h.update(&f.template);
    }
    for face in &record.faces {
        h.update((face.len() as u64).to_le_bytes());
        for v in face {
            h.update(v.to_le_bytes());
        }
    }
    h.finalize().into()
}

fn stem_of_record(reference_id: &str) -> String {
    let digest = Sha256::digest(reference_id.as_bytes());
    crate::hex::hex(&digest[..16])
}

fn stem_of_case(case_id: &str) -> String {
    format!(
        "case-{}",
        crate::hex::hex(&Sha256::digest(case_id.as_bytes())[..16])
    )
}

fn damaged(path: &Path, what: &str) -> ImageStoreError {
    ImageStoreError::Damaged {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

fn remove(path: &Path) -> Result<(), ImageStoreError> {
    std::fs::remove_file(path).map_err(io_err(path))?;
    durable::sync_dir(path.parent().unwrap_or(Path::new("."))).map_err(io_err(path))
}

/// The files of `dir` whose extension is `kind`.
fn files(dir: &Path, kind: &str) -> Result<Vec<PathBuf>, ImageStoreError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.extension().is_some_and(|e| e == kind) {
            out.push(path);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
