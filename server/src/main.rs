//! `abis`: the gRPC server and the command-line tools of the matching engine.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "abis",
    version,
    about = "Biometric matching engine for a national identity registry"
)]
struct Cli {
    /// Directory holding models/manifest.toml (default: $ABIS_MODELS_DIR, else ./models).
    #[arg(long, global = true, value_name = "DIR")]
    models: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gRPC API.
    Serve(cli::serve::ServeArgs),
    /// Fingerprint tools.
    #[command(subcommand)]
    Finger(cli::finger::FingerCommand),
    /// Face tools: detect, embed, verify, evaluate.
    #[command(subcommand)]
    Face(cli::face::FaceCommand),
    /// API keys: create (`keys add NAME --roles R1,R2 --file KEYS_FILE`) and list.
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// Gallery store tools: encryption keys (`keygen`) and rekeying a stopped gallery.
    #[command(subcommand)]
    Store(cli::store::StoreCommand),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(cli::audit::AuditCommand),
    /// A partitioned, replicated gallery on NATS JetStream: `init` creates it, `status` shows it.
    #[command(subcommand)]
    Cluster(cli::cluster::ClusterCommand),
    /// MOSIP's ABIS queue: `load` compares it with gRPC on a running server.
    #[command(subcommand)]
    Mosip(cli::mosip::MosipCommand),
    /// Talk to a running server: insert, identify, verify, delete, count, get.
    Client(Box<abis_client::ClientArgs>),
}

fn main() -> ExitCode {
    let args = Cli::parse();
    let models = cli::ModelsDir(args.models);
    let result = match args.command {
        Command::Serve(a) => cli::serve::run(a, &models),
        Command::Finger(c) => cli::finger::run(c, &models),
        Command::Keys(c) => cli::keys::run(c),
        Command::Audit(c) => cli::audit::run(c),
        Command::Store(c) => cli::store::run(c),
        Command::Cluster(c) => cli::cluster::run(c),
        Command::Face(c) => cli::face::run(c, &models),
        Command::Mosip(c) => cli::mosip::run(c),
        Command::Client(a) => abis_client::run(*a).map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
