//! A replica that fell behind its shard's trimmed log copies a live peer's store. The store
//! decides what a copy is ([`Gallery::checkpoint_to`], [`store::install`]); this module only
//! moves the bytes.
//!
//! Protocol (NATS request-reply):
//!
//! 1. The new replica asks `abis.bootstrap.<shard>` (the shard's queue group: one live peer
//!    answers). The peer compacts its store when it holds more segments than the store allows,
//!    then checkpoints it into `<gallery>.copy-<session>` (`Gallery::checkpoint_to`: every file
//!    the gallery owns, store and index files, hard-linked where possible, with the log
//!    position they hold) and goes on applying the log meanwhile. It answers with an offer: a
//!    session subject, the files and sizes, and that position.
//! 2. The new replica reads each file in order, chunk by chunk (512 KiB, under NATS's default
//!    1 MiB message limit), from the session subject; the peer hashes each file as it serves it
//!    and sends the SHA-256 with the last chunk, which the new replica checks.
//! 3. The new replica accepts only names of gallery files (`Gallery::is_gallery_file`), writes
//!    them into `<gallery>.incoming`, fsyncs them and the directory, says `done` (the peer
//!    removes its copy), then has the store install the copy in place of its gallery
//!    (`store::install`; a crash in between is repaired at the next start by
//!    `store::repair_install`, see [`recover_dirs`]).
//! 4. It opens the copied store — whose replicated position is the peer's, and whose index
//!    files came with it, so nothing is rebuilt — and replays the log from there like any
//!    restarted replica.
//!
//! With encryption at rest the files travel sealed, as they lie on the peer's disk: replicas of
//! a cluster share the gallery key. A session idle for 30 s ends by itself.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use abis_engine::gallery::{Gallery, GalleryError};
use abis_engine::store::{self, incoming_path, StoreCopy};
use abis_proto::cluster::v1 as pb;
use async_nats::{Client, Request, RequestErrorKind};
use prost::Message;
use sha2::{Digest, Sha256};
use tokio_stream::StreamExt;

use crate::error::{BootstrapError, ClusterError};
use crate::replica::shared::{ReplicaConfig, Shared};
use crate::shard::{request_subject, RequestKind};
use crate::wire::check_node_name;

/// Bytes per chunk.
const CHUNK: u64 = 512 << 10;
/// A session with no request for this long ends.
const IDLE: Duration = Duration::from_secs(30);
/// How long a peer may take to checkpoint before it offers its files.
const OFFER_TIMEOUT: Duration = Duration::from_secs(300);
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a peer puts the copy it serves.
fn copy_dir(gallery: &Path, token: &str) -> PathBuf {
    gallery.with_extension(format!("copy-{token}"))
}

