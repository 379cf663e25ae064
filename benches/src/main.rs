//! `abis-bench`: the scale harness. Writes synthetic galleries straight into the store format,
//! searches them with mated and non-mated probes, finds duplicates gallery-wide, and compares
//! synthetic score distributions with real ones.

mod dist;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "abis-bench", about = "Scale harness of the abis engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compare synthetic genuine/impostor score distributions with real ones (quantiles as JSON,
    /// histograms as a PNG).
    Dist(dist::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Dist(a) => dist::run(&a),
    }
}
