//! End-to-end behaviour under load and hostile input, against the real `abis serve` process:
//! a bounded loopback load holds its rate with no errors and bounded memory, an overload gets
//! RESOURCE_EXHAUSTED instead of collapse, and fuzzed gRPC messages never crash the server or
//! change the gallery.

mod support;

use std::path::{Path, PathBuf};

use abis_proto::v1::{
    identify_request, sample, DeleteRequest, GetRequest, IdentifyRequest, InsertRequest, Modality,
    ReferenceCountRequest, Sample, SampleList, VerifyRequest,
};
use bytes::{Buf, BufMut};
use prost::Message;
use support::Server;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// `abis client load` against `server`; returns its JSON summary.
fn load(server: &Server, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["client", "--addr", &server.addr, "load"];
    all.extend_from_slice(args);
    let out = support::abis_json(&all);
    eprintln!("load {args:?}: {out}");
    out
}

/// An ISO template of an afis sample image, extracted by `abis finger extract`.
fn iso_template(dir: &Path, sample: &str) -> PathBuf {
    let out = dir.join(format!("{sample}.iso"));
    let status = support::abis()
        .args([
            "finger",
            "extract",
            "--format",
            "iso",
            "--position",
            "1",
            "-o",
        ])
        .arg(&out)
        .arg(support::afis_sample(sample))
        .status()
        .expect("abis finger extract");
    assert!(status.success());
    out
}

/// Resident memory of a process, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

fn count_of(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[test]
fn loopback_load_holds_its_rate_with_no_errors_and_bounded_memory() {
    if !support::models_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let enrolled = iso_template(tmp.path(), "p1_1.png");
    let probe = iso_template(tmp.path(), "p1_2.png");
    let server = Server::start();
    let probe_arg = format!("1={}", probe.display());

    // A gallery of 300 synthetic records (two fingers each) and one real person.
    #[rustfmt::skip]
    let args = ["--rpc", "insert", "--synthetic-fingers", "2", "--requests", "300", "--concurrency", "8"];
    let r = load(&server, &args);
    assert_eq!(count_of(&r, "ok"), 300, "{r}");
    // And 150 more through InsertStream: three streams of 50 records, numbered after those.
    #[rustfmt::skip]
    let args = [
        "--rpc", "insert-stream", "--synthetic-fingers", "2", "--requests", "3",
        "--stream-records", "50", "--first", "300", "--concurrency", "2",
    ];
    let r = load(&server, &args);
    assert_eq!(count_of(&r, "ok"), 3, "{r}");
    assert_eq!(count_of(&r, "records_ok"), 150, "{r}");
    let count = support::abis_json(&["client", "--addr", &server.addr, "count"]);
    assert_eq!(count["count"], 450, "{count}");
    let finger_arg = format!("1={}", enrolled.display());
    support::abis_json(&[
        "client",
        "--addr",
        &server.addr,
        "insert",
        "900000000001",
        "--finger",
        &finger_arg,
    ]);

    // Warm up (thread pools, caches, allocator arenas), then a measured phase four times as
    // long: memory must not grow with the number of requests served.
    let probe_load = |rpc: &str, requests: u64| {
        let n = requests.to_string();
        #[rustfmt::skip]
        let args = [
            "--rpc", rpc, "--id", "900000000001", "--finger", &probe_arg, "--requests", &n,
            "--concurrency", "8", "--max-seconds", "300",
        ];
        let r = load(&server, &args);
        assert_eq!(
            count_of(&r, "requests"),
            requests,
            "bounded run cut short: {r}"
        );
        assert_eq!(count_of(&r, "ok"), requests, "errors under load: {r}");
        assert!(r["errors"].as_object().unwrap().is_empty(), "{r}");
    };
    probe_load("identify", 100);
    probe_load("verify", 100);
    let before = rss_bytes(server.pid());
    probe_load("identify", 400);
    probe_load("verify", 400);
    let after = rss_bytes(server.pid());
    eprintln!("server RSS {} MiB -> {} MiB", before >> 20, after >> 20);
    assert!(
        after < before + (48 << 20),
        "server memory grew from {before} to {after} bytes over 800 requests"
    );
    // The real person is still found first.
    let found = support::abis_json(&[
        "client",
        "--addr",
        &server.addr,
        "identify",
        "--finger",
        &probe_arg,
    ]);
    assert_eq!(
        found["candidates"][0]["reference_id"], "900000000001",
        "{found}"
    );
    assert!(server.stop().success());
}

#[test]
fn overload_gets_resource_exhausted_instead_of_collapse() {
    if !support::models_ready() {
        return;
    }
    // One identify at a time and one waiting; probes are images, so each takes a while.
    let server = Server::start_with(
        tempfile::tempdir().unwrap(),
        &[
            ("ABIS__LIMITS__RPC__IDENTIFY__MAX_CONCURRENCY", "1".as_ref()),
            ("ABIS__LIMITS__RPC__IDENTIFY__QUEUE_DEPTH", "1".as_ref()),
        ],
    );
    let image = support::afis_sample("p1_2.png");
    let probe_arg = format!("1={}", image.display());
    #[rustfmt::skip]
    let args = ["--rpc", "identify", "--finger", &probe_arg, "--requests", "24", "--concurrency", "24"];
    let r = load(&server, &args);
    let errors = r["errors"].as_object().unwrap();
    let exhausted = errors
        .get("ResourceExhausted")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    assert!(exhausted >= 10, "expected most requests refused: {r}");
    assert!(
        count_of(&r, "ok") >= 2,
        "admitted requests must complete: {r}"
    );
    assert_eq!(
        count_of(&r, "ok") + exhausted,
        24,
        "only RESOURCE_EXHAUSTED is acceptable under overload: {r}"
    );
    // Once the burst is over, the server serves normally.
    #[rustfmt::skip]
    let args = ["--rpc", "identify", "--finger", &probe_arg, "--requests", "3", "--concurrency", "1"];
    let r = load(&server, &args);
    assert_eq!(count_of(&r, "ok"), 3, "{r}");
    assert!(server.stop().success());
}

/// A codec that sends and receives message bodies as raw bytes, to put arbitrary bytes on the
/// wire where the server expects a protobuf message.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

const UNARY: [&str; 8] = [
    "Insert",
    "Identify",
    "Verify",
    "Delete",
    "Get",
    "ReferenceCount",
    "PendingJobs",
    "Extract",
];

async fn call(channel: &Channel, method: &str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone())
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path: http::uri::PathAndQuery = format!("/abis.v1.Abis/{method}").parse().unwrap();
    if method == "InsertStream" {
        let items = tokio_stream::iter(vec![body.clone(), body]);
        grpc.client_streaming(Request::new(items), path, Raw)
            .await
            .map(|r| r.into_inner())
    } else {
        grpc.unary(Request::new(body), path, Raw)
            .await
            .map(|r| r.into_inner())
    }
}

