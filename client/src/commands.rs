//! `abis client`: enroll and search from a shell against a running server. JSON on stdout; on
//! error the gRPC status (or what is wrong with the command line) on stderr and a non-zero exit.

use std::path::PathBuf;

use abis_proto::v1::{
    identify_request, verify_request, BackupRequest, Decision, DeleteRequest, GetRequest,
    IdentifyRequest, InsertRequest, Modality, ModalityScore, ReferenceCountRequest, SampleList,
    VerifyRequest,
};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::load::{self, LoadArgs};
use crate::samples::SampleArgs;
use crate::{connect, Client, ClientError, ConnectOptions};

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Server address: HOST:PORT (plaintext, or TLS with --ca) or a URL (http://, https://).
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: String,
    /// API key sent as `authorization: Bearer KEY` (also from ABIS_API_KEY).
    #[arg(long, env = "ABIS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// CA bundle (PEM) that signed the server's certificate: turns TLS on.
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
    /// Largest message sent or received, in bytes (the server has its own limit).
    #[arg(long, default_value_t = 64 << 20)]
    max_message_bytes: usize,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Subcommand, Debug)]
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
        /// Open an adjudication case when there are candidates (prints `case_id`).
        #[arg(long)]
        open_case: bool,
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
    /// A consistent backup of the running server's gallery into DEST, a new directory on the
    /// server's filesystem (admin role). Check it with `abis store verify DEST`.
    Backup { destination: String },
    /// What is enrolled under ID.
    Get { id: String },
    /// N:N deduplication of the whole gallery, a job of the server (admin role).
    Dedup {
        #[command(subcommand)]
        command: crate::dedup::DedupCommand,
    },
    /// Adjudication cases (role adjudicator): list, get, decide.
    Cases {
        #[command(subcommand)]
        command: crate::cases::CaseCommand,
    },
    /// Bounded load on one RPC: `--requests N --concurrency C`; JSON with the rate held,
    /// latency percentiles and errors by status.
    Load {
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        samples: SampleArgs,
    },
}

impl ClientArgs {
    fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            addr: self.addr.clone(),
            api_key: self.api_key.clone(),
            ca: self.ca.clone(),
            identity: self.cert.clone().zip(self.key.clone()),
            domain: self.domain.clone(),
            max_message_bytes: self.max_message_bytes,
        }
    }
}

/// Runs one `abis client` command and prints its JSON answer.
pub fn run(args: ClientArgs) -> Result<(), ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ClientError::Runtime)?;
    let options = args.connect_options();
    let out = runtime.block_on(async move {
        match args.command {
            ClientCommand::Cases { command } => {
                let cases = crate::connect_cases(&options).await?;
                crate::cases::execute(cases, command).await
            }
            other => execute(connect(&options).await?, other).await,
        }
    })?;
    println!(
        "{}",
        serde_json::to_string_pretty(&out).unwrap_or_else(|_| out.to_string())
    );
    Ok(())
}

async fn execute(mut client: Client, command: ClientCommand) -> Result<Value, ClientError> {
    Ok(match command {
        ClientCommand::Load { load, samples } => {
            load::run(client, load, samples.samples()?).await?
        }
        ClientCommand::Insert { id, samples } => {
            let r = client
                .insert(InsertRequest {
                    reference_id: id,
                    samples: samples.samples()?,
                    metadata: Default::default(),
                })
                .await?
                .into_inner();
            json!({"inserted": !r.already_present, "already_present": r.already_present})
        }
        ClientCommand::Identify {
            id,
            samples,
            max_results,
            target_fpir,
            open_case,
        } => {
            let probe = match id {
                Some(id) => identify_request::Probe::ReferenceId(id),
                None => identify_request::Probe::Samples(SampleList {
                    samples: samples.samples()?,
                }),
            };
            let r = client
                .identify(IdentifyRequest {
                    probe: Some(probe),
                    gallery_reference_ids: vec![],
                    max_results,
                    target_fpir,
                    open_case,
                })
                .await?
                .into_inner();
            json!({
                "candidates": r.candidates.iter().map(|c| json!({
                    "reference_id": c.reference_id,
                    "score": c.score,
                    "modalities": modalities(&c.modalities),
                })).collect::<Vec<_>>(),
                "threshold": r.threshold,
                "gallery_size": r.gallery_size,
                "case_id": (!r.case_id.is_empty()).then_some(r.case_id),
            })
        }
        ClientCommand::Verify { id, samples, fmr } => {
            let r = client
                .verify(VerifyRequest {
                    face_choice: 0,
                    probe: samples.samples()?,
                    reference: Some(verify_request::Reference::ReferenceId(id)),
                    target_fmr: fmr,
                })
                .await?
                .into_inner();
            json!({
                "decision": decision_name(r.decision),
                "score": r.score,
                "modalities": r.modalities.iter().map(|m| json!({
                    "modality": modality_name(m.modality),
                    "decision": decision_name(m.decision),
                    "score": m.score,
                })).collect::<Vec<_>>(),
            })
        }
        ClientCommand::Delete { id } => {
            client.delete(DeleteRequest { reference_id: id }).await?;
            json!({"deleted": true})
        }
        ClientCommand::Backup { destination } => {
            let r = client
                .backup(BackupRequest { destination })
                .await?
                .into_inner();
            json!({"files": r.files, "bytes": r.bytes, "position": r.position})
        }
        ClientCommand::Dedup { command } => crate::dedup::execute(client, command).await?,
        // `run` serves cases on their own connection.
        ClientCommand::Cases { .. } => {
            return Err(ClientError::Usage(
                "cases need the adjudication client".into(),
            ))
        }
        ClientCommand::Count => {
            let r = client
                .reference_count(ReferenceCountRequest {})
                .await?
                .into_inner();
            json!({"count": r.count})
        }
        ClientCommand::Get { id } => {
            let r = client
                .get(GetRequest {
                    reference_id: id,
                    include_templates: false,
                })
                .await?
                .into_inner();
            json!({
                "reference_id": r.reference_id,
                "fingers": r.fingers.iter()
                    .map(|f| json!({"position": f.finger_position, "impressions": f.impressions}))
                    .collect::<Vec<_>>(),
                "faces": r.faces,
                "metadata": r.metadata,
            })
        }
    })
}

fn modality_name(m: i32) -> &'static str {
    Modality::try_from(m).map_or("UNKNOWN", |m| m.as_str_name())
}

fn decision_name(d: i32) -> &'static str {
    Decision::try_from(d).map_or("UNKNOWN", |d| d.as_str_name())
}

fn modalities(m: &[ModalityScore]) -> Value {
    m.iter()
        .map(|s| {
            json!({
                "modality": modality_name(s.modality),
                "score": s.score,
                "finger_positions": s.finger_positions,
            })
        })
        .collect()
}
