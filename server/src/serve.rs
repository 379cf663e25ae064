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
use abis_engine::store::{Store, StoreConfig};
use abis_proto::v1::abis_server::AbisServer;
use anyhow::Context;
use clap::Args;
use tonic_health::ServingStatus;

use crate::cli::ModelsDir;
use crate::service::{AbisService, Engines};

/// Largest gRPC message accepted: a request with ten 500 ppi fingerprints and a face photo fits
/// well within it; anything larger is refused before it is read into memory.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

#[derive(Args)]
pub struct ServeArgs {
    /// Data directory of the gallery (created if missing).
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
}

pub fn run(args: ServeArgs, models: &ModelsDir) -> anyhow::Result<()> {
    init_logging();
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("creating {}", args.data.display()))?;
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
    let started = std::time::Instant::now();
    let (store, report) = Store::open(args.data.join("gallery"), StoreConfig::new(face_dim))
        .with_context(|| format!("opening the gallery in {}", args.data.display()))?;
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
    let gallery = Arc::new(Gallery::new(store, Matcher::new(), scorer));
    let engines = Arc::new(Engines { finger, face });
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args, engines, gallery))
}

/// Embedding size of the default face model (MobileFaceNet), used to create a gallery when the
/// face models are not installed.
const DEFAULT_FACE_DIM: usize = 192;

async fn serve(
    args: ServeArgs,
    engines: Arc<Engines>,
    gallery: Arc<Gallery>,
) -> anyhow::Result<()> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AbisServer<AbisService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(abis_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let abis = AbisServer::new(AbisService::new(engines, Arc::clone(&gallery)))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(%local, data = %args.data.display(), "abis serving");
    // A line on stdout that scripts and tests can wait for.
    println!("listening on {local}");

    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: no longer serving, draining requests");
        health_reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        health_reporter
            .set_not_serving::<AbisServer<AbisService>>()
            .await;
    };
    tonic::transport::Server::builder()
        .timeout(Duration::from_secs(120))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(abis)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await?;
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

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ABIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
