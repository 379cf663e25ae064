//! What one gRPC call carries between the transport and the backend without widening every
//! signature: the caller's deadline (`grpc-timeout`) going down, and which nodes served the
//! call coming back up to the audit entry.
//!
//! A tower layer ([`CallLayer`]) runs each request's future inside a task-local scope. The
//! backend reads [`deadline`] and records [`note_served`]; the service's audit entry asks the
//! backend for [`Backend::node`](super::Backend::node), which a cluster router builds from
//! [`served`]. Outside a scope (tests that call the service directly) the deadline is unknown
//! and nothing is recorded.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

struct CallState {
    deadline: Option<Instant>,
    /// `key:value` tokens (`s3:replica-a`, `log:1234`), the latest per key.
    served: Vec<String>,
}

tokio::task_local! {
    static CALL: RefCell<CallState>;
}

/// The caller's deadline of the call being served, if it sent one.
pub fn deadline() -> Option<Instant> {
    CALL.try_with(|c| c.borrow().deadline).ok().flatten()
}

/// Records who served (part of) the call: tokens `key:value`; a later token replaces an
/// earlier one with the same key.
pub fn note_served(tokens: impl IntoIterator<Item = String>) {
    let _ = CALL.try_with(|c| {
        let mut c = c.borrow_mut();
        for t in tokens {
            let key = t.split(':').next().unwrap_or_default().to_owned();
            c.served
                .retain(|s| s.split(':').next() != Some(key.as_str()));
            c.served.push(t);
        }
    });
}

/// Who served the call so far, space-separated, or `None`.
pub fn served() -> Option<String> {
    CALL.try_with(|c| {
        let mut tokens = c.borrow().served.clone();
        tokens.sort_by_key(|t| natural(t));
        (!tokens.is_empty()).then(|| tokens.join(" "))
    })
    .ok()
    .flatten()
}

/// Orders `s2:` before `s10:` (shard numbers numerically), then anything else by text.
fn natural(token: &str) -> (u8, u64, String) {
    match token
        .strip_prefix('s')
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse::<u64>().ok())
    {
        Some(n) => (0, n, String::new()),
        None => (1, 0, token.to_owned()),
    }
}

/// Runs `f` as one call with the given deadline.
pub async fn scope<F: Future>(deadline: Option<Instant>, f: F) -> F::Output {
    CALL.scope(
        RefCell::new(CallState {
            deadline,
            served: Vec::new(),
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
        assert_eq!(deadline(), None);
        note_served(["s0:x".to_string()]);
        assert_eq!(served(), None);
        let d = Instant::now() + Duration::from_secs(3);
        let inside = scope(Some(d), async {
            note_served(["s10:r1".to_string(), "s2:r2".to_string()]);
            note_served(["s2:r3".to_string(), "log:7".to_string()]);
            (deadline(), served())
        })
        .await;
        assert_eq!(inside.0, Some(d));
        assert_eq!(inside.1.as_deref(), Some("s2:r3 s10:r1 log:7"));
    }
}
