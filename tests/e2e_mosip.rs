//! End-to-end: abis as MOSIP's ABIS. Real processes: an ActiveMQ broker (Debian's package), a
//! real `abis serve` with `[mosip]` on, and this test playing MOSIP's registration processor: a
//! small HTTP datashare serving CBEFF documents built from FVC2002 fingerprints (PNG inside
//! ISO/IEC 19794-4:2011 records) and ATT faces (PNG inside ISO/IEC 19794-5:2011 records), and
//! JSON requests on `mosip-to-abis1`, answers read from `abis1-to-mosip`.
//!
//! Skipped, counted, without the broker, the models or the data (a failure under
//! ABIS_REQUIRE_DATA=1).

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use abis_mosip::cbeff::{self, Bir, Modality as CbeffModality};
use abis_mosip::face_record::{self, ImageType};
use abis_mosip::finger_record::{self, Compression, NewFingerImage};
use abis_mosip::message::{Answer, Flags, Operation, Outcome, Request, Response};
use abis_mosip::position::mosip_subtype;
use abis_mosip::stomp::{Client, Config, MessageKind};
use abis_proto::FailureReason;
use abis_testkit::activemq::ActiveMq;
use support::Server;

const REQUESTS: &str = "mosip-to-abis1";
const ANSWERS: &str = "abis1-to-mosip";

/// An image file re-encoded as PNG (the engine decodes PNG inside ISO records).
fn png(path: &Path) -> Vec<u8> {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A person's CBEFF: FVC fingers (`finger`, `impression`) at ISO positions 2, 3, 7, a face,
/// and a right thumb marked as an exception (missing).
fn person_cbeff(fvc: &Path, att: &Path, fingers: [u32; 3], impression: u32, face: &str) -> String {
    let mut birs = Vec::new();
    for (finger, position) in fingers.into_iter().zip([2u8, 3, 7]) {
        let png = png(&fvc.join(format!("{finger}_{impression}.tif")));
        let record = finger_record::write_2011(&[NewFingerImage {
            position,
            compression: Compression::Png,
            width: 388,
            height: 374,
            ppi: 500,
            quality: 80,
            data: &png,
            extended: b"vendor extended data",
        }]);
        birs.push(bir(
            CbeffModality::Finger,
            mosip_subtype(position).unwrap(),
            record,
            false,
        ));
    }
    birs.push(bir(CbeffModality::Finger, "Right Thumb", Vec::new(), true));
    let face_png = png(&att.join(face));
    let face = face_record::write_2011(ImageType::Png, 92, 112, &face_png, 0);
    birs.push(bir(CbeffModality::Face, "", face, false));
    cbeff::to_xml(&birs)
}

fn bir(modality: CbeffModality, subtype: &str, bdb: Vec<u8>, exception: bool) -> Bir {
    Bir {
        format_type: Some(if modality == CbeffModality::Face {
            8
        } else {
            7
        }),
        modality,
        subtype: subtype.into(),
        format_owner: Some("Mosip".into()),
        quality: Some(80),
        exception,
        bdb,
    }
}

/// A tiny HTTP/1.0 datashare on 127.0.0.1: path → (status, body); unknown paths 404.
fn datashare(docs: HashMap<String, (u16, Vec<u8>)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).map_or(true, |n| n == 0) || h.trim().is_empty() {
                    break;
                }
            }
            let (status, body) = docs
                .get(&path)
                .cloned()
                .unwrap_or((404, b"not found".to_vec()));
            let mut stream = stream;
            let head = format!(
                "HTTP/1.0 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(&body));
        }
    });
    format!("http://{addr}")
}

/// Every delivery of every answer, by requestId: (message type, JSON).
type Answers = Arc<Mutex<HashMap<String, Vec<(MessageKind, String)>>>>;

/// MOSIP's side of the queues: sends requests, collects every answer (all deliveries).
struct Mosip {
    client: Client,
    answers: Answers,
    next: u64,
}

impl Mosip {
    async fn connect(broker: &ActiveMq) -> Mosip {
        let (client, mut messages) = Client::connect(&Config::new(broker.stomp_addr()))
            .await
            .unwrap();
        client
            .subscribe(ANSWERS, "mosip-answers", 64)
            .await
            .unwrap();
        let answers: Answers = Arc::default();
        let sink = Arc::clone(&answers);
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
        Mosip {
            client,
            answers,
            next: 0,
        }
    }

    fn request(&mut self, operation: Operation) -> Request {
        self.next += 1;
        Request {
            operation,
            request_id: format!("req-{}", self.next),
            version: Some("1.1".into()),
            request_time: Some(abis_server::audit::rfc3339_utc(std::time::SystemTime::now())),
            reference_id: None,
            reference_url: None,
            gallery: None,
            flags: Flags::default(),
        }
    }

