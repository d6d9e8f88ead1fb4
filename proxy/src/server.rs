//! Process wiring: storage, tokens, orchestrator, agent ingest (gRPC) and the REST listeners
//! (TLS, plus plain HTTP when `insecure` is set), with a bounded graceful shutdown.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use axum::Router;
use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown, service::TowerToHyperService};
use kreplay_proto::v1::capture_service_server::CaptureServiceServer;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    agents::AgentHub,
    api::{self, Ctx},
    auth::{SharedToken, load_or_create_agent_token, write_secret_file},
    config::Config,
    ingest::IngestService,
    orchestrator::{Orchestrator, agent_process, local::LocalOrchestrator},
    recording::RecordingManager,
    replay::ReplayManager,
    store::{SharedStore, SqliteStore},
};

/// Longest a graceful shutdown may take before connections are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// One capture or replay command; mock sets of large responses need room (the agent drops and
/// counts a capture larger than its own limit before sending it).
const MAX_GRPC_MESSAGE: usize = 256 << 20;

pub async fn run(config: Config, token_file: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let store: SharedStore = Arc::new(
        SqliteStore::open_in(&config.data_dir)
            .with_context(|| format!("opening the store in {}", config.data_dir.display()))?,
    );
    let shared_token = SharedToken::generate().context("creating the shared token")?;
    write_secret_file(&token_file, shared_token.secret.expose())
        .with_context(|| format!("writing {}", token_file.display()))?;
    tracing::info!(path = %token_file.display(), token_id = %shared_token.token_id,
        "shared token written (mode 0600); send it as `Authorization: Bearer <token>`");
    let agent_token_path = config.data_dir.join("agent.token");
    let agent_token = load_or_create_agent_token(&agent_token_path)
        .with_context(|| format!("agent token {}", agent_token_path.display()))?;

    // Bind everything first: a taken port fails start-up before any deployment is started.
    let grpc_listener = bind(config.grpc_listen, "gRPC (agents)").await?;
    let tls_listener = match config.tls {
        true => Some((
            bind(config.listen, "REST (TLS)").await?,
            tls_config(&config).context("TLS listener")?,
        )),
        false => None,
    };
    let plain_listener = match config.insecure {
        true => Some(bind(config.insecure_listen, "REST (plain HTTP, insecure)").await?),
        false => None,
    };
    if tls_listener.is_none() && plain_listener.is_none() {
        anyhow::bail!("no REST listener: enable `tls` or `insecure` in the config");
    }

    let shutdown = CancellationToken::new();
    let orchestrator: Arc<dyn Orchestrator> = LocalOrchestrator::start(&config, shutdown.clone())
        .context("starting local deployments")?;
    let hub = Arc::new(AgentHub::new());
    let recording = RecordingManager::new(
        store.clone(),
        hub.clone(),
        orchestrator.clone(),
        Duration::from_secs(config.flush_timeout_secs),
    );
    recording
        .resume()
        .await
        .context("resuming recording sessions")?;

    let ingest = IngestService {
        store: store.clone(),
        hub: hub.clone(),
        recording: recording.clone(),
        agent_token,
    };
    let grpc = tokio::spawn(serve_grpc(grpc_listener, ingest, shutdown.clone()));

    let interrupted = store
        .interrupt_running_runs()
        .context("closing replays of an earlier run")?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "replays of an earlier proxy run marked INTERRUPTED"
        );
    }
    let replay = ReplayManager::new(store.clone(), orchestrator.clone(), hub.clone());
    let ctx = Arc::new(Ctx {
        config: config.clone(),
        store,
        hub: hub.clone(),
        orchestrator,
        recording,
        replay: replay.clone(),
        shared_token,
        shutdown: shutdown.clone(),
    });
    let router = api::router(ctx);
    let mut rest = Vec::new();
    if let Some((listener, tls)) = tls_listener {
        rest.push(tokio::spawn(serve_tls(
            listener,
            router.clone(),
            tls,
            shutdown.clone(),
        )));
    }
    if let Some(listener) = plain_listener {
        let cancel = shutdown.clone();
        rest.push(tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await
                .context("plain REST listener")
        }));
    }

    // Started last: it connects to the gRPC listener above.
    let agent = config.local_agent.clone().map(|spec| {
        tokio::spawn(agent_process::supervise(
            config.clone(),
            spec,
            shutdown.clone(),
        ))
    });

    shutdown_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    // Replays stop their instances and their mock servers (which needs the agents) and store
    // what they have before the agent streams end.
    replay.stop_all();
    replay.wait_idle(SHUTDOWN_GRACE).await;
    hub.disconnect_all();
    let all = async {
        for task in rest {
            if let Ok(Err(e)) = task.await {
                tracing::warn!(error = %e, "REST listener");
            }
        }
        if let Ok(Err(e)) = grpc.await {
            tracing::warn!(error = %e, "gRPC listener");
        }
    };
    if let Some(agent) = agent {
        let _ = agent.await;
    }
    if tokio::time::timeout(SHUTDOWN_GRACE * 2, all).await.is_err() {
        tracing::warn!("listeners did not stop in time; exiting anyway");
    }
    Ok(())
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {what} on {addr}"))?;
    tracing::info!(%addr, "{what} listening");
    Ok(listener)
}

async fn serve_grpc(
    listener: TcpListener,
    ingest: IngestService,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let service = CaptureServiceServer::new(ingest)
        .max_decoding_message_size(MAX_GRPC_MESSAGE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE);
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            cancel.cancelled_owned(),
        )
        .await
        .context("gRPC server")
}

fn tls_config(config: &Config) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (certs, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) =
        match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                let certs = CertificateDer::pem_file_iter(cert)
                    .with_context(|| format!("reading {}", cert.display()))?
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("parsing {}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .with_context(|| format!("reading {}", key.display()))?;
                (certs, key)
            }
            _ => {
                let generated = rcgen::generate_simple_self_signed(vec![
                    "localhost".to_owned(),
                    "127.0.0.1".to_owned(),
                ])
                .context("generating a self-signed certificate")?;
                tracing::info!(
                    "TLS: using a self-signed certificate (set tls_cert/tls_key to use yours)"
                );
                let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
                (vec![generated.cert.der().clone()], key)
            }
        };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key")?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

async fn serve_tls(
    listener: TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "TLS accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "TLS connection");
            }
        });
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("TLS connections still open after the grace period");
    }
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
