//! Prometheus metrics: per-RPC request counts and latencies, gallery size, queue depth, WAL lag.
//!
//! Why: operators of a national service need to see load, errors and back-pressure before users
//! do. A small hand-rolled registry (a few counters, gauges and fixed-bucket histograms with a
//! bounded label set) keeps the dependency tree small; the text exposition format is simple and
//! served by hyper, which tonic already builds.
//!
//! - [`MetricsLayer`] (tower, for `Server::builder().layer(..)`) counts every gRPC call by RPC
//!   and final status code and times it to the end of the response stream. The code comes from
//!   the `grpc-status` header (trailers-only answers: errors, rejections) or trailer.
//! - Labels are bounded: RPC labels come from [`crate::access::rpc_label`] (unknown paths are
//!   `unknown`), codes are the 17 gRPC codes. No reference ids or other personal data, ever.
//! - Gauges are set by the engine ([`Metrics::set_gallery_size`], [`Metrics::set_wal_lag`]) or
//!   read at scrape time ([`Metrics::set_queue_depth_source`], e.g. from the limiter).
//! - [`Metrics::serve`] answers `GET /metrics` (HTTP/1.1) on its own listener, disabled by
//!   default (`metrics.enabled`), loopback by default.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;

use crate::access::{code_name, rpc_label};

/// Latency histogram bucket bounds, seconds.
const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

type QueueSource = Box<dyn Fn() -> Vec<(&'static str, u64)> + Send + Sync>;

/// The registry. Share it as `Arc<Metrics>`.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    in_flight: AtomicI64,
    gallery_size: Mutex<BTreeMap<String, u64>>,
    wal_lag: AtomicU64,
    queue_source: RwLock<Option<QueueSource>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Records one finished call.
    pub fn observe_rpc(&self, rpc: &'static str, code: tonic::Code, elapsed: Duration) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((rpc, code_name(code))).or_default() += 1;
        }
        if let Ok(mut m) = self.latency.lock() {
            m.entry(rpc).or_default().observe(elapsed.as_secs_f64());
        }
    }

    /// Records in the gallery, by modality (`finger`, `face`, or `all`).
    pub fn set_gallery_size(&self, modality: &str, records: u64) {
        if let Ok(mut m) = self.gallery_size.lock() {
            m.insert(modality.to_string(), records);
        }
    }

    /// WAL entries acknowledged but not yet in immutable segments.
    pub fn set_wal_lag(&self, entries: u64) {
        self.wal_lag.store(entries, Ordering::Relaxed);
    }

    /// A function read at every scrape giving the queued requests per RPC (the limiter's
    /// [`crate::limits::Limiter::queued`]).
    pub fn set_queue_depth_source<F>(&self, source: F)
    where
        F: Fn() -> Vec<(&'static str, u64)> + Send + Sync + 'static,
    {
        if let Ok(mut s) = self.queue_source.write() {
            *s = Some(Box::new(source));
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP abis_rpc_requests_total gRPC calls by RPC and final status code.\n");
        out.push_str("# TYPE abis_rpc_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((rpc, code), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "abis_rpc_requests_total{{rpc=\"{rpc}\",code=\"{code}\"}} {n}"
                );
            }
        }
        out.push_str(
            "# HELP abis_rpc_duration_seconds gRPC call latency to the end of the response.\n",
        );
        out.push_str("# TYPE abis_rpc_duration_seconds histogram\n");
        if let Ok(m) = self.latency.lock() {
            for (rpc, h) in m.iter() {
                for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                    let _ = writeln!(
                        out,
                        "abis_rpc_duration_seconds_bucket{{rpc=\"{rpc}\",le=\"{bound}\"}} {n}"
                    );
                }
                let _ = writeln!(
                    out,
                    "abis_rpc_duration_seconds_bucket{{rpc=\"{rpc}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "abis_rpc_duration_seconds_sum{{rpc=\"{rpc}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "abis_rpc_duration_seconds_count{{rpc=\"{rpc}\"}} {}",
                    h.count
                );
            }
        }
        out.push_str("# HELP abis_rpc_in_flight gRPC calls being answered now.\n");
        out.push_str("# TYPE abis_rpc_in_flight gauge\n");
        let _ = writeln!(
            out,
            "abis_rpc_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        out.push_str("# HELP abis_queue_depth Requests waiting for a concurrency slot, by RPC.\n");
        out.push_str("# TYPE abis_queue_depth gauge\n");
        if let Ok(source) = self.queue_source.read() {
            if let Some(source) = source.as_ref() {
                for (rpc, n) in source() {
                    let _ = writeln!(out, "abis_queue_depth{{rpc=\"{rpc}\"}} {n}");
                }
            }
        }
        out.push_str("# HELP abis_gallery_records Records in the gallery, by modality.\n");
        out.push_str("# TYPE abis_gallery_records gauge\n");
        if let Ok(m) = self.gallery_size.lock() {
            for (modality, n) in m.iter() {
                let modality: String = modality
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let _ = writeln!(out, "abis_gallery_records{{modality=\"{modality}\"}} {n}");
            }
        }
        out.push_str("# HELP abis_wal_lag_entries WAL entries not yet in immutable segments.\n");
        out.push_str("# TYPE abis_wal_lag_entries gauge\n");
        let _ = writeln!(
            out,
            "abis_wal_lag_entries {}",
            self.wal_lag.load(Ordering::Relaxed)
        );
        out
    }

    /// A tower layer recording every call.
    pub fn layer(self: &Arc<Self>) -> MetricsLayer {
        MetricsLayer {
            metrics: Arc::clone(self),
        }
    }

    /// Serves `GET /metrics` on an already bound listener until `shutdown` resolves.
    pub async fn serve_on(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                _ = &mut shutdown => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let metrics = Arc::clone(&self);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let metrics = Arc::clone(&metrics);
                        async move {
                            Ok::<_, Infallible>(metrics.respond(req.method(), req.uri().path()))
                        }
                    });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
            });
        }
    }

    fn respond(&self, method: &http::Method, path: &str) -> http::Response<Full<Bytes>> {
        let mut response = http::Response::new(Full::new(Bytes::new()));
        if path != "/metrics" {
            *response.status_mut() = http::StatusCode::NOT_FOUND;
            return response;
        }
        if method != http::Method::GET {
            *response.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
            return response;
        }
        *response.body_mut() = Full::new(Bytes::from(self.render()));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    }
}

