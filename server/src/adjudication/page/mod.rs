//! The examiner's page: `abis serve` answers HTTP (HTTPS with `[tls]`) on
//! `[adjudication] listen` with a queue of open cases and a case view (probe and candidate side
//! by side per finger, mated minutiae joined, per-finger and fused scores, the threshold,
//! zoom and pan, keyboard shortcuts d / n / i for the three decisions).
//!
//! No new way in: an examiner signs in with the API key the gRPC API takes ([`session`]), and
//! only a key with the `adjudicator` role gets a session. Every page read and decision goes
//! through the same desk as gRPC ([`Cases`]), so answers, errors and audit entries are the
//! same. Hardening: session cookie `HttpOnly; SameSite=Strict` (`Secure` under TLS), a CSRF
//! token on every POST, a Content-Security-Policy allowing only this server's own script and
//! style (no inline code), `no-store` caching, no framing, no referrer. URLs carry only random
//! case ids. HTML is rendered here ([`render`]); the static script and style are compiled in.

mod pictures;
mod render;
mod session;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use abis_proto::v1::{CaseDecision, CaseState};
use bytes::Bytes;
use http::{header, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use tokio::net::TcpListener;

use super::cases::{case_refs, Cases};
use crate::access::Role;
use crate::auth::Authenticator;
use crate::images::{browser, ImageStore};
use pictures::{Picture, Pictures};
use session::{Session, Sessions};

const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");
/// Largest form body (a decision comment is at most 2,000 characters).
const MAX_FORM_BYTES: usize = 16 * 1024;
/// Open cases listed in the queue.
const QUEUE_LENGTH: usize = 200;
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

type Reply = Response<Full<Bytes>>;

pub struct Page {
    cases: Arc<Cases>,
    images: Option<Arc<ImageStore>>,
    sessions: Sessions,
    authenticator: Arc<Authenticator>,
    secure: bool,
}

impl Page {
    pub fn new(
        cases: Arc<Cases>,
        images: Option<Arc<ImageStore>>,
        authenticator: Arc<Authenticator>,
        session_lifetime: Duration,
        secure: bool,
    ) -> Arc<Page> {
        Arc::new(Page {
            cases,
            images,
            sessions: Sessions::new(session_lifetime),
            authenticator,
            secure,
        })
    }

    /// Serves connections from `listener` until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) {
        tokio::pin!(shutdown);
        loop {
            let (stream, remote) = tokio::select! {
                _ = &mut shutdown => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "adjudication page: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let page = Arc::clone(&self);
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => page.connection(stream, remote).await,
                    Some(acceptor) => {
                        let handshake = acceptor.accept(stream);
                        if let Ok(Ok(s)) =
                            tokio::time::timeout(Duration::from_secs(10), handshake).await
                        {
                            page.connection(s, remote).await;
                        }
                    }
                }
            });
        }
    }

    async fn connection<S>(self: Arc<Self>, stream: S, remote: SocketAddr)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = hyper::service::service_fn(move |req| {
            let page = Arc::clone(&self);
            async move { Ok::<_, Infallible>(page.handle(req, remote).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let _ = tokio::time::timeout(Duration::from_secs(300), conn).await;
    }

    async fn handle(&self, req: http::Request<hyper::body::Incoming>, remote: SocketAddr) -> Reply {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        match (&parts.method, path.as_str()) {
            (&Method::GET, "/static/page.js") => asset("text/javascript", SCRIPT),
            (&Method::GET, "/static/page.css") => asset("text/css", STYLE),
            (&Method::GET, "/login") => html(StatusCode::OK, render::login("")),
            (&Method::POST, "/login") => match read_form(body).await {
                Some(form) => self.login(&form, remote).await,
                None => bad_form(),
            },
            (m, _) if m != Method::GET && m != Method::POST => {
                let why = "only GET and POST";
                page_error(StatusCode::METHOD_NOT_ALLOWED, "INVALID_ARGUMENT", why)
            }
            _ => {
                let cookie = parts
                    .headers
                    .get(header::COOKIE)
                    .and_then(|v| v.to_str().ok());
                let Some(session) = self.sessions.find(cookie) else {
                    return signed_out(&parts.method);
                };
                if parts.method == Method::POST {
                    let Some(form) = read_form(body).await else {
                        return bad_form();
                    };
                    if !session.csrf_ok(form.get("csrf").map_or("", String::as_str)) {
                        return page_error(
                            StatusCode::FORBIDDEN,
                            "PERMISSION_DENIED",
                            "bad CSRF token",
                        );
                    }
                    return self.post(&session, &path, &form, cookie).await;
                }
                self.get(&session, &path).await
            }
        }
    }

    async fn login(
        &self,
        form: &std::collections::HashMap<String, String>,
        remote: SocketAddr,
    ) -> Reply {
        let key = form.get("key").map_or("", String::as_str);
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(&format!("Bearer {key}")) {
            headers.insert(header::AUTHORIZATION, v);
        }
        let authenticated = self
            .authenticator
            .authenticate(&headers, None, Some(remote));
        let Ok(caller) = authenticated else {
            // The entry of a refused sign-in is best effort: the answer is a refusal anyway.
            let _ = self.audit_login("-", tonic::Code::Unauthenticated).await;
            let page = render::login("UNAUTHENTICATED: invalid API key");
            return html(StatusCode::UNAUTHORIZED, page);
        };
        if !caller.roles.contains(Role::Adjudicator) {
            let _ = self
                .audit_login(&caller.name, tonic::Code::PermissionDenied)
                .await;
            let why = "this key lacks the adjudicator role";
            return page_error(StatusCode::FORBIDDEN, "PERMISSION_DENIED", why);
        }
        let name = caller.name.clone();
        let Some(token) = self.sessions.start(caller) else {
            return page_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "no randomness",
            );
        };
        if let Err(s) = self.audit_login(&name, tonic::Code::Ok).await {
            return status_page(&s);
        }
        let mut reply = redirect("/");
        if let Ok(v) = http::HeaderValue::from_str(&session::set_cookie(&token, self.secure)) {
            reply.headers_mut().insert(header::SET_COOKIE, v);
        }
        reply
    }

    async fn audit_login(&self, who: &str, code: tonic::Code) -> Result<(), tonic::Status> {
        let what = String::new();
        self.cases
            .audit_read(who, "PageLogin", vec![], what, code)
            .await
    }

    async fn get(&self, session: &Session, path: &str) -> Reply {
        let who = &session.caller.name;
        if path == "/" {
            let (cases, _) = self.cases.list(Some(CaseState::Open), None, QUEUE_LENGTH);
            let what = format!("cases:{}", cases.len());
            if let Err(s) = self
                .cases
                .audit_read(who, "ListCases", vec![], what, tonic::Code::Ok)
                .await
            {
                return status_page(&s);
            }
            return html(StatusCode::OK, render::queue(who, &session.csrf, &cases));
        }
        let Some(rest) = path.strip_prefix("/cases/") else {
            return page_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such page");
        };
        if let Some((id, picture)) = rest.split_once("/image/") {
            return match Picture::parse(picture) {
                Some(p) => self.picture(id, p).await,
                None => page_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such image"),
            };
        }
        self.case_view(session, rest).await
    }

    /// A case, audited as a read by the examiner.
    async fn case_view(&self, session: &Session, id: &str) -> Reply {
        let who = &session.caller.name;
        let found = self.cases.get(id);
        let (refs, code) = match &found {
            Ok(c) => (case_refs(c), tonic::Code::Ok),
            Err(s) => (vec![], s.code()),
        };
        if let Err(s) = self
            .cases
            .audit_read(who, "GetCase", refs, format!("case:{id} page"), code)
            .await
        {
            return status_page(&s);
        }
        let case = match found {
            Ok(case) => case,
            Err(s) => return status_page(&s),
        };
        let images = self.images.clone();
        let shown = tokio::task::spawn_blocking(move || {
            let pictures = Pictures::of(images.as_deref(), &case);
            (case, pictures)
        })
        .await;
        match shown {
            Ok((case, Ok(pictures))) => html(
                StatusCode::OK,
                render::case(who, &session.csrf, &case, &pictures),
            ),
            Ok((_, Err(e))) => image_store_error(&e),
            Err(_) => page_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "page task failed",
            ),
        }
    }

    /// One image of a case, as PNG. The case read that shows it is audited; its images are
    /// part of that read.
    async fn picture(&self, id: &str, picture: Picture) -> Reply {
        let case = match self.cases.get(id) {
            Ok(case) => case,
            Err(s) => return status_page(&s),
        };
        let Some(store) = self.images.clone() else {
            return page_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "this server keeps no images",
            );
        };
        let converted = tokio::task::spawn_blocking(move || {
            let images = pictures::load(&store, &case, picture.side)?;
            let found = images
                .as_ref()
                .and_then(|r| r.find(picture.kind, picture.ordinal));
            Ok::<_, crate::images::ImageStoreError>(
                found.map(|i| browser::to_png(picture.kind, &i.bytes)),
            )
        })
        .await;
        match converted {
            Ok(Ok(Some(Ok(png)))) => reply(StatusCode::OK, "image/png", png),
            Ok(Ok(Some(Err(e)))) => {
                tracing::warn!(error = %e, "adjudication page: a kept image does not decode");
                page_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "DATA_LOSS",
                    "the kept image does not decode",
                )
            }
            Ok(Ok(None)) => page_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such image"),
            Ok(Err(e)) => image_store_error(&e),
            Err(_) => page_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "image task failed",
            ),
        }
    }

    async fn post(
        &self,
        session: &Session,
        path: &str,
        form: &std::collections::HashMap<String, String>,
        cookie: Option<&str>,
    ) -> Reply {
        if path == "/logout" {
            self.sessions.end(cookie);
            let mut reply = redirect("/login");
            if let Ok(v) = http::HeaderValue::from_str(&session::set_cookie("", self.secure)) {
                reply.headers_mut().insert(header::SET_COOKIE, v);
            }
            return reply;
        }
        let Some(id) = path
            .strip_prefix("/cases/")
            .and_then(|p| p.strip_suffix("/decide"))
        else {
            return page_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such page");
        };
        let decision = match form.get("decision").map(String::as_str) {
            Some("duplicate") => CaseDecision::Duplicate,
            Some("distinct") => CaseDecision::Distinct,
            Some("inconclusive") => CaseDecision::Inconclusive,
            _ => CaseDecision::Unspecified,
        };
        let comment = form.get("comment").map_or("", String::as_str);
        match self
            .cases
            .decide(&session.caller.name, id, decision, comment)
            .await
        {
            Ok(_) => redirect("/"),
            Err(s) => status_page(&s),
        }
    }
}

