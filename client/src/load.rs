//! `abis client load`: a bounded load generator for one RPC against a running server, for the
//! load figures in docs/security.md and docs/scale.md and the loopback load tests. Prints one
//! JSON object: requests, the rate held, latency percentiles and errors by status code.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use abis_proto::v1::{
    identify_request, sample, verify_request, IdentifyRequest, InsertRequest, Modality, Sample,
    SampleList, VerifyDocumentRequest, VerifyRequest,
};
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::{synthetic_iso_template, Client, ClientError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LoadRpc {
    /// Insert a new record per request (`--synthetic-fingers`, or the given samples).
    Insert,
    /// Insert `--stream-records` new records per request through one `InsertStream` (how an
    /// enrolment backend or a migration sends records in bulk).
    InsertStream,
    /// Identify the given samples against the whole gallery.
    Identify,
    /// Verify the given samples against `--id`.
    Verify,
    /// The bank counter: the given face sample(s) as the live photo against the chip files
    /// `--dg2` and `--sod` (passive authentication included).
    VerifyDocument,
}

#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    #[arg(long, value_enum)]
    pub rpc: LoadRpc,
    /// Requests to send in all.
    #[arg(long, default_value_t = 1000)]
    pub requests: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u64,
    /// Stop sending after this many seconds even if requests remain.
    #[arg(long, default_value_t = 60.0)]
    pub max_seconds: f64,
    /// Insert: records carry this many synthetic finger templates (random minutiae, distinct
    /// per record) instead of the given samples.
    #[arg(long, default_value_t = 0)]
    pub synthetic_fingers: u8,
    /// InsertStream: records sent in each stream.
    #[arg(long, default_value_t = 100)]
    pub stream_records: u64,
    /// Insert: referenceIds are PREFIX followed by the record number.
    #[arg(long, default_value = "load-")]
    pub id_prefix: String,
    /// Insert: first record number (to grow a gallery over several runs).
    #[arg(long, default_value_t = 0)]
    pub first: u64,
    /// Verify: the stored record to compare with.
    #[arg(long)]
    pub id: Option<String>,
    /// Identify: search only these records (`gallery_reference_ids`; repeatable). A search of one
    /// record measures what a call costs besides matching (e.g. a cluster router's fan-out).
    #[arg(long = "only", value_name = "ID")]
    pub only: Vec<String>,
    /// VerifyDocument: EF.DG2 as read from the chip.
    #[arg(long, value_name = "FILE")]
    pub dg2: Option<std::path::PathBuf>,
    /// VerifyDocument: EF.SOD as read from the chip.
    #[arg(long, value_name = "FILE")]
    pub sod: Option<std::path::PathBuf>,
}

/// The chip files of VerifyDocument, read once.
#[derive(Default)]
struct Chip {
    dg2: Vec<u8>,
    sod: Vec<u8>,
}

fn read_chip(args: &LoadArgs) -> Result<Chip, ClientError> {
    if args.rpc != LoadRpc::VerifyDocument {
        return Ok(Chip::default());
    }
    let (Some(dg2), Some(sod)) = (&args.dg2, &args.sod) else {
        return Err(ClientError::Usage(
            "--rpc verify-document needs --dg2 and --sod".into(),
        ));
    };
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))
    };
    Ok(Chip {
        dg2: read(dg2)?,
        sod: read(sod)?,
    })
}

/// Outcome of one request: latency, or the status code.
type Outcome = Result<Duration, tonic::Code>;

fn synthetic_record_samples(number: u64, fingers: u8) -> Vec<Sample> {
    (1..=fingers)
        .map(|pos| Sample {
            modality: Modality::Finger as i32,
            finger_position: pos.into(),
            ppi: 0.0,
            data: Some(sample::Data::Template(synthetic_iso_template(
                number.wrapping_mul(16) ^ u64::from(pos),
                pos,
                40,
            ))),
        })
        .collect()
}

/// The record `number` of an insert load.
fn insert_request(args: &LoadArgs, samples: &[Sample], number: u64) -> InsertRequest {
    let samples = if args.synthetic_fingers > 0 {
        synthetic_record_samples(number, args.synthetic_fingers)
    } else {
        samples.to_vec()
    };
    InsertRequest {
        reference_id: format!("{}{number}", args.id_prefix),
        samples,
        metadata: Default::default(),
    }
}

/// Records one request carries.
fn records_per_request(args: &LoadArgs) -> u64 {
    match args.rpc {
        LoadRpc::InsertStream => args.stream_records,
        _ => 1,
    }
}

