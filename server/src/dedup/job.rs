//! A deduplication job on disk and in a worker thread.
//!
//! A job is a directory `<data>/dedup/<job id>/`, created whole (written as `<id>.new`, synced,
//! renamed) with `job.json` (settings and the scope's size) and `scope` (the ids, one per line).
//! The worker appends one line to `blocks.jsonl` per finished block (its pairs) and syncs it
//! before counting the block done, and writes `end.json` (finished, cancelled or failed) when it
//! stops. A job without `end.json` is resumed at the next start: finished blocks are kept (a
//! torn last line is cut), the next block is redone from its beginning, so the final report is
//! the one an uninterrupted run gives.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use abis_engine::gallery::{DedupScope, DedupSettings, DuplicatePair, Gallery};
use serde::{Deserialize, Serialize};

use super::DedupError;
use crate::durable;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Finished,
    Cancelled,
    Failed,
}

/// What `job.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSpec {
    pub records: u64,
    pub block: usize,
    pub band_candidates: usize,
    pub code_floor_per_finger: f32,
    pub pair_threshold: f64,
    pub expected_false_pairs: f64,
}

impl JobSpec {
    fn settings(&self) -> DedupSettings {
        DedupSettings {
            band_candidates: self.band_candidates,
            code_floor_per_finger: self.code_floor_per_finger,
            pair_threshold: self.pair_threshold,
        }
    }

    fn blocks(&self) -> usize {
        (self.records as usize).div_ceil(self.block.max(1))
    }
}

/// One line of `blocks.jsonl`.
#[derive(Debug, Serialize, Deserialize)]
struct BlockLine {
    block: usize,
    pairs: Vec<StoredPair>,
}

/// A pair as stored (the engine's pair, flattened).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPair {
    pub a: String,
    pub b: String,
    pub score: f64,
    pub code_score: f32,
    pub finger_score: Option<f64>,
    pub face_score: Option<f64>,
    pub strong_positions: Vec<u8>,
}

