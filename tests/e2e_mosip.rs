//! End-to-end: abis as MOSIP's ABIS. Real processes: an ActiveMQ broker (Debian's package), a
//! real `abis serve` with `[mosip]` on, and this test playing MOSIP's registration processor: a
//! small HTTP datashare serving CBEFF documents built from FVC2002 fingerprints (lossless
//! JPEG 2000 made by OpenJPEG, as MOSIP 1.2 registers them, or PNG, inside ISO/IEC
//! 19794-4:2011 records) and ATT faces (PNG inside ISO/IEC 19794-5:2011 records), and
//! JSON requests on `mosip-to-abis1`, answers read from `abis1-to-mosip`.
//!
//! Skipped, counted, without the broker, the models or the data (a failure under
//! ABIS_REQUIRE_DATA=1).

#[path = "support/mosip.rs"]
mod mosip_support;
mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use abis_mosip::cbeff::{self, Modality as CbeffModality};
use abis_mosip::face_record::{self, ImageType};
use abis_mosip::finger_record::{self, Compression, NewFingerImage};
use abis_mosip::message::{Answer, Operation, Outcome};
use abis_mosip::position::mosip_subtype;
use abis_mosip::stomp::{Client, Config, MessageKind};
use abis_proto::FailureReason;
use abis_testkit::activemq::ActiveMq;
use mosip_support::{
    bir, candidates, datashare_logged, failure, mosip_env, start_abis, Env, Fetched, Mosip,
    REQUESTS,
};
use support::Server;

/// An image file re-encoded as PNG (the engine decodes PNG inside ISO records).
fn png(path: &Path) -> Vec<u8> {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A finger image file as a record stores it: lossless JPEG 2000 made by OpenJPEG (what MOSIP
/// 1.2 registers), or PNG. `None` (a skip) without `opj_compress`.
fn finger_image(path: &Path, jpeg2000: bool) -> Option<(Compression, Vec<u8>)> {
    if !jpeg2000 {
        return Some((Compression::Png, png(path)));
    }
    let gray = image::open(path).unwrap().to_luma8();
    let jp2 = abis_testkit::openjpeg::jpeg2000(gray.width(), gray.height(), gray.as_raw(), None)?;
    Some((Compression::Jpeg2000Lossless, jp2))
}

/// One person's capture: FVC fingers (`finger`, `impression`) and an ATT face.
struct Capture<'a> {
    fingers: [u32; 3],
    impression: u32,
    face: &'a str,
    jpeg2000: bool,
}

/// A person's CBEFF: the fingers at ISO positions 2, 3, 7, the face, and a right thumb marked
/// as an exception (missing).
fn person_cbeff(fvc: &Path, att: &Path, capture: Capture) -> Option<Vec<u8>> {
    let mut birs = Vec::new();
    for (finger, position) in capture.fingers.into_iter().zip([2u8, 3, 7]) {
        let file = fvc.join(format!("{finger}_{}.tif", capture.impression));
        let (compression, data) = finger_image(&file, capture.jpeg2000)?;
        let record = finger_record::write_2011(&[NewFingerImage {
            position,
            compression,
            width: 388,
            height: 374,
            ppi: 500,
            quality: 80,
            data: &data,
            extended: b"vendor extended data",
        }]);
        birs.push(bir(
            CbeffModality::Finger,
            7,
            mosip_subtype(position).unwrap(),
            record,
        ));
    }
    let mut missing = bir(CbeffModality::Finger, 7, "Right Thumb", Vec::new());
    missing.exception = true;
    birs.push(missing);
    let face_png = png(&att.join(capture.face));
    let face = face_record::write_2011(ImageType::Png, 92, 112, &face_png, 0);
    birs.push(bir(CbeffModality::Face, 8, "", face));
    Some(cbeff::to_xml(&birs).into_bytes())
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
    let Some(documents) = documents(&fvc, &att) else {
        return;
    };
    let (share, fetched) = datashare_logged(documents);
    let mut env = mosip_env(&broker, 3);
    // PendingJobs from what abis received (the broker's count is tested below).
    env.push(("ABIS__MOSIP__BROKER_STATISTICS", "false".into()));
    let server = start_abis(tempfile::tempdir().unwrap(), &env);
    let mut mosip = Mosip::connect(&broker).await;

    types_inserts_and_identify(&mut mosip, &share).await;
    failures(&mut mosip, &share).await;
    rejected_requests(&mut mosip, &broker).await;
    delete_and_pending_jobs(&mut mosip, &share).await;
    let server = sigkill_in_flight(&mut mosip, &share, server, &env).await;
    let server = sigterm_drains(&mut mosip, (&share, &fetched), server, &env).await;

    // A broker restart: abis reconnects and keeps answering.
    broker.restart();
    mosip.reconnect(&broker).await;
    let ping = mosip.request(Operation::Ping);
    assert_eq!(
        mosip.call(ping).await.outcome,
        Outcome::Success(Answer::Done)
    );
    drop(server);
}

/// PendingJobs is the request queue's backlog as the broker counts it: 1,000 requests queued
/// behind it while abis was not running are all pending when abis takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_jobs_counts_the_queue_backlog() {
    if !support::models_ready() {
        return;
    }
    let broker_dir = tempfile::tempdir().unwrap();
    let Some(broker) = ActiveMq::start(broker_dir.path()) else {
        return;
    };
    if !broker.statistics_ready() {
        return;
    }
    let mut mosip = Mosip::connect(&broker).await;
    let pending = mosip.request(Operation::PendingJobs);
    mosip.send(&pending, MessageKind::Text).await;
    let mut queued = Vec::new();
    for i in 0..1000 {
        let op = [Operation::Ping, Operation::ReferenceCount][i % 2];
        let r = mosip.request(op);
        mosip.send(&r, MessageKind::Text).await;
        queued.push(r.request_id);
    }
    // One worker: the broker hands abis nothing behind PendingJobs before it is acknowledged,
    // so no queued request can be answered (and leave the queue) before it is counted.
    let server = start_abis(tempfile::tempdir().unwrap(), &mosip_env(&broker, 1));
    let answer = mosip
        .answer(&pending.request_id, Duration::from_secs(60))
        .await;
    assert_eq!(answer.outcome, Outcome::Success(Answer::JobsCount(1000)));
    for id in &queued {
        mosip.answer(id, Duration::from_secs(120)).await;
    }
    let idle = mosip.request(Operation::PendingJobs);
    assert_eq!(
        mosip.call(idle).await.outcome,
        Outcome::Success(Answer::JobsCount(0))
    );
    drop(server);
}

