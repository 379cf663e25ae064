//! Append-only, hash-chained, durable audit log.
//!
//! Why: every search of a national gallery must leave a trace that cannot be quietly edited.
//! Each entry records who called which RPC, which reference ids it touched, what was decided and
//! the status code, and commits to the entry before it, so changing, deleting, reordering or
//! truncating any entry breaks the chain at that point (`abis audit verify DIR`).
//!
//! Format: JSON lines in `DIR/audit-<first sequence, 20 digits>.jsonl`, one entry a line:
//!
//! ```json
//! {"seq":1,"time":"2026-05-01T09:30:00.123Z","caller":"office-7","rpc":"Identify",
//!  "refs":["123456789012"],"refs_omitted":0,"decision":"candidates:2","code":"OK",
//!  "prev":"000…000","hash":"9f2c…"}
//! ```
//!
//! - `hash = sha256(prev_hash_bytes || canonical)`, where `canonical` is the compact JSON of the
//!   entry's fields *without* `hash`, in the order above (serde_json of [`EntryBody`]). A stored
//!   line must be byte-for-byte the canonical serialization, so any edit is detected.
//! - The first entry (seq 1) has `prev` = 64 zeros. Sequence numbers have no gaps.
//! - Files rotate after `max_file_bytes`; the chain and the sequence continue into the next file,
//!   and across restarts: [`AuditLog::open`] reads the last file, verifies its chain (and that
//!   it joins the previous file's last entry) and resumes from its last entry. It refuses to open
//!   a log whose tail does not verify.
//! - A crash can leave a torn last line (an entry that was never acknowledged, since entries are
//!   acknowledged only after fsync). On open, the torn bytes are moved to
//!   `<file>.torn-<unix seconds>`, the file is cut back to its last complete line, and an
//!   `audit`/`torn_tail_quarantined` entry records the repair. `abis audit verify` run *before*
//!   a restart reports the torn line.
//! - Durability: entries are written and `fdatasync`ed before [`Auditor::record`] returns
//!   (group commit: concurrent records share one fsync). If a write or fsync fails the log stops
//!   accepting entries until restart, and every later `record` fails: the RPC must then fail
//!   (UNAVAILABLE via `From<AuditError> for Status`) rather than complete without a trace.
//! - Never images or templates: a record holds only short strings and reference ids. At most
//!   [`MAX_REFS`] ids are listed; the rest are counted in `refs_omitted`.
//! - Limits of a hash chain: removing *whole trailing entries or files* leaves a valid shorter
//!   chain. Ship the files (or at least the latest `hash`) to a separate write-once store to
//!   detect that; the log exposes [`AuditLog::head`] for such anchoring. Pruning old files also
//!   breaks verification from seq 1 (by design: archive, don't delete).
//! - Files are created with mode 0600: reference ids are personal identifiers.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::access::code_name;
use crate::hex::{decode_hex32, hex};

/// Most reference ids listed in one entry.
pub const MAX_REFS: usize = 4096;
/// Longest accepted line (bounds memory when reading a hostile file).
pub const MAX_LINE_BYTES: usize = 4 << 20;
/// Longest caller / rpc / decision string.
const MAX_FIELD_BYTES: usize = 256;
const GENESIS: [u8; 32] = [0; 32];
const FILE_PREFIX: &str = "audit-";
const FILE_SUFFIX: &str = ".jsonl";

/// What happened, as the caller of [`Auditor::record`] describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditRecord {
    pub caller: String,
    pub rpc: String,
    /// The node that served the call (empty: this process, before clusters existed).
    pub node: String,
    pub refs: Vec<String>,
    pub decision: String,
    /// gRPC status code name (`OK`, `NOT_FOUND`, ...).
    pub code: String,
}

