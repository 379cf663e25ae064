//! `abis keys ...`: create and list API keys in a keys file (hashes only, see `abis_server::auth`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use abis_server::access::Roles;
use abis_server::auth::{add_key, KeyStore};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key: prints it once (JSON on stdout) and appends its SHA-256 to the keys file
    /// (created with mode 0600). The key itself is stored nowhere.
    Add {
        /// Key name, as it appears in the audit log (A-Z a-z 0-9 . _ - @, at most 64).
        name: String,
        /// Comma-separated roles: verify, enroll, search, admin, adjudicator.
        #[arg(long, value_name = "R1,R2")]
        roles: String,
        /// Keys file (default: $ABIS__AUTH__KEYS_FILE).
        #[arg(long, value_name = "KEYS_FILE")]
        file: Option<PathBuf>,
    },
    /// List key names and roles (never hashes).
    List {
        /// Keys file (default: $ABIS__AUTH__KEYS_FILE).
        #[arg(long, value_name = "KEYS_FILE")]
        file: Option<PathBuf>,
    },
}

fn keys_file(file: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    file.or_else(|| std::env::var_os("ABIS__AUTH__KEYS_FILE").map(PathBuf::from))
        .context("no keys file: pass --file KEYS_FILE or set ABIS__AUTH__KEYS_FILE")
}

fn roles_json(roles: Roles) -> Vec<&'static str> {
    roles.iter().map(|r| r.as_str()).collect()
}

pub fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Add { name, roles, file } => {
            let file = keys_file(file)?;
            let roles = Roles::parse_list(&roles)?;
            let key = add_key(&file, &name, roles)?;
            let out = serde_json::json!({
                "name": name,
                "roles": roles_json(roles),
                "file": file,
                "key": key,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            eprintln!("Store this key now: it is shown only once and cannot be recovered.");
            Ok(())
        }
        KeysCommand::List { file } => {
            let file = keys_file(file)?;
            let store = KeyStore::load(&file)?;
            let keys: Vec<_> = store
                .entries()
                .map(|(name, roles)| serde_json::json!({"name": name, "roles": roles_json(roles)}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&keys)?);
            Ok(())
        }
    }
}
