//! `/k8s-proxy/mocks/*` and `/k8s-proxy/mappings`: a test set's mocks as Keploy `mocks.yaml`,
//! their metadata, and which test case each per-test mock belongs to.

use axum::{
    Json,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use kreplay_domain::{
    keploy::{self, MockEntry},
    mock::{Mock, from_mock_doc, mappings_of, to_mock_doc},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ApiError, AppState,
    error::{JsonBody, QueryParams, RawBody},
    testcase_edit::{comma_list, editable_owner, set_key},
};
use crate::{
    mocks::{from_domain, lifetime_name, load_set},
    model::TestCaseFilter,
    store::{MockSet, blocking},
};

#[derive(Debug, Deserialize)]
pub struct SetQuery {
    namespace: Option<String>,
    deployment: String,
    #[serde(alias = "testSetId", alias = "testSet")]
    test_set: String,
    /// Comma-separated mock names (DELETE reference).
    #[serde(default)]
    mocks: Option<String>,
}

/// The set's mocks in the domain model (the set must exist).
pub async fn set_mocks(ctx: &AppState, set: &MockSet) -> Result<Vec<Mock>, ApiError> {
    Ok(load_set(&ctx.store, set).await?)
}

pub async fn download(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<SetQuery>,
) -> Result<Response, ApiError> {
    let set = set_key(&ctx, q.namespace.as_deref(), q.deployment, q.test_set)?;
    let key = set.clone();
    if blocking(&ctx.store, move |s| s.set_owner(&key))
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "test set {} not found",
            set.test_set
        )));
    }
    let docs: Vec<_> = set_mocks(&ctx, &set)
        .await?
        .iter()
        .map(to_mock_doc)
        .collect();
    let yaml = keploy::encode_mocks(&docs).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/x-yaml")], yaml).into_response())
}

/// Replaces the set's mocks with a `mocks.yaml` body.
pub async fn upload(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<SetQuery>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    let set = set_key(&ctx, q.namespace.as_deref(), q.deployment, q.test_set)?;
    let record_id = editable_owner(&ctx, &set).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("mocks.yaml must be UTF-8"))?;
    let docs = keploy::decode_mocks(text).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mocks = docs
        .iter()
        .map(|doc| from_mock_doc(doc).map(|m| from_domain(&m)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let count = mocks.len();
    blocking(&ctx.store, move |s| {
        s.replace_mocks(&set, &record_id, &mocks)
    })
    .await?;
    Ok(Json(json!({"uploaded": count})))
}

/// The set's mocks without their bytes.
pub async fn references(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<SetQuery>,
) -> Result<Json<Value>, ApiError> {
    let set = set_key(&ctx, q.namespace.as_deref(), q.deployment, q.test_set)?;
    let key = set.clone();
    let stored = blocking(&ctx.store, move |s| s.list_mocks(&key)).await?;
    Ok(Json(Value::Array(
        stored
            .iter()
            .map(|m| {
                json!({
                    "name": m.name, "kind": m.kind, "lifetime": m.lifetime,
                    "test_case": m.test_case, "summary": m.summary,
                    "destination": m.destination, "connection_id": m.connection_id,
                })
            })
            .collect(),
    )))
}

#[derive(Debug, Deserialize)]
pub struct AddReferences {
    #[serde(default)]
    namespace: Option<String>,
    deployment: String,
    #[serde(alias = "testSetId", alias = "testSet")]
    test_set: String,
    /// The set the mocks are taken from (shared mocks).
    from_test_set: String,
    mocks: Vec<String>,
}

/// Copies named mocks of another set of the same deployment into this one (kept as they are,
/// renamed to this set's next `mock-N`).
pub async fn add_references(
    State(ctx): State<AppState>,
    JsonBody(body): JsonBody<AddReferences>,
) -> Result<Json<Value>, ApiError> {
    let set = set_key(
        &ctx,
        body.namespace.as_deref(),
        body.deployment.clone(),
        body.test_set,
    )?;
    let record_id = editable_owner(&ctx, &set).await?;
    let from = MockSet {
        test_set: body.from_test_set,
        ..set.clone()
    };
    let source = set_mocks(&ctx, &from).await?;
    let mut current: Vec<Mock> = set_mocks(&ctx, &set).await?;
    let first_free = current
        .iter()
        .filter_map(|m| m.name.strip_prefix("mock-")?.parse::<u64>().ok())
        .max()
        .map_or(0, |n| n + 1);
    for (next, name) in (first_free..).zip(&body.mocks) {
        let mut mock = source
            .iter()
            .find(|m| &m.name == name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("mock {name} not in {}", from.test_set)))?;
        mock.name = format!("mock-{next}");
        current.push(mock);
    }
    let stored: Vec<_> = current.iter().map(from_domain).collect();
    blocking(&ctx.store, move |s| {
        s.replace_mocks(&set, &record_id, &stored)
    })
    .await?;
    Ok(Json(json!({"added": body.mocks.len()})))
}

