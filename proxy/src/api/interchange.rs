//! Keploy-layout interchange: `GET /test/download` (a ZIP of `keploy/...`, or JUnit XML of a
//! run) and `POST /k8s-proxy/testcases/bulk` (the same ZIP, or test case YAML, imported).

use std::io::{Cursor, Read, Write};

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use kreplay_domain::{
    http::{HttpRequest, HttpResponse},
    keploy::{self, ExportedFile, TestCaseDoc, TestSetFiles},
    mock::{apply_mappings, from_mock_doc, mappings_of, to_mock_doc},
    report::{self, TestSetReport},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ApiError, AppState,
    error::{QueryParams, RawBody},
    mocks::set_mocks,
};
use crate::{
    mocks::from_domain,
    model::{HeaderPair, NewTestCase, StoredRequest, StoredResponse, TestCaseFilter},
    store::{ImportedCase, MockSet, ReportFilter, ReportRow, RunKey, blocking, is_safe_name},
    util::{now_unix_ms, random_hex},
};

/// Largest ZIP entry accepted on import (a test case is at most ~10 MiB of bodies).
const MAX_ENTRY_BYTES: u64 = 64 << 20;
/// Largest total of an import once decompressed (a ZIP bomb stops here, not in memory).
const MAX_IMPORT_BYTES: u64 = 512 << 20;

#[derive(Debug, Deserialize)]
pub struct DownloadQuery {
    namespace: Option<String>,
    deployment: String,
    #[serde(default, alias = "testSetId", alias = "testSet")]
    test_set: Option<String>,
    /// `zip` (default) or `junit`.
    #[serde(default)]
    format: Option<String>,
    #[serde(default, alias = "testRunId")]
    test_run_id: Option<String>,
}

pub async fn download(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<DownloadQuery>,
) -> Result<Response, ApiError> {
    let namespace = ctx
        .scope(q.namespace.as_deref())?
        .unwrap_or_else(|| "default".to_owned());
    match q.format.as_deref().unwrap_or("zip") {
        "zip" => download_zip(&ctx, namespace, q.deployment, q.test_set).await,
        "junit" => download_junit(&ctx, namespace, q.deployment, q.test_run_id).await,
        other => Err(ApiError::bad_request(format!(
            "unknown format {other:?}: use zip or junit"
        ))),
    }
}

