//! A replica that fell behind its shard's trimmed log copies a live peer's store.
//!
//! Protocol (NATS request-reply):
//!
//! 1. The new replica asks `abis.bootstrap.<shard>` (the shard's queue group: one live peer
//!    answers). The peer stops applying the log (it takes the apply gate), checkpoints its store
//!    (memtable into a segment, compacted into one segment when it holds more than the store
//!    allows), hard-links the store's files into `<gallery>.copy-<session>` and applies again:
//!    segments and bitmaps are immutable, the meta is replaced by renaming (the link keeps the
//!    old one), and the log only grows (the offer gives its size then, and only that prefix is
//!    served), so the links stay the checkpoint while the peer goes on. (Where hard links
//!    fail, the peer stays stopped for the whole copy instead.) It answers with an offer: a
//!    session subject, the files and sizes, and the log position they hold.
//! 2. The new replica reads each file in order, chunk by chunk (512 KiB, under NATS's default
//!    1 MiB message limit), from the session subject; the peer hashes each file as it serves it
//!    and sends the SHA-256 with the last chunk, which the new replica checks.
//! 3. The new replica writes the files into `<gallery>.incoming`, fsyncs them and the directory,
//!    says `done` (the peer drops its links), then swaps the directories: `gallery` →
//!    `gallery.replaced`, `gallery.incoming` → `gallery`, fsync of the parent, removal of the old
//!    one. A crash between the two renames is repaired at the next start ([`recover_dirs`]).
//! 4. It opens the copied store — whose replicated position is the peer's — and replays the log
//!    from there like any restarted replica.
//!
//! With encryption at rest the files travel sealed, as they lie on the peer's disk: replicas of
//! a cluster share the gallery key. A session idle for 30 s ends by itself, so a new replica
//! that died mid-copy does not stop its peer for long.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use abis_proto::cluster::v1 as pb;
use async_nats::{Client, Request, RequestErrorKind};
use prost::Message;
use sha2::{Digest, Sha256};
use tokio_stream::StreamExt;

use crate::error::ClusterError;
use crate::replica::{ReplicaConfig, Shared};
use crate::shard::{request_subject, RequestKind};
use crate::wire::check_node_name;

/// Bytes per chunk.
const CHUNK: u64 = 512 << 10;
/// A session with no request for this long ends.
const IDLE: Duration = Duration::from_secs(30);
/// How long a peer may take to checkpoint before it offers its files.
const OFFER_TIMEOUT: Duration = Duration::from_secs(300);
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

fn incoming(gallery: &Path) -> PathBuf {
    gallery.with_extension("incoming")
}

fn replaced(gallery: &Path) -> PathBuf {
    gallery.with_extension("replaced")
}

fn copy_dir(gallery: &Path, token: &str) -> PathBuf {
    gallery.with_extension(format!("copy-{token}"))
}

/// Whether `name` is a file of a store (the names `engine::store` writes).
fn is_store_file(name: &str) -> bool {
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

/// Repairs what a crash during a directory swap left: the old store back in place when the
/// new one was not moved in yet, and no half-copied directory.
pub fn recover_dirs(gallery: &Path) -> Result<(), ClusterError> {
    let (inc, old) = (incoming(gallery), replaced(gallery));
    if !gallery.exists() && old.exists() {
        std::fs::rename(&old, gallery).map_err(|e| ClusterError::io("restoring", &old, e))?;
    }
    let mut leftovers = vec![inc, old];
    // Links of copies this replica was serving when it stopped.
    if let (Some(parent), Some(name)) = (gallery.parent(), gallery.file_name()) {
        let prefix = format!("{}.copy-", name.to_string_lossy());
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(entries) = std::fs::read_dir(parent) {
            leftovers.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|e| e.path()),
            );
        }
    }
    for leftover in leftovers {
        if leftover.exists() {
            std::fs::remove_dir_all(&leftover)
                .map_err(|e| ClusterError::io("removing", &leftover, e))?;
        }
    }
    Ok(())
}

