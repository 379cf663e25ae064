//! The gallery itself: a store opened with the finger index as its companion files, the
//! matcher and face calibration it scores with, and its caches.

use std::path::Path;
use std::sync::Arc;

use super::cache::PreparedCache;
use super::error::GalleryError;
use super::probe::SearchConfig;
use super::score::{FaceScorer, Scoring};
use crate::index::segment_index::FingerIndexFiles;
use crate::matcher::Matcher;
use crate::priority::BackgroundPool;
use crate::store::backup::{self, BackupError, Manifest, Tree};
use crate::store::{
    Companion, Directory, RecoveryReport, Store, StoreConfig, StoreCopy, StoreError,
};

/// The gallery: a store with its finger index, a matcher, a face scorer, and (while searched
/// exhaustively) a cache of prepared records.
pub struct Gallery {
    pub(super) store: Store,
    pub(super) matcher: Matcher,
    pub(super) face_scorer: Option<FaceScorer>,
    pub(super) search: SearchConfig,
    pub(super) index: Arc<FingerIndexFiles>,
    pub(super) prepared: PreparedCache,
    /// Where inserts compute their records' index entries, one thread per core, below
    /// searches in priority ([`crate::priority`]): the entries are most of an insert's CPU
    /// (~1.5 ms a ten-finger record). Made at the first insert.
    pub(super) enrolment: BackgroundPool,
}

impl Gallery {
    /// Opens (or creates) the gallery in `path`: the store with the finger index as its
    /// companion files (`cfg.companion` is replaced).
    pub fn open(
        path: impl AsRef<Path>,
        cfg: StoreConfig,
        matcher: Matcher,
        face_scorer: Option<FaceScorer>,
    ) -> Result<(Gallery, RecoveryReport), GalleryError> {
        Self::open_with(cfg, matcher, face_scorer, |cfg| Store::open(path, cfg))
    }

    /// [`Gallery::open`] in any [`Directory`].
    pub fn open_in(
        dir: Arc<dyn Directory>,
        cfg: StoreConfig,
        matcher: Matcher,
        face_scorer: Option<FaceScorer>,
    ) -> Result<(Gallery, RecoveryReport), GalleryError> {
        Self::open_with(cfg, matcher, face_scorer, |cfg| Store::open_in(dir, cfg))
    }

    fn open_with(
        mut cfg: StoreConfig,
        matcher: Matcher,
        face_scorer: Option<FaceScorer>,
        open_store: impl FnOnce(StoreConfig) -> Result<(Store, RecoveryReport), StoreError>,
    ) -> Result<(Gallery, RecoveryReport), GalleryError> {
        let index = Arc::new(FingerIndexFiles::default());
        cfg.companion = Some(index.clone());
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let enrolment = BackgroundPool::new("abis-enrol", threads, cfg.background_nice);
        let (store, report) = open_store(cfg)?;
        let gallery = Gallery {
            store,
            matcher,
            face_scorer,
            search: SearchConfig::default(),
            index,
            prepared: PreparedCache::default(),
            enrolment,
        };
        Ok((gallery, report))
    }

    /// The companion files a store must be opened with for [`Gallery`] to search it (for tools
    /// that write galleries directly, such as the scale harness).
    pub fn index_files() -> Arc<dyn Companion> {
        Arc::new(FingerIndexFiles::default())
    }

    /// Whether `name` is a file of a gallery directory: a store file or an index file (one
    /// path component, never the lock). What a receiver of a [`Gallery::checkpoint_to`] copy
    /// accepts.
    pub fn is_gallery_file(name: &str) -> bool {
        crate::store::is_copy_file(name, Some(&FingerIndexFiles::default() as &dyn Companion))
    }

    /// Checkpoints and puts every file of the gallery (store and index files) into the new
    /// directory `dest`; see [`Store::checkpoint_to`].
    pub fn checkpoint_to(&self, dest: &Path) -> Result<StoreCopy, GalleryError> {
        Ok(self.store.checkpoint_to(dest)?)
    }

    /// A backup of the live gallery in the new directory `dest`: a checkpoint copy, the
    /// `trees` kept beside it (copied after the checkpoint) and its manifest
    /// ([`crate::store::backup`]). Inserts and searches go on meanwhile.
    pub fn backup_to(&self, dest: &Path, trees: &[Tree]) -> Result<Manifest, BackupError> {
        let copy = self.store.checkpoint_to(dest)?;
        let trees = backup::copy_trees(dest, trees)?;
        backup::write_manifest(dest, &copy, trees)
    }

    /// Rewrites the files of the stopped gallery at `path` — its store files and its index
    /// files — under the active key of `keys`, or in plaintext ([`crate::store::encryption::rekey`]).
    pub fn rekey(
        path: &Path,
        keys: &crate::store::encryption::Keyring,
        target: crate::store::encryption::RekeyTarget,
    ) -> Result<crate::store::encryption::RekeyReport, crate::store::StoreError> {
        crate::store::encryption::rekey(
            path,
            keys,
            target,
            Some(&FingerIndexFiles::default() as &dyn Companion),
        )
    }

    /// Checks a gallery backup (every file named in its manifest, intact; nothing else).
    pub fn verify_backup(dir: &Path) -> Result<Manifest, BackupError> {
        backup::verify(dir, Some(&FingerIndexFiles::default() as &dyn Companion))
    }

    /// Checks the backup in `from` and makes it the gallery directory `to` (which must hold no
    /// store yet); its trees go into `trees_to` (required when it has any).
    pub fn restore_backup(
        from: &Path,
        to: &Path,
        trees_to: Option<&Path>,
    ) -> Result<Manifest, BackupError> {
        backup::restore(
            from,
            to,
            trees_to,
            Some(&FingerIndexFiles::default() as &dyn Companion),
        )
    }

    /// The same gallery with another search configuration (set before the first search: the
    /// cache keeps whatever form was prepared first).
    pub fn with_search(mut self, search: SearchConfig) -> Gallery {
        self.search = search;
        self
    }

    pub fn search_config(&self) -> &SearchConfig {
        &self.search
    }

    /// Gives the store back (to close it at shutdown).
    pub fn into_store(self) -> Store {
        self.store
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Whether every segment's index is usable (after an unclean start it may be rebuilding).
    pub fn index_ready(&self) -> bool {
        self.store.missing_companions() == 0
    }

    pub(super) fn scoring(&self) -> Scoring<'_> {
        Scoring {
            matcher: &self.matcher,
            face_scorer: self.face_scorer.as_ref(),
        }
    }
}