async fn download_zip(
    ctx: &AppState,
    namespace: String,
    deployment: String,
    only_set: Option<String>,
) -> Result<Response, ApiError> {
    let sets = export_sets(ctx, &namespace, &deployment, only_set.as_deref()).await?;
    let files =
        keploy::export_layout(&sets).map_err(|e| ApiError::internal(format!("exporting: {e}")))?;
    let bytes = zip_files(&files).map_err(|e| ApiError::internal(format!("zipping: {e}")))?;
    let name = format!("attachment; filename=\"{deployment}-keploy.zip\"");
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/zip"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&name)
                    .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Everything stored for the deployment's test sets, in the interchange model.
pub async fn export_sets(
    ctx: &AppState,
    namespace: &str,
    deployment: &str,
    only_set: Option<&str>,
) -> Result<Vec<TestSetFiles>, ApiError> {
    let (ns, dep) = (namespace.to_owned(), deployment.to_owned());
    let summaries = blocking(&ctx.store, move |s| s.list_test_sets(Some(&ns), Some(&dep))).await?;
    let names: Vec<String> = summaries
        .into_iter()
        .map(|s| s.test_set)
        .filter(|name| only_set.is_none_or(|only| only == name))
        .collect();
    if names.is_empty() {
        return Err(ApiError::not_found(match only_set {
            Some(set) => format!("test set {set} of {namespace}/{deployment} not found"),
            None => format!("{namespace}/{deployment} has no test sets"),
        }));
    }
    let mut sets = Vec::new();
    for test_set in names {
        let filter = TestCaseFilter::all_of(namespace, deployment, Some(&test_set));
        let cases = blocking(&ctx.store, move |s| s.list_test_cases(&filter)).await?;
        let reports_filter = ReportFilter {
            namespace: Some(namespace.to_owned()),
            deployment: Some(deployment.to_owned()),
            test_set: Some(test_set.clone()),
            ..ReportFilter::default()
        };
        let rows = blocking(&ctx.store, move |s| s.list_reports(&reports_filter)).await?;
        let mut reports = Vec::new();
        for row in rows {
            // Reports inserted by hand may not have the replay's shape; those are skipped.
            let Ok(parsed) = serde_json::from_value::<TestSetReport>(row.report) else {
                continue;
            };
            let yaml = report::report_to_yaml(&parsed).map_err(|e| {
                ApiError::internal(format!("report of {}: {e}", row.key.test_run_id))
            })?;
            reports.push((row.key.test_run_id, yaml));
        }
        let tests: Vec<TestCaseDoc> = cases
            .iter()
            .map(|c| TestCaseDoc {
                name: c.name.clone(),
                req: c.case.req.to_domain(),
                resp: c.case.resp.to_domain(),
                noise: c.case.noise.clone(),
                created: c.case.created_at_ms / 1000,
                metadata: Default::default(),
                curl: None,
            })
            .collect();
        let set = MockSet {
            namespace: namespace.to_owned(),
            deployment: deployment.to_owned(),
            test_set: test_set.clone(),
        };
        let mocks = set_mocks(ctx, &set).await?;
        let names: Vec<String> = tests.iter().map(|t| t.name.clone()).collect();
        let mappings = mappings_of(&test_set, &names, &mocks);
        sets.push(TestSetFiles {
            name: test_set,
            tests,
            mocks: mocks.iter().map(to_mock_doc).collect(),
            mappings: Some(mappings),
            reports,
        });
    }
    Ok(sets)
}

fn zip_files(files: &[ExportedFile]) -> Result<Vec<u8>, zip::result::ZipError> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    // No timestamps beyond the format's fixed default: the same store gives the same bytes.
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for file in files {
        writer.start_file(file.path.as_str(), options)?;
        writer.write_all(&file.contents)?;
    }
    Ok(writer.finish()?.into_inner())
}

fn unzip_files(bytes: &[u8]) -> Result<Vec<ExportedFile>, ApiError> {
    let bad = |e: zip::result::ZipError| ApiError::bad_request(format!("invalid ZIP: {e}"));
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(bad)?;
    let mut files = Vec::new();
    let mut total = 0u64;
    for i in 0..archive.len() {
        let entry = archive.by_index(i).map_err(bad)?;
        if entry.is_dir() {
            continue;
        }
        let path = entry.name().map_err(bad)?.into_owned();
        if entry.size() > MAX_ENTRY_BYTES {
            return Err(ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                format!("ZIP entry {path} is larger than {MAX_ENTRY_BYTES} bytes"),
            ));
        }
        total = total.saturating_add(entry.size());
        if total > MAX_IMPORT_BYTES {
            return Err(ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                format!("the ZIP holds more than {MAX_IMPORT_BYTES} bytes once decompressed"),
            ));
        }
        let mut contents = Vec::new();
        entry
            .take(MAX_ENTRY_BYTES)
            .read_to_end(&mut contents)
            .map_err(|e| ApiError::bad_request(format!("reading ZIP entry {path}: {e}")))?;
        files.push(ExportedFile { path, contents });
    }
    Ok(files)
}

