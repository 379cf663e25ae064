//! CPU priority of background work. Enrolment's index computation and the store's flushes and
//! merges run on threads of their own whose niceness is raised (`[store] background_nice`,
//! default 10), so that on a busy node the scheduler gives the cores to searches first and to
//! enrolment and compaction what searches leave: an idle node still enrols at full speed, a
//! searched one keeps its search latency. Linux gives each thread its own niceness; elsewhere
//! the threads keep the process's.

use std::io;

/// Raises the niceness of the calling thread to `nice` (0: leaves it). Lowering it again needs
/// privileges, which is why only threads that do nothing but background work call this.
pub fn lower_current_thread(nice: i32) -> io::Result<()> {
    if nice == 0 {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid takes nothing and touches no memory of ours.
        let tid = unsafe { libc::gettid() };
        // The `which` argument's type differs between libc targets (u32 on glibc).
        #[allow(clippy::unnecessary_cast)]
        // SAFETY: setpriority takes plain integers and touches no memory of ours; on Linux,
        // PRIO_PROCESS with a thread id changes that thread alone.
        let done = unsafe { libc::setpriority(libc::PRIO_PROCESS as _, tid as libc::id_t, nice) };
        if done != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The niceness of the calling thread (Linux; 0 elsewhere).
pub fn current_thread_nice() -> io::Result<i32> {
    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
        // Fields after the command (which may hold spaces) start after the last ')'; the
        // niceness is field 19, the 17th after it.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        return rest
            .split_whitespace()
            .nth(16)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| io::Error::other("no niceness in /proc/thread-self/stat"));
    }
    #[allow(unreachable_code)]
    Ok(0)
}

/// A pool of background threads (see the module docs), made at its first use.
#[derive(Debug)]
pub struct BackgroundPool {
    name: &'static str,
    threads: usize,
    nice: i32,
    pool: std::sync::OnceLock<Option<rayon::ThreadPool>>,
}

impl BackgroundPool {
    /// `threads` threads named `name-<i>` at niceness `nice`, made when first used.
    pub fn new(name: &'static str, threads: usize, nice: i32) -> BackgroundPool {
        BackgroundPool {
            name,
            threads,
            nice,
            pool: std::sync::OnceLock::new(),
        }
    }

    /// Runs `work` on the pool (in the caller's thread when the pool could not be made).
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        let pool = self
            .pool
            .get_or_init(|| background_pool(self.name, self.threads, self.nice));
        match pool {
            Some(p) => p.install(work),
            None => work(),
        }
    }
}

/// A rayon pool of `threads` threads named `name-<i>`, each at niceness `nice`; `None` (with
/// a warning) when it cannot be made — the caller then works in the shared pool.
fn background_pool(name: &'static str, threads: usize, nice: i32) -> Option<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(move |i| format!("{name}-{i}"))
        .start_handler(move |_| {
            if let Err(e) = lower_current_thread(nice) {
                tracing::warn!(error = %e, pool = name, nice, "cannot lower a background thread's priority");
            }
        })
        .build()
        .map_err(|e| tracing::warn!(error = %e, pool = name, "no background thread pool; sharing the search pool"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_background_pool_runs_its_work_at_the_niceness_asked() {
        let pool = BackgroundPool::new("abis-test-bg", 1, 7);
        let (name, nice) = pool.run(|| {
            (
                std::thread::current().name().map(str::to_owned),
                current_thread_nice().unwrap(),
            )
        });
        assert_eq!(name.as_deref(), Some("abis-test-bg-0"));
        if cfg!(target_os = "linux") {
            // At least 7: a process started nicer than that may not lower it without privileges.
            assert!(nice >= 7, "niceness {nice}");
        }
    }
}
