//! The target's dependency calls as mocks: conversion of what agents capture into stored mocks,
//! and of stored mocks into the domain model the mock server and the interchange use.

use kreplay_domain::http::request_fields;
use kreplay_proto::v1::{DependencyCall, HttpExchange, HttpRequest, HttpResponse};

use crate::store::StoredMock;

/// Keploy kind names of the protocols the agent reports.
fn kind_of(protocol: &str) -> &'static str {
    match protocol {
        "postgres" => "PostgresV2",
        "redis" => "Redis",
        "mysql" => "MySQL",
        "http" => "Http",
        _ => "Generic",
    }
}

pub fn from_dependency_call(call: DependencyCall) -> StoredMock {
    StoredMock {
        record_id: call.record_id,
        kind: kind_of(&call.protocol).to_owned(),
        lifetime: call.lifetime,
        connection_id: call.connection_id.to_string(),
        destination: call.peer_addr,
        request: call.request,
        response: call.response,
        fields: call.fields.into_iter().map(|f| (f.name, f.value)).collect(),
        summary: call.summary,
        req_ts_ns: call.request_ts_ns,
        resp_ts_ns: call.response_ts_ns,
        ..StoredMock::default()
    }
}

/// Header lines, minus those that describe the stored (decoded) body's original framing.
fn head_lines(out: &mut Vec<u8>, headers: &[kreplay_proto::v1::Header], body_len: usize) {
    for h in headers {
        let name = String::from_utf8_lossy(&h.name).to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "content-encoding"
        ) {
            continue;
        }
        out.extend_from_slice(&h.name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {body_len}\r\n\r\n").as_bytes());
}

/// The request as bytes a server would accept again (the body decoded, its length recomputed).
pub fn encode_request(req: &HttpRequest) -> Vec<u8> {
    let mut out = format!("{} {} HTTP/1.1\r\n", req.method, req.target).into_bytes();
    head_lines(&mut out, &req.headers, req.body.len());
    out.extend_from_slice(&req.body);
    out
}

/// The response as bytes a client accepts: the recorded status and headers with the decoded
/// body, framed by Content-Length.
pub fn encode_response(resp: &HttpResponse) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status_code, resp.reason).into_bytes();
    head_lines(&mut out, &resp.headers, resp.body.len());
    out.extend_from_slice(&resp.body);
    out
}

/// An HTTP call the target made (an exchange on a connection it opened).
pub fn from_http_call(exchange: HttpExchange) -> StoredMock {
    let request = exchange.request.unwrap_or_default();
    let response = exchange.response.unwrap_or_default();
    let fields = request_fields(&request.method, &request.target, &request.body);
    let summary = format!(
        "{} {} -> {}",
        request.method, request.target, response.status_code
    );
    StoredMock {
        record_id: exchange.record_id,
        kind: "Http".to_owned(),
        lifetime: "per_test".to_owned(),
        connection_id: exchange.connection_id.to_string(),
        destination: exchange.peer_addr,
        request: encode_request(&request),
        response: encode_response(&response),
        fields,
        summary,
        req_ts_ns: request.timestamp_ns,
        resp_ts_ns: response.timestamp_ns,
        ..StoredMock::default()
    }
}

/// A stored mock in the domain model (what the mock server and the interchange use).
pub fn to_domain(m: &StoredMock) -> Option<kreplay_domain::mock::Mock> {
    use kreplay_domain::mock::{Lifetime, Mock, MockKind};
    Some(Mock {
        name: m.name.clone(),
        kind: MockKind::from_kind_str(&m.kind)?,
        lifetime: match m.lifetime.as_str() {
            "session" => Lifetime::Session,
            "connection" => Lifetime::Connection,
            _ => Lifetime::PerTest,
        },
        connection_id: m.connection_id.clone(),
        destination: m.destination.clone(),
        request: m.request.clone(),
        response: m.response.clone(),
        fields: m.fields.clone(),
        summary: m.summary.clone(),
        req_ts_ns: m.req_ts_ns,
        resp_ts_ns: m.resp_ts_ns,
        test_case: m.test_case.clone(),
        noise: m.noise.clone(),
    })
}

