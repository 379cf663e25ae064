//! What the tests need from outside the repository — the models `make setup` installs, the
//! reference tools' virtualenv, and the real data in `../shared/data` — and one rule for when it
//! is missing:
//!
//! - with `ABIS_REQUIRE_DATA=1` (CI sets it) the test **fails**, naming what is missing and how
//!   to get it: a test that cannot run must never pass;
//! - otherwise it is **skipped, loudly and counted**: `SKIPPED <test>: <what>` on stderr, and a
//!   line in the file `$ABIS_SKIP_LOG` when set, which `make test` totals at the end.
//!
//! A test asks with [`shared_data`], [`models_ready`], [`face_models_ready`], [`tools_python`],
//! [`nats_server`] or [`require`], and returns early on `None`/`false`. [`nats`] runs real
//! `nats-server` clusters for the cluster tests, [`activemq`] a real ActiveMQ broker for the
//! MOSIP adapter's.

pub mod activemq;
pub mod chromium;
pub mod http;
pub mod nats;
pub mod openjpeg;

use std::io::Write;
use std::path::{Path, PathBuf};

/// A handle that appends to the log file `path` (created if missing), for a child process's
/// stdout or stderr.
///
/// The tests never send a child's output to `Stdio::null()`: in some sandboxes `/dev/null` is a
/// plain file, and output written there is later read back by every process whose stdin is
/// `/dev/null` (`rustc -`, as cargo probes it, failed to parse Chromium's log that way). A log
/// beside the instance's other files is also what one reads when a test fails.
pub fn log_to(path: &Path) -> std::process::Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open the log {}: {e}", path.display()))
        .into()
}

/// The repository root (this crate lives in `tests/kit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether a missing prerequisite fails the test (`ABIS_REQUIRE_DATA=1`).
pub fn data_required() -> bool {
    std::env::var("ABIS_REQUIRE_DATA").is_ok_and(|v| v == "1")
}

/// The running test's name (libtest names each test's thread after it).
fn test_name() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("unnamed test")
        .to_string()
}

/// Reports that `what` is missing (`fix` says how to provide it): panics when data is required,
/// else prints and logs the skip. The caller returns right after.
#[track_caller]
pub fn skip(what: &str, fix: &str) {
    let test = test_name();
    if data_required() {
        panic!("{test}: {what} is missing ({fix}); ABIS_REQUIRE_DATA=1 forbids skipping");
    }
    eprintln!("SKIPPED {test}: {what} ({fix})");
    if let Some(log) = std::env::var_os("ABIS_SKIP_LOG") {
        // One short line per append: O_APPEND keeps lines of parallel tests whole.
        let line = format!("{test}\t{what}\n");
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
}

/// `Some(value)` when present, else [`skip`] and `None`.
#[track_caller]
pub fn require<T>(value: Option<T>, what: &str, fix: &str) -> Option<T> {
    if value.is_none() {
        skip(what, fix);
    }
    value
}

/// Where the shared data lives: `$ABIS_SHARED_DATA`, else `../shared/data` beside the
/// repository.
fn shared_root() -> PathBuf {
    std::env::var_os("ABIS_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data"))
}

const SHARED_FIX: &str = "place ../shared beside the repository or set ABIS_SHARED_DATA";

/// `relative` inside the shared data if it exists, else what is missing — without reporting, for
/// tests that load data once and [`skip`] in every test that needs it.
pub fn locate_shared(relative: &str) -> Result<PathBuf, String> {
    let path = shared_root().join(relative);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("shared data {}", path.display()))
    }
}

/// `../shared/data` beside the repository (or `$ABIS_SHARED_DATA`).
#[track_caller]
pub fn shared_data() -> Option<PathBuf> {
    shared("")
}

/// A folder or file inside the shared data (`fingerprint/FVC2002_DB1_B`, `face/ATT_ORL`).
#[track_caller]
pub fn shared(relative: &str) -> Option<PathBuf> {
    match locate_shared(relative) {
        Ok(path) => Some(path),
        Err(what) => {
            skip(&what, SHARED_FIX);
            None
        }
    }
}

/// The models cache `make setup` fills.
pub fn models_cache() -> PathBuf {
    // As the engine resolves it: ABIS_MODELS_CACHE, else the cache of ABIS_MODELS_DIR.
    std::env::var_os("ABIS_MODELS_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("ABIS_MODELS_DIR").map(|d| PathBuf::from(d).join("cache")))
        .unwrap_or_else(|| repo_root().join("models/cache"))
}

/// Whether ONNX Runtime and the LEADER model are installed.
#[track_caller]
pub fn models_ready() -> bool {
    let cache = models_cache();
    for file in [
        "lib/libonnxruntime.so.1.32.0",
        "leader/LEADER-rewritten.onnx",
    ] {
        if !cache.join(file).is_file() {
            skip(
                &format!("model file {}", cache.join(file).display()),
                "run `make setup`",
            );
            return false;
        }
    }
    true
}

/// Whether the face models converted by setup are installed (besides [`models_ready`]).
#[track_caller]
pub fn face_models_ready() -> bool {
    if !models_ready() {
        return false;
    }
    let file = models_cache().join("face/mobilefacenet.onnx");
    if !file.is_file() {
        skip(
            &format!("face model {}", file.display()),
            "run `make setup`",
        );
        return false;
    }
    true
}

/// The Python of the reference tools' virtualenv setup creates (Pillow, the `afis` package).
#[track_caller]
pub fn tools_python() -> Option<PathBuf> {
    let python = models_cache().join("venv/bin/python");
    let found = python.is_file().then_some(python.clone());
    require(
        found,
        &format!("reference tools {}", python.display()),
        "run `make setup`",
    )
}

/// The `nats-server` binary `make setup` installs (Debian's `nats-server` package):
/// `$ABIS_NATS_SERVER`, else the first `nats-server` on `PATH`, `/usr/sbin` or `/usr/local/sbin`
/// (Debian installs it in `/usr/sbin`, which is not on every user's `PATH`).
#[track_caller]
pub fn nats_server() -> Option<PathBuf> {
    let found = match std::env::var_os("ABIS_NATS_SERVER") {
        Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file()),
        None => {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin"].map(PathBuf::from))
                .map(|d| d.join("nats-server"))
                .find(|p| p.is_file())
        }
    };
    require(
        found,
        "the nats-server binary",
        "run `make setup` (Debian package nats-server) or set ABIS_NATS_SERVER",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_values_pass_through_and_the_test_name_is_known() {
        assert_eq!(require(Some(3), "x", "y"), Some(3));
        assert!(test_name().contains("present_values_pass_through"));
    }

    #[test]
    fn a_skip_is_logged_or_fails_when_data_is_required() {
        // Run the rule in a thread named like a test, so its outcome can be observed.
        let outcome = std::thread::Builder::new()
            .name("kit::probe".into())
            .spawn(|| require::<()>(None, "nothing", "nothing to do"))
            .unwrap()
            .join();
        if data_required() {
            assert!(
                outcome.is_err(),
                "a missing prerequisite must fail under CI"
            );
        } else {
            assert!(matches!(outcome, Ok(None)));
        }
    }
}
