//! The write and selective routes of `/k8s-proxy/testcases` (SPEC section 8): add, update,
//! delete test cases and sets, and read them by name or as metadata.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Path, State},
};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ApiError, AppState,
    error::{JsonBody, QueryParams},
};
use crate::{
    model::{
        BodyEncoding, HeaderPair, NewTestCase, StoredRequest, StoredResponse, TestCase,
        TestCaseFilter, TestCaseJson,
    },
    store::{SetKey, blocking},
    util::{now_unix_ms, now_unix_ns, rfc3339_ms},
};

type Noise = BTreeMap<String, Vec<String>>;

/// The names of a `a,b,c` query parameter (blank entries skipped).
pub(super) fn comma_list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Headers as our JSON writes them (a list of pairs) or as Keploy does (a map).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum HeadersIn {
    List(Vec<HeaderPair>),
    Map(BTreeMap<String, String>),
}

impl HeadersIn {
    fn into_pairs(self) -> Vec<HeaderPair> {
        match self {
            Self::List(list) => list,
            Self::Map(map) => map
                .into_iter()
                .map(|(name, value)| HeaderPair { name, value })
                .collect(),
        }
    }
}

fn decode_body(body: String, encoding: Option<BodyEncoding>) -> Result<Vec<u8>, ApiError> {
    match encoding {
        Some(BodyEncoding::Base64) => base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| ApiError::bad_request(format!("body is not valid base64: {e}"))),
        Some(BodyEncoding::Utf8) | None => Ok(body.into_bytes()),
    }
}

#[derive(Debug, Deserialize)]
struct RequestIn {
    method: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    proto_minor: Option<u32>,
    #[serde(default)]
    header: Option<HeadersIn>,
    #[serde(default)]
    body: String,
    #[serde(default)]
    body_encoding: Option<BodyEncoding>,
}

impl RequestIn {
    fn into_stored(self) -> Result<StoredRequest, ApiError> {
        let target = match (self.target, self.url) {
            (Some(t), _) if !t.is_empty() => t,
            (_, Some(url)) if !url.is_empty() => kreplay_domain::keploy::target_from_url(&url),
            _ => return Err(ApiError::bad_request("req needs a target or a url")),
        };
        if self.method.trim().is_empty() {
            return Err(ApiError::bad_request("req.method must not be empty"));
        }
        let body = decode_body(self.body, self.body_encoding)?;
        Ok(StoredRequest {
            method: self.method,
            target,
            version_minor: self.proto_minor.unwrap_or(1),
            headers: self.header.map(HeadersIn::into_pairs).unwrap_or_default(),
            body_wire_size: body.len() as u64,
            body,
            body_truncated: false,
            timestamp_ns: now_unix_ns(),
        })
    }
}

#[derive(Debug, Deserialize)]
struct ResponseIn {
    status_code: u32,
    #[serde(default)]
    status_message: String,
    #[serde(default)]
    proto_minor: Option<u32>,
    #[serde(default)]
    header: Option<HeadersIn>,
    #[serde(default)]
    body: String,
    #[serde(default)]
    body_encoding: Option<BodyEncoding>,
}

