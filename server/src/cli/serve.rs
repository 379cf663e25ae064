//! `abis serve`: the command line over [`abis_server::serve::run`].

use std::net::SocketAddr;
use std::path::PathBuf;

use abis_server::config::Config;
use clap::Args;

use super::ModelsDir;

#[derive(Args)]
pub struct ServeArgs {
    /// Configuration file over the built-in defaults; ABIS__SECTION__KEY variables override both.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory of the gallery (overrides server.data_dir; created if missing).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Address to listen on (overrides server.listen).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

pub fn run(args: ServeArgs, models: &ModelsDir) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(d) = args.data {
        config.server.data_dir = d;
    }
    if let Some(l) = args.listen {
        config.server.listen = l;
    }
    abis_server::serve::run(config, models.0.clone())?;
    Ok(())
}
