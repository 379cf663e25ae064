//! N:N deduplication as a service operation: one long-running job per gallery at a time,
//! beside live traffic on its own bounded thread pool, persisted block by block so that after
//! a crash it resumes and its final report is what an uninterrupted run gives. The matching is
//! the engine's self-join over the band tables (`abis_engine::gallery::Gallery::dedup_block`);
//! this module owns jobs, their files, their progress and their groups. The gRPC methods
//! (`StartDeduplication`, `GetDeduplication`, `ListDuplicates`, `CancelDeduplication`) are in
//! `service::dedup`.

mod cases;
mod job;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use abis_engine::gallery::{duplicate_groups, Gallery};
use serde::{Deserialize, Serialize};

pub use job::{Job, JobSpec, JobState, Progress, StoredPair};

/// What runs when a job has done every block, before its end is recorded (so that a crash in
/// it runs it again at resumption): given the job's id, pair threshold and groups, it returns
/// how many it handled. The server opens an adjudication case per group
/// ([`DedupJobs::open_cases_in`]).
pub type OnFinished = Arc<dyn Fn(&str, f64, Vec<Group>) -> Result<usize, String> + Send + Sync>;

/// `[dedup]` of the configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// Threads of a job; 0: half the cores, at least one (the rest serve live traffic).
    pub threads: usize,
    /// Records per block: the unit of progress, persistence and resumption.
    pub block: usize,
    /// Per record and segment, the most voted records whose codes are compared.
    pub band_candidates: usize,
    /// Code score per shared finger position a pair needs before the full matcher sees it.
    pub code_floor_per_finger: f32,
}

/// Why a job operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    #[error("deduplication job {0} is running; one job at a time")]
    AlreadyRunning(String),
    #[error("no deduplication job {0}")]
    NotFound(String),
    #[error("deduplication job {0} is not running")]
    NotRunning(String),
    #[error("{0}")]
    Invalid(String),
    #[error("deduplication job storage: {0}")]
    Io(String),
    #[error("deduplication: {0}")]
    Gallery(String),
}

/// The jobs of this node's gallery.
pub struct DedupJobs {
    root: PathBuf,
    gallery: Arc<Gallery>,
    config: DedupConfig,
    pool: Arc<rayon::ThreadPool>,
    jobs: Mutex<BTreeMap<String, Arc<Job>>>,
    on_finished: Option<OnFinished>,
}