impl AuditRecord {
    /// A record for `caller` calling `rpc`, decision `ok`, code `OK` until set otherwise.
    pub fn new(caller: impl Into<String>, rpc: impl Into<String>) -> Self {
        AuditRecord {
            caller: caller.into(),
            rpc: rpc.into(),
            node: String::new(),
            refs: Vec::new(),
            decision: "ok".to_string(),
            code: code_name(tonic::Code::Ok).to_string(),
        }
    }

    /// The node that served the call (a cluster node's name).
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.node = node.into();
        self
    }

    /// Reference ids touched (the probe, the candidates returned, the record inserted...).
    pub fn refs<I, S>(mut self, refs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.refs.extend(refs.into_iter().map(Into::into));
        self
    }

    /// A short outcome word: `inserted`, `match`, `no_match`, `candidates:3`, `denied`...
    pub fn decision(mut self, decision: impl Into<String>) -> Self {
        self.decision = decision.into();
        self
    }

    pub fn code(mut self, code: tonic::Code) -> Self {
        self.code = code_name(code).to_string();
        self
    }

    /// Sets the code from an RPC result and, on error, the decision to `error`.
    pub fn outcome<T>(self, result: &Result<T, tonic::Status>) -> Self {
        match result {
            Ok(_) => self.code(tonic::Code::Ok),
            Err(status) => self.code(status.code()).decision("error"),
        }
    }
}

/// The fields an entry's hash covers, in canonical order.
#[derive(Serialize)]
pub struct EntryBody<'a> {
    pub seq: u64,
    pub time: &'a str,
    pub caller: &'a str,
    pub rpc: &'a str,
    /// Absent when empty, so entries written before nodes were recorded hash as they did.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub node: &'a str,
    pub refs: &'a [String],
    pub refs_omitted: u64,
    pub decision: &'a str,
    pub code: &'a str,
    pub prev: &'a str,
}

/// One stored line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub seq: u64,
    pub time: String,
    pub caller: String,
    pub rpc: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    pub refs: Vec<String>,
    pub refs_omitted: u64,
    pub decision: String,
    pub code: String,
    pub prev: String,
    pub hash: String,
}

impl Entry {
    fn body(&self) -> EntryBody<'_> {
        EntryBody {
            seq: self.seq,
            time: &self.time,
            caller: &self.caller,
            rpc: &self.rpc,
            node: &self.node,
            refs: &self.refs,
            refs_omitted: self.refs_omitted,
            decision: &self.decision,
            code: &self.code,
            prev: &self.prev,
        }
    }

    /// sha256(prev || canonical body).
    pub fn compute_hash(&self, prev: &[u8; 32]) -> [u8; 32] {
        let canonical = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(prev);
        h.update(&canonical);
        h.finalize().into()
    }

    fn line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Errors of the audit log.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("audit log chain broken: {0}")]
    Broken(ChainBreak),
    #[error("audit log is stopped after an earlier write failure; restart to recover")]
    Poisoned,
    #[error("audit log writer is gone")]
    Closed,
    /// Verification was pointed at a folder holding no audit log: never reported as "all well".
    #[error("no audit log file in {0} (nor in its audit/ folder)")]
    NoLog(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |e| AuditError::Io {
        path: path.to_path_buf(),
        source: Arc::new(e),
    }
}

/// An RPC whose audit entry could not be made durable must not complete.
impl From<AuditError> for tonic::Status {
    fn from(e: AuditError) -> Self {
        tracing::error!(error = %e, "audit log unavailable: refusing the request");
        tonic::Status::unavailable("audit log unavailable; the request was not completed")
    }
}

/// Where and why a chain stops verifying.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    pub file: PathBuf,
    /// 1-based line number in `file` (0: the file as a whole).
    pub line: u64,
    /// The sequence number expected at that point.
    pub expected_seq: u64,
    pub reason: String,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} line {} (expected seq {}): {}",
            self.file.display(),
            self.line,
            self.expected_seq,
            self.reason
        )
    }
}

/// Result of verifying a whole directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub files: usize,
    pub entries: u64,
    pub last_seq: u64,
    /// Hash of the last entry (the chain head), hex.
    pub head: String,
}

