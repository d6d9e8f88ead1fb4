//! The REST API (SPEC.md). Public routes: `/healthz`, `/shared-token/info`; everything else needs
//! `Authorization: Bearer <shared token>`. Every error is JSON (`error::ApiError`).

pub mod error;
mod interchange;
mod misc;
mod mocks;
mod record;
mod replay;
mod reports;
mod testcase_edit;
mod testcases;

use std::sync::Arc;

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    http::header::AUTHORIZATION,
    middleware::{self, Next},
    response::Response,
    routing::{delete, get, post, put},
};
use tokio_util::sync::CancellationToken;

use crate::{
    agents::AgentHub,
    auth::{BearerError, SharedToken},
    config::Config,
    orchestrator::Orchestrator,
    recording::RecordingManager,
    replay::ReplayManager,
    store::SharedStore,
};
pub use error::ApiError;

/// Request bodies above this get 413.
const MAX_BODY_BYTES: usize = 16 << 20;

/// Everything a handler may need.
pub struct Ctx {
    pub config: Config,
    pub store: SharedStore,
    pub hub: Arc<AgentHub>,
    pub orchestrator: Arc<dyn Orchestrator>,
    pub recording: Arc<RecordingManager>,
    pub replay: Arc<ReplayManager>,
    pub shared_token: SharedToken,
    /// Ends NDJSON streams on graceful shutdown.
    pub shutdown: CancellationToken,
}

pub type AppState = Arc<Ctx>;

/// One NDJSON line of a status stream.
fn ndjson_line(value: &serde_json::Value) -> Result<axum::body::Bytes, std::convert::Infallible> {
    let mut line = value.to_string().into_bytes();
    line.push(b'\n');
    Ok(axum::body::Bytes::from(line))
}

impl Ctx {
    /// Applies namespace scoping (SPEC section 3) to a namespace named by a request.
    pub fn scope(&self, requested: Option<&str>) -> Result<Option<String>, ApiError> {
        match (&self.config.watch_namespace, requested) {
            (Some(scoped), Some(ns)) if !ns.is_empty() && ns != scoped => Err(ApiError::forbidden(
                format!("this proxy is scoped to namespace \"{scoped}\""),
            )),
            (Some(scoped), _) => Ok(Some(scoped.clone())),
            (None, Some(ns)) if !ns.is_empty() => Ok(Some(ns.to_owned())),
            (None, _) => Ok(None),
        }
    }
}

async fn require_shared_token(
    State(ctx): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = request.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    match ctx.shared_token.secret.check_bearer(header) {
        Ok(()) => Ok(next.run(request).await),
        Err(BearerError::Missing) => Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "missing or malformed Authorization header (expected: Bearer <shared token>)",
        )),
        Err(BearerError::Invalid) => Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "Invalid token",
        )),
    }
}

pub fn router(ctx: AppState) -> Router {
    let protected = Router::new()
        .route("/deployments", get(misc::deployments))
        .route("/record/start", post(record::start))
        .route("/record/stop", post(record::stop))
        .route("/record/status", get(record::status))
        .route("/record/active", get(record::active))
        .route("/k8s-proxy/health", get(misc::healthz))
        .route(
            "/k8s-proxy/testcases",
            get(testcases::list)
                .post(testcase_edit::create)
                .delete(testcase_edit::delete_cases),
        )
        .route("/k8s-proxy/testcases/detail", get(testcases::detail))
        .route(
            "/k8s-proxy/testcases/metadata",
            get(testcase_edit::metadata),
        )
        .route(
            "/k8s-proxy/testcases/selective",
            post(testcase_edit::selective),
        )
        .route(
            "/k8s-proxy/testcases/{testCaseId}",
            put(testcase_edit::update),
        )
        .route("/k8s-proxy/testcases/testsets", get(testcases::test_sets))
        .route(
            "/k8s-proxy/testcases/testsets/metadata",
            get(testcase_edit::sets_metadata),
        )
        .route(
            "/k8s-proxy/testcases/testsets/latest-release/full",
            get(testcase_edit::latest_full),
        )
        .route(
            "/k8s-proxy/testcases/testset",
            delete(testcase_edit::delete_set),
        )
        .route("/test/start", post(replay::start))
        .route("/test/stop", post(replay::stop))
        .route("/test/status", get(replay::status))
        .route("/test/active", get(replay::active))
        .route("/test/download", get(interchange::download))
        .route("/k8s-proxy/mocks/download", get(mocks::download))
        .route("/k8s-proxy/mocks/upload", post(mocks::upload))
        .route(
            "/k8s-proxy/mocks/reference",
            get(mocks::references)
                .post(mocks::add_references)
                .delete(mocks::delete_references),
        )
        .route(
            "/k8s-proxy/mappings",
            get(mocks::mappings).post(mocks::set_mappings),
        )
        .route(
            "/k8s-proxy/testcases/bulk",
            post(interchange::import).put(testcase_edit::update_bulk),
        )
        .route("/k8s-proxy/insert/report", post(reports::insert_report))
        .route("/k8s-proxy/update/report", put(reports::update_report))
        .route("/k8s-proxy/get/report", get(reports::get_report))
        .route("/k8s-proxy/get/allReports", get(reports::all_reports))
        .route("/k8s-proxy/get/testRunIds", get(reports::test_run_ids))
        .route(
            "/k8s-proxy/get/testRunReports",
            get(reports::test_run_reports),
        )
        .route(
            "/k8s-proxy/get/testSetReports",
            get(reports::test_set_reports),
        )
        .route(
            "/k8s-proxy/get/testCaseReports",
            get(reports::test_case_reports),
        )
        .route(
            "/k8s-proxy/insert/testCaseResult",
            post(reports::insert_test_case_result),
        )
        .route(
            "/k8s-proxy/get/testCaseResults",
            get(reports::test_case_results),
        )
        .route(
            "/k8s-proxy/clear/testCaseResults",
            delete(reports::clear_test_case_results),
        )
        .route_layer(middleware::from_fn_with_state(
            ctx.clone(),
            require_shared_token,
        ));
    Router::new()
        .route("/healthz", get(misc::healthz))
        .route("/shared-token/info", get(misc::shared_token_info))
        .merge(protected)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ctx)
}
