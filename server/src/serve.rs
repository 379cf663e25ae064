//! `abis serve`: the gRPC server, with health and reflection, and graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use abis_engine::face::FaceEngine;
use abis_engine::finger::FingerExtractor;
use abis_engine::gallery::{FaceScorer, Gallery};
use abis_engine::image::Limits;
use abis_engine::matcher::Matcher;
use abis_engine::store::encryption::Keyring;
use abis_engine::store::{Store, StoreConfig};
use abis_proto::v1::abis_server::AbisServer;
use anyhow::Context;
use clap::Args;
use tonic_health::ServingStatus;

use crate::audit::{AuditOptions, Auditor};
use crate::auth::Authenticator;
use crate::cli::ModelsDir;
use crate::config::Config;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::service::{AbisService, Engines};

/// Largest gRPC message accepted: a request with ten 500 ppi fingerprints and a face photo fits
/// well within it; anything larger is refused before it is read into memory.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

#[derive(Args)]
pub struct ServeArgs {
    /// Configuration file over the built-in defaults; ABIS__SECTION__KEY variables override both.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory of the gallery (overrides server.data_dir; created if missing).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Address to listen on (overrides server.listen).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

pub fn run(args: ServeArgs, models: &ModelsDir) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(d) = args.data {
        config.server.data_dir = d;
    }
    if let Some(l) = args.listen {
        config.server.listen = l;
    }
    // Re-checked after the command-line overrides (exposure rules depend on the address).
    config.validate()?;
    crate::logging::init(&config.logging)?;
    let models = ModelsDir(models.0.clone().or_else(|| config.models.dir.clone()));
    let data = config.server.data_dir.clone();
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let runtime = models.open_runtime()?;
    let finger = Arc::new(FingerExtractor::new(&runtime, Limits::default())?);
    let face = match FaceEngine::open(&runtime, Limits::default()) {
        Ok(f) => Some(Arc::new(f)),
        Err(e) => {
            tracing::warn!(error = %e, "face models unavailable: face samples will be refused");
            None
        }
    };
    let face_dim = face
        .as_ref()
        .map_or(DEFAULT_FACE_DIM, |f| f.embedding_dimension());
    let mut store_config = StoreConfig::new(face_dim);
    if let Some(file) = &config.store.encryption_key_file {
        let keys = Keyring::load(file)?;
        tracing::info!(active_key = %keys.active_id(), "gallery encrypted at rest");
        store_config.encryption = Some(keys);
    }
    let started = std::time::Instant::now();
    let (store, report) = Store::open(data.join("gallery"), store_config)
        .with_context(|| format!("opening the gallery in {}", data.display()))?;
    tracing::info!(
        records = store.count(),
        replayed = report.entries_replayed,
        torn_bytes = report.torn_bytes_dropped,
        ms = started.elapsed().as_millis() as u64,
        "gallery open"
    );
    let scorer: Option<FaceScorer> =
        face.as_ref()
            .and_then(|f| f.calibration().cloned())
            .map(|c| {
                let scorer: FaceScorer = Arc::new(move |cos| c.score(cos));
                scorer
            });
    let gallery = Arc::new(
        Gallery::new(store, Matcher::new(), scorer).with_search(config.search.to_engine()),
    );
    let engines = Arc::new(Engines { finger, face });
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(config, engines, gallery))
}

/// Embedding size of the default face model (MobileFaceNet), used to create a gallery when the
/// face models are not installed.
const DEFAULT_FACE_DIM: usize = 192;