/// Records a call once: at its status, or as CANCELLED if dropped unfinished.
struct Recorder {
    metrics: Arc<Metrics>,
    rpc: &'static str,
    start: Instant,
    done: bool,
}

impl Recorder {
    fn new(metrics: Arc<Metrics>, rpc: &'static str) -> Recorder {
        metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        Recorder {
            metrics,
            rpc,
            start: Instant::now(),
            done: false,
        }
    }

    fn finish(&mut self, code: tonic::Code) {
        if !self.done {
            self.done = true;
            self.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.metrics
                .observe_rpc(self.rpc, code, self.start.elapsed());
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled);
    }
}

fn status_code(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let v = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(tonic::Code::from_i32(v))
}

/// Tower layer: see the module docs.
#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, R> tower::Service<http::Request<B>> for MetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Body + Send + 'static,
{
    type Response = http::Response<MeteredBody<R>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let mut recorder =
            Recorder::new(Arc::clone(&self.metrics), rpc_label(request.uri().path()));
        let future = self.inner.call(request);
        Box::pin(async move {
            match future.await {
                Ok(response) => {
                    let recorder = match status_code(response.headers()) {
                        Some(code) => {
                            recorder.finish(code);
                            None
                        }
                        None => Some(recorder),
                    };
                    Ok(response.map(|inner| MeteredBody { inner, recorder }))
                }
                Err(e) => {
                    recorder.finish(tonic::Code::Unknown);
                    Err(e)
                }
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that records the call when its trailers (or its end) arrive.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        recorder: Option<Recorder>,
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Some(recorder) = this.recorder.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        recorder.finish(status_code(trailers).unwrap_or(tonic::Code::Unknown));
                    }
                }
                Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                    recorder.finish(tonic::Code::Unknown)
                }
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    async fn scrape(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn scrape_after_calls_shows_counters() {
        let metrics = Metrics::new();
        metrics.set_gallery_size("finger", 42);
        metrics.set_wal_lag(7);
        metrics.set_queue_depth_source(|| vec![("Identify", 3)]);

        // A real gRPC server with the layer, and the health service.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = listener.local_addr().unwrap();
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let layer = metrics.layer();
        tokio::spawn(async move {
            let _keep = reporter;
            tonic::transport::Server::builder()
                .layer(layer)
                .add_service(health)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = HealthClient::new(channel);
        for _ in 0..3 {
            client.check(HealthCheckRequest::default()).await.unwrap();
        }
        let missing = client
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(Arc::clone(&metrics).serve_on(listener, async {
            let _ = stopped.await;
        }));
        let text = scrape(addr, "/metrics").await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.contains("abis_rpc_requests_total{rpc=\"health\",code=\"OK\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("abis_rpc_requests_total{rpc=\"health\",code=\"NOT_FOUND\"} 1"),
            "{text}"
        );
        assert!(text.contains("abis_rpc_duration_seconds_count{rpc=\"health\"} 4"));
        assert!(text.contains("abis_rpc_duration_seconds_bucket{rpc=\"health\",le=\"+Inf\"} 4"));
        assert!(text.contains("abis_gallery_records{modality=\"finger\"} 42"));
        assert!(text.contains("abis_wal_lag_entries 7"));
        assert!(text.contains("abis_queue_depth{rpc=\"Identify\"} 3"));
        assert!(text.contains("abis_rpc_in_flight 0"));
        assert!(scrape(addr, "/other").await.starts_with("HTTP/1.1 404"));
        stop.send(()).unwrap();
        server.await.unwrap();
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe_rpc("Verify", tonic::Code::Ok, Duration::from_millis(3));
        m.observe_rpc("Verify", tonic::Code::Ok, Duration::from_secs(500));
        let text = m.render();
        assert!(text.contains("abis_rpc_duration_seconds_bucket{rpc=\"Verify\",le=\"0.005\"} 1"));
        assert!(text.contains("abis_rpc_duration_seconds_bucket{rpc=\"Verify\",le=\"120\"} 1"));
        assert!(text.contains("abis_rpc_duration_seconds_bucket{rpc=\"Verify\",le=\"+Inf\"} 2"));
        assert!(text.contains("abis_rpc_requests_total{rpc=\"Verify\",code=\"OK\"} 2"));
    }
}