async fn read_form(
    body: hyper::body::Incoming,
) -> Option<std::collections::HashMap<String, String>> {
    let bytes = Limited::new(body, MAX_FORM_BYTES)
        .collect()
        .await
        .ok()?
        .to_bytes();
    session::form_fields(&bytes)
}

fn with_headers(mut reply: Reply) -> Reply {
    let h = reply.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        http::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::REFERRER_POLICY,
        http::HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    reply
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    with_headers(r)
}

fn html(status: StatusCode, body: String) -> Reply {
    reply(status, "text/html; charset=utf-8", body)
}

fn asset(content_type: &'static str, body: &'static str) -> Reply {
    reply(StatusCode::OK, content_type, body)
}

fn redirect(to: &'static str) -> Reply {
    let mut r = reply(StatusCode::SEE_OTHER, "text/plain", "");
    r.headers_mut()
        .insert(header::LOCATION, http::HeaderValue::from_static(to));
    r
}

fn signed_out(method: &Method) -> Reply {
    if method == Method::GET {
        redirect("/login")
    } else {
        page_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "sign in first")
    }
}

/// The image store failed (damage, a missing key): logged with its path, shown without it.
fn image_store_error(e: &crate::images::ImageStoreError) -> Reply {
    tracing::error!(error = %e, "adjudication page: image store");
    page_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "UNAVAILABLE",
        "the image store cannot be read",
    )
}

