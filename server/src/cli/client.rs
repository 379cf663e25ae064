//! `abis client`: enroll and search from a shell against a running server. JSON on stdout; on
//! error the gRPC status on stderr and a non-zero exit.

use std::path::{Path, PathBuf};

use abis_proto::v1::abis_client::AbisClient;
use abis_proto::v1::{
    identify_request, sample, verify_request, Decision, DeleteRequest, GetRequest, IdentifyRequest,
    InsertRequest, Modality, ModalityScore, ReferenceCountRequest, Sample, SampleList,
    VerifyRequest,
};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;

#[derive(Args)]
pub struct ClientArgs {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// API key sent as `authorization: Bearer KEY` (also from ABIS_API_KEY).
    #[arg(long, env = "ABIS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// CA bundle (PEM) that signed the server's certificate: turns TLS on (use an https:// addr).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// Server name to verify in its certificate (default: the address's host).
    #[arg(long)]
    domain: Option<String>,
    #[command(subcommand)]
    command: ClientCommand,
}

/// Biometric samples given on the command line. FILE is an image or a template in any
/// supported format; POS is the ISO finger position 1..10.
#[derive(Args, Default)]
struct SampleArgs {
    /// A finger: POS=FILE (repeatable).
    #[arg(long = "finger", value_name = "POS=FILE")]
    fingers: Vec<String>,
    /// A face image or face template (repeatable).
    #[arg(long = "face", value_name = "FILE")]
    faces: Vec<PathBuf>,
    /// Resolution of the finger images in pixels per inch (default: from the file, else 500).
    #[arg(long)]
    ppi: Option<f32>,
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Store a record under ID.
    Insert {
        id: String,
        #[command(flatten)]
        samples: SampleArgs,
    },
    /// Search the gallery with a stored record (--id) or with samples.
    Identify {
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        samples: SampleArgs,
        #[arg(long, default_value_t = 10)]
        max_results: u32,
        /// MOSIP FPIR code: 30 = 1e-3, 40 = 1e-4, 50 = 1e-5.
        #[arg(long, default_value_t = 30)]
        target_fpir: u32,
    },
    /// Compare samples with a stored record.
    Verify {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        samples: SampleArgs,
        /// False-match rate of the decision.
        #[arg(long, default_value_t = 1e-4)]
        fmr: f64,
    },
    /// Remove a record.
    Delete { id: String },
    /// Number of records.
    Count,
    /// What is enrolled under ID.
    Get { id: String },
    /// Bounded load on one RPC: `--requests N --concurrency C`; JSON with the rate held,
    /// latency percentiles and errors by status.
    Load {
        #[command(flatten)]
        load: super::load::LoadArgs,
        #[command(flatten)]
        samples: SampleArgs,
    },
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Image or template? Templates are recognised by their content, everything else is an image.
fn data(bytes: Vec<u8>) -> sample::Data {
    let is_template = abis_engine::template::FingerTemplate::detect_format(&bytes).is_some()
        || abis_engine::face::template::FaceTemplate::decode(&bytes).is_ok();
    if is_template {
        sample::Data::Template(bytes)
    } else {
        sample::Data::Image(bytes)
    }
}

impl SampleArgs {
    fn samples(&self) -> anyhow::Result<Vec<Sample>> {
        let mut out = Vec::new();
        for spec in &self.fingers {
            let (pos, file) = spec.split_once('=').context("--finger takes POS=FILE")?;
            let position: u32 = pos
                .parse()
                .with_context(|| format!("finger position {pos:?}"))?;
            if !(1..=10).contains(&position) {
                bail!("finger position {position} is not an ISO position 1..10");
            }
            out.push(Sample {
                modality: Modality::Finger as i32,
                finger_position: position,
                ppi: self.ppi.unwrap_or(0.0),
                data: Some(data(read(Path::new(file))?)),
            });
        }
        for file in &self.faces {
            out.push(Sample {
                modality: Modality::Face as i32,
                finger_position: 0,
                ppi: 0.0,
                data: Some(data(read(file)?)),
            });
        }
        Ok(out)
    }
}

fn modalities(m: &[ModalityScore]) -> serde_json::Value {
    m.iter()
        .map(|s| {
            json!({
                "modality": Modality::try_from(s.modality).map(|m| m.as_str_name()).unwrap_or("UNKNOWN"),
                "score": s.score,
                "finger_positions": s.finger_positions,
            })
        })
        .collect()
}

pub fn run(args: ClientArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut endpoint = tonic::transport::Channel::from_shared(args.addr.clone())
            .with_context(|| format!("bad address {}", args.addr))?;
        if let Some(ca) = &args.ca {
            let identity = args.cert.as_deref().zip(args.key.as_deref());
            endpoint = endpoint.tls_config(crate::tls::client_config(ca, identity, args.domain.as_deref())?)?;
        }
        let channel = endpoint.connect().await.with_context(|| format!("connecting to {}", args.addr))?;
        let interceptor = crate::auth::ApiKeyInterceptor::optional(args.api_key.as_deref())?;
        let mut client = AbisClient::with_interceptor(channel, interceptor)
            .max_decoding_message_size(crate::serve::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::serve::MAX_MESSAGE_BYTES);
        let out = match args.command {
            ClientCommand::Load { load, samples } => {
                super::load::run(client, load, samples.samples()?).await?
            }
            ClientCommand::Insert { id, samples } => {
                let r = client
                    .insert(InsertRequest { reference_id: id, samples: samples.samples()?, metadata: Default::default() })
                    .await
                    .map_err(grpc)?
                    .into_inner();
                json!({"inserted": !r.already_present, "already_present": r.already_present})
            }
            ClientCommand::Identify { id, samples, max_results, target_fpir } => {
                let probe = match id {
                    Some(id) => identify_request::Probe::ReferenceId(id),
                    None => identify_request::Probe::Samples(SampleList { samples: samples.samples()? }),
                };
                let r = client
                    .identify(IdentifyRequest {
                        probe: Some(probe),
                        gallery_reference_ids: vec![],
                        max_results,
                        target_fpir,
                    })
                    .await
                    .map_err(grpc)?
                    .into_inner();
                json!({
                    "candidates": r.candidates.iter().map(|c| json!({
                        "reference_id": c.reference_id,
                        "score": c.score,
                        "modalities": modalities(&c.modalities),
                    })).collect::<Vec<_>>(),
                    "threshold": r.threshold,
                    "gallery_size": r.gallery_size,
                })
            }
            ClientCommand::Verify { id, samples, fmr } => {
                let r = client
                    .verify(VerifyRequest {
                        probe: samples.samples()?,
                        reference: Some(verify_request::Reference::ReferenceId(id)),
                        target_fmr: fmr,
                    })
                    .await
                    .map_err(grpc)?
                    .into_inner();
                let name = |d: i32| Decision::try_from(d).map(|d| d.as_str_name()).unwrap_or("UNKNOWN");
                json!({
                    "decision": name(r.decision),
                    "score": r.score,
                    "modalities": r.modalities.iter().map(|m| json!({
                        "modality": Modality::try_from(m.modality).map(|m| m.as_str_name()).unwrap_or("UNKNOWN"),
                        "decision": name(m.decision),
                        "score": m.score,
                    })).collect::<Vec<_>>(),
                })
            }
            ClientCommand::Delete { id } => {
                client.delete(DeleteRequest { reference_id: id }).await.map_err(grpc)?;
                json!({"deleted": true})
            }
            ClientCommand::Count => {
                let r = client.reference_count(ReferenceCountRequest {}).await.map_err(grpc)?.into_inner();
                json!({"count": r.count})
            }
            ClientCommand::Get { id } => {
                let r = client
                    .get(GetRequest { reference_id: id, include_templates: false })
                    .await
                    .map_err(grpc)?
                    .into_inner();
                json!({
                    "reference_id": r.reference_id,
                    "fingers": r.fingers.iter().map(|f| json!({"position": f.finger_position, "impressions": f.impressions})).collect::<Vec<_>>(),
                    "faces": r.faces,
                    "metadata": r.metadata,
                })
            }
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        Ok(())
    })
}

/// The gRPC status, as a person reads it.
fn grpc(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("gRPC {:?}: {}", s.code(), s.message())
}
