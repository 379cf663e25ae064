//! The adapter's durable memory of what it answered: an append-only file of JSON lines in the
//! data directory, fsynced before an answer leaves, read back whole at start.
//!
//! Why: the broker delivers at least once. A request redelivered after a crash (or a broker
//! restart) must get the answer already given and change nothing, so every answer is recorded
//! under its `requestId` before it is sent, and a request that finds its `requestId` here is
//! answered from the record. A `started` line written before an Insert's or Delete's effect
//! tells a redelivery that the effect may already have happened (a Delete that then finds
//! nothing to delete succeeded the first time).

use std::collections::HashMap;
use std::io::{BufRead, Write};
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

pub struct Ledger {
    path: PathBuf,
    state: Mutex<(std::fs::File, HashMap<String, Seen>)>,
}

impl Ledger {
    /// Opens (or creates) the ledger file; a torn last line (a crash mid-write) is ignored.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        let err = |source| LedgerError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut seen = HashMap::new();
        if let Ok(file) = std::fs::File::open(path) {
            for line in std::io::BufReader::new(file).lines() {
                let line = line.map_err(err)?;
                match serde_json::from_str::<Line>(&line) {
                    Ok(Line::Started { request_id }) => {
                        seen.entry(request_id).or_insert(Seen::Started);
                    }
                    Ok(Line::Answered {
                        request_id,
                        response,
                    }) => {
                        seen.insert(request_id, Seen::Answered(response));
                    }
                    Err(_) => continue,
                }
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        // End a torn last line, so that the next record starts on a line of its own.
        let torn = std::fs::read(path)
            .map_err(err)?
            .last()
            .is_some_and(|&b| b != b'\n');
        if torn {
            file.write_all(b"\n").map_err(err)?;
        }
        Ok(Ledger {
            path: path.to_path_buf(),
            state: Mutex::new((file, seen)),
        })
    }

    pub fn seen(&self, request_id: &str) -> Seen {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1.get(request_id).cloned().unwrap_or(Seen::New)
    }

    /// Records that a request's effect is about to happen (durable on return).
    pub fn started(&self, request_id: &str) -> Result<(), LedgerError> {
        self.append(
            Line::Started {
                request_id: request_id.to_string(),
            },
            Seen::Started,
        )
    }

    /// Records an answer (durable on return); a request answered earlier keeps its first
    /// answer, which is returned.
    pub fn answered(&self, request_id: &str, response: String) -> Result<String, LedgerError> {
        if let Seen::Answered(first) = self.seen(request_id) {
            return Ok(first);
        }
        let line = Line::Answered {
            request_id: request_id.to_string(),
            response: response.clone(),
        };
        self.append(line, Seen::Answered(response.clone()))?;
        Ok(response)
    }

    fn append(&self, line: Line, seen: Seen) -> Result<(), LedgerError> {
        let request_id = match &line {
            Line::Started { request_id } | Line::Answered { request_id, .. } => request_id.clone(),
        };
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let written = state
            .0
            .write_all(text.as_bytes())
            .and_then(|()| state.0.sync_data());
        written.map_err(|source| LedgerError {
            path: self.path.clone(),
            source,
        })?;
        state.1.insert(request_id, seen);
        Ok(())
    }
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
}
