//! A bounded pool of sessions for one model.
//!
//! `ort::Session::run` takes `&mut self`, so one session serves one inference at a time. The pool
//! creates sessions lazily up to its size and hands them out; a caller that finds none free waits
//! for one to come back rather than creating an unbounded number (each holds the model's weights
//! and a thread pool).

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, Mutex};

use ort::session::Session;

use super::runtime::SessionFactory;
use super::{ModelError, ModelSpec};

pub struct SessionPool {
    name: String,
    spec: ModelSpec,
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    returned: Condvar,
    max: usize,
    factory: SessionFactory,
}

struct State {
    idle: Vec<Session>,
    created: usize,
}

impl SessionPool {
    /// Opens one session at once, so a broken model fails here, at start-up, not on first use.
    pub(super) fn new(
        name: &str,
        spec: ModelSpec,
        max: usize,
        factory: SessionFactory,
    ) -> Result<SessionPool, ModelError> {
        let first = factory()?;
        let inner = Inner {
            state: Mutex::new(State {
                idle: vec![first],
                created: 1,
            }),
            returned: Condvar::new(),
            max: max.max(1),
            factory,
        };
        Ok(SessionPool {
            name: name.to_owned(),
            spec,
            inner: Arc::new(inner),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Takes a session, creating one if the pool is below its size, else waiting for one.
    pub fn get(&self) -> Result<PooledSession<'_>, ModelError> {
        let mut state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(session) = state.idle.pop() {
                return Ok(PooledSession {
                    pool: self,
                    session: Some(session),
                });
            }
            if state.created < self.inner.max {
                state.created += 1;
                drop(state);
                return match (self.inner.factory)() {
                    Ok(session) => Ok(PooledSession {
                        pool: self,
                        session: Some(session),
                    }),
                    Err(e) => {
                        let mut state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
                        state.created -= 1;
                        Err(e)
                    }
                };
            }
            state = self
                .inner
                .returned
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A session on loan from a [`SessionPool`]; it goes back when dropped.
pub struct PooledSession<'a> {
    pool: &'a SessionPool,
    session: Option<Session>,
}

impl Deref for PooledSession<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        // Present from construction until drop.
        self.session.as_ref().expect("session present until drop")
    }
}

impl DerefMut for PooledSession<'_> {
    fn deref_mut(&mut self) -> &mut Session {
        self.session.as_mut().expect("session present until drop")
    }
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let mut state = self
                .pool
                .inner
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            state.idle.push(session);
            self.pool.inner.returned.notify_one();
        }
    }
}
