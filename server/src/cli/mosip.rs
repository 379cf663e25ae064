//! `abis mosip load`: the same requests through MOSIP's queue and through gRPC, against one
//! running `abis serve` whose `[mosip]` adapter consumes the queue, for the queue-vs-gRPC
//! figures of the README. Four phases, one after another: Inserts over gRPC (samples inline),
//! Inserts over the queue (a `referenceURL` to a datashare this command serves), then as many
//! Identifies each way, of records just inserted. Prints one JSON object: throughput of every
//! phase, Identify latency percentiles (queue: from the request's SEND to its answer's arrival,
//! the datashare fetch included, as MOSIP sees it) and the queue-to-gRPC ratios.
//!
//! The records are synthetic minutiae (ISO/IEC 19794-2, CBEFF format type 2 over the queue),
//! so the figures measure what the queue path adds, not extraction: the hardest case for the
//! queue, whose fixed costs (broker round trips, the ledger's fsync, the datashare fetch) are
//! not hidden behind extraction; or, with `--images`, finger images, which are
//! extraction-bound. An untimed round of Identifies over gRPC comes before the timed ones.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use abis_mosip::cbeff::{self, Bir, Modality as CbeffModality};
use abis_mosip::finger_record::{self, Compression, NewFingerImage};
use abis_mosip::message::{Operation, Outcome, Request, Response};
use abis_mosip::position::mosip_subtype;
use abis_mosip::stomp::{Client, Config, MessageKind};
use abis_proto::v1::abis_client::AbisClient;
use abis_proto::v1::{
    identify_request, sample, IdentifyRequest, InsertRequest, Modality, Sample, SampleList,
};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tonic::transport::Channel;

#[derive(Subcommand)]
pub enum MosipCommand {
    /// Throughput and Identify latency of the same requests through the queue and through gRPC.
    Load(LoadArgs),
}

#[derive(Args, Clone)]
pub struct LoadArgs {
    /// gRPC address of the running `abis serve` whose `[mosip]` adapter consumes the queue.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    grpc: String,
    /// The broker's STOMP connector, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:61613")]
    broker: String,
    #[arg(long, default_value = "mosip-to-abis1")]
    request_queue: String,
    #[arg(long, default_value = "abis1-to-mosip")]
    response_queue: String,
    /// Requests per phase (Inserts of new records, then as many Identifies), each way.
    #[arg(long, default_value_t = 200)]
    requests: u64,
    /// Requests in flight at once, each way.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Fingers per record: synthetic minutiae, or images with --images.
    #[arg(long, default_value_t = 2)]
    fingers: u8,
    /// Finger images (e.g. an FVC2002 folder; 500 ppi) instead of synthetic minutiae: sent
    /// over gRPC as PGM, over the queue as uncompressed ISO 19794-4 records (format type 7).
    #[arg(long, value_name = "DIR")]
    images: Option<std::path::PathBuf>,
    /// referenceIds are PREFIX-grpc-N and PREFIX-queue-N: change it between runs on one gallery.
    #[arg(long, default_value = "load")]
    prefix: String,
}