/// A test set's mocks in the domain model, in recorded order (kinds kreplay cannot replay are
/// left out).
pub async fn load_set(
    store: &crate::store::SharedStore,
    set: &crate::store::MockSet,
) -> Result<Vec<kreplay_domain::mock::Mock>, crate::store::StoreError> {
    let key = set.clone();
    let stored = crate::store::blocking(store, move |s| s.list_mocks(&key)).await?;
    Ok(stored.iter().filter_map(to_domain).collect())
}

/// The stored name of a lifetime.
pub fn lifetime_name(lifetime: kreplay_domain::mock::Lifetime) -> &'static str {
    use kreplay_domain::mock::Lifetime;
    match lifetime {
        Lifetime::Session => "session",
        Lifetime::Connection => "connection",
        Lifetime::PerTest => "per_test",
    }
}

/// A domain mock as stored in `set` (upload, import).
pub fn from_domain(m: &kreplay_domain::mock::Mock) -> StoredMock {
    StoredMock {
        name: m.name.clone(),
        kind: m.kind.as_str().to_owned(),
        lifetime: lifetime_name(m.lifetime).to_owned(),
        connection_id: m.connection_id.clone(),
        destination: m.destination.clone(),
        request: m.request.clone(),
        response: m.response.clone(),
        fields: m.fields.clone(),
        summary: m.summary.clone(),
        req_ts_ns: m.req_ts_ns,
        resp_ts_ns: m.resp_ts_ns,
        test_case: m.test_case.clone(),
        noise: m.noise.clone(),
        ..StoredMock::default()
    }
}

/// Decides, once a recording's captures are all stored, which test case caused each mock and
/// which mocks are start-up (session) ones. Returns the mocks it could not attribute, each with
/// the reason (between windows, or ambiguous between concurrent tests).
pub async fn attribute_recording(
    store: &crate::store::SharedStore,
    record: &crate::model::SessionRecord,
) -> Result<Vec<kreplay_domain::mock::UnattributedReason>, crate::store::StoreError> {
    use kreplay_domain::mock::{TestWindow, attribute};

    use crate::{
        model::TestCaseFilter,
        store::{MockSet, blocking},
    };

    let set = MockSet {
        namespace: record.namespace.clone(),
        deployment: record.deployment.clone(),
        test_set: record.test_set.clone(),
    };
    let filter = TestCaseFilter {
        record_id: Some(record.record_id.clone()),
        ..TestCaseFilter::all_of(
            &record.namespace,
            &record.deployment,
            Some(&record.test_set),
        )
    };
    let key = set.clone();
    let (cases, stored) = blocking(store, move |s| {
        Ok((s.list_test_cases(&filter)?, s.list_mocks(&key)?))
    })
    .await?;
    if stored.is_empty() {
        return Ok(Vec::new());
    }
    let windows: Vec<TestWindow> = cases
        .iter()
        .map(|c| {
            TestWindow::new(
                c.name.clone(),
                c.case.req.timestamp_ns,
                c.case.resp.timestamp_ns,
            )
        })
        .collect();
    let mocks = stored.iter().filter_map(to_domain).collect();
    let attribution = attribute(mocks, &windows);
    let decisions: Vec<(String, Option<String>, String)> = attribution
        .mocks
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                m.test_case.clone(),
                lifetime_name(m.lifetime).to_owned(),
            )
        })
        .collect();
    blocking(store, move |s| s.attribute_mocks(&set, &decisions)).await?;
    for reason in &attribution.unattributed {
        tracing::warn!(record_id = %record.record_id, "mock not attributed: {reason}");
    }
    Ok(attribution.unattributed)
}

#[cfg(test)]
mod tests {
    use kreplay_proto::v1::Header;

    use super::*;

    #[test]
    fn http_mocks_are_served_decoded_with_a_fresh_length() {
        let response = HttpResponse {
            status_code: 200,
            reason: "OK".into(),
            headers: vec![
                Header {
                    name: b"Content-Type".to_vec(),
                    value: b"application/json".to_vec(),
                },
                Header {
                    name: b"Transfer-Encoding".to_vec(),
                    value: b"chunked".to_vec(),
                },
                Header {
                    name: b"Content-Encoding".to_vec(),
                    value: b"gzip".to_vec(),
                },
            ],
            body: br#"{"rate":1.1}"#.to_vec(),
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(encode_response(&response)).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"rate\":1.1}"
        );
    }
}
