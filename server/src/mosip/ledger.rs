//! The adapter's durable memory of what it answered: an append-only file of JSON lines in the
//! data directory, fsynced before an answer leaves, read back whole at start.
//!
//! Why: the broker delivers at least once. A request redelivered after a crash (or a broker
//! restart) must get the answer already given and change nothing, so every answer is recorded
//! under its `requestId` before it is sent, and a request that finds its `requestId` here is
//! answered from the record. A `started` line written before a Delete's effect tells a
//! redelivery that the effect may already have happened (a Delete that then finds nothing to
//! delete succeeded the first time). An Insert needs none: run again, it stores the same content
//! under the same id, which the store accepts as done.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One line of the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Line {
    Started {
        request_id: String,
    },
    Answered {
        request_id: String,
        response: String,
    },
}

/// What the ledger knows of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    New,
    /// Its effect may have happened, but no answer was recorded.
    Started,
    /// Answered with this JSON.
    Answered(String),
}

/// Errors writing or reading the ledger.
#[derive(Debug, thiserror::Error)]
#[error("MOSIP request ledger {path}: {source}")]
pub struct LedgerError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Requests remembered: a redelivery comes minutes after the first delivery, not after a
/// hundred thousand other requests. Beyond twice this the oldest are forgotten and the file
/// is rewritten.
const KEEP: usize = 100_000;

pub struct Ledger {
    path: PathBuf,
    keep: usize,
    state: Mutex<State>,
}

struct State {
    file: std::fs::File,
    seen: HashMap<String, Seen>,
    /// Request ids, oldest first.
    order: VecDeque<String>,
}

impl State {
    fn remember(&mut self, request_id: String, seen: Seen) {
        if self.seen.insert(request_id.clone(), seen).is_none() {
            self.order.push_back(request_id);
        }
    }
}

impl Ledger {
    /// Opens (or creates) the ledger file; a torn last line (a crash mid-write) is ignored.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        Self::open_keeping(path, KEEP)
    }

    fn open_keeping(path: &Path, keep: usize) -> Result<Ledger, LedgerError> {
        let err = |source| LedgerError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut state = State {
            file: append_to(path).map_err(err)?,
            seen: HashMap::new(),
            order: VecDeque::new(),
        };
        let text = std::fs::read(path).map_err(err)?;
        for line in text.split(|&b| b == b'\n') {
            match serde_json::from_slice::<Line>(line) {
                Ok(Line::Started { request_id }) => {
                    if !state.seen.contains_key(&request_id) {
                        state.remember(request_id, Seen::Started);
                    }
                }
                Ok(Line::Answered {
                    request_id,
                    response,
                }) => state.remember(request_id, Seen::Answered(response)),
                Err(_) => continue,
            }
        }
        // End a torn last line, so that the next record starts on a line of its own.
        if text.last().is_some_and(|&b| b != b'\n') {
            state.file.write_all(b"\n").map_err(err)?;
        }
        Ok(Ledger {
            path: path.to_path_buf(),
            keep,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn seen(&self, request_id: &str) -> Seen {
        self.lock()
            .seen
            .get(request_id)
            .cloned()
            .unwrap_or(Seen::New)
    }

    /// Records that a request's effect is about to happen (durable on return).
    pub fn started(&self, request_id: &str) -> Result<(), LedgerError> {
        let mut state = self.lock();
        if state.seen.contains_key(request_id) {
            return Ok(());
        }
        let line = Line::Started {
            request_id: request_id.to_string(),
        };
        self.append(&mut state, &line)?;
        state.remember(request_id.to_string(), Seen::Started);
        Ok(())
    }

    /// Records an answer (durable on return). A request answered earlier (by a concurrent
    /// delivery of the same request) keeps its first answer, which is returned instead.
    pub fn answered(&self, request_id: &str, response: String) -> Result<String, LedgerError> {
        let mut state = self.lock();
        if let Some(Seen::Answered(first)) = state.seen.get(request_id) {
            return Ok(first.clone());
        }
        let line = Line::Answered {
            request_id: request_id.to_string(),
            response: response.clone(),
        };
        self.append(&mut state, &line)?;
        state.remember(request_id.to_string(), Seen::Answered(response.clone()));
        if state.order.len() > 2 * self.keep {
            self.compact(&mut state)?;
        }
        Ok(response)
    }

    fn append(&self, state: &mut State, line: &Line) -> Result<(), LedgerError> {
        let mut text = serde_json::to_string(line).unwrap_or_default();
        text.push('\n');
        let written = state
            .file
            .write_all(text.as_bytes())
            .and_then(|()| state.file.sync_data());
        written.map_err(|source| self.error(source))
    }

    /// Forgets all but the newest `keep` requests and rewrites the file with them (a new file
    /// fsynced and renamed over the old one: a crash leaves one or the other).
    fn compact(&self, state: &mut State) -> Result<(), LedgerError> {
        while state.order.len() > self.keep {
            if let Some(old) = state.order.pop_front() {
                state.seen.remove(&old);
            }
        }
        let mut text = String::new();
        for id in &state.order {
            let line = match &state.seen[id] {
                Seen::Answered(response) => Line::Answered {
                    request_id: id.clone(),
                    response: response.clone(),
                },
                _ => Line::Started {
                    request_id: id.clone(),
                },
            };
            text.push_str(&serde_json::to_string(&line).unwrap_or_default());
            text.push('\n');
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        let rewrite = || -> std::io::Result<std::fs::File> {
            crate::durable::replace(&self.path, &tmp, text.as_bytes())?;
            append_to(&self.path)
        };
        state.file = rewrite().map_err(|e| self.error(e))?;
        Ok(())
    }

    fn error(&self, source: std::io::Error) -> LedgerError {
        LedgerError {
            path: self.path.clone(),
            source,
        }
    }
}

fn append_to(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_survive_a_reopen_and_the_first_answer_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mosip/requests.jsonl");
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(ledger.seen("r1"), Seen::New);
        ledger.started("r1").unwrap();
        assert_eq!(ledger.seen("r1"), Seen::Started);
        assert_eq!(ledger.answered("r1", "A".into()).unwrap(), "A");
        assert_eq!(ledger.answered("r1", "B".into()).unwrap(), "A");
        ledger.started("r2").unwrap();
        drop(ledger);
        // A torn line from a crash mid-write.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"kind\":\"answ")
            .unwrap();
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(ledger.seen("r1"), Seen::Answered("A".into()));
        assert_eq!(ledger.seen("r2"), Seen::Started);
        assert_eq!(ledger.seen("r3"), Seen::New);
        ledger.answered("r3", "C".into()).unwrap();
        drop(ledger);
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(
            ledger.seen("r3"),
            Seen::Answered("C".into()),
            "written after the torn line"
        );
    }

    #[test]
    fn the_oldest_requests_are_forgotten_and_the_file_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        let ledger = Ledger::open_keeping(&path, 3).unwrap();
        for i in 0..7 {
            ledger.started(&format!("r{i}")).unwrap();
            ledger.answered(&format!("r{i}"), format!("A{i}")).unwrap();
        }
        assert_eq!(ledger.seen("r0"), Seen::New, "forgotten at the compaction");
        assert_eq!(ledger.seen("r6"), Seen::Answered("A6".into()));
        drop(ledger);
        let ledger = Ledger::open_keeping(&path, 3).unwrap();
        assert_eq!(ledger.seen("r0"), Seen::New);
        assert_eq!(ledger.seen("r4"), Seen::Answered("A4".into()));
        assert_eq!(ledger.seen("r6"), Seen::Answered("A6".into()));
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 7, "{lines} lines after compaction");
    }
}