/// Options of [`AuditLog::open`].
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// Start a new file once the current one reaches this size.
    pub max_file_bytes: u64,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            max_file_bytes: 64 << 20,
        }
    }
}

/// The synchronous log: open, append (batches, one fsync each), verify.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    options: AuditOptions,
    next_seq: u64,
    prev: [u8; 32],
    current: Option<(PathBuf, File, u64)>,
    poisoned: bool,
}

/// Chain state while verifying.
struct Cursor {
    expected_seq: u64,
    prev: [u8; 32],
}

/// The log files of `dir`, sorted by first sequence number.
pub fn list_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, AuditError> {
    let mut files = Vec::new();
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in read {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = parse_file_name(name) {
            files.push((seq, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(FILE_PREFIX)?.strip_suffix(FILE_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn file_name(first_seq: u64) -> String {
    format!("{FILE_PREFIX}{first_seq:020}{FILE_SUFFIX}")
}

/// Checks one line against the chain; advances the cursor on success.
fn check_line(line: &[u8], cursor: &mut Cursor) -> Result<(), String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
    let entry: Entry = serde_json::from_str(text).map_err(|e| format!("not an entry: {e}"))?;
    if entry.line() != format!("{text}\n") {
        return Err("not in canonical form (edited)".to_string());
    }
    if entry.seq != cursor.expected_seq {
        return Err(format!(
            "sequence {} where {} was expected (entry missing, reordered or duplicated)",
            entry.seq, cursor.expected_seq
        ));
    }
    let prev = decode_hex32(&entry.prev).ok_or("prev is not a hash")?;
    if prev != cursor.prev {
        return Err("prev does not match the previous entry's hash".to_string());
    }
    let stated = decode_hex32(&entry.hash).ok_or("hash is not a hash")?;
    if stated != entry.compute_hash(&prev) {
        return Err("hash does not match the entry's content (edited)".to_string());
    }
    cursor.expected_seq += 1;
    cursor.prev = stated;
    Ok(())
}

/// Verifies the lines of one file from `cursor`. Returns the byte length of the complete,
/// valid prefix; a torn (unterminated) last line is reported as a break.
fn verify_file(path: &Path, first_seq: u64, cursor: &mut Cursor) -> Result<u64, AuditError> {
    let broken = |line: u64, expected_seq: u64, reason: String| {
        AuditError::Broken(ChainBreak {
            file: path.to_path_buf(),
            line,
            expected_seq,
            reason,
        })
    };
    if first_seq != cursor.expected_seq {
        return Err(broken(
            0,
            cursor.expected_seq,
            format!(
                "file starts at sequence {first_seq} where {} was expected (file missing or \
                 misnamed)",
                cursor.expected_seq
            ),
        ));
    }
    let file = File::open(path).map_err(io_err(path))?;
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let mut offset = 0u64;
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(io_err(path))?;
        if n == 0 {
            return Ok(offset);
        }
        line_no += 1;
        if buf.last() != Some(&b'\n') {
            let reason = if n > MAX_LINE_BYTES {
                "line too long".to_string()
            } else {
                "truncated mid-line (torn write or cut file)".to_string()
            };
            return Err(broken(line_no, cursor.expected_seq, reason));
        }
        let expected = cursor.expected_seq;
        check_line(&buf[..buf.len() - 1], cursor).map_err(|r| broken(line_no, expected, r))?;
        offset += n as u64;
    }
}

/// Verifies the whole chain of `dir`, from sequence 1 through every file.
/// Verifies the audit log in `dir`, or in `dir/audit` when `dir` is a data directory (the
/// default `audit.dir`). A folder without any audit log file is an error.
pub fn verify_dir(dir: &Path) -> Result<VerifyReport, AuditError> {
    let mut files = list_files(dir)?;
    if files.is_empty() {
        files = list_files(&dir.join("audit"))?;
    }
    if files.is_empty() {
        return Err(AuditError::NoLog(dir.to_path_buf()));
    }
    let mut cursor = Cursor {
        expected_seq: 1,
        prev: GENESIS,
    };
    for (first_seq, path) in &files {
        verify_file(path, *first_seq, &mut cursor)?;
    }
    Ok(VerifyReport {
        files: files.len(),
        entries: cursor.expected_seq - 1,
        last_seq: cursor.expected_seq - 1,
        head: hex(&cursor.prev),
    })
}

/// The last complete line of a file (reads only its tail).
fn last_line(path: &Path) -> Result<Option<Vec<u8>>, AuditError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    let take = len.min(2 * MAX_LINE_BYTES as u64);
    file.seek(SeekFrom::Start(len - take))
        .map_err(io_err(path))?;
    let mut tail = Vec::with_capacity(take as usize);
    file.read_to_end(&mut tail).map_err(io_err(path))?;
    let Some(end) = tail.iter().rposition(|&b| b == b'\n') else {
        return Ok(None);
    };
    let start = tail[..end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    Ok(Some(tail[start..end].to_vec()))
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    crate::durable::sync_dir(dir).map_err(io_err(dir))
}

fn open_append(path: &Path, create_new: bool) -> Result<File, AuditError> {
    let mut options = OpenOptions::new();
    options.append(true);
    if create_new {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map_err(io_err(path))
}

impl AuditLog {
    /// Opens (creating if needed) the log in `dir`, verifies the last file and resumes the
    /// chain after its last entry. A torn last line is quarantined and the repair recorded.
    pub fn open(dir: &Path, options: AuditOptions) -> Result<AuditLog, AuditError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(io_err(dir))?;
            }
        }
        let files = list_files(dir)?;
        let mut log = AuditLog {
            dir: dir.to_path_buf(),
            options,
            next_seq: 1,
            prev: GENESIS,
            current: None,
            poisoned: false,
        };
        let Some((last_seq, last_path)) = files.last().cloned() else {
            return Ok(log);
        };
        // Where the last file's chain must start: after the previous file's last entry.
        let mut cursor = Cursor {
            expected_seq: 1,
            prev: GENESIS,
        };
        if files.len() >= 2 {
            let (_, prev_path) = &files[files.len() - 2];
            match last_line(prev_path)? {
                Some(line) => {
                    let entry: Entry = serde_json::from_slice(&line).map_err(|e| {
                        AuditError::Broken(ChainBreak {
                            file: prev_path.clone(),
                            line: 0,
                            expected_seq: last_seq - 1,
                            reason: format!("last entry unreadable: {e}"),
                        })
                    })?;
                    cursor.expected_seq = entry.seq + 1;
                    cursor.prev = decode_hex32(&entry.hash).unwrap_or(GENESIS);
                }
                None => {
                    return Err(AuditError::Broken(ChainBreak {
                        file: prev_path.clone(),
                        line: 0,
                        expected_seq: last_seq - 1,
                        reason: "file has no complete entry".to_string(),
                    }))
                }
            }
        }
        let mut torn = None;
        match verify_file(&last_path, last_seq, &mut cursor) {
            Ok(_) => {}
            // The cursor has advanced over every complete, valid line before the torn one.
            Err(AuditError::Broken(b)) if b.reason.starts_with("truncated mid-line") => {
                torn = Some(b)
            }
            Err(e) => return Err(e),
        }
        if let Some(b) = &torn {
            let valid_len = valid_prefix_len(&last_path, b.line)?;
            quarantine_tail(&last_path, valid_len)?;
            tracing::warn!(
                file = %last_path.display(),
                line = b.line,
                "audit log: torn last line quarantined"
            );
        }
        log.next_seq = cursor.expected_seq;
        log.prev = cursor.prev;
        let file = open_append(&last_path, false)?;
        let size = file.metadata().map_err(io_err(&last_path))?.len();
        log.current = Some((last_path, file, size));
        if torn.is_some() {
            log.append(&[AuditRecord::new("abis", "audit").decision("torn_tail_quarantined")])?;
        }
        Ok(log)
    }

    /// Sequence number and hash of the last entry (0 and zeros when empty): anchor these
    /// somewhere else to detect truncation of the tail.
    #[cfg(test)]
    pub fn head(&self) -> (u64, String) {
        (self.next_seq - 1, hex(&self.prev))
    }

    /// Appends records as consecutive entries with one write and one fsync. On failure nothing
    /// is acknowledged and the log refuses further appends (the file may hold a partial write,
    /// which the next open quarantines).
    pub fn append(&mut self, records: &[AuditRecord]) -> Result<Vec<(u64, String)>, AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned);
        }
        let result = self.append_inner(records);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn append_inner(&mut self, records: &[AuditRecord]) -> Result<Vec<(u64, String)>, AuditError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let time = rfc3339_utc(SystemTime::now());
        let mut seq = self.next_seq;
        let mut prev = self.prev;
        let mut batch = String::new();
        let mut receipts = Vec::with_capacity(records.len());
        for record in records {
            let refs_total = record.refs.len();
            let refs: Vec<String> = record.refs.iter().take(MAX_REFS).map(|r| clip(r)).collect();
            let mut entry = Entry {
                seq,
                time: time.clone(),
                caller: clip(&record.caller),
                rpc: clip(&record.rpc),
                node: clip(&record.node),
                refs,
                refs_omitted: refs_total.saturating_sub(MAX_REFS) as u64,
                decision: clip(&record.decision),
                code: clip(&record.code),
                prev: hex(&prev),
                hash: String::new(),
            };
            let hash = entry.compute_hash(&prev);
            entry.hash = hex(&hash);
            batch.push_str(&entry.line());
            receipts.push((seq, entry.hash.clone()));
            prev = hash;
            seq += 1;
        }
        let rotate = match &self.current {
            None => true,
            Some((_, _, size)) => *size > 0 && *size >= self.options.max_file_bytes,
        };
        if rotate {
            let path = self.dir.join(file_name(self.next_seq));
            let file = open_append(&path, true)?;
            sync_dir(&self.dir)?;
            self.current = Some((path, file, 0));
        }
        let Some((path, file, size)) = self.current.as_mut() else {
            return Err(AuditError::Closed);
        };
        file.write_all(batch.as_bytes()).map_err(io_err(path))?;
        file.sync_data().map_err(io_err(path))?;
        *size += batch.len() as u64;
        self.next_seq = seq;
        self.prev = prev;
        Ok(receipts)
    }
}

