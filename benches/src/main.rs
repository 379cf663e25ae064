//! `abis-bench`: the scale harness. Writes synthetic galleries straight into the store format,
//! searches them with mated and non-mated probes, finds duplicates gallery-wide, and compares
//! synthetic score distributions with real ones.

mod bands_eval;
mod codes_eval;
mod dedup;
mod dist;
mod gallery;
mod gen;
mod population;
mod probe;
mod progress;
mod search;

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
    /// Single-finger ranking power of the finger codes on real templates (penetration vs loss).
    CodesEval(codes_eval::Args),
    /// Candidate generation by LSH bands over the finger codes, on synthetic people.
    BandsEval(bands_eval::Args),
    /// Find duplicate records gallery-wide (N:N), resumable.
    Dedup(dedup::Args),
    /// Write a synthetic gallery straight into a store that `abis serve --data DIR` opens.
    Gen(gen::Args),
    /// Write one person's finger captures as templates (probes for gRPC).
    Probe(probe::Args),
    /// Search mated and non-mated probes; one JSON line of accuracy, speed and footprint.
    Search(search::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Dist(a) => dist::run(&a),
        Command::CodesEval(a) => codes_eval::run(&a),
        Command::BandsEval(a) => bands_eval::run(&a),
        Command::Dedup(a) => dedup::run(&a),
        Command::Gen(a) => gen::run(&a),
        Command::Probe(a) => probe::run(&a),
        Command::Search(a) => search::run(&a),
    }
}
