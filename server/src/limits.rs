//! Per-RPC concurrency limits with bounded queues.
//!
//! Why: a 1:N search over a national gallery takes all the cores it is given; a burst of them
//! must not starve verification at a bank counter, nor pile up unbounded work and memory until
//! the process collapses. Each RPC gets its own bucket: up to `max_concurrency` requests run,
//! up to `queue_depth` more wait in FIFO order, and any further request is answered
//! RESOURCE_EXHAUSTED at once, so clients back off and retry instead of timing out.
//!
//! - A queued request waits at most until its deadline (the `grpc-timeout` header, capped by the
//!   server's request timeout given to [`Limiter::with_max_wait`]) and is then answered
//!   DEADLINE_EXCEEDED; a client that goes away leaves the queue at once (its future is dropped).
//! - Buckets exist for every RPC of [`crate::access::RPC_ACCESS`] plus `health`, `reflection` and
//!   one shared `unknown` bucket, so client-chosen paths cannot create buckets.
//! - The slot is held until the response future resolves: for unary and client-streaming RPCs
//!   (all of the engine's) that is the whole handler, including reading an `InsertStream`.
//! - [`Limiter::acquire`] offers the same admission inside a handler (e.g. to limit one costly
//!   phase rather than the whole RPC).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tonic::Status;

use crate::access::{rpc_label, RPC_ACCESS};
use crate::config::{LimitsConfig, RpcLimit};

struct Bucket {
    semaphore: Arc<Semaphore>,
    queued: AtomicUsize,
    limit: RpcLimit,
}

/// A running slot; dropping it frees the slot for the next queued request.
#[derive(Debug)]
pub struct Permit {
    _permit: OwnedSemaphorePermit,
}

/// Decrements the queue count however the wait ends.
struct QueueSlot<'a>(&'a AtomicUsize);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Bucket {
    fn new(limit: RpcLimit) -> Bucket {
        Bucket {
            semaphore: Arc::new(Semaphore::new(limit.max_concurrency.max(1))),
            queued: AtomicUsize::new(0),
            limit,
        }
    }

    async fn admit(self: Arc<Self>, rpc: &str, wait: Option<Duration>) -> Result<Permit, Status> {
        match Arc::clone(&self.semaphore).try_acquire_owned() {
            Ok(permit) => return Ok(Permit { _permit: permit }),
            Err(TryAcquireError::Closed) => return Err(shutting_down()),
            Err(TryAcquireError::NoPermits) => {}
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.limit.queue_depth {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Status::resource_exhausted(format!(
                "{rpc}: server busy ({} running, {} queued); retry later",
                self.limit.max_concurrency, self.limit.queue_depth
            )));
        }
        let _slot = QueueSlot(&self.queued);
        let acquire = Arc::clone(&self.semaphore).acquire_owned();
        let permit = match wait {
            Some(wait) => tokio::time::timeout(wait, acquire).await.map_err(|_| {
                Status::deadline_exceeded(format!("{rpc}: deadline expired while queued"))
            })?,
            None => acquire.await,
        };
        permit
            .map(|p| Permit { _permit: p })
            .map_err(|_| shutting_down())
    }
}

fn shutting_down() -> Status {
    Status::unavailable("server shutting down")
}

/// The per-RPC buckets. Build once from the configuration; share as `Arc<Limiter>`.
pub struct Limiter {
    buckets: HashMap<&'static str, Arc<Bucket>>,
    max_wait: Option<Duration>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("rpcs", &self.buckets.len())
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

impl Limiter {
    pub fn new(config: &LimitsConfig) -> Limiter {
        let mut buckets = HashMap::new();
        for (method, _) in RPC_ACCESS {
            buckets.insert(*method, Arc::new(Bucket::new(config.for_rpc(method))));
        }
        for other in ["health", "reflection", "unknown"] {
            buckets.insert(other, Arc::new(Bucket::new(config.default)));
        }
        Limiter {
            buckets,
            max_wait: None,
        }
    }

    /// Caps the time any request waits in a queue (use the server's request timeout).
    pub fn with_max_wait(mut self, max_wait: Duration) -> Limiter {
        self.max_wait = Some(max_wait);
        self
    }

    fn bucket(&self, label: &'static str) -> Arc<Bucket> {
        let bucket = self
            .buckets
            .get(label)
            .or_else(|| self.buckets.get("unknown"));
        match bucket {
            Some(b) => Arc::clone(b),
            // Unreachable: "unknown" is always present. Fail safe with a tiny bucket.
            None => Arc::new(Bucket::new(RpcLimit {
                max_concurrency: 1,
                queue_depth: 0,
            })),
        }
    }

    /// Admission for the RPC of a method path, waiting at most `deadline` (and the configured
    /// maximum). RESOURCE_EXHAUSTED when the queue is full, DEADLINE_EXCEEDED when the wait
    /// runs out.
    pub async fn acquire(&self, path: &str, deadline: Option<Duration>) -> Result<Permit, Status> {
        let label = rpc_label(path);
        let wait = min_opt(deadline, self.max_wait);
        self.bucket(label).admit(label, wait).await
    }

