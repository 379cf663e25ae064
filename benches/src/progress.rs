//! Progress of long runs on stderr: a bar when stderr is a terminal, otherwise one JSON line
//! every 10 seconds (for logs of unattended runs). Results go to stdout and stay
//! machine-readable either way.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

const LINE_EVERY: Duration = Duration::from_secs(10);

pub struct Progress {
    bar: ProgressBar,
    what: String,
    total: u64,
    done: AtomicU64,
    started: Instant,
    last_line: Mutex<Instant>,
}

pub fn bar(total: u64, what: &str) -> Progress {
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
        ) {
            b.set_style(style);
        }
        b.set_message(what.to_owned());
        b
    } else {
        ProgressBar::hidden()
    };
    Progress {
        bar,
        what: what.to_owned(),
        total,
        done: AtomicU64::new(0),
        started: Instant::now(),
        last_line: Mutex::new(Instant::now()),
    }
}

impl Progress {
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if !self.bar.is_hidden() {
            return;
        }
        let Ok(mut last) = self.last_line.try_lock() else {
            return;
        };
        if last.elapsed() >= LINE_EVERY {
            *last = Instant::now();
            let elapsed = self.started.elapsed().as_secs_f64();
            let rate = done as f64 / elapsed.max(1e-9);
            eprintln!(
                "{}",
                serde_json::json!({
                    "progress": self.what, "done": done, "total": self.total,
                    "elapsed_s": elapsed.round(),
                    "eta_s": ((self.total.saturating_sub(done)) as f64 / rate.max(1e-9)).round(),
                })
            );
        }
    }

    pub fn finish(&self) {
        self.bar.finish();
    }
}