/// Length of the lines before 1-based `line`.
fn valid_prefix_len(path: &Path, line: u64) -> Result<u64, AuditError> {
    let data = std::fs::read(path).map_err(io_err(path))?;
    let mut len = 0u64;
    for (i, chunk) in data.split_inclusive(|&b| b == b'\n').enumerate() {
        if i as u64 + 1 >= line {
            break;
        }
        len += chunk.len() as u64;
    }
    Ok(len)
}

/// Moves the bytes after `keep` into `<file>.torn-<secs>` and cuts the file back.
fn quarantine_tail(path: &Path, keep: u64) -> Result<(), AuditError> {
    let data = std::fs::read(path).map_err(io_err(path))?;
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".torn-{secs}"));
    let aside = PathBuf::from(name);
    let mut out = open_append(&aside, true)?;
    out.write_all(&data[keep as usize..])
        .map_err(io_err(&aside))?;
    out.sync_all().map_err(io_err(&aside))?;
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    file.set_len(keep).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))?;
    Ok(())
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_FIELD_BYTES {
        return s.to_string();
    }
    let mut end = MAX_FIELD_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// RFC 3339 UTC with milliseconds: `2026-05-01T09:30:00.123Z`.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

struct Job {
    record: AuditRecord,
    reply: oneshot::Sender<Result<(u64, String), AuditError>>,
}

