//! `/record/*`: start and stop recording sessions, stream their status.

use std::{convert::Infallible, time::Duration};

use axum::{
    Json,
    body::{Body, Bytes},
    extract::State,
    http::header::CONTENT_TYPE,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ApiError, AppState,
    error::{JsonBody, QueryParams},
    ndjson_line,
};
use crate::{model::SessionRecord, recording::RecordError};

/// Minimum spacing of live status lines (count changes are coalesced).
const STATUS_MIN_INTERVAL: Duration = Duration::from_millis(200);
/// Re-evaluates the status even without a change signal (pod readiness is polled).
const STATUS_TICK: Duration = Duration::from_secs(2);

impl From<RecordError> for ApiError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::UnknownDeployment { .. } | RecordError::UnknownSession(_) => {
                ApiError::not_found(e.to_string())
            }
            RecordError::AlreadyRecording { ref record_id, .. } => {
                let id = record_id.clone();
                ApiError::conflict(e.to_string()).with("record_id", id)
            }
            RecordError::Store(s) => s.into(),
            RecordError::Random(_) => ApiError::internal(e.to_string()),
        }
    }
}

/// RecordRequest (SPEC section 4). Unknown fields are ignored so newer clients keep working.
#[derive(Debug, Deserialize)]
pub struct RecordRequest {
    #[serde(default)]
    namespace: Option<String>,
    deployment: String,
    #[serde(default, rename = "podsCount")]
    pods_count: Option<u32>,
    #[serde(default, rename = "clusterId")]
    cluster_id: Option<String>,
    #[serde(default)]
    record_config: Option<Value>,
    #[serde(default)]
    auto_replay_config: Option<Value>,
}

fn session_json(record: &SessionRecord) -> Value {
    json!({
        "id": record.record_id,
        "record_id": record.record_id,
        "namespace": record.namespace,
        "deployment": record.deployment,
        "test_set": record.test_set,
        "status": record.status.as_str(),
    })
}

pub async fn start(
    State(ctx): State<AppState>,
    JsonBody(req): JsonBody<RecordRequest>,
) -> Result<Json<Value>, ApiError> {
    if req.deployment.trim().is_empty() {
        return Err(ApiError::bad_request("deployment must not be empty"));
    }
    for (name, value) in [
        ("record_config", &req.record_config),
        ("auto_replay_config", &req.auto_replay_config),
    ] {
        if value
            .as_ref()
            .is_some_and(|v| !v.is_object() && !v.is_null())
        {
            return Err(ApiError::bad_request(format!(
                "{name} must be a JSON object"
            )));
        }
    }
    let namespace = ctx
        .scope(req.namespace.as_deref())?
        .unwrap_or_else(|| "default".to_owned());
    let record = ctx
        .recording
        .start(
            namespace,
            req.deployment,
            req.record_config.unwrap_or_else(|| json!({})),
            req.auto_replay_config.unwrap_or_else(|| json!({})),
            req.cluster_id,
            req.pods_count,
        )
        .await?;
    Ok(Json(session_json(&record)))
}

#[derive(Debug, Deserialize)]
pub struct StopRequest {
    record_id: String,
}

pub async fn stop(
    State(ctx): State<AppState>,
    JsonBody(req): JsonBody<StopRequest>,
) -> Result<Json<Value>, ApiError> {
    let record = ctx.recording.get(&req.record_id).await?;
    ctx.scope(Some(&record.namespace))?;
    let record = ctx.recording.stop(&req.record_id).await?;
    let mut body = json!({"record": "stopped", "id": record.record_id});
    if let Some(e) = record.error {
        body["warning"] = Value::String(e);
    }
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    record_id: String,
}

fn is_terminal(line: &Value) -> bool {
    matches!(line["status"].as_str(), Some("stopped" | "failed"))
}

/// NDJSON: the transitions so far, then one line per change, ending after `stopped`/`failed` or
/// on proxy shutdown.
pub async fn status(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<StatusQuery>,
) -> Result<Response, ApiError> {
    let record = ctx.recording.get(&q.record_id).await?;
    ctx.scope(Some(&record.namespace))?;
    let history = ctx.recording.history(&q.record_id).await?;
    let record_id = q.record_id;
    let stream = async_stream(ctx, record_id, history);
    Ok((
        [(CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

fn async_stream(
    ctx: AppState,
    record_id: String,
    history: Vec<Value>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(16);
    tokio::spawn(async move {
        let mut last: Option<Value> = None;
        let mut seen = 0;
        let mut transitions = history;
        let mut changes = ctx.recording.subscribe();
        loop {
            // Every transition is sent, even when several happened between two wake-ups.
            for line in transitions.iter().skip(seen) {
                if tx.send(ndjson_line(line)).await.is_err() {
                    return;
                }
                last = Some(line.clone());
                if is_terminal(line) {
                    return;
                }
            }
            seen = transitions.len();
            match ctx.recording.status_line(&record_id).await {
                Ok(line) => {
                    let same = last.as_ref().is_some_and(|l| same_state(l, &line));
                    if !same {
                        if tx.send(ndjson_line(&line)).await.is_err() {
                            return;
                        }
                        let done = is_terminal(&line);
                        last = Some(line);
                        if done {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(ndjson_line(&json!({"error": e.to_string()}))).await;
                    return;
                }
            }
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                _ = tx.closed() => return,
                _ = tokio::time::sleep(STATUS_TICK) => {}
                r = changes.changed() => if r.is_err() { return },
            }
            tokio::time::sleep(STATUS_MIN_INTERVAL).await;
            match ctx.recording.history(&record_id).await {
                Ok(h) => transitions = h,
                Err(_) => return,
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Lines differ only when something a user watches changed (not just the agent list order).
fn same_state(a: &Value, b: &Value) -> bool {
    let keys = [
        "status",
        "test_cases_count",
        "endpoints",
        "pods_running",
        "capture",
        "error",
        "mock_count",
    ];
    keys.iter().all(|k| a[k] == b[k])
}

#[derive(Debug, Deserialize)]
pub struct ActiveQuery {
    namespace: Option<String>,
    deployment: String,
}

pub async fn active(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<ActiveQuery>,
) -> Result<Json<Value>, ApiError> {
    let namespace = ctx
        .scope(q.namespace.as_deref())?
        .unwrap_or_else(|| "default".to_owned());
    let record_id = ctx.recording.active_for(&namespace, &q.deployment);
    Ok(Json(
        json!({"in_progress": record_id.is_some(), "record_id": record_id}),
    ))
}
