//! The durable case store: one file per case under `<data>/cases/`, replaced atomically.
//!
//! Why files and not the gallery's log: a case is written twice in its life (opened, decided)
//! and read by id, so a file per case written as temp file → fsync → rename → fsync of the
//! directory gives the gallery's guarantee (an acknowledged write survives SIGKILL and power
//! loss; a torn write leaves the previous version) with no log to compact. A file is
//! `ABISCASE` (8 bytes), the CRC-32 of the payload (4 bytes, little-endian), then the
//! `AdjudicationCase` message (protobuf). With the gallery's key (`[store]
//! encryption_key_file`) a case holds minutiae like the gallery does, so it is sealed the same
//! way: `ABISCSE1` then the message sealed with AES-256-GCM under the active key, bound to the
//! case id (a file moved to another case's name does not open). Plaintext files are still read
//! (a gallery that turned encryption on) and sealed at their next write. Leftover temp files are
//! removed at open; a file that fails its checksum or its seal stops the open, naming the file,
//! since it can only be damage, tampering or a missing key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use abis_engine::store::encryption::Keyring;
use abis_proto::v1::{AdjudicationCase, CaseState};
use prost::Message;

use crate::durable::{Envelope, EnvelopeError};

const MAGIC: &[u8; 8] = b"ABISCASE";
const SEALED_MAGIC: &[u8; 8] = b"ABISCSE1";
const ENVELOPE: Envelope = Envelope {
    plain: MAGIC,
    sealed: SEALED_MAGIC,
};
const SUFFIX: &str = ".case";
const TEMP_SUFFIX: &str = ".case.tmp";