impl DedupJobs {
    /// The jobs under `<data_dir>/dedup`; a job a crash interrupted is resumed now.
    /// With `cases`, every group of a finished job opens an adjudication case.
    pub fn open(
        data_dir: &Path,
        gallery: Arc<Gallery>,
        config: DedupConfig,
        cases: Option<Arc<crate::adjudication::Cases>>,
    ) -> Result<Arc<DedupJobs>, DedupError> {
        let threads = match config.threads {
            0 => (std::thread::available_parallelism().map_or(1, |n| n.get()) / 2).max(1),
            n => n,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("dedup-{i}"))
            .build()
            .map_err(|e| DedupError::Io(format!("thread pool: {e}")))?;
        let on_finished = cases.map(|c| Self::open_cases_in(c, Arc::clone(&gallery)));
        let jobs = Arc::new(DedupJobs {
            root: data_dir.join("dedup"),
            gallery,
            config,
            pool: Arc::new(pool),
            jobs: Mutex::new(BTreeMap::new()),
            on_finished,
        });
        for job in jobs.load()? {
            let job = Arc::new(job);
            if job.is_running() {
                tracing::info!(job = %job.id, done = job.progress().records_done, "resuming a deduplication job");
                jobs.spawn(Arc::clone(&job));
            }
            jobs.lock().insert(job.id.clone(), job);
        }
        Ok(jobs)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Job>>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every complete job directory (half-created ones, `<id>.new`, are removed).
    fn load(&self) -> Result<Vec<Job>, DedupError> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".new") {
                let _ = std::fs::remove_dir_all(&path);
            } else if path.is_dir() {
                match Job::open(&path) {
                    Ok(job) => out.push(job),
                    // A damaged job is left on disk for an operator; the others still load.
                    Err(e) => {
                        tracing::warn!(job = %name, error = %e, "deduplication job unreadable")
                    }
                }
            }
        }
        Ok(out)
    }

    /// The hook that opens a case per duplicate group in `cases`.
    pub fn open_cases_in(
        cases: Arc<crate::adjudication::Cases>,
        gallery: Arc<Gallery>,
    ) -> OnFinished {
        Arc::new(move |job, threshold, groups| {
            cases::open_group_cases(&cases, &gallery, job, threshold, groups)
        })
    }

    fn spawn(&self, job: Arc<Job>) {
        let (gallery, pool) = (Arc::clone(&self.gallery), Arc::clone(&self.pool));
        let on_finished = self.on_finished.clone();
        std::thread::Builder::new()
            .name("dedup-job".into())
            .spawn(move || job.run(gallery, pool, on_finished))
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "deduplication job thread"));
    }

    /// Starts a job over every live record, unless one runs.
    pub fn start(&self, expected_false_pairs: f64) -> Result<Arc<Job>, DedupError> {
        if !(expected_false_pairs.is_finite() && expected_false_pairs >= 0.0) {
            return Err(DedupError::Invalid(
                "expected_false_pairs: a number ≥ 0 is required".into(),
            ));
        }
        let expected = if expected_false_pairs == 0.0 {
            1.0
        } else {
            expected_false_pairs
        };
        let mut jobs = self.lock();
        if let Some(running) = jobs.values().find(|j| j.is_running()) {
            return Err(DedupError::AlreadyRunning(running.id.clone()));
        }
        let scope = self.gallery.dedup_scope();
        let settings = abis_engine::gallery::DedupSettings::for_scope(scope.len() as u64, expected);
        let spec = JobSpec {
            records: scope.len() as u64,
            block: self.config.block.max(1),
            band_candidates: self.config.band_candidates,
            code_floor_per_finger: self.config.code_floor_per_finger,
            pair_threshold: settings.pair_threshold,
            expected_false_pairs: expected,
        };
        let job = Arc::new(Job::create(&self.root, &new_id()?, spec, &scope)?);
        jobs.insert(job.id.clone(), Arc::clone(&job));
        self.spawn(Arc::clone(&job));
        Ok(job)
    }

    pub fn get(&self, id: &str) -> Result<Arc<Job>, DedupError> {
        self.lock()
            .get(id)
            .cloned()
            .ok_or_else(|| DedupError::NotFound(id.to_owned()))
    }

    pub fn cancel(&self, id: &str) -> Result<Arc<Job>, DedupError> {
        let job = self.get(id)?;
        if !job.is_running() {
            return Err(DedupError::NotRunning(id.to_owned()));
        }
        job.cancel();
        Ok(job)
    }

    /// The duplicate groups a job has found so far.
    pub fn groups(&self, id: &str) -> Result<Vec<Group>, DedupError> {
        let pairs = self.get(id)?.pairs()?;
        Ok(groups_of(pairs))
    }
}

/// A duplicate group: its ids (sorted) and the pairs that join them.
pub type Group = (Vec<String>, Vec<StoredPair>);

/// Connected components of stored pairs, each with its pairs.
pub fn groups_of(pairs: Vec<StoredPair>) -> Vec<Group> {
    let ids: Vec<(&str, &str)> = pairs.iter().map(|p| (p.a.as_str(), p.b.as_str())).collect();
    duplicate_groups(&ids)
        .into_iter()
        .map(|(ids, idx)| (ids, idx.into_iter().map(|i| pairs[i].clone()).collect()))
        .collect()
}

/// A random job id (16 hex digits): names a directory and appears in logs; says nothing of
/// the gallery.
fn new_id() -> Result<String, DedupError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| DedupError::Io(format!("random job id: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