impl ResponseIn {
    fn into_stored(self) -> Result<StoredResponse, ApiError> {
        if !(100..=999).contains(&self.status_code) {
            return Err(ApiError::bad_request("resp.status_code must be 100..=999"));
        }
        let body = decode_body(self.body, self.body_encoding)?;
        Ok(StoredResponse {
            status_code: self.status_code,
            reason: self.status_message,
            version_minor: self.proto_minor.unwrap_or(1),
            headers: self.header.map(HeadersIn::into_pairs).unwrap_or_default(),
            body_wire_size: body.len() as u64,
            body,
            body_truncated: false,
            timestamp_ns: now_unix_ns(),
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct NewCaseBody {
    #[serde(default)]
    namespace: Option<String>,
    deployment: String,
    #[serde(alias = "testSetId", alias = "testSet")]
    test_set: String,
    req: RequestIn,
    resp: ResponseIn,
    #[serde(default)]
    noise: Noise,
}

pub(super) fn set_key(
    ctx: &AppState,
    namespace: Option<&str>,
    deployment: String,
    test_set: String,
) -> Result<SetKey, ApiError> {
    Ok(SetKey {
        namespace: ctx
            .scope(namespace)?
            .unwrap_or_else(|| "default".to_owned()),
        deployment,
        test_set,
    })
}

/// The owning recording of a set that may be edited: it exists and is not recording.
pub(super) async fn editable_owner(ctx: &AppState, set: &SetKey) -> Result<String, ApiError> {
    let key = set.clone();
    match blocking(&ctx.store, move |s| s.set_owner(&key)).await? {
        None => Err(ApiError::not_found(format!(
            "test set {} of {}/{} not found",
            set.test_set, set.namespace, set.deployment
        ))),
        Some((record_id, true)) => Err(ApiError::conflict(format!(
            "test set {} is still being recorded",
            set.test_set
        ))
        .with("record_id", record_id)),
        Some((record_id, false)) => Ok(record_id),
    }
}

pub async fn create(
    State(ctx): State<AppState>,
    JsonBody(body): JsonBody<NewCaseBody>,
) -> Result<Json<TestCaseJson>, ApiError> {
    let set = set_key(
        &ctx,
        body.namespace.as_deref(),
        body.deployment,
        body.test_set,
    )?;
    let record_id = editable_owner(&ctx, &set).await?;
    let case = NewTestCase {
        agent_id: format!("api-{record_id}"),
        // Unique per set: hand-made cases are never resent.
        seq: now_unix_ns(),
        record_id,
        created_at_ms: now_unix_ms(),
        pid: 0,
        cgroup_id: 0,
        req: body.req.into_stored()?,
        resp: body.resp.into_stored()?,
        noise: body.noise,
    };
    let (id, _) = blocking(&ctx.store, move |s| s.append_test_case(&set, &case)).await?;
    found(&ctx, id).await
}

async fn found(ctx: &AppState, id: i64) -> Result<Json<TestCaseJson>, ApiError> {
    match blocking(&ctx.store, move |s| s.get_test_case(id)).await? {
        Some(tc) => Ok(Json(TestCaseJson::from(&tc))),
        None => Err(ApiError::not_found(format!("test case {id} not found"))),
    }
}

/// Fields of an update; absent ones keep their stored value.
#[derive(Debug, Deserialize)]
pub struct UpdateBody {
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    req: Option<RequestIn>,
    #[serde(default)]
    resp: Option<ResponseIn>,
    #[serde(default)]
    noise: Option<Noise>,
}

async fn apply_update(ctx: &AppState, id: i64, update: UpdateBody) -> Result<TestCase, ApiError> {
    let tc = blocking(&ctx.store, move |s| s.get_test_case(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("test case {id} not found")))?;
    ctx.scope(Some(&tc.namespace))?;
    let set = SetKey {
        namespace: tc.namespace.clone(),
        deployment: tc.deployment.clone(),
        test_set: tc.test_set.clone(),
    };
    editable_owner(ctx, &set).await?;
    let req = match update.req {
        Some(req) => req.into_stored()?,
        None => tc.case.req.clone(),
    };
    let resp = match update.resp {
        Some(resp) => resp.into_stored()?,
        None => tc.case.resp.clone(),
    };
    let noise = update.noise.unwrap_or_else(|| tc.case.noise.clone());
    blocking(&ctx.store, move |s| {
        s.update_test_case(id, &req, &resp, &noise)
    })
    .await?;
    blocking(&ctx.store, move |s| s.get_test_case(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("test case {id} not found")))
}

pub async fn update(
    State(ctx): State<AppState>,
    Path(test_case_id): Path<String>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<Json<TestCaseJson>, ApiError> {
    let id: i64 = test_case_id.parse().map_err(|_| {
        ApiError::bad_request("testCaseId must be the numeric id of GET /k8s-proxy/testcases")
    })?;
    Ok(Json(TestCaseJson::from(
        &apply_update(&ctx, id, body).await?,
    )))
}

pub async fn update_bulk(
    State(ctx): State<AppState>,
    JsonBody(body): JsonBody<Vec<UpdateBody>>,
) -> Result<Json<Value>, ApiError> {
    let mut ids = Vec::new();
    for update in &body {
        let id = update
            .id
            .ok_or_else(|| ApiError::bad_request("every entry needs its id"))?;
        if blocking(&ctx.store, move |s| s.get_test_case(id))
            .await?
            .is_none()
        {
            return Err(ApiError::not_found(format!("test case {id} not found")));
        }
        ids.push(id);
    }
    for (id, update) in ids.iter().zip(body) {
        apply_update(&ctx, *id, update).await?;
    }
    Ok(Json(json!({"updated": ids.len(), "ids": ids})))
}

#[derive(Debug, Deserialize)]
pub struct SetQuery {
    namespace: Option<String>,
    deployment: String,
    #[serde(alias = "testSetId", alias = "testSet")]
    test_set: String,
    /// Comma-separated case names (DELETE /testcases); all when absent.
    #[serde(default, alias = "testCaseIds", alias = "test_case")]
    test_cases: Option<String>,
}

pub async fn delete_cases(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<SetQuery>,
) -> Result<Json<Value>, ApiError> {
    let set = set_key(&ctx, q.namespace.as_deref(), q.deployment, q.test_set)?;
    editable_owner(&ctx, &set).await?;
    let names = comma_list(q.test_cases.as_deref());
    let deleted = blocking(&ctx.store, move |s| s.delete_test_cases(&set, &names)).await?;
    Ok(Json(json!({"deleted": deleted})))
}

pub async fn delete_set(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<SetQuery>,
) -> Result<Json<Value>, ApiError> {
    let set = set_key(&ctx, q.namespace.as_deref(), q.deployment, q.test_set)?;
    editable_owner(&ctx, &set).await?;
    let name = set.test_set.clone();
    let deleted = blocking(&ctx.store, move |s| s.delete_test_set(&set)).await?;
    Ok(Json(json!({"deleted": deleted, "test_set": name})))
}

async fn cases_of(ctx: &AppState, set: &SetKey) -> Result<Vec<TestCase>, ApiError> {
    let filter = TestCaseFilter::all_of(&set.namespace, &set.deployment, Some(&set.test_set));
    Ok(blocking(&ctx.store, move |s| s.list_test_cases(&filter)).await?)
}

#[derive(Debug, Deserialize)]
pub struct MetadataQuery {
    namespace: Option<String>,
    deployment: String,
    #[serde(default, alias = "testSetId", alias = "testSet")]
    test_set: Option<String>,
}

/// Test cases without their bodies.
pub async fn metadata(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<MetadataQuery>,
) -> Result<Json<Value>, ApiError> {
    let namespace = ctx
        .scope(q.namespace.as_deref())?
        .unwrap_or_else(|| "default".to_owned());
    let test_set = q.test_set.filter(|s| !s.is_empty());
    let filter = TestCaseFilter::all_of(&namespace, &q.deployment, test_set.as_deref());
    let cases = blocking(&ctx.store, move |s| s.list_test_cases(&filter)).await?;
    Ok(Json(Value::Array(
        cases
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "name": c.name,
                    "test_set": c.test_set,
                    "method": c.case.req.method,
                    "target": c.case.req.target,
                    "status_code": c.case.resp.status_code,
                    "created": rfc3339_ms(c.case.created_at_ms),
                    "noise": c.case.noise,
                })
            })
            .collect(),
    )))
}

#[derive(Debug, Deserialize)]
pub struct SelectiveBody {
    #[serde(default)]
    namespace: Option<String>,
    deployment: String,
    #[serde(alias = "testSetId", alias = "testSet")]
    test_set: String,
    #[serde(alias = "testCaseIds")]
    test_cases: Vec<String>,
}

/// The named test cases of a set, in full.
pub async fn selective(
    State(ctx): State<AppState>,
    JsonBody(body): JsonBody<SelectiveBody>,
) -> Result<Json<Vec<TestCaseJson>>, ApiError> {
    let set = set_key(
        &ctx,
        body.namespace.as_deref(),
        body.deployment,
        body.test_set,
    )?;
    let cases = cases_of(&ctx, &set).await?;
    let mut out = Vec::new();
    for name in &body.test_cases {
        let case = cases.iter().find(|c| &c.name == name).ok_or_else(|| {
            ApiError::not_found(format!("test case {name} not in {}", set.test_set))
        })?;
        out.push(TestCaseJson::from(case));
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
pub struct DeploymentQuery {
    namespace: Option<String>,
    deployment: String,
}

/// Test sets with their latest replay verdict.
pub async fn sets_metadata(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<DeploymentQuery>,
) -> Result<Json<Value>, ApiError> {
    let namespace = ctx
        .scope(q.namespace.as_deref())?
        .unwrap_or_else(|| "default".to_owned());
    let (ns, dep) = (namespace.clone(), q.deployment.clone());
    let sets = blocking(&ctx.store, move |s| s.list_test_sets(Some(&ns), Some(&dep))).await?;
    let filter = crate::store::ReportFilter {
        namespace: Some(namespace),
        deployment: Some(q.deployment),
        ..Default::default()
    };
    let reports = blocking(&ctx.store, move |s| s.list_reports(&filter)).await?;
    Ok(Json(Value::Array(
        sets.iter()
            .map(|set| {
                let latest = reports.iter().rev().find(|r| r.test_set == set.test_set);
                let mut value = serde_json::to_value(set).unwrap_or(Value::Null);
                value["latest_replay"] = latest.map_or(
                    Value::Null,
                    |r| json!({"test_run_id": r.key.test_run_id, "status": r.status}),
                );
                value
            })
            .collect(),
    )))
}

/// The newest test set of a deployment with all its test cases.
pub async fn latest_full(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<DeploymentQuery>,
) -> Result<Json<Value>, ApiError> {
    let namespace = ctx
        .scope(q.namespace.as_deref())?
        .unwrap_or_else(|| "default".to_owned());
    let (ns, dep) = (namespace.clone(), q.deployment.clone());
    let sets = blocking(&ctx.store, move |s| s.list_test_sets(Some(&ns), Some(&dep))).await?;
    let latest = sets.last().ok_or_else(|| {
        ApiError::not_found(format!("{namespace}/{} has no test sets", q.deployment))
    })?;
    let set = SetKey {
        namespace,
        deployment: q.deployment,
        test_set: latest.test_set.clone(),
    };
    let cases = cases_of(&ctx, &set).await?;
    Ok(Json(json!({
        "test_set": latest,
        "test_cases": cases.iter().map(TestCaseJson::from).collect::<Vec<_>>(),
    })))
}
