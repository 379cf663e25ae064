//! TEMPORARY: the engine API issue 20 adds (`Gallery::checkpoint_to`, `Gallery::is_gallery_file`,
//! `store::install`, `store::repair_install`), written here with the old rules (no index files)
//! so that the rest of the cluster compiles and is tested until the engine's lands; removed then.

use std::path::Path;

use abis_engine::gallery::{Gallery, GalleryError};
use abis_engine::store::StoreError;

pub struct StoreCopy {
    pub files: Vec<CopiedFile>,
    pub position: u64,
}

pub struct CopiedFile {
    pub name: String,
    pub size: u64,
}

fn io(source: std::io::Error) -> StoreError {
    StoreError::Io {
        op: "bootstrap",
        file: String::new(),
        source,
    }
}

pub fn is_gallery_file(name: &str) -> bool {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    ok_chars
        && !name.starts_with('.')
        && (name == "meta.abis"
            || (name.starts_with("wal-") && name.ends_with(".log"))
            || (name.starts_with("seg-") && name.ends_with(".seg"))
            || (name.starts_with("del-") && name.ends_with(".bits")))
}

pub fn checkpoint_to(
    gallery: &Gallery,
    dir: &Path,
    dest: &Path,
) -> Result<StoreCopy, GalleryError> {
    let store = gallery.store();
    store.flush()?;
    let position = store.replicated_position();
    std::fs::create_dir(dest).map_err(io)?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_gallery_file(&name) {
            let size = entry.metadata().map_err(io)?.len();
            std::fs::hard_link(dir.join(&name), dest.join(&name)).map_err(io)?;
            files.push(CopiedFile { name, size });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(StoreCopy { files, position })
}

pub fn install(incoming: &Path, dir: &Path) -> Result<(), StoreError> {
    let old = dir.with_extension("replaced");
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(io)?;
    }
    std::fs::rename(incoming, dir).map_err(io)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io)?;
    }
    Ok(())
}

pub fn repair_install(dir: &Path) -> Result<(), StoreError> {
    let old = dir.with_extension("replaced");
    if !dir.exists() && old.exists() {
        std::fs::rename(&old, dir).map_err(io)?;
    }
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io)?;
    }
    Ok(())
}
