//! Health, token info and deployments.

use axum::{Json, extract::State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, error::QueryParams};
use crate::orchestrator::DeploymentStatus;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn shared_token_info(State(ctx): State<AppState>) -> Json<Value> {
    Json(json!({
        "tokenId": ctx.shared_token.token_id,
        "issuedAt": ctx.shared_token.issued_at,
    }))
}

#[derive(Debug, Deserialize)]
pub struct NamespaceQuery {
    namespace: Option<String>,
}

pub async fn deployments(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<NamespaceQuery>,
) -> Result<Json<Vec<DeploymentStatus>>, ApiError> {
    // Scoped proxies list only their namespace whatever the query says (SPEC section 3).
    let namespace = match &ctx.config.watch_namespace {
        Some(scoped) => Some(scoped.clone()),
        None => q.namespace.filter(|n| !n.is_empty()),
    };
    Ok(Json(ctx.orchestrator.deployments(namespace.as_deref())))
}