/// Repairs what a crash left: an install the store had begun, or a copy half downloaded
/// (`store::repair_install`), and the copies this replica was serving to peers.
pub fn recover_dirs(gallery: &Path) -> Result<(), ClusterError> {
    store::repair_install(gallery).map_err(|source| ClusterError::Store {
        path: gallery.to_owned(),
        source,
    })?;
    let mut leftovers = Vec::new();
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

/// An offer saying why the peer cannot copy now.
fn refusal(shared: &Shared, error: &str) -> Vec<u8> {
    pb::BootstrapOffer {
        node: shared.config.node.clone(),
        error: error.to_owned(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Peer side: checkpoints its gallery into a copy and offers it (an encoded
/// [`pb::BootstrapOffer`]); a session task serves the copy, then removes it.
pub(crate) async fn offer(shared: &Arc<Shared>, payload: &[u8]) -> Result<Vec<u8>, ClusterError> {
    let shard = shared.config.shard;
    let request = pb::BootstrapRequest::decode(payload).map_err(|source| {
        let source = BootstrapError::Decode {
            what: "bootstrap request",
            source,
        };
        ClusterError::Bootstrap { shard, source }
    })?;
    check_node_name(&request.node)?;
    let Ok(busy) = Arc::clone(&shared.serving_bootstrap).try_lock_owned() else {
        return Ok(refusal(shared, "another copy is in progress"));
    };
    let inbox = shared.client.new_inbox();
    let token = inbox.rsplit('.').next().unwrap_or("0").to_owned();
    let copy_at = copy_dir(&shared.config.gallery.dir, &token);
    let copy = match checkpoint(shared, &copy_at).await {
        Ok(copy) => copy,
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint for a bootstrap failed");
            let _ = std::fs::remove_dir_all(&copy_at);
            return Ok(refusal(shared, "the peer could not checkpoint its store"));
        }
    };
    let subject = format!(
        "{}.session.{token}",
        request_subject(RequestKind::Bootstrap, shard)
    );
    let sub = match subscribe(&shared.client, &subject).await {
        Ok(sub) => sub,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&copy_at);
            return Err(e);
        }
    };
    tracing::info!(
        shard,
        peer = %request.node,
        files = copy.files.len(),
        bytes = copy.files.iter().map(|f| f.size).sum::<u64>(),
        position = copy.position,
        "serving a copy of this store"
    );
    let offer = offered(shared, token, subject, &copy);
    let session = Session {
        client: shared.client.clone(),
        files: copy.files.into_iter().map(|f| (f.name, f.size)).collect(),
        dir: copy_at,
        hashes: HashMap::new(),
    };
    tokio::spawn(async move {
        let dir = session.dir.clone();
        session.serve(sub).await;
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        drop(busy);
    });
    Ok(offer.encode_to_vec())
}

/// The offer of `copy`, served on `subject`.
fn offered(
    shared: &Shared,
    token: String,
    subject: String,
    copy: &StoreCopy,
) -> pb::BootstrapOffer {
    pb::BootstrapOffer {
        session: token,
        subject,
        node: shared.config.node.clone(),
        position: copy.position,
        files: copy
            .files
            .iter()
            .map(|f| pb::StoreFile {
                name: f.name.clone(),
                size: f.size,
            })
            .collect(),
        idle_ms: IDLE.as_millis() as u32,
        error: String::new(),
    }
}

/// Compacts the gallery when it holds more segments than the store allows (fewer files to
/// copy), then checkpoints it into the new directory `dest`.
async fn checkpoint(shared: &Shared, dest: &Path) -> Result<StoreCopy, BootstrapError> {
    let gallery = Arc::clone(shared.shard.gallery());
    let max_segments = shared.config.gallery.store.max_segments;
    let dest = dest.to_owned();
    tokio::task::spawn_blocking(move || {
        if gallery.store().stats().segments > max_segments {
            gallery.store().compact().map_err(GalleryError::from)?;
        }
        gallery.checkpoint_to(&dest)
    })
    .await
    .map_err(|_| BootstrapError::Peer("the checkpoint task ended abnormally".into()))?
    .map_err(BootstrapError::Checkpoint)
}

async fn subscribe(client: &Client, subject: &str) -> Result<async_nats::Subscriber, ClusterError> {
    let sub = client
        .subscribe(subject.to_owned())
        .await
        .map_err(|e| ClusterError::nats("bootstrap session", e))?;
    client
        .flush()
        .await
        .map_err(|e| ClusterError::nats("bootstrap session", e))?;
    Ok(sub)
}

/// The peer's side of one copy.
struct Session {
    client: Client,
    /// The copy being served.
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
                    tracing::warn!("bootstrap session idle: ending it");
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
        let (offset, len) = (r.offset, CHUNK.min(size - r.offset));
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
/// answers and a copy succeeds.
pub(crate) async fn fetch(config: &ReplicaConfig, client: &Client) -> Result<(), ClusterError> {
    let shard = config.shard;
    loop {
        let Some(offer) = ask(config, client).await else {
            continue;
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

/// Asks the shard's queue group for a copy once: the offer, or `None` (after a pause) when no
/// peer can copy now.
async fn ask(config: &ReplicaConfig, client: &Client) -> Option<pb::BootstrapOffer> {
    let shard = config.shard;
    let ask = pb::BootstrapRequest {
        node: config.node.clone(),
    };
    let answer = client
        .send_request(
            request_subject(RequestKind::Bootstrap, shard),
            Request::new()
                .payload(ask.encode_to_vec().into())
                .timeout(Some(OFFER_TIMEOUT)),
        )
        .await;
    let pause = match answer.map(|m| pb::BootstrapOffer::decode(&m.payload[..])) {
        Ok(Ok(o)) if o.error.is_empty() => return Some(o),
        Ok(Ok(o)) => {
            tracing::info!(shard, peer = %o.node, reason = %o.error, "peer cannot copy now");
            Duration::from_secs(1)
        }
        Ok(Err(e)) => {
            tracing::warn!(shard, error = %e, "unreadable bootstrap offer");
            Duration::from_secs(1)
        }
        Err(e) if e.kind() == RequestErrorKind::NoResponders => {
            tracing::warn!(shard, "no live peer of this shard to copy from yet");
            Duration::from_secs(2)
        }
        Err(e) => {
            tracing::warn!(shard, error = %e, "bootstrap request");
            Duration::from_secs(1)
        }
    };
    tokio::time::sleep(pause).await;
    None
}

/// Whether an offer is one this replica may take: its session on the shard's subject, and
/// nothing but gallery files.
fn check_offer(shard: u32, offer: &pb::BootstrapOffer) -> Result<(), BootstrapError> {
    if !offer
        .subject
        .starts_with(&request_subject(RequestKind::Bootstrap, shard))
    {
        return Err(BootstrapError::ForeignSubject);
    }
    if offer.files.is_empty() {
        return Err(BootstrapError::Empty);
    }
    match offer
        .files
        .iter()
        .find(|f| !Gallery::is_gallery_file(&f.name))
    {
        Some(f) => Err(BootstrapError::NotAGalleryFile(f.name.clone())),
        None => Ok(()),
    }
}

/// Copies the offered files into the store's incoming directory (`<gallery>.incoming`), then
/// has the store install them.
/// Returns the bytes copied.
async fn download(
    config: &ReplicaConfig,
    client: &Client,
    offer: &pb::BootstrapOffer,
) -> Result<u64, ClusterError> {
    let shard = config.shard;
    let failed = |source| ClusterError::Bootstrap { shard, source };
    check_offer(shard, offer).map_err(failed)?;
    let gallery = &config.gallery.dir;
    let inc = incoming_path(gallery);
    if inc.exists() {
        std::fs::remove_dir_all(&inc).map_err(|e| ClusterError::io("removing", &inc, e))?;
    }
    std::fs::create_dir_all(&inc).map_err(|e| ClusterError::io("creating", &inc, e))?;
    let mut total = 0u64;
    for f in &offer.files {
        total += copy_file(client, offer, f, &inc.join(&f.name), shard).await?;
    }
    std::fs::File::open(&inc)
        .and_then(|d| d.sync_all())
        .map_err(|e| ClusterError::io("syncing directory", &inc, e))?;
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
    store::install(&inc, gallery).map_err(|e| failed(BootstrapError::Install(e)))?;
    Ok(total)
}

/// Copies one offered file to `path`, checking its size and hash. Returns its size.
async fn copy_file(
    client: &Client,
    offer: &pb::BootstrapOffer,
    f: &pb::StoreFile,
    path: &Path,
    shard: u32,
) -> Result<u64, ClusterError> {
    let failed = |source| ClusterError::Bootstrap { shard, source };
    let mut out = std::fs::File::create(path).map_err(|e| ClusterError::io("creating", path, e))?;
    let mut hasher = Sha256::new();
    let mut offset = 0u64;
    loop {
        let chunk = fetch_chunk(client, &offer.subject, &f.name, offset)
            .await
            .map_err(failed)?;
        out.write_all(&chunk.data)
            .map_err(|e| ClusterError::io("writing", path, e))?;
        hasher.update(&chunk.data);
        offset += chunk.data.len() as u64;
        if offset > f.size {
            return Err(failed(BootstrapError::TooLong(f.name.clone())));
        }
        if chunk.eof || f.size == 0 {
            if offset != f.size || (f.size > 0 && chunk.sha256 != hasher.finalize().to_vec()) {
                return Err(failed(BootstrapError::Damaged(f.name.clone())));
            }
            break;
        }
    }
    out.sync_all()
        .map_err(|e| ClusterError::io("syncing", path, e))?;
    Ok(f.size)
}

/// One chunk of `file` from `offset`, from the session on `subject`.
async fn fetch_chunk(
    client: &Client,
    subject: &str,
    file: &str,
    offset: u64,
) -> Result<pb::Chunk, BootstrapError> {
    let req = pb::ChunkRequest {
        file: file.to_owned(),
        offset,
        done: false,
    };
    let m = client
        .send_request(
            subject.to_owned(),
            Request::new()
                .payload(req.encode_to_vec().into())
                .timeout(Some(CHUNK_TIMEOUT)),
        )
        .await
        .map_err(|source| BootstrapError::Request {
            file: file.to_owned(),
            source,
        })?;
    let chunk = pb::Chunk::decode(&m.payload[..]).map_err(|source| BootstrapError::Decode {
        what: "chunk",
        source,
    })?;
    if !chunk.error.is_empty() {
        return Err(BootstrapError::Peer(chunk.error));
    }
    if chunk.data.is_empty() && !chunk.eof {
        return Err(BootstrapError::EmptyChunk(file.to_owned()));
    }
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer_of(names: &[&str]) -> pb::BootstrapOffer {
        pb::BootstrapOffer {
            subject: "abis.bootstrap.3.session.x".into(),
            files: names
                .iter()
                .map(|n| pb::StoreFile {
                    name: n.to_string(),
                    size: 1,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_gallery_files_of_the_shard_are_accepted() {
        assert!(check_offer(3, &offer_of(&["meta.abis"])).is_ok());
        assert!(matches!(
            check_offer(4, &offer_of(&["meta.abis"])),
            Err(BootstrapError::ForeignSubject)
        ));
        assert!(matches!(
            check_offer(3, &offer_of(&[])),
            Err(BootstrapError::Empty)
        ));
        for bad in ["LOCK", "../meta.abis", "seg-1/../../x.seg", "wal-1.log/x"] {
            assert!(
                matches!(
                    check_offer(3, &offer_of(&["meta.abis", bad])),
                    Err(BootstrapError::NotAGalleryFile(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn leftovers_of_copies_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let gallery = dir.path().join("gallery");
        std::fs::create_dir_all(&gallery).unwrap();
        std::fs::write(gallery.join("meta.abis"), b"kept").unwrap();
        std::fs::create_dir_all(incoming_path(&gallery)).unwrap();
        std::fs::create_dir_all(copy_dir(&gallery, "abc")).unwrap();
        recover_dirs(&gallery).unwrap();
        assert!(!incoming_path(&gallery).exists() && !copy_dir(&gallery, "abc").exists());
        assert_eq!(std::fs::read(gallery.join("meta.abis")).unwrap(), b"kept");
    }
}