fn bad_form() -> Reply {
    page_error(
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "malformed form",
    )
}

fn page_error(status: StatusCode, code: &str, message: &str) -> Reply {
    html(status, render::error(status.as_u16(), code, message))
}

/// The page's answer to a desk error: the gRPC code's name and message, with the HTTP status
/// that means the same.
fn status_page(s: &tonic::Status) -> Reply {
    use tonic::Code;
    let status = match s.code() {
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    page_error(status, crate::access::code_name(s.code()), s.message())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditOptions, Auditor};
    use crate::tls::tests::Pki;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;

    /// The page over HTTPS with the server's `[tls]` certificate: the sign-in form, with the
    /// security headers, to a client that trusts only the test CA.
    #[tokio::test]
    async fn the_page_serves_https_with_the_server_certificate() {
        let (pki, data) = (Pki::new(), tempfile::tempdir().unwrap());
        let auditor = Auditor::open(&data.path().join("audit"), AuditOptions::default()).unwrap();
        let store = super::super::CaseStore::open(&data.path().join("cases"), None).unwrap();
        let authenticator = Arc::new(Authenticator::new(None, false, Default::default()));
        let page = Page::new(
            Cases::new(store, auditor),
            None,
            authenticator,
            Duration::from_secs(60),
            true,
        );
        let acceptor = crate::tls::page_acceptor(&pki.tls_config(false)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(page.serve(listener, acceptor, std::future::pending()));

        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
        let request = b"GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        tls.write_all(request).await.unwrap();
        let mut answer = String::new();
        tls.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.contains("content-security-policy: default-src 'none'"),
            "{answer}"
        );
        assert!(answer.contains("name=\"key\""), "{answer}");
    }
}
