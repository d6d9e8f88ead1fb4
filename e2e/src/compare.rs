//! Holds stored test cases (the JSON of `GET /k8s-proxy/testcases`) up against the client log,
//! byte for byte, and explains every difference.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::Value;

use crate::client::{CASE_HEADER, Logged};

/// A stored body, decoded from its JSON encoding.
pub fn body_bytes(message: &Value) -> anyhow::Result<Vec<u8>> {
    let body = message["body"].as_str().context("body is not a string")?;
    match message["body_encoding"].as_str() {
        Some("base64") => Ok(base64::engine::general_purpose::STANDARD.decode(body)?),
        Some("utf8") | None => Ok(body.as_bytes().to_vec()),
        Some(other) => bail!("unknown body_encoding {other}"),
    }
}

fn headers(message: &Value) -> anyhow::Result<Vec<(String, String)>> {
    message["header"]
        .as_array()
        .context("header is not a list")?
        .iter()
        .map(|h| {
            Ok((
                h["name"].as_str().context("header name")?.to_string(),
                h["value"].as_str().context("header value")?.to_string(),
            ))
        })
        .collect()
}

/// The value of the case header of a stored test case.
pub fn case_of(stored: &Value) -> Option<String> {
    headers(&stored["req"])
        .ok()?
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(CASE_HEADER))
        .map(|(_, value)| value)
}

fn short(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]);
    format!("{} bytes {text:?}", bytes.len())
}

/// Differences between one stored test case and the client's log entry.
pub fn differences(stored: &Value, logged: &Logged) -> anyhow::Result<Vec<String>> {
    let mut diffs = Vec::new();
    let req = &stored["req"];
    let resp = &stored["resp"];
    let mut check = |what: &str, stored: String, client: String| {
        if stored != client {
            diffs.push(format!("{what}: stored {stored}, client {client}"));
        }
    };
    check(
        "method",
        req["method"].as_str().unwrap_or("").into(),
        logged.sent.method.clone(),
    );
    check(
        "target",
        req["target"].as_str().unwrap_or("").into(),
        logged.sent.target.clone(),
    );
    check(
        "request headers",
        format!("{:?}", headers(req)?),
        format!("{:?}", logged.sent.headers),
    );
    check(
        "request body",
        short(&body_bytes(req)?),
        short(&logged.sent.body),
    );
    check(
        "request body_truncated",
        req["body_truncated"].to_string(),
        "false".into(),
    );
    check(
        "status",
        resp["status_code"].to_string(),
        logged.received.status.to_string(),
    );
    check(
        "reason",
        resp["status_message"].as_str().unwrap_or("").into(),
        logged.received.reason.clone(),
    );
    check(
        "response headers",
        format!("{:?}", headers(resp)?),
        format!("{:?}", logged.received.headers),
    );
    let stored_body = body_bytes(resp)?;
    let bodies_differ = stored_body != logged.received.decoded_body;
    check(
        "response body_truncated",
        resp["body_truncated"].to_string(),
        "false".into(),
    );
    if bodies_differ {
        diffs.push(format!(
            "response body: stored {}, client {}",
            short(&stored_body),
            short(&logged.received.decoded_body)
        ));
    }
    Ok(diffs)
}

/// Exactly one stored test case per logged request, and each equal to what the client logged.
pub fn check_exact(stored: &[Value], logged: &[Logged]) -> anyhow::Result<()> {
    let mut by_case: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    let mut unnamed = 0;
    for case in stored {
        match case_of(case) {
            Some(name) => by_case.entry(name).or_default().push(case),
            None => unnamed += 1,
        }
    }
    let mut problems = Vec::new();
    if unnamed > 0 {
        problems.push(format!(
            "{unnamed} stored test cases carry no {CASE_HEADER} header"
        ));
    }
    let expected: BTreeSet<&str> = logged.iter().map(|l| l.case.as_str()).collect();
    for (name, cases) in &by_case {
        if !expected.contains(name.as_str()) {
            problems.push(format!("stored case {name} was never sent"));
        } else if cases.len() != 1 {
            problems.push(format!("case {name} stored {} times", cases.len()));
        }
    }
    for entry in logged {
        match by_case.get(&entry.case).and_then(|cases| cases.first()) {
            None => problems.push(format!(
                "case {} ({} {}) was not stored",
                entry.case, entry.sent.method, entry.sent.target
            )),
            Some(stored) => {
                for diff in differences(stored, entry)? {
                    problems.push(format!(
                        "case {} ({} {}): {diff}",
                        entry.case, entry.sent.method, entry.sent.target
                    ));
                }
            }
        }
    }
    if stored.len() != logged.len() {
        problems.push(format!(
            "{} test cases stored for {} requests sent",
            stored.len(),
            logged.len()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(
            "stored test cases differ from the client log:\n  {}",
            problems.join("\n  ")
        )
    }
}