/// Peer side: checkpoints, links the store's files aside and offers them (an encoded
/// [`pb::BootstrapOffer`]).
pub(crate) async fn offer(shared: &Arc<Shared>, payload: &[u8]) -> Result<Vec<u8>, ClusterError> {
    let request = pb::BootstrapRequest::decode(payload).map_err(|e| ClusterError::Bootstrap {
        shard: shared.config.shard,
        detail: e.to_string(),
    })?;
    check_node_name(&request.node)?;
    let refuse = |error: &str| {
        pb::BootstrapOffer {
            node: shared.config.node.clone(),
            error: error.to_owned(),
            ..Default::default()
        }
        .encode_to_vec()
    };
    let Ok(busy) = Arc::clone(&shared.serving_bootstrap).try_lock_owned() else {
        return Ok(refuse("another copy is in progress"));
    };
    let inbox = shared.client.new_inbox();
    let token = inbox.rsplit('.').next().unwrap_or("0").to_owned();
    let gate = Arc::clone(&shared.gate).lock_owned().await;
    let gallery = Arc::clone(&shared.gallery);
    let max_segments = shared.config.store.max_segments;
    let dir = shared.config.gallery_dir.clone();
    let links = copy_dir(&dir, &token);
    let listed = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let store = gallery.store();
        store.flush().map_err(|e| e.to_string())?;
        if store.stats().segments > max_segments {
            store.compact().map_err(|e| e.to_string())?;
        }
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
            let entry = entry.map_err(|e| e.to_string())?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_store_file(&name) {
                let size = entry.metadata().map_err(|e| e.to_string())?.len();
                files.push(pb::StoreFile { name, size });
            }
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let linked = std::fs::create_dir(&links).is_ok()
            && files
                .iter()
                .all(|f| std::fs::hard_link(dir.join(&f.name), links.join(&f.name)).is_ok());
        if !linked {
            let _ = std::fs::remove_dir_all(&links);
        }
        Ok((files, store.replicated_position(), linked.then_some(links)))
    })
    .await
    .map_err(|e| ClusterError::Bootstrap {
        shard: shared.config.shard,
        detail: e.to_string(),
    })?;
    let (files, position, links) = match listed {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint for a bootstrap failed");
            return Ok(refuse("the peer could not checkpoint its store"));
        }
    };
    // With the files linked the peer applies again at once; without, it waits for the copy.
    let gate = match links {
        Some(_) => {
            drop(gate);
            None
        }
        None => Some(gate),
    };
    let subject = format!(
        "{}.session.{token}",
        request_subject(RequestKind::Bootstrap, shared.config.shard)
    );
    let sub = shared
        .client
        .subscribe(subject.clone())
        .await
        .map_err(|e| ClusterError::nats("bootstrap session", e))?;
    shared
        .client
        .flush()
        .await
        .map_err(|e| ClusterError::nats("bootstrap session", e))?;
    tracing::info!(
        shard = shared.config.shard,
        peer = %request.node,
        files = files.len(),
        bytes = files.iter().map(|f| f.size).sum::<u64>(),
        position,
        "serving a copy of this store"
    );
    let offer = pb::BootstrapOffer {
        session: token,
        subject,
        node: shared.config.node.clone(),
        position,
        files: files.clone(),
        idle_ms: IDLE.as_millis() as u32,
        error: String::new(),
    };
    let session = Session {
        client: shared.client.clone(),
        dir: links
            .clone()
            .unwrap_or_else(|| shared.config.gallery_dir.clone()),
        files: files.into_iter().map(|f| (f.name, f.size)).collect(),
        hashes: HashMap::new(),
    };
    tokio::spawn(async move {
        session.serve(sub).await;
        if let Some(links) = links {
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(links)).await;
        }
        drop(gate);
        drop(busy);
    });
    Ok(offer.encode_to_vec())
}

/// The peer's side of one copy.
struct Session {
    client: Client,
    dir: PathBuf,
    files: HashMap<String, u64>,
    /// Per file: the next offset and the hash of what was served before it.
    hashes: HashMap<String, (u64, Sha256)>,
}