    /// Requests waiting, per RPC (for the queue-depth gauge).
    pub fn queued(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<(&'static str, u64)> = self
            .buckets
            .iter()
            .map(|(k, b)| (*k, b.queued.load(Ordering::Acquire) as u64))
            .collect();
        v.sort();
        v
    }

    /// Requests running, per RPC.
    #[cfg(test)]
    pub fn running(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<(&'static str, u64)> = self
            .buckets
            .iter()
            .map(|(k, b)| {
                let free = b.semaphore.available_permits();
                (*k, b.limit.max_concurrency.saturating_sub(free) as u64)
            })
            .collect();
        v.sort();
        v
    }

    /// Stops admitting: queued and later requests get UNAVAILABLE (graceful shutdown).
    pub fn close(&self) {
        for b in self.buckets.values() {
            b.semaphore.close();
        }
    }

    /// A tower layer for `Server::builder().layer(..)`.
    pub fn layer(self: &Arc<Self>) -> LimitLayer {
        LimitLayer {
            limiter: Arc::clone(self),
        }
    }
}

fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The `grpc-timeout` header: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Tower layer: see the module docs.
#[derive(Clone)]
pub struct LimitLayer {
    limiter: Arc<Limiter>,
}

impl<S> tower::Layer<S> for LimitLayer {
    type Service = LimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LimitService {
            inner,
            limiter: Arc::clone(&self.limiter),
        }
    }
}

#[derive(Clone)]
pub struct LimitService<S> {
    inner: S,
    limiter: Arc<Limiter>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, R> tower::Service<http::Request<B>> for LimitService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The ready service answers this request; a fresh clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limiter = Arc::clone(&self.limiter);
        let deadline = grpc_timeout(request.headers());
        Box::pin(async move {
            let permit = match limiter.acquire(request.uri().path(), deadline).await {
                Ok(p) => p,
                Err(status) => return Ok(status.into_http()),
            };
            let response = inner.call(request).await;
            drop(permit);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{Service, ServiceExt};

    fn limits(max_concurrency: usize, queue_depth: usize) -> LimitsConfig {
        LimitsConfig {
            default: RpcLimit {
                max_concurrency,
                queue_depth,
            },
            rpc: Default::default(),
        }
    }

    fn request(method: &str, timeout: Option<&str>) -> http::Request<()> {
        let mut b = http::Request::builder().uri(format!("http://x/abis.v1.Abis/{method}"));
        if let Some(t) = timeout {
            b = b.header("grpc-timeout", t);
        }
        b.body(()).unwrap()
    }

    fn code(response: &http::Response<String>) -> i32 {
        response
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().parse().unwrap())
            .unwrap_or(0)
    }

    /// A service whose calls block until the gate opens (deterministic "slow").
    fn gated(
        gate: Arc<Semaphore>,
    ) -> impl Service<
        http::Request<()>,
        Response = http::Response<String>,
        Error = Infallible,
        Future: Send,
    > + Clone
           + Send
           + 'static {
        tower::service_fn(move |_req: http::Request<()>| {
            let gate = Arc::clone(&gate);
            async move {
                let _p = gate.acquire().await.unwrap();
                Ok::<_, Infallible>(http::Response::new("done".to_string()))
            }
        })
    }

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn overload_gets_resource_exhausted_not_collapse() {
        let limiter = Arc::new(Limiter::new(&limits(1, 1)));
        let gate = Arc::new(Semaphore::new(0));
        let svc = tower::ServiceBuilder::new()
            .layer(limiter.layer())
            .service(gated(Arc::clone(&gate)));
        let mut calls = Vec::new();
        for _ in 0..2 {
            let svc = svc.clone();
            calls.push(tokio::spawn(svc.oneshot(request("Identify", None))));
            settle().await;
        }
        assert_eq!(
            limiter
                .queued()
                .iter()
                .find(|(r, _)| *r == "Identify")
                .unwrap()
                .1,
            1
        );
        assert_eq!(
            limiter
                .running()
                .iter()
                .find(|(r, _)| *r == "Identify")
                .unwrap()
                .1,
            1
        );
        // One running, one queued: the next three are refused at once.
        for _ in 0..3 {
            let r = svc
                .clone()
                .oneshot(request("Identify", None))
                .await
                .unwrap();
            assert_eq!(code(&r), tonic::Code::ResourceExhausted as i32);
        }
        // Another RPC has its own bucket and is not blocked by Identify's.
        let verify = tokio::spawn(svc.clone().oneshot(request("Verify", None)));
        settle().await;
        gate.add_permits(100);
        assert_eq!(code(&verify.await.unwrap().unwrap()), 0);
        for c in calls {
            let r = c.await.unwrap().unwrap();
            assert_eq!(code(&r), 0);
            assert_eq!(r.body(), "done");
        }
        assert!(limiter.queued().iter().all(|(_, n)| *n == 0));
        assert!(limiter.running().iter().all(|(_, n)| *n == 0));
    }