async fn one(
    client: &mut Client,
    args: &LoadArgs,
    samples: &[Sample],
    chip: &Chip,
    n: u64,
) -> Outcome {
    let t0 = Instant::now();
    let r = match args.rpc {
        LoadRpc::Insert => client
            .insert(insert_request(args, samples, args.first + n))
            .await
            .map(drop),
        LoadRpc::InsertStream => {
            let first = args.first + n * args.stream_records;
            let records: Vec<InsertRequest> = (first..first + args.stream_records)
                .map(|number| insert_request(args, samples, number))
                .collect();
            client
                .insert_stream(tokio_stream::iter(records))
                .await
                .map(drop)
        }
        LoadRpc::Identify => client
            .identify(IdentifyRequest {
                probe: Some(identify_request::Probe::Samples(SampleList {
                    samples: samples.to_vec(),
                })),
                gallery_reference_ids: args.only.clone(),
                max_results: 10,
                target_fpir: 30,
                open_case: false,
            })
            .await
            .map(drop),
        LoadRpc::Verify => client
            .verify(VerifyRequest {
                face_choice: 0,
                probe: samples.to_vec(),
                reference: Some(verify_request::Reference::ReferenceId(
                    args.id.clone().unwrap_or_default(),
                )),
                target_fmr: 1e-4,
            })
            .await
            .map(drop),
        LoadRpc::VerifyDocument => client
            .verify_document(VerifyDocumentRequest {
                live: samples.to_vec(),
                dg2: chip.dg2.clone(),
                sod: chip.sod.clone(),
                target_fmr: 1e-4,
                ..Default::default()
            })
            .await
            .map(drop),
    };
    r.map(|()| t0.elapsed()).map_err(|s| s.code())
}

/// The `p` quantile (0-1) of sorted latencies, in milliseconds (0 when there are none).
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn check(args: &LoadArgs, samples: &[Sample]) -> Result<(), ClientError> {
    let usage = |m: &str| Err(ClientError::Usage(m.to_string()));
    if args.rpc == LoadRpc::Verify && args.id.is_none() {
        return usage("--rpc verify needs --id");
    }
    let inserts = matches!(args.rpc, LoadRpc::Insert | LoadRpc::InsertStream);
    if !inserts && samples.is_empty() {
        return usage("give the probe with --finger POS=FILE and/or --face FILE");
    }
    if inserts && samples.is_empty() && args.synthetic_fingers == 0 {
        return usage("give samples or --synthetic-fingers K");
    }
    if args.rpc == LoadRpc::InsertStream && args.stream_records == 0 {
        return usage("--stream-records must be at least 1");
    }
    Ok(())
}

/// Runs the load and returns its JSON summary.
pub async fn run(
    client: Client,
    args: LoadArgs,
    samples: Vec<Sample>,
) -> Result<serde_json::Value, ClientError> {
    check(&args, &samples)?;
    let chip = Arc::new(read_chip(&args)?);
    let args = Arc::new(args);
    let samples = Arc::new(samples);
    let next = Arc::new(AtomicU64::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::with_capacity(args.requests as usize)));
    let deadline = Instant::now() + Duration::from_secs_f64(args.max_seconds);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (mut client, args, samples, next, outcomes, chip) = (
            client.clone(),
            Arc::clone(&args),
            Arc::clone(&samples),
            Arc::clone(&next),
            Arc::clone(&outcomes),
            Arc::clone(&chip),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= args.requests || Instant::now() >= deadline {
                    break;
                }
                let o = one(&mut client, &args, &samples, &chip, n).await;
                outcomes.lock().unwrap_or_else(|e| e.into_inner()).push(o);
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| ClientError::Task(e.to_string()))?;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let outcomes: Vec<Outcome> =
        std::mem::take(&mut *outcomes.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(summary(&args, &outcomes, seconds))
}

fn summary(args: &LoadArgs, outcomes: &[Outcome], seconds: f64) -> serde_json::Value {
    let mut ok: Vec<Duration> = outcomes.iter().filter_map(|o| o.ok()).collect();
    ok.sort_unstable();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for code in outcomes.iter().filter_map(|o| o.err()) {
        *errors.entry(format!("{code:?}")).or_default() += 1;
    }
    let records = ok.len() as u64 * records_per_request(args);
    json!({
        "rpc": args.rpc.to_possible_value().map(|v| v.get_name().to_owned()),
        "requests": outcomes.len(),
        "records_ok": records,
        "records_per_s": records as f64 / seconds.max(1e-9),
        "concurrency": args.concurrency,
        "ok": ok.len(),
        "errors": errors,
        "seconds": seconds,
        "ok_per_s": ok.len() as f64 / seconds.max(1e-9),
        "p50_ms": percentile_ms(&ok, 0.50),
        "p90_ms": percentile_ms(&ok, 0.90),
        "p99_ms": percentile_ms(&ok, 0.99),
        "max_ms": ok.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    })
}