impl From<DuplicatePair> for StoredPair {
    fn from(p: DuplicatePair) -> StoredPair {
        StoredPair {
            strong_positions: p
                .finger
                .as_ref()
                .map(|f| f.positions.clone())
                .unwrap_or_default(),
            finger_score: p.finger.map(|f| f.score),
            face_score: p.face.map(|f| f.score),
            a: p.a,
            b: p.b,
            score: p.score,
            code_score: p.code_score,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct End {
    state: JobState,
    error: String,
    elapsed_s: f64,
}

/// A job as the service sees it: settings, progress, state.
#[derive(Debug)]
pub struct Job {
    pub id: String,
    pub spec: JobSpec,
    dir: PathBuf,
    blocks_done: AtomicU64,
    records_done: AtomicU64,
    pairs: AtomicU64,
    cancel: AtomicBool,
    state: Mutex<(JobState, String)>,
    /// Seconds run before this process took the job over, and when it did.
    elapsed_before: f64,
    since: Instant,
}

/// A snapshot of a job's progress.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub state: JobState,
    pub error: String,
    pub records_done: u64,
    pub pairs: u64,
    pub elapsed_s: f64,
    pub remaining_s: f64,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> DedupError {
    DedupError::Io(format!("{what} {}: {e}", path.display()))
}

fn sync_dir(dir: &Path) -> Result<(), DedupError> {
    durable::sync_dir(dir).map_err(|e| io("syncing", dir, e))
}

/// Writes `bytes` to `path` atomically (see [`durable::replace`]).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DedupError> {
    durable::replace(path, &path.with_extension("tmp"), bytes).map_err(|e| io("writing", path, e))
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

impl Job {
    /// Creates job `id` under `root` for `scope`, whole or not at all.
    pub fn create(
        root: &Path,
        id: &str,
        spec: JobSpec,
        scope: &DedupScope,
    ) -> Result<Job, DedupError> {
        std::fs::create_dir_all(root).map_err(|e| io("creating", root, e))?;
        let staging = root.join(format!("{id}.new"));
        std::fs::create_dir(&staging).map_err(|e| io("creating", &staging, e))?;
        write_atomic(&staging.join("job.json"), &json(&spec))?;
        write_atomic(&staging.join("scope"), scope.ids().join("\n").as_bytes())?;
        let dir = root.join(id);
        std::fs::rename(&staging, &dir).map_err(|e| io("renaming", &staging, e))?;
        sync_dir(root)?;
        Ok(Job::with(id.to_owned(), spec, dir, 0.0))
    }

    fn with(id: String, spec: JobSpec, dir: PathBuf, elapsed_before: f64) -> Job {
        Job {
            id,
            spec,
            dir,
            blocks_done: AtomicU64::new(0),
            records_done: AtomicU64::new(0),
            pairs: AtomicU64::new(0),
            cancel: AtomicBool::new(false),
            state: Mutex::new((JobState::Running, String::new())),
            elapsed_before,
            since: Instant::now(),
        }
    }

    /// Opens a job directory written by [`Job::create`]: its progress from `blocks.jsonl` (a torn
    /// last line cut off), its state from `end.json` (running when absent).
    pub fn open(dir: &Path) -> Result<Job, DedupError> {
        let id = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| DedupError::Io(format!("job directory {}", dir.display())))?
            .to_owned();
        let spec_path = dir.join("job.json");
        let spec: JobSpec = serde_json::from_slice(
            &std::fs::read(&spec_path).map_err(|e| io("reading", &spec_path, e))?,
        )
        .map_err(|e| DedupError::Io(format!("{}: {e}", spec_path.display())))?;
        let end: Option<End> = std::fs::read(dir.join("end.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let job = Job::with(
            id,
            spec,
            dir.to_owned(),
            end.as_ref().map_or(0.0, |e| e.elapsed_s),
        );
        let lines = job.read_blocks(true)?;
        let records: usize = (0..lines.len()).map(|b| job.block_range(b).len()).sum();
        job.blocks_done.store(lines.len() as u64, Ordering::SeqCst);
        job.records_done.store(records as u64, Ordering::SeqCst);
        let pairs: usize = lines.iter().map(|l| l.pairs.len()).sum();
        job.pairs.store(pairs as u64, Ordering::SeqCst);
        if let Some(end) = end {
            *job.state.lock().unwrap_or_else(|p| p.into_inner()) = (end.state, end.error);
        }
        Ok(job)
    }

    fn blocks_path(&self) -> PathBuf {
        self.dir.join("blocks.jsonl")
    }

    fn block_range(&self, b: usize) -> std::ops::Range<usize> {
        let n = self.spec.records as usize;
        let start = (b * self.spec.block).min(n);
        start..(start + self.spec.block).min(n)
    }

    /// The finished blocks, in order; with `repair`, a torn or out-of-order tail is cut off
    /// the file (it is redone).
    fn read_blocks(&self, repair: bool) -> Result<Vec<BlockLine>, DedupError> {
        let path = self.blocks_path();
        let Ok(f) = File::open(&path) else {
            return Ok(Vec::new());
        };
        let mut lines = Vec::new();
        let mut good_bytes = 0u64;
        for line in BufReader::new(f).split(b'\n') {
            let line = line.map_err(|e| io("reading", &path, e))?;
            match serde_json::from_slice::<BlockLine>(&line) {
                Ok(l) if l.block == lines.len() => {
                    good_bytes += line.len() as u64 + 1;
                    lines.push(l);
                }
                _ => break,
            }
        }
        if repair {
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| io("opening", &path, e))?;
            if f.metadata().map(|m| m.len()).unwrap_or(0) > good_bytes {
                f.set_len(good_bytes)
                    .and_then(|_| f.sync_all())
                    .map_err(|e| io("truncating", &path, e))?;
            }
        }
        Ok(lines)
    }

    /// Every pair found so far, in block order.
    pub fn pairs(&self) -> Result<Vec<StoredPair>, DedupError> {
        Ok(self
            .read_blocks(false)?
            .into_iter()
            .flat_map(|l| l.pairs)
            .collect())
    }

    fn scope(&self) -> Result<DedupScope, DedupError> {
        let path = self.dir.join("scope");
        let text = std::fs::read_to_string(&path).map_err(|e| io("reading", &path, e))?;
        let ids: Vec<String> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        if ids.len() as u64 != self.spec.records {
            return Err(DedupError::Io(format!(
                "{}: {} ids for {}",
                path.display(),
                ids.len(),
                self.spec.records
            )));
        }
        Ok(DedupScope::from_ids(ids))
    }

    pub fn progress(&self) -> Progress {
        let (state, error) = self.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let done = self.records_done.load(Ordering::SeqCst);
        let running = state == JobState::Running;
        let elapsed = self.elapsed_before
            + if running {
                self.since.elapsed().as_secs_f64()
            } else {
                0.0
            };
        let run_here = self.since.elapsed().as_secs_f64();
        let left = self.spec.records.saturating_sub(done) as f64;
        let rate = done as f64 / elapsed.max(1e-3);
        Progress {
            state,
            error,
            records_done: done,
            pairs: self.pairs.load(Ordering::SeqCst),
            elapsed_s: elapsed,
            remaining_s: if running && done > 0 && run_here > 0.0 {
                left / rate
            } else {
                0.0
            },
        }
    }

    pub fn is_running(&self) -> bool {
        self.progress().state == JobState::Running
    }

    /// Asks the worker to stop after the block in progress.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// The worker: every block not yet done, each one appended and synced, then the end.
    pub fn run(
        self: Arc<Job>,
        gallery: Arc<Gallery>,
        pool: Arc<rayon::ThreadPool>,
        on_finished: Option<super::OnFinished>,
    ) {
        let outcome = self.run_blocks(&gallery, &pool).and_then(|finished| {
            if let (true, Some(hook)) = (finished, &on_finished) {
                let groups = super::groups_of(self.pairs()?);
                let n = hook(&self.id, self.spec.pair_threshold, groups)
                    .map_err(|e| DedupError::Io(format!("opening adjudication cases: {e}")))?;
                tracing::info!(job = %self.id, groups = n, "deduplication job: a case per duplicate group");
            }
            Ok(finished)
        });
        let (state, error) = match outcome {
            Ok(true) => (JobState::Finished, String::new()),
            Ok(false) => (JobState::Cancelled, String::new()),
            Err(e) => (JobState::Failed, e.to_string()),
        };
        let elapsed_s = self.elapsed_before + self.since.elapsed().as_secs_f64();
        let end = End {
            state,
            error: error.clone(),
            elapsed_s,
        };
        let written = write_atomic(&self.dir.join("end.json"), &json(&end));
        if let Err(e) = &written {
            tracing::error!(job = %self.id, error = %e, "deduplication job: its end could not be recorded");
        }
        tracing::info!(job = %self.id, state = ?state, "deduplication job stopped");
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (state, error);
    }

    /// Ok(true) when every block is done, Ok(false) when cancelled.
    fn run_blocks(&self, gallery: &Gallery, pool: &rayon::ThreadPool) -> Result<bool, DedupError> {
        let scope = self.scope()?;
        let settings = self.spec.settings();
        let path = self.blocks_path();
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io("opening", &path, e))?;
        for b in self.blocks_done.load(Ordering::SeqCst) as usize..self.spec.blocks() {
            if self.cancel.load(Ordering::SeqCst) {
                return Ok(false);
            }
            let range = self.block_range(b);
            let found = pool
                .install(|| gallery.dedup_block(&scope, range.clone(), &settings))
                .map_err(|e| DedupError::Gallery(e.to_string()))?;
            let line = BlockLine {
                block: b,
                pairs: found.into_iter().map(StoredPair::from).collect(),
            };
            let mut bytes = json(&line);
            bytes.push(b'\n');
            out.write_all(&bytes)
                .and_then(|_| out.sync_data())
                .map_err(|e| io("appending to", &path, e))?;
            self.pairs
                .fetch_add(line.pairs.len() as u64, Ordering::SeqCst);
            self.records_done
                .fetch_add(range.len() as u64, Ordering::SeqCst);
            self.blocks_done.fetch_add(1, Ordering::SeqCst);
        }
        Ok(true)
    }
}