    #[tokio::test]
    async fn deadline_is_honoured_while_queued() {
        let limiter = Arc::new(Limiter::new(&limits(1, 8)));
        let gate = Arc::new(Semaphore::new(0));
        let svc = tower::ServiceBuilder::new()
            .layer(limiter.layer())
            .service(gated(Arc::clone(&gate)));
        let first = tokio::spawn(svc.clone().oneshot(request("Verify", None)));
        settle().await;
        let r = svc
            .clone()
            .oneshot(request("Verify", Some("30m")))
            .await
            .unwrap();
        assert_eq!(code(&r), tonic::Code::DeadlineExceeded as i32);
        assert!(
            limiter.queued().iter().all(|(_, n)| *n == 0),
            "left the queue"
        );
        // The server-side cap applies without a client deadline too.
        let capped = Arc::new(Limiter::new(&limits(1, 8)).with_max_wait(Duration::from_millis(30)));
        let svc2 = tower::ServiceBuilder::new()
            .layer(capped.layer())
            .service(gated(Arc::clone(&gate)));
        let hold = tokio::spawn(svc2.clone().oneshot(request("Verify", None)));
        settle().await;
        let r = svc2.clone().oneshot(request("Verify", None)).await.unwrap();
        assert_eq!(code(&r), tonic::Code::DeadlineExceeded as i32);
        gate.add_permits(100);
        assert_eq!(code(&first.await.unwrap().unwrap()), 0);
        assert_eq!(code(&hold.await.unwrap().unwrap()), 0);
    }

    #[tokio::test]
    async fn abandoned_waiters_leave_the_queue() {
        let limiter = Arc::new(Limiter::new(&limits(1, 1)));
        let gate = Arc::new(Semaphore::new(0));
        let svc = tower::ServiceBuilder::new()
            .layer(limiter.layer())
            .service(gated(Arc::clone(&gate)));
        let first = tokio::spawn(svc.clone().oneshot(request("Get", None)));
        settle().await;
        let waiter = tokio::spawn(svc.clone().oneshot(request("Get", None)));
        settle().await;
        assert_eq!(
            limiter
                .queued()
                .iter()
                .find(|(r, _)| *r == "Get")
                .unwrap()
                .1,
            1
        );
        waiter.abort();
        settle().await;
        assert_eq!(
            limiter
                .queued()
                .iter()
                .find(|(r, _)| *r == "Get")
                .unwrap()
                .1,
            0
        );
        gate.add_permits(10);
        assert_eq!(code(&first.await.unwrap().unwrap()), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn burst_is_bounded() {
        // 300 simultaneous requests against 2 running + 8 queued: every answer is OK or
        // RESOURCE_EXHAUSTED, at most 10 are admitted while the gate is shut, and nothing leaks.
        let limiter = Arc::new(Limiter::new(&limits(2, 8)));
        let gate = Arc::new(Semaphore::new(0));
        let svc = tower::ServiceBuilder::new()
            .layer(limiter.layer())
            .service(gated(Arc::clone(&gate)));
        let mut tasks = Vec::new();
        for _ in 0..300 {
            tasks.push(tokio::spawn(svc.clone().oneshot(request("Identify", None))));
        }
        settle().await;
        let waiting: u64 = limiter.queued().iter().map(|(_, n)| n).sum();
        assert!(waiting <= 8, "{waiting}");
        gate.add_permits(1000);
        let (mut ok, mut busy) = (0, 0);
        for t in tasks {
            match code(&t.await.unwrap().unwrap()) {
                0 => ok += 1,
                8 => busy += 1,
                other => panic!("unexpected status {other}"),
            }
        }
        assert_eq!(ok + busy, 300);
        assert!(ok >= 10 && busy >= 1, "ok {ok} busy {busy}");
        assert!(limiter.running().iter().all(|(_, n)| *n == 0));
    }

    #[tokio::test]
    async fn unknown_paths_share_one_bucket_and_close_refuses() {
        let limiter = Limiter::new(&limits(1, 0));
        let a = limiter.acquire("/abis.v1.Abis/Nope", None).await.unwrap();
        let e = limiter.acquire("/x.Y/Z", None).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        drop(a);
        limiter.close();
        let e = limiter
            .acquire("/abis.v1.Abis/Verify", None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn grpc_timeout_header() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&m)
        };
        assert_eq!(h("1S"), Some(Duration::from_secs(1)));
        assert_eq!(h("250m"), Some(Duration::from_millis(250)));
        assert_eq!(h("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(h("99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(h("123456789S"), None);
        assert_eq!(h("S"), None);
        assert_eq!(h("1x"), None);
        assert_eq!(h("-1S"), None);
    }
}
