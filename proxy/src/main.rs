//! `kreplay-proxy`: runs the control plane in local mode from a config file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kreplay_proxy::{config::Config, server};

#[derive(Debug, Parser)]
#[command(
    name = "kreplay-proxy",
    version,
    about = "kreplay control plane (local mode)"
)]
struct Args {
    /// YAML config file (listeners, data dir, local deployments). Defaults apply when absent.
    #[arg(long, env = "KREPLAY_CONFIG")]
    config: Option<PathBuf>,
    /// Where the current shared token is written (mode 0600) so local scripts can use it.
    /// Default: <data_dir>/shared.token.
    #[arg(long, env = "KREPLAY_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Overrides `data_dir` from the config file.
    #[arg(long, env = "KREPLAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => Config::load(path).with_context(|| format!("loading {}", path.display()))?,
        None => Config::from_yaml("{}").context("default config")?,
    };
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let token_file = args
        .token_file
        .unwrap_or_else(|| config.data_dir.join("shared.token"));
    server::run(config, token_file).await
}