/// The datashare's documents: persons a (two captures, fingers in JPEG 2000), b and c (PNG),
/// and bad answers. `None` (a skip) without `opj_compress`.
fn documents(fvc: &Path, att: &Path) -> Option<HashMap<String, (u16, Vec<u8>)>> {
    let mut docs = HashMap::new();
    let person = |fingers, impression, face, jpeg2000| {
        let capture = Capture {
            fingers,
            impression,
            face,
            jpeg2000,
        };
        person_cbeff(fvc, att, capture)
    };
    let mut doc = |path: &str, body: Vec<u8>| docs.insert(path.to_string(), (200, body));
    doc("/a1", person([101, 102, 103], 1, "s1/1.pgm", true)?);
    doc("/a2", person([101, 102, 103], 2, "s1/2.pgm", true)?);
    doc("/b1", person([104, 105, 106], 1, "s2/1.pgm", false)?);
    doc("/c1", person([107, 108, 109], 1, "s3/1.pgm", false)?);
    doc("/notxml", b"%PDF-1.4 not a CBEFF".to_vec());
    doc(
        "/expired",
        br#"{"errors":[{"errorCode":"DAT-SER-006","message":"expired"}]}"#.to_vec(),
    );
    Some(docs)
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

async fn sigkill_in_flight(mosip: &mut Mosip, share: &str, server: Server, env: &Env) -> Server {
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
    mosip.assert_repeats_identical();
    let count = mosip.request(Operation::ReferenceCount);
    assert_eq!(
        mosip.call(count).await.outcome,
        Outcome::Success(Answer::Count(8))
    );

    server
}

/// SIGTERM with requests in flight: abis takes no new message, finishes and acknowledges those
/// in hand, and exits by itself; the rest wait in the broker for the next start. Unlike after a
/// SIGKILL, no request is delivered (and answered) twice.
async fn sigterm_drains(
    mosip: &mut Mosip,
    (share, fetched): (&str, &Fetched),
    server: Server,
    env: &Env,
) -> Server {
    let before: usize = mosip.answers.lock().unwrap().values().map(Vec::len).sum();
    let mut burst = Vec::new();
    for i in 0..6 {
        // Each fetch takes a second, so a request whose fetch has begun is in abis's hands.
        let mut r = mosip.request(Operation::Insert);
        r.reference_id = Some(format!("ref-t{i}"));
        r.reference_url = Some(format!("{share}/slow/c1?t{i}"));
        mosip.send(&r, MessageKind::Text).await;
        burst.push(r.request_id);
    }
    // The signal comes once the last request (taken after the first three) is being fetched.
    let t0 = std::time::Instant::now();
    while !fetched.lock().unwrap().iter().any(|p| p.ends_with("?t5")) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "abis never took the burst"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, data) = server.stop_keep_data();
    assert!(
        status.success(),
        "abis exits by itself after draining: {status:?}"
    );
    // Everything it had taken was answered (and acknowledged) before it exited.
    for id in &burst {
        assert!(
            mosip.answered(id),
            "{id} was taken before SIGTERM: answered before exit"
        );
    }
    let server = start_abis(data, env);
    // The count is answered after anything the new process might (wrongly) answer again.
    let count = mosip.request(Operation::ReferenceCount);
    assert_eq!(
        mosip.call(count).await.outcome,
        Outcome::Success(Answer::Count(14))
    );
    let after: usize = mosip.answers.lock().unwrap().values().map(Vec::len).sum();
    assert_eq!(
        after - before,
        burst.len() + 1,
        "each request of the burst answered exactly once (and the count once)"
    );
    server
}