impl Session {
    async fn serve(mut self, mut sub: async_nats::Subscriber) {
        loop {
            let msg = match tokio::time::timeout(IDLE, sub.next()).await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!("bootstrap session idle: resuming");
                    break;
                }
            };
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let chunk = match pb::ChunkRequest::decode(&msg.payload[..]) {
                Ok(r) if r.done => {
                    let _ = self.client.publish(reply, Vec::new().into()).await;
                    break;
                }
                Ok(r) => self.chunk(r).await,
                Err(e) => pb::Chunk {
                    error: e.to_string(),
                    ..Default::default()
                },
            };
            let _ = self
                .client
                .publish(reply, chunk.encode_to_vec().into())
                .await;
        }
        let _ = sub.unsubscribe().await;
    }

    async fn chunk(&mut self, r: pb::ChunkRequest) -> pb::Chunk {
        let fail = |error: String| pb::Chunk {
            error,
            ..Default::default()
        };
        let Some(&size) = self.files.get(&r.file) else {
            return fail("not a file of the offer".into());
        };
        let (next, _) = self
            .hashes
            .entry(r.file.clone())
            .or_insert_with(|| (0, Sha256::new()));
        if r.offset != *next || r.offset > size {
            return fail(format!("expected offset {next}"));
        }
        let path = self.dir.join(&r.file);
        let len = CHUNK.min(size - r.offset);
        let offset = r.offset;
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            let mut f = std::fs::File::open(path)?;
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = vec![0u8; len as usize];
            f.read_exact(&mut buf)?;
            Ok(buf)
        })
        .await;
        let data = match read {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return fail(e.to_string()),
            Err(e) => return fail(e.to_string()),
        };
        let Some((next, hasher)) = self.hashes.get_mut(&r.file) else {
            return fail("internal: no hash state".into());
        };
        hasher.update(&data);
        *next += data.len() as u64;
        let eof = *next == size;
        let sha256 = if eof {
            hasher.clone().finalize().to_vec()
        } else {
            Vec::new()
        };
        pb::Chunk {
            data,
            eof,
            sha256,
            error: String::new(),
        }
    }
}