    async fn send(&self, request: &Request, kind: MessageKind) {
        self.client
            .send(REQUESTS, request.to_json().as_bytes(), kind)
            .await
            .unwrap();
    }

    /// The first answer to `request_id`, waiting up to `within`.
    async fn answer(&self, request_id: &str, within: Duration) -> Response {
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
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn call(&mut self, request: Request) -> Response {
        self.send(&request, MessageKind::Text).await;
        self.answer(&request.request_id, Duration::from_secs(60))
            .await
    }
}

fn candidates(r: &Response) -> Vec<String> {
    match &r.outcome {
        Outcome::Success(Answer::Candidates(c)) => {
            c.iter().map(|c| c.reference_id.clone()).collect()
        }
        other => panic!("not a candidate list: {other:?}"),
    }
}

fn failure(r: &Response) -> Option<FailureReason> {
    match r.outcome {
        Outcome::Failure(reason) => Some(reason),
        _ => None,
    }
}

fn mosip_env(broker: &ActiveMq) -> Vec<(&'static str, std::ffi::OsString)> {
    vec![
        ("ABIS__MOSIP__ENABLED", "true".into()),
        (
            "ABIS__MOSIP__BROKER_URL",
            format!("stomp://{}", broker.stomp_addr()).into(),
        ),
        ("ABIS__MOSIP__WORKERS", "3".into()),
        ("ABIS__MOSIP__HEARTBEAT_MS", "5000".into()),
        ("ABIS__MOSIP__RECONNECT_MS", "300".into()),
        ("ABIS__MOSIP__DATASHARE__RETRIES", "0".into()),
        ("ABIS__MOSIP__DATASHARE__CONNECT_TIMEOUT_MS", "500".into()),
    ]
}

fn start_abis(data: tempfile::TempDir, env: &[(&'static str, std::ffi::OsString)]) -> Server {
    let env: Vec<(&str, &std::ffi::OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    Server::start_with(data, &env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abis_serves_mosip_over_activemq() {
    if !support::face_models_ready() {
        return;
    }
    let (Some(fvc), Some(att)) = (
        abis_testkit::shared("fingerprint/FVC2002_DB1_B"),
        abis_testkit::shared("face/ATT_ORL"),
    ) else {
        return;
    };
    let broker_dir = tempfile::tempdir().unwrap();
    let Some(mut broker) = ActiveMq::start(broker_dir.path()) else {
        return;
    };
    let share = datashare(documents(&fvc, &att));
    let env = mosip_env(&broker);
    let server = start_abis(tempfile::tempdir().unwrap(), &env);
    let mut mosip = Mosip::connect(&broker).await;

    types_inserts_and_identify(&mut mosip, &share).await;
    failures(&mut mosip, &share).await;
    rejected_requests(&mut mosip, &broker).await;
    delete_and_pending_jobs(&mut mosip, &share).await;
    let server = sigkill_in_flight(&mut mosip, &share, server, &env).await;

    // A broker restart: abis reconnects and keeps answering.
    broker.restart();
    let mut mosip = Mosip::connect(&broker).await;
    mosip.next = 1000;
    let ping = mosip.request(Operation::Ping);
    assert_eq!(
        mosip.call(ping).await.outcome,
        Outcome::Success(Answer::Done)
    );
    drop(server);
}

/// The datashare's documents: persons a (two captures), b and c, and bad answers.
fn documents(fvc: &Path, att: &Path) -> HashMap<String, (u16, Vec<u8>)> {
    let mut docs = HashMap::new();
    let mut doc = |path: &str, body: Vec<u8>| docs.insert(path.to_string(), (200, body));
    doc(
        "/a1",
        person_cbeff(fvc, att, [101, 102, 103], 1, "s1/1.pgm").into_bytes(),
    );
    doc(
        "/a2",
        person_cbeff(fvc, att, [101, 102, 103], 2, "s1/2.pgm").into_bytes(),
    );
    doc(
        "/b1",
        person_cbeff(fvc, att, [104, 105, 106], 1, "s2/1.pgm").into_bytes(),
    );
    doc(
        "/c1",
        person_cbeff(fvc, att, [107, 108, 109], 1, "s3/1.pgm").into_bytes(),
    );
    doc("/notxml", b"%PDF-1.4 not a CBEFF".to_vec());
    doc(
        "/expired",
        br#"{"errors":[{"errorCode":"DAT-SER-006","message":"expired"}]}"#.to_vec(),
    );
    docs
}

async fn types_inserts_and_identify(mosip: &mut Mosip, share: &str) {
    let url = |p: &str| Some(format!("{share}{p}"));
    // Ping, as text and as bytes: each answer comes back in the type of its request.
    let ping = mosip.request(Operation::Ping);
    assert_eq!(
        mosip.call(ping.clone()).await.outcome,
        Outcome::Success(Answer::Done)
    );
    let ping_bytes = mosip.request(Operation::Ping);
    mosip.send(&ping_bytes, MessageKind::Bytes).await;
    mosip
        .answer(&ping_bytes.request_id, Duration::from_secs(30))
        .await;
    let kinds = |id: &str| {
        mosip.answers.lock().unwrap()[id]
            .iter()
            .map(|a| a.0)
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(&ping.request_id), [MessageKind::Text]);
    assert_eq!(kinds(&ping_bytes.request_id), [MessageKind::Bytes]);

    // Inserts (no deduplication: a2 is a1's person again).
    for (id, path) in [("ref-a1", "/a1"), ("ref-b1", "/b1"), ("ref-a2", "/a2")] {
        let mut r = mosip.request(Operation::Insert);
        (r.reference_id, r.reference_url) = (Some(id.into()), url(path));
        assert_eq!(
            mosip.call(r).await.outcome,
            Outcome::Success(Answer::Done),
            "insert {id}"
        );
    }
    let count = mosip.request(Operation::ReferenceCount);
    assert_eq!(
        mosip.call(count).await.outcome,
        Outcome::Success(Answer::Count(3))
    );

    // Identify by referenceId (MOSIP 1.2): the duplicate is found, the probe is not its own
    // candidate; by URL with an explicit gallery; and the analytics are there.
    let mut ident = mosip.request(Operation::Identify);
    ident.reference_id = Some("ref-a2".into());
    ident.flags.max_results = Some(5);
    let found = mosip.call(ident).await;
    assert_eq!(candidates(&found), ["ref-a1"], "{found:?}");
    if let Outcome::Success(Answer::Candidates(c)) = &found.outcome {
        assert!(c[0].analytics.contains_key("internalScore"));
        let types: Vec<&str> = c[0]
            .modalities
            .iter()
            .map(|m| m.biometric_type.as_str())
            .collect();
        assert!(types.contains(&"FIR"), "{types:?}");
    }
    let mut ident = mosip.request(Operation::Identify);
    ident.reference_url = url("/a2");
    ident.gallery = Some(vec!["ref-a1".into(), "ref-b1".into()]);
    assert_eq!(candidates(&mosip.call(ident).await), ["ref-a1"]);
}

/// Failures, each with MOSIP's reason and nothing stored.
async fn failures(mosip: &mut Mosip, share: &str) {
    let url = |p: &str| Some(format!("{share}{p}"));
    // Failures, each with MOSIP's reason and nothing stored.
    let mut r = mosip.request(Operation::Insert);
    (r.reference_id, r.reference_url) = (Some("ref-a1".into()), url("/c1"));
    assert_eq!(
        failure(&mosip.call(r).await),
        Some(FailureReason::ReferenceIdExists)
    );
    let mut r = mosip.request(Operation::Identify);
    r.reference_id = Some("ref-nobody".into());
    assert_eq!(
        failure(&mosip.call(r).await),
        Some(FailureReason::ReferenceIdNotFound)
    );
    let mut r = mosip.request(Operation::Insert);
    (r.reference_id, r.reference_url) =
        (Some("ref-x".into()), Some("http://127.0.0.1:9/gone".into()));
    assert_eq!(
        failure(&mosip.call(r).await),
        Some(FailureReason::UnableToFetchBiometrics)
    );
    let mut r = mosip.request(Operation::Insert);
    (r.reference_id, r.reference_url) = (Some("ref-x".into()), url("/notxml"));
    assert_eq!(
        failure(&mosip.call(r).await),
        Some(FailureReason::InvalidBiometricFormat)
    );
    let mut r = mosip.request(Operation::Insert);
    (r.reference_id, r.reference_url) = (Some("ref-x".into()), url("/expired"));
    assert_eq!(
        failure(&mosip.call(r).await),
        Some(FailureReason::ReferenceUrlExpired)
    );
    let count = mosip.request(Operation::ReferenceCount);
    assert_eq!(
        mosip.call(count).await.outcome,
        Outcome::Success(Answer::Count(3))
    );
}

/// Requests that cannot be served: answered, and the malformed one dead-lettered.
async fn rejected_requests(mosip: &mut Mosip, broker: &ActiveMq) {
    // A request without requestId: answered with failure 4 (empty requestId) and dead-lettered.
    mosip
        .client
        .send(
            REQUESTS,
            br#"{"id":"mosip.abis.ping","version":"1.1"}"#,
            MessageKind::Text,
        )
        .await
        .unwrap();
    let poison = mosip.answer("", Duration::from_secs(30)).await;
    assert_eq!(failure(&poison), Some(FailureReason::InvalidRequest));
    let (dlq, mut dead) = Client::connect(&Config::new(broker.stomp_addr()))
        .await
        .unwrap();
    dlq.subscribe(&format!("DLQ.{REQUESTS}"), "dlq", 1)
        .await
        .unwrap();
    let dead_letter = tokio::time::timeout(Duration::from_secs(10), dead.next())
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&dead_letter.body).contains("mosip.abis.ping"));
    dlq.ack(&dead_letter).await.unwrap();

    // A well-formed request missing its referenceId: failure 5, acknowledged (no dead letter).
    let del = mosip.request(Operation::Delete);
    let mut json: serde_json::Value = serde_json::from_str(&del.to_json()).unwrap();
    json["referenceId"] = serde_json::Value::Null;
    let body = json.to_string();
    mosip
        .client
        .send(REQUESTS, body.as_bytes(), MessageKind::Text)
        .await
        .unwrap();
    let missing = mosip.answer(&del.request_id, Duration::from_secs(30)).await;
    assert_eq!(failure(&missing), Some(FailureReason::MissingReferenceId));
}

async fn delete_and_pending_jobs(mosip: &mut Mosip, share: &str) {
    let url = |p: &str| Some(format!("{share}{p}"));
    // Delete, then the deleted record is never a candidate; PendingJobs when idle.
    let mut del = mosip.request(Operation::Delete);
    del.reference_id = Some("ref-b1".into());
    assert_eq!(
        mosip.call(del).await.outcome,
        Outcome::Success(Answer::Done)
    );
    let mut ident = mosip.request(Operation::Identify);
    ident.reference_url = url("/b1");
    assert!(!candidates(&mosip.call(ident).await).contains(&"ref-b1".to_string()));
    let pending = mosip.request(Operation::PendingJobs);
    assert_eq!(
        mosip.call(pending).await.outcome,
        Outcome::Success(Answer::JobsCount(0))
    );
}

async fn sigkill_in_flight(
    mosip: &mut Mosip,
    share: &str,
    server: Server,
    env: &[(&'static str, std::ffi::OsString)],
) -> Server {
    let url = |p: &str| Some(format!("{share}{p}"));
    // SIGKILL with requests in flight, then a restart on the same data: every request answered,
    // any request answered twice answered the same.
    let mut burst = Vec::new();
    for i in 0..6 {
        let mut r = mosip.request(Operation::Insert);
        (r.reference_id, r.reference_url) = (
            Some(format!("ref-k{i}")),
            url(if i % 2 == 0 { "/c1" } else { "/a1" }),
        );
        mosip.send(&r, MessageKind::Text).await;
        burst.push(r.request_id);
    }
    let mut ident = mosip.request(Operation::Identify);
    ident.reference_url = url("/c1");
    mosip.send(&ident, MessageKind::Text).await;
    burst.push(ident.request_id.clone());
    mosip.answer(&burst[0], Duration::from_secs(60)).await;
    let answered = burst
        .iter()
        .filter(|id| mosip.answers.lock().unwrap().contains_key(*id))
        .count();
    let data = server.kill_keep_data();
    assert!(
        answered < burst.len(),
        "requests were in flight at the SIGKILL"
    );
    let server = start_abis(data, env);
    for id in &burst {
        mosip.answer(id, Duration::from_secs(90)).await;
    }
    let found = mosip
        .answer(&ident.request_id, Duration::from_secs(1))
        .await;
    let c_ids = candidates(&found);
    assert!(
        c_ids.iter().all(|c| c.starts_with("ref-k")),
        "an Identify sees the Inserts queued before it: {c_ids:?}"
    );
    assert_eq!(c_ids.len(), 3, "ref-k0, k2, k4 hold /c1: {c_ids:?}");
    for (id, answers) in mosip.answers.lock().unwrap().iter() {
        let first = &answers[0].1;
        assert!(
            answers.iter().all(|a| &a.1 == first),
            "{id} answered differently: {answers:?}"
        );
    }
    let count = mosip.request(Operation::ReferenceCount);
    assert_eq!(
        mosip.call(count).await.outcome,
        Outcome::Success(Answer::Count(8))
    );

    server
}
