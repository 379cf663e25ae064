//! `abis serve`: assembles the engines, the gallery and the security layers into the gRPC
//! server, with health and reflection, and shuts it down gracefully.
//!
//! Read [`run`] top to bottom. By `[cluster] role`:
//! - **standalone**: open the engines, open the gallery, then serve: security layers, health
//!   (NOT_SERVING until the gallery is prepared), listen, drain on SIGTERM (gRPC, then the
//!   MOSIP adapter's requests in hand), checkpoint;
//! - **router**: the same service over a cluster (`abis_cluster::Router`): no local gallery;
//!   writes go to the log, searches to the shards' replicas; it also trims the log;
//! - **replica**: no models and no API: a shard replica (`abis_cluster::replica`) with its own
//!   store, and gRPC health on `server.listen` (SERVING once it answers its shard's requests).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use abis_cluster::retention::RetentionConfig;
use abis_cluster::{GalleryOptions, LocalShard, ReplicaConfig, ReplicaState, Router, RouterConfig};
use abis_engine::face::{Calibration, FaceEngine, FaceManifest};
use abis_engine::finger::FingerExtractor;
use abis_engine::gallery::FaceScorer;
use abis_engine::image::Limits;
use abis_engine::model::{Runtime, RuntimeConfig};
use abis_engine::store::encryption::Keyring;
use abis_engine::store::StoreConfig;
use abis_proto::v1::abis_server::AbisServer;
use abis_proto::v1::adjudication_server::AdjudicationServer;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::adjudication::page::Page;
use crate::adjudication::{AdjudicationService, CaseStore, Cases};
use crate::audit::{AuditOptions, Auditor};
use crate::auth::{cert_role_map, Authenticator, KeyStore};
use crate::config::{ClusterRole, Config};
use crate::images::ImageStore;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::service::call::CallLayer;
use crate::service::{AbisService, Backend, Engines, LocalBackend, RoutedBackend};

