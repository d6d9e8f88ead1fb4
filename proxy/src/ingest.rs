//! gRPC ingest: one bidirectional stream per agent.
//!
//! Envelopes are handled strictly in order. Consecutive captures are stored in one transaction,
//! then acknowledged; storing is idempotent on (agent_id, seq), so the agent's resend after a
//! reconnect never duplicates a test case. A `SessionFlushed` marker is only processed after
//! every envelope before it is stored, which is what lets `/record/stop` promise completeness.

use std::{pin::Pin, sync::Arc};

use futures::Stream;
use kreplay_proto::v1::{
    Ack, AgentMessage, Envelope, HttpExchange, ProxyMessage, Role, agent_message,
    capture_service_server::CaptureService, envelope::Body, proxy_message,
};
use tokio::sync::mpsc;
use tokio_stream::{StreamExt, wrappers::UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use kreplay_domain::noise::detect_timestamp_noise;

use crate::{
    agents::AgentHub,
    auth::Secret,
    model::{HeaderPair, NewTestCase, StoredRequest, StoredResponse},
    recording::RecordingManager,
    store::{NewMock, SharedStore, blocking},
    util::now_unix_ms,
};

/// Most envelopes handled (and stored) per batch.
const MAX_BATCH: usize = 512;

pub struct IngestService {
    pub store: SharedStore,
    pub hub: Arc<AgentHub>,
    pub recording: Arc<RecordingManager>,
    pub agent_token: Secret,
}

type OutStream = Pin<Box<dyn Stream<Item = Result<ProxyMessage, Status>> + Send>>;

#[tonic::async_trait]
impl CaptureService for IngestService {
    type StreamStream = OutStream;

    async fn stream(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        if self.agent_token.check_bearer(header).is_err() {
            return Err(Status::unauthenticated("invalid agent token"));
        }
        let mut inbound = request.into_inner();
        let hello = match inbound.next().await {
            Some(Ok(AgentMessage {
                msg: Some(agent_message::Msg::Hello(hello)),
            })) => hello,
            Some(Ok(_)) => return Err(Status::invalid_argument("the first message must be Hello")),
            Some(Err(status)) => return Err(status),
            None => return Err(Status::cancelled("stream closed before Hello")),
        };
        if hello.agent_id.is_empty() || hello.agent_id.len() > 128 {
            return Err(Status::invalid_argument(
                "agent_id must be 1..=128 characters",
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let serial = self
            .hub
            .connect(&hello.agent_id, &hello.node_name, tx.clone());
        tracing::info!(agent_id = %hello.agent_id, node = %hello.node_name,
            resend_from = hello.resend_from, "agent connected");
        let conn = AgentConnection {
            agent_id: hello.agent_id,
            store: self.store.clone(),
            hub: self.hub.clone(),
            recording: self.recording.clone(),
            tx,
        };
        tokio::spawn(async move {
            if let Err(e) = conn.run(inbound).await {
                tracing::warn!(agent_id = %conn.agent_id, error = %e, "agent stream ended with an error");
            } else {
                tracing::info!(agent_id = %conn.agent_id, "agent disconnected");
            }
            conn.hub.disconnect(&conn.agent_id, serial);
        });
        let out = UnboundedReceiverStream::new(rx).map(Ok);
        Ok(Response::new(Box::pin(out)))
    }
}

#[derive(Debug, thiserror::Error)]
enum IngestError {
    #[error("stream: {0}")]
    Stream(#[from] Status),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

struct AgentConnection {
    agent_id: String,
    store: SharedStore,
    hub: Arc<AgentHub>,
    recording: Arc<RecordingManager>,
    tx: mpsc::UnboundedSender<ProxyMessage>,
}

impl AgentConnection {
    async fn run(&self, mut inbound: Streaming<AgentMessage>) -> Result<(), IngestError> {
        // A reader task keeps the HTTP/2 stream drained while a batch is being stored.
        let (batch_tx, mut batch_rx) = mpsc::channel::<Envelope>(MAX_BATCH * 2);
        let reader = tokio::spawn(async move {
            while let Some(message) = inbound.next().await {
                // A repeated Hello or an empty message carries nothing to store.
                if let AgentMessage {
                    msg: Some(agent_message::Msg::Envelope(e)),
                } = message?
                    && batch_tx.send(e).await.is_err()
                {
                    break;
                }
            }
            Ok::<(), Status>(())
        });
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = batch_rx.recv().await {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match batch_rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            self.handle_batch(std::mem::take(&mut batch)).await?;
        }
        match reader.await {
            Ok(result) => result.map_err(IngestError::from),
            Err(join) => Err(Status::internal(join.to_string()).into()),
        }
    }

    async fn handle_batch(&self, batch: Vec<Envelope>) -> Result<(), IngestError> {
        let Some(last_seq) = batch.last().map(|e| e.seq) else {
            return Ok(());
        };
        let mut cases = Vec::new();
        let mut mocks = Vec::new();
        for envelope in batch {
            let seq = envelope.seq;
            match envelope.body {
                Some(Body::Http(exchange)) if exchange.role == Role::Client as i32 => {
                    mocks.push(self.new_mock(seq, crate::mocks::from_http_call(exchange)));
                }
                Some(Body::Http(exchange)) => {
                    if let Some(case) = to_test_case(&self.agent_id, seq, exchange) {
                        cases.push(case);
                    }
                }
                Some(Body::Dependency(call)) => {
                    mocks.push(self.new_mock(seq, crate::mocks::from_dependency_call(call)));
                }
                other => {
                    // Store what came before this marker first: order is the contract.
                    self.store_cases(std::mem::take(&mut cases)).await?;
                    self.store_mocks(std::mem::take(&mut mocks)).await?;
                    self.handle_control(other).await?;
                }
            }
        }
        self.store_cases(cases).await?;
        self.store_mocks(mocks).await?;
        let _ = self.tx.send(ProxyMessage {
            msg: Some(proxy_message::Msg::Ack(Ack {
                up_to_seq: last_seq,
            })),
        });
        Ok(())
    }

    async fn store_cases(&self, cases: Vec<NewTestCase>) -> Result<(), IngestError> {
        if cases.is_empty() {
            return Ok(());
        }
        let inserted = blocking(&self.store, move |s| s.insert_test_cases(&cases)).await?;
        if inserted.iter().any(Option::is_some) {
            self.recording.notify();
        }
        Ok(())
    }

    fn new_mock(&self, seq: u64, mock: crate::store::StoredMock) -> NewMock {
        NewMock {
            agent_id: self.agent_id.clone(),
            seq,
            mock,
        }
    }

    async fn store_mocks(&self, mocks: Vec<NewMock>) -> Result<(), IngestError> {
        if mocks.is_empty() {
            return Ok(());
        }
        if blocking(&self.store, move |s| s.insert_mocks(&mocks)).await? > 0 {
            self.recording.notify();
        }
        Ok(())
    }

    async fn handle_control(&self, body: Option<Body>) -> Result<(), IngestError> {
        match body {
            Some(Body::Flushed(f)) => {
                tracing::info!(agent_id = %self.agent_id, record_id = %f.record_id, "agent flushed session");
                self.hub.on_flushed(&self.agent_id, &f.record_id);
            }
            Some(Body::Metrics(m)) => {
                self.hub.on_metrics(&self.agent_id, m);
                self.recording.notify();
            }
            Some(Body::TargetsApplied(t)) => {
                for record_id in self.hub.on_applied(&self.agent_id, t.version) {
                    let agent = self.agent_id.clone();
                    blocking(&self.store, move |s| {
                        s.add_session_agent(&record_id, &agent)
                    })
                    .await?;
                }
            }
            Some(Body::ReplayReport(report)) => self.hub.on_replay_report(report),
            Some(Body::Http(_) | Body::Dependency(_)) | None => {}
        }
        Ok(())
    }
}

fn headers(list: Vec<kreplay_proto::v1::Header>) -> Vec<HeaderPair> {
    list.into_iter()
        .map(|h| HeaderPair {
            name: String::from_utf8_lossy(&h.name).into_owned(),
            value: String::from_utf8_lossy(&h.value).into_owned(),
        })
        .collect()
}

/// An ingress exchange becomes a test case (egress exchanges become mocks, see `crate::mocks`).
fn to_test_case(agent_id: &str, seq: u64, exchange: HttpExchange) -> Option<NewTestCase> {
    if exchange.role != Role::Server as i32 {
        return None;
    }
    let request = exchange.request.unwrap_or_default();
    let response = exchange.response.unwrap_or_default();
    let mut case = NewTestCase {
        record_id: exchange.record_id,
        agent_id: agent_id.to_owned(),
        seq,
        created_at_ms: now_unix_ms(),
        pid: exchange.pid,
        cgroup_id: exchange.cgroup_id,
        req: StoredRequest {
            method: request.method,
            target: request.target,
            version_minor: request.version_minor,
            headers: headers(request.headers),
            body: request.body,
            body_truncated: request.body_truncated,
            body_wire_size: request.body_wire_size,
            timestamp_ns: request.timestamp_ns,
        },
        noise: Default::default(),
        resp: StoredResponse {
            status_code: response.status_code,
            reason: response.reason,
            version_minor: response.version_minor,
            headers: headers(response.headers),
            body: response.body,
            body_truncated: response.body_truncated,
            body_wire_size: response.body_wire_size,
            timestamp_ns: response.timestamp_ns,
        },
    };
    // Timestamps in the response are noise from the start (judged at the time it was sent).
    let sent_at = i64::try_from(case.resp.timestamp_ns / 1_000_000_000).unwrap_or(0);
    let now = if sent_at > 0 {
        sent_at
    } else {
        now_unix_ms() / 1000
    };
    case.noise = detect_timestamp_noise(&case.resp.to_domain(), now);
    Some(case)
}
