//! `abis store ...`: offline tools for the gallery store: encryption keys, rekeying, backups.

use std::io::Write;
use std::path::{Path, PathBuf};

use abis_engine::gallery::Gallery;
use abis_engine::matcher::Matcher;
use abis_engine::store::backup::Manifest;
use abis_engine::store::encryption::{Keyring, RekeyTarget};
use abis_engine::store::{stored_face_dim, StoreConfig};
use anyhow::{bail, Context};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Write a new random 256-bit key to FILE (created with mode 0600, never overwritten), or
    /// with `--prepend` put a new key first in an existing key file (rotation).
    Keygen {
        file: PathBuf,
        /// Add the new key as the active one on top of an existing file.
        #[arg(long)]
        prepend: bool,
    },
    /// Rewrite every file of a stopped server's gallery with the active key of KEY_FILE (old
    /// keys listed below it), or to plaintext with `--decrypt`. Safe to interrupt and re-run.
    Rekey {
        /// Data directory of `abis serve` (the gallery is DATA/gallery).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        #[arg(long, value_name = "KEY_FILE")]
        key_file: PathBuf,
        /// Turn encryption off: leave every file in plaintext.
        #[arg(long)]
        decrypt: bool,
    },
    /// Write a backup of a gallery into the new directory DEST: a consistent copy (hard links
    /// on the same filesystem, else copies) and a manifest with every file's SHA-256. The gallery
    /// must not be open in a running server.
    Backup {
        /// Data directory of `abis serve` (the gallery is DATA/gallery).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        #[arg(long, value_name = "DEST")]
        to: PathBuf,
        /// Key file of an encrypted gallery (files stay sealed in the backup).
        #[arg(long, value_name = "KEY_FILE")]
        key_file: Option<PathBuf>,
    },
    /// Check a backup: every file its manifest names, intact, and nothing else.
    Verify {
        #[arg(value_name = "BACKUP")]
        backup: PathBuf,
    },
    /// Check a backup and make it the gallery of a data directory that has none yet.
    Restore {
        #[arg(long, value_name = "BACKUP")]
        from: PathBuf,
        /// Data directory of `abis serve` (the gallery becomes DATA/gallery).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
}

pub fn run(command: StoreCommand) -> anyhow::Result<()> {
    match command {
        StoreCommand::Keygen { file, prepend } => keygen(&file, prepend),
        StoreCommand::Rekey {
            data,
            key_file,
            decrypt,
        } => {
            let keys = Keyring::load(&key_file)?;
            let target = if decrypt {
                RekeyTarget::Plaintext
            } else {
                RekeyTarget::ActiveKey
            };
            let gallery = data.join("gallery");
            if !gallery.is_dir() {
                bail!("no gallery at {}", gallery.display());
            }
            let r = Gallery::rekey(&gallery, &keys, target)
                .with_context(|| format!("rekeying {}", gallery.display()))?;
            // Adjudication cases hold minutiae and are sealed with the same key.
            let cases_dir = data.join("cases");
            let cases = if cases_dir.is_dir() {
                abis_server::adjudication::store::rekey(&cases_dir, &keys, decrypt)?
            } else {
                0
            };
            // So are the kept images (`[store] keep_images`).
            let images_dir = data.join("images");
            let images = if images_dir.is_dir() {
                abis_server::images::rekey(&images_dir, &keys, decrypt)?
            } else {
                0
            };
            let out = serde_json::json!({
                "rewritten": r.rewritten,
                "unchanged": r.unchanged,
                "cases_rewritten": cases,
                "image_files_rewritten": images,
                "active_key": (!decrypt).then(|| keys.active_id()),
            });
            println!("{out}");
            Ok(())
        }
        StoreCommand::Backup { data, to, key_file } => backup(&data, &to, key_file.as_deref()),
        StoreCommand::Verify { backup } => {
            let m = Gallery::verify_backup(&backup)
                .with_context(|| format!("verifying {}", backup.display()))?;
            print_manifest("ok", &m);
            Ok(())
        }
        StoreCommand::Restore { from, data } => {
            let gallery = data.join("gallery");
            let m = Gallery::restore_backup(&from, &gallery, Some(&data)).with_context(|| {
                format!("restoring {} into {}", from.display(), gallery.display())
            })?;
            print_manifest("restored", &m);
            Ok(())
        }
    }
}

fn print_manifest(status: &str, m: &Manifest) {
    let out = serde_json::json!({
        "status": status,
        "files": m.files.len(),
        "tree_files": m.trees.len(),
        "bytes": m.bytes(),
        "position": m.position,
    });
    println!("{out}");
}

/// Opens the stopped server's gallery (replaying its log) and writes a backup of it.
fn backup(data: &Path, to: &Path, key_file: Option<&Path>) -> anyhow::Result<()> {
    let gallery_dir = data.join("gallery");
    let keys = key_file.map(Keyring::load).transpose()?;
    let dim = stored_face_dim(&gallery_dir, keys.as_ref())
        .with_context(|| format!("reading {}", gallery_dir.display()))?
        .with_context(|| format!("no gallery at {}", gallery_dir.display()))?;
    let mut cfg = StoreConfig::new(dim);
    cfg.background = false;
    cfg.encryption = keys;
    let (gallery, _) = Gallery::open(&gallery_dir, cfg, Matcher::new(), None)
        .with_context(|| format!("opening {}", gallery_dir.display()))?;
    let m = gallery
        .backup_to(to, &abis_server::serve::backup_trees(data))
        .with_context(|| format!("writing the backup {}", to.display()))?;
    print_manifest("ok", &m);
    Ok(())
}

fn keygen(file: &Path, prepend: bool) -> anyhow::Result<()> {
    let line = Keyring::generate_line()?;
    let text = if prepend {
        let old =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        Keyring::parse(&old).with_context(|| format!("checking {}", file.display()))?;
        format!("{line}\n{old}")
    } else {
        line.clone() + "\n"
    };
    let keys = Keyring::parse(&text)?;
    // Write beside the file and rename, so a crash never leaves a half-written key file.
    let tmp = file.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    let placed = if prepend {
        std::fs::rename(&tmp, file)
    } else {
        // Never replace an existing key: that would make its gallery unreadable.
        std::fs::hard_link(&tmp, file).and_then(|()| std::fs::remove_file(&tmp))
    };
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", file.display()));
    }
    println!(
        "{}",
        serde_json::json!({ "file": file, "active_key": keys.active_id() })
    );
    Ok(())
}