/// Async handle to an [`AuditLog`] owned by a writer thread that group-commits: records that
/// arrive while an fsync is in progress are written together with the next one. Cheap to
/// clone; the thread ends when the last handle is dropped.
#[derive(Clone, Debug)]
pub struct Auditor {
    tx: mpsc::Sender<Job>,
}

/// Most records written with one fsync.
const MAX_BATCH: usize = 1024;

impl Auditor {
    pub fn start(mut log: AuditLog) -> Auditor {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("abis-audit".to_string())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(job) => jobs.push(job),
                            Err(_) => break,
                        }
                    }
                    let records: Vec<AuditRecord> = jobs.iter().map(|j| j.record.clone()).collect();
                    match log.append(&records) {
                        Ok(receipts) => {
                            for (job, receipt) in jobs.into_iter().zip(receipts) {
                                let _ = job.reply.send(Ok(receipt));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "audit log write failed");
                            for job in jobs {
                                let _ = job.reply.send(Err(e.clone()));
                            }
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the audit writer thread");
        }
        Auditor { tx }
    }

    /// Opens the log in `dir` and starts its writer.
    pub fn open(dir: &Path, options: AuditOptions) -> Result<Auditor, AuditError> {
        Ok(Auditor::start(AuditLog::open(dir, options)?))
    }

    /// Appends a record and waits until it is durable. Returns its sequence number and hash.
    /// An error means the record is *not* in the log: fail the RPC (`?` converts to
    /// UNAVAILABLE).
    pub async fn record(&self, record: AuditRecord) -> Result<(u64, String), AuditError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { record, reply })
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> AuditRecord {
        AuditRecord::new(format!("caller-{}", i % 3), "Identify")
            .refs([format!("{:012}", i), format!("{:012}", i + 1)])
            .decision(format!("candidates:{}", i % 4))
    }

    fn write_log(dir: &Path, n: usize, max_file_bytes: u64) {
        let mut log = AuditLog::open(dir, AuditOptions { max_file_bytes }).unwrap();
        for i in 0..n {
            log.append(&[rec(i)]).unwrap();
        }
    }

    fn only_file(dir: &Path) -> PathBuf {
        let files = list_files(dir).unwrap();
        assert_eq!(files.len(), 1);
        files[0].1.clone()
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn write_lines(path: &Path, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(path, text).unwrap();
    }

    fn broken(dir: &Path) -> ChainBreak {
        match verify_dir(dir) {
            Err(AuditError::Broken(b)) => b,
            other => panic!("expected a break, got {other:?}"),
        }
    }

    #[test]
    fn time_format() {
        let at = |s| rfc3339_utc(UNIX_EPOCH + std::time::Duration::from_millis(s));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(at(4_107_542_399_000), "2100-02-28T23:59:59.000Z");
    }

    #[test]
    fn verifying_a_folder_without_a_log_is_an_error_and_a_data_dir_is_accepted() {
        let data = tempfile::tempdir().unwrap();
        assert!(matches!(verify_dir(data.path()), Err(AuditError::NoLog(_))));
        write_log(&data.path().join("audit"), 3, 1 << 20);
        assert_eq!(verify_dir(data.path()).unwrap().entries, 3);
        assert_eq!(verify_dir(&data.path().join("audit")).unwrap().entries, 3);
    }

    #[test]
    fn chain_continues_across_restarts_and_files() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 10, 1500);
        write_log(dir.path(), 10, 1500);
        let files = list_files(dir.path()).unwrap();
        assert!(files.len() > 2, "rotation happened: {files:?}");
        assert_eq!(files[0].0, 1);
        let report = verify_dir(dir.path()).unwrap();
        assert_eq!(report.entries, 20);
        let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
        assert_eq!(log.head(), (20, report.head));
        // No image or template data: only the fields of the record.
        let text = std::fs::read_to_string(&files[0].1).unwrap();
        let first: Entry = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first.seq, 1);
        assert_eq!(first.prev, "0".repeat(64));
        assert_eq!(first.refs, vec!["000000000000", "000000000001"]);
    }

    #[test]
    fn tampering_with_any_field_is_detected() {
        let fields = [
            "seq",
            "time",
            "caller",
            "rpc",
            "refs",
            "refs_omitted",
            "decision",
            "code",
            "prev",
            "hash",
        ];
        for field in fields {
            let dir = tempfile::tempdir().unwrap();
            write_log(dir.path(), 6, u64::MAX);
            let path = only_file(dir.path());
            let mut all = lines(&path);
            let mut v: serde_json::Value = serde_json::from_str(&all[3]).unwrap();
            let new = match &v[field] {
                serde_json::Value::Number(n) => serde_json::json!(n.as_u64().unwrap() + 1),
                serde_json::Value::Array(_) => serde_json::json!(["999999999999"]),
                serde_json::Value::String(s) if s.len() == 64 => {
                    serde_json::json!(format!(
                        "{}{}",
                        &s[..63],
                        if s.ends_with('0') { "1" } else { "0" }
                    ))
                }
                serde_json::Value::String(s) => serde_json::json!(format!("{s}x")),
                other => panic!("{other}"),
            };
            v[field] = new;
            all[3] = serde_json::to_string(&v).unwrap();
            write_lines(&path, &all);
            let b = broken(dir.path());
            assert_eq!(b.line, 4, "{field}: {b}");
            assert_eq!(b.expected_seq, 4, "{field}");
            assert!(AuditLog::open(dir.path(), AuditOptions::default()).is_err());
        }
    }

    #[test]
    fn whitespace_edit_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 3, u64::MAX);
        let path = only_file(dir.path());
        let mut all = lines(&path);
        all[1] = all[1].replacen(":", ": ", 1);
        write_lines(&path, &all);
        assert_eq!(broken(dir.path()).line, 2);
    }

    #[test]
    fn deleting_or_reordering_entries_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 6, u64::MAX);
        let path = only_file(dir.path());
        let original = lines(&path);

        let mut deleted = original.clone();
        deleted.remove(2);
        write_lines(&path, &deleted);
        let b = broken(dir.path());
        assert_eq!((b.line, b.expected_seq), (3, 3));

        let mut swapped = original.clone();
        swapped.swap(1, 4);
        write_lines(&path, &swapped);
        let b = broken(dir.path());
        assert_eq!((b.line, b.expected_seq), (2, 2));

        // A deleted entry whose successors were renumbered and rehashed by the forger still
        // fails: its prev no longer matches unless the forger rewrote everything after it.
        let mut first_gone = original.clone();
        first_gone.remove(0);
        write_lines(&path, &first_gone);
        assert_eq!(broken(dir.path()).line, 1);

        write_lines(&path, &original);
        assert_eq!(verify_dir(dir.path()).unwrap().entries, 6);
    }

    #[test]
    fn deleting_a_middle_file_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 12, 600);
        let files = list_files(dir.path()).unwrap();
        assert!(files.len() >= 3);
        std::fs::remove_file(&files[1].1).unwrap();
        let b = broken(dir.path());
        assert_eq!(b.file, files[2].1);
        assert_eq!(b.line, 0);
    }

    #[test]
    fn truncation_mid_line_is_detected_and_quarantined_on_open() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 5, u64::MAX);
        let path = only_file(dir.path());
        let data = std::fs::read(&path).unwrap();
        std::fs::write(&path, &data[..data.len() - 20]).unwrap();
        let b = broken(dir.path());
        assert_eq!(b.line, 5);
        assert!(b.reason.contains("truncated"), "{b}");

        // The server's open quarantines the torn line and continues the chain.
        let mut log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
        assert_eq!(log.head().0, 5, "4 entries kept + the repair entry");
        log.append(&[rec(99)]).unwrap();
        assert_eq!(verify_dir(dir.path()).unwrap().entries, 6);
        let all = lines(&path);
        assert!(all[4].contains("torn_tail_quarantined"));
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".torn-"))
            .collect();
        assert_eq!(aside.len(), 1);

        // Truncation of a file that is not the last one is a break, never repaired.
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 12, 600);
        let files = list_files(dir.path()).unwrap();
        let data = std::fs::read(&files[0].1).unwrap();
        std::fs::write(&files[0].1, &data[..data.len() - 7]).unwrap();
        assert!(broken(dir.path()).reason.contains("truncated"));
    }

    #[test]
    fn open_refuses_a_broken_join_between_files() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 12, 600);
        let files = list_files(dir.path()).unwrap();
        let last = &files.last().unwrap().1;
        let mut all = lines(last);
        // Replace the first entry of the last file by a validly-hashed entry with a wrong prev.
        let mut e: Entry = serde_json::from_str(&all[0]).unwrap();
        e.prev = "1".repeat(64);
        e.hash = hex(&e.compute_hash(&decode_hex32(&e.prev).unwrap()));
        all[0] = e.line().trim_end().to_string();
        write_lines(last, &all);
        assert!(AuditLog::open(dir.path(), AuditOptions::default()).is_err());
        assert!(verify_dir(dir.path()).is_err());
    }

    #[test]
    fn refs_are_capped_and_fields_clipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
        let many = (0..MAX_REFS + 10).map(|i| i.to_string());
        log.append(&[AuditRecord::new("x".repeat(1000), "Identify").refs(many)])
            .unwrap();
        let e: Entry = serde_json::from_str(lines(&only_file(dir.path()))[0].as_str()).unwrap();
        assert_eq!(e.refs.len(), MAX_REFS);
        assert_eq!(e.refs_omitted, 10);
        assert_eq!(e.caller.len(), MAX_FIELD_BYTES);
        verify_dir(dir.path()).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_records_share_fsyncs_and_keep_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let auditor = Auditor::open(dir.path(), AuditOptions::default()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..64 {
            let a = auditor.clone();
            tasks.push(tokio::spawn(
                async move { a.record(rec(i)).await.unwrap().0 },
            ));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap());
        }
        seqs.sort();
        assert_eq!(seqs, (1..=64).collect::<Vec<u64>>());
        assert_eq!(verify_dir(dir.path()).unwrap().entries, 64);
    }

    #[tokio::test]
    async fn a_failed_write_fails_the_record_and_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        // Tiny files: the second record rotates into a path that is already a directory.
        let auditor = Auditor::open(dir.path(), AuditOptions { max_file_bytes: 1 }).unwrap();
        auditor.record(rec(0)).await.unwrap();
        std::fs::create_dir(dir.path().join(file_name(2))).unwrap();
        let err = auditor.record(rec(1)).await.unwrap_err();
        assert!(matches!(err, AuditError::Io { .. }), "{err}");
        let status: tonic::Status = err.into();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(matches!(
            auditor.record(rec(2)).await,
            Err(AuditError::Poisoned)
        ));
        std::fs::remove_dir(dir.path().join(file_name(2))).unwrap();
        assert_eq!(verify_dir(dir.path()).unwrap().entries, 1);
    }

    #[test]
    fn outcome_sets_code_and_decision() {
        let ok: Result<(), tonic::Status> = Ok(());
        let r = AuditRecord::new("a", "Delete")
            .decision("deleted")
            .outcome(&ok);
        assert_eq!((r.code.as_str(), r.decision.as_str()), ("OK", "deleted"));
        let err: Result<(), tonic::Status> = Err(tonic::Status::not_found("x"));
        let r = AuditRecord::new("a", "Delete").outcome(&err);
        assert_eq!(
            (r.code.as_str(), r.decision.as_str()),
            ("NOT_FOUND", "error")
        );
    }
}
