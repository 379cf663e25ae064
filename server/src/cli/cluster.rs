//! `abis cluster init|status`: create a cluster on NATS JetStream, and show its state.

use std::path::PathBuf;
use std::time::Duration;

use abis_cluster::{Catalog, InitOptions};
use abis_server::config::Config;
use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Create the cluster: the write-log stream (replicated on --replicas NATS servers) and its
    /// KV buckets, with a fixed number of shards. Running it again with the same options
    /// changes nothing.
    Init {
        #[command(flatten)]
        nats: NatsArgs,
        /// Number of shards, fixed for the life of the cluster (create many more than nodes).
        #[arg(long)]
        shards: u32,
        /// NATS servers holding each log message (3 in production; 1 for a single server).
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        /// Seconds a silent replica still holds back trimming of its shard's log.
        #[arg(long, default_value_t = 600)]
        replica_grace_s: u64,
        /// Name of the write-log stream.
        #[arg(long, default_value = abis_cluster::catalog::DEFAULT_STREAM)]
        stream: String,
    },
    /// Print shards, replicas, applied positions, lag and record counts as JSON.
    Status {
        #[command(flatten)]
        nats: NatsArgs,
    },
}

/// How to reach NATS: the `[cluster]` section of the configuration (file, then `ABIS__CLUSTER__*`
/// variables), with `--nats` over its URL.
#[derive(Args)]
pub struct NatsArgs {
    /// Configuration file (its [cluster] section: URL, credentials, CA).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// NATS servers, comma-separated (overrides cluster.nats_url).
    #[arg(long, value_name = "URLS")]
    nats: Option<String>,
}

async fn connect(args: &NatsArgs) -> anyhow::Result<async_nats::jetstream::Context> {
    let config = Config::load(args.config.as_deref())?;
    let mut nats = config.cluster.nats("abis-cli");
    if let Some(urls) = &args.nats {
        nats.urls = abis_cluster::NatsConfig::parse_urls(urls);
    }
    let client = nats.connect().await?;
    Ok(async_nats::jetstream::new(client))
}

pub fn run(command: ClusterCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("async runtime")?;
    runtime.block_on(async {
        let out = match command {
            ClusterCommand::Init {
                nats,
                shards,
                replicas,
                replica_grace_s,
                stream,
            } => {
                let js = connect(&nats).await?;
                let spec = abis_cluster::catalog::init(
                    &js,
                    &InitOptions {
                        stream,
                        shards,
                        stream_replicas: replicas,
                        replica_grace_s,
                    },
                )
                .await?;
                serde_json::to_value(spec)?
            }
            ClusterCommand::Status { nats } => {
                let catalog = Catalog::open(connect(&nats).await?, Duration::from_secs(10)).await?;
                abis_cluster::status::report(&catalog).await?
            }
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        Ok(())
    })
}
