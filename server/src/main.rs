//! `abis`: the gRPC server and the command-line tools of the matching engine.

mod cli;
mod serve;
mod service;

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
    Serve(serve::ServeArgs),
    /// Fingerprint tools.
    #[command(subcommand)]
    Finger(cli::finger::FingerCommand),
}

fn main() -> ExitCode {
    let args = Cli::parse();
    let models = cli::ModelsDir(args.models);
    let result = match args.command {
        Command::Serve(a) => serve::run(a, &models),
        Command::Finger(c) => cli::finger::run(c, &models),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