/// Embedding size of the default face model (MobileFaceNet), used to create a gallery when the
/// face models are not installed.
const DEFAULT_FACE_DIM: usize = 192;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Logging(#[from] crate::logging::LoggingError),
    #[error("creating the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Model(#[from] abis_engine::model::ModelError),
    #[error(transparent)]
    Finger(#[from] abis_engine::finger::FingerError),
    #[error("[document] {0}")]
    TrustStore(#[from] abis_icao::TrustError),
    #[error(transparent)]
    Dedup(#[from] crate::dedup::DedupError),
    #[error(transparent)]
    KeyFile(#[from] abis_engine::store::encryption::KeyFileError),
    #[error("opening the gallery in {path}: {source}")]
    Gallery {
        path: PathBuf,
        #[source]
        source: abis_engine::gallery::GalleryError,
    },
    #[error("opening the audit log in {path}: {source}")]
    Audit {
        path: PathBuf,
        #[source]
        source: crate::audit::AuditError,
    },
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error(transparent)]
    Cases(#[from] crate::adjudication::CaseStoreError),
    #[error(transparent)]
    ImageStore(#[from] crate::images::ImageStoreError),
    #[error("settling the image store: {0}")]
    Images(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("binding {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Cluster(#[from] abis_cluster::ClusterError),
    #[error(transparent)]
    Mosip(#[from] crate::mosip::adapter::AdapterError),
}

/// Where the service's records live.
enum Records {
    Local(LocalShard),
    Routed(Arc<Router>),
}

/// Serves `config` until SIGTERM or Ctrl-C. `models` overrides `models.dir`.
pub fn run(config: Config, models: Option<PathBuf>) -> Result<(), ServeError> {
    config.validate()?;
    crate::logging::init(&config.logging)?;
    let data = config.server.data_dir.clone();
    std::fs::create_dir_all(&data).map_err(|source| ServeError::DataDir {
        path: data.clone(),
        source,
    })?;
    let runtime_config = match models.or_else(|| config.models.dir.clone()) {
        Some(dir) => RuntimeConfig::for_models_dir(&dir),
        None => RuntimeConfig::discover(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    match config.cluster.role {
        ClusterRole::Standalone => {
            let engines = open_engines(&Runtime::open(runtime_config)?)?;
            let gallery = open_gallery(&config, &engines)?;
            runtime.block_on(serve(config, engines, Records::Local(gallery)))
        }
        ClusterRole::Router => {
            let engines = open_engines(&Runtime::open(runtime_config)?)?;
            runtime.block_on(async {
                let router = open_router(&config, &engines).await?;
                serve(config, engines, Records::Routed(Arc::new(router))).await
            })
        }
        ClusterRole::Replica => runtime.block_on(serve_replica(config, &runtime_config)),
    }
}

/// The gallery key of `[store] encryption_key_file`, if any.
fn gallery_keys(config: &Config) -> Result<Option<Keyring>, ServeError> {
    match &config.store.encryption_key_file {
        Some(file) => {
            let keys = Keyring::load(file)?;
            tracing::info!(active_key = %keys.active_id(), "gallery encrypted at rest");
            Ok(Some(keys))
        }
        None => Ok(None),
    }
}

/// Connects to the cluster as a router.
async fn open_router(config: &Config, engines: &Engines) -> Result<Router, ServeError> {
    let node = config.server.node_name();
    let c = &config.cluster;
    let client = c.nats(&node).connect().await?;
    let face_dim = engines
        .face
        .as_ref()
        .map_or(DEFAULT_FACE_DIM, |f| f.embedding_dimension());
    let router = Router::open(
        client,
        RouterConfig {
            node,
            keys: gallery_keys(config)?,
            face_dim,
            request_timeout: Duration::from_millis(c.request_timeout_ms),
            attempt_timeout: Duration::from_millis(c.attempt_timeout_ms),
            write_timeout: Duration::from_millis(c.write_timeout_ms),
        },
    )
    .await?;
    tracing::info!(shards = router.spec().shards, "cluster router connected");
    Ok(router)
}

/// The face embedding dimension and score calibration the manifest names, without loading any
/// model: a replica scores stored faces but never extracts one.
fn face_model(runtime_config: &RuntimeConfig) -> (usize, Option<FaceScorer>) {
    let found = FaceManifest::load(&runtime_config.manifest).and_then(|m| {
        let model = m.model(&m.face.embedder)?;
        let dim = model.outputs.first().and_then(|o| o.dimension);
        let calibration = model
            .calibration
            .as_ref()
            .map(Calibration::from_spec)
            .transpose()?;
        Ok((dim, calibration))
    });
    match found {
        Ok((dim, calibration)) => (
            dim.unwrap_or(DEFAULT_FACE_DIM),
            calibration.map(|c| Arc::new(move |cos| c.score(cos)) as FaceScorer),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "face model unknown: faces are stored but not scored");
            (DEFAULT_FACE_DIM, None)
        }
    }
}

/// Runs a shard replica with gRPC health on `server.listen`, until SIGTERM or Ctrl-C.
async fn serve_replica(config: Config, runtime_config: &RuntimeConfig) -> Result<(), ServeError> {
    let node = config.server.node_name();
    let shard = config.cluster.shard.unwrap_or_default();
    let (face_dim, face_scorer) = face_model(runtime_config);
    let gallery = gallery_options(&config, face_dim, face_scorer)?;
    let client = config.cluster.nats(&node).connect().await?;
    let replica = ReplicaConfig {
        node,
        shard,
        gallery,
        heartbeat: Duration::from_millis(config.cluster.heartbeat_ms),
        max_batch: 512,
        max_searches: 2,
    };
    let (state_tx, mut state_rx) = tokio::sync::watch::channel(ReplicaState::Starting);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut task = tokio::spawn(abis_cluster::replica::run(
        replica, client, state_tx, stop_rx,
    ));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let reporter = health_reporter.clone();
    tokio::spawn(async move {
        while state_rx.changed().await.is_ok() {
            let status = if *state_rx.borrow() == ReplicaState::Serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
        }
    });
    let (listener, local) = bind("server.listen", config.server.listen).await?;
    tracing::info!(%local, shard, "abis replica: health on");
    // A line on stdout that scripts and tests can wait for.
    println!("listening on {local}");
    let (stop_health, health_stopped) = tokio::sync::oneshot::channel::<()>();
    let health = tonic::transport::Server::builder()
        .add_service(health_service)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async {
                let _ = health_stopped.await;
            },
        );
    let health = tokio::spawn(health);
    let result = tokio::select! {
        r = &mut task => r,
        _ = shutdown_signal() => {
            tracing::info!("shutting down: leaving the queue groups, checkpointing");
            let _ = stop_tx.send(true);
            (&mut task).await
        }
    };
    let _ = stop_health.send(());
    let _ = health.await;
    match result {
        Ok(r) => r.map_err(ServeError::from),
        Err(_) => Err(ServeError::Cluster(abis_cluster::ClusterError::Task(
            "the replica",
        ))),
    }
}

/// The CSCAs and CRLs of `[document] trust_store`, when configured.
fn open_trust_store(config: &Config) -> Result<Option<Arc<abis_icao::TrustStore>>, ServeError> {
    let Some(dir) = &config.document.trust_store else {
        return Ok(None);
    };
    let store = abis_icao::TrustStore::load_dir(dir)?;
    tracing::info!(
        cscas = store.cscas().len(),
        crls = store.crls().len(),
        "document trust store loaded"
    );
    Ok(Some(Arc::new(store)))
}

/// The fingerprint extractor, and the face pipeline when its models are installed.
fn open_engines(runtime: &Arc<Runtime>) -> Result<Arc<Engines>, ServeError> {
    let finger = Arc::new(FingerExtractor::new(runtime, Limits::default())?);
    let face = match FaceEngine::open(runtime, Limits::default()) {
        Ok(f) => Some(Arc::new(f)),
        Err(e) => {
            tracing::warn!(error = %e, "face models unavailable: face samples will be refused");
            None
        }
    };
    Ok(Arc::new(Engines { finger, face }))
}

/// Where the gallery lives (`<data>/gallery`), sealed with the configured key, and how it
/// searches: the same for a single node and a replica.
fn gallery_options(
    config: &Config,
    face_dim: usize,
    face_scorer: Option<FaceScorer>,
) -> Result<GalleryOptions, ServeError> {
    let mut store = StoreConfig::new(face_dim);
    store.memtable_max_records = config.store.memtable_max_records;
    store.merge_policy = Some(config.store.merge_policy());
    store.merge_write_bytes_per_s = config.store.merge_write_bytes_per_s();
    store.checkpoint_threads = config.store.checkpoint_threads;
    store.background_nice = config.store.background_nice;
    store.encryption = gallery_keys(config)?;
    store.encrypted_cache_bytes =
        usize::try_from(config.store.encrypted_cache_mib << 20).unwrap_or(usize::MAX);
    Ok(GalleryOptions {
        dir: config.server.data_dir.join("gallery"),
        store,
        search: config.search.to_engine(),
        face_scorer,
    })
}

/// The gallery of a single node, recovered from its log.
fn open_gallery(config: &Config, engines: &Engines) -> Result<LocalShard, ServeError> {
    let face_dim = engines
        .face
        .as_ref()
        .map_or(DEFAULT_FACE_DIM, |f| f.embedding_dimension());
    let scorer: Option<FaceScorer> = engines
        .face
        .as_ref()
        .and_then(|f| f.calibration().cloned())
        .map(|c| Arc::new(move |cos| c.score(cos)) as FaceScorer);
    let options = gallery_options(config, face_dim, scorer)?;
    LocalShard::open("gallery", &options).map_err(|source| ServeError::Gallery {
        path: options.dir.clone(),
        source,
    })
}

/// Who may call: the keys file and the client certificate names of the configuration, with
/// denials recorded in the audit log when configured.
fn authenticator(config: &Config, auditor: &Auditor) -> Result<Arc<Authenticator>, ServeError> {
    let keys = config
        .auth
        .keys_file
        .as_deref()
        .map(KeyStore::load)
        .transpose()?;
    let mut authenticator = Authenticator::new(
        keys,
        config.tls.client_ca.is_some(),
        cert_role_map(&config.tls.client_cert_roles),
    );
    if config.audit.record_denials {
        authenticator = authenticator.with_audit(auditor.clone());
    }
    if authenticator.is_open_mode() {
        tracing::warn!(
            "no API keys or client CA: loopback-only development mode, every caller has every role"
        );
    }
    Ok(Arc::new(authenticator))
}

/// Serves Prometheus text on `metrics.listen` when enabled, until `stop` resolves.
async fn start_metrics(
    config: &Config,
    metrics: &Arc<Metrics>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), ServeError> {
    if !config.metrics.enabled {
        return Ok(());
    }
    let (listener, _) = bind("metrics.listen", config.metrics.listen).await?;
    tokio::spawn(Arc::clone(metrics).serve_on(listener, async {
        let _ = stop.await;
    }));
    Ok(())
}

/// The directories beside the gallery that a backup carries and a restore puts back: the
/// adjudication cases and the kept images (each only when it exists).
pub fn backup_trees(data_dir: &std::path::Path) -> Vec<abis_engine::store::backup::Tree> {
    ["cases", "images"]
        .into_iter()
        .map(|name| abis_engine::store::backup::Tree {
            name: name.into(),
            dir: data_dir.join(name),
        })
        .collect()
}

/// The adjudication cases (`<data>/cases`).
fn open_cases(config: &Config, auditor: &Auditor) -> Result<Arc<Cases>, ServeError> {
    // Cases hold minutiae: sealed with the gallery's key like the gallery's own files.
    let store = CaseStore::open(&config.server.data_dir.join("cases"), gallery_keys(config)?)?;
    Ok(Cases::new(store, auditor.clone()))
}

/// The image store (`<data>/images`) with `[store] keep_images`; what a crash left between an
/// image file and the gallery is settled against the gallery first.
async fn open_images(
    config: &Config,
    backend: &Arc<dyn Backend>,
) -> Result<Option<Arc<ImageStore>>, ServeError> {
    if !config.store.keep_images {
        return Ok(None);
    }
    let dir = config.server.data_dir.join("images");
    let store = ImageStore::open(&dir, gallery_keys(config)?)?;
    let (mut kept, mut dropped) = (0, 0);
    for leftover in store.leftovers()? {
        let id = leftover.images.reference_id.clone();
        let stored = backend
            .get(id)
            .await
            .map_err(|s| ServeError::Images(s.message().to_string()))?;
        match store.settle(leftover, stored.as_ref())? {
            true => kept += 1,
            false => dropped += 1,
        }
    }
    if kept + dropped > 0 {
        tracing::info!(kept, dropped, "image store: settled files a crash left");
    }
    Ok(Some(Arc::new(store)))
}

/// With `[adjudication] listen`, serves the examiner's page until `stop` resolves.
async fn start_page(
    config: &Config,
    cases: &Arc<Cases>,
    images: Option<Arc<ImageStore>>,
    authenticator: &Arc<Authenticator>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), ServeError> {
    let Some(addr) = config.adjudication.listen else {
        return Ok(());
    };
    let tls = crate::tls::page_acceptor(&config.tls)?;
    let (listener, local) = bind("adjudication.listen", addr).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The second line scripts and tests can wait for, after "listening on".
    println!("adjudication page on {scheme}://{local}");
    let lifetime = Duration::from_secs(config.adjudication.session_minutes.max(1) * 60);
    let page = Page::new(
        Arc::clone(cases),
        images,
        Arc::clone(authenticator),
        lifetime,
        tls.is_some(),
    );
    tokio::spawn(page.serve(listener, tls, async {
        let _ = stop.await;
    }));
    Ok(())
}

/// Binds the listener of configuration key `what`; returns it with the address it got (the
/// port chosen when the configuration says 0).
async fn bind(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(tokio::net::TcpListener, SocketAddr), ServeError> {
    let err = |source| ServeError::Bind { what, addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}

/// Prepares every stored record for matching in the background and reports SERVING when done.
/// Requests are answered meanwhile; until then the first searches would pay for preparation.
fn warm_then_serve(gallery: &LocalShard, reporter: &HealthReporter) {
    let (gallery, reporter) = (gallery.clone(), reporter.clone());
    tokio::spawn(async move {
        if gallery.prepare("gallery").await {
            reporter.set_serving::<AbisServer<AbisService>>().await;
        }
    });
}

async fn serve(config: Config, engines: Arc<Engines>, records: Records) -> Result<(), ServeError> {
    let audit_dir = config.audit_dir();
    let auditor = Auditor::open(
        &audit_dir,
        AuditOptions {
            max_file_bytes: config.audit.max_file_bytes,
        },
    )
    .map_err(|source| ServeError::Audit {
        path: audit_dir,
        source,
    })?;
    let authenticator = authenticator(&config, &auditor)?;
    let timeout = Duration::from_secs(config.server.request_timeout_s);
    let limiter = Arc::new(Limiter::new(&config.limits).with_max_wait(timeout));
    let metrics = Metrics::new();
    {
        let l = Arc::clone(&limiter);
        metrics.set_queue_depth_source(move || l.queued());
    }
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    start_metrics(&config, &metrics, metrics_stopped).await?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_not_serving::<AbisServer<AbisService>>()
        .await;
    let (stop_retention, retention_stopped) = tokio::sync::watch::channel(false);
    let backend: Arc<dyn Backend> = match &records {
        Records::Local(gallery) => {
            warm_then_serve(gallery, &health_reporter);
            Arc::new(
                LocalBackend::new(gallery.clone(), config.server.node_name())
                    .with_backup_trees(backup_trees(&config.server.data_dir)),
            )
        }
        Records::Routed(router) => {
            let c = &config.cluster;
            if c.retention {
                tokio::spawn(abis_cluster::retention::run(
                    router.catalog().clone(),
                    RetentionConfig {
                        interval: Duration::from_secs(c.retention_interval_s),
                        min_age: Duration::from_secs(c.retention_min_age_s),
                    },
                    retention_stopped,
                ));
            }
            health_reporter
                .set_serving::<AbisServer<AbisService>>()
                .await;
            Arc::new(RoutedBackend::new(Arc::clone(router)))
        }
    };
    // Both reflection versions: grpcurl asks v1, older tools and Python's grpcio-reflection
    // client ask v1alpha.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(abis_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder().build_v1()?;
    let reflection_v1alpha = reflection_builder().build_v1alpha()?;
    let trust_store = open_trust_store(&config)?;
    let cases = open_cases(&config, &auditor)?;
    let images = open_images(&config, &backend).await?;
    let dedup = match &records {
        Records::Local(shard) => Some(crate::dedup::DedupJobs::open(
            &config.server.data_dir,
            Arc::clone(shard.gallery()),
            config.dedup.clone(),
            Some(Arc::clone(&cases)),
        )?),
        Records::Routed(_) => None,
    };
    let service = Arc::new(
        AbisService::new(engines, backend, auditor, Arc::clone(&metrics))
            .with_trust_store(trust_store)
            .with_dedup(dedup)
            .with_cases(Arc::clone(&cases), config.adjudication.open_cases)
            .with_images(images.clone()),
    );
    let adjudication = AdjudicationServer::new(AdjudicationService::new(Arc::clone(&cases)))
        .max_encoding_message_size(config.server.max_message_bytes);
    // MOSIP's queue adapter calls the same service in-process (see `crate::mosip`).
    let mosip = match config.mosip.enabled {
        true => Some(crate::mosip::spawn(
            Arc::clone(&service),
            &config.mosip,
            &config.server.data_dir,
        )?),
        false => None,
    };
    let abis = AbisServer::from_arc(service)
        .max_decoding_message_size(config.server.max_message_bytes)
        .max_encoding_message_size(config.server.max_message_bytes);

    let (listener, local) = bind("server.listen", config.server.listen).await?;
    tracing::info!(%local, "abis serving");
    // A line on stdout that scripts and tests can wait for.
    println!("listening on {local}");
    let (stop_page, page_stopped) = tokio::sync::oneshot::channel::<()>();
    start_page(&config, &cases, images, &authenticator, page_stopped).await?;

    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let closing = Arc::clone(&limiter);
    let stop_mosip = mosip.as_ref().map(crate::mosip::Adapter::stopper);
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: no longer serving, draining requests");
        if let Some(stop) = stop_mosip {
            stop.stop();
        }
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
        // Innermost: the call's deadline down to the backend, who served it up to the audit.
        .layer(CallLayer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(abis)
        .add_service(adjudication)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        );
    drain(server, draining_rx, config.server.shutdown_grace_s).await?;
    if let Some(adapter) = mosip {
        // Stopped at the signal; what it holds finishes within the same grace, counted from
        // the signal.
        let grace = Duration::from_secs(config.server.shutdown_grace_s);
        if !adapter.drain(grace).await {
            tracing::warn!("drain time limit reached: MOSIP requests in hand will be redelivered");
        }
    }
    let _ = stop_metrics.send(());
    let _ = stop_page.send(());
    let _ = stop_retention.send(true);
    if let Records::Local(gallery) = records {
        // Requests still running after the drain are abandoned: the log is replayed instead.
        gallery.close(Duration::ZERO).await;
    }
    Ok(())
}

/// Runs the server until it stops; once draining has begun, waits at most `grace_s` for
/// in-flight requests.
async fn drain(
    server: impl std::future::Future<Output = Result<(), tonic::transport::Error>>,
    draining: tokio::sync::oneshot::Receiver<()>,
    grace_s: u64,
) -> Result<(), ServeError> {
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r?,
        _ = async {
            if draining.await.is_ok() {
                tokio::time::sleep(Duration::from_secs(grace_s)).await
            } else {
                std::future::pending::<()>().await
            }
        } => {
            tracing::warn!("drain time limit reached: abandoning in-flight requests");
        }
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
