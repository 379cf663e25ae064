//! MOSIP's side of the queues for the MOSIP end-to-end tests: a tiny datashare, the
//! registration processor's requests and the answers it collects, and `abis serve` with
//! `[mosip]` on a broker.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use abis_mosip::cbeff::{Bir, Modality as CbeffModality};
use abis_mosip::message::{Answer, Operation, Outcome, Request, Response};
use abis_mosip::stomp::{Client, Config, MessageKind};
use abis_proto::FailureReason;
use abis_testkit::activemq::ActiveMq;

use crate::support::Server;

pub const REQUESTS: &str = "mosip-to-abis1";
pub const ANSWERS: &str = "abis1-to-mosip";

/// A BIR as MOSIP's packets carry them: format type 7 (finger image), 8 (face image) or 2
/// (finger minutiae) owned by Mosip.
pub fn bir(modality: CbeffModality, format_type: u32, subtype: &str, bdb: Vec<u8>) -> Bir {
    Bir {
        format_type: Some(format_type),
        modality,
        subtype: subtype.into(),
        format_owner: Some("Mosip".into()),
        quality: Some(80),
        exception: false,
        bdb,
    }
}

/// A tiny HTTP/1.0 datashare on 127.0.0.1: path → (status, body); unknown paths 404;
/// `/slow/PATH` answers PATH after a second (a request that stays in flight a while); a query
/// string is ignored.
pub fn datashare(docs: HashMap<String, (u16, Vec<u8>)>) -> String {
    datashare_logged(docs).0
}

/// Every path asked of a datashare, query included, in the order asked.
pub type Fetched = Arc<Mutex<Vec<String>>>;

/// [`datashare`], and the paths it was asked for (as soon as each request's head is read).
pub fn datashare_logged(docs: HashMap<String, (u16, Vec<u8>)>) -> (String, Fetched) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let docs = Arc::new(docs);
    let fetched = Fetched::default();
    let log = Arc::clone(&fetched);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (docs, log) = (Arc::clone(&docs), Arc::clone(&log));
            std::thread::spawn(move || serve_document(stream, &docs, &log));
        }
    });
    (format!("http://{addr}"), fetched)
}

fn serve_document(
    mut stream: std::net::TcpStream,
    docs: &HashMap<String, (u16, Vec<u8>)>,
    log: &Fetched,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).map_or(true, |n| n == 0) || h.trim().is_empty() {
            break;
        }
    }
    log.lock().unwrap().push(path.clone());
    path = path.split('?').next().unwrap_or_default().to_string();
    if let Some(rest) = path.strip_prefix("/slow") {
        std::thread::sleep(Duration::from_secs(1));
        path = rest.to_string();
    }
    let (status, body) = docs
        .get(&path)
        .cloned()
        .unwrap_or((404, b"not found".to_vec()));
    let head = format!(
        "HTTP/1.0 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(&body));
}

/// Every delivery of every answer, by requestId: (message type, JSON).
pub type Answers = Arc<Mutex<HashMap<String, Vec<(MessageKind, String)>>>>;

/// MOSIP's side of the queues: sends requests, collects every answer (all deliveries).
pub struct Mosip {
    pub client: Client,
    pub answers: Answers,
    pub next: u64,
}

impl Mosip {
    pub async fn connect(broker: &ActiveMq) -> Mosip {
        let answers: Answers = Arc::default();
        Mosip {
            client: Self::collect(broker, Arc::clone(&answers)).await,
            answers,
            next: 0,
        }
    }

    /// A new connection after a broker restart, adding to the same answers and numbering.
    pub async fn reconnect(&mut self, broker: &ActiveMq) {
        self.client = Self::collect(broker, Arc::clone(&self.answers)).await;
    }

    /// Connects and subscribes to the answers, recording each delivery before acknowledging it.
    async fn collect(broker: &ActiveMq, sink: Answers) -> Client {
        let (client, mut messages) = Client::connect(&Config::new(broker.stomp_addr()))
            .await
            .unwrap();
        client
            .subscribe(ANSWERS, "mosip-answers", 64)
            .await
            .unwrap();
        let acker = client.clone();
        tokio::spawn(async move {
            while let Some(m) = messages.next().await {
                let text = String::from_utf8_lossy(&m.body).into_owned();
                let id = Response::parse(&m.body)
                    .map(|r| r.request_id)
                    .unwrap_or_default();
                sink.lock()
                    .unwrap()
                    .entry(id)
                    .or_default()
                    .push((m.kind, text));
                let _ = acker.ack(&m).await;
            }
        });
        client
    }

    pub fn request(&mut self, operation: Operation) -> Request {
        self.next += 1;
        let now = abis_server::audit::rfc3339_utc(std::time::SystemTime::now());
        Request::new(operation, format!("req-{}", self.next), now)
    }

    pub async fn send(&self, request: &Request, kind: MessageKind) {
        self.client
            .send(REQUESTS, request.to_json().as_bytes(), kind)
            .await
            .unwrap();
    }

    /// Whether `request_id` has been answered at least once.
    pub fn answered(&self, request_id: &str) -> bool {
        self.answers.lock().unwrap().contains_key(request_id)
    }

    /// The first answer to `request_id`, waiting up to `within`.
    pub async fn answer(&self, request_id: &str, within: Duration) -> Response {
        let t0 = Instant::now();
        loop {
            if let Some((_, json)) = self
                .answers
                .lock()
                .unwrap()
                .get(request_id)
                .and_then(|a| a.first().cloned())
            {
                return Response::parse(json.as_bytes()).unwrap();
            }
            assert!(
                t0.elapsed() < within,
                "no answer to {request_id} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn call(&mut self, request: Request) -> Response {
        self.send(&request, MessageKind::Text).await;
        self.answer(&request.request_id, Duration::from_secs(60))
            .await
    }

    /// Panics naming the first request that was answered twice with different JSON.
    pub fn assert_repeats_identical(&self) {
        for (id, answers) in self.answers.lock().unwrap().iter() {
            let first = &answers[0].1;
            assert!(
                answers.iter().all(|a| &a.1 == first),
                "{id} answered differently: {answers:?}"
            );
        }
    }
}

pub fn candidates(r: &Response) -> Vec<String> {
    match &r.outcome {
        Outcome::Success(Answer::Candidates(c)) => {
            c.iter().map(|c| c.reference_id.clone()).collect()
        }
        other => panic!("not a candidate list: {other:?}"),
    }
}

pub fn failure(r: &Response) -> Option<FailureReason> {
    match r.outcome {
        Outcome::Failure(reason) => Some(reason),
        _ => None,
    }
}

pub type Env = Vec<(&'static str, std::ffi::OsString)>;

/// `[mosip]` on `broker`, with `workers` concurrent requests.
pub fn mosip_env(broker: &ActiveMq, workers: usize) -> Env {
    vec![
        ("ABIS__MOSIP__ENABLED", "true".into()),
        (
            "ABIS__MOSIP__BROKER_URL",
            format!("stomp://{}", broker.stomp_addr()).into(),
        ),
        ("ABIS__MOSIP__WORKERS", workers.to_string().into()),
        ("ABIS__MOSIP__HEARTBEAT_MS", "5000".into()),
        ("ABIS__MOSIP__RECONNECT_MS", "300".into()),
        ("ABIS__MOSIP__DATASHARE__RETRIES", "0".into()),
        ("ABIS__MOSIP__DATASHARE__CONNECT_TIMEOUT_MS", "500".into()),
    ]
}

pub fn start_abis(data: tempfile::TempDir, env: &Env) -> Server {
    let env: Vec<(&str, &std::ffi::OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    Server::start_with(data, &env)
}
