//! kreplay node agent: captures the traffic of the processes the proxy targets and streams it to
//! the proxy over gRPC.

#[cfg(test)]
mod capture_tests;
mod connections;
mod loader;
mod metrics;
mod mockserver;
mod outbox;
mod pipeline;
mod protocols;
mod records;
mod redirect;
mod targets;
mod tracefs;
mod uplink;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, atomic::AtomicBool},
};

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::{
    metrics::Counters,
    mockserver::MockServers,
    outbox::{Outbox, OutboxLimits},
    pipeline::{Command, Pipeline},
};

/// Every captured message allocates (heads, bodies, envelopes): a per-thread-cache allocator
/// keeps that off the capture thread's critical path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "kreplay-agent", version, about)]
struct Args {
    /// gRPC address of the proxy.
    #[arg(
        long,
        env = "KREPLAY_PROXY_GRPC",
        default_value = "http://127.0.0.1:9090"
    )]
    proxy: String,
    /// File holding the agent token (the proxy writes it to <data_dir>/agent.token).
    #[arg(
        long,
        env = "KREPLAY_AGENT_TOKEN_FILE",
        default_value = ".kreplay/agent.token"
    )]
    token_file: PathBuf,
    /// Node name reported to the proxy.
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Size of the data ring in bytes (a power of two, at least one page).
    #[arg(long, default_value_t = 32 << 20)]
    data_ring_bytes: u32,
    /// Size of the control ring (opens and closes) in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    control_ring_bytes: u32,
    /// Captures held while the proxy is unreachable or slow; beyond this they are dropped and counted.
    #[arg(long, default_value_t = 50_000)]
    queue_envelopes: usize,
    /// Byte budget of the same queue.
    #[arg(long, default_value_t = 512 << 20)]
    queue_bytes: usize,
    /// Serve Prometheus metrics here (GET /metrics).
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_addr: SocketAddr,
}

fn random_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
    Ok(hex::encode(bytes))
}

async fn serve_metrics(
    addr: SocketAddr,
    counters: Arc<Counters>,
    outbox: Arc<Outbox>,
    connected: Arc<AtomicBool>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    use axum::{Router, routing::get};
    let app = Router::new().route(
        "/metrics",
        get(move || async move {
            let text = counters.render(
                outbox.len(),
                connected.load(std::sync::atomic::Ordering::Relaxed),
            );
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4",
                )],
                text,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics listener on {addr}"))?;
    tracing::info!(%addr, "metrics at /metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let capture = loader::load(loader::RingSizes {
        data: args.data_ring_bytes,
        control: args.control_ring_bytes,
    })
    .context("starting capture")?;

    let counters = Arc::new(Counters::default());
    let outbox = Arc::new(Outbox::new(OutboxLimits {
        max_envelopes: args.queue_envelopes,
        max_bytes: args.queue_bytes,
    }));
    let connected = Arc::new(AtomicBool::new(false));
    let cancel = CancellationToken::new();
    let (commands, command_rx) = std::sync::mpsc::channel();

    let pipeline = Pipeline::new(capture, outbox.clone(), counters.clone());
    let pipeline_thread = std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || pipeline.run(command_rx))
        .context("starting the capture thread")?;

    let node_name = match args.node_name {
        Some(name) => name,
        None => std::fs::read_to_string("/etc/hostname")
            .unwrap_or_default()
            .trim()
            .to_string(),
    };
    let config = uplink::UplinkConfig {
        proxy_url: args.proxy,
        token_file: args.token_file,
        agent_id: format!("agent-{}", random_id()?),
        node_name,
    };
    tracing::info!(agent_id = %config.agent_id, "agent starting");
    let mock_servers =
        Arc::new(MockServers::new(commands.clone()).context("starting the mock server runtime")?);
    let uplink = tokio::spawn(uplink::run(
        config,
        outbox.clone(),
        commands.clone(),
        mock_servers.clone(),
        connected.clone(),
        cancel.clone(),
    ));
    let metrics = tokio::spawn(serve_metrics(
        args.metrics_addr,
        counters,
        outbox,
        connected,
        cancel.clone(),
    ));

    shutdown_signal().await;
    tracing::info!("shutting down");
    // Redirects are detached before the capture thread (which owns the programs) stops.
    mock_servers.stop_all().await;
    cancel.cancel();
    let _ = commands.send(Command::Stop);
    let _ = uplink.await;
    match metrics.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics server"),
        Err(e) => tracing::warn!(error = %e, "metrics task"),
        Ok(Ok(())) => {}
    }
    if pipeline_thread.join().is_err() {
        anyhow::bail!("capture thread panicked");
    }
    Ok(())
}
