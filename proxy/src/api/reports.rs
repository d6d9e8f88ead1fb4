//! `/k8s-proxy/{insert,update,get,clear}/...`: test run reports and test case results.
//!
//! Replays store their reports here themselves; these routes let users (and tools written for
//! the reference product) read them, and insert or amend their own.

use axum::{Json, extract::State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ApiError, AppState,
    error::{JsonBody, QueryParams},
};
use crate::{
    store::{ReportFilter, ReportRow, RunKey, TestCaseResultRow, blocking},
    util::{now_unix_ms, rfc3339_ms},
};

/// Query of every read route; camelCase aliases are what the reference product's clients send.
#[derive(Debug, Default, Deserialize)]
pub struct ReportQuery {
    namespace: Option<String>,
    deployment: Option<String>,
    #[serde(alias = "testRunId")]
    test_run_id: Option<String>,
    #[serde(alias = "testSetId", alias = "testSet")]
    test_set: Option<String>,
    #[serde(alias = "testCaseId")]
    test_case_id: Option<String>,
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

impl ReportQuery {
    fn filter(self, ctx: &AppState) -> Result<ReportFilter, ApiError> {
        Ok(ReportFilter {
            namespace: ctx.scope(self.namespace.as_deref())?,
            deployment: non_empty(self.deployment),
            test_run_id: non_empty(self.test_run_id),
            test_set: non_empty(self.test_set),
            test_case_id: non_empty(self.test_case_id),
        })
    }
}

fn report_json(row: &ReportRow) -> Value {
    json!({
        "namespace": row.key.namespace,
        "deployment": row.key.deployment,
        "test_run_id": row.key.test_run_id,
        "test_set": row.test_set,
        "status": row.status,
        "updated_at": rfc3339_ms(row.updated_at_ms),
        "report": row.report,
    })
}

fn result_json(row: &TestCaseResultRow) -> Value {
    json!({
        "id": row.id,
        "namespace": row.key.namespace,
        "deployment": row.key.deployment,
        "test_run_id": row.key.test_run_id,
        "test_set": row.test_set,
        "test_case_id": row.test_case_id,
        "status": row.status,
        "created": rfc3339_ms(row.created_at_ms),
        "result": row.result,
    })
}

async fn reports(ctx: &AppState, filter: ReportFilter) -> Result<Vec<Value>, ApiError> {
    let rows = blocking(&ctx.store, move |s| s.list_reports(&filter)).await?;
    Ok(rows.iter().map(report_json).collect())
}

fn require(value: &Option<String>, name: &str) -> Result<(), ApiError> {
    match value {
        Some(_) => Ok(()),
        None => Err(ApiError::bad_request(format!("{name} is required"))),
    }
}

/// One report: the test set's report in one run.
pub async fn get_report(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<ReportQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = q.filter(&ctx)?;
    require(&filter.test_run_id, "test_run_id")?;
    require(&filter.test_set, "test_set")?;
    let (run, set) = (filter.test_run_id.clone(), filter.test_set.clone());
    let found = reports(&ctx, filter).await?;
    match found.as_slice() {
        [one] => Ok(Json(one.clone())),
        [] => Err(ApiError::not_found(format!(
            "no report for {} in {}",
            set.unwrap_or_default(),
            run.unwrap_or_default()
        ))),
        _ => Err(ApiError::bad_request(
            "several deployments have this report: add namespace and deployment",
        )),
    }
}

pub async fn all_reports(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<ReportQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = q.filter(&ctx)?;
    Ok(Json(Value::Array(reports(&ctx, filter).await?)))
}

pub async fn test_run_reports(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<ReportQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = q.filter(&ctx)?;
    require(&filter.test_run_id, "test_run_id")?;
    Ok(Json(Value::Array(reports(&ctx, filter).await?)))
}

pub async fn test_set_reports(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<ReportQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = q.filter(&ctx)?;
    require(&filter.test_set, "test_set")?;
    Ok(Json(Value::Array(reports(&ctx, filter).await?)))
}

/// The runs of a deployment (or all), oldest first.
pub async fn test_run_ids(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<ReportQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = q.filter(&ctx)?;
    let runs = blocking(&ctx.store, move |s| s.list_test_runs(&filter)).await?;
    Ok(Json(Value::Array(
        runs.iter()
            .map(|r| {
                json!({
                    "test_run_id": r.key.test_run_id,
                    "replay_id": r.replay_id,
                    "namespace": r.key.namespace,
                    "deployment": r.key.deployment,
                    "status": r.status,
                    "created": rfc3339_ms(r.created_at_ms),
                })
            })
            .collect(),
    )))
}

/// The results of one test case across runs.
pub async fn test_case_reports(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<ReportQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = q.filter(&ctx)?;
    require(&filter.test_case_id, "test_case_id")?;
    results(&ctx, filter).await
}

pub async fn test_case_results(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<ReportQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = q.filter(&ctx)?;
    results(&ctx, filter).await
}

async fn results(ctx: &AppState, filter: ReportFilter) -> Result<Json<Value>, ApiError> {
    let rows = blocking(&ctx.store, move |s| s.list_test_case_results(&filter)).await?;
    Ok(Json(Value::Array(rows.iter().map(result_json).collect())))
}

pub async fn clear_test_case_results(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<ReportQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = q.filter(&ctx)?;
    if filter.test_run_id.is_none() && filter.test_set.is_none() && filter.deployment.is_none() {
        return Err(ApiError::bad_request(
            "name what to clear: deployment, test_run_id or test_set",
        ));
    }
    let deleted = blocking(&ctx.store, move |s| s.clear_test_case_results(&filter)).await?;
    Ok(Json(json!({"deleted": deleted})))
}

/// Body of insert/update report.
#[derive(Debug, Deserialize)]
pub struct ReportBody {
    #[serde(default)]
    namespace: Option<String>,
    deployment: String,
    #[serde(alias = "testRunId")]
    test_run_id: String,
    #[serde(alias = "testSetId", alias = "testSet")]
    test_set: String,
    #[serde(default)]
    status: Option<String>,
    report: Value,
}

fn report_row(ctx: &AppState, body: ReportBody) -> Result<ReportRow, ApiError> {
    for (name, value) in [
        ("deployment", &body.deployment),
        ("test_run_id", &body.test_run_id),
        ("test_set", &body.test_set),
    ] {
        if value.trim().is_empty() {
            return Err(ApiError::bad_request(format!("{name} must not be empty")));
        }
    }
    if !body.report.is_object() {
        return Err(ApiError::bad_request("report must be a JSON object"));
    }
    let status = body
        .status
        .or_else(|| body.report["status"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Ok(ReportRow {
        key: RunKey {
            namespace: ctx
                .scope(body.namespace.as_deref())?
                .unwrap_or_else(|| "default".to_owned()),
            deployment: body.deployment,
            test_run_id: body.test_run_id,
        },
        test_set: body.test_set,
        status,
        report: body.report,
        updated_at_ms: now_unix_ms(),
    })
}

pub async fn insert_report(
    State(ctx): State<AppState>,
    JsonBody(body): JsonBody<ReportBody>,
) -> Result<Json<Value>, ApiError> {
    let row = report_row(&ctx, body)?;
    let out = report_json(&row);
    blocking(&ctx.store, move |s| s.upsert_report(&row)).await?;
    Ok(Json(out))
}

/// Like insert, but the report must exist.
pub async fn update_report(
    State(ctx): State<AppState>,
    JsonBody(body): JsonBody<ReportBody>,
) -> Result<Json<Value>, ApiError> {
    let row = report_row(&ctx, body)?;
    let filter = ReportFilter {
        namespace: Some(row.key.namespace.clone()),
        deployment: Some(row.key.deployment.clone()),
        test_run_id: Some(row.key.test_run_id.clone()),
        test_set: Some(row.test_set.clone()),
        test_case_id: None,
    };
    if reports(&ctx, filter).await?.is_empty() {
        return Err(ApiError::not_found(format!(
            "no report for {} in {}",
            row.test_set, row.key.test_run_id
        )));
    }
    let out = report_json(&row);
    blocking(&ctx.store, move |s| s.upsert_report(&row)).await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
pub struct ResultBody {
    #[serde(default)]
    namespace: Option<String>,
    deployment: String,
    #[serde(alias = "testRunId")]
    test_run_id: String,
    #[serde(alias = "testSetId", alias = "testSet")]
    test_set: String,
    #[serde(alias = "testCaseId")]
    test_case_id: String,
    status: String,
    #[serde(default)]
    result: Value,
}

pub async fn insert_test_case_result(
    State(ctx): State<AppState>,
    JsonBody(body): JsonBody<ResultBody>,
) -> Result<Json<Value>, ApiError> {
    for (name, value) in [
        ("deployment", &body.deployment),
        ("test_run_id", &body.test_run_id),
        ("test_set", &body.test_set),
        ("test_case_id", &body.test_case_id),
        ("status", &body.status),
    ] {
        if value.trim().is_empty() {
            return Err(ApiError::bad_request(format!("{name} must not be empty")));
        }
    }
    let mut row = TestCaseResultRow {
        id: 0,
        key: RunKey {
            namespace: ctx
                .scope(body.namespace.as_deref())?
                .unwrap_or_else(|| "default".to_owned()),
            deployment: body.deployment,
            test_run_id: body.test_run_id,
        },
        test_set: body.test_set,
        test_case_id: body.test_case_id,
        status: body.status,
        result: body.result,
        created_at_ms: now_unix_ms(),
    };
    let stored = row.clone();
    row.id = blocking(&ctx.store, move |s| s.insert_test_case_result(&stored)).await?;
    Ok(Json(result_json(&row)))
}