/// Why the case store failed.
#[derive(Debug, thiserror::Error)]
pub enum CaseStoreError {
    #[error("case store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("case file {path} is damaged: {what}")]
    Damaged { path: PathBuf, what: String },
    #[error("sealing case {case}: {what}")]
    Seal { case: String, what: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaseStoreError + '_ {
    move |source| CaseStoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Every case, in memory and on disk. Writers go through [`CaseStore::put`]; its lock also
/// serialises a decision's check and write.
pub struct CaseStore {
    dir: PathBuf,
    keys: Option<Keyring>,
    cases: Mutex<BTreeMap<String, AdjudicationCase>>,
}

impl CaseStore {
    /// Opens (creating) the store in `dir` and reads every case; `keys` seal the files.
    pub fn open(dir: &Path, keys: Option<Keyring>) -> Result<CaseStore, CaseStoreError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut cases = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let path = entry.map_err(io_err(dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(TEMP_SUFFIX) {
                // A write that never reached its rename: never acknowledged.
                std::fs::remove_file(&path).map_err(io_err(&path))?;
            } else if name.ends_with(SUFFIX) {
                let case = read_case(&path, keys.as_ref())?;
                cases.insert(case.case_id.clone(), case);
            }
        }
        Ok(CaseStore {
            dir: dir.to_path_buf(),
            keys,
            cases: Mutex::new(cases),
        })
    }

    /// A copy of one case.
    pub fn get(&self, id: &str) -> Option<AdjudicationCase> {
        self.lock().get(id).cloned()
    }

    /// Cases in `state` (`None`: all), oldest first, starting after `after` (opened_at, id).
    pub fn list(
        &self,
        state: Option<CaseState>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> (Vec<AdjudicationCase>, bool) {
        let cases = self.lock();
        let mut picked: Vec<&AdjudicationCase> = cases
            .values()
            .filter(|c| state.is_none_or(|s| c.state == s as i32))
            .filter(|c| after.is_none_or(|a| (c.opened_at.as_str(), c.case_id.as_str()) > a))
            .collect();
        picked.sort_by(|a, b| (&a.opened_at, &a.case_id).cmp(&(&b.opened_at, &b.case_id)));
        let more = picked.len() > limit;
        (picked.into_iter().take(limit).cloned().collect(), more)
    }

    /// Writes `case` durably, then makes it visible; `check` sees the current version (under
    /// the store's lock) and may refuse the write.
    pub fn put<E>(
        &self,
        case: AdjudicationCase,
        check: impl FnOnce(Option<&AdjudicationCase>) -> Result<(), E>,
    ) -> Result<Result<(), E>, CaseStoreError> {
        let mut cases = self.lock();
        if let Err(e) = check(cases.get(&case.case_id)) {
            return Ok(Err(e));
        }
        self.write(&case)?;
        cases.insert(case.case_id.clone(), case);
        Ok(Ok(()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, AdjudicationCase>> {
        // A panic while holding the lock cannot leave a half-applied map: inserts are last.
        self.cases.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, case: &AdjudicationCase) -> Result<(), CaseStoreError> {
        let bytes = self.encode(case)?;
        let path = self.dir.join(format!("{}{SUFFIX}", case.case_id));
        let temp = self.dir.join(format!("{}{TEMP_SUFFIX}", case.case_id));
        crate::durable::replace(&path, &temp, &bytes).map_err(io_err(&path))
    }
}

/// Rewrites every case of the (stopped) store in `dir` under the active key of `keys`, or in
/// plaintext with `decrypt`, one atomic replacement at a time (safe to interrupt and re-run:
/// files sealed by any key of the ring still open). `abis store rekey` calls it after the
/// gallery. Returns how many cases were rewritten.
pub fn rekey(dir: &Path, keys: &Keyring, decrypt: bool) -> Result<usize, CaseStoreError> {
    let mut store = CaseStore::open(dir, Some(keys.clone()))?;
    if decrypt {
        store.keys = None;
    }
    let cases: Vec<AdjudicationCase> = store.lock().values().cloned().collect();
    for case in &cases {
        store.write(case)?;
    }
    Ok(cases.len())
}

impl CaseStore {
    /// A case file's bytes: sealed when the store has keys, else checksummed.
    fn encode(&self, case: &AdjudicationCase) -> Result<Vec<u8>, CaseStoreError> {
        ENVELOPE
            .wrap(
                self.keys.as_ref(),
                case.case_id.as_bytes(),
                &case.encode_to_vec(),
            )
            .map_err(|e| CaseStoreError::Seal {
                case: case.case_id.clone(),
                what: e.to_string(),
            })
    }
}

fn read_case(path: &Path, keys: Option<&Keyring>) -> Result<AdjudicationCase, CaseStoreError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let damaged = |what: &str| CaseStoreError::Damaged {
        path: path.to_path_buf(),
        what: what.to_string(),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let id = name.strip_suffix(SUFFIX).unwrap_or(name);
    let payload = ENVELOPE
        .open(keys, id.as_bytes(), &bytes)
        .map_err(|e| match e {
            EnvelopeError::Foreign => damaged("not a case file"),
            e => damaged(&e.to_string()),
        })?;
    let case = AdjudicationCase::decode(payload.as_slice()).map_err(|e| damaged(&e.to_string()))?;
    if case.case_id != id {
        return Err(damaged("case id differs from the file name"));
    }
    Ok(case)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(id: &str, opened: &str) -> AdjudicationCase {
        AdjudicationCase {
            case_id: id.to_string(),
            state: CaseState::Open as i32,
            opened_at: opened.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn cases_survive_reopening_and_list_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = CaseStore::open(dir.path(), None).unwrap();
        for (id, t) in [
            ("b", "2026-01-02"),
            ("a", "2026-01-01"),
            ("c", "2026-01-02"),
        ] {
            store
                .put(case(id, t), |_| Ok::<(), ()>(()))
                .unwrap()
                .unwrap();
        }
        std::fs::write(dir.path().join("x.case.tmp"), b"torn").unwrap();
        let store = CaseStore::open(dir.path(), None).unwrap();
        assert!(!dir.path().join("x.case.tmp").exists());
        let (page, more) = store.list(None, None, 2);
        let ids: Vec<&str> = page.iter().map(|c| c.case_id.as_str()).collect();
        assert_eq!((ids, more), (vec!["a", "b"], true));
        let (page, more) = store.list(Some(CaseState::Open), Some(("2026-01-02", "b")), 2);
        assert_eq!(
            (page.len(), page[0].case_id.as_str(), more),
            (1, "c", false)
        );
        assert!(store.list(Some(CaseState::Decided), None, 9).0.is_empty());
    }

    #[test]
    fn a_refused_check_writes_nothing_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = CaseStore::open(dir.path(), None).unwrap();
        store
            .put(case("a", "t"), |_| Ok::<(), ()>(()))
            .unwrap()
            .unwrap();
        let mut changed = case("a", "t");
        changed.state = CaseState::Decided as i32;
        let refused = store.put(
            changed,
            |old| if old.is_some() { Err("taken") } else { Ok(()) },
        );
        assert_eq!(refused.unwrap(), Err("taken"));
        assert_eq!(store.get("a").unwrap().state, CaseState::Open as i32);
        let file = dir.path().join("a.case");
        let mut bytes = std::fs::read(&file).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&file, bytes).unwrap();
        let err = CaseStore::open(dir.path(), None).err().unwrap().to_string();
        assert!(err.contains("a.case") && err.contains("checksum"), "{err}");
    }

    #[test]
    fn with_the_gallery_key_cases_are_sealed_and_bound_to_their_id() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keyring::from_keys(&[[7u8; 32]]).unwrap();
        let store = CaseStore::open(dir.path(), Some(keys.clone())).unwrap();
        let mut c = case("a", "t");
        c.probe_reference_id = "person-123456".into();
        store.put(c, |_| Ok::<(), ()>(())).unwrap().unwrap();
        let bytes = std::fs::read(dir.path().join("a.case")).unwrap();
        assert!(bytes.starts_with(SEALED_MAGIC));
        assert!(
            !bytes.windows(13).any(|w| w == b"person-123456"),
            "plaintext in a sealed case"
        );
        let reopened = CaseStore::open(dir.path(), Some(keys.clone())).unwrap();
        assert_eq!(
            reopened.get("a").unwrap().probe_reference_id,
            "person-123456"
        );
        let err = CaseStore::open(dir.path(), None).err().unwrap().to_string();
        assert!(
            err.contains("a.case") && err.contains("encryption_key_file"),
            "{err}"
        );
        std::fs::rename(dir.path().join("a.case"), dir.path().join("b.case")).unwrap();
        let err = CaseStore::open(dir.path(), Some(keys))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("b.case") && err.contains("authenticate"),
            "{err}"
        );
    }

    #[test]
    fn rekeying_moves_every_case_to_the_active_key_or_to_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = ([1u8; 32], [2u8; 32]);
        let store = CaseStore::open(dir.path(), Some(Keyring::from_keys(&[old]).unwrap())).unwrap();
        for id in ["a", "b"] {
            store
                .put(case(id, "t"), |_| Ok::<(), ()>(()))
                .unwrap()
                .unwrap();
        }
        let both = Keyring::from_keys(&[new, old]).unwrap();
        assert_eq!(rekey(dir.path(), &both, false).unwrap(), 2);
        let only_new = Keyring::from_keys(&[new]).unwrap();
        assert_eq!(
            CaseStore::open(dir.path(), Some(only_new.clone()))
                .unwrap()
                .list(None, None, 9)
                .0
                .len(),
            2
        );
        assert_eq!(rekey(dir.path(), &only_new, true).unwrap(), 2);
        assert!(std::fs::read(dir.path().join("a.case"))
            .unwrap()
            .starts_with(MAGIC));
        assert!(CaseStore::open(dir.path(), None)
            .unwrap()
            .get("b")
            .is_some());
    }
}