fn finger_sample(data: sample::Data) -> Sample {
    Sample {
        modality: Modality::Finger as i32,
        finger_position: 1,
        ppi: 500.0,
        data: Some(data),
    }
}

/// Hostile bodies: random bytes, valid messages of the wrong type, valid messages cut short,
/// huge fields, absurd counts and values.
fn hostile_bodies() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for len in [1usize, 2, 5, 16, 100, 1000, 65_536] {
        for k in 0..4 {
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            out.push((format!("random {len} bytes #{k}"), bytes));
        }
    }
    let insert = InsertRequest {
        reference_id: "123456789012".into(),
        samples: vec![finger_sample(sample::Data::Image(vec![
            0x89, b'P', b'N', b'G',
        ]))],
        metadata: [("k".to_string(), "v".to_string())].into(),
    };
    let identify = IdentifyRequest {
        probe: Some(identify_request::Probe::Samples(SampleList {
            samples: vec![finger_sample(sample::Data::Template(b"FMR\0 20".to_vec()))],
        })),
        gallery_reference_ids: vec!["x".repeat(300)],
        max_results: u32::MAX,
        target_fpir: 999,
        open_case: false,
    };
    let verify = VerifyRequest {
        face_choice: 0,
        probe: vec![],
        reference: None,
        target_fmr: f64::NAN,
    };
    let typed: Vec<(&str, Vec<u8>)> = vec![
        ("an InsertRequest", insert.encode_to_vec()),
        ("an IdentifyRequest", identify.encode_to_vec()),
        ("a VerifyRequest with NaN", verify.encode_to_vec()),
        (
            "a DeleteRequest",
            DeleteRequest {
                reference_id: "../../etc/passwd".into(),
            }
            .encode_to_vec(),
        ),
        (
            "a GetRequest",
            GetRequest {
                reference_id: "\u{0}".into(),
                include_templates: true,
            }
            .encode_to_vec(),
        ),
        (
            "a ReferenceCountRequest",
            ReferenceCountRequest {}.encode_to_vec(),
        ),
    ];
    for (name, bytes) in typed {
        for cut in [1, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            out.push((
                format!("{name} cut at {cut}"),
                bytes[..cut.min(bytes.len())].to_vec(),
            ));
        }
        out.push((name.to_string(), bytes));
    }
    // Field 1 (a string in every request) holding invalid UTF-8.
    out.push((
        "invalid UTF-8 in field 1".into(),
        vec![0x0a, 0x02, 0xff, 0xfe],
    ));
    // A length prefix far beyond the message.
    out.push((
        "length overrun".into(),
        vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x41],
    ));
    // Huge fields: a 1 MiB referenceId, a 40 MiB random "image", 20,000 tiny samples.
    out.push((
        "1 MiB referenceId".into(),
        InsertRequest {
            reference_id: "9".repeat(1 << 20),
            ..insert.clone()
        }
        .encode_to_vec(),
    ));
    let junk: Vec<u8> = (0..40 << 20).map(|_| next() as u8).collect();
    out.push((
        "40 MiB image".into(),
        InsertRequest {
            samples: vec![finger_sample(sample::Data::Image(junk))],
            ..insert.clone()
        }
        .encode_to_vec(),
    ));
    out.push((
        "20,000 samples".into(),
        InsertRequest {
            samples: vec![finger_sample(sample::Data::Template(vec![1, 2, 3])); 20_000],
            ..insert.clone()
        }
        .encode_to_vec(),
    ));
    // Beyond the 64 MiB message limit.
    out.push(("65 MiB body".into(), vec![0u8; 65 << 20]));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_grpc_messages_never_crash_the_server_or_change_the_gallery() {
    if !support::models_ready() {
        return;
    }
    let mut server = Server::start();
    let channel = tonic::transport::Endpoint::from_shared(server.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = support::connect(&server).await;
    let p1 = std::fs::read(support::afis_sample("p1_1.png")).unwrap();
    client
        .insert(InsertRequest {
            reference_id: "100000000001".into(),
            samples: vec![finger_sample(sample::Data::Image(p1))],
            metadata: Default::default(),
        })
        .await
        .expect("insert");

    let mut codes: std::collections::BTreeMap<String, usize> = Default::default();
    let bodies = hostile_bodies();
    let methods = UNARY.iter().copied().chain(["InsertStream"]);
    for method in methods {
        for (what, body) in &bodies {
            let r = call(&channel, method, body.clone()).await;
            let code = match &r {
                Ok(_) => Code::Ok,
                Err(s) => s.code(),
            };
            // A panic or a dropped connection shows as UNKNOWN/INTERNAL/UNAVAILABLE; a decoding
            // failure must be the caller's fault, never the server's.
            assert!(
                !matches!(code, Code::Unknown | Code::Internal | Code::Unavailable),
                "{method} with {what}: {r:?}"
            );
            *codes.entry(format!("{method}:{code:?}")).or_default() += 1;
        }
        assert!(server.is_running(), "server died during {method}");
    }
    eprintln!("status codes: {codes:?}");

    // Nothing was added, removed or changed.
    let count = client
        .reference_count(ReferenceCountRequest {})
        .await
        .expect("count")
        .into_inner()
        .count;
    assert_eq!(count, 1);
    let p2 = std::fs::read(support::afis_sample("p1_2.png")).unwrap();
    let found =
        support::identify_samples(&mut client, vec![finger_sample(sample::Data::Image(p2))]).await;
    assert_eq!(
        found.candidates.first().map(|c| c.reference_id.as_str()),
        Some("100000000001")
    );
    assert!(server.stop().success());
}

/// A record of `fingers` synthetic finger templates, or with a malformed one when `broken`.
fn stream_record(number: u64, fingers: u8, broken: bool) -> InsertRequest {
    let samples = (1..=fingers)
        .map(|pos| Sample {
            modality: Modality::Finger as i32,
            finger_position: pos.into(),
            ppi: 0.0,
            data: Some(sample::Data::Template(if broken {
                b"not a template".to_vec()
            } else {
                abis_client::synthetic_iso_template(number * 16 + u64::from(pos), pos, 40)
            })),
        })
        .collect();
    InsertRequest {
        reference_id: format!("stream-{number}"),
        samples,
        metadata: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_stream_counts_every_record_and_stops_at_a_bad_one() {
    let server = Server::start();
    let mut client = support::connect(&server).await;
    let count = |mut c: abis_proto::v1::abis_client::AbisClient<Channel>| async move {
        let r = c.reference_count(ReferenceCountRequest {}).await.unwrap();
        r.into_inner().count
    };
    // 100 records (more than the records the server inserts at once), one of them sent twice.
    let mut records: Vec<InsertRequest> = (0..100).map(|n| stream_record(n, 2, false)).collect();
    records.push(stream_record(7, 2, false));
    let r = client
        .insert_stream(tokio_stream::iter(records))
        .await
        .expect("a stream of good records")
        .into_inner();
    assert_eq!((r.inserted, r.already_present), (100, 1));
    assert_eq!(count(client.clone()).await, 100);
    // A malformed record after 30 good ones: INVALID_ARGUMENT, the records before it kept, the
    // bad one not, and none read after the error was known beyond those already started.
    let mut records: Vec<InsertRequest> = (100..130).map(|n| stream_record(n, 2, false)).collect();
    records.push(stream_record(130, 2, true));
    records.extend((131..200).map(|n| stream_record(n, 2, false)));
    let err = client
        .insert_stream(tokio_stream::iter(records))
        .await
        .expect_err("a malformed record fails the stream");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let after = count(client.clone()).await;
    assert!(
        (130..200).contains(&after),
        "{after} records: the 30 before the bad one must be kept, the bad one not"
    );
    let get = client
        .get(GetRequest {
            reference_id: "stream-130".into(),
            include_templates: false,
        })
        .await;
    assert_eq!(get.map(drop).map_err(|e| e.code()), Err(Code::NotFound));
    for n in 100..130 {
        let got = client
            .get(GetRequest {
                reference_id: format!("stream-{n}"),
                include_templates: false,
            })
            .await;
        assert!(got.is_ok(), "stream-{n} sent before the bad record is kept");
    }
    assert!(server.stop().success());
}
