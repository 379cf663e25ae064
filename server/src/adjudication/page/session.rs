//! Page sign-in: an examiner presents an API key once (the login form); the page answers with
//! a random session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` under TLS) and keeps, per
//! session, the caller and a CSRF token that every POST must echo. Only the SHA-256 of a
//! session token is kept, so a memory dump does not hand out live sessions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::Caller;

pub const COOKIE: &str = "abis_session";

/// A signed-in examiner.
#[derive(Clone)]
pub struct Session {
    pub caller: Caller,
    pub csrf: String,
    expires: Instant,
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

pub struct Sessions {
    lifetime: Duration,
    by_hash: Mutex<HashMap<[u8; 32], Session>>,
}

fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(crate::hex::hex(&bytes))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    pub fn new(lifetime: Duration) -> Sessions {
        Sessions {
            lifetime,
            by_hash: Mutex::new(HashMap::new()),
        }
    }

    /// A new session for `caller`; returns its token (the cookie's value).
    pub fn start(&self, caller: Caller) -> Option<String> {
        let (token, csrf) = (random_hex()?, random_hex()?);
        let session = Session {
            caller,
            csrf,
            expires: Instant::now() + self.lifetime,
        };
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        map.insert(digest(&token), session);
        Some(token)
    }

    /// The live session of a request's `Cookie` header.
    pub fn find(&self, cookie_header: Option<&str>) -> Option<Session> {
        let token = cookie_value(cookie_header?, COOKIE)?;
        let map = self.lock();
        map.get(&digest(token))
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    pub fn end(&self, cookie_header: Option<&str>) {
        if let Some(token) = cookie_header.and_then(|c| cookie_value(c, COOKIE)) {
            self.lock().remove(&digest(token));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.by_hash.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `Set-Cookie` value of a session (or of its removal when `token` is empty).
pub fn set_cookie(token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    let expiry = if token.is_empty() { "; Max-Age=0" } else { "" };
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}{expiry}")
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// Decodes an `application/x-www-form-urlencoded` body into its fields; `None` when a field
/// is not valid percent-encoded UTF-8.
pub fn form_fields(body: &[u8]) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let mut it = pair.splitn(2, |&b| b == b'=');
        let key = percent_decode(it.next()?)?;
        let value = percent_decode(it.next().unwrap_or(b""))?;
        out.insert(key, value);
    }
    Some(out)
}

fn percent_decode(bytes: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Roles;
    use crate::auth::AuthMethod;
    use proptest::prelude::*;

    #[test]
    fn forms_and_cookies_decode() {
        let f = form_fields(b"key=a%2Bb+c&csrf=&decision=duplicate").unwrap();
        assert_eq!(f["key"], "a+b c");
        assert_eq!(f["csrf"], "");
        assert!(form_fields(b"k=%zz").is_none() && form_fields(b"k=%e9").is_none());
        assert_eq!(cookie_value("a=1; abis_session=xy", COOKIE), Some("xy"));
        assert_eq!(cookie_value("abis_sessionx=1", COOKIE), None);
    }

    #[test]
    fn a_session_is_found_by_its_cookie_only_until_it_ends() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let caller = Caller {
            name: "examiner-1".into(),
            roles: Roles::all(),
            method: AuthMethod::ApiKey,
        };
        let token = sessions.start(caller).unwrap();
        let header = format!("other=1; {COOKIE}={token}");
        let s = sessions.find(Some(&header)).expect("session");
        assert!(s.csrf_ok(&s.csrf.clone()) && !s.csrf_ok("nope"));
        assert!(sessions.find(Some(&format!("{COOKIE}=x{token}"))).is_none());
        sessions.end(Some(&header));
        assert!(sessions.find(Some(&header)).is_none());
        assert!(set_cookie(&token, true).contains("HttpOnly; SameSite=Strict; Secure"));
    }

    proptest! {
        #[test]
        fn form_decoding_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = form_fields(&body);
        }
    }
}