async fn download_junit(
    ctx: &AppState,
    namespace: String,
    deployment: String,
    test_run_id: Option<String>,
) -> Result<Response, ApiError> {
    let test_run_id =
        test_run_id.ok_or_else(|| ApiError::bad_request("format=junit needs test_run_id"))?;
    let filter = ReportFilter {
        namespace: Some(namespace),
        deployment: Some(deployment),
        test_run_id: Some(test_run_id.clone()),
        ..ReportFilter::default()
    };
    let rows = blocking(&ctx.store, move |s| s.list_reports(&filter)).await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(format!("no reports for {test_run_id}")));
    }
    let reports: Vec<TestSetReport> = rows
        .into_iter()
        .filter_map(|r| serde_json::from_value(r.report).ok())
        .collect();
    Ok((
        [(header::CONTENT_TYPE, "application/xml")],
        report::junit_xml(&test_run_id, &reports),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct ImportQuery {
    namespace: Option<String>,
    deployment: String,
    /// For a plain YAML body: the test set name wanted.
    #[serde(default, alias = "testSetId", alias = "testSet")]
    test_set: Option<String>,
}

/// Imports a Keploy-layout ZIP, or a YAML stream of test case documents, as new test sets.
pub async fn import(
    State(ctx): State<AppState>,
    QueryParams(q): QueryParams<ImportQuery>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    if q.deployment.trim().is_empty() {
        return Err(ApiError::bad_request("deployment must not be empty"));
    }
    let namespace = ctx
        .scope(q.namespace.as_deref())?
        .unwrap_or_else(|| "default".to_owned());
    let is_zip = body.starts_with(b"PK\x03\x04")
        || headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/zip"));
    let sets = if is_zip {
        let files = unzip_files(&body)?;
        keploy::import_layout(&files).map_err(|e| ApiError::bad_request(e.to_string()))?
    } else {
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("body is neither a ZIP nor UTF-8 YAML"))?;
        let tests = text
            .split("\n---")
            .filter(|doc| !doc.trim().is_empty() && doc.trim() != "---")
            .map(keploy::decode_test_case)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        vec![TestSetFiles {
            name: q.test_set.clone().unwrap_or_default(),
            tests,
            mocks: Vec::new(),
            mappings: None,
            reports: Vec::new(),
        }]
    };
    if sets.iter().all(|s| s.tests.is_empty()) {
        return Err(ApiError::bad_request("no test cases found in the upload"));
    }
    let prepared = sets
        .into_iter()
        .map(prepare_set)
        .collect::<Result<Vec<_>, _>>()?;
    let mut imported = Vec::new();
    for set in prepared {
        imported.push(write_set(&ctx, &namespace, &q.deployment, set).await?);
    }
    Ok(Json(
        json!({"namespace": namespace, "deployment": q.deployment, "imported": imported}),
    ))
}

/// One uploaded set, validated and converted: nothing is written before every set of an upload
/// has come this far, so bad input leaves no half-imported state behind.
struct PreparedSet {
    from: String,
    record_id: String,
    cases: Vec<ImportedCase>,
    mocks: Vec<crate::store::StoredMock>,
    reports: Vec<(String, TestSetReport)>,
}

fn prepare_set(set: TestSetFiles) -> Result<PreparedSet, ApiError> {
    if !set.name.is_empty() && !is_safe_name(&set.name) {
        return Err(ApiError::bad_request(format!(
            "test set name {:?}: use letters, digits, '.', '_' and '-'",
            set.name
        )));
    }
    let mut names = std::collections::BTreeSet::new();
    for doc in &set.tests {
        if !is_safe_name(&doc.name) || !names.insert(doc.name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "test case name {:?} in {} is invalid or repeated",
                doc.name, set.name
            )));
        }
    }
    let record_id = format!(
        "import-{}",
        random_hex(8).map_err(|e| ApiError::internal(e.to_string()))?
    );
    let cases = set
        .tests
        .iter()
        .enumerate()
        .map(|(i, doc)| ImportedCase {
            name: doc.name.clone(),
            case: NewTestCase {
                record_id: record_id.clone(),
                agent_id: record_id.clone(),
                seq: i as u64,
                created_at_ms: doc.created.saturating_mul(1000),
                pid: 0,
                cgroup_id: 0,
                req: stored_request(&doc.req),
                resp: stored_response(&doc.resp),
                noise: doc.noise.clone(),
            },
        })
        .collect();
    let mut mocks = set
        .mocks
        .iter()
        .map(from_mock_doc)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::bad_request(format!("mocks of {}: {e}", set.name)))?;
    if let Some(mappings) = &set.mappings {
        let dangling = apply_mappings(&mut mocks, mappings);
        if !dangling.is_empty() {
            tracing::warn!(test_set = %set.name, ?dangling, "mappings name mocks the upload lacks");
        }
    }
    let reports = set
        .reports
        .iter()
        .map(|(test_run_id, yaml)| {
            report::report_from_yaml(yaml)
                .map(|parsed| (test_run_id.clone(), parsed))
                .map_err(|e| {
                    ApiError::bad_request(format!("report {test_run_id} of {}: {e}", set.name))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PreparedSet {
        from: set.name,
        record_id,
        cases,
        mocks: mocks.iter().map(from_domain).collect(),
        reports,
    })
}

async fn write_set(
    ctx: &AppState,
    namespace: &str,
    deployment: &str,
    set: PreparedSet,
) -> Result<Value, ApiError> {
    let now = now_unix_ms();
    let PreparedSet {
        from,
        record_id,
        cases,
        mocks,
        reports,
    } = set;
    let count = cases.len();
    let (ns, dep, id, wanted) = (
        namespace.to_owned(),
        deployment.to_owned(),
        record_id.clone(),
        from.clone(),
    );
    let test_set = blocking(&ctx.store, move |s| {
        s.import_test_set(&ns, &dep, &id, &wanted, &cases, now)
    })
    .await?;
    let mock_count = mocks.len();
    if !mocks.is_empty() {
        let key = MockSet {
            namespace: namespace.to_owned(),
            deployment: deployment.to_owned(),
            test_set: test_set.clone(),
        };
        blocking(&ctx.store, move |s| {
            s.replace_mocks(&key, &record_id, &mocks)
        })
        .await?;
    }
    let report_count = reports.len();
    for (test_run_id, parsed) in reports {
        let row = ReportRow {
            key: RunKey {
                namespace: namespace.to_owned(),
                deployment: deployment.to_owned(),
                test_run_id,
            },
            test_set: test_set.clone(),
            status: json!(parsed.status).as_str().unwrap_or("").to_owned(),
            report: serde_json::to_value(&parsed).unwrap_or(Value::Null),
            updated_at_ms: now,
        };
        blocking(&ctx.store, move |s| s.upsert_report(&row)).await?;
    }
    Ok(json!({
        "test_set": test_set, "from": from, "test_cases": count,
        "mocks": mock_count, "reports": report_count,
    }))
}

fn pairs(headers: &[kreplay_domain::http::Header]) -> Vec<HeaderPair> {
    headers
        .iter()
        .map(|h| HeaderPair {
            name: h.name.clone(),
            value: h.value.clone(),
        })
        .collect()
}

fn stored_request(req: &HttpRequest) -> StoredRequest {
    StoredRequest {
        method: req.method.clone(),
        target: req.target.clone(),
        version_minor: req.proto_minor,
        headers: pairs(&req.headers),
        body: req.body.clone(),
        body_truncated: req.body_truncated,
        body_wire_size: req.body.len() as u64,
        timestamp_ns: req.timestamp_ns,
    }
}

fn stored_response(resp: &HttpResponse) -> StoredResponse {
    StoredResponse {
        status_code: u32::from(resp.status_code),
        reason: resp.status_message.clone(),
        version_minor: resp.proto_minor,
        headers: pairs(&resp.headers),
        body: resp.body.clone(),
        body_truncated: resp.body_truncated,
        body_wire_size: resp.body.len() as u64,
        timestamp_ns: resp.timestamp_ns,
    }
}