pub fn run(command: MosipCommand) -> anyhow::Result<()> {
    let MosipCommand::Load(args) = command;
    if args.requests == 0 || args.concurrency == 0 || !(1..=10).contains(&args.fingers) {
        bail!("--requests and --concurrency must be above 0, --fingers 1 to 10");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(load(args))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn load(args: LoadArgs) -> anyhow::Result<serde_json::Value> {
    let records = Arc::new(Records::new(&args)?);
    let share = serve_datashare(Arc::clone(&records)).await?;
    let grpc = AbisClient::connect(args.grpc.clone())
        .await
        .with_context(|| format!("gRPC {}", args.grpc))?;
    let queue = Arc::new(Queue::connect(&args).await?);
    let (n, c) = (args.requests, args.concurrency);
    let prefix = args.prefix.clone();
    let (g, r, p) = (grpc.clone(), Arc::clone(&records), prefix.clone());
    let grpc_insert = phase(n, c, move |i| {
        grpc_insert(g.clone(), format!("{p}-grpc-{i}"), r.samples(i))
    })
    .await?;
    let (q, s) = (Arc::clone(&queue), share.clone());
    let queue_insert = phase(n, c, move |i| {
        let mut r = q.request(Operation::Insert);
        r.reference_id = Some(format!("{prefix}-queue-{i}"));
        r.reference_url = Some(format!("{s}/r/{i}"));
        Arc::clone(&q).call(r)
    })
    .await?;
    // Untimed: whatever the inserts left to do in the background is done before Identify is
    // timed either way.
    let identify_grpc =
        |g: AbisClient<Channel>, r: Arc<Records>| move |i| grpc_identify(g.clone(), r.samples(i));
    phase(n, c, identify_grpc(grpc.clone(), Arc::clone(&records))).await?;
    let grpc_identify = phase(n, c, identify_grpc(grpc.clone(), Arc::clone(&records))).await?;
    let (q, s) = (Arc::clone(&queue), share.clone());
    let queue_identify = phase(n, c, move |i| {
        let mut r = q.request(Operation::Identify);
        r.reference_url = Some(format!("{s}/r/{i}"));
        r.flags.max_results = Some(10);
        Arc::clone(&q).call(r)
    })
    .await?;
    Ok(report(
        &args,
        [&grpc_insert, &queue_insert, &grpc_identify, &queue_identify],
    ))
}

/// The records both paths send: synthetic minutiae, or finger images.
enum Records {
    Synthetic {
        fingers: u8,
    },
    /// 8-bit gray images (width, height, pixels), `fingers` consecutive ones per record.
    Images {
        fingers: u8,
        images: Vec<(u16, u16, Vec<u8>)>,
    },
}

impl Records {
    fn new(args: &LoadArgs) -> anyhow::Result<Records> {
        let Some(dir) = &args.images else {
            return Ok(Records::Synthetic {
                fingers: args.fingers,
            });
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("--images {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let limits = abis_engine::image::Limits::default();
        let mut images = Vec::new();
        for file in files {
            let bytes = std::fs::read(&file)?;
            let Ok(decoded) = abis_engine::image::decode(&bytes, &limits) else {
                continue;
            };
            let img = decoded.image;
            let (Ok(w), Ok(h)) = (u16::try_from(img.width), u16::try_from(img.height)) else {
                continue;
            };
            images.push((w, h, img.pixels));
        }
        if images.is_empty() {
            bail!("no decodable image in {}", dir.display());
        }
        Ok(Records::Images {
            fingers: args.fingers,
            images,
        })
    }

    /// Record `n` as (ISO finger position, data): ISO 19794-2 templates, or gray images.
    fn parts(&self, n: u64) -> Vec<(u8, Part<'_>)> {
        match self {
            Records::Synthetic { fingers } => (1..=*fingers)
                .map(|pos| {
                    let seed = n.wrapping_mul(16) ^ u64::from(pos) ^ 0x6d6f_7369_7000;
                    let t = abis_client::synthetic_iso_template(seed, pos, 40);
                    (pos, Part::Template(t))
                })
                .collect(),
            Records::Images { fingers, images } => (1..=*fingers)
                .map(|pos| {
                    let k = (n * u64::from(*fingers) + u64::from(pos) - 1) as usize;
                    let (w, h, pixels) = &images[k % images.len()];
                    (pos, Part::Image(*w, *h, pixels))
                })
                .collect(),
        }
    }

    /// Record `n` as gRPC samples: templates, or the images as PGM (what the adapter makes of
    /// an uncompressed 19794-4 image).
    fn samples(&self, n: u64) -> Vec<Sample> {
        let sample = |pos: u8, data| Sample {
            modality: Modality::Finger as i32,
            finger_position: pos.into(),
            ppi: 0.0,
            data: Some(data),
        };
        let parts = self.parts(n).into_iter().map(|(pos, part)| match part {
            Part::Template(t) => sample(pos, sample::Data::Template(t)),
            Part::Image(w, h, pixels) => {
                let mut pgm = format!("P5\n{w} {h}\n255\n").into_bytes();
                pgm.extend_from_slice(pixels);
                Sample {
                    ppi: 500.0,
                    ..sample(pos, sample::Data::Image(pgm))
                }
            }
        });
        parts.collect()
    }

    /// Record `n` as MOSIP's CBEFF: minutiae BDBs (format type 2) or ISO 19794-4 records of
    /// uncompressed images (format type 7).
    fn cbeff(&self, n: u64) -> String {
        let birs: Vec<Bir> = self
            .parts(n)
            .into_iter()
            .map(|(pos, part)| {
                let (format_type, bdb) = match part {
                    Part::Template(t) => (2, t),
                    Part::Image(width, height, data) => {
                        let image = NewFingerImage {
                            position: pos,
                            compression: Compression::Uncompressed,
                            width,
                            height,
                            ppi: 500,
                            quality: 80,
                            data,
                            extended: &[],
                        };
                        (7, finger_record::write_2011(&[image]))
                    }
                };
                Bir {
                    format_type: Some(format_type),
                    modality: CbeffModality::Finger,
                    subtype: mosip_subtype(pos).unwrap_or_default().into(),
                    format_owner: Some("Mosip".into()),
                    quality: Some(80),
                    exception: false,
                    bdb,
                }
            })
            .collect();
        cbeff::to_xml(&birs)
    }
}

enum Part<'a> {
    Template(Vec<u8>),
    Image(u16, u16, &'a [u8]),
}

/// A datashare on 127.0.0.1 serving `/r/N` as record N's CBEFF; returns its base URL.
async fn serve_datashare(records: Arc<Records>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer_fetch(stream, Arc::clone(&records)));
        }
    });
    Ok(base)
}

