//! The gRPC uplink: one bidirectional stream to the proxy, re-established with backoff.
//!
//! Envelopes are read from the [`Outbox`] in sequence order; acknowledgements release them.
//! Targets and flush requests from the proxy are forwarded to the capture pipeline.

use std::{path::PathBuf, sync::Arc, time::Duration};

use kreplay_proto::v1::{
    AgentMessage, Hello, agent_message, capture_service_client::CaptureServiceClient,
    envelope::Body, proxy_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{metadata::MetadataValue, transport::Endpoint};

use crate::{
    mockserver::MockServers,
    outbox::{Outbox, Priority},
    pipeline::Command,
};

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("reading the agent token from {path}: {source}")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the agent token is not a valid header value")]
    TokenFormat,
    #[error("proxy address: {0}")]
    Address(String),
    #[error("connecting to the proxy: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("stream: {0}")]
    Status(#[from] tonic::Status),
    #[error("the capture pipeline stopped")]
    PipelineGone,
}

pub struct UplinkConfig {
    pub proxy_url: String,
    pub token_file: PathBuf,
    pub agent_id: String,
    pub node_name: String,
}

/// Largest gRPC message either way (the proxy allows the same); `pipeline` keeps every capture
/// well below it.
pub const MAX_MESSAGE: usize = 256 << 20;

/// Runs until cancelled, reconnecting with exponential backoff (100 ms .. 5 s).
pub async fn run(
    config: UplinkConfig,
    outbox: Arc<Outbox>,
    commands: std::sync::mpsc::Sender<Command>,
    mock_servers: Arc<MockServers>,
    connected: Arc<std::sync::atomic::AtomicBool>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    while !cancel.is_cancelled() {
        let started = tokio::time::Instant::now();
        let result = tokio::select! {
            r = stream_once(&config, &outbox, &commands, &mock_servers, &connected) => r,
            _ = cancel.cancelled() => break,
        };
        connected.store(false, std::sync::atomic::Ordering::Relaxed);
        match result {
            Err(UplinkError::PipelineGone) => break,
            Err(e) => tracing::warn!(error = %e, "uplink to the proxy lost; reconnecting"),
            Ok(()) => tracing::info!("proxy closed the stream; reconnecting"),
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = cancel.cancelled() => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn stream_once(
    config: &UplinkConfig,
    outbox: &Arc<Outbox>,
    commands: &std::sync::mpsc::Sender<Command>,
    mock_servers: &Arc<MockServers>,
    connected: &std::sync::atomic::AtomicBool,
) -> Result<(), UplinkError> {
    // Read on every connect: the token may be rotated while the agent runs.
    let token =
        std::fs::read_to_string(&config.token_file).map_err(|source| UplinkError::Token {
            path: config.token_file.clone(),
            source,
        })?;
    let bearer: MetadataValue<_> = format!("Bearer {}", token.trim())
        .parse()
        .map_err(|_| UplinkError::TokenFormat)?;
    let channel = Endpoint::from_shared(config.proxy_url.clone())
        .map_err(|e| UplinkError::Address(e.to_string()))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(8 << 20))
        .connect()
        .await?;
    let mut client =
        CaptureServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", bearer.clone());
            Ok(req)
        })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);

    let (tx, rx) = mpsc::channel::<AgentMessage>(64);
    let hello = Hello {
        agent_id: config.agent_id.clone(),
        node_name: config.node_name.clone(),
        resend_from: outbox.oldest_seq(),
    };
    tx.send(AgentMessage {
        msg: Some(agent_message::Msg::Hello(hello)),
    })
    .await
    .map_err(|_| UplinkError::Status(tonic::Status::cancelled("stream closed")))?;
    let mut inbound = client.stream(ReceiverStream::new(rx)).await?.into_inner();
    connected.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(proxy = %config.proxy_url, resend_from = outbox.oldest_seq(), "uplink connected");

    let sender = tokio::spawn(send_loop(outbox.clone(), tx));
    let result = async {
        while let Some(message) = inbound.message().await? {
            match message.msg {
                Some(proxy_message::Msg::Ack(ack)) => outbox.ack(ack.up_to_seq),
                Some(proxy_message::Msg::Targets(set)) => commands
                    .send(Command::Targets(set))
                    .map_err(|_| UplinkError::PipelineGone)?,
                Some(proxy_message::Msg::Flush(flush)) => commands
                    .send(Command::Flush(flush.record_id))
                    .map_err(|_| UplinkError::PipelineGone)?,
                Some(proxy_message::Msg::Replay(command)) => {
                    // Commands may take a moment (the redirect goes through the capture
                    // thread); the stream keeps being read meanwhile.
                    let (servers, outbox) = (mock_servers.clone(), outbox.clone());
                    tokio::spawn(async move {
                        let report = servers.handle(command).await;
                        outbox.push(Body::ReplayReport(report), Priority::Essential);
                    });
                }
                None => tracing::debug!("empty message from the proxy ignored"),
            }
        }
        Ok(())
    }
    .await;
    sender.abort();
    result
}

/// Sends everything the outbox holds, oldest first, then follows new pushes.
async fn send_loop(outbox: Arc<Outbox>, tx: mpsc::Sender<AgentMessage>) {
    let mut next = outbox.oldest_seq();
    loop {
        let batch = outbox.since(next, 64);
        if batch.is_empty() {
            // A missed wake-up is bounded by the timeout; Notify keeps one permit anyway.
            let _ = tokio::time::timeout(Duration::from_millis(200), outbox.pushed()).await;
            continue;
        }
        for envelope in batch {
            next = envelope.seq + 1;
            let message = AgentMessage {
                msg: Some(agent_message::Msg::Envelope(envelope)),
            };
            if tx.send(message).await.is_err() {
                return;
            }
        }
    }
}
