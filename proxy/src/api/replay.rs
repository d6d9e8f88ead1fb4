//! `/test/*`: start and stop replays, stream their status, tell whether one is active.

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
use crate::replay::{ReplayError, RunState, TestConfig};

/// How long `/test/stop` waits for the run to wind down (instance stopped, report stored).
const STOP_WAIT: Duration = Duration::from_secs(30);

impl From<ReplayError> for ApiError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::UnknownDeployment { .. }
            | ReplayError::UnknownTestSet { .. }
            | ReplayError::UnknownTestCase { .. }
            | ReplayError::NothingToReplay { .. }
            | ReplayError::UnknownReplay(_) => ApiError::not_found(e.to_string()),
            ReplayError::AlreadyReplaying { ref replay_id, .. } => {
                let id = replay_id.clone();
                ApiError::conflict(e.to_string()).with("replay_id", id)
            }
            ReplayError::InvalidConfig(_) => ApiError::bad_request(e.to_string()),
            ReplayError::Store(s) => s.into(),
            ReplayError::Random(_) => ApiError::internal(e.to_string()),
        }
    }
}

/// ReplayRequest (SPEC section 4).
#[derive(Debug, Deserialize)]
pub struct ReplayRequest {
    #[serde(default)]
    namespace: Option<String>,
    deployment: String,
    #[serde(default)]
    test_config: Option<Value>,
}

fn run_json(run: &RunState) -> Value {
    json!({
        "id": run.replay_id,
        "replay_id": run.replay_id,
        "test_run_id": run.test_run_id,
        "namespace": run.namespace,
        "deployment": run.deployment,
    })
}

pub async fn start(
    State(ctx): State<AppState>,
    JsonBody(req): JsonBody<ReplayRequest>,
) -> Result<Json<Value>, ApiError> {
    if req.deployment.trim().is_empty() {
        return Err(ApiError::bad_request("deployment must not be empty"));
    }
    let raw = req.test_config.unwrap_or_else(|| json!({}));
    let config: TestConfig = match &raw {
        Value::Null => TestConfig::default(),
        Value::Object(_) => serde_json::from_value(raw.clone())
            .map_err(|e| ApiError::bad_request(format!("invalid test_config: {e}")))?,
        _ => return Err(ApiError::bad_request("test_config must be a JSON object")),
    };
    let namespace = ctx
        .scope(req.namespace.as_deref())?
        .unwrap_or_else(|| "default".to_owned());
    let run = ctx
        .replay
        .start(namespace, req.deployment, config, raw)
        .await?;
    let mut body = run_json(&run);
    body["status"] = json!("starting");
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
pub struct StopRequest {
    replay_id: String,
}

pub async fn stop(
    State(ctx): State<AppState>,
    JsonBody(req): JsonBody<StopRequest>,
) -> Result<Json<Value>, ApiError> {
    let run = ctx
        .replay
        .get(&req.replay_id)
        .ok_or_else(|| ApiError::not_found(format!("replay {} not found", req.replay_id)))?;
    ctx.scope(Some(&run.namespace))?;
    ctx.replay.stop(&req.replay_id)?;
    let mut changes = run.subscribe();
    let deadline = tokio::time::Instant::now() + STOP_WAIT;
    while !run.is_finished() {
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            return Err(ApiError::unavailable(format!(
                "replay {} is still stopping after {STOP_WAIT:?}",
                run.replay_id
            )));
        }
    }
    let mut body = run_json(&run);
    body["replay"] = json!("stopped");
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    replay_id: String,
}

/// NDJSON: every line so far (state changes and one per test case result), then new ones as
/// they come; ends after the run's last line or on proxy shutdown.
pub async fn status(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<StatusQuery>,
) -> Result<Response, ApiError> {
    let run = ctx
        .replay
        .get(&q.replay_id)
        .ok_or_else(|| ApiError::not_found(format!("replay {} not found", q.replay_id)))?;
    ctx.scope(Some(&run.namespace))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    let shutdown = ctx.shutdown.clone();
    tokio::spawn(async move {
        let mut changes = run.subscribe();
        let mut sent = 0;
        loop {
            // `finished` first: once it is set, the lines already hold the last one.
            let finished = run.is_finished();
            for line in run.lines_since(sent) {
                sent += 1;
                if tx.send(ndjson_line(&line)).await.is_err() {
                    return;
                }
            }
            if finished {
                return;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                r = changes.changed() => if r.is_err() { return },
            }
        }
    });
    Ok((
        [(CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response())
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
    Ok(Json(
        match ctx.replay.active_for(&namespace, &q.deployment) {
            Some(run) => json!({
                "in_progress": true,
                "replay_id": run.replay_id,
                "test_run_id": run.test_run_id,
            }),
            None => json!({"in_progress": false, "replay_id": null}),
        },
    ))
}
