//! What one gRPC call carries between the transport and the backend without widening every
//! signature: the caller's deadline (`grpc-timeout`) going down, and which nodes served the
//! call coming back up to the audit entry.
//!
//! A tower layer ([`CallLayer`]) runs each request's future inside a task-local scope. The
//! backend reads [`deadline`] and merges the router's [`Served`] into the scope with
//! [`note_served`]; the service's audit entry asks the backend for
//! [`Backend::node`](super::Backend::node), which a cluster router formats once from
//! [`served`]. Outside a scope (tests that call the service directly) the deadline is unknown
//! and nothing is recorded.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use abis_cluster::Served;

struct CallState {
    deadline: Option<Instant>,
    served: Served,
}

tokio::task_local! {
    static CALL: RefCell<CallState>;
}

/// The caller's deadline of the call being served, if it sent one.
pub fn deadline() -> Option<Instant> {
    CALL.try_with(|c| c.borrow().deadline).ok().flatten()
}

/// Records who served (part of) the call; a later replica of a shard replaces an earlier one.
pub fn note_served(served: Served) {
    let _ = CALL.try_with(|c| c.borrow_mut().served.merge(served));
}

/// Who served the call so far, or `None`.
pub fn served() -> Option<Served> {
    CALL.try_with(|c| {
        let served = &c.borrow().served;
        (!served.is_empty()).then(|| served.clone())
    })
    .ok()
    .flatten()
}

/// Runs `f` as one call with the given deadline.
pub async fn scope<F: Future>(deadline: Option<Instant>, f: F) -> F::Output {
    CALL.scope(
        RefCell::new(CallState {
            deadline,
            served: Served::default(),
        }),
        f,
    )
    .await
}

/// Tower layer giving every request its call scope (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct CallLayer;

impl<S> tower::Layer<S> for CallLayer {
    type Service = CallService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallService { inner }
    }
}

#[derive(Clone)]
pub struct CallService<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> tower::Service<http::Request<B>> for CallService<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let deadline = crate::limits::grpc_timeout(request.headers()).map(|t| Instant::now() + t);
        let future = self.inner.call(request);
        Box::pin(scope(deadline, future))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_call_scope_carries_its_deadline_and_who_served() {
        let served_by = |pairs: &[(u32, &str)], log: Option<u64>| {
            let mut s = Served::default();
            for (shard, node) in pairs {
                s.replica(*shard, node);
            }
            if let Some(p) = log {
                s.log(p);
            }
            s
        };
        assert_eq!(deadline(), None);
        note_served(served_by(&[(0, "x")], None));
        assert_eq!(served(), None);
        let d = Instant::now() + Duration::from_secs(3);
        let inside = scope(Some(d), async {
            note_served(served_by(&[(10, "r1"), (2, "r2")], None));
            note_served(served_by(&[(2, "r3")], Some(7)));
            (deadline(), served())
        })
        .await;
        assert_eq!(inside.0, Some(d));
        assert_eq!(
            inside.1.map(|s| s.to_string()).as_deref(),
            Some("s2:r3 s10:r1 log:7")
        );
    }
}