/// New replica's side: finds a live peer, copies its store into place. Retries until a peer
/// answers.
pub(crate) async fn fetch(config: &ReplicaConfig, client: &Client) -> Result<(), ClusterError> {
    let shard = config.shard;
    let subject = request_subject(RequestKind::Bootstrap, shard);
    let ask = pb::BootstrapRequest {
        node: config.node.clone(),
    }
    .encode_to_vec();
    loop {
        let answer = client
            .send_request(
                subject.clone(),
                Request::new()
                    .payload(ask.clone().into())
                    .timeout(Some(OFFER_TIMEOUT)),
            )
            .await;
        let offer = match answer {
            Ok(m) => match pb::BootstrapOffer::decode(&m.payload[..]) {
                Ok(o) if o.error.is_empty() => o,
                Ok(o) => {
                    tracing::info!(shard, peer = %o.node, reason = %o.error, "peer cannot copy now");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(shard, error = %e, "unreadable bootstrap offer");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            Err(e) if e.kind() == RequestErrorKind::NoResponders => {
                tracing::warn!(shard, "no live peer of this shard to copy from yet");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(shard, error = %e, "bootstrap request");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        match download(config, client, &offer).await {
            Ok(bytes) => {
                tracing::info!(
                    shard,
                    peer = %offer.node,
                    bytes,
                    position = offer.position,
                    "store copied from a peer"
                );
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(shard, error = %e, "store copy failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Copies the offered files into `<gallery>.incoming`, then swaps it in. Returns the bytes
/// copied.
async fn download(
    config: &ReplicaConfig,
    client: &Client,
    offer: &pb::BootstrapOffer,
) -> Result<u64, ClusterError> {
    let shard = config.shard;
    let bad = |detail: String| ClusterError::Bootstrap { shard, detail };
    if !offer
        .subject
        .starts_with(&request_subject(RequestKind::Bootstrap, shard))
    {
        return Err(bad("offer names a foreign session subject".into()));
    }
    if !offer.files.iter().any(|f| f.name == "meta.abis")
        || offer.files.iter().any(|f| !is_store_file(&f.name))
    {
        return Err(bad("offer is not a store".into()));
    }
    let gallery = config.gallery_dir.clone();
    let inc = incoming(&gallery);
    if inc.exists() {
        std::fs::remove_dir_all(&inc).map_err(|e| ClusterError::io("removing", &inc, e))?;
    }
    std::fs::create_dir_all(&inc).map_err(|e| ClusterError::io("creating", &inc, e))?;
    let mut total = 0u64;
    for f in &offer.files {
        let path = inc.join(&f.name);
        let mut out =
            std::fs::File::create(&path).map_err(|e| ClusterError::io("creating", &path, e))?;
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        loop {
            let req = pb::ChunkRequest {
                file: f.name.clone(),
                offset,
                done: false,
            };
            let m = client
                .send_request(
                    offer.subject.clone(),
                    Request::new()
                        .payload(req.encode_to_vec().into())
                        .timeout(Some(CHUNK_TIMEOUT)),
                )
                .await
                .map_err(|e| bad(format!("chunk of {}: {e}", f.name)))?;
            let chunk =
                pb::Chunk::decode(&m.payload[..]).map_err(|e| bad(format!("chunk: {e}")))?;
            if !chunk.error.is_empty() {
                return Err(bad(format!("peer: {}", chunk.error)));
            }
            if chunk.data.is_empty() && !chunk.eof {
                return Err(bad("empty chunk".into()));
            }
            out.write_all(&chunk.data)
                .map_err(|e| ClusterError::io("writing", &path, e))?;
            hasher.update(&chunk.data);
            offset += chunk.data.len() as u64;
            if offset > f.size {
                return Err(bad(format!("{} is longer than offered", f.name)));
            }
            if chunk.eof || f.size == 0 {
                if offset != f.size || (f.size > 0 && chunk.sha256 != hasher.finalize().to_vec()) {
                    return Err(bad(format!("{} arrived damaged", f.name)));
                }
                break;
            }
        }
        out.sync_all()
            .map_err(|e| ClusterError::io("syncing", &path, e))?;
        total += f.size;
    }
    sync_dir(&inc)?;
    let done = pb::ChunkRequest {
        done: true,
        ..Default::default()
    };
    let _ = client
        .send_request(
            offer.subject.clone(),
            Request::new()
                .payload(done.encode_to_vec().into())
                .timeout(Some(Duration::from_secs(5))),
        )
        .await;
    install(&gallery, &inc)?;
    Ok(total)
}

fn sync_dir(dir: &Path) -> Result<(), ClusterError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ClusterError::io("syncing directory", dir, e))
}

/// Swaps the copied store in (see the module docs).
fn install(gallery: &Path, inc: &Path) -> Result<(), ClusterError> {
    let old = replaced(gallery);
    if gallery.exists() {
        std::fs::rename(gallery, &old).map_err(|e| ClusterError::io("moving", gallery, e))?;
    }
    std::fs::rename(inc, gallery).map_err(|e| ClusterError::io("moving", inc, e))?;
    if let Some(parent) = gallery.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| ClusterError::io("removing", &old, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_store_files_are_offered_or_accepted() {
        for ok in [
            "meta.abis",
            "wal-0000000003.log",
            "seg-00000001.seg",
            "del-1-2.bits",
        ] {
            assert!(is_store_file(ok), "{ok}");
        }
        for bad in [
            "LOCK",
            "meta.tmp",
            "../meta.abis",
            "seg-1/../../x.seg",
            ".seg-1.seg",
            "wal-1.log/x",
        ] {
            assert!(!is_store_file(bad), "{bad}");
        }
    }

    #[test]
    fn an_interrupted_swap_is_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let gallery = dir.path().join("gallery");
        std::fs::create_dir_all(replaced(&gallery)).unwrap();
        std::fs::write(replaced(&gallery).join("meta.abis"), b"old").unwrap();
        std::fs::create_dir_all(incoming(&gallery)).unwrap();
        recover_dirs(&gallery).unwrap();
        assert_eq!(std::fs::read(gallery.join("meta.abis")).unwrap(), b"old");
        assert!(!incoming(&gallery).exists() && !replaced(&gallery).exists());
        std::fs::create_dir_all(copy_dir(&gallery, "abc")).unwrap();
        recover_dirs(&gallery).unwrap();
        assert!(!copy_dir(&gallery, "abc").exists());
        // A complete copy swapped in replaces the old store.
        std::fs::create_dir_all(incoming(&gallery)).unwrap();
        std::fs::write(incoming(&gallery).join("meta.abis"), b"new").unwrap();
        install(&gallery, &incoming(&gallery)).unwrap();
        assert_eq!(std::fs::read(gallery.join("meta.abis")).unwrap(), b"new");
        assert!(!replaced(&gallery).exists());
    }
}
