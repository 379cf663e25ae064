//! `abis audit verify DIR`: check the whole hash chain of an audit log directory.

use std::path::PathBuf;

use clap::Subcommand;

use abis_server::audit::{verify_dir, AuditError};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify every entry from sequence 1 to the end. Prints a JSON report; on the first broken
    /// entry prints its file, line and sequence and exits non-zero.
    Verify {
        /// Audit log directory (audit.dir, default <data_dir>/audit), or the data directory.
        dir: PathBuf,
    },
}

pub fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify { dir } => {
            if !dir.is_dir() {
                anyhow::bail!("{} is not a directory", dir.display());
            }
            match verify_dir(&dir) {
                Ok(report) => {
                    let mut out = serde_json::to_value(&report)?;
                    out["ok"] = serde_json::Value::Bool(true);
                    println!("{}", serde_json::to_string_pretty(&out)?);
                    Ok(())
                }
                Err(AuditError::Broken(b)) => {
                    let out = serde_json::json!({
                        "ok": false,
                        "file": b.file,
                        "line": b.line,
                        "seq": b.expected_seq,
                        "reason": b.reason,
                    });
                    println!("{}", serde_json::to_string_pretty(&out)?);
                    anyhow::bail!("audit chain broken at {b}")
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}