pub async fn delete_references(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<SetQuery>,
) -> Result<Json<Value>, ApiError> {
    let names = comma_list(q.mocks.as_deref());
    if names.is_empty() {
        return Err(ApiError::bad_request(
            "name the mocks to delete: mocks=mock-1,mock-2",
        ));
    }
    let set = set_key(&ctx, q.namespace.as_deref(), q.deployment, q.test_set)?;
    editable_owner(&ctx, &set).await?;
    let deleted = blocking(&ctx.store, move |s| s.delete_mocks(&set, &names)).await?;
    Ok(Json(json!({"deleted": deleted})))
}

/// The test case names of a set, in recorded order.
async fn test_names(ctx: &AppState, set: &MockSet) -> Result<Vec<String>, ApiError> {
    let filter = TestCaseFilter::all_of(&set.namespace, &set.deployment, Some(&set.test_set));
    let cases = blocking(&ctx.store, move |s| s.list_test_cases(&filter)).await?;
    Ok(cases.into_iter().map(|c| c.name).collect())
}

fn entry_json(e: &MockEntry) -> Value {
    json!({"name": e.name, "kind": e.kind})
}

/// Which per-test mocks each test case uses (Keploy's `mappings.yaml`, as JSON).
pub async fn mappings(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<SetQuery>,
) -> Result<Json<Value>, ApiError> {
    let set = set_key(&ctx, q.namespace.as_deref(), q.deployment, q.test_set)?;
    let tests = test_names(&ctx, &set).await?;
    let mocks = set_mocks(&ctx, &set).await?;
    let mappings = mappings_of(&set.test_set, &tests, &mocks);
    Ok(Json(json!({
        "test_set_id": mappings.test_set_id,
        "tests": mappings.tests.iter().map(|(id, entries)| json!({
            "id": id,
            "mock_entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
pub struct MappingTest {
    id: String,
    #[serde(default)]
    mocks: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct MappingsBody {
    #[serde(default)]
    namespace: Option<String>,
    deployment: String,
    #[serde(alias = "testSetId", alias = "testSet", alias = "test_set_id")]
    test_set: String,
    tests: Vec<MappingTest>,
}

/// Re-assigns per-test mocks to test cases; mocks not named keep their assignment.
pub async fn set_mappings(
    State(ctx): State<AppState>,
    JsonBody(body): JsonBody<MappingsBody>,
) -> Result<Json<Value>, ApiError> {
    let set = set_key(
        &ctx,
        body.namespace.as_deref(),
        body.deployment,
        body.test_set,
    )?;
    editable_owner(&ctx, &set).await?;
    let tests = test_names(&ctx, &set).await?;
    let mocks = set_mocks(&ctx, &set).await?;
    let mut decisions = Vec::new();
    for test in &body.tests {
        if !tests.contains(&test.id) {
            return Err(ApiError::not_found(format!(
                "test case {} not in {}",
                test.id, set.test_set
            )));
        }
        for name in &test.mocks {
            let mock = mocks.iter().find(|m| &m.name == name).ok_or_else(|| {
                ApiError::not_found(format!("mock {name} not in {}", set.test_set))
            })?;
            decisions.push((
                name.clone(),
                Some(test.id.clone()),
                lifetime_name(mock.lifetime).to_owned(),
            ));
        }
    }
    let count = decisions.len();
    blocking(&ctx.store, move |s| s.attribute_mocks(&set, &decisions)).await?;
    Ok(Json(json!({"updated": count})))
}