async fn serve(config: Config, engines: Arc<Engines>, gallery: Arc<Gallery>) -> anyhow::Result<()> {
    let audit_dir = config.audit_dir();
    let auditor = Auditor::open(
        &audit_dir,
        AuditOptions {
            max_file_bytes: config.audit.max_file_bytes,
        },
    )
    .with_context(|| format!("opening the audit log in {}", audit_dir.display()))?;
    let mut authenticator = Authenticator::from_config(&config)?;
    if config.audit.record_denials {
        authenticator = authenticator.with_audit(auditor.clone());
    }
    if authenticator.is_open_mode() {
        tracing::warn!(
            "no API keys or client CA: loopback-only development mode, every caller has every role"
        );
    }
    let authenticator = Arc::new(authenticator);
    let timeout = Duration::from_secs(config.server.request_timeout_s);
    let limiter = Arc::new(Limiter::new(&config.limits).with_max_wait(timeout));
    let metrics = Metrics::new();
    {
        let l = Arc::clone(&limiter);
        metrics.set_queue_depth_source(move || l.queued());
    }
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if config.metrics.enabled {
        let l = tokio::net::TcpListener::bind(config.metrics.listen)
            .await
            .with_context(|| format!("binding metrics.listen {}", config.metrics.listen))?;
        tokio::spawn(Arc::clone(&metrics).serve_on(l, async {
            let _ = metrics_stopped.await;
        }));
    }

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // Requests are answered at once, but the service reports SERVING only once every record
    // is prepared for matching: until then the first searches would pay for it.
    health_reporter
        .set_not_serving::<AbisServer<AbisService>>()
        .await;
    {
        let (gallery, reporter) = (Arc::clone(&gallery), health_reporter.clone());
        tokio::spawn(async move {
            let t0 = std::time::Instant::now();
            match tokio::task::spawn_blocking(move || gallery.warm()).await {
                Ok(Ok(records)) => {
                    tracing::info!(
                        records,
                        ms = t0.elapsed().as_millis() as u64,
                        "gallery prepared for matching"
                    );
                    reporter.set_serving::<AbisServer<AbisService>>().await;
                }
                Ok(Err(e)) => tracing::error!(error = %e, "preparing the gallery failed"),
                Err(e) => tracing::error!(error = %e, "preparing the gallery panicked"),
            }
        });
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(abis_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let abis = AbisServer::new(AbisService::new(
        engines,
        Arc::clone(&gallery),
        auditor,
        Arc::clone(&metrics),
    ))
    .max_decoding_message_size(config.server.max_message_bytes)
    .max_encoding_message_size(config.server.max_message_bytes);

    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(%local, "abis serving");
    // A line on stdout that scripts and tests can wait for.
    println!("listening on {local}");

    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let closing = Arc::clone(&limiter);
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: no longer serving, draining requests");
        health_reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        health_reporter
            .set_not_serving::<AbisServer<AbisService>>()
            .await;
        // Queued requests get UNAVAILABLE; running ones finish.
        closing.close();
        let _ = draining_tx.send(());
    };
    let mut builder = tonic::transport::Server::builder().timeout(timeout);
    if let Some(tls) = crate::tls::server_config(&config.tls)? {
        builder = builder.tls_config(tls)?;
    }
    let server = builder
        // Outermost: counts everything, refusals included.
        .layer(metrics.layer())
        // UNAUTHENTICATED / PERMISSION_DENIED; the caller goes into the request extensions.
        .layer(authenticator.layer())
        // RESOURCE_EXHAUSTED when a queue is full, DEADLINE_EXCEEDED while queued.
        .layer(limiter.layer())
        .add_service(health_service)
        .add_service(reflection)
        .add_service(abis)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        );
    tokio::pin!(server);
    let grace = Duration::from_secs(config.server.shutdown_grace_s);
    tokio::select! {
        r = &mut server => r?,
        _ = async {
            if draining_rx.await.is_ok() {
                tokio::time::sleep(grace).await
            } else {
                std::future::pending::<()>().await
            }
        } => {
            tracing::warn!("drain time limit reached: abandoning in-flight requests");
        }
    }
    let _ = stop_metrics.send(());
    // Every acknowledged write is already durable in the log; a checkpoint makes the next start
    // faster (less to replay).
    match Arc::try_unwrap(gallery) {
        Ok(gallery) => {
            if let Err(e) = gallery.into_store().close() {
                tracing::warn!(error = %e, "checkpoint at shutdown failed; the log will be replayed at the next start");
            }
        }
        Err(_) => tracing::warn!(
            "requests still running at exit; the log will be replayed at the next start"
        ),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
