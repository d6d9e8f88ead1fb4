//! `/k8s-proxy/testcases*`: read stored test cases and test sets.

use axum::{Json, extract::State};
use serde::Deserialize;

use super::{ApiError, AppState, error::QueryParams};
use crate::{
    model::{TestCaseFilter, TestCaseJson, TestSetSummary},
    store::blocking,
};

const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    namespace: Option<String>,
    deployment: Option<String>,
    #[serde(alias = "testSetId", alias = "testSet")]
    test_set: Option<String>,
    record_id: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

pub async fn list(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<Vec<TestCaseJson>>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be 1..={MAX_LIMIT}"
        )));
    }
    let filter = TestCaseFilter {
        namespace: ctx.scope(q.namespace.as_deref())?,
        deployment: q.deployment.filter(|d| !d.is_empty()),
        test_set: q.test_set.filter(|t| !t.is_empty()),
        record_id: q.record_id.filter(|r| !r.is_empty()),
        limit,
        offset: q.offset.unwrap_or(0),
    };
    let cases = blocking(&ctx.store, move |s| s.list_test_cases(&filter)).await?;
    Ok(Json(cases.iter().map(TestCaseJson::from).collect()))
}

#[derive(Debug, Deserialize)]
pub struct DetailQuery {
    id: Option<i64>,
    namespace: Option<String>,
    deployment: Option<String>,
    #[serde(alias = "testSetId", alias = "testSet")]
    test_set: Option<String>,
    #[serde(alias = "testCaseId", alias = "name")]
    test_case: Option<String>,
}

pub async fn detail(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<DetailQuery>,
) -> Result<Json<TestCaseJson>, ApiError> {
    let namespace = ctx.scope(q.namespace.as_deref())?;
    let found = match (q.id, q.deployment, q.test_set, q.test_case) {
        (Some(id), ..) => blocking(&ctx.store, move |s| s.get_test_case(id)).await?,
        (None, Some(deployment), Some(test_set), Some(name)) => {
            let ns = namespace.clone().unwrap_or_else(|| "default".to_owned());
            blocking(&ctx.store, move |s| {
                s.find_test_case(&ns, &deployment, &test_set, &name)
            })
            .await?
        }
        _ => {
            return Err(ApiError::bad_request(
                "give either id, or deployment + test_set + test_case (namespace defaults to \"default\")",
            ));
        }
    };
    match found {
        Some(tc) if namespace.as_ref().is_none_or(|ns| *ns == tc.namespace) => {
            Ok(Json(TestCaseJson::from(&tc)))
        }
        _ => Err(ApiError::not_found("test case not found")),
    }
}

#[derive(Debug, Deserialize)]
pub struct SetsQuery {
    namespace: Option<String>,
    deployment: Option<String>,
}

pub async fn test_sets(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<SetsQuery>,
) -> Result<Json<Vec<TestSetSummary>>, ApiError> {
    let namespace = ctx.scope(q.namespace.as_deref())?;
    let deployment = q.deployment.filter(|d| !d.is_empty());
    let sets = blocking(&ctx.store, move |s| {
        s.list_test_sets(namespace.as_deref(), deployment.as_deref())
    })
    .await?;
    Ok(Json(sets))
}