async fn answer_fetch(mut stream: tokio::net::TcpStream, records: Arc<Records>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(k) => head.extend_from_slice(&buf[..k]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let path = line.split_whitespace().nth(1).unwrap_or_default();
    let record = path.strip_prefix("/r/").and_then(|n| n.parse::<u64>().ok());
    let (status, body) = match record {
        Some(n) => ("200 OK", records.cbeff(n)),
        None => ("404 Not Found", String::new()),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
}

async fn grpc_insert(
    mut grpc: AbisClient<Channel>,
    reference_id: String,
    samples: Vec<Sample>,
) -> Result<(), String> {
    let request = InsertRequest {
        reference_id,
        samples,
        metadata: Default::default(),
    };
    grpc.insert(request)
        .await
        .map(drop)
        .map_err(|s| s.to_string())
}

async fn grpc_identify(mut grpc: AbisClient<Channel>, samples: Vec<Sample>) -> Result<(), String> {
    let request = IdentifyRequest {
        probe: Some(identify_request::Probe::Samples(SampleList { samples })),
        max_results: 10,
        ..Default::default()
    };
    grpc.identify(request)
        .await
        .map(drop)
        .map_err(|s| s.to_string())
}

/// MOSIP's side of the queues: requests sent, each answer handed to the request's waiter.
struct Queue {
    client: Client,
    request_queue: String,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Response>>>>,
    next: Mutex<u64>,
    prefix: String,
}

impl Queue {
    async fn connect(args: &LoadArgs) -> anyhow::Result<Queue> {
        let (client, mut answers) = Client::connect(&Config::new(args.broker.clone()))
            .await
            .with_context(|| format!("STOMP {}", args.broker))?;
        client
            .subscribe(&args.response_queue, "load-answers", 256)
            .await?;
        let waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Response>>>> = Arc::default();
        let (acker, route) = (client.clone(), Arc::clone(&waiting));
        tokio::spawn(async move {
            while let Some(m) = answers.next().await {
                if let Ok(response) = Response::parse(&m.body) {
                    let id = &response.request_id;
                    let waiter = route.lock().ok().and_then(|mut w| w.remove(id));
                    if let Some(w) = waiter {
                        let _ = w.send(response);
                    }
                }
                // After the hand-over: an answer's latency does not include this round trip.
                let _ = acker.ack(&m).await;
            }
        });
        Ok(Queue {
            client,
            request_queue: args.request_queue.clone(),
            waiting,
            next: Mutex::new(0),
            prefix: args.prefix.clone(),
        })
    }

    fn request(&self, operation: Operation) -> Request {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        *next += 1;
        let now = abis_server::audit::rfc3339_utc(std::time::SystemTime::now());
        Request::new(operation, format!("{}-{}", self.prefix, *next), now)
    }

    /// Sends `request` and waits for its answer (a failure answer is an error).
    async fn call(self: Arc<Self>, request: Request) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(request.request_id.clone(), tx);
        }
        let body = request.to_json();
        self.client
            .send(&self.request_queue, body.as_bytes(), MessageKind::Text)
            .await
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(300), rx)
            .await
            .map_err(|_| format!("no answer to {} in 300 s", request.request_id))?
            .map_err(|_| "the answer subscription ended".to_string())?;
        match response.outcome {
            Outcome::Success(_) => Ok(()),
            Outcome::Failure(reason) => Err(format!("{}: failure {reason:?}", request.request_id)),
        }
    }
}

/// One phase's outcome: wall time and every request's latency.
struct Phase {
    seconds: f64,
    latencies: Vec<Duration>,
}

/// Runs `one(0..n)` with `concurrency` in flight; the first error ends the run.
async fn phase<F, Fut>(n: u64, concurrency: usize, one: F) -> anyhow::Result<Phase>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let one = Arc::new(one);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (one, next) = (Arc::clone(&one), Arc::clone(&next));
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, String>(latencies);
                }
                let t = Instant::now();
                one(i).await?;
                latencies.push(t.elapsed());
            }
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done?.map_err(anyhow::Error::msg)?);
    }
    latencies.sort_unstable();
    Ok(Phase {
        seconds: t0.elapsed().as_secs_f64(),
        latencies,
    })
}

fn report(args: &LoadArgs, [gi, qi, gd, qd]: [&Phase; 4]) -> serde_json::Value {
    let rate = |p: &Phase| p.latencies.len() as f64 / p.seconds.max(1e-9);
    let ms = |p: &Phase, q: f64| abis_client::percentile_ms(&p.latencies, q);
    let side = |insert: &Phase, identify: &Phase| {
        json!({
            "insert_per_s": rate(insert),
            "identify_per_s": rate(identify),
            "identify_p50_ms": ms(identify, 0.50),
            "identify_p99_ms": ms(identify, 0.99),
        })
    };
    json!({
        "requests_per_phase": args.requests,
        "concurrency": args.concurrency,
        "fingers": args.fingers,
        "grpc": side(gi, gd),
        "queue": side(qi, qd),
        "queue_over_grpc": {
            "insert_throughput": rate(qi) / rate(gi).max(1e-9),
            "identify_throughput": rate(qd) / rate(gd).max(1e-9),
            "identify_p50_extra_ms": ms(qd, 0.50) - ms(gd, 0.50),
            "identify_p99_extra_ms": ms(qd, 0.99) - ms(gd, 0.99),
        },
    })
}
